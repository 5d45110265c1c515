//! The worker: claims due rows (flagged, expired), recalculates them and
//! writes the values back, as a task in the application or its own process.
//! One module per role, as River splits producer, executor and completer:
//! `claim` leases rows, `execute` calculates them, `complete` writes
//! them back, `wake` brings an idle worker back; this module runs the
//! loop over the registry's fields.

mod claim;
mod complete;
mod execute;
mod memory;
mod ops;
mod together;
mod tree;
mod wake;

pub use crate::status::{FieldStatus, keys, recalculate_keys};
pub(crate) use claim::next_due;
pub(crate) use memory::RowMemory;
pub(crate) use ops::ModelOps;
pub(crate) use wake::wake;

use complete::{record_failure, write_all, write_one};
use execute::{Computed, Outcome, backoff, calculate_all};
use memory::{LOOP_COUNT, LOOP_WINDOW};

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tracing::Instrument;

use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::failures;
use crate::key::Key;
use crate::model::{CachedModel, DEFAULT_TIMEOUT};
use crate::registry::Registry;
use crate::runtime::{self, Stored};
use crate::statements::{self, FieldSql};
use crate::value::Value;

/// Worker tuning.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub(crate) concurrency: usize,
    pub(crate) batch_size: usize,
    pub(crate) lease: Duration,
    pub(crate) poll: Duration,
    pub(crate) retry_base: Duration,
    pub(crate) retry_max: Duration,
    /// How long one calculation may take unless its field says otherwise.
    pub(crate) timeout: Duration,
    /// What this worker remembers of recent rows (self-invalidation,
    /// deferrals), shared by its clones.
    pub(crate) rows: Arc<RowMemory>,
    /// Values stored since the last heartbeat, per field.
    pub(crate) activity: Arc<crate::heartbeats::Activity>,
    /// Fields paused or held in the database (`table`, `field`), and when
    /// that was read.
    pub(crate) stopped: Arc<Mutex<Stopped>>,
    /// Where each field's walk of its flagged rows stands.
    pub(crate) cursors: Arc<claim::Cursors>,
    /// The fields (`table`, `field`) that read a cached field along a path:
    /// calculated after it, never with a batch of another field of their
    /// row (see `together`).
    pub(crate) reading_cached: Arc<HashSet<(String, String)>>,
    /// Every declared model's primary key, for the joins of a walk up a
    /// tree through other tables (see `tree`).
    pub(crate) catalog: Arc<crate::triggers::Catalog>,
}

impl Settings {
    /// Whether the field `table`.`field` is paused or held.
    pub(crate) fn is_stopped(&self, table: &str, field: &str) -> bool {
        self.stopped
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .1
            .contains(&(table.to_owned(), field.to_owned()))
    }
}

/// What one claimed batch came to.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct BatchReport {
    pub(crate) claimed: u64,
    pub(crate) stats: Stats,
}

/// Counts of a worker's run, printed as JSON by `lamppost worker`.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
#[non_exhaustive]
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
    /// chain on (taken again when that lease ends), or because a row of a
    /// tree they read was stale (taken again once it is stored).
    pub deferred: u64,
    /// Claims that found nothing left to do.
    pub empty_claims: u64,
    /// After-recalculation hooks that failed (their values were stored).
    pub hook_failures: u64,
    /// Batches of a field that failed as a whole (the field backs off; the
    /// others go on).
    pub field_failures: u64,
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
        self.hook_failures += o.hook_failures;
        self.field_failures += o.field_failures;
    }
}

/// Runs recalculations for the registered models.
///
/// A worker is a long-running service: a calculation that fails, panics,
/// hangs past its timeout or keeps invalidating its own row fails alone
/// (recorded on the row, retried with backoff); an error that stops a whole
/// field (a column of the wrong type) is recorded against the field, which
/// backs off while the others go on; a lost database is waited for. It
/// returns only when asked to stop, after finishing the batch in hand, so
/// it leaves no lease behind.
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
    /// Fields backing off after a field-level failure: (entry, field) →
    /// (failures in a row, when to try again).
    paused: Arc<Mutex<HashMap<(usize, usize), Backoff>>>,
}

/// When the paused and held fields were last read, and which (`table`, `field`).
type Stopped = (Option<Instant>, HashSet<(String, String)>);

/// Failures in a row, and when to try again.
type Backoff = (u32, Instant);

