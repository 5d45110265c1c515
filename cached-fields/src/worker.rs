//! The worker: claims due rows (flagged, expired), recalculates them and
//! writes the values back, as a task in the application or its own process.

use std::future::Future;
use std::sync::LazyLock;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio::sync::Notify;

use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::model::CachedModel;
use crate::registry::Registry;
use crate::runtime::{self, Stored};
use crate::statements::{self, FieldSql};
use crate::value::{SqlType, Value};

static WAKE: LazyLock<Notify> = LazyLock::new(Notify::new);

/// Wakes this process's idle workers (after a flag or an expiry change).
pub(crate) fn wake() {
    WAKE.notify_one();
}

/// Worker tuning.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) concurrency: usize,
    pub(crate) batch_size: usize,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
}

/// What one claimed batch came to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchReport {
    pub(crate) claimed: u64,
    pub(crate) stats: Stats,
}

/// Counts of a worker's run, printed as JSON by `lamppost worker`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Stats {
    /// Values recalculated and stored (chained fields a row needed first included).
    pub recalculated: u64,
    /// Calculations that errored or panicked (left flagged, retried later).
    pub failed: u64,
    /// Recalculations of rows that had failed before.
    pub retried: u64,
    /// Values computed but not stored: invalidated again meanwhile.
    pub superseded: u64,
    /// Rows deleted before their recalculation.
    pub deleted: u64,
    /// Rows put off because another worker was recalculating a field they
    /// chain on (taken again when that lease ends).
    pub deferred: u64,
    /// Claims that found nothing left to do.
    pub empty_claims: u64,
}

impl Stats {
    fn add(&mut self, o: Stats) {
        self.recalculated += o.recalculated;
        self.failed += o.failed;
        self.retried += o.retried;
        self.superseded += o.superseded;
        self.deleted += o.deleted;
        self.deferred += o.deferred;
        self.empty_claims += o.empty_claims;
    }
}

/// Runs recalculations for the registered models.
///
/// ```no_run
/// # async fn f(db: cached_fields::Db, registry: cached_fields::Registry) -> cached_fields::Result<()> {
/// use cached_fields::Worker;
/// let stats = Worker::new(db, registry).concurrency(4).run().await?; // until SIGINT/SIGTERM
/// println!("{}", stats.recalculated);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Worker {
    db: Db,
    registry: Registry,
    settings: Settings,
}

impl Worker {
    /// A worker for every model in `registry`.
    pub fn new(db: Db, registry: Registry) -> Self {
        Worker {
            db,
            registry,
            settings: Settings {
                concurrency: 8,
                batch_size: 64,
                lease: Duration::from_secs(30),
                poll: Duration::from_millis(500),
                retry_base: Duration::from_secs(1),
                retry_max: Duration::from_secs(3600),
            },
        }
    }

