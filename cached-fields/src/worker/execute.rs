//! Executing: the calculations of a claimed batch (whose rows the loop in
//! `mod.rs` has brought up to date along their chains), in one call of the
//! field's batch function or one call per row; and how long a failed row
//! waits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::Settings;
use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::model::{CachedModel, Field, Model};
use crate::runtime;
use crate::value::Value;

/// How long a row waits for another worker's recalculation of a field it
/// chains on.
pub(super) const DEFER_MS: i64 = 50;

/// What one row's calculation came to, before anything is written.
pub(super) enum Outcome<M> {
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
    /// A row of a tree this row reads is stale: parked until that row is
    /// stored (see `tree`).
    Waiting,
    /// A row of a tree waiting for these rows of its batch: left to the
    /// wave that follows the batch (see `tree`), not written.
    InBatch(Vec<Key>),
}

pub(super) struct Computed<M> {
    pub(super) key: Key,
    pub(super) attempts: i32,
    /// Fields this row's chain needed first, recalculated and stored inline.
    pub(super) chained: u64,
    pub(super) outcome: Outcome<M>,
}

/// A calculation still running when the rest of its batch was done (see
/// [`calculate_all`]): it goes on in a task of its own, holding its
/// worker slot, and its result is written when it ends.
pub(super) struct Stragglers<M> {
    /// Each row's key, attempts, chained recalculations, and when its
    /// inputs were read.
    pub(super) rows: Vec<(Key, i32, u64, DateTime<Utc>)>,
    /// Their results as they come, by index in `rows`.
    pub(super) results: mpsc::UnboundedReceiver<(usize, M, Result<Value>)>,
    /// The indexes in `rows` of those still running.
    pub(super) left: Vec<usize>,
    /// How many results are still to come.
    pub(super) pending: usize,
    /// The end of the lease the rows hold meanwhile.
    pub(super) lease: DateTime<Utc>,
}

impl<M> Stragglers<M> {
    /// The keys of the rows still running.
    pub(super) fn pending_keys(&self) -> Vec<Key> {
        self.left.iter().map(|&i| self.rows[i].0.clone()).collect()
    }
}

/// The shortest wait, once the rest of a batch is done, before its
/// calculations still running are left to finish on their own.
const STRAGGLER_MIN: Duration = Duration::from_millis(20);

/// How long a batch function may run before one of its batches is known.
const BATCH_PATIENCE: Duration = Duration::from_secs(2);

/// How long a calculation of this kind usually takes (a running average,
/// per field and per form: one row, or a batch), where known.
#[derive(Debug, Default)]
pub(crate) struct Typical(Mutex<HashMap<(String, String, bool), Duration>>);

impl Typical {
    pub(super) fn get<M>(
        &self,
        model: &Model<M>,
        field: &Field<M>,
        many: bool,
    ) -> Option<Duration> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&(model.table().to_string(), field.name().to_string(), many))
            .copied()
    }

    pub(super) fn note<M>(&self, model: &Model<M>, field: &Field<M>, many: bool, took: Duration) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let slot = map
            .entry((model.table().to_string(), field.name().to_string(), many))
            .or_insert(took);
        *slot = (*slot * 7 + took) / 8;
    }
}

