//! Everything that differs between database engines, one module per
//! engine behind the library's own traits: `Dialect`, the SQL an engine
//! speaks (column types, timestamps, the claim, triggers, introspection),
//! and the drivers, the connections of the engines this build enables.
//! A new engine is a new folder here and one arm per `match` in this file.

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
            ($conn:ident, $to_args:path, $backend:expr) => {{
                let first = {
                    let $exec = &mut *$conn;
                    let $args = $to_args($values)?;
                    $query
                };
                let result = match first {
                    Err(e) if $backend.dialect().is_stale_plan(&e) => {
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
        #[allow(unused_imports)]
        use ::sqlx::Connection as _;
        match $ctx.conn().await? {
            #[cfg(feature = "sqlite")]
            $crate::backend::Conn::Sqlite(conn) => {
                run!(
                    conn,
                    $crate::backend::sqlite::driver::args,
                    $crate::backend::Backend::Sqlite
                )
            }
            #[cfg(feature = "postgres")]
            $crate::backend::Conn::Postgres(conn) => {
                if $crate::connect::named_statements() || conn.is_in_transaction() {
                    run!(
                        conn,
                        $crate::backend::postgres::driver::args,
                        $crate::backend::Backend::Postgres
                    )
                } else {
                    // Behind a transaction-mode pooler: an unnamed
                    // statement is parsed and then bound in two round
                    // trips, which must reach the same server connection.
                    let mut tx = conn.begin().await?;
                    let conn = &mut *tx;
                    let out = run!(
                        conn,
                        $crate::backend::postgres::driver::args,
                        $crate::backend::Backend::Postgres
                    );
                    tx.commit().await?;
                    out
                }
            }
        }
    }};
}

pub(crate) use on_backend;

macro_rules! impl_cached_row {
    ($row:ty, $json:ty, |$j:ident| $to_json:expr) => {
        impl $crate::db::CachedRow for $row {
            fn value_at<I>(&self, index: I, ty: SqlType) -> Result<Value, sqlx::Error>
            where
                I: sqlx::ColumnIndex<Self> + std::fmt::Debug + Copy,
            {
                fn wrap<T>(v: Option<T>, ty: SqlType, f: impl FnOnce(T) -> Value) -> Value {
                    v.map_or(Value::Null(ty), f)
                }
                Ok(match ty {
                    // An `INTEGER` (i32) key column reads as i64 too.
                    SqlType::Int => match ::sqlx::Row::try_get::<Option<i64>, _>(self, index) {
                        Ok(v) => wrap(v, ty, Value::Int),
                        Err(e) => match ::sqlx::Row::try_get::<Option<i32>, _>(self, index) {
                            Ok(v) => wrap(v, ty, |x| Value::Int(i64::from(x))),
                            Err(_) => return Err(e),
                        },
                    },
                    #[cfg(feature = "uuid")]
                    SqlType::Uuid => wrap(
                        ::sqlx::Row::try_get::<Option<uuid::Uuid>, _>(self, index)?,
                        ty,
                        Value::Uuid,
                    ),
                    SqlType::Float => wrap(
                        ::sqlx::Row::try_get::<Option<f64>, _>(self, index)?,
                        ty,
                        Value::Float,
                    ),
                    SqlType::Bool => wrap(
                        ::sqlx::Row::try_get::<Option<bool>, _>(self, index)?,
                        ty,
                        Value::Bool,
                    ),
                    SqlType::Text => wrap(
                        ::sqlx::Row::try_get::<Option<String>, _>(self, index)?,
                        ty,
                        Value::Text,
                    ),
                    SqlType::Date => wrap(
                        ::sqlx::Row::try_get::<Option<NaiveDate>, _>(self, index)?,
                        ty,
                        Value::Date,
                    ),
                    SqlType::Time => wrap(
                        ::sqlx::Row::try_get::<Option<NaiveTime>, _>(self, index)?,
                        ty,
                        Value::Time,
                    ),
                    SqlType::Timestamp => wrap(
                        ::sqlx::Row::try_get::<Option<DateTime<Utc>>, _>(self, index)?,
                        ty,
                        Value::Timestamp,
                    ),
                    SqlType::Json => match ::sqlx::Row::try_get::<Option<$json>, _>(self, index)? {
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

/// What every driver provides for its own types: `Db::as_…` for its pool,
/// `Db::from(pool)`, its connection and transaction as [`Target`]s, its
/// connection as a calculate function's argument ([`FromCtx`]), and
/// reading a model from its row type (`Decoders::…`, `DecodeRow`).
///
/// [`Target`]: crate::db::Target
/// [`FromCtx`]: crate::db::FromCtx
macro_rules! driver_types {
    ($feature:literal, $variant:ident, $pool:ty, $conn:ty, $database:ty, $row:ty, $name:literal, $as:ident, $reader:ident) => {
        impl<M> $crate::backend::Decoders<M> {
            #[doc = concat!("Reads ", $name, " rows through the model's `FromRow`.")]
            #[must_use]
            #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
            pub fn $reader(mut self) -> Self
            where
                M: for<'r> sqlx::FromRow<'r, $row>,
            {
                fn read<M: for<'r> sqlx::FromRow<'r, $row>>(row: &$row) -> Result<M, sqlx::Error> {
                    M::from_row(row)
                }
                self.$reader = Some(read::<M>);
                self
            }
        }

        impl $crate::backend::DecodeRow for $row {
            fn decode<M: $crate::CachedModel>(&self) -> $crate::Result<M> {
                let model = M::model()?;
                match model.decoders().$reader {
                    Some(read) => read(self).map_err($crate::Error::from),
                    None => Err($crate::backend::no_reader(
                        model.table().as_str(),
                        $crate::Backend::$variant,
                    )),
                }
            }
        }

        impl $crate::backend::Db {
            #[doc = concat!("The ", $name, " pool, if this is ", $name, ".")]
            #[cfg_attr(docsrs, doc(cfg(feature = $feature)))]
            pub fn $as(&self) -> Option<&$pool> {
                match self {
                    $crate::backend::Db::$variant(p) => Some(p),
                    #[allow(unreachable_patterns)]
                    _ => None,
                }
            }
        }

        /// A `Db` on an application's own pool, configured as the
        /// application chose (`Db::connect` sets the library's options).
        impl From<$pool> for $crate::backend::Db {
            fn from(pool: $pool) -> Self {
                $crate::backend::Db::$variant(pool)
            }
        }

        impl<'c> $crate::db::Target<'c> for &'c mut $conn {
            fn into_ctx(self) -> $crate::db::Ctx<'c> {
                $crate::db::Ctx::borrowed($crate::backend::Conn::$variant(self))
            }
        }

        impl<'c> $crate::db::Target<'c> for &'c mut sqlx::Transaction<'_, $database> {
            fn into_ctx(self) -> $crate::db::Ctx<'c> {
                $crate::db::Target::into_ctx(&mut **self)
            }
        }

        impl<'a, 'c: 'a> $crate::db::FromCtx<'a, 'c> for &'a mut $conn {
            fn from_ctx(
                ctx: &'a mut $crate::db::Ctx<'c>,
            ) -> futures::future::BoxFuture<'a, $crate::Result<Self>> {
                Box::pin(async move {
                    let actual = ctx.backend();
                    match ctx.conn().await? {
                        $crate::backend::Conn::$variant(c) => Ok(c),
                        #[allow(unreachable_patterns)]
                        _ => Err($crate::Error::WrongBackend {
                            wanted: $name,
                            actual,
                        }),
                    }
                })
            }
        }
    };
}

pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::ident::Ident;
use crate::model::FieldColumns;
#[allow(unused_imports)] // used by the modules below
use crate::schema::normalize;
use crate::schema::{FieldSpec, SchemaObject, TableSpec, TriggerInfo};
use crate::statements::{FieldSql, Prefix};
use crate::triggers::{Catalog, Reach};
use crate::value::{SqlType, Value};

/// Which database engine a [`Db`] talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, the embedded default.
    Sqlite,
    /// PostgreSQL, the scale-out engine.
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dialect().name())
    }
}

impl Backend {
    /// Everything about SQL that differs on this backend.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Backend::Sqlite => &sqlite::Sqlite,
            Backend::Postgres => &postgres::Postgres,
        }
    }
}

