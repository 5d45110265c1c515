//! Opening a [`Db`]: the pool's size, and how PostgreSQL is reached —
//! directly, or through a transaction-mode pooler (PgBouncer with
//! `pool_mode = transaction`, or a managed pooler), where a client's
//! statements may run on a different server connection each transaction.
//!
//! Behind such a pooler nothing may outlive a transaction on the server
//! connection: the library's statements are then unnamed (parsed each
//! time, never a `sqlx_s_N` prepared statement another client could meet),
//! its locks are transaction-scoped, and workers wake by polling, or by
//! `LISTEN` on a separate direct connection when one is given.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::backend::Backend;
use crate::db::Db;
use crate::error::{Error, Result};

/// The URL parameter that says a transaction-mode pooler is in front
/// (`pooler=transaction`; `pooler=none`, the default, connects directly).
pub const POOLER_PARAM: &str = "pooler";

/// The URL parameter naming a direct (not pooled) server URL, percent-encoded,
/// on which workers `LISTEN` for the triggers' notifications.
pub const LISTEN_URL_PARAM: &str = "listen_url";

/// Whether any [`Db`] of this process was opened through a transaction-mode
/// pooler: the library's statements are then unnamed on every connection
/// (a connection an application lends it cannot say where it leads).
static UNNAMED: AtomicBool = AtomicBool::new(false);

/// How each open PostgreSQL pool (by [`Db::identity`]) reaches the server.
static ROUTES: Mutex<Option<HashMap<usize, Route>>> = Mutex::new(None);

/// How a PostgreSQL [`Db`] reaches its server.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Route {
    /// Through a transaction-mode pooler.
    pub(crate) pooler: bool,
    /// A direct URL to `LISTEN` on, behind a pooler.
    pub(crate) listen_url: Option<String>,
}

/// Whether statements may be prepared once and kept by name on their
/// connection: `false` once a [`Db`] of this process was opened through a
/// transaction-mode pooler. An application's own queries that may run
/// through the pooler pass it on, as the library's do.
///
/// ```
/// # async fn f(pool: &sqlx::SqlitePool) -> sqlx::Result<()> {
/// let n: i64 = sqlx::query_scalar("SELECT 1")
///     .persistent(cached_fields::named_statements())
///     .fetch_one(pool)
///     .await?;
/// # Ok(()) }
/// ```
pub fn named_statements() -> bool {
    !UNNAMED.load(Ordering::Relaxed)
}

/// How the pool `identity` reaches its server (directly when unknown).
#[cfg(feature = "postgres")]
pub(crate) fn route(identity: usize) -> Route {
    ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .as_ref()
        .and_then(|r| r.get(&identity).cloned())
        .unwrap_or_default()
}

fn remember(identity: usize, route: Route) {
    if route.pooler {
        UNNAMED.store(true, Ordering::Relaxed);
    }
    ROUTES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .get_or_insert_with(HashMap::new)
        .insert(identity, route);
}

/// How to open a [`Db`]: built by [`Db::options`], opened by
/// [`DbOptions::connect`].
///
/// ```no_run
/// # async fn f() -> cached_fields::Result<()> {
/// // PgBouncer in transaction mode on 6432; workers LISTEN on 5432 directly.
/// let db = cached_fields::Db::options("postgres://app@127.0.0.1:6432/app")
///     .transaction_pooler(true)
///     .listen_url("postgres://app@127.0.0.1:5432/app")
///     .max_connections(20)
///     .connect()
///     .await?;
/// // The same in the URL: ?pooler=transaction&listen_url=postgres%3A%2F%2Fapp%40127.0.0.1%3A5432%2Fapp
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct DbOptions {
    url: String,
    max_connections: u32,
    pooler: Option<bool>,
    listen_url: Option<String>,
}

impl Db {
    /// Options for opening `url` (`sqlite:path`, `sqlite::memory:`,
    /// `postgres://…`), with a pool of up to 10 connections.
    pub fn options(url: &str) -> DbOptions {
        DbOptions {
            url: url.to_owned(),
            max_connections: 10,
            pooler: None,
            listen_url: None,
        }
    }
}