impl Worker {
    /// A worker for every model in `registry`.
    pub fn new(db: Db, registry: Registry) -> Self {
        let specs = registry.specs();
        let reading_cached = Arc::new(crate::graph::reading_cached_along_paths(&specs));
        let catalog = Arc::new(crate::triggers::Catalog::default().with_models(&specs));
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
                timeout: DEFAULT_TIMEOUT,
                rows: Arc::default(),
                activity: Arc::default(),
                stopped: Arc::default(),
                cursors: Arc::default(),
                reading_cached,
                catalog,
            },
            paused: Arc::default(),
        }
    }

    /// Calculations run at once (default 8; 1 to 10,000).
    #[must_use]
    pub fn concurrency(mut self, n: usize) -> Self {
        self.settings.concurrency = n;
        self
    }

    /// Rows claimed per statement (default 64; 1 to 10,000).
    #[must_use]
    pub fn batch_size(mut self, n: usize) -> Self {
        self.settings.batch_size = n;
        self
    }

    /// How long a claim written into a row lasts: a worker killed mid-batch
    /// leaves such rows to others after this (default 30 s; 1 s to 1 day).
    /// SQLite's claims are written; PostgreSQL's are locks that end with
    /// the worker's connection, and only a chained field a row needs first
    /// is leased this way.
    #[must_use]
    pub fn lease(mut self, d: Duration) -> Self {
        self.settings.lease = d;
        self
    }

    /// Longest idle wait between looks for due rows (default 500 ms; 1 ms
    /// to 1 h); notifications and expiries wake the worker sooner.
    #[must_use]
    pub fn poll_interval(mut self, d: Duration) -> Self {
        self.settings.poll = d;
        self
    }

    /// First retry delay after a failed calculation, doubled per failure up
    /// to `max` (default 1 s, 1 h; `base` at least 1 ms, `max` at least `base`).
    #[must_use]
    pub fn retry_backoff(mut self, base: Duration, max: Duration) -> Self {
        self.settings.retry_base = base;
        self.settings.retry_max = max;
        self
    }

    /// How long one calculation may take when its field sets no
    /// `timeout_ms` (default 20 s; at least 1 ms): past it the calculation
    /// is cancelled and counts as failed, and the rest of its batch is
    /// written without waiting for it. Keep it below the lease.
    #[must_use]
    pub fn calculation_timeout(mut self, d: Duration) -> Self {
        self.settings.timeout = d;
        self
    }

    /// Checks every setting, naming the first that cannot work.
    pub fn validate(&self) -> Result<()> {
        let s = &self.settings;
        let bad = |option, value: String, accepted| {
            Err(Error::InvalidSetting {
                option,
                value,
                accepted,
            })
        };
        if !(1..=10_000).contains(&s.concurrency) {
            return bad("concurrency", s.concurrency.to_string(), "1 to 10000");
        }
        if !(1..=10_000).contains(&s.batch_size) {
            return bad("batch size", s.batch_size.to_string(), "1 to 10000");
        }
        if s.lease < Duration::from_secs(1) || s.lease > Duration::from_secs(86_400) {
            return bad("lease", format!("{:?}", s.lease), "1 s to 1 day");
        }
        if s.poll < Duration::from_millis(1) || s.poll > Duration::from_secs(3600) {
            return bad("poll interval", format!("{:?}", s.poll), "1 ms to 1 h");
        }
        if s.retry_base < Duration::from_millis(1) || s.retry_max < s.retry_base {
            return bad(
                "retry backoff",
                format!("{:?} .. {:?}", s.retry_base, s.retry_max),
                "a base of at least 1 ms and a maximum no smaller than the base",
            );
        }
        if s.timeout < Duration::from_millis(1) {
            return bad(
                "calculation timeout",
                format!("{:?}", s.timeout),
                "at least 1 ms",
            );
        }
        Ok(())
    }

    /// Runs until SIGINT or SIGTERM, then returns the counts.
    pub async fn run(self) -> Result<Stats> {
        self.run_until(shutdown_signal()).await
    }

    /// Runs until `stop` completes, finishing the batch in hand first (a
    /// batch is bounded by the calculation timeout), so that it leaves no
    /// lease behind. Errors only on invalid settings: everything else is
    /// contained and retried.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<Stats> {
        self.validate()?;
        let mut stats = Stats::default();
        let waker = wake::waker(&self.db);
        let listener = crate::backend::listen(&self.db, &waker);
        let mut watcher = crate::backend::Changes::new(&self.db);
        tokio::pin!(stop);
        let mut failures = 0u32;
        let mut quiet = Quiet::default();
        let counts = Arc::new(Mutex::new(Stats::default()));
        let heartbeat = crate::heartbeats::Heartbeat::start(
            &self.db,
            counts.clone(),
            self.settings.activity.clone(),
        );
        loop {
            if futures::poll!(&mut stop).is_ready() {
                break;
            }
            watcher.mark().await;
            let skipped = quiet.skipping();
            let wait = match self.pass(&mut quiet).await {
                Ok((found, s)) => {
                    failures = 0;
                    stats.add(s);
                    *counts
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner) = stats;
                    watcher.active(found);
                    if found {
                        continue;
                    }
                    quiet.clear();
                    if skipped {
                        continue; // look at every field before waiting
                    }
                    self.idle_wait().await
                }
                Err(e) => {
                    crate::db::note_fault();
                    failures += 1;
                    let d = Duration::from_millis(100 * 2u64.pow(failures.min(8)))
                        .min(Duration::from_secs(30));
                    tracing::warn!(error = %e, retry_in = ?d, "database unavailable; retrying");
                    d
                }
            };
            tokio::select! {
                biased;
                () = &mut stop => break,
                () = waker.notified() => {}
                () = watcher.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(l) = listener {
            l.abort();
        }
        heartbeat.stop().await;
        Ok(stats)
    }

    /// Recalculates everything due now and returns. It waits out hot-row
    /// pauses (and anything else due within one), but not leases held by
    /// other workers, retries or expiries further off.
    pub async fn drain(&self) -> Result<Stats> {
        self.validate()?;
        let mut stats = Stats::default();
        let mut quiet = Quiet::default();
        loop {
            let skipped = quiet.skipping();
            let (found, s) = self.pass(&mut quiet).await?;
            stats.add(s);
            if found {
                continue;
            }
            quiet.clear();
            if skipped {
                continue; // look at every field before returning
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
        for (e, entry) in self.registry.entries.iter().enumerate() {
            for field in 0..entry.spec.fields.len() {
                if self.skips(e, field) {
                    continue;
                }
                if let Ok(Some(t)) = entry.ops.next_due(&self.db, field).await {
                    soonest = Some(soonest.map_or(t, |s| s.min(t)));
                }
            }
        }
        soonest
    }

    /// Whether this worker leaves a field alone now: it is declared lazy
    /// (its reads recalculate it), or it backs off after a field-level
    /// failure.
    fn skips(&self, entry: usize, field: usize) -> bool {
        let spec = &self.registry.entries[entry].spec;
        if spec.fields[field].mode == Some(crate::Recalculate::Lazily) {
            return true;
        }
        if self
            .settings
            .is_stopped(spec.table.as_str(), spec.fields[field].name.as_str())
        {
            return true;
        }
        let paused = self
            .paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        paused
            .get(&(entry, field))
            .is_some_and(|(_, until)| *until > Instant::now())
    }

    /// Reads the paused and held fields again, once per [`pauses::REFRESH`].
    async fn refresh_stopped(&self) -> Result<()> {
        let due = {
            let s = self
                .settings
                .stopped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            s.0.is_none_or(|at| at.elapsed() >= crate::pauses::REFRESH)
        };
        if due {
            let now = crate::pauses::stopped(&self.db).await?;
            *self
                .settings
                .stopped
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = (Some(Instant::now()), now);
        }
        Ok(())
    }

    /// One batch for each field not `quiet`; whether any found work. A
    /// database fault ends the pass (the caller waits and retries); any
    /// other error of a field is recorded against it and the field backs off.
    async fn pass(&self, quiet: &mut Quiet) -> Result<(bool, Stats)> {
        self.refresh_stopped().await?;
        let mut stats = Stats::default();
        let mut found = false;
        // The tables with a field that found work in this pass.
        let mut busy = HashSet::new();
        // Upstream fields first, across tables: a value they store flags the
        // fields reading it, which this pass then reaches.
        for &(e, field) in &self.registry.order {
            if self.skips(e, field) || quiet.contains(&(e, field)) {
                continue;
            }
            let entry = &self.registry.entries[e];
            match entry.ops.process(&self.db, field, &self.settings).await {
                Ok(r) => {
                    found |= r.claimed > 0;
                    if r.claimed > 0 {
                        busy.insert(e);
                    } else if busy.contains(&e) {
                        quiet.insert((e, field), LED_QUIET_MS);
                    } else {
                        quiet.insert((e, field), QUIET_MS);
                    }
                    stats.add(r.stats);
                    self.field_recovered(e, field).await;
                }
                Err(err) if err.is_retryable() => return Err(err),
                Err(err) => {
                    stats.field_failures += 1;
                    self.field_failed(e, field, &err).await;
                }
            }
        }
        if !found {
            stats.empty_claims += 1;
        }
        Ok((found, stats))
    }

    /// Records a field-level failure and pauses the field with backoff.
    async fn field_failed(&self, entry: usize, field: usize, err: &Error) {
        let spec = &self.registry.entries[entry].spec;
        let (table, name) = (spec.table.as_str(), spec.fields[field].name.as_str());
        let attempts = {
            let mut paused = self
                .paused
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let slot = paused.entry((entry, field)).or_insert((0, Instant::now()));
            let delay = backoff(&self.settings, i32::try_from(slot.0).unwrap_or(i32::MAX));
            slot.0 += 1;
            slot.1 = Instant::now() + delay;
            slot.0
        };
        tracing::error!(%table, field = %name, attempts, error = %err,
            "the field failed as a whole; it backs off, the other fields go on");
        failures::record(
            &self.db,
            table,
            name,
            failures::Kind::Field,
            &err.to_string(),
        )
        .await;
    }

    /// Forgets a field's failures once a batch of it works again.
    async fn field_recovered(&self, entry: usize, field: usize) {
        let was = self
            .paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(entry, field))
            .is_some();
        if was {
            let spec = &self.registry.entries[entry].spec;
            tracing::info!(table = %spec.table, field = %spec.fields[field].name, "the field works again");
            failures::clear(
                &self.db,
                spec.table.as_str(),
                spec.fields[field].name.as_str(),
            )
            .await;
        }
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
}

/// Fields whose last claim found nothing, which the next passes skip while
/// others keep the worker busy, each until its own instant: a busy worker
/// does not spend a claim per pass on each idle field. Before the worker
/// waits or a drain returns, a pass looks at every field again.
#[derive(Debug, Default)]
struct Quiet {
    fields: HashMap<(usize, usize), Instant>,
}

/// How long a field that found nothing is skipped while others are busy.
const QUIET_MS: u64 = 20;

/// How long a field that found nothing is skipped while an earlier field
/// of its table found work in the same pass: the batches of that field
/// take this one's due rows with them (see `together`), and this one's
/// claim steps over those rows (led by the other field) to find none, so
/// its claims are spaced further apart. A row due for this field alone
/// waits at most this long for it while the table is busy.
const LED_QUIET_MS: u64 = 100;

impl Quiet {
    /// Skips field `at` until `ms` milliseconds from now.
    fn insert(&mut self, at: (usize, usize), ms: u64) {
        self.fields
            .insert(at, Instant::now() + Duration::from_millis(ms));
    }

    /// Whether field `at` is skipped now.
    fn contains(&self, at: &(usize, usize)) -> bool {
        self.fields.contains_key(at)
    }

    /// Whether the next pass skips any field (forgetting first those whose
    /// time is up).
    fn skipping(&mut self) -> bool {
        let now = Instant::now();
        self.fields.retain(|_, until| *until > now);
        !self.fields.is_empty()
    }

    /// Forgets the quiet fields.
    fn clear(&mut self) {
        self.fields.clear();
    }
}

/// Completes on SIGINT or SIGTERM.
pub(crate) async fn shutdown_signal() {
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

/// Claims one batch of due rows of field `field`, calculates them
/// concurrently, and writes every result back. A row that cannot be
/// decoded, calculated or written fails alone (recorded, retried with
/// backoff); every claimed row leaves this function written, failed or
/// deferred, never still leased, unless the database itself is lost.
pub(crate) async fn process_batch<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
) -> Result<BatchReport> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::of(db.backend(), model, field);
    let now = Utc::now();
    let lease_until =
        now + chrono::Duration::from_std(settings.lease).unwrap_or(chrono::Duration::seconds(30));
    // Leases held by a lock of this transaction where the engine has them
    // (no row written; they end with it, after the write-backs, or with the
    // connection if the worker dies), else written into the rows.
    // The lease transaction holds a connection for the batch: a pool of
    // one could then run nothing else.
    let by_lock = db.backend().dialect().claims_by_lock() && db.max_connections() > 1;
    // The row's other due fields go with the batch (see `together`): held
    // by locks the claim takes with its own where claims are locks, else
    // leased by the claim itself.
    let gs = together::companions(model, field, settings);
    let with: Vec<&crate::model::FieldColumns> = if by_lock {
        Vec::new()
    } else {
        gs.iter().map(|&g| model.fields()[g].columns()).collect()
    };
    let (claimed, tx, held) = if by_lock {
        let mut tx = db.begin_claim().await?;
        let (claimed, locked) =
            claim::claim_locked(&mut tx.ctx(), model, field_idx, &sql, &gs, settings, now).await?;
        (claimed, Some(tx), together::Held::Locks(locked))
    } else {
        (
            claim::claim(
                db,
                model,
                field_idx,
                &sql,
                &with,
                settings,
                (now, lease_until),
            )
            .await?,
            None,
            together::Held::Leases(lease_until),
        )
    };
    let report = BatchReport {
        claimed: claimed.len() as u64,
        stats: Stats::default(),
    };
    // The claimed keys, where companions' leases may need releasing.
    let keys: Vec<Value> = if with.is_empty() {
        Vec::new()
    } else {
        claimed
            .iter()
            .filter_map(|(k, _)| k.as_ref().map(Key::to_value))
            .collect()
    };
    let outcome = if claimed.is_empty() {
        Ok(report)
    } else {
        process_claimed(
            db,
            model,
            field,
            settings,
            &gs,
            claimed,
            (now, lease_until),
            held,
            report,
        )
        .await
    };
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    // Companions leased with the claim and not stored: released (a row
    // stored together holds no lease of them any more).
    if outcome.is_ok() && !with.is_empty() && !keys.is_empty() {
        let sql = statements::release_with(
            db.backend(),
            model.table(),
            model.primary_key(),
            &with,
            keys.len(),
        );
        let mut params = vec![Value::Timestamp(lease_until)];
        params.extend(keys);
        Ctx::from(db).execute(sql, &params).await?;
    }
    outcome
}

