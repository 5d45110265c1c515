//! Connections: the [`Ctx`] a statement runs in, the [`Target`]s (a pool,
//! a connection, a transaction) the runtime accepts, and what a calculate
//! function may take ([`FromCtx`]). The pool handle [`Db`] and the
//! connections of each engine are in [`crate::backend`].

use futures::future::BoxFuture;
use sqlx::Row;

pub use crate::backend::{Backend, Conn, Db};
use crate::backend::{DecodeRow, Pooled, on_backend};
use crate::error::{Error, Result};
use crate::ident;
use crate::key::Key;
use crate::model::CachedModel;
use crate::value::{SqlType, Value};

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
/// let url = "db://ann:s3cret@db:5432/app?password=other";
/// let text = format!("cannot connect to {url}");
/// assert_eq!(redact_with(&text, url), "cannot connect to db://ann:***@db:5432/app?password=***");
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

/// When this process last saw the database fail (a lost connection, a
/// restart): connections idle since before then are pinged before use.
static FAULT_AT: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);

/// When this process last saw the database fail, if it has (read by the
/// drivers that check idle connections).
#[allow(dead_code)] // a build whose drivers do not
pub(crate) fn fault_at() -> Option<std::time::Instant> {
    *FAULT_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Records a database fault (see [`Error::is_retryable`]): connections that
/// sat idle through it are checked before they are used again.
pub(crate) fn note_fault() {
    *FAULT_AT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = Some(std::time::Instant::now());
}

#[derive(Debug)]
enum Inner<'c> {
    Pool { db: Db, held: Option<Pooled> },
    Borrowed(Conn<'c>),
}

/// Where statements run: a pool, or one connection (possibly inside the
/// caller's transaction). Calculate functions receive one.
///
/// A calculate function that runs on one backend takes that backend's
/// connection instead (see [`FromCtx`]); one written for several asks the
/// context which it is on ([`Ctx::backend`]) and takes [`Ctx::conn`].
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

/// What a calculate function (or batch function, or hook) the derive
/// wires up may take as its connection argument: the library's `&mut Ctx`
/// (any backend), or one backend's own connection (sqlx's connection type
/// of that backend), for an application that uses that backend only, with
/// no match on a backend enum. Each backend's module implements it for its
/// connection.
///
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the connection argument of a calculate function, batch function or hook",
    label = "the function's second argument",
    note = "take `&mut cached_fields::Ctx<'_>` (any backend), or `&mut` the sqlx connection type of the one backend the application uses"
)]
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

impl<'c> Ctx<'c> {
    /// A context on a borrowed connection (a backend's `Target`).
    pub(crate) fn borrowed(conn: Conn<'c>) -> Self {
        Ctx {
            inner: Inner::Borrowed(conn),
        }
    }

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
            Inner::Borrowed(conn) => conn.backend(),
        }
    }

    /// A connection for the caller's own queries: the caller's connection or
    /// transaction, or one taken from the pool and held until the context ends.
    pub async fn conn(&mut self) -> Result<Conn<'_>> {
        match &mut self.inner {
            Inner::Pool { db, held } => {
                if held.is_none() {
                    *held = Some(Pooled::acquire(db).await?);
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
                .persistent(crate::connect::named_statements())
                .execute(exec)
                .await,
            |done| Ok(done.rows_affected())
        )
    }

    /// Whether the table `name` (one of the library's own, a constant) exists.
    pub(crate) async fn table_exists(&mut self, name: &str) -> Result<bool> {
        let sql = self.backend().dialect().table_exists(name);
        let rows = self.fetch_values(sql, &[], &[SqlType::Int]).await?;
        Ok(matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0))
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
                .persistent(crate::connect::named_statements())
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
                .persistent(crate::connect::named_statements())
                .fetch_all(exec)
                .await,
            |rows| Ok(rows
                .iter()
                .map(|row| {
                    let key = row
                        .value_at(pk, key_type)
                        .ok()
                        .and_then(|v| Key::from_value(&v));
                    (key, DecodeRow::decode::<M>(row))
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
            |exec, args| sqlx::query_with(ident::sql(sql.clone()), args)
                .persistent(crate::connect::named_statements())
                .fetch_all(exec)
                .await,
            |rows| rows.iter().map(DecodeRow::decode::<M>).collect()
        )
    }
}

/// A row of either backend that can yield cached-field columns; used by the
/// `FromRow` implementations the derive generates.
pub trait CachedRow: Row {
    /// Reads column `index` (a name or position) as a value of type `ty`.
    fn value_at<I>(&self, index: I, ty: SqlType) -> Result<Value, sqlx::Error>
    where
        I: sqlx::ColumnIndex<Self> + std::fmt::Debug + Copy;
}

#[cfg(test)]
mod tests {
    use super::{redact, redact_with};

    #[test]
    fn passwords_are_hidden() {
        assert_eq!(redact("db://u:secret@h:5432/db"), "db://u:***@h:5432/db");
        assert_eq!(redact("db://u@h/db"), "db://u@h/db");
        assert_eq!(redact("file:x.db"), "file:x.db");
        assert_eq!(
            redact("db://h/db?user=u&password=p%40ss&sslmode=disable"),
            "db://h/db?user=u&password=***&sslmode=disable"
        );
        assert_eq!(
            redact_with("bad password p@ss", "db://h/db?password=p%40ss"),
            "bad password ***"
        );
        assert_eq!(redact("db://h/db?x=a@b"), "db://h/db?x=a@b");
    }
}