impl Backend {
    /// The backends compiled into this build and their URL forms, for messages.
    pub const ENABLED: &'static str = if cfg!(all(feature = "sqlite", feature = "postgres")) {
        "sqlite (sqlite:FILE, sqlite::memory:), postgres (postgres://…)"
    } else if cfg!(feature = "sqlite") {
        "sqlite (sqlite:FILE, sqlite::memory:)"
    } else {
        "postgres (postgres://…)"
    };

    /// Help for a database URL option: the forms this build accepts.
    pub const URL_HELP: &'static str = if cfg!(all(feature = "sqlite", feature = "postgres")) {
        "Database URL: sqlite:FILE or postgres://… (or the environment's DATABASE_URL)"
    } else if cfg!(feature = "sqlite") {
        "Database URL: sqlite:FILE (or the environment's DATABASE_URL)"
    } else {
        "Database URL: postgres://… (or the environment's DATABASE_URL)"
    };

    /// Every backend the library knows (compiled in or not), for what does
    /// not need a connection: generated SQL, error classification.
    pub const ALL: &'static [Backend] = &[Backend::Sqlite, Backend::Postgres];
}

impl Backend {
    /// The backend a database URL names, if this build has it.
    ///
    /// ```
    /// use cached_fields::Backend;
    /// assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
    /// assert!(Backend::of_url("mysql://localhost").is_err());
    /// ```
    pub fn of_url(url: &str) -> crate::Result<Backend> {
        if url.starts_with("sqlite:") && cfg!(feature = "sqlite") {
            return Ok(Backend::Sqlite);
        }
        if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && cfg!(feature = "postgres")
        {
            return Ok(Backend::Postgres);
        }
        Err(crate::Error::UnsupportedUrl {
            url: crate::db::redact(url),
            enabled: Backend::ENABLED,
        })
    }
}

