//! SQLite's driver: connections, transactions, binding and reading
//! values, and noticing other connections' commits.

use std::str::FromStr;
use std::time::{Duration, Instant};

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use sqlx::Arguments;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteConnection, SqliteJournalMode, SqlitePool, SqlitePoolOptions,
    SqliteRow, SqliteSynchronous,
};

use crate::backend::Tx;
use crate::db::{redact, redact_with};
use crate::error::{Error, Result};
use crate::value::{SqlType, Value};

/// Opens a pool on `url`: the file created if missing, in WAL mode with a
/// busy timeout and foreign keys on, so other processes (a worker, the
/// `sqlite3` shell) can write the same file.
pub(crate) async fn connect(url: &str, max_connections: u32) -> Result<SqlitePool> {
    let connect_err = |e: sqlx::Error| Error::Connect {
        url: redact(url),
        message: redact_with(&e.to_string(), url),
    };
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
            Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("5") && tries < 100 => {
                tries += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            r => break r.map_err(|e| open_error(url, &file, &e))?,
        }
    };
    Ok(pool)
}

/// Why the database could not be opened, saying where.
fn open_error(url: &str, file: &std::path::Path, e: &sqlx::Error) -> Error {
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

/// Begins a transaction that holds the write lock from its start.
pub(crate) async fn begin_exclusive(pool: &SqlitePool) -> Result<Tx> {
    Ok(Tx::Sqlite(pool.begin_with("BEGIN IMMEDIATE").await?))
}

/// After a migration: idle connections still hold the old schema, and one
/// that prepares a `SELECT *` with it breaks sqlx when SQLite re-prepares;
/// a read makes each reload it.
pub(crate) async fn after_migrate(pool: &SqlitePool) -> Result<()> {
    let mut refreshed = Vec::new();
    while let Some(mut conn) = pool.try_acquire() {
        sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
            .execute(&mut *conn)
            .await?;
        refreshed.push(conn);
    }
    Ok(())
}

driver_types!(
    "sqlite",
    Sqlite,
    SqlitePool,
    SqliteConnection,
    sqlx::Sqlite,
    SqliteRow,
    "SQLite",
    as_sqlite,
    sqlite
);

/// Binds `values` in order.
pub(crate) fn args(values: &[Value]) -> Result<sqlx::sqlite::SqliteArguments> {
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

impl_cached_row!(SqliteRow, String, |s| serde_json::from_str::<
    serde_json::Value,
>(&s));

/// Notices commits by other connections and processes (the app, the
/// `sqlite3` shell). A commit in WAL mode
/// writes the `-wal` file (a checkpoint, the main file), so a `stat` of both
/// — a system call, no query — tells at almost no cost: every 2 ms while
/// there is work about, every 25 ms once the database has been quiet for a
/// second. As a backstop (file times are coarse), `PRAGMA data_version` is
/// read every 500 ms. An idle worker so costs under 1 % of a core, and the
/// first write after a quiet spell is seen within 25 ms.
#[derive(Debug)]
pub(crate) struct DataVersion {
    pool: SqlitePool,
    conn: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    /// The database file and its `-wal` (none for an in-memory database).
    files: Vec<std::path::PathBuf>,
    last: (Vec<Option<FileStamp>>, Option<i64>),
    busy_at: Instant,
}

/// A file's size and modification time.
type FileStamp = (u64, std::time::SystemTime);

impl DataVersion {
    const BUSY: Duration = Duration::from_millis(2);
    const QUIET: Duration = Duration::from_millis(25);
    const QUIET_AFTER: Duration = Duration::from_secs(1);
    const BACKSTOP: Duration = Duration::from_millis(500);

    pub(crate) fn new(pool: &SqlitePool) -> Self {
        let files = Some(pool.connect_options().get_filename().to_owned())
            .filter(|f| !f.as_os_str().is_empty() && !f.to_string_lossy().contains(":memory:"))
            .map(|f| {
                let mut wal = f.clone().into_os_string();
                wal.push("-wal");
                vec![f, wal.into()]
            })
            .unwrap_or_default();
        DataVersion {
            pool: pool.clone(),
            conn: None,
            files,
            last: (Vec::new(), None),
            busy_at: Instant::now(),
        }
    }

    /// Notes whether the last pass found work.
    pub(crate) fn active(&mut self, found: bool) {
        if found {
            self.busy_at = Instant::now();
        }
    }

    fn stamps(&self) -> Vec<Option<FileStamp>> {
        self.files
            .iter()
            .map(|f| {
                let m = std::fs::metadata(f).ok()?;
                Some((m.len(), m.modified().ok()?))
            })
            .collect()
    }

    async fn read(&mut self) -> Option<i64> {
        if self.conn.is_none() {
            self.conn = self.pool.acquire().await.ok();
        }
        let c = self.conn.as_mut()?;
        let v = sqlx::query_scalar::<_, i64>("PRAGMA data_version")
            .fetch_one(&mut **c)
            .await;
        if v.is_err() {
            self.conn = None;
        }
        v.ok()
    }

    /// Remembers the current state, before looking for work.
    pub(crate) async fn mark(&mut self) {
        self.last = (self.stamps(), self.read().await);
    }

    /// Completes when another connection commits.
    pub(crate) async fn changed(&mut self) {
        {
            let mut backstop = Instant::now();
            loop {
                let every = if self.busy_at.elapsed() < Self::QUIET_AFTER {
                    Self::BUSY
                } else {
                    Self::QUIET
                };
                tokio::time::sleep(every).await;
                let stamps = self.stamps();
                let mut moved = stamps != self.last.0;
                if moved || self.files.is_empty() || backstop.elapsed() >= Self::BACKSTOP {
                    backstop = Instant::now();
                    let version = self.read().await;
                    moved |= version.is_some() && version != self.last.1;
                    self.last.1 = version;
                }
                self.last.0 = stamps;
                if moved {
                    self.busy_at = Instant::now();
                    return;
                }
            }
        }
    }
}