impl DbOptions {
    /// The most connections the pool opens (default 10).
    #[must_use]
    pub fn max_connections(mut self, n: u32) -> Self {
        self.max_connections = n;
        self
    }

    /// PostgreSQL is reached through a transaction-mode pooler (default:
    /// directly; the URL's `pooler=transaction` says the same): statements
    /// are unnamed, and workers wake by polling unless a
    /// [`listen_url`](Self::listen_url) is given.
    #[must_use]
    pub fn transaction_pooler(mut self, on: bool) -> Self {
        self.pooler = Some(on);
        self
    }

    /// A direct URL to the same database (bypassing the pooler) on which
    /// workers `LISTEN` for the triggers' notifications, so they wake at
    /// once rather than at the next poll (the URL's `listen_url` parameter,
    /// percent-encoded, says the same).
    #[must_use]
    pub fn listen_url(mut self, url: impl Into<String>) -> Self {
        self.listen_url = Some(url.into());
        self
    }

    /// Opens the pool.
    pub async fn connect(self) -> Result<Db> {
        let backend = Backend::of_url(&self.url)?;
        if backend != Backend::Postgres {
            if self.pooler == Some(true) || self.listen_url.is_some() {
                return Err(Error::InvalidSetting {
                    option: "transaction pooler",
                    value: crate::db::redact(&self.url),
                    accepted: "a postgres:// URL",
                });
            }
            return Db::open(&self.url, self.max_connections).await;
        }
        let (url, mut route) = split_url(&self.url)?;
        if let Some(on) = self.pooler {
            route.pooler = on;
        }
        if self.listen_url.is_some() {
            route.listen_url = self.listen_url;
        }
        if route.pooler {
            // Before the first statement: every statement from now on is
            // unnamed.
            UNNAMED.store(true, Ordering::Relaxed);
        }
        let db = Db::open_postgres(&url, self.max_connections, route.pooler).await?;
        remember(db.identity(), route);
        Ok(db)
    }
}

/// Takes this library's parameters out of a PostgreSQL URL: the URL for
/// the driver, and the route they describe.
pub(crate) fn split_url(raw: &str) -> Result<(String, Route)> {
    let bad = |value: String, accepted| Error::InvalidSetting {
        option: "pooler",
        value,
        accepted,
    };
    let Ok(mut url) = url::Url::parse(raw) else {
        // The driver says what is wrong with it.
        return Ok((raw.to_owned(), Route::default()));
    };
    let mut route = Route::default();
    let mut kept: Vec<(String, String)> = Vec::new();
    for (k, v) in url.query_pairs() {
        match &*k {
            POOLER_PARAM => match &*v {
                "transaction" => route.pooler = true,
                "none" | "" => route.pooler = false,
                other => {
                    return Err(bad(
                        other.to_owned(),
                        "pooler=transaction (a transaction-mode pooler) or pooler=none",
                    ));
                }
            },
            LISTEN_URL_PARAM => route.listen_url = Some(v.into_owned()),
            _ => kept.push((k.into_owned(), v.into_owned())),
        }
    }
    if kept.is_empty() {
        url.set_query(None);
    } else {
        url.query_pairs_mut().clear().extend_pairs(kept);
    }
    Ok((url.to_string(), route))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_s_parameters_leave_the_url() {
        let (url, route) = split_url(
            "postgres://u@h:6432/db?sslmode=disable&pooler=transaction&listen_url=postgres%3A%2F%2Fu%40h%3A5432%2Fdb",
        )
        .unwrap();
        assert_eq!(url, "postgres://u@h:6432/db?sslmode=disable");
        assert_eq!(
            route,
            Route {
                pooler: true,
                listen_url: Some("postgres://u@h:5432/db".to_owned())
            }
        );
        let (url, route) = split_url("postgres://u@h/db").unwrap();
        assert_eq!(
            (url.as_str(), route),
            ("postgres://u@h/db", Route::default())
        );
        let e = split_url("postgres://u@h/db?pooler=session").unwrap_err();
        assert!(e.to_string().contains("session"), "{e}");
    }
}
