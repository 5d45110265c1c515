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
use crate::value::{SqlType, Value};

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
    /// Where claims are locks in a table shared by every session: the most
    /// one claim takes (0: no limit), read from the server at start.
    pub(crate) claim_locks: Arc<std::sync::atomic::AtomicUsize>,
    /// How long calculations usually take.
    pub(crate) typical: Arc<execute::Typical>,
    /// Calculations left to finish on their own, and what they came to.
    pub(crate) detached: Arc<Detached>,
}

/// Calculations a batch left to finish on their own (see
/// `execute::Stragglers`): how many are running, and the counts of those
/// written since last asked.
#[derive(Debug, Default)]
pub(crate) struct Detached {
    running: std::sync::atomic::AtomicUsize,
    /// How many have ended, ever.
    ended_count: std::sync::atomic::AtomicUsize,
    /// Per (table, field) with some running: how many, and when the
    /// latest was left to run.
    fields: Mutex<HashMap<(String, String), (usize, Instant)>>,
    ended: tokio::sync::Notify,
    late: Mutex<Stats>,
}

impl Detached {
    /// How many are running.
    pub(crate) fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::SeqCst)
    }

    fn start(&self, table: &str, field: &str) {
        let mut fields = self
            .fields
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let at = fields
            .entry((table.to_owned(), field.to_owned()))
            .or_insert((0, Instant::now()));
        *at = (at.0 + 1, Instant::now());
        self.running
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
    }

    fn end(&self, table: &str, field: &str, stats: Stats) {
        {
            let mut fields = self
                .fields
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let key = (table.to_owned(), field.to_owned());
            if let Some(at) = fields.get_mut(&key) {
                at.0 = at.0.saturating_sub(1);
                if at.0 == 0 {
                    fields.remove(&key);
                }
            }
        }
        self.late
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .add(stats);
        self.ended_count
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        self.running
            .fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
        self.ended.notify_waiters();
    }

    /// The fields with some left to run less than [`STRAGGLER_HOLD`] ago.
    fn young(&self) -> Vec<(String, String)> {
        self.fields
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|(_, (_, at))| at.elapsed() < STRAGGLER_HOLD)
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Until one ends, or `at_most`.
    async fn some_end(&self, at_most: Duration) {
        let ended = self.ended.notified();
        tokio::pin!(ended);
        ended.as_mut().enable();
        if self.running() > 0 {
            let _ = tokio::time::timeout(at_most, ended).await;
        }
    }

    /// How many have ended, ever: a change says their writes landed.
    fn ended(&self) -> usize {
        self.ended_count.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The counts of the calculations written since last asked.
    fn take(&self) -> Stats {
        std::mem::take(
            &mut *self
                .late
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }

    /// Until every one has ended (each is bounded by its time limit).
    async fn wait(&self) {
        loop {
            let ended = self.ended.notified();
            tokio::pin!(ended);
            ended.as_mut().enable();
            if self.running.load(std::sync::atomic::Ordering::SeqCst) == 0 {
                return;
            }
            ended.await;
        }
    }
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
    /// Rows its wave (see `tree`) had not claimed before.
    pub(crate) new_rows: u64,
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
/// // Stops when the application's shutdown future completes (here a
/// // channel; in an axum app, the future its graceful shutdown awaits).
/// let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
/// let worker = tokio::spawn(Worker::new(db, registry).concurrency(4).run_until(async {
///     let _ = stopped.await;
/// }));
/// // … the application runs …
/// let _ = stop.send(());
/// let stats = worker.await.expect("the worker task")?; // after its batch in hand
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
    /// When each field's record in `cached_fields_failures` was last
    /// cleared after a batch of it worked (whichever worker recorded it).
    cleared: Arc<Mutex<HashMap<(usize, usize), Instant>>>,
}

/// How often, at most, a worker whose batches of a field work clears the
/// field's failure record (another worker may have written it since).
const CLEAR_EVERY: Duration = Duration::from_secs(10);

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
                claim_locks: Arc::default(),
                typical: Arc::default(),
                detached: Arc::default(),
            },
            paused: Arc::default(),
            cleared: Arc::default(),
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

    /// The most locks one claim may take where claims are locks in a
    /// table the server shares between its sessions (PostgreSQL's
    /// advisory locks): a sixteenth of that table, so that claims never
    /// run it out for this worker's other connections or anyone else's. A
    /// batch larger than it allows is claimed in smaller batches (said
    /// once, at start).
    async fn fit_to_server(&self) -> Result<()> {
        let Some(sql) = self.db.backend().dialect().lock_table_size() else {
            return Ok(());
        };
        let rows = Ctx::from(&self.db)
            .fetch_values(sql.to_owned(), &[], &[SqlType::Int, SqlType::Text])
            .await?;
        let (size, why) = match rows.first().map(Vec::as_slice) {
            Some([Value::Int(n), Value::Text(why)]) => (*n, why.clone()),
            _ => return Ok(()),
        };
        let budget = usize::try_from(size / 16).unwrap_or(usize::MAX).max(64);
        self.settings
            .claim_locks
            .store(budget, std::sync::atomic::Ordering::Relaxed);
        let most = self
            .registry
            .entries
            .iter()
            .map(|e| e.spec.fields.len())
            .max()
            .unwrap_or(1);
        if self.settings.batch_size * most > budget {
            tracing::warn!(
                batch_size = self.settings.batch_size,
                rows_per_claim = (budget / most).max(1),
                lock_table = size,
                settings = %why,
                "the batch size needs more locks per claim than a sixteenth of the server's lock \
                 table; claiming fewer rows at a time (raise max_locks_per_transaction for more)"
            );
        }
        Ok(())
    }

    /// Runs until its task is dropped (or the process ends). It installs
    /// no signal handler: the application's own SIGINT and SIGTERM handling
    /// stays its own. To stop with the application, finishing the batch in
    /// hand, use [`run_until`](Self::run_until) with the application's
    /// shutdown signal.
    pub async fn run(self) -> Result<Stats> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `stop` completes, finishing the batch in hand first (a
    /// batch is bounded by the calculation timeout), so that it leaves no
    /// lease behind. Errors only on invalid settings: everything else is
    /// contained and retried.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> Result<Stats> {
        self.validate()?;
        // The server's limits, once it answers (a lost database is waited for).
        let _ = self.fit_to_server().await;
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
        // The calculations left running finish (each within its time
        // limit), so that no lease is left behind.
        self.settings.detached.wait().await;
        stats.add(self.settings.detached.take());
        heartbeat.stop().await;
        Ok(stats)
    }

    /// Recalculates everything due now and returns. It waits out hot-row
    /// pauses (and anything else due within one), but not leases held by
    /// other workers, retries or expiries further off.
    pub async fn drain(&self) -> Result<Stats> {
        self.validate()?;
        self.fit_to_server().await?;
        let mut stats = Stats::default();
        let mut quiet = Quiet::default();
        // What, since the walks last started from the first flagged row,
        // may have left a row due behind them (see `claim::Cursors`): a
        // calculation left running that ended (its writes flag what reads
        // it), or a row deferred behind another field (flagged again, it
        // is due at once, yet keeps its old flag time).
        let behind = |stats: &Stats| (self.settings.detached.ended(), stats.deferred);
        let mut swept = behind(&stats);
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
                // Calculations left to finish on their own are part of
                // what was due: written (or failed) before returning.
                _ if self.settings.detached.running() > 0 => {
                    self.settings.detached.wait().await;
                    stats.add(self.settings.detached.take());
                }
                _ if behind(&stats) != swept => {
                    swept = behind(&stats);
                    self.settings.cursors.restart();
                }
                _ => {
                    stats.add(self.settings.detached.take());
                    return Ok(stats);
                }
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
                if let Ok(Some(t)) = entry.ops.next_due(&self.db, field, &self.settings).await {
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
        // The fields reading one with calculations left running a moment
        // ago: they wait for those (see STRAGGLER_HOLD).
        let held: HashSet<(usize, usize)> = self
            .settings
            .detached
            .young()
            .iter()
            .flat_map(|(t, f)| self.registry.downstream(t, f))
            .collect();
        // Upstream fields first, across tables: a value they store flags the
        // fields reading it, which this pass then reaches.
        for &(e, field) in &self.registry.order {
            if self.skips(e, field) || quiet.contains(&(e, field)) || held.contains(&(e, field)) {
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
                    self.field_recovered(e, field, r.claimed > 0).await;
                }
                Err(err) if err.is_retryable() => return Err(err),
                Err(err) => {
                    stats.field_failures += 1;
                    self.field_failed(e, field, &err).await;
                }
            }
        }
        stats.add(self.settings.detached.take());
        if !found && !held.is_empty() {
            // Work held back, not none: back soon (or when one ends).
            self.settings
                .detached
                .some_end(Duration::from_millis(QUIET_MS))
                .await;
            return Ok((true, stats));
        }
        if !found {
            stats.empty_claims += 1;
            // Nothing due: the rows parked waiting for a row they read (a
            // tree's) whose wave never came, or that wait for each other.
            for &(e, field) in &self.registry.order {
                if self.skips(e, field) {
                    continue;
                }
                let r = self.registry.entries[e]
                    .ops
                    .sweep(&self.db, field, &self.settings)
                    .await?;
                found |= r.stats.recalculated + r.stats.failed > 0;
                stats.add(r.stats);
            }
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
    async fn field_recovered(&self, entry: usize, field: usize, worked: bool) {
        let was = self
            .paused
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .remove(&(entry, field))
            .is_some();
        // A batch that worked clears the field's record, whoever wrote it
        // (another process's failure, fixed since): at once after this
        // worker's own, else at most once per CLEAR_EVERY.
        let due = was
            || (worked && {
                let mut cleared = self
                    .cleared
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                let last = cleared.get(&(entry, field));
                let due = last.is_none_or(|t| t.elapsed() >= CLEAR_EVERY);
                if due {
                    cleared.insert((entry, field), Instant::now());
                }
                due
            });
        if due {
            let spec = &self.registry.entries[entry].spec;
            if was {
                tracing::info!(table = %spec.table, field = %spec.fields[field].name, "the field works again");
            }
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

/// How long the fields reading a field wait for its calculations left to
/// run on their own (see `execute::Stragglers`) before going on without
/// them: a slow row is stored before what reads it is calculated (no
/// second calculation), a hung one holds them up no longer than this.
const STRAGGLER_HOLD: Duration = Duration::from_secs(1);

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

/// Where a batch's rows come from.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Source<'a> {
    /// The field's due rows (flagged, expired), in the order they were flagged.
    Due,
    /// The flagged rows whose paths reach these rows, just stored (a
    /// tree's wave, see `tree`), whatever they wait for.
    Reaching(&'a [Key]),
    /// The rows parked waiting for a row they read (see `tree`), looked at
    /// when the worker is idle.
    Waiting,
}

/// Claims one batch of due rows of field `field`, calculates them
/// concurrently, and writes every result back; for a field that reads
/// itself along a path (a tree), then the waves of the stored rows'
/// children (see `tree`). A row that cannot be decoded, calculated or
/// written fails alone (recorded, retried with backoff); every claimed
/// row leaves this function written, failed or deferred, never still
/// leased, unless the database itself is lost.
pub(crate) async fn process_batch<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
) -> Result<BatchReport> {
    process_from::<M>(db, field_idx, settings, Source::Due).await
}

/// [`process_batch`] from `source`.
pub(crate) async fn process_from<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
    source: Source<'_>,
) -> Result<BatchReport> {
    let model = M::model()?;
    let is_tree = !tree::self_paths(model, &model.fields()[field_idx]).is_empty();
    if !is_tree && !matches!(source, Source::Due) {
        return Ok(BatchReport::default());
    }
    let mut wave = tree::Wave::default();
    let (mut report, mut stored) = batch::<M>(db, field_idx, settings, source, &mut wave).await?;
    while is_tree && !stored.is_empty() {
        let mut next = Vec::new();
        for chunk in stored.chunks(settings.batch_size.max(1)) {
            loop {
                let (r, s) =
                    batch::<M>(db, field_idx, settings, Source::Reaching(chunk), &mut wave).await?;
                report.claimed += r.claimed;
                report.stats.add(r.stats);
                next.extend(s);
                // Rows claimed again in this wave are parked or failing:
                // the chunk's other children are due to the field's claims.
                if r.new_rows == 0 || r.claimed < settings.batch_size as u64 {
                    break;
                }
            }
        }
        stored = next;
    }
    Ok(report)
}

/// One batch of [`process_from`]: its report, and the keys stored.
async fn batch<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
    source: Source<'_>,
    wave: &mut tree::Wave,
) -> Result<(BatchReport, Vec<Key>)> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::of(db.backend(), model, field);
    let now = Utc::now();
    // One lease end for a batch and its wave (see `tree`).
    let lease_until = *wave.lease.get_or_insert_with(|| {
        now + chrono::Duration::from_std(settings.lease).unwrap_or(chrono::Duration::seconds(30))
    });
    // Leases held by a lock of this transaction where the engine has them
    // (no row written; they end with it, after the write-backs, or with the
    // connection if the worker dies), else written into the rows.
    // The lease transaction holds a connection for the batch: a pool of
    // one could then run nothing else.
    let by_lock = db.backend().dialect().claims_by_lock() && db.max_connections() > 1;
    // The row's other due fields go with a batch of due rows (see
    // `together`): held by locks the claim takes with its own where claims
    // are locks, else leased by the claim itself.
    let gs = match source {
        Source::Due => together::companions(model, field, settings),
        _ => Vec::new(),
    };
    let with: Vec<&crate::model::FieldColumns> = if by_lock {
        Vec::new()
    } else {
        gs.iter().map(|&g| model.fields()[g].columns()).collect()
    };
    let mut tx = if by_lock {
        Some(db.begin_claim().await?)
    } else {
        None
    };
    let (claimed, held) = match (source, tx.as_mut()) {
        (Source::Due, Some(tx)) => {
            let (claimed, locked) =
                claim::claim_locked(&mut tx.ctx(), model, field_idx, &sql, &gs, settings, now)
                    .await?;
            (claimed, together::Held::Locks(locked))
        }
        (Source::Due, None) => (
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
            together::Held::Leases(lease_until),
        ),
        (source, tx) => {
            let (cond, params) = match source {
                Source::Reaching(keys) => {
                    claim::wave_condition(&settings.catalog, model, field, keys, (now, lease_until))
                }
                _ => claim::waiting_condition(field),
            };
            let mut lease = tx.map(crate::backend::Tx::ctx);
            let claimed = claim::claim_where(
                db,
                lease.as_mut(),
                model,
                field,
                (&cond, params),
                settings.batch_size,
                lease_until,
            )
            .await?;
            (claimed, together::Held::Locks(together::Locked::new()))
        }
    };
    let mut report = BatchReport {
        claimed: claimed.len() as u64,
        ..BatchReport::default()
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
    let mut again = HashSet::new();
    for k in claimed.iter().filter_map(|(k, _)| k.clone()) {
        if wave.seen.insert(k.clone()) {
            report.new_rows += 1;
        } else {
            again.insert(k);
        }
    }
    let outcome = if claimed.is_empty() {
        Ok((report, Vec::new(), None))
    } else {
        let claim = Claimed {
            rows: claimed,
            at: (now, lease_until),
            held,
            sweeping: matches!(source, Source::Waiting),
            again,
        };
        process_claimed(db, model, field, settings, &gs, claim, report, wave).await
    };
    // Rows whose calculations go on after the batch: their leases are
    // written, where the batch's end with its transaction.
    if let (Ok((_, _, Some(late))), Some(tx)) = (&outcome, tx.as_mut()) {
        let mut params = vec![Value::Timestamp(lease_until)];
        params.extend(late.keys.iter().map(Key::to_value));
        tx.ctx()
            .execute(sql.lease_rows(late.keys.len()), &params)
            .await?;
    }
    if let Some(tx) = tx {
        tx.commit().await?;
    }
    let outcome = outcome.map(|(report, stored, late)| {
        if let Some(late) = late {
            let _ = late.leased.send(());
        }
        (report, stored)
    });
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

/// A claimed batch, as [`process_claimed`] takes it.
struct Claimed<M> {
    /// Each row with its key, when that much could be read.
    rows: Vec<(Option<Key>, Result<M>)>,
    /// When it was claimed, and its lease's end.
    at: (DateTime<Utc>, DateTime<Utc>),
    /// How its companions are held.
    held: together::Held,
    /// Claimed among the rows parked waiting (see `tree`): each asked
    /// whether it is on a cycle.
    sweeping: bool,
    /// Rows this wave claimed before.
    again: HashSet<Key>,
}

/// The rest of [`process_batch`], once rows are claimed: the report, and
/// the keys stored.
#[allow(clippy::too_many_arguments)]
async fn process_claimed<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    gs: &[usize],
    claim: Claimed<M>,
    mut report: BatchReport,
    wave: &mut tree::Wave,
) -> Result<(BatchReport, Vec<Key>, Option<Late>)> {
    let Claimed {
        rows: claimed,
        at: (now, lease_until),
        held,
        sweeping,
        again,
    } = claim;
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
    let in_batch: HashSet<Key> = rows.iter().map(CachedModel::primary_key).collect();
    let is_tree = !tree::self_paths(model, field).is_empty();
    let rooted = &wave.rooted;
    let again = &again;
    // First each row's chained fields (leased like a claim), then the
    // calculations: all rows in one call when the field has a batch form.
    let prepared: Vec<Result<(Computed<M>, bool)>> = futures::stream::iter(rows)
        .map(|m| {
            let key = m.primary_key();
            let span = tracing::debug_span!(
                "row",
                table = %model.table(),
                field = %field.name(),
                key = %key
            );
            let in_batch = &in_batch;
            async move {
                let mut ctx = Ctx::from(db);
                let attempts = field.slot(&m).snapshot().attempts;
                let mut chained = 0;
                let before_chain = Utc::now();
                let stopped = |f: &str| settings.is_stopped(model.table().as_str(), f);
                let lease = Some(runtime::Lease {
                    now: before_chain,
                    until: lease_until,
                    stopped: &stopped,
                });
                // A tree (see `tree`): a row on a cycle fails, with the
                // rest of the cycle; one whose parent is stale waits for it.
                let mut acyclic = false;
                let tree = if is_tree {
                    prepare_tree(
                        &mut ctx,
                        settings,
                        model,
                        field,
                        &m,
                        lease_until,
                        (rooted, again, in_batch),
                        sweeping,
                    )
                    .await
                    .map(|(outcome, ok)| {
                        acyclic = ok;
                        outcome
                    })
                } else {
                    Ok(None)
                };
                let outcome = match tree {
                    Err(e) if e.is_retryable() => return Err(e),
                    Err(e) => Outcome::Failed(e),
                    Ok(Some(outcome)) => outcome,
                    Ok(None) => {
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
                Ok((
                    Computed {
                        key,
                        attempts,
                        chained,
                        outcome,
                    },
                    acyclic,
                ))
            }
            .instrument(span)
        })
        .buffer_unordered(settings.concurrency)
        .collect()
        .await;
    let mut prepared: Vec<Result<Computed<M>>> = prepared
        .into_iter()
        .map(|p| {
            p.map(|(c, acyclic)| {
                if acyclic {
                    wave.rooted.insert(c.key.clone());
                }
                c
            })
        })
        .collect();
    if is_tree {
        left_to_the_wave(&mut prepared);
    }
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
    let (computed, stragglers) = calculate_all(db, field, settings, prepared).await;
    // Calculations still running long after the rest: written by a task of
    // their own when they end, once their leases outlive this batch.
    let late = stragglers.map(|mut stragglers| {
        stragglers.lease = lease_until;
        let keys = stragglers.pending_keys();
        let (leased, wait) = tokio::sync::oneshot::channel();
        let names = (model.table().to_string(), field.name().to_string());
        settings.detached.start(&names.0, &names.1);
        let (db, settings) = (db.clone(), settings.clone());
        let field = model
            .fields()
            .iter()
            .position(|f| f.name() == field.name())
            .unwrap_or_default();
        tokio::spawn(
            async move {
                let _ = wait.await;
                let stats = write_late::<M>(&db, field, &settings, stragglers).await;
                settings.detached.end(&names.0, &names.1, stats);
            }
            .instrument(tracing::Span::current()),
        );
        Late { keys, leased }
    });
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
    let mut fresh = Vec::new();
    for (c, stored) in done.iter().zip(stored) {
        let s = &mut report.stats;
        s.recalculated += c.chained;
        match (&c.outcome, stored) {
            (Outcome::Value(row, value, _), Some(Stored::Fresh)) => {
                fresh.push(c.key.clone());
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
            (Outcome::InBatch(_), _) => {}
            _ => {
                tracing::info!(table = %model.table(), field = %field.name(), key = %c.key,
                    "row deleted before its recalculation was stored; skipped");
                s.deleted += 1;
            }
        }
    }
    match fault {
        Some(e) => Err(e),
        None => Ok((report, fresh, late)),
    }
}

/// The rows of a batch whose calculations were left to finish on their
/// own, and the signal that their leases outlive the batch.
struct Late {
    keys: Vec<Key>,
    leased: tokio::sync::oneshot::Sender<()>,
}

/// Writes the results of calculations left running by their batch (see
/// `execute::Stragglers`) as they end, each as a batch would; a result
/// that never comes (past the time limit and more) leaves its row to its
/// lease's end. Returns the counts.
async fn write_late<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
    mut late: execute::Stragglers<M>,
) -> Stats {
    let mut stats = Stats::default();
    let Ok(model) = M::model() else { return stats };
    let field = &model.fields()[field_idx];
    let (table, name) = (model.table().as_str(), field.name().as_str());
    let deadline =
        Instant::now() + runtime::limit(field, settings.timeout) + Duration::from_secs(5);
    let mut ctx = Ctx::from(db);
    // The rows not written yet: their leases are given up at the end (due
    // again at once rather than at the lease's end).
    let mut unwritten: HashSet<usize> = late.left.iter().copied().collect();
    for _ in 0..late.pending {
        let Ok(Some((i, row, value))) =
            tokio::time::timeout_at(deadline.into(), late.results.recv()).await
        else {
            break;
        };
        let Ok(c) = execute::computed(&late.rows[i], row, value) else {
            continue; // a database fault
        };
        // A write that fails (a row lock held long by another transaction)
        // is tried again a few times; then the row's lease is given up, so
        // it is due again at once rather than at the lease's end.
        let mut written = write_one(&mut ctx, model, field, settings, &c).await;
        for _ in 0..3 {
            if !written.as_ref().is_err_and(Error::is_retryable) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
            ctx = Ctx::from(db);
            written = write_one(&mut ctx, model, field, settings, &c).await;
        }
        if written.is_ok() {
            unwritten.remove(&i);
        }
        match written {
            Ok(Some(Stored::Fresh)) => {
                if let Outcome::Value(row, value, _) = &c.outcome
                    && let Ok(Some(message)) =
                        runtime::after_store(&mut ctx, model, field, row, value.clone()).await
                {
                    stats.hook_failures += 1;
                    failures::record(db, table, name, failures::Kind::Hook, &message).await;
                }
                stats.recalculated += 1 + c.chained;
                crate::metrics::count(table, name, "stored", 1);
                settings.activity.stored(table, name);
            }
            Ok(Some(Stored::Superseded)) => {
                stats.superseded += 1;
                crate::metrics::count(table, name, "superseded", 1);
            }
            Ok(Some(Stored::Gone)) => stats.deleted += 1,
            Ok(None) => {
                stats.failed += 1;
                crate::metrics::count(table, name, "failed", 1);
            }
            Err(e) => {
                tracing::warn!(error = %e, key = %c.key, "a late result could not be written");
            }
        }
    }
    let sql = FieldSql::of(db.backend(), model, field).release_lease();
    for i in unwritten {
        let key = late.rows[i].0.to_value();
        let _ = Ctx::from(db)
            .execute(sql.clone(), &[key, Value::Timestamp(late.lease)])
            .await;
    }
    stats
}

/// A tree's row before its calculation (see `tree`): `Some` outcome when
/// it is not calculated now (on a cycle, or waiting for a stale row it
/// reads: in this batch, or not), and whether it is on no cycle. A row
/// whose every parent this wave found on none (`rooted`) is not asked
/// again, unless the wave took it before (`again`); nor is a row that
/// waits, unless `sweeping` (the parked rows of an idle moment, where a
/// cycle's rows end up).
#[allow(clippy::too_many_arguments)]
async fn prepare_tree<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    settings: &Settings,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    m: &M,
    lease_until: DateTime<Utc>,
    (rooted, again, in_batch): (&HashSet<Key>, &HashSet<Key>, &HashSet<Key>),
    sweeping: bool,
) -> Result<(Option<Outcome<M>>, bool)> {
    let catalog = &settings.catalog;
    let key = m.primary_key();
    let above = tree::above(ctx, catalog, model, field, m, lease_until).await?;
    let vouched = !again.contains(&key)
        && !above.parents.contains(&key)
        && above.parents.iter().all(|p| rooted.contains(p));
    let check = !vouched && (sweeping || above.stale.is_empty());
    if check && let Some((e, path)) = tree::cycle(ctx, catalog, model, field, m).await? {
        // Every row of the cycle fails, whichever found it.
        let retry_at = Utc::now()
            + chrono::Duration::from_std(backoff(settings, 0))
                .unwrap_or(chrono::Duration::seconds(1));
        let sql = tree::fail_on_cycle_sql(ctx.backend(), model, field);
        for other in tree::cycle_members(ctx, catalog, model, &path, &key).await? {
            if in_batch.contains(&other) {
                continue; // found by its own look, in this batch
            }
            let message = Error::Cycle {
                table: model.table().to_string(),
                field: field.name().to_string(),
                key: other.clone(),
                path: path.to_string(),
            }
            .to_string();
            ctx.execute(
                sql.clone(),
                &[
                    Value::Text(message),
                    Value::Timestamp(retry_at),
                    other.to_value(),
                ],
            )
            .await?;
        }
        return Ok((Some(Outcome::Failed(e)), false));
    }
    let outcome = if above.stale.is_empty() {
        None
    } else if above.stale.iter().all(|p| in_batch.contains(p)) {
        Some(Outcome::InBatch(above.stale))
    } else {
        Some(Outcome::Waiting)
    };
    Ok((outcome, vouched || check))
}

/// The rows of a tree's batch waiting for others in it: left to the wave
/// that follows the batch where the rows they wait for are calculated now
/// (or left to it themselves), parked otherwise (rows waiting for each
/// other: a cycle, which an idle look at the parked rows finds).
fn left_to_the_wave<M>(prepared: &mut [Result<Computed<M>>]) {
    let mut led: HashSet<Key> = prepared
        .iter()
        .filter_map(|p| match p {
            Ok(c) if matches!(c.outcome, Outcome::Ready(..)) => Some(c.key.clone()),
            _ => None,
        })
        .collect();
    loop {
        let mut more = false;
        for c in prepared.iter().flatten() {
            if let Outcome::InBatch(parents) = &c.outcome
                && !led.contains(&c.key)
                && parents.iter().all(|p| led.contains(p))
            {
                led.insert(c.key.clone());
                more = true;
            }
        }
        if !more {
            break;
        }
    }
    for c in prepared.iter_mut().flatten() {
        if matches!(c.outcome, Outcome::InBatch(..)) && !led.contains(&c.key) {
            c.outcome = Outcome::Waiting;
        }
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
