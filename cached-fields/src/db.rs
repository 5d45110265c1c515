//! Connections: the [`Db`] pool handle, the [`Ctx`] a statement runs in, and
//! the [`Target`]s (a pool, a connection, a transaction) the runtime accepts.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use futures::future::BoxFuture;
use sqlx::{Arguments, Connection, Row};

pub use crate::backend::Backend;
use crate::error::{Error, Result};
use crate::ident;
use crate::key::Key;
use crate::model::CachedModel;
use crate::value::{SqlType, Value};

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("cached-fields needs at least one of the features `sqlite` and `postgres`");

#[cfg(feature = "postgres")]
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
#[cfg(feature = "sqlite")]
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};

/// A pool of connections to one database: the handle an application keeps.
///
/// Cloning is cheap (the pool is shared).
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cached_fields::Result<()> {
/// let db = cached_fields::Db::connect("sqlite::memory:").await?;
/// assert_eq!(db.backend(), cached_fields::Backend::Sqlite);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Db {
    /// A SQLite pool.
    #[cfg(feature = "sqlite")]
    Sqlite(SqlitePool),
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    Postgres(PgPool),
}

/// The secrets a database URL carries: the password of `user:password@`
/// and any `password=` parameter (as written and percent-decoded).
fn secrets(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (before_query, query) = url.split_once('?').unwrap_or((url, ""));
    if let Some(s) = before_query.find("://") {
        let rest = &before_query[s + 3..];
        let authority = rest.split('/').next().unwrap_or(rest);
        if let Some((creds, _)) = authority.rsplit_once('@')
            && let Some((_, password)) = creds.split_once(':')
            && !password.is_empty()
        {
            out.push(password.to_owned());
        }
    }
    for pair in query.split('&') {
        if let Some((k, v)) = pair.split_once('=')
            && k.eq_ignore_ascii_case("password")
            && !v.is_empty()
        {
            out.push(v.to_owned());
        }
    }
    let decoded: Vec<String> = out.iter().filter_map(|p| percent_decode(p)).collect();
    out.extend(decoded);
    out.sort_by_key(|p| std::cmp::Reverse(p.len()));
    out.dedup();
    out
}