/// Which settings a library statement carries, where the engine has
/// per-statement settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settings {
    /// None: an application's statement, which may run in its transaction.
    None,
    /// The worker's: asynchronous commit, a short lock timeout, and the
    /// mark the guard trigger skips.
    Worker,
    /// The mark alone: a library statement that never writes a cached
    /// value, on a connection of its own.
    Marked,
}

/// Where a [`Dialect::lock_claim`] starts its walk of the flagged rows, in
/// the order they were flagged (`F_stale_since`, then key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClaimFrom {
    /// The first flagged row.
    First,
    /// The rows flagged at or after `$4`.
    Time,
    /// The rows after (`F_stale_since`, key) = (`$4`, `$5`).
    Row,
}

/// The SQL one engine speaks: every fragment the runtime, the worker and
/// the schema tools build statements from that is not the same everywhere.
/// Names reach it quoted; values are always bound (`$1`, `$2`, …).
pub(crate) trait Dialect: Sync {
    /// The engine's name, for messages.
    fn name(&self) -> &'static str;
    /// Whether the worker writes a batch's results in one transaction (one
    /// write lock, one commit) rather than as autocommit statements.
    fn writes_in_one_transaction(&self) -> bool;
    /// The column type that holds a value of type `ty`.
    fn column_type(&self, ty: SqlType) -> &'static str;
    /// Now plus `ms` milliseconds, as a timestamp expression.
    fn now_plus(&self, ms: i64) -> String;
    /// When a hot row stale since `since`, due at `next`, is next due
    /// (see [`crate::statements::hot_until`]).
    fn hot_until(&self, since: &str, next: &str, pause_ms: i64, cap_ms: i64) -> String;
    /// `col <= param` for timestamps.
    fn ts_le(&self, col: &str, param: &str) -> String;
    /// A timestamp expression as seconds since the Unix epoch (float).
    fn epoch(&self, expr: &str) -> String;
    /// The indexed expression of an expiry column `x`, whose `MIN` reads the
    /// index's first entry, and how to turn that minimum `m` into epoch
    /// seconds.
    fn indexed_expiry(&self, x: &str) -> (String, String);
    /// The text a statement with `settings` starts with, and the `FROM`
    /// items that make it evaluate them first.
    fn prefix(&self, settings: Settings) -> Prefix;
    /// Claims up to `$3` due rows of `f` by leasing them until `$2` (`$1`
    /// is now), returning `select_list`, without scanning the table; in the
    /// same write, leases the fields `with` of those rows where no one else
    /// holds them (their batch's companions, see `worker::together`). Where
    /// the backend can without locking more rows than it claims, passes
    /// over a row one of `leaders` has due (it goes with their batch).
    fn claim(
        &self,
        f: &FieldSql<'_>,
        select_list: &str,
        with: &[&FieldColumns],
        pass: &crate::statements::PassOver<'_>,
    ) -> String;
    /// Where the engine can lease without writing the row: a query, run in
    /// the transaction that holds the leases until the batch is written
    /// (locks that die with its connection), that locks up to `$3` due keys
    /// of `f` (`$1` now) and returns them, each with its `F_stale_since`
    /// and whether it was read in the order rows were flagged (flagged,
    /// not backing off), leaving out a row that one of `leaders` (fields
    /// that take `f` with their batches) has due; the rows read in that
    /// order start where `from` says. After those three columns, one per
    /// field of `companions` (fields of the same rows the batch calculates
    /// with `f`): whether this transaction holds its lock of the row too,
    /// tried only where that field is not waiting (a backoff or a hot
    /// row's pause ending after `$1`), so the batch holds its companions
    /// from its claim, with no statement of their own.
    /// `None`: leases are written into the row ([`claim`](Self::claim)).
    fn lock_claim(
        &self,
        f: &FieldSql<'_>,
        pass: &crate::statements::PassOver<'_>,
        companions: &[FieldSql<'_>],
        from: ClaimFrom,
    ) -> Option<String> {
        let _ = (f, pass, companions, from);
        None
    }
    /// Whether claims are locks ([`lock_claim`](Self::lock_claim) and
    /// [`try_lock`](Self::try_lock) give SQL) rather than leases written
    /// into the row.
    fn claims_by_lock(&self) -> bool {
        false
    }
    /// Where claims are locks in a table of limited size shared by every
    /// connection: a query giving how many locks that table holds, with
    /// the settings that size it (text, for messages).
    fn lock_table_size(&self) -> Option<&'static str> {
        None
    }
    /// Where claims are locks: the expression that tries the lock of `f`'s
    /// row whose key is `key` (true when taken, or held by this
    /// transaction already).
    fn try_lock(&self, f: &FieldSql<'_>, key: &str) -> Option<String> {
        let _ = (f, key);
        None
    }
    /// A query counting the tables called `table` (0 or 1).
    fn table_exists(&self, table: &str) -> String;
    /// Whether a database error with this code passes (busy, locked, a
    /// lost connection, a deadlock): the operation may be tried again.
    fn is_transient(&self, code: &str) -> bool;
    /// Whether this error means a statement the connection prepared before
    /// a column it returns was retyped: it works once prepared again.
    fn is_stale_plan(&self, _e: &sqlx::Error) -> bool {
        false
    }
    /// Why a value cannot be stored as it is, if it cannot.
    fn refuses(&self, value: &Value) -> Option<&'static str>;
    /// See [`crate::triggers::bump`].
    fn bump_trigger(&self, spec: &TableSpec, f: &FieldSpec) -> SchemaObject;
    /// See [`crate::triggers::insert`].
    fn insert_trigger(&self, spec: &TableSpec) -> SchemaObject;
    /// See [`crate::triggers::guards`].
    fn guard_triggers(&self, spec: &TableSpec) -> Vec<SchemaObject>;
    /// See [`crate::triggers::dependencies`].
    fn dependency_triggers(&self, spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject>;
    /// See [`crate::triggers::related`].
    fn related_triggers(&self, reaches: &[Reach<'_>], catalog: &Catalog) -> Vec<SchemaObject>;
    /// The event triggers that flag what a schema change rewrote, where
    /// the engine has them.
    fn ddl_triggers(&self, specs: &[TableSpec]) -> Vec<SchemaObject> {
        let _ = specs;
        Vec::new()
    }
    /// The processes holding a lock on one of `tables` or the migration
    /// lock, as (pid, state, query) rows, where the engine can say.
    fn lock_holders(&self, tables: &[&Ident]) -> Option<String> {
        let _ = tables;
        None
    }
    /// Whether a trigger function's source carries this library's marker.
    fn is_ours(&self, source: &str) -> bool;
    /// The statements that remove one of this library's triggers.
    fn drop_trigger(&self, table: &Ident, name: &Ident) -> Vec<String>;
    /// The statement that removes a trigger alone (its function stays, to be
    /// replaced), before a column it reads is rebuilt.
    fn drop_trigger_only(&self, table: &Ident, name: &Ident) -> String;
    /// The type and the rest of the definition of `F_stale_since`.
    fn stale_since_column(&self) -> (&'static str, &'static str);
    /// Whether a column the database reports as `actual` has the type
    /// declared as `declared`.
    fn same_type(&self, declared: &str, actual: &str) -> bool;
    /// An index key on `col` that sorts NULLs first.
    fn nulls_first(&self, col: &str) -> String;
    /// The statements that create this library's partial index `n` on `t`,
    /// marked as its own.
    fn create_index(&self, n: &str, t: &str, expr: &str, cond: &str) -> Vec<String>;
    /// The queries that read the schema.
    fn introspect(&self) -> Introspection;
    /// Whether an index whose extra text (its SQL or its comment) is
    /// `extra` is this library's.
    fn index_is_ours(&self, extra: &str) -> bool;
    /// A row of [`Introspection::triggers`], read.
    fn trigger_info(&self, row: &[String]) -> Option<(String, TriggerInfo)>;
}

/// The queries that read what exists. Each returns text columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Introspection {
    /// `$1` a table: its columns' names and types.
    pub(crate) columns: &'static str,
    /// Every index: name, table, and the text that marks it as ours.
    pub(crate) indexes: &'static str,
    /// Every trigger, one row of `trigger_columns` columns each, read by
    /// [`Dialect::trigger_info`].
    pub(crate) triggers: &'static str,
    pub(crate) trigger_columns: usize,
    /// `$1` a table: its single-column foreign keys as (column, referenced
    /// table, referenced column or "").
    pub(crate) foreign_keys: &'static str,
    /// Where an upsert can delete the row it conflicts with without firing
    /// delete triggers: `$1` a table, whether it has no rowid (an integer,
    /// 1 if so), and its unique indexes as (index, origin, column) rows,
    /// the primary key's first.
    pub(crate) keys: Option<[&'static str; 2]>,
    /// Where the engine has event triggers: each as (name, its function's
    /// source, how it is enabled, its comment).
    pub(crate) event_triggers: Option<&'static str>,
    /// Where creating event triggers needs a superuser: 1 if the
    /// connection's role is one.
    pub(crate) superuser: Option<&'static str>,
}

// ---- The drivers: one variant per engine this build enables. ----

#[cfg(not(any(feature = "sqlite", feature = "postgres")))]
compile_error!("cached-fields needs at least one of the features `sqlite` and `postgres`");

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
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(sqlx::SqlitePool),
    /// A PostgreSQL pool.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(sqlx::PgPool),
}

impl Db {
    /// Connects to `url` (`sqlite:path`, `sqlite::memory:`, `postgres://…`)
    /// with a pool of up to 10 connections.
    pub async fn connect(url: &str) -> crate::Result<Self> {
        Self::connect_with(url, 10).await
    }

    /// Connects with a pool of up to `max_connections`.
    ///
    /// SQLite files are created if missing and opened in WAL mode with a
    /// busy timeout, so other processes (a worker, the `sqlite3` shell) can
    /// write the same file. A PostgreSQL server is asked for one connection
    /// first, so that a refusal says at once why.
    ///
    /// A PostgreSQL URL may carry `pooler=transaction` (and `listen_url=…`):
    /// see [`Db::options`].
    pub async fn connect_with(url: &str, max_connections: u32) -> crate::Result<Self> {
        Db::options(url)
            .max_connections(max_connections)
            .connect()
            .await
    }

    /// Opens a pool on `url` as it is.
    pub(crate) async fn open(url: &str, max_connections: u32) -> crate::Result<Self> {
        match Backend::of_url(url)? {
            #[cfg(feature = "sqlite")]
            Backend::Sqlite => Ok(Db::Sqlite(
                sqlite::driver::connect(url, max_connections).await?,
            )),
            #[cfg(feature = "postgres")]
            Backend::Postgres => Self::open_postgres(url, max_connections, false).await,
            #[allow(unreachable_patterns)]
            _ => Err(crate::Error::UnsupportedUrl {
                url: crate::db::redact(url),
                enabled: Backend::ENABLED,
            }),
        }
    }

    /// Opens a PostgreSQL pool on `url`, through a transaction-mode pooler
    /// when `pooler`.
    pub(crate) async fn open_postgres(
        url: &str,
        max_connections: u32,
        pooler: bool,
    ) -> crate::Result<Self> {
        #[cfg(feature = "postgres")]
        {
            Ok(Db::Postgres(
                postgres::driver::connect(url, max_connections, pooler).await?,
            ))
        }
        #[cfg(not(feature = "postgres"))]
        {
            let _ = (max_connections, pooler);
            Err(crate::Error::UnsupportedUrl {
                url: crate::db::redact(url),
                enabled: Backend::ENABLED,
            })
        }
    }

    /// The pool's identity, the same for every clone of this `Db`.
    pub(crate) fn identity(&self) -> usize {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => std::sync::Arc::as_ptr(&p.connect_options()) as usize,
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => std::sync::Arc::as_ptr(&p.connect_options()) as usize,
        }
    }

    /// The most connections the pool opens.
    pub(crate) fn max_connections(&self) -> u32 {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => p.options().get_max_connections(),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => p.options().get_max_connections(),
        }
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

    /// Closes every connection of the pool.
    pub async fn close(&self) {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => p.close().await,
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => p.close().await,
        }
    }

