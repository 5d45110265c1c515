//! Executing: the calculations of a claimed batch (whose rows the loop in
//! `mod.rs` has brought up to date along their chains), in one call of the
//! field's batch function or one call per row; and how long a failed row
//! waits.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::StreamExt;

use super::Settings;
use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::key::Key;
use crate::model::CachedModel;
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
    /// A row of a tree this row reads is stale and due: try again shortly
    /// (its new value flags this row again once stored).
    Waiting,
}

pub(super) struct Computed<M> {
    pub(super) key: Key,
    pub(super) attempts: i32,
    /// Fields this row's chain needed first, recalculated and stored inline.
    pub(super) chained: u64,
    pub(super) outcome: Outcome<M>,
}

/// Calculates the rows that are ready: in one call of the field's batch
/// function when it has one (falling back to one call per row should the
/// batch fail or time out, so a bad row fails alone), else one call per row
/// at the worker's concurrency; each call is cancelled at the time limit.
pub(super) async fn calculate_all<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    prepared: Vec<Result<Computed<M>>>,
) -> Vec<Result<Computed<M>>> {
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
    let batch = if ready.len() > 1 {
        runtime::compute_many(&mut Ctx::from(db), model, field, &ready, limit).await
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
                        None => {
                            runtime::compute(&mut Ctx::from(db), model, field, &row, limit).await
                        }
                    };
                    match value {
                        Ok(v) => Outcome::Value(row, v, read_at),
                        Err(e) if e.is_retryable() => return Err(e),
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