fn percent_decode(s: &str) -> Option<String> {
    if !s.contains('%') {
        return None;
    }
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// `text` with every secret of `url` (a password, in the URL's user
/// information or a `password=` parameter) replaced by `***`: for any
/// message that may quote the URL or what a driver made of it.
///
/// ```
/// use cached_fields::db::redact_with;
/// let url = "postgres://ann:s3cret@db:5432/app?password=other";
/// let text = format!("cannot connect to {url}");
/// assert_eq!(redact_with(&text, url), "cannot connect to postgres://ann:***@db:5432/app?password=***");
/// ```
pub fn redact_with(text: &str, url: &str) -> String {
    let mut out = text.to_owned();
    for secret in secrets(url) {
        out = out.replace(&secret, "***");
    }
    out
}

/// Hides any password in a URL, for messages.
pub(crate) fn redact(url: &str) -> String {
    redact_with(url, url)
}

impl Db {
    /// Connects to `url` (`sqlite:path`, `sqlite::memory:`, `postgres://…`)
    /// with a pool of up to 10 connections.
    pub async fn connect(url: &str) -> Result<Self> {
        Self::connect_with(url, 10).await
    }

    /// Connects with a pool of up to `max_connections`.
    ///
    /// SQLite files are created if missing and opened in WAL mode with a
    /// busy timeout, so other processes (a worker, the `sqlite3` shell) can
    /// write the same file.
    pub async fn connect_with(url: &str, max_connections: u32) -> Result<Self> {
        let connect_err = |e: sqlx::Error| Error::Connect {
            url: redact(url),
            message: redact_with(&e.to_string(), url),
        };
        if url.starts_with("sqlite:") {
            #[cfg(feature = "sqlite")]
            {
                let memory = url.contains(":memory:") || url.contains("mode=memory");
                let opts = SqliteConnectOptions::from_str(url)
                    .map_err(connect_err)?
                    .create_if_missing(true)
                    .busy_timeout(Duration::from_secs(30))
                    .foreign_keys(true);
                let opts = if memory {
                    opts
                } else {
                    opts.journal_mode(SqliteJournalMode::Wal)
                        .synchronous(SqliteSynchronous::Normal)
                };
                // An in-memory database exists per connection: keep exactly one.
                let max = if memory { 1 } else { max_connections };
                let file = opts.get_filename().to_owned();
                // Switching a new file to WAL takes a lock the busy timeout
                // does not wait for: two processes opening it at once (two
                // `migrate`s) retry rather than fail.
                let mut tries = 0;
                let pool = loop {
                    let r = SqlitePoolOptions::new()
                        .max_connections(max)
                        .test_before_acquire(false)
                        .acquire_timeout(Duration::from_secs(30))
                        .connect_with(opts.clone())
                        .await;
                    match r {
                        Err(sqlx::Error::Database(d))
                            if d.code().as_deref() == Some("5") && tries < 100 =>
                        {
                            tries += 1;
                            tokio::time::sleep(Duration::from_millis(50)).await;
                        }
                        r => break r.map_err(|e| sqlite_open_error(url, &file, &e))?,
                    }
                };
                return Ok(Db::Sqlite(pool));
            }
        }
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            #[cfg(feature = "postgres")]
            {
                let opts = sqlx::postgres::PgConnectOptions::from_str(url).map_err(connect_err)?;
                // One connection first, to say at once why none can be had
                // (the pool would retry until its acquire timeout, then say
                // only that it timed out).
                let (host, port) = (opts.get_host().to_owned(), opts.get_port());
                match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await
                {
                    Ok(Ok(conn)) => conn.close().await.map_err(connect_err)?,
                    Ok(Err(e)) => {
                        return Err(Error::Connect {
                            url: redact(url),
                            message: redact_with(&explain_pg(&e, &host, port), url),
                        });
                    }
                    Err(_) => {
                        return Err(Error::Connect {
                            url: redact(url),
                            message: format!(
                                "no answer from {host}:{port} within {} s (is the host reachable?)",
                                CONNECT_TIMEOUT.as_secs()
                            ),
                        });
                    }
                }
                let pool = PgPoolOptions::new()
                    .max_connections(max_connections)
                    // A ping per acquire is a round trip per statement; ping
                    // only connections that may have died while idle.
                    .test_before_acquire(false)
                    .before_acquire(|conn, meta| {
                        Box::pin(async move {
                            if suspect(&meta) {
                                sqlx::Connection::ping(conn).await?;
                            }
                            Ok(true)
                        })
                    })
                    .acquire_timeout(Duration::from_secs(10))
                    .connect_with(opts)
                    .await
                    .map_err(connect_err)?;
                return Ok(Db::Postgres(pool));
            }
        }
        Err(Error::UnsupportedUrl {
            url: redact(url),
            enabled: Backend::ENABLED,
        })
    }

    /// The engine behind this pool.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite pool, if this is SQLite.
    #[cfg(feature = "sqlite")]
    pub fn as_sqlite(&self) -> Option<&SqlitePool> {
        match self {
            Db::Sqlite(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// The PostgreSQL pool, if this is PostgreSQL.
    #[cfg(feature = "postgres")]
    pub fn as_postgres(&self) -> Option<&PgPool> {
        match self {
            Db::Postgres(p) => Some(p),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => p.close().await,
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => p.close().await,
        }
    }
}

/// A `Db` on an application's own pool, configured as the application
/// chose (`Db::connect` sets SQLite's WAL mode and busy timeout itself).
#[cfg(feature = "sqlite")]
impl From<SqlitePool> for Db {
    fn from(pool: SqlitePool) -> Self {
        Db::Sqlite(pool)
    }
}

/// A `Db` on an application's own pool.
#[cfg(feature = "postgres")]
impl From<PgPool> for Db {
    fn from(pool: PgPool) -> Self {
        Db::Postgres(pool)
    }
}

/// How long the first connection to a PostgreSQL server may take.
#[cfg(feature = "postgres")]
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a first PostgreSQL connection failed, naming host and port.
#[cfg(feature = "postgres")]
fn explain_pg(e: &sqlx::Error, host: &str, port: u16) -> String {
    if let sqlx::Error::Io(io) = e {
        return match io.kind() {
            std::io::ErrorKind::ConnectionRefused => format!(
                "connection refused by {host}:{port}: no PostgreSQL server listens there ({io})"
            ),
            _ => format!("cannot reach {host}:{port}: {io}"),
        };
    }
    format!("{host}:{port}: {e}")
}

/// Why a SQLite database could not be opened, saying where.
#[cfg(feature = "sqlite")]
fn sqlite_open_error(url: &str, file: &std::path::Path, e: &sqlx::Error) -> Error {
    let code = match e {
        sqlx::Error::Database(d) => d.code().map(std::borrow::Cow::into_owned),
        _ => None,
    };
    let dir = match file.parent() {
        Some(d) if d.as_os_str().is_empty() => std::path::Path::new("."),
        Some(d) => d,
        None => std::path::Path::new("/"),
    };
    let reason = if !dir.is_dir() {
        Some(format!("its directory {} does not exist", dir.display()))
    } else if matches!(code.as_deref(), Some("1544" | "8" | "14")) {
        Some(format!(
            "its directory {} is not writable (SQLite creates the database and its -wal and -shm \
             files there)",
            dir.display()
        ))
    } else {
        None
    };
    Error::Connect {
        url: redact(url),
        message: match reason {
            Some(r) => format!(
                "cannot open the SQLite database {}: {r} ({e})",
                file.display()
            ),
            None => redact_with(&e.to_string(), url),
        },
    }
}

/// Idle connections older than this are pinged before use.
#[cfg(feature = "postgres")]
const IDLE_PING: Duration = Duration::from_secs(30);

/// When this process last saw the database fail (a lost connection, a
/// restart): connections idle since before then are pinged before use.
static FAULT_AT: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// Records a database fault (see [`Error::is_retryable`]): connections that
/// sat idle through it are checked before they are used again.
pub(crate) fn note_fault() {
    *FAULT_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
}

/// Whether a pooled connection may have died while idle.
#[cfg(feature = "postgres")]
fn suspect(meta: &sqlx::pool::PoolConnectionMetadata) -> bool {
    if meta.idle_for >= IDLE_PING {
        return true;
    }
    let idle_since = std::time::Instant::now().checked_sub(meta.idle_for);
    let fault = *FAULT_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    match (fault, idle_since) {
        (Some(f), Some(since)) => f >= since,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// A transaction of either backend, for the worker's batched write-backs.
pub(crate) enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Db {
    /// Begins a transaction that holds the database's migration lock from
    /// its start (SQLite: `BEGIN IMMEDIATE`, the write lock; PostgreSQL: a
    /// transaction-scoped advisory lock), so two migrations never inspect
    /// the schema at once.
    pub(crate) async fn begin_exclusive(&self) -> Result<Tx> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Tx::Sqlite(p.begin_with("BEGIN IMMEDIATE").await?),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => {
                let mut tx = p.begin().await?;
                sqlx::query("SELECT pg_advisory_xact_lock(7438002)")
                    .execute(&mut *tx)
                    .await?;
                Tx::Postgres(tx)
            }
        })
    }

    /// After a migration: idle SQLite connections still hold the old schema,
    /// and one that prepares a `SELECT *` with it breaks sqlx when SQLite
    /// re-prepares; a read makes each reload it.
    pub(crate) async fn after_migrate(&self) -> Result<()> {
        #[cfg(feature = "sqlite")]
        #[allow(irrefutable_let_patterns)] // a build with SQLite alone
        if let Db::Sqlite(pool) = self {
            let mut refreshed = Vec::new();
            while let Some(mut conn) = pool.try_acquire() {
                sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
                    .execute(&mut *conn)
                    .await?;
                refreshed.push(conn);
            }
        }
        Ok(())
    }

    /// Begins a transaction on a pooled connection.
    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }
}

impl Tx {
    /// A context running inside the transaction.
    pub(crate) fn ctx(&mut self) -> Ctx<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t) => (&mut **t).into_ctx(),
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => (&mut **t).into_ctx(),
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t) => t.commit().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// A borrowed connection of either backend, for the user's own queries in a
/// calculate function.
#[derive(Debug)]
#[non_exhaustive]
pub enum Conn<'a> {
    /// A SQLite connection.
    #[cfg(feature = "sqlite")]
    Sqlite(&'a mut SqliteConnection),
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    Postgres(&'a mut PgConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed for a shorter time.
    fn reborrow(&mut self) -> Conn<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => Conn::Sqlite(c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

#[derive(Debug)]
enum Pooled {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Pooled {
    /// The held connection, borrowed.
    fn conn(&mut self) -> Conn<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            #[cfg(feature = "postgres")]
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

#[derive(Debug)]
enum Inner<'c> {
    Pool { db: Db, held: Option<Pooled> },
    Borrowed(Conn<'c>),
}

/// Where statements run: a pool, or one connection (possibly inside the
/// caller's transaction). Calculate functions receive one.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cached_fields::Result<()> {
/// use cached_fields::{Conn, Ctx, Db};
/// let db = Db::connect("sqlite::memory:").await?;
/// let mut ctx = Ctx::from(&db);
/// let one: i64 = match ctx.conn().await? {
///     Conn::Sqlite(c) => sqlx::query_scalar("SELECT 1").fetch_one(c).await?,
///     Conn::Postgres(c) => sqlx::query_scalar("SELECT 1::bigint").fetch_one(c).await?,
///     _ => unimplemented!("a backend added later"),
/// };
/// assert_eq!(one, 1);
/// # Ok(()) }
/// ```
#[derive(Debug)]
pub struct Ctx<'c> {
    inner: Inner<'c>,
}

impl From<&Db> for Ctx<'static> {
    fn from(db: &Db) -> Self {
        Ctx {
            inner: Inner::Pool {
                db: db.clone(),
                held: None,
            },
        }
    }
}

/// Anything the runtime can run statements on: `&Db`, a connection, a
/// transaction, or a calculate function's `&mut Ctx`.
pub trait Target<'c>: Send {
    /// Turns the target into a [`Ctx`].
    fn into_ctx(self) -> Ctx<'c>;
}

impl<'c> Target<'c> for &'c Db {
    fn into_ctx(self) -> Ctx<'c> {
        Ctx::from(self)
    }
}

