//! Failures that belong to a field rather than to one row: an error that
//! stopped a whole batch of it (a column the backend rejects, a claim that
//! fails), and after-recalculation hooks that failed. They are kept in the
//! library's table `cached_fields_failures` (created when first needed), so
//! that `status` in another process shows them.

use chrono::Utc;

use crate::backend::Backend;
use crate::db::{Ctx, Db};
use crate::error::Result;
use crate::value::{SqlType, Value};

/// The library's table of field-level failures.
pub(crate) const TABLE: &str = "cached_fields_failures";

/// What kind of failure a record counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A batch of the field failed as a whole.
    Field,
    /// An after-recalculation hook failed (the value was stored).
    Hook,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Field => "field",
            Kind::Hook => "hook",
        }
    }
}

/// One record: how many times, the last message, when.
#[derive(Debug, Clone)]
pub(crate) struct Record {
    pub(crate) table: String,
    pub(crate) field: String,
    pub(crate) kind: Kind,
    pub(crate) count: i64,
    pub(crate) last_error: String,
}

fn create(backend: Backend) -> String {
    let ts = SqlType::Timestamp.column_type(backend);
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (table_name TEXT NOT NULL, field_name TEXT NOT NULL, \
         kind TEXT NOT NULL, count BIGINT NOT NULL, last_error TEXT NOT NULL, last_at {ts} NOT NULL, \
         PRIMARY KEY (table_name, field_name, kind))"
    )
}

/// Counts one failure of `kind` for the field; never fails the caller (a
/// failure to record is logged).
pub(crate) async fn record(db: &Db, table: &str, field: &str, kind: Kind, message: &str) {
    let result: Result<()> = async {
        let mut ctx = Ctx::from(db);
        ctx.execute(create(db.backend()), &[]).await?;
        ctx.execute(
            format!(
                "INSERT INTO {TABLE} (table_name, field_name, kind, count, last_error, last_at) \
                 VALUES ($1, $2, $3, 1, $4, $5) ON CONFLICT (table_name, field_name, kind) DO UPDATE \
                 SET count = {TABLE}.count + 1, last_error = excluded.last_error, last_at = excluded.last_at"
            ),
            &[
                Value::Text(table.to_owned()),
                Value::Text(field.to_owned()),
                Value::Text(kind.as_str().to_owned()),
                Value::Text(message.to_owned()),
                Value::Timestamp(Utc::now()),
            ],
        )
        .await?;
        Ok(())
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%table, %field, error = %e, "could not record a field failure");
    }
}

/// Forgets the field-level failure of a field that works again.
pub(crate) async fn clear(db: &Db, table: &str, field: &str) {
    let result = async {
        if !Ctx::from(db).table_exists(TABLE).await? {
            return Ok(0);
        }
        Ctx::from(db)
            .execute(
                format!("DELETE FROM {TABLE} WHERE table_name = $1 AND field_name = $2 AND kind = 'field'"),
                &[Value::Text(table.to_owned()), Value::Text(field.to_owned())],
            )
            .await
    }
    .await;
    if let Err(e) = result {
        tracing::warn!(%table, %field, error = %e, "could not clear a field failure");
    }
}

/// Every record (none when the table was never needed).
pub(crate) async fn all(ctx: &mut Ctx<'_>) -> Result<Vec<Record>> {
    if !ctx.table_exists(TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = ctx
        .fetch_values(
            format!("SELECT table_name, field_name, kind, count, last_error FROM {TABLE}"),
            &[],
            &[
                SqlType::Text,
                SqlType::Text,
                SqlType::Text,
                SqlType::Int,
                SqlType::Text,
            ],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match &r[..] {
            [
                Value::Text(t),
                Value::Text(f),
                Value::Text(k),
                Value::Int(n),
                Value::Text(m),
            ] => Some(Record {
                table: t.clone(),
                field: f.clone(),
                kind: if k == "hook" { Kind::Hook } else { Kind::Field },
                count: *n,
                last_error: m.clone(),
            }),
            _ => None,
        })
        .collect())
}
