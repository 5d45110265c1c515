//! Claiming: leasing a batch of due rows, and when the next one is due.

use chrono::{DateTime, Utc};

use super::Settings;
use crate::db::{Ctx, Db};
use crate::error::Result;
use crate::key::Key;
use crate::model::{CachedModel, Model};
use crate::runtime;
use crate::statements::{self, FieldSql};
use crate::value::{SqlType, Value};

/// Leases up to a batch of the field's due rows until `lease_until` and
/// loads them in the same statement: each with its key, when that much
/// could be read, and the row, or why it could not be read as the model.
pub(super) async fn claim<M: CachedModel>(
    db: &Db,
    model: &Model<M>,
    sql: &FieldSql<'_>,
    settings: &Settings,
    now: DateTime<Utc>,
    lease_until: DateTime<Utc>,
) -> Result<Vec<(Option<Key>, Result<M>)>> {
    let batch = i64::try_from(settings.batch_size).unwrap_or(64);
    let mut ctx = Ctx::from(db);
    let claimed = runtime::with_schema_hint(
        ctx.fetch_models_each::<M>(
            sql.claim(model.select_list()),
            &[
                Value::Timestamp(now),
                Value::Timestamp(lease_until),
                Value::Int(batch),
            ],
            model.primary_key().as_str(),
            model.key_type(),
        )
        .await,
        &mut ctx,
        model,
    )
    .await?;
    drop(ctx);
    Ok(claimed)
}

/// Where the engine leases by lock ([`FieldSql::lock_claim`]): locks up to
/// a batch of due keys in the lease transaction `lease`, then loads those
/// still due in a second statement (a new snapshot: a row another worker
/// stored before releasing its lock is left out); the locks last until the
/// transaction ends.
pub(super) async fn claim_locked<M: CachedModel>(
    lease: &mut Ctx<'_>,
    model: &Model<M>,
    sql: &FieldSql<'_>,
    lock: String,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<(Option<Key>, Result<M>)>> {
    let batch = i64::try_from(settings.batch_size).unwrap_or(64);
    let keys = lease
        .fetch_values(
            lock,
            &[
                Value::Timestamp(now),
                Value::Timestamp(now),
                Value::Int(batch),
            ],
            &[model.key_type()],
        )
        .await?;
    let mut values = vec![Value::Timestamp(now)];
    for k in keys {
        if let Some(v) = k.into_iter().next()
            && !values.contains(&v)
        {
            values.push(v);
        }
    }
    if values.len() == 1 {
        return Ok(Vec::new());
    }
    let load = sql.load_due(model.select_list(), values.len() - 1);
    runtime::with_schema_hint(
        lease
            .fetch_models_each::<M>(
                load,
                &values,
                model.primary_key().as_str(),
                model.key_type(),
            )
            .await,
        lease,
        model,
    )
    .await
}

/// When the next row of the field becomes due, if any is scheduled.
pub(crate) async fn next_due<M: CachedModel>(
    db: &Db,
    field_idx: usize,
) -> Result<Option<DateTime<Utc>>> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::of(db.backend(), model, field);
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