impl<'c> Target<'c> for &'c mut Ctx<'_> {
    fn into_ctx(self) -> Ctx<'c> {
        let inner = match &mut self.inner {
            // Share the connection the parent holds; else take one lazily.
            Inner::Pool {
                held: Some(held), ..
            } => Inner::Borrowed(held.conn()),
            Inner::Pool { db, held: None } => Inner::Pool {
                db: db.clone(),
                held: None,
            },
            Inner::Borrowed(conn) => Inner::Borrowed(conn.reborrow()),
        };
        Ctx { inner }
    }
}

#[cfg(feature = "sqlite")]
impl<'c> Target<'c> for &'c mut SqliteConnection {
    fn into_ctx(self) -> Ctx<'c> {
        Ctx {
            inner: Inner::Borrowed(Conn::Sqlite(self)),
        }
    }
}

#[cfg(feature = "sqlite")]
impl<'c> Target<'c> for &'c mut sqlx::Transaction<'_, sqlx::Sqlite> {
    fn into_ctx(self) -> Ctx<'c> {
        (&mut **self).into_ctx()
    }
}

#[cfg(feature = "postgres")]
impl<'c> Target<'c> for &'c mut PgConnection {
    fn into_ctx(self) -> Ctx<'c> {
        Ctx {
            inner: Inner::Borrowed(Conn::Postgres(self)),
        }
    }
}

