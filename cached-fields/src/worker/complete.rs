//! Completing: writing back every value of a batch (each only if still
//! current), recording failures and deferrals.

use chrono::Utc;

use super::Settings;
use super::execute::{Computed, Outcome, backoff};
use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::model::CachedModel;
use crate::runtime::{self, Stored};
use crate::statements::FieldSql;
use crate::value::Value;

/// Writes every result: in one transaction where the backend prefers it
/// (one write lock, one commit), else as a few autocommit statements that
/// carry the worker's settings (asynchronous commit, a short lock timeout),
/// which saves the round trips of a transaction. Every statement is correct on its
/// own: a crash between them leaves rows leased until the lease ends.
pub(super) async fn write_all<M: CachedModel>(
    db: &Db,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    done: &[Computed<M>],
) -> Result<Vec<Option<Stored>>> {
    if !db.backend().dialect().writes_in_one_transaction() {
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

/// Records a failed attempt of row `c`: attempts + 1, the message, the next
/// attempt after the backoff (which also ends its lease).
pub(super) async fn record_failure<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &crate::model::Model<M>,
    field: &crate::model::Field<M>,
    settings: &Settings,
    c: &Computed<M>,
    e: &Error,
) -> Result<()> {
    let retry_at = Utc::now()
        + chrono::Duration::from_std(backoff(settings, c.attempts))
            .unwrap_or(chrono::Duration::seconds(1));
    tracing::warn!(error = %e, attempt = c.attempts + 1, %retry_at, "recalculation failed");
    let sql = FieldSql::of(ctx.backend(), model, field).record_failure();
    ctx.execute(
        sql,
        &[
            Value::Text(e.to_string()),
            Value::Timestamp(retry_at),
            c.key.to_value(),
        ],
    )
    .await?;
    Ok(())
}

/// Writes one result: the value (if still current), or the failure.
pub(super) async fn write_one<M: CachedModel>(
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
            record_failure(ctx, model, field, settings, c, e).await?;
            Ok(None)
        }
        Outcome::Deferred(upstream) => {
            let up = model.fields()[*upstream].columns();
            let sql = FieldSql::of(ctx.backend(), model, field).defer_behind(up);
            // Briefly at first (the other worker usually stores the upstream
            // value within milliseconds), then twice as long each time, and
            // never past the end of the upstream's lease or backoff: a
            // killed worker's lease is waited out, not spun on.
            let ms = settings
                .rows
                .defer(model.table().as_str(), field.name().as_str(), &c.key);
            let retry_at = Utc::now() + chrono::Duration::milliseconds(ms);
            ctx.execute(sql, &[c.key.to_value(), Value::Timestamp(retry_at)])
                .await?;
            Ok(None)
        }
        Outcome::Waiting => {
            // Parked until what it waits for is stored (see `tree`).
            let sql = FieldSql::of(ctx.backend(), model, field).park();
            ctx.execute(
                sql,
                &[c.key.to_value(), Value::Timestamp(super::tree::waiting())],
            )
            .await?;
            Ok(None)
        }
        // Every ready row was calculated before writing; a row left to the
        // wave is not written.
        Outcome::Ready(..) | Outcome::Gone | Outcome::InBatch(_) => Ok(None),
    }
}