    /// Calculations run at once (default 8).
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n.max(1);
        self
    }

    /// Rows claimed per statement (default 64).
    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n.max(1);
        self
    }

    /// How long a claim lasts: a worker killed mid-batch leaves its rows to
    /// others after this (default 30 s).
    pub fn lease(mut self, d: Duration) -> Self {
        self.settings.lease = d;
        self
    }

    /// Longest idle wait between looks for due rows (default 500 ms);
    /// notifications and expiries wake the worker sooner.
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.settings.poll = d;
        self
    }

    /// First retry delay after a failed calculation, doubled per failure up
    /// to `max` (default 1 s, 1 h).
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.retry_base = base;
        self.settings.retry_max = max;
        self
    }

    /// Runs until SIGINT or SIGTERM, then returns the counts.
    pub async fn run(self) -> Result<Stats> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes (finishing the batch in hand).
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<Stats> {
        let mut stats = Stats::default();
        let listener = self.listen();
        let mut watcher = DataVersion::new(&self.db);
        tokio::pin!(stop);
        let mut failures = 0u32;
        loop {
            watcher.mark().await;
            let pass = tokio::select! {
                biased;
                () = &mut stop => break,
                r = self.pass() => r,
            };
            let wait = match pass {
                Ok((found, s)) => {
                    failures = 0;
                    stats.add(s);
                    if found {
                        continue;
                    }
                    self.idle_wait().await
                }
                Err(e) if e.is_retryable() => {
                    crate::db::note_fault();
                    failures += 1;
                    let d = Duration::from_millis(100 * 2u64.pow(failures.min(8)))
                        .min(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in = ?d, "database unavailable; retrying");
                    d
                }
                Err(e) => {
                    if let Some(l) = listener {
                        l.abort();
                    }
                    return Err(e);
                }
            };
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = WAKE.notified() => {}
                () = watcher.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        Ok(stats)
    }

    /// Recalculates everything due now and returns. It waits out hot-row
    /// pauses (and anything else due within one), but not leases held by
    /// other workers, retries or expiries further off.
    pub async fn drain(&self) -> Result<Stats> {
        let mut stats = Stats::default();
        loop {
            let (found, s) = self.pass().await?;
            stats.add(s);
            if found {
                continue;
            }
            let soon = Utc::now() + chrono::Duration::milliseconds(statements::HOT_PAUSE_MS + 10);
            match self.next_due().await {
                Some(t) if t <= soon => {
                    let d = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::time::sleep(d + Duration::from_millis(1)).await;
                }
                _ => return Ok(stats),
            }
        }
    }

    /// The soonest instant any row of any field becomes due, if scheduled.
    async fn next_due(&self) -> Option<DateTime<Utc>> {
        let mut soonest: Option<DateTime<Utc>> = None;
        for entry in &self.registry.entries {
            for field in 0..entry.spec.fields.len() {
                if let Ok(Some(t)) = entry.ops.next_due(&self.db, field).await {
                    soonest = Some(soonest.map_or(t, |s| s.min(t)));
                }
            }
        }
        soonest
    }

    /// One batch for each field; whether any found work.
    async fn pass(&self) -> Result<(bool, Stats)> {
        let mut stats = Stats::default();
        let mut found = false;
        for entry in &self.registry.entries {
            for &field in &entry.spec.order {
                let r = entry.ops.process(&self.db, field, &self.settings).await?;
                found |= r.claimed > 0;
                stats.add(r.stats);
            }
        }
        if !found {
            stats.empty_claims += 1;
        }
        Ok((found, stats))
    }

    /// How long to sleep: until the next expiry or end of lease/backoff, at
    /// most the poll interval.
    async fn idle_wait(&self) -> Duration {
        match self.next_due().await {
            Some(t) => {
                let d = (t - Utc::now()).to_std().unwrap_or(Duration::ZERO);
                self.settings.poll.min(d + Duration::from_millis(5))
            }
            None => self.settings.poll,
        }
    }

    /// On PostgreSQL, forwards trigger notifications to [`wake`].
    fn listen(&self) -> Option<tokio::task::JoinHandle<()>> {
        #[cfg(feature = "postgres")]
        if let Db::Postgres(pool) = &self.db {
            let pool = pool.clone();
            return Some(tokio::spawn(async move {
                loop {
                    match sqlx::postgres::PgListener::connect_with(&pool).await {
                        Ok(mut l) => {
                            if let Err(e) = l.listen(crate::schema::CHANNEL).await {
                                tracing::warn!(error = %e, "LISTEN failed; polling");
                            } else {
                                while l.recv().await.is_ok() {
                                    wake();
                                }
                            }
                        }
                        Err(e) => tracing::debug!(error = %e, "listener cannot connect; polling"),
                    }
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }));
        }
        None
    }
}

/// Notices commits by other SQLite connections and processes (the app, the
/// `sqlite3` shell) through `PRAGMA data_version`, a cheap read; PostgreSQL
/// has `LISTEN` instead.
struct DataVersion {
    #[cfg(feature = "sqlite")]
    sqlite: Option<(
        sqlx::SqlitePool,
        Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
    )>,
    last: Option<i64>,
}

impl DataVersion {
    const EVERY: Duration = Duration::from_millis(2);

    fn new(db: &Db) -> Self {
        DataVersion {
            #[cfg(feature = "sqlite")]
            sqlite: db.as_sqlite().map(|p| (p.clone(), None)),
            last: None,
        }
    }

    async fn read(&mut self) -> Option<i64> {
        #[cfg(feature = "sqlite")]
        if let Some((pool, conn)) = &mut self.sqlite {
            if conn.is_none() {
                *conn = pool.acquire().await.ok();
            }
            let c = conn.as_mut()?;
            let v = sqlx::query_scalar::<_, i64>("PRAGMA data_version")
                .fetch_one(&mut **c)
                .await;
            if v.is_err() {
                *conn = None;
            }
            return v.ok();
        }
        None
    }

    /// Remembers the current version, before looking for work.
    async fn mark(&mut self) {
        self.last = self.read().await;
    }

    /// Completes when another connection commits (never on PostgreSQL).
    async fn changed(&mut self) {
        #[cfg(feature = "sqlite")]
        if self.sqlite.is_some() {
            loop {
                tokio::time::sleep(Self::EVERY).await;
                let now = self.read().await;
                if now.is_some() && now != self.last {
                    self.last = now;
                    return;
                }
            }
        }
        std::future::pending::<()>().await;
    }
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn backoff(settings: &Settings, attempts: i32) -> Duration {
    let exp = u32::try_from(attempts.clamp(0, 30)).unwrap_or(30);
    let d = settings
        .retry_base
        .saturating_mul(2u32.saturating_pow(exp))
        .min(settings.retry_max);
    // Jitter of up to a quarter, so failing rows do not retry in lockstep.
    let nanos = u64::from(Utc::now().timestamp_subsec_nanos());
    let jitter = d.mul_f64((nanos % 1000) as f64 / 4000.0);
    d + jitter
}

/// How long a row waits for another worker's recalculation of a field it
/// chains on.
const DEFER_MS: i64 = 50;

/// What one row's calculation came to, before anything is written.
enum Outcome<M> {
    /// Ready to calculate from this row, its inputs read at this instant.
    Ready(M, DateTime<Utc>),
    /// A value, computed from this row (possibly reloaded after its chain).
    Value(M, Value, DateTime<Utc>),
    /// The calculation failed; retry after the backoff.
    Failed(Error),
    /// The row was deleted.
    Gone,
    /// A chained field of the row is leased by another worker (its index):
    /// wait for it rather than repeat its work.
    Deferred(usize),
}

struct Computed<M> {
    key: i64,
    attempts: i32,
    /// Fields this row's chain needed first, recalculated and stored inline.
    chained: u64,
    outcome: Outcome<M>,
}

/// Claims one batch of due rows of field `field`, calculates them
/// concurrently, and writes every result back in one transaction.
pub(crate) async fn process_batch<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
) -> Result<BatchReport> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::new(
        db.backend(),
        model.table(),
        model.primary_key(),
        field.columns(),
    );
    let now = Utc::now();
    let lease_until =
        now + chrono::Duration::from_std(settings.lease).unwrap_or(chrono::Duration::seconds(30));
    let batch = i64::try_from(settings.batch_size).unwrap_or(64);
    let mut ctx = Ctx::from(db);
    let rows: Vec<M> = runtime::with_schema_hint(
        ctx.fetch_models::<M>(
            sql.claim(model.select_list()),
            &[
                Value::Timestamp(now),
                Value::Timestamp(lease_until),
                Value::Int(batch),
            ],
        )
        .await,
        &mut ctx,
        model,
    )
    .await?;
    drop(ctx);
    let mut report = BatchReport {
        claimed: rows.len() as u64,
        stats: Stats::default(),
    };
    if rows.is_empty() {
        return Ok(report);
    }
    // First each row's chained fields (leased like a claim), then the
    // calculations: all rows in one call when the field has a batch form.
    let prepared: Vec<Result<Computed<M>>> = futures::stream::iter(rows)
        .map(|m| async move {
            let mut ctx = Ctx::from(db);
            let key = m.primary_key();
            let attempts = field.slot(&m).snapshot().attempts;
            let mut chained = 0;
            let before_chain = Utc::now();
            let lease = Some((before_chain, lease_until));
            let outcome = match runtime::refresh_chain(&mut ctx, model, field, &m, lease).await {
                Ok(runtime::Chain::Busy(upstream)) => Outcome::Deferred(upstream),
                // When the row's inputs were read: at the claim, or at the
                // reload after its chain (no earlier than this).
                Ok(runtime::Chain::Reloaded(row, n)) => {
                    chained = n;
                    Outcome::Ready(row, before_chain)
                }
                Ok(runtime::Chain::Fresh) => Outcome::Ready(m, now),
                Err(Error::RowNotFound { .. }) => Outcome::Gone,
                Err(e) if e.is_retryable() => return Err(e),
                Err(e) => Outcome::Failed(e),
            };
            Ok(Computed {
                key,
                attempts,
                chained,
                outcome,
            })
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let computed = calculate_all(db, model, field, settings, prepared).await;
    // A row whose calculation hit a database fault keeps its lease and is
    // taken again when it ends; the others are written.
    let mut fault = None;
    let mut done: Vec<Computed<M>> = Vec::with_capacity(computed.len());
    for c in computed {
        match c {
            Ok(c) => done.push(c),
            Err(e) => {
                fault.get_or_insert(e);
            }
        }
    }
    done.sort_by_key(|c| c.key); // one lock order for every writer
    let stored = match write_all(db, model, field, settings, &done).await {
        Ok(stored) => stored,
        Err(e) if e.is_retryable() => {
            // A deadlock or a lost connection: write row by row instead.
            tracing::debug!(error = %e, "batched write-back failed; writing row by row");
            let mut ctx = Ctx::from(db);
            let mut stored = Vec::with_capacity(done.len());
            for c in &done {
                stored.push(write_one(&mut ctx, model, field, settings, c).await?);
            }
            stored
        }
        Err(e) => return Err(e),
    };
    let mut ctx = Ctx::from(db);
    for (c, stored) in done.iter().zip(stored) {
        let s = &mut report.stats;
        s.recalculated += c.chained;
        match (&c.outcome, stored) {
            (Outcome::Value(row, value, _), Some(Stored::Fresh)) => {
                runtime::after_store(&mut ctx, model, field, row, value.clone()).await?;
                s.recalculated += 1;
                if c.attempts > 0 {
                    s.retried += 1;
                }
            }
            (Outcome::Value(..), Some(Stored::Superseded)) => s.superseded += 1,
            (Outcome::Failed(_), _) => s.failed += 1,
            (Outcome::Deferred(_), _) => s.deferred += 1,
            _ => {
                tracing::info!(table = %model.table(), field = %field.name(), key = c.key,
                    "row deleted before its recalculation was stored; skipped");
                s.deleted += 1;
            }
        }
    }
    match fault {
        Some(e) => Err(e),
        None => Ok(report),
    }
}

/// Calculates the rows that are ready: in one call of the field's batch
/// function when it has one (falling back to one call per row should the
/// batch fail, so a bad row fails alone), else one call per row at the
/// worker's concurrency.
async fn calculate_all<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    prepared: Vec<Result<Computed<M>>>,
) -> Vec<Result<Computed<M>>> {
    let ready: Vec<&M> = prepared
        .iter()
        .filter_map(|c| match c {
            Ok(Computed {
                outcome: Outcome::Ready(row, _),
                ..
            }) => Some(row),
            _ => None,
        })
        .collect();
    let batch = if ready.len() > 1 {
        runtime::compute_many(&mut Ctx::from(db), model, field, &ready).await
    } else {
        None
    };
    drop(ready);
    let mut values = match batch {
        Some(Ok(values)) => Some(values.into_iter()),
        Some(Err(e)) => {
            tracing::warn!(error = %e, "batch calculation failed; calculating row by row");
            None
        }
        None => None,
    };
    let jobs: Vec<(Result<Computed<M>>, Option<Value>)> = prepared
        .into_iter()
        .map(|c| {
            let is_ready = matches!(
                c,
                Ok(Computed {
                    outcome: Outcome::Ready(..),
                    ..
                })
            );
            let value = values
                .as_mut()
                .filter(|_| is_ready)
                .and_then(Iterator::next);
            (c, value)
        })
        .collect();
    futures::stream::iter(jobs)
        .map(|(c, value)| async move {
            let mut c = c?;
            c.outcome = match c.outcome {
                Outcome::Ready(row, read_at) => {
                    let value = match value {
                        Some(v) => Ok(v),
                        None => runtime::compute(&mut Ctx::from(db), model, field, &row).await,
                    };
                    match value {
                        Ok(v) => Outcome::Value(row, v, read_at),
                        Err(e) => Outcome::Failed(e),
                    }
                }
                other => other,
            };
            Ok(c)
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await
}

/// Writes every result: on SQLite in one transaction (one write lock, one
/// commit); on PostgreSQL as a few autocommit statements that carry the
/// worker's settings (asynchronous commit, a short lock timeout), which
/// saves the round trips of a transaction. Every statement is correct on its
/// own: a crash between them leaves rows leased until the lease ends.
async fn write_all<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    done: &[Computed<M>],
) -> Result<Vec<Option<Stored>>> {
    if db.backend() == crate::db::Backend::Postgres {
        return write_each(&mut Ctx::from(db), model, field, settings, done).await;
    }
    let mut tx = db.begin().await?;
    let stored = write_each(&mut tx.ctx(), model, field, settings, done).await?;
    tx.commit().await?;
    Ok(stored)
}

/// The statements of [`write_all`]: every value in one statement, then each
/// failure or deferral.
async fn write_each<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    done: &[Computed<M>],
) -> Result<Vec<Option<Stored>>> {
    let values: Vec<(&M, &Value)> = done
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Value(row, value, _) => Some((row, value)),
            _ => None,
        })
        .collect();
    let read_at = done
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Value(_, _, at) => Some(*at),
            _ => None,
        })
        .min()
        .unwrap_or_else(Utc::now);
    let mut stored = runtime::store_many(ctx, model, field, &values, read_at, true)
        .await?
        .into_iter();
    let mut out = Vec::with_capacity(done.len());
    for c in done {
        out.push(match &c.outcome {
            Outcome::Value(..) => stored.next(),
            _ => write_one(ctx, model, field, settings, c).await?,
        });
    }
    Ok(out)
}

