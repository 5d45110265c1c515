//! PostgreSQL's driver: connections (checked once first, pinged after a
//! fault), transactions, the migration lock, binding and reading values,
//! and `LISTEN` for the triggers' notifications.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::postgres::{PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Arguments, Connection};

use crate::backend::Tx;
use crate::db::{fault_at, redact, redact_with};
use crate::error::{Error, Result};
use crate::value::{SqlType, Value};

/// Opens a pool on `url`, after one connection that says at once why none
/// can be had.
/// Through a transaction-mode pooler (`pooler`), no statement is kept by
/// name on a server connection, and no startup parameter a pooler may
/// refuse is sent.
pub(crate) async fn connect(url: &str, max_connections: u32, pooler: bool) -> Result<PgPool> {
    let connect_err = |e: sqlx::Error| Error::Connect {
        url: redact(url),
        message: redact_with(&e.to_string(), url),
    };
    let mut opts = sqlx::postgres::PgConnectOptions::from_str(url).map_err(connect_err)?;
    if pooler {
        opts = opts.statement_cache_capacity(0).extra_float_digits(None);
    }
    // One connection first, to say at once why none can be had
    // (the pool would retry until its acquire timeout, then say
    // only that it timed out).
    let (host, port) = (opts.get_host().to_owned(), opts.get_port());
    match tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&opts)).await {
        Ok(Ok(conn)) => conn.close().await.map_err(connect_err)?,
        Ok(Err(e)) => {
            return Err(Error::Connect {
                url: redact(url),
                message: redact_with(&explain(&e, &host, port), url),
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
    Ok(pool)
}

/// How long the first connection to a PostgreSQL server may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Why a first connection failed, naming host and port.
fn explain(e: &sqlx::Error, host: &str, port: u16) -> String {
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

/// Idle connections older than this are pinged before use.
const IDLE_PING: Duration = Duration::from_secs(30);

/// Whether a pooled connection may have died while idle.
fn suspect(meta: &sqlx::pool::PoolConnectionMetadata) -> bool {
    if meta.idle_for >= IDLE_PING {
        return true;
    }
    let idle_since = std::time::Instant::now().checked_sub(meta.idle_for);
    let fault = fault_at();
    match (fault, idle_since) {
        (Some(f), Some(since)) => f >= since,
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Begins a transaction holding the migration lock (a transaction-scoped
/// advisory lock), so two migrations never inspect the schema at once.
/// The migration lock: a transaction-scoped advisory lock.
pub(crate) const MIGRATION_LOCK: i64 = 7_438_002;

/// Begins a transaction holding the migration lock, in which every lock is
/// waited for at most 500 ms (the caller tries again): what application
/// writes queued behind one of its statements wait at most.
pub(crate) async fn begin_exclusive(pool: &PgPool) -> Result<Tx> {
    let mut tx = pool
        .begin_with("BEGIN; SET LOCAL lock_timeout = '500ms'")
        .await?;
    sqlx::query("SELECT pg_advisory_xact_lock(7438002)")
        .persistent(crate::connect::named_statements())
        .execute(&mut *tx)
        .await?;
    Ok(Tx::Postgres(tx))
}

/// Where a worker listens for the triggers' notifications.
pub(crate) enum Listen {
    /// On a connection like the pool's.
    Pool(PgPool),
    /// On a direct connection to this URL (the pool goes through a
    /// transaction-mode pooler).
    Direct(String),
}

/// Forwards the triggers' notifications to the worker's wake-up, until the
/// task is aborted; reconnects after a failure.
pub(crate) fn listen(
    on: Listen,
    wake: std::sync::Arc<tokio::sync::Notify>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let listener = match &on {
                Listen::Pool(pool) => sqlx::postgres::PgListener::connect_with(pool).await,
                Listen::Direct(url) => sqlx::postgres::PgListener::connect(url).await,
            };
            match listener {
                Ok(mut l) => {
                    if let Err(e) = l.listen(crate::schema::CHANNEL).await {
                        tracing::warn!(error = %e, "LISTEN failed; polling");
                    } else {
                        while l.recv().await.is_ok() {
                            wake.notify_one();
                        }
                    }
                }
                Err(e) => tracing::debug!(error = %e, "listener cannot connect; polling"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    })
}

driver_types!(
    "postgres",
    Postgres,
    PgPool,
    PgConnection,
    sqlx::Postgres,
    PgRow,
    "PostgreSQL",
    as_postgres,
    postgres
);

/// Binds `values` in order, NULLs typed.
pub(crate) fn args(values: &[Value]) -> Result<sqlx::postgres::PgArguments> {
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

impl_cached_row!(PgRow, sqlx::types::Json<serde_json::Value>, |j| Ok::<
    _,
    serde_json::Error,
>(j.0));