#[cfg(feature = "postgres")]
impl<'c> Target<'c> for &'c mut sqlx::Transaction<'_, sqlx::Postgres> {
    fn into_ctx(self) -> Ctx<'c> {
        (&mut **self).into_ctx()
    }
}

/// What a calculate function (or batch function, or hook) the derive
/// wires up may take as its connection argument: the library's `&mut Ctx`
/// (any backend), or one backend's own connection — `&mut
/// sqlx::SqliteConnection`, `&mut sqlx::PgConnection` — for an application
/// that uses that backend only, with no match on a backend enum.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> cached_fields::Result<()> {
/// use cached_fields::{Ctx, Db, db::FromCtx};
/// let db = Db::connect("sqlite::memory:").await?;
/// let mut ctx = Ctx::from(&db);
/// let conn = <&mut sqlx::SqliteConnection>::from_ctx(&mut ctx).await?;
/// let one: i64 = sqlx::query_scalar("SELECT 1").fetch_one(conn).await?;
/// assert_eq!(one, 1);
/// # Ok(()) }
/// ```
pub trait FromCtx<'a, 'c: 'a>: Sized + Send + 'a {
    /// This argument, from the context the library runs the function in;
    /// [`Error::WrongBackend`] when the context is on another backend.
    fn from_ctx(ctx: &'a mut Ctx<'c>) -> BoxFuture<'a, Result<Self>>;
}