    /// Begins a transaction that holds the database's migration lock from
    /// its start, so two migrations never inspect the schema at once.
    pub(crate) async fn begin_exclusive(&self) -> crate::Result<Tx> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => sqlite::driver::begin_exclusive(p).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => postgres::driver::begin_exclusive(p).await,
        }
    }

    /// After a migration: whatever the pool's idle connections need to see
    /// the new schema.
    pub(crate) async fn after_migrate(&self) -> crate::Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => sqlite::driver::after_migrate(p).await,
            #[cfg(feature = "postgres")]
            Db::Postgres(_) => Ok(()),
        }
    }

    /// Begins a worker's lease transaction, in which its claims walk the
    /// flag's index in its order whatever the planner believes of the
    /// table: on PostgreSQL sorting is off for the transaction (`SET LOCAL
    /// enable_sort = off`, in the round trip of its `BEGIN`). Without it, a
    /// plan made for the parameters of one claim (every claim behind a
    /// transaction-mode pooler, the first five of a prepared one) on a
    /// table never analyzed (autovacuum off) expects a few dozen flagged
    /// rows and reads every one of them to sort them: 20 ms a claim at
    /// 20,000 flagged rows, against 1 ms for the walk.
    pub(crate) async fn begin_claim(&self) -> crate::Result<Tx> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => {
                Tx::Postgres(p.begin_with("BEGIN; SET LOCAL enable_sort = off").await?)
            }
        })
    }

    /// Begins a transaction on a pooled connection.
    pub(crate) async fn begin(&self) -> crate::Result<Tx> {
        Ok(match self {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Tx::Sqlite(p.begin().await?),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
        })
    }
}

