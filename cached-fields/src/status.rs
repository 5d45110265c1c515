//! Figures per field for `status` (read from the tables, not from any
//! worker), and the keys `recalc` pages through.

use chrono::Utc;
use serde::Serialize;

use crate::db::{Ctx, Db};
use crate::error::{Error, Result};
use crate::failures;
use crate::key::Key;
use crate::registry::Registry;
use crate::statements::FieldSql;
use crate::value::{SqlType, Value};

/// One field's figures, for `status`.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
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
    pub last_error: Option<(Key, i64, String)>,
    /// A failure of the field as a whole (a batch that could not run at
    /// all): how many in a row, and the last message.
    pub field_error: Option<(i64, String)>,
    /// After-recalculation hooks that failed (their values were stored).
    pub hook_failures: i64,
    /// Paused (until resumed): workers leave its rows flagged.
    pub paused: bool,
    /// Held by a block of work: workers leave its rows flagged until it ends.
    pub held: bool,
}

pub(crate) async fn status(db: &Db, registry: &Registry) -> Result<Vec<FieldStatus>> {
    let mut out = Vec::new();
    let mut ctx = Ctx::from(db);
    let now = Utc::now();
    // Made-up figures from a schema that is not there would mislead.
    for entry in &registry.entries {
        crate::schema::require_columns(&mut ctx, &entry.spec).await?;
    }
    let recorded = failures::all(&mut ctx).await?;
    let stopped = crate::pauses::current(db).await?;
    let int = |v: Option<&Value>| match v {
        Some(Value::Int(i)) => *i,
        _ => 0,
    };
    for entry in &registry.entries {
        let spec = &entry.spec;
        // The one read of the whole table: its row count, shared by its
        // fields; the rest reads flagged or expired rows through indexes.
        let count = ctx
            .fetch_values(
                format!(
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM {}",
                    spec.table.quoted()
                ),
                &[],
                &[SqlType::Int],
            )
            .await?;
        let table_rows = int(count.first().and_then(|r| r.first()));
        for &i in &spec.order {
            let f = &spec.fields[i];
            let name = &f.name;
            let sql = FieldSql::new(db.backend(), &spec.table, &spec.primary_key, &f.columns);
            let flagged = ctx
                .fetch_values(
                    sql.status_flagged(),
                    &[],
                    &[SqlType::Int, SqlType::Int, SqlType::Float],
                )
                .await?;
            let r = flagged.first().cloned().unwrap_or_default();
            let expired = match sql.status_expired() {
                Some(q) => {
                    let e = ctx
                        .fetch_values(q, &[Value::Timestamp(now)], &[SqlType::Int])
                        .await?;
                    int(e.first().and_then(|r| r.first()))
                }
                None => 0,
            };
            let oldest = match r.get(2) {
                Some(Value::Float(s)) => Some((now.timestamp_micros() as f64 / 1e6 - s).max(0.0)),
                _ => None,
            };
            let last = ctx
                .fetch_values(
                    sql.failing(1),
                    &[],
                    &[
                        spec.key_type,
                        SqlType::Int,
                        SqlType::Timestamp,
                        SqlType::Text,
                    ],
                )
                .await?;
            let last_error = last.first().and_then(|r| match &r[..] {
                [k, Value::Int(a), _, m] => Some((
                    Key::from_value(k)?,
                    *a,
                    match m {
                        Value::Text(m) => m.clone(),
                        _ => String::new(),
                    },
                )),
                _ => None,
            });
            let record = |kind| {
                recorded.iter().find(|r| {
                    r.kind == kind && r.table == spec.table.as_str() && r.field == name.as_str()
                })
            };
            out.push(FieldStatus {
                field_error: record(failures::Kind::Field).map(|r| (r.count, r.last_error.clone())),
                hook_failures: record(failures::Kind::Hook).map_or(0, |r| r.count),
                paused: stopped.iter().any(|((t, n), why)| {
                    t == spec.table.as_str()
                        && n == name.as_str()
                        && *why == crate::pauses::Why::Paused
                }),
                held: stopped.iter().any(|((t, n), why)| {
                    t == spec.table.as_str()
                        && n == name.as_str()
                        && *why == crate::pauses::Why::Held
                }),
                table: spec.table.to_string(),
                field: name.to_string(),
                rows: table_rows,
                stale: int(r.first()),
                expired,
                failing: int(r.get(1)),
                oldest_stale_secs: oldest,
                last_error,
            });
        }
    }
    Ok(out)
}

/// Recalculates the given rows of one field now, one by one (for `recalc`).
#[doc(hidden)]
pub async fn recalculate_keys(
    db: &Db,
    registry: &Registry,
    table: &str,
    field: &str,
    keys: &[Key],
) -> Result<()> {
    let (entry, idx) = registry.find(table, field)?;
    for k in keys {
        match entry.ops.recalculate(db, idx, k.clone()).await {
            Ok(()) | Err(Error::RowNotFound { .. }) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Keys of one field's rows in key order, stale ones only or all, after
/// `after` (from the first when `None`), at most `limit`.
#[doc(hidden)]
pub async fn keys(
    db: &Db,
    registry: &Registry,
    table: &str,
    field: &str,
    all: bool,
    after: Option<&Key>,
    limit: i64,
) -> Result<Vec<Key>> {
    let (entry, idx) = registry.find(table, field)?;
    let sql = FieldSql::new(
        db.backend(),
        &entry.spec.table,
        &entry.spec.primary_key,
        &entry.spec.fields[idx].columns,
    )
    .keys(all, after.is_some());
    let mut args = vec![Value::Timestamp(Utc::now()), Value::Int(limit)];
    args.extend(after.map(Key::to_value));
    let rows = Ctx::from(db)
        .fetch_values(sql, &args, &[entry.spec.key_type])
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.first().and_then(Key::from_value))
        .collect())
}