impl<'a, 'c: 'a> FromCtx<'a, 'c> for &'a mut Ctx<'c> {
    fn from_ctx(ctx: &'a mut Ctx<'c>) -> BoxFuture<'a, Result<Self>> {
        Box::pin(async move { Ok(ctx) })
    }
}

/// The derive's call of [`FromCtx::from_ctx`], with the argument type
/// inferred from the user's function.
#[doc(hidden)]
pub fn from_ctx<'a, 'c: 'a, C: FromCtx<'a, 'c>>(ctx: &'a mut Ctx<'c>) -> BoxFuture<'a, Result<C>> {
    C::from_ctx(ctx)
}

#[cfg(feature = "sqlite")]
impl<'a, 'c: 'a> FromCtx<'a, 'c> for &'a mut SqliteConnection {
    fn from_ctx(ctx: &'a mut Ctx<'c>) -> BoxFuture<'a, Result<Self>> {
        Box::pin(async move {
            let actual = ctx.backend();
            match ctx.conn().await? {
                Conn::Sqlite(c) => Ok(c),
                #[allow(unreachable_patterns)]
                _ => Err(Error::WrongBackend {
                    wanted: "SQLite",
                    actual,
                }),
            }
        })
    }
}

#[cfg(feature = "postgres")]
impl<'a, 'c: 'a> FromCtx<'a, 'c> for &'a mut PgConnection {
    fn from_ctx(ctx: &'a mut Ctx<'c>) -> BoxFuture<'a, Result<Self>> {
        Box::pin(async move {
            let actual = ctx.backend();
            match ctx.conn().await? {
                Conn::Postgres(c) => Ok(c),
                #[allow(unreachable_patterns)]
                _ => Err(Error::WrongBackend {
                    wanted: "PostgreSQL",
                    actual,
                }),
            }
        })
    }
}