/// The rest of [`process_batch`], once rows are claimed.
#[allow(clippy::too_many_arguments)]
async fn process_claimed<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    gs: &[usize],
    claimed: Vec<(Option<Key>, Result<M>)>,
    (now, lease_until): (DateTime<Utc>, DateTime<Utc>),
    held: together::Held,
    mut report: BatchReport,
) -> Result<BatchReport> {
    // A row that cannot be read as the model (a value of the wrong type in
    // one of its columns) fails alone.
    let mut rows = Vec::with_capacity(claimed.len());
    let mut unreadable = Vec::new();
    for (key, row) in claimed {
        match (key, row) {
            (_, Ok(m)) => rows.push(m),
            (Some(key), Err(e)) if !e.is_retryable() => unreadable.push(Computed {
                key,
                attempts: 0,
                chained: 0,
                outcome: Outcome::Failed(e),
            }),
            (_, Err(e)) => return Err(e),
        }
    }
    // First each row's chained fields (leased like a claim), then the
    // calculations: all rows in one call when the field has a batch form.
    let prepared: Vec<Result<Computed<M>>> = futures::stream::iter(rows)
        .map(|m| {
            let key = m.primary_key();
            let span = tracing::debug_span!(
                "row",
                table = %model.table(),
                field = %field.name(),
                key = %key
            );
            async move {
                let mut ctx = Ctx::from(db);
                let attempts = field.slot(&m).snapshot().attempts;
                let mut chained = 0;
                let before_chain = Utc::now();
                let lease = Some((before_chain, lease_until));
                // A tree: a row on a cycle fails; one whose parent is stale
                // waits for it (the parent's new value flags it again).
                let catalog = &settings.catalog;
                let tree = match tree::cycle(&mut ctx, catalog, model, field, &m).await {
                    Ok(None) => tree::waits(&mut ctx, catalog, model, field, &m, lease_until)
                        .await
                        .map(|w| (None, w)),
                    other => other.map(|e| (e, false)),
                };
                let outcome = match tree {
                    Err(e) if e.is_retryable() => return Err(e),
                    Ok((Some(e), _)) | Err(e) => Outcome::Failed(e),
                    Ok((None, true)) => Outcome::Waiting,
                    Ok((None, false)) => {
                        match runtime::refresh_chain(&mut ctx, model, field, &m, lease).await {
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
                        }
                    }
                };
                Ok(Computed {
                    key,
                    attempts,
                    chained,
                    outcome,
                })
            }
            .instrument(span)
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let ready = prepared
        .iter()
        .filter(|p| {
            matches!(
                p,
                Ok(Computed {
                    outcome: Outcome::Ready(..),
                    ..
                })
            )
        })
        .count();
    let started = Instant::now();
    let computed = calculate_all(db, model, field, settings, prepared).await;
    crate::metrics::calculated(
        model.table().as_str(),
        field.name().as_str(),
        ready,
        started.elapsed().as_secs_f64(),
    );
    // A row whose calculation hit a database fault keeps its lease and is
    // taken again when it ends; the others are written.
    let mut fault = None;
    let mut done: Vec<Computed<M>> = unreadable;
    for c in computed {
        match c {
            Ok(c) => done.push(c),
            Err(e) => {
                fault.get_or_insert(e);
            }
        }
    }
    done.sort_by(|a, b| a.key.cmp(&b.key)); // one lock order for every writer
    let values: Vec<Key> = done
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Value(..)))
        .map(|c| c.key.clone())
        .collect();
    let stale_since = crate::metrics::stale_since(
        &mut Ctx::from(db),
        model.table(),
        model.primary_key(),
        model.key_type(),
        &field.columns().stale_since,
        &values,
    )
    .await;
    // The row's other due fields go with this one: calculated from its new
    // value, written in one statement.
    let stored = if gs.is_empty() {
        write_batch(db, model, field, settings, &mut done).await?
    } else {
        let (stored, companions) =
            together::write(db, held, model, field, settings, gs, &mut done).await?;
        report.stats.add(companions);
        stored
    };
    let mut ctx = Ctx::from(db);
    let (table, name) = (model.table().as_str(), field.name().as_str());
    for (c, stored) in done.iter().zip(stored) {
        let s = &mut report.stats;
        s.recalculated += c.chained;
        match (&c.outcome, stored) {
            (Outcome::Value(row, value, _), Some(Stored::Fresh)) => {
                settings.rows.forget(table, name, &c.key);
                if let Some(message) =
                    runtime::after_store(&mut ctx, model, field, row, value.clone()).await?
                {
                    s.hook_failures += 1;
                    failures::record(db, table, name, failures::Kind::Hook, &message).await;
                }
                s.recalculated += 1;
                crate::metrics::count(table, name, "stored", 1);
                settings.activity.stored(table, name);
                if let Some(since) = stale_since.get(&c.key) {
                    crate::metrics::fresh_after(table, name, *since);
                }
                if c.attempts > 0 {
                    s.retried += 1;
                }
            }
            (Outcome::Value(..), Some(Stored::Superseded)) => {
                s.superseded += 1;
                crate::metrics::count(table, name, "superseded", 1);
                if settings.rows.superseded(table, name, &c.key) {
                    settings.rows.forget(table, name, &c.key);
                    let e = Error::SelfInvalidating {
                        table: table.to_owned(),
                        field: name.to_owned(),
                        key: c.key.clone(),
                        count: LOOP_COUNT,
                        window: LOOP_WINDOW,
                    };
                    record_failure(&mut ctx, model, field, settings, c, &e).await?;
                    s.failed += 1;
                }
            }
            (Outcome::Failed(_), _) => {
                settings.rows.forget(table, name, &c.key);
                s.failed += 1;
                crate::metrics::count(table, name, "failed", 1);
            }
            (Outcome::Deferred(_) | Outcome::Waiting, _) => s.deferred += 1,
            _ => {
                tracing::info!(table = %model.table(), field = %field.name(), key = %c.key,
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

/// Writes a batch's results: values in one statement, then each failure or
/// deferral; should that fail (a deadlock, a lost connection, a value a
/// column rejects), row by row, each failing alone.
async fn write_batch<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    done: &mut [Computed<M>],
) -> Result<Vec<Option<Stored>>> {
    Ok(match write_all(db, model, field, settings, done).await {
        Ok(stored) => stored,
        Err(e) => {
            // A deadlock or a lost connection, or a value the column
            // rejects (its type): row by row, each failing alone.
            tracing::debug!(error = %e, "batched write-back failed; writing row by row");
            let mut ctx = Ctx::from(db);
            let mut stored = Vec::with_capacity(done.len());
            for c in done.iter_mut() {
                match write_one(&mut ctx, model, field, settings, c).await {
                    Ok(s) => stored.push(s),
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => {
                        c.outcome = Outcome::Failed(e);
                        stored.push(write_one(&mut ctx, model, field, settings, c).await?);
                    }
                }
            }
            stored
        }
    })
}