/// A transaction, for the worker's batched write-backs.
pub(crate) enum Tx {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
}

impl Tx {
    /// A context running inside the transaction.
    pub(crate) fn ctx(&mut self) -> crate::db::Ctx<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t) => crate::db::Target::into_ctx(&mut **t),
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => crate::db::Target::into_ctx(&mut **t),
        }
    }

    /// Commits.
    pub(crate) async fn commit(self) -> crate::Result<()> {
        match self {
            #[cfg(feature = "sqlite")]
            Tx::Sqlite(t) => t.commit().await?,
            #[cfg(feature = "postgres")]
            Tx::Postgres(t) => t.commit().await?,
        }
        Ok(())
    }
}

/// A borrowed connection of the engine in use, for the user's own queries in a
/// calculate function.
#[derive(Debug)]
#[non_exhaustive]
pub enum Conn<'a> {
    /// A SQLite connection.
    #[cfg(feature = "sqlite")]
    #[cfg_attr(docsrs, doc(cfg(feature = "sqlite")))]
    Sqlite(&'a mut sqlx::SqliteConnection),
    /// A PostgreSQL connection.
    #[cfg(feature = "postgres")]
    #[cfg_attr(docsrs, doc(cfg(feature = "postgres")))]
    Postgres(&'a mut sqlx::PgConnection),
}

impl Conn<'_> {
    /// The same connection, borrowed for a shorter time.
    pub(crate) fn reborrow(&mut self) -> Conn<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => Conn::Sqlite(c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => Conn::Postgres(c),
        }
    }
}