/// Runs `$query` with `$exec` bound to the context's connection (taken from
/// the pool on first use and held: one connection per context, so nested
/// work cannot exhaust the pool) and `$args` to the bound `$values`, then
/// `$then` with its backend-specific output as `$out`. A statement the
/// connection prepared before a column it returns was retyped is prepared
/// again and run once more.
macro_rules! on_backend {
    ($ctx:expr, $values:expr, |$exec:ident, $args:ident| $query:expr, |$out:ident| $then:expr) => {{
        // Runs the query on `conn` with arguments from `to_args`, once more
        // after preparing it again if the plan went stale.
        macro_rules! run {
            ($conn:ident, $to_args:ident) => {{
                let first = {
                    let $exec = &mut *$conn;
                    let $args = $to_args($values)?;
                    $query
                };
                let result = match first {
                    Err(e) if stale_plan(&e) => {
                        $conn.clear_cached_statements().await?;
                        let $exec = &mut *$conn;
                        let $args = $to_args($values)?;
                        $query
                    }
                    r => r,
                };
                let $out = result?;
                $then
            }};
        }
        match $ctx.conn().await? {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(conn) => run!(conn, sqlite_args),
            #[cfg(feature = "postgres")]
            Conn::Postgres(conn) => run!(conn, pg_args),
        }
    }};
}

/// A statement prepared on this connection before a column it returns was
/// retyped (PostgreSQL: "cached plan must not change result type"): it
/// works once prepared again.
fn stale_plan(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("0A000")
                && d.message()
                    .contains("cached plan must not change result type")
        }
        _ => false,
    }
}

impl<'c> Ctx<'c> {
    /// A context on any [`Target`]: a pool, a connection or a transaction.
    pub fn from_target(target: impl Target<'c>) -> Self {
        target.into_ctx()
    }

    /// The pool this context takes connections from, if it is not on a
    /// borrowed connection (which may be inside a caller's transaction).
    pub(crate) fn db(&self) -> Option<Db> {
        match &self.inner {
            Inner::Pool { db, .. } => Some(db.clone()),
            Inner::Borrowed(_) => None,
        }
    }

    /// The engine behind this context.
    pub fn backend(&self) -> Backend {
        match &self.inner {
            Inner::Pool { db, .. } => db.backend(),
            #[cfg(feature = "sqlite")]
            Inner::Borrowed(Conn::Sqlite(_)) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Inner::Borrowed(Conn::Postgres(_)) => Backend::Postgres,
        }
    }