/// Calculates the rows that are ready: in one call of the field's batch
/// function when it has one (falling back to one call per row should the
/// batch fail, or outlast what it usually takes by far, so a bad row fails
/// alone), else one call per row, each in a task of its own holding one of
/// the worker's slots, cancelled at the time limit. Once the rest of the
/// batch is done, a calculation still running long after (a hung one) is
/// left to finish on its own ([`Stragglers`]): the batch is written
/// without it, and the worker goes on with a slot fewer until it ends.
pub(super) async fn calculate_all<M: CachedModel>(
    db: &Db,
    field: &Field<M>,
    settings: &Settings,
    prepared: Vec<Result<Computed<M>>>,
) -> (Vec<Result<Computed<M>>>, Option<Stragglers<M>>) {
    let model = match M::model() {
        Ok(m) => m,
        Err(e) => return (vec![Err(e)], None),
    };
    let Ok(field) = model.field(field.name().as_str()) else {
        return (prepared, None);
    };
    let limit = runtime::limit(field, settings.timeout);
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
    // A batch that outlasts by far what the field's batches take (2 s
    // before one is known) is cancelled, and its rows calculated one by
    // one: a hung row among them then holds one slot, not the batch.
    let patience = settings
        .typical
        .get(model, field, true)
        .map_or(BATCH_PATIENCE, |t| (t * 8).max(Duration::from_secs(1)))
        .min(limit);
    let mut batch_timed_out = false;
    let batch = if ready.len() > 1 {
        let started = Instant::now();
        let values =
            runtime::compute_many(&mut Ctx::from(db), model, field, &ready, patience).await;
        match &values {
            Some(Ok(_)) => settings.typical.note(model, field, true, started.elapsed()),
            Some(Err(Error::TimedOut { .. })) => batch_timed_out = true,
            _ => {}
        }
        values
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
    // Values from the batch function where it gave them; the other ready
    // rows are jobs, one task each.
    let mut out: Vec<Option<Result<Computed<M>>>> = Vec::with_capacity(prepared.len());
    let mut jobs = Vec::new();
    let mut rows = Vec::new();
    // Where each job's outcome goes among `out`.
    let mut place = Vec::new();
    for c in prepared {
        match c {
            Ok(Computed {
                key,
                attempts,
                chained,
                outcome: Outcome::Ready(row, read_at),
            }) => match values.as_mut().and_then(Iterator::next) {
                Some(v) => out.push(Some(Ok(Computed {
                    key,
                    attempts,
                    chained,
                    outcome: Outcome::Value(row, v, read_at),
                }))),
                None => {
                    jobs.push((rows.len(), row));
                    place.push(out.len());
                    rows.push((key, attempts, chained, read_at));
                    out.push(None);
                }
            },
            other => out.push(Some(other)),
        }
    }
    let (sender, mut results) = mpsc::unbounded_channel();
    // The batch's slots: a calculation holds one while the batch waits for
    // it; one left to finish on its own gives its slot back.
    let slots = Arc::new(tokio::sync::Semaphore::new(
        settings
            .concurrency
            .clamp(1, tokio::sync::Semaphore::MAX_PERMITS),
    ));
    let mut held: Vec<Option<tokio::sync::OwnedSemaphorePermit>> =
        (0..jobs.len()).map(|_| None).collect();
    let launch = |(i, row): (usize, M)| {
        let (db, sender, typical) = (db.clone(), sender.clone(), settings.typical.clone());
        let span = tracing::Span::current();
        tokio::spawn(
            async move {
                let started = Instant::now();
                let value = runtime::compute(&mut Ctx::from(&db), model, field, &row, limit).await;
                if value.is_ok() {
                    typical.note(model, field, false, started.elapsed());
                }
                let _ = sender.send((i, row, value));
            }
            .instrument(span),
        );
        i
    };
    let total = jobs.len();
    // How long a calculation may run before the batch leaves it to finish
    // on its own: eight times what the field's usually take, else a
    // second; and, once half the batch is done, as long again as that
    // took (each at least `floor`).
    // Never sooner than a hundredth of the time limit: a row left behind
    // costs writes of its own, worth it for a calculation on its way to
    // hanging, not for one slowed by a busy moment.
    let floor = STRAGGLER_MIN.max(limit / 100);
    let allowance = settings
        .typical
        .get(model, field, false)
        .map_or(limit.min(Duration::from_secs(1)), |t| (t * 8).max(floor));
    // Detached calculations are bounded too (each by its time limit):
    // past this many at once, a batch waits for its own.
    // A tree's rows are not: the batch's wave goes on from the rows it
    // stores (see `tree`).
    let may_detach = settings.detached.running() < MAX_DETACHED
        && super::tree::self_paths(model, field).is_empty();
    let mut queue = jobs.into_iter();
    let mut next = queue.next();
    let (started, mut half_at) = (Instant::now(), None);
    let mut launched: Vec<Option<Instant>> = vec![None; total];
    let mut received = vec![false; total];
    let mut detached = vec![false; total];
    let mut count = 0;
    let mut slowest = Duration::ZERO;
    loop {
        while let Some(job) = next.take() {
            match slots.clone().try_acquire_owned() {
                Ok(permit) => {
                    let i = launch(job);
                    held[i] = Some(permit);
                    launched[i] = Some(Instant::now());
                    next = queue.next();
                }
                Err(_) => {
                    next = Some(job);
                    break;
                }
            }
        }
        let waiting = (0..total).filter(|&i| !received[i] && !detached[i]);
        if next.is_none() && waiting.clone().next().is_none() {
            break;
        }
        // Never sooner than four times the slowest of the batch's rows that
        // ended: a batch slowed as a whole (a busy machine, rows waiting
        // for a connection) leaves none of its rows behind for that.
        let spread = slowest * 4;
        let deadline = |i: usize| {
            let own = launched[i].map(|at| at + allowance.max(spread));
            let by_half = half_at.map(|h: Duration| started + h + h.max(floor).max(spread));
            own.into_iter().chain(by_half).min()
        };
        let cutoff = if may_detach {
            waiting.filter_map(deadline).min()
        } else {
            None
        };
        let slot = async {
            match next {
                Some(_) => slots.clone().acquire_owned().await.ok(),
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            got = results.recv() => {
                let Some((i, row, value)) = got else { break };
                received[i] = true;
                if let Some(at) = launched[i] {
                    slowest = slowest.max(at.elapsed());
                }
                launch_done(&mut held, i);
                count += 1;
                if half_at.is_none() && count * 2 >= total {
                    half_at = Some(started.elapsed());
                }
                out[place[i]] = Some(computed(&rows[i], row, value));
            }
            Some(permit) = slot => {
                if let Some(job) = next.take() {
                    let i = launch(job);
                    held[i] = Some(permit);
                    launched[i] = Some(Instant::now());
                    next = queue.next();
                }
            }
            () = sleep_until(cutoff) => {
                // Past their time: left to finish on their own, their
                // slots given to the batch's next calculations.
                let now = Instant::now();
                for i in 0..total {
                    if !received[i] && !detached[i] && deadline(i).is_some_and(|d| d <= now) {
                        detached[i] = true;
                        launch_done(&mut held, i);
                    }
                }
            }
        }
    }
    let done: Vec<Result<Computed<M>>> = out.into_iter().flatten().collect();
    if count == total {
        // The batch was cancelled, yet its rows went by quickly one by one:
        // the field's batches take longer than was allowed; next time,
        // twice as long as this one was.
        if batch_timed_out {
            settings.typical.note(model, field, true, patience / 4);
        }
        return (done, None);
    }
    let left: Vec<usize> = (0..total).filter(|&i| !received[i]).collect();
    tracing::debug!(
        table = %model.table(),
        field = %field.name(),
        running = left.len(),
        "calculations still running long after the rest of their batch: written when they end"
    );
    let pending = left.len();
    (
        done,
        Some(Stragglers {
            rows,
            results,
            left,
            pending,
            lease: DateTime::<Utc>::MIN_UTC,
        }),
    )
}

/// A row job's outcome: `header` is its key, attempts, chained
/// recalculations and when its inputs were read.
pub(super) fn computed<M>(
    header: &(Key, i32, u64, DateTime<Utc>),
    row: M,
    value: Result<Value>,
) -> Result<Computed<M>> {
    let (key, attempts, chained, read_at) = header.clone();
    let outcome = match value {
        Ok(v) => Outcome::Value(row, v, read_at),
        Err(e) if e.is_retryable() => return Err(e),
        Err(e) => Outcome::Failed(e),
    };
    Ok(Computed {
        key,
        attempts,
        chained,
        outcome,
    })
}

/// Gives back the slot of row job `i`, whose calculation ended.
fn launch_done(held: &mut [Option<tokio::sync::OwnedSemaphorePermit>], i: usize) {
    if let Some(slot) = held.get_mut(i) {
        *slot = None;
    }
}

/// The most calculations left to finish on their own at once.
const MAX_DETACHED: usize = 4096;

/// Sleeps until `at`, or for ever.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

pub(super) fn backoff(settings: &Settings, attempts: i32) -> Duration {
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

/// Runs `jobs`, `concurrency` at a time, each to its end, except when
/// they stop coming to one: once the others are done, one still running
/// long after (past half of them done, as long again as that took, at
/// least [`STRAGGLER_MIN`]), or when none has ended for `allowance`, those
/// still running or not begun are dropped, cancelled: their places are
/// `None`. For work a batch can do without (a row's companions, see
/// `together`).
pub(super) async fn within_reason<T, F>(
    jobs: Vec<F>,
    concurrency: usize,
    allowance: Duration,
) -> Vec<Option<T>>
where
    F: std::future::Future<Output = T>,
{
    use futures::StreamExt as _;
    let total = jobs.len();
    let mut out: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut queue = jobs.into_iter().enumerate();
    let mut running = futures::stream::FuturesUnordered::new();
    let (started, mut half_at, mut count) = (Instant::now(), None, 0);
    let mut progress = started;
    loop {
        while running.len() < concurrency.max(1) {
            let Some((i, job)) = queue.next() else { break };
            running.push(async move { (i, job.await) });
        }
        if running.is_empty() {
            break;
        }
        let by_half = match (half_at, queue.len()) {
            (Some(h), 0) => Some(started + h + h.max(STRAGGLER_MIN)),
            _ => None,
        };
        let cutoff = by_half.into_iter().chain([progress + allowance]).min();
        tokio::select! {
            Some((i, value)) = running.next() => {
                out[i] = Some(value);
                count += 1;
                progress = Instant::now();
                if half_at.is_none() && count * 2 >= total {
                    half_at = Some(started.elapsed());
                }
            }
            () = sleep_until(cutoff) => break,
        }
    }
    out
}
