//! Worker heartbeats: each running worker records itself (host, pid,
//! started, last heartbeat, counts) in the library's table
//! `cached_fields_workers` (created when first needed) every
//! [`INTERVAL`], so `status` in any process shows which workers are alive.
//! A worker silent for [`GONE_AFTER`] is shown as gone; its row is deleted
//! by the next heartbeat of any worker after [`FORGET_AFTER`], and a
//! worker that stops deletes its own.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::backend::Backend;
use crate::db::{Ctx, Db};
use crate::error::Result;
use crate::value::{SqlType, Value};
use crate::worker::Stats;

/// The library's table of workers.
pub(crate) const TABLE: &str = "cached_fields_workers";

/// How often a worker records itself.
pub const INTERVAL: Duration = Duration::from_secs(5);

/// Silent this long (three heartbeats), a worker is shown as gone.
pub const GONE_AFTER: Duration = Duration::from_secs(15);

/// Silent this long, a worker's row is deleted.
pub const FORGET_AFTER: Duration = Duration::from_secs(60);

/// One worker as its heartbeats describe it.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct WorkerStatus {
    /// `host:pid:started` (unique per run).
    pub id: String,
    /// The host it runs on.
    pub host: String,
    /// Its process id.
    pub pid: i64,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub heartbeat_at: DateTime<Utc>,
    /// Values it recalculated and stored so far.
    pub recalculated: i64,
    /// Calculations of it that failed so far.
    pub failed: i64,
    /// Whether it was heard from within [`GONE_AFTER`].
    pub alive: bool,
}

/// This machine's name, for the heartbeats.
pub(crate) fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn create(backend: Backend) -> String {
    let ts = SqlType::Timestamp.column_type(backend);
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (id TEXT PRIMARY KEY, host TEXT NOT NULL, pid BIGINT NOT NULL, \
         started_at {ts} NOT NULL, heartbeat_at {ts} NOT NULL, recalculated BIGINT NOT NULL, \
         failed BIGINT NOT NULL)"
    )
}

/// A running worker's heartbeat: recorded at once, then every
/// [`INTERVAL`] in the background until [`Heartbeat::stop`].
pub(crate) struct Heartbeat {
    db: Db,
    id: String,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating for a worker whose counts `stats` holds.
    pub(crate) fn start(db: &Db, stats: Arc<Mutex<Stats>>) -> Heartbeat {
        let started = Utc::now();
        let host = host();
        let pid = std::process::id();
        let id = format!("{host}:{pid}:{}", started.timestamp_micros());
        let task = {
            let (db, id) = (db.clone(), id.clone());
            tokio::spawn(async move {
                loop {
                    let s = *stats.lock().unwrap_or_else(PoisonError::into_inner);
                    if let Err(e) = beat(&db, &id, &host, pid, started, s).await {
                        tracing::debug!(error = %e, "could not record a heartbeat");
                    }
                    tokio::time::sleep(INTERVAL).await;
                }
            })
        };
        Heartbeat {
            db: db.clone(),
            id,
            task,
        }
    }

    /// Stops beating and deletes this worker's row.
    pub(crate) async fn stop(self) {
        self.task.abort();
        let result = Ctx::from(&self.db)
            .execute(
                format!("DELETE FROM {TABLE} WHERE id = $1"),
                &[Value::Text(self.id.clone())],
            )
            .await;
        if let Err(e) = result {
            tracing::debug!(error = %e, "could not delete this worker's heartbeat");
        }
    }
}

async fn beat(
    db: &Db,
    id: &str,
    host: &str,
    pid: u32,
    started: DateTime<Utc>,
    s: Stats,
) -> Result<()> {
    let mut ctx = Ctx::from(db);
    ctx.execute(create(db.backend()), &[]).await?;
    let now = Utc::now();
    let count = |n: u64| Value::Int(i64::try_from(n).unwrap_or(i64::MAX));
    ctx.execute(
        format!(
            "INSERT INTO {TABLE} (id, host, pid, started_at, heartbeat_at, recalculated, failed) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (id) DO UPDATE SET \
             heartbeat_at = excluded.heartbeat_at, recalculated = excluded.recalculated, \
             failed = excluded.failed"
        ),
        &[
            Value::Text(id.to_owned()),
            Value::Text(host.to_owned()),
            Value::Int(i64::from(pid)),
            Value::Timestamp(started),
            Value::Timestamp(now),
            count(s.recalculated),
            count(s.failed),
        ],
    )
    .await?;
    let forget = now - chrono::Duration::from_std(FORGET_AFTER).unwrap_or_default();
    let old = crate::statements::ts_le(db.backend(), "heartbeat_at", "$1");
    ctx.execute(
        format!("DELETE FROM {TABLE} WHERE {old}"),
        &[Value::Timestamp(forget)],
    )
    .await?;
    Ok(())
}

/// Every worker with a row, the live first, newest first.
pub(crate) async fn all(db: &Db) -> Result<Vec<WorkerStatus>> {
    let mut ctx = Ctx::from(db);
    if !ctx.table_exists(TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = ctx
        .fetch_values(
            format!(
                "SELECT id, host, pid, started_at, heartbeat_at, recalculated, failed FROM {TABLE}"
            ),
            &[],
            &[
                SqlType::Text,
                SqlType::Text,
                SqlType::Int,
                SqlType::Timestamp,
                SqlType::Timestamp,
                SqlType::Int,
                SqlType::Int,
            ],
        )
        .await?;
    let gone = Utc::now() - chrono::Duration::from_std(GONE_AFTER).unwrap_or_default();
    let mut out: Vec<WorkerStatus> = rows
        .into_iter()
        .filter_map(|r| match &r[..] {
            [
                Value::Text(id),
                Value::Text(host),
                Value::Int(pid),
                Value::Timestamp(started_at),
                Value::Timestamp(heartbeat_at),
                Value::Int(recalculated),
                Value::Int(failed),
            ] => Some(WorkerStatus {
                id: id.clone(),
                host: host.clone(),
                pid: *pid,
                started_at: *started_at,
                heartbeat_at: *heartbeat_at,
                recalculated: *recalculated,
                failed: *failed,
                alive: *heartbeat_at > gone,
            }),
            _ => None,
        })
        .collect();
    out.sort_by(|a, b| b.alive.cmp(&a.alive).then(b.started_at.cmp(&a.started_at)));
    Ok(out)
}