    /// A connection for the caller's own queries: the caller's connection or
    /// transaction, or one taken from the pool and held until the context ends.
    pub async fn conn(&mut self) -> Result<Conn<'_>> {
        match &mut self.inner {
            Inner::Pool { db, held } => {
                if held.is_none() {
                    *held = Some(match db {
                        #[cfg(feature = "sqlite")]
                        Db::Sqlite(p) => Pooled::Sqlite(p.acquire().await?),
                        #[cfg(feature = "postgres")]
                        Db::Postgres(p) => Pooled::Postgres(p.acquire().await?),
                    });
                }
                match held.as_mut() {
                    Some(h) => Ok(h.conn()),
                    None => unreachable!("a connection was just stored"),
                }
            }
            Inner::Borrowed(conn) => Ok(conn.reborrow()),
        }
    }

    /// Runs a statement built by this crate; returns the rows affected.
    pub(crate) async fn execute(&mut self, sql: String, values: &[Value]) -> Result<u64> {
        on_backend!(
            self,
            values,
            |exec, args| sqlx::query_with(ident::sql(sql.clone()), args)
                .execute(exec)
                .await,
            |done| Ok(done.rows_affected())
        )
    }

    /// Runs a query and reads each row's columns as `types`, in order.
    pub(crate) async fn fetch_values(
        &mut self,
        sql: String,
        values: &[Value],
        types: &[SqlType],
    ) -> Result<Vec<Vec<Value>>> {
        on_backend!(
            self,
            values,
            |exec, args| sqlx::query_with(ident::sql(sql.clone()), args)
                .fetch_all(exec)
                .await,
            |rows| rows
                .iter()
                .map(|row| {
                    types
                        .iter()
                        .enumerate()
                        .map(|(i, ty)| row.value_at(i, *ty).map_err(Error::from))
                        .collect()
                })
                .collect()
        )
    }

    /// Runs a query and decodes each row as the model `M` on its own, so
    /// one row that cannot be decoded fails alone: each comes with its key
    /// (read from column `pk`) when that much could be read.
    pub(crate) async fn fetch_models_each<M: CachedModel>(
        &mut self,
        sql: String,
        values: &[Value],
        pk: &str,
        key_type: SqlType,
    ) -> Result<Vec<(Option<Key>, Result<M>)>> {
        on_backend!(
            self,
            values,
            |exec, args| sqlx::query_with(ident::sql(sql.clone()), args)
                .fetch_all(exec)
                .await,
            |rows| Ok(rows
                .iter()
                .map(|row| {
                    let key = row
                        .value_at(pk, key_type)
                        .ok()
                        .and_then(|v| Key::from_value(&v));
                    (key, M::from_row(row).map_err(Error::from))
                })
                .collect())
        )
    }

    /// Runs a query and decodes each row as the model `M`.
    pub(crate) async fn fetch_models<M: CachedModel>(
        &mut self,
        sql: String,
        values: &[Value],
    ) -> Result<Vec<M>> {
        on_backend!(
            self,
            values,
            |exec, args| sqlx::query_as_with::<_, M, _>(ident::sql(sql.clone()), args)
                .fetch_all(exec)
                .await,
            |models| Ok(models)
        )
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_args(values: &[Value]) -> Result<sqlx::sqlite::SqliteArguments> {
    let mut args = sqlx::sqlite::SqliteArguments::default();
    for v in values {
        let r = match v {
            Value::Null(_) => args.add(Option::<i64>::None),
            Value::Int(x) => args.add(*x),
            Value::Float(x) => args.add(*x),
            Value::Bool(x) => args.add(*x),
            Value::Text(x) => args.add(x.clone()),
            Value::Date(x) => args.add(*x),
            Value::Time(x) => args.add(*x),
            Value::Timestamp(x) => args.add(*x),
            Value::Json(x) => args.add(x.to_string()),
            #[cfg(feature = "uuid")]
            Value::Uuid(x) => args.add(*x),
        };
        r.map_err(|e| Error::from(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

#[cfg(feature = "postgres")]
fn pg_args(values: &[Value]) -> Result<sqlx::postgres::PgArguments> {
    let mut args = sqlx::postgres::PgArguments::default();
    for v in values {
        let r = match v {
            Value::Null(t) => match t {
                SqlType::Int => args.add(Option::<i64>::None),
                SqlType::Float => args.add(Option::<f64>::None),
                SqlType::Bool => args.add(Option::<bool>::None),
                SqlType::Text => args.add(Option::<String>::None),
                SqlType::Date => args.add(Option::<NaiveDate>::None),
                SqlType::Time => args.add(Option::<NaiveTime>::None),
                SqlType::Timestamp => args.add(Option::<DateTime<Utc>>::None),
                SqlType::Json => args.add(Option::<sqlx::types::Json<serde_json::Value>>::None),
                #[cfg(feature = "uuid")]
                SqlType::Uuid => args.add(Option::<uuid::Uuid>::None),
            },
            Value::Int(x) => args.add(*x),
            Value::Float(x) => args.add(*x),
            Value::Bool(x) => args.add(*x),
            Value::Text(x) => args.add(x.clone()),
            Value::Date(x) => args.add(*x),
            Value::Time(x) => args.add(*x),
            Value::Timestamp(x) => args.add(*x),
            Value::Json(x) => args.add(sqlx::types::Json(x.clone())),
            #[cfg(feature = "uuid")]
            Value::Uuid(x) => args.add(*x),
        };
        r.map_err(|e| Error::from(sqlx::Error::Encode(e)))?;
    }
    Ok(args)
}

/// A row of either backend that can yield cached-field columns; used by the
/// `FromRow` implementations the derive generates.
pub trait CachedRow: Row {
    /// Reads column `index` (a name or position) as a value of type `ty`.
    fn value_at<I>(&self, index: I, ty: SqlType) -> Result<Value, sqlx::Error>
    where
        I: sqlx::ColumnIndex<Self> + std::fmt::Debug + Copy;
}

macro_rules! impl_cached_row {
    ($row:ty, $json:ty, |$j:ident| $to_json:expr) => {
        impl CachedRow for $row {
            fn value_at<I>(&self, index: I, ty: SqlType) -> Result<Value, sqlx::Error>
            where
                I: sqlx::ColumnIndex<Self> + std::fmt::Debug + Copy,
            {
                fn wrap<T>(v: Option<T>, ty: SqlType, f: impl FnOnce(T) -> Value) -> Value {
                    v.map_or(Value::Null(ty), f)
                }
                Ok(match ty {
                    // An `INTEGER` (i32) key column reads as i64 too.
                    SqlType::Int => match self.try_get::<Option<i64>, _>(index) {
                        Ok(v) => wrap(v, ty, Value::Int),
                        Err(e) => match self.try_get::<Option<i32>, _>(index) {
                            Ok(v) => wrap(v, ty, |x| Value::Int(i64::from(x))),
                            Err(_) => return Err(e),
                        },
                    },
                    #[cfg(feature = "uuid")]
                    SqlType::Uuid => wrap(
                        self.try_get::<Option<uuid::Uuid>, _>(index)?,
                        ty,
                        Value::Uuid,
                    ),
                    SqlType::Float => {
                        wrap(self.try_get::<Option<f64>, _>(index)?, ty, Value::Float)
                    }
                    SqlType::Bool => wrap(self.try_get::<Option<bool>, _>(index)?, ty, Value::Bool),
                    SqlType::Text => {
                        wrap(self.try_get::<Option<String>, _>(index)?, ty, Value::Text)
                    }
                    SqlType::Date => wrap(
                        self.try_get::<Option<NaiveDate>, _>(index)?,
                        ty,
                        Value::Date,
                    ),
                    SqlType::Time => wrap(
                        self.try_get::<Option<NaiveTime>, _>(index)?,
                        ty,
                        Value::Time,
                    ),
                    SqlType::Timestamp => wrap(
                        self.try_get::<Option<DateTime<Utc>>, _>(index)?,
                        ty,
                        Value::Timestamp,
                    ),
                    SqlType::Json => match self.try_get::<Option<$json>, _>(index)? {
                        None => Value::Null(ty),
                        Some($j) => {
                            Value::Json($to_json.map_err(|e| sqlx::Error::ColumnDecode {
                                index: format!("{index:?}"),
                                source: Box::new(e),
                            })?)
                        }
                    },
                })
            }
        }
    };
}

#[cfg(feature = "sqlite")]
impl_cached_row!(SqliteRow, String, |s| serde_json::from_str::<
    serde_json::Value,
>(&s));
#[cfg(feature = "postgres")]
impl_cached_row!(PgRow, sqlx::types::Json<serde_json::Value>, |j| Ok::<
    _,
    serde_json::Error,
>(j.0));

#[cfg(test)]
mod tests {
    use super::{redact, redact_with};

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(
            redact("postgres://u:secret@h:5432/db"),
            "postgres://u:***@h:5432/db"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        assert_eq!(redact("sqlite:x.db"), "sqlite:x.db");
        assert_eq!(
            redact("postgres://h/db?user=u&password=p%40ss&sslmode=disable"),
            "postgres://h/db?user=u&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_with("bad password p@ss", "postgres://h/db?password=p%40ss"),
            "bad password ***"
        );
        assert_eq!(redact("postgres://h/db?x=a@b"), "postgres://h/db?x=a@b");
    }
}