/// Writes one result: the value (if still current), or the failure.
async fn write_one<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    c: &Computed<M>,
) -> Result<Option<Stored>> {
    match &c.outcome {
        Outcome::Value(row, value, read_at) => {
            runtime::store(ctx, model, field, row, value, *read_at, true)
                .await
                .map(Some)
        }
        Outcome::Failed(e) => {
            let retry_at = Utc::now()
                + chrono::Duration::from_std(backoff(settings, c.attempts))
                    .unwrap_or(chrono::Duration::seconds(1));
            tracing::warn!(error = %e, attempt = c.attempts + 1, %retry_at, "recalculation failed");
            let sql = FieldSql::new(
                ctx.backend(),
                model.table(),
                model.primary_key(),
                field.columns(),
            )
            .record_failure();
            ctx.execute(
                sql,
                &[
                    Value::Text(e.to_string()),
                    Value::Timestamp(retry_at),
                    Value::Int(c.key),
                ],
            )
            .await?;
            Ok(None)
        }
        Outcome::Deferred(upstream) => {
            let up = model.fields()[*upstream].columns();
            let sql = FieldSql::new(
                ctx.backend(),
                model.table(),
                model.primary_key(),
                field.columns(),
            )
            .defer_behind(up);
            // Briefly: the other worker usually stores the upstream value
            // within milliseconds, and its lease may be long.
            let retry_at = Utc::now() + chrono::Duration::milliseconds(DEFER_MS);
            ctx.execute(sql, &[Value::Int(c.key), Value::Timestamp(retry_at)])
                .await?;
            Ok(None)
        }
        // Every ready row was calculated before writing.
        Outcome::Ready(..) | Outcome::Gone => Ok(None),
    }
}

