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
/// a batch of due keys in the lease transaction `lease` and loads them in
/// the same statement; the locks last until the transaction ends. (A row
/// another worker stores between this statement's start and its lock is
/// calculated again, and its write-back refused by the version.)
pub(super) async fn claim_locked<M: CachedModel>(
    lease: &mut Ctx<'_>,
    model: &Model<M>,
    lock: &str,
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<Vec<(Option<Key>, Result<M>)>> {
    let batch = i64::try_from(settings.batch_size).unwrap_or(64);
    let sql = format!(
        "SELECT {list} FROM {t} WHERE {pk} IN ({lock})",
        list = model.select_list(),
        t = model.table().quoted(),
        pk = model.primary_key().quoted(),
    );
    runtime::with_schema_hint(
        lease
            .fetch_models_each::<M>(
                sql,
                &[
                    Value::Timestamp(now),
                    Value::Timestamp(now),
                    Value::Int(batch),
                ],
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
