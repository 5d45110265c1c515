//! Worker heartbeats: each running worker records itself (host, pid,
//! started, last heartbeat, counts) in the library's table
//! `cached_fields_workers` (created when first needed) every
//! [`INTERVAL`], so `status` in any process shows which workers are alive,
//! and adds the values it stored to `cached_fields_activity` (per minute
//! and field), which the dashboard charts.
//! A worker silent for [`GONE_AFTER`] is shown as gone; its row is deleted
//! by the next heartbeat of any worker after [`FORGET_AFTER`], and a
//! worker that stops deletes its own.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Timelike, Utc};
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

/// The library's table of recalculations per minute and field, written by
/// the workers with their heartbeats (kept two hours), which the
/// dashboard's chart reads without touching the cached tables.
pub(crate) const ACTIVITY: &str = "cached_fields_activity";

/// How long the per-minute counts are kept.
const ACTIVITY_KEPT: chrono::Duration = chrono::Duration::hours(2);

fn create_activity(backend: Backend) -> String {
    let ts = SqlType::Timestamp.column_type(backend);
    format!(
        "CREATE TABLE IF NOT EXISTS {ACTIVITY} (minute {ts} NOT NULL, table_name TEXT NOT NULL, \
         field_name TEXT NOT NULL, recalculated BIGINT NOT NULL, \
         PRIMARY KEY (minute, table_name, field_name))"
    )
}

/// Values a worker stored since its last heartbeat, per (`table`, `field`).
#[derive(Debug, Default)]
pub(crate) struct Activity(Mutex<HashMap<(String, String), i64>>);

impl Activity {
    /// Counts one value of `table.field` stored.
    pub(crate) fn stored(&self, table: &str, field: &str) {
        *self
            .0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .entry((table.to_owned(), field.to_owned()))
            .or_default() += 1;
    }

    fn take(&self) -> HashMap<(String, String), i64> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Adds `counts` to the current minute's row of each field.
async fn record_activity(db: &Db, counts: HashMap<(String, String), i64>) -> Result<()> {
    if counts.is_empty() {
        return Ok(());
    }
    let mut ctx = Ctx::from(db);
    ctx.execute(create_activity(db.backend()), &[]).await?;
    let now = Utc::now();
    let minute = now
        - chrono::Duration::seconds(i64::from(now.second()))
        - chrono::Duration::nanoseconds(i64::from(now.nanosecond()));
    for ((table, field), n) in counts {
        ctx.execute(
            format!(
                "INSERT INTO {ACTIVITY} (minute, table_name, field_name, recalculated) \
                 VALUES ($1, $2, $3, $4) ON CONFLICT (minute, table_name, field_name) \
                 DO UPDATE SET recalculated = {ACTIVITY}.recalculated + excluded.recalculated"
            ),
            &[
                Value::Timestamp(minute),
                Value::Text(table),
                Value::Text(field),
                Value::Int(n),
            ],
        )
        .await?;
    }
    let old = crate::statements::ts_le(db.backend(), "minute", "$1");
    ctx.execute(
        format!("DELETE FROM {ACTIVITY} WHERE {old}"),
        &[Value::Timestamp(now - ACTIVITY_KEPT)],
    )
    .await?;
    Ok(())
}

/// Recalculations per minute over the last hour, all fields together,
/// oldest first (zeros when nothing was recorded).
#[cfg(feature = "web")]
pub(crate) async fn per_minute(db: &Db) -> Result<Vec<i64>> {
    let mut buckets = vec![0_i64; 60];
    let mut ctx = Ctx::from(db);
    if !ctx.table_exists(ACTIVITY).await? {
        return Ok(buckets);
    }
    let now = Utc::now();
    let since = now - chrono::Duration::minutes(60);
    let recent = crate::statements::ts_le(db.backend(), "$1", "minute");
    let rows = ctx
        .fetch_values(
            format!("SELECT minute, recalculated FROM {ACTIVITY} WHERE {recent}"),
            &[Value::Timestamp(since)],
            &[SqlType::Timestamp, SqlType::Int],
        )
        .await?;
    for r in rows {
        if let [Value::Timestamp(at), Value::Int(n)] = &r[..]
            && let Ok(i) = usize::try_from((*at - since).num_minutes())
            && i < 60
        {
            buckets[i] += n;
        }
    }
    Ok(buckets)
}

/// A running worker's heartbeat: recorded at once, then every
/// [`INTERVAL`] in the background (with the worker's per-minute activity)
/// until [`Heartbeat::stop`].
pub(crate) struct Heartbeat {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Heartbeat {
    /// Starts beating for a worker whose counts `stats` holds and whose
    /// stored values `activity` counts.
    pub(crate) fn start(db: &Db, stats: Arc<Mutex<Stats>>, activity: Arc<Activity>) -> Heartbeat {
        let started = Utc::now();
        let host = host();
        let pid = std::process::id();
        let id = format!("{host}:{pid}:{}", started.timestamp_micros());
        let (stop, mut stopped) = tokio::sync::oneshot::channel::<()>();
        let db = db.clone();
        // Never cancelled mid-statement: a stop is taken between beats,
        // so the last counts are recorded and the row deleted.
        let task = tokio::spawn(async move {
            loop {
                let s = *stats.lock().unwrap_or_else(PoisonError::into_inner);
                if let Err(e) = beat(&db, &id, &host, pid, started, s).await {
                    tracing::debug!(error = %e, "could not record a heartbeat");
                }
                if let Err(e) = record_activity(&db, activity.take()).await {
                    tracing::debug!(error = %e, "could not record the activity");
                }
                tokio::select! {
                    _ = &mut stopped => break,
                    () = tokio::time::sleep(INTERVAL) => {}
                }
            }
            if let Err(e) = record_activity(&db, activity.take()).await {
                tracing::debug!(error = %e, "could not record the activity");
            }
            let gone = Ctx::from(&db)
                .execute(
                    format!("DELETE FROM {TABLE} WHERE id = $1"),
                    &[Value::Text(id)],
                )
                .await;
            if let Err(e) = gone {
                tracing::debug!(error = %e, "could not delete this worker's heartbeat");
            }
        });
        Heartbeat { stop, task }
    }

    /// Stops beating after the beat in hand, records the last activity and
    /// deletes this worker's row.
    pub(crate) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
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