/// A connection taken from a pool, held by a context.
#[derive(Debug)]
pub(crate) enum Pooled {
    #[cfg(feature = "sqlite")]
    Sqlite(sqlx::pool::PoolConnection<sqlx::Sqlite>),
    #[cfg(feature = "postgres")]
    Postgres(sqlx::pool::PoolConnection<sqlx::Postgres>),
}

impl Pooled {
    /// The held connection, borrowed.
    pub(crate) fn conn(&mut self) -> Conn<'_> {
        match self {
            #[cfg(feature = "sqlite")]
            Pooled::Sqlite(c) => Conn::Sqlite(c),
            #[cfg(feature = "postgres")]
            Pooled::Postgres(c) => Conn::Postgres(c),
        }
    }
}

impl Conn<'_> {
    /// The engine of this connection.
    pub fn backend(&self) -> Backend {
        match self {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Backend::Sqlite,
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Backend::Postgres,
        }
    }
}

impl Pooled {
    /// A connection from `db`'s pool.
    pub(crate) async fn acquire(db: &Db) -> crate::Result<Pooled> {
        Ok(match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Pooled::Sqlite(p.acquire().await?),
            #[cfg(feature = "postgres")]
            Db::Postgres(p) => Pooled::Postgres(p.acquire().await?),
        })
    }
}