/// When the next row of the field becomes due, if any is scheduled.
pub(crate) async fn next_due<M: CachedModel>(
    db: &Db,
    field_idx: usize,
) -> Result<Option<DateTime<Utc>>> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::new(
        db.backend(),
        model.table(),
        model.primary_key(),
        field.columns(),
    );
    let rows = Ctx::from(db)
        .fetch_values(
            sql.next_due(),
            &[Value::Timestamp(statements::parked_alt())],
            &[SqlType::Float],
        )
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Float(s)) => statements::from_epoch(*s),
        _ => None,
    })
}

/// One field's figures, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct FieldStatus {
    /// The table.
    pub table: String,
    /// The cached field.
    pub field: String,
    /// Rows in the table.
    pub rows: i64,
    /// Rows flagged for recalculation.
    pub stale: i64,
    /// Rows not flagged whose expiry has passed.
    pub expired: i64,
    /// Flagged rows whose last calculation failed.
    pub failing: i64,
    /// Seconds since the longest-waiting flagged row became stale.
    pub oldest_stale_secs: Option<f64>,
    /// The most-retried failure: key, attempts, message.
    pub last_error: Option<(i64, i64, String)>,
}

pub(crate) async fn status(db: &Db, registry: &Registry) -> Result<Vec<FieldStatus>> {
    let mut out = Vec::new();
    let mut ctx = Ctx::from(db);
    let now = Utc::now();
    for entry in &registry.entries {
        let spec = &entry.spec;
        for &i in &spec.order {
            let f = &spec.fields[i];
            let name = &f.name;
            let sql = FieldSql::new(db.backend(), &spec.table, &spec.primary_key, &f.columns);
            let rows = ctx
                .fetch_values(
                    sql.status(),
                    &[Value::Timestamp(now)],
                    &[
                        SqlType::Int,
                        SqlType::Int,
                        SqlType::Int,
                        SqlType::Int,
                        SqlType::Float,
                    ],
                )
                .await?;
            let int = |v: Option<&Value>| match v {
                Some(Value::Int(i)) => *i,
                _ => 0,
            };
            let r = rows.first().cloned().unwrap_or_default();
            let oldest = match r.get(4) {
                Some(Value::Float(s)) => Some((now.timestamp_micros() as f64 / 1e6 - s).max(0.0)),
                _ => None,
            };
            let last = ctx
                .fetch_values(
                    sql.last_failure(),
                    &[],
                    &[SqlType::Int, SqlType::Int, SqlType::Text],
                )
                .await?;
            let last_error = last.first().and_then(|r| match &r[..] {
                [Value::Int(k), Value::Int(a), Value::Text(m)] => Some((*k, *a, m.clone())),
                [Value::Int(k), Value::Int(a), Value::Null(_)] => Some((*k, *a, String::new())),
                _ => None,
            });
            out.push(FieldStatus {
                table: spec.table.to_string(),
                field: name.to_string(),
                rows: int(r.first()),
                stale: int(r.get(1)),
                expired: int(r.get(2)),
                failing: int(r.get(3)),
                oldest_stale_secs: oldest,
                last_error,
            });
        }
    }
    Ok(out)
}

/// Recalculates the given rows of one field now, one by one (for `recalc`).
pub async fn recalculate_keys(
    db: &Db,
    registry: &Registry,
    table: &str,
    field: &str,
    keys: &[i64],
) -> Result<()> {
    let (entry, idx) = registry.find(table, field)?;
    for k in keys {
        match entry.ops.recalculate(db, idx, *k).await {
            Ok(()) | Err(Error::RowNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keys of one field's rows, stale ones only or all, after `after`, at most `limit`.
pub async fn keys(
    db: &Db,
    registry: &Registry,
    table: &str,
    field: &str,
    all: bool,
    after: i64,
    limit: i64,
) -> Result<Vec<i64>> {
    let (entry, idx) = registry.find(table, field)?;
    let sql = FieldSql::new(
        db.backend(),
        &entry.spec.table,
        &entry.spec.primary_key,
        &entry.spec.fields[idx].columns,
    )
    .keys(all);
    let rows = Ctx::from(db)
        .fetch_values(
            sql,
            &[
                Value::Timestamp(Utc::now()),
                Value::Int(limit),
                Value::Int(after),
            ],
            &[SqlType::Int],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.first() {
            Some(Value::Int(k)) => Some(*k),
            _ => None,
        })
        .collect())
}