/// Forwards the database's notifications of commits to `wake`, where the
/// engine has them.
pub(crate) fn listen(
    db: &Db,
    wake: &std::sync::Arc<tokio::sync::Notify>,
) -> Option<tokio::task::JoinHandle<()>> {
    match db {
        #[cfg(feature = "postgres")]
        Db::Postgres(p) => {
            // Behind a transaction-mode pooler a LISTEN would hold no
            // server connection: a direct one if given, else polling.
            let route = crate::connect::route(db.identity());
            match (route.pooler, route.listen_url) {
                (false, _) => Some(postgres::driver::listen(
                    postgres::driver::Listen::Pool(p.clone()),
                    wake.clone(),
                )),
                (true, Some(url)) => Some(postgres::driver::listen(
                    postgres::driver::Listen::Direct(url),
                    wake.clone(),
                )),
                (true, None) => None,
            }
        }
        #[allow(unreachable_patterns)]
        _ => {
            let _ = wake;
            None
        }
    }
}

/// Notices other connections' commits where the engine cannot notify.
#[derive(Debug)]
pub(crate) enum Changes {
    /// Watches the database files.
    #[cfg(feature = "sqlite")]
    Sqlite(sqlite::driver::DataVersion),
    /// Nothing to watch: notifications wake the worker.
    Notified,
}

impl Changes {
    pub(crate) fn new(db: &Db) -> Self {
        match db {
            #[cfg(feature = "sqlite")]
            Db::Sqlite(p) => Changes::Sqlite(sqlite::driver::DataVersion::new(p)),
            #[allow(unreachable_patterns)]
            _ => Changes::Notified,
        }
    }

    /// Notes whether the last pass found work.
    pub(crate) fn active(&mut self, found: bool) {
        match self {
            #[cfg(feature = "sqlite")]
            Changes::Sqlite(d) => d.active(found),
            Changes::Notified => {
                let _ = found;
            }
        }
    }

    /// Remembers the current state, before looking for work.
    pub(crate) async fn mark(&mut self) {
        #[cfg(feature = "sqlite")]
        if let Changes::Sqlite(d) = self {
            d.mark().await;
        }
    }

    /// Completes when another connection commits (never where
    /// notifications do the work).
    pub(crate) async fn changed(&mut self) {
        #[cfg(feature = "sqlite")]
        if let Changes::Sqlite(d) = self {
            d.changed().await;
            return;
        }
        std::future::pending::<()>().await;
    }
}

/// How a model's rows are read on each backend, one reader per enabled
/// backend that the model runs on. The derive sets every enabled backend's
/// ([`Decoders::all`]); a hand-written model sets the ones it implements
/// sqlx's `FromRow` for, so enabling another backend elsewhere in a build
/// adds no bound to it.
///
/// ```
/// use cached_fields::{Cached, backend::Decoders, model::Model};
/// struct Item { id: i64, doubled: Cached<i64> }
/// // No backend's rows: the model can be declared, not loaded.
/// let model = Model::<Item>::builder("items").rows(Decoders::none()).build().unwrap();
/// assert_eq!(model.table().as_str(), "items");
/// ```
pub struct Decoders<M> {
    #[cfg(feature = "sqlite")]
    pub(crate) sqlite: Option<Reader<sqlx::sqlite::SqliteRow, M>>,
    #[cfg(feature = "postgres")]
    pub(crate) postgres: Option<Reader<sqlx::postgres::PgRow, M>>,
}

/// Reads a model from one backend's row.
type Reader<R, M> = fn(&R) -> Result<M, sqlx::Error>;

impl<M> std::fmt::Debug for Decoders<M> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoders").finish_non_exhaustive()
    }
}

impl<M> Decoders<M> {
    /// No backend's rows.
    pub fn none() -> Self {
        Decoders {
            #[cfg(feature = "sqlite")]
            sqlite: None,
            #[cfg(feature = "postgres")]
            postgres: None,
        }
    }

    /// Every enabled backend's rows, through the model's `FromRow`
    /// implementations (the derive generates one for every row type).
    pub fn all() -> Self
    where
        M: FromBackendRows,
    {
        fn read<R, M>(row: &R) -> Result<M, sqlx::Error>
        where
            R: sqlx::Row,
            M: for<'r> sqlx::FromRow<'r, R>,
        {
            M::from_row(row)
        }
        Decoders {
            #[cfg(feature = "sqlite")]
            sqlite: Some(read::<sqlx::sqlite::SqliteRow, M>),
            #[cfg(feature = "postgres")]
            postgres: Some(read::<sqlx::postgres::PgRow, M>),
        }
    }
}

/// A backend's row type: reads a model with the model's reader for it.
pub(crate) trait DecodeRow {
    fn decode<M: crate::CachedModel>(&self) -> crate::Result<M>;
}

/// The error for a model with no reader for `backend`'s rows.
#[allow(dead_code)] // a build whose every model reads every row type
pub(crate) fn no_reader(table: &str, backend: Backend) -> crate::Error {
    crate::Error::declaration(
        table,
        format!(
            "the model has no reader for {backend} rows: implement sqlx's FromRow for them \
             and declare it with ModelBuilder::rows"
        ),
    )
}

/// The row types a derived model decodes from, one per enabled backend
/// (see [`Decoders::all`]).
#[cfg(all(feature = "sqlite", feature = "postgres"))]
pub trait FromBackendRows:
    for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
    + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
{
}
#[cfg(all(feature = "sqlite", feature = "postgres"))]
impl<T> FromBackendRows for T where
    T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>
{
}
/// The row types a derived model decodes from, one per enabled backend
/// (see [`Decoders::all`]).
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
pub trait FromBackendRows: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> {}
#[cfg(all(feature = "sqlite", not(feature = "postgres")))]
impl<T> FromBackendRows for T where T: for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow> {}
/// The row types a derived model decodes from, one per enabled backend
/// (see [`Decoders::all`]).
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
pub trait FromBackendRows: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> {}
#[cfg(all(feature = "postgres", not(feature = "sqlite")))]
impl<T> FromBackendRows for T where T: for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> {}
