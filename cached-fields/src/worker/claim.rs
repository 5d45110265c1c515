//! Claiming: leasing a batch of due rows, and when the next one is due.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

use super::{Settings, together};
use crate::backend::ClaimFrom;
use crate::db::{Ctx, Db};
use crate::error::Result;
use crate::key::Key;
use crate::model::{CachedModel, Model};
use crate::runtime;
use crate::statements::{self, FieldSql};
use crate::value::{SqlType, Value};

/// Leases up to a batch of the field's due rows until `lease_until` and
/// loads them in the same statement, leasing with them the fields `with`
/// (the batch's companions) of those rows where no one holds them: each
/// with its key, when that much could be read, and the row, or why it
/// could not be read as the model.
pub(super) async fn claim<M: CachedModel>(
    db: &Db,
    model: &Model<M>,
    field_idx: usize,
    sql: &FieldSql<'_>,
    with: &[&crate::model::FieldColumns],
    settings: &Settings,
    (now, lease_until): (DateTime<Utc>, DateTime<Utc>),
) -> Result<Vec<(Option<Key>, Result<M>)>> {
    let batch = i64::try_from(settings.batch_size).unwrap_or(64);
    let mut ctx = Ctx::from(db);
    let claimed = runtime::with_schema_hint(
        ctx.fetch_models_each::<M>(
            sql.claim(
                model.select_list(),
                with,
                &together::pass_over(model, field_idx, settings),
            ),
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

/// How often, at most, a field's claims start again from the first
/// flagged row once they come up short: a row flagged behind a field's walk
/// (by a transaction that committed after the walk had passed its flag
/// time) or passed over (another worker's, or a leader's) is taken within
/// about this long plus the poll interval.
pub(crate) const SWEEP: Duration = Duration::from_secs(1);

/// Where each of a worker's fields stands in its walk of the flagged rows
/// ([`claim_locked`]), per (table, field), shared by the worker's clones.
#[derive(Debug, Default)]
pub(crate) struct Cursors(Mutex<HashMap<(String, String), Walk>>);

/// One field's walk: where its next claim starts (nothing: the first
/// flagged row; a flag time alone: the rows flagged since, after a walk
/// that found none; else past the (flag time, key) of the last row taken),
/// and when the walk last started from the first flagged row.
#[derive(Debug, Clone, Default)]
struct Walk {
    at: Option<(Value, Option<Value>)>,
    swept: Option<Instant>,
    /// The last claim started from the first flagged row and came up
    /// short: it saw every row then due.
    whole: bool,
}

impl Walk {
    fn sweep_due(&self) -> bool {
        self.swept.is_none_or(|t| t.elapsed() >= SWEEP)
    }
}

impl Cursors {
    /// Sends every walk whose last claim did not see all its field's due
    /// rows back to the first flagged row.
    pub(crate) fn restart(&self) {
        let mut walks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        for walk in walks.values_mut().filter(|w| !w.whole) {
            walk.at = None;
        }
    }

    fn with<T>(&self, table: &str, field: &str, f: impl FnOnce(&mut Walk) -> T) -> T {
        let mut walks = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(walks
            .entry((table.to_owned(), field.to_owned()))
            .or_default())
    }
}

/// Where the engine leases by lock ([`FieldSql::lock_claim`]): locks up to
/// a batch of due keys in the lease transaction `lease`, then loads those
/// still due in a second statement (a new snapshot: a row another worker
/// stored before releasing its lock is left out); the locks last until the
/// transaction ends. Flagged rows are taken in the order they were flagged
/// from where the field's last batch ended, so the index entries of rows
/// already stored stay behind, unvisited until a vacuum removes them; a
/// walk that comes up short starts again from the first flagged row at most
/// once per [`SWEEP`] (right away when it found nothing). The same
/// statement tries the locks of the batch's companions `gs` of the rows it
/// locks (where they are not waiting), returned by companion with the
/// rows (those whose key could be read).
pub(super) async fn claim_locked<M: CachedModel>(
    lease: &mut Ctx<'_>,
    model: &Model<M>,
    field_idx: usize,
    sql: &FieldSql<'_>,
    gs: &[usize],
    settings: &Settings,
    now: DateTime<Utc>,
) -> Result<(Vec<(Option<Key>, Result<M>)>, together::Locked)> {
    // A lock per row and companion: no more than the server allows one claim.
    let budget = settings
        .claim_locks
        .load(std::sync::atomic::Ordering::Relaxed);
    let rows = match budget {
        0 => settings.batch_size,
        b => settings.batch_size.min((b / (1 + gs.len())).max(1)),
    };
    let batch = i64::try_from(rows).unwrap_or(64);
    let (table, field) = (
        model.table().as_str(),
        model.fields()[field_idx].name().as_str(),
    );
    let pass = together::pass_over(model, field_idx, settings);
    let companions: Vec<FieldSql<'_>> = gs
        .iter()
        .map(|&g| FieldSql::of(sql.backend, model, &model.fields()[g]))
        .collect();
    let mut types = vec![model.key_type(), SqlType::Timestamp, SqlType::Bool];
    types.extend(gs.iter().map(|_| SqlType::Bool));
    let mut walk = settings.cursors.with(table, field, |w| w.clone());
    let locked = loop {
        let from = match &walk.at {
            None => ClaimFrom::First,
            Some((_, None)) => ClaimFrom::Time,
            Some((_, Some(_))) => ClaimFrom::Row,
        };
        let Some(lock) = sql.lock_claim(&pass, &companions, from) else {
            return Ok((Vec::new(), together::Locked::new()));
        };
        let mut params = vec![
            Value::Timestamp(now),
            Value::Timestamp(now),
            Value::Int(batch),
        ];
        match walk.at.clone() {
            Some((since, key)) => params.extend(std::iter::once(since).chain(key)),
            None => walk.swept = Some(Instant::now()),
        }
        let locked = lease.fetch_values(lock, &params, &types).await?;
        let last_in_order = locked
            .iter()
            .filter(|r| r.get(2) == Some(&Value::Bool(true)))
            .filter_map(|r| Some((r.get(1)?.clone(), r.first()?.clone())))
            .next_back()
            .filter(|(since, _)| !matches!(since, Value::Null(_)));
        match last_in_order {
            Some((since, key)) => walk.at = Some((since, Some(key))),
            // Nothing flagged: the next walk starts with the rows flagged
            // from a little before now on (the flag times are the
            // database's clock; a row behind by a larger skew waits for
            // the next sweep).
            None if from == ClaimFrom::First => {
                let before = chrono::Duration::from_std(SWEEP).unwrap_or_default();
                walk.at = Some((Value::Timestamp(now - before), None));
            }
            None => {}
        }
        let short = locked.len() < rows;
        walk.whole = short && from == ClaimFrom::First;
        if short && walk.sweep_due() {
            walk.at = None;
            if locked.is_empty() && from != ClaimFrom::First {
                continue;
            }
        }
        break locked;
    };
    settings.cursors.with(table, field, |w| *w = walk);
    let mut values = vec![Value::Timestamp(now)];
    let mut held = together::Locked::new();
    for row in locked {
        let Some(k) = row.first() else { continue };
        if let Some(key) = Key::from_value(k) {
            for (&g, taken) in gs.iter().zip(row.iter().skip(3)) {
                if taken == &Value::Bool(true) {
                    held.entry(g).or_default().insert(key.clone());
                }
            }
        }
        if !values.contains(k) {
            values.push(k.clone());
        }
    }
    if values.len() == 1 {
        return Ok((Vec::new(), held));
    }
    let load = sql.load_due(model.select_list(), values.len() - 1);
    let rows = runtime::with_schema_hint(
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
    .await?;
    Ok((rows, held))
}

/// The condition (and its parameters) selecting a wave's rows (see
/// `tree`): those whose paths reach the rows `keys` just stored, due or
/// not (waiting for them, or left to the wave by their batch, leased
/// until the wave's `lease_until`), but not backing off or parked by a
/// lazy flag.
pub(super) fn wave_condition<M>(
    catalog: &crate::triggers::Catalog,
    model: &Model<M>,
    field: &crate::model::Field<M>,
    keys: &[Key],
    (now, lease_until): (DateTime<Utc>, DateTime<Utc>),
) -> (String, Vec<Value>) {
    let next = field.columns().next_attempt.quoted();
    let cond = format!(
        "({next} IS NULL OR {next} <= $1 OR {next} = $2 OR {next} = $3) AND ({})",
        super::tree::reaching_keys(catalog, model, field, 4, keys.len())
    );
    let mut params = vec![
        Value::Timestamp(now),
        Value::Timestamp(super::tree::waiting()),
        Value::Timestamp(lease_until),
    ];
    params.extend(keys.iter().map(Key::to_value));
    (cond, params)
}

/// The condition (and its parameters) selecting the rows parked waiting
/// for a row they read (see `tree`).
pub(super) fn waiting_condition<M>(field: &crate::model::Field<M>) -> (String, Vec<Value>) {
    (
        format!("{} = $1", field.columns().next_attempt.quoted()),
        vec![Value::Timestamp(super::tree::waiting())],
    )
}

/// Leases up to `limit` of the field's flagged rows that `cond` (with its
/// parameters, `$1` on) selects, whatever their claims' order: by locks
/// in the lease transaction `lease` where claims are locks, else by
/// writing the lease (until `lease_until`) into the rows; and loads them.
pub(super) async fn claim_where<M: CachedModel>(
    db: &Db,
    lease: Option<&mut Ctx<'_>>,
    model: &Model<M>,
    field: &crate::model::Field<M>,
    (cond, mut params): (&str, Vec<Value>),
    limit: usize,
    lease_until: DateTime<Utc>,
) -> Result<Vec<(Option<Key>, Result<M>)>> {
    let sql = FieldSql::of(db.backend(), model, field);
    let (t, pk, needed) = (&sql.table, &sql.pk, sql.cols.needed.quoted());
    let lock = db.backend().dialect().try_lock(&sql, "k");
    match (lease, lock) {
        (Some(lease), Some(lock)) => {
            let keys = lease
                .fetch_values(
                    format!(
                        "SELECT k FROM (SELECT {pk} AS k FROM {t} WHERE {needed} AND ({cond}) \
                         LIMIT {}) AS cf_c WHERE {lock} LIMIT {limit}",
                        limit * 4
                    ),
                    &params,
                    &[model.key_type()],
                )
                .await?;
            let keys: Vec<Value> = keys
                .into_iter()
                .filter_map(|r| r.into_iter().next())
                .collect();
            if keys.is_empty() {
                return Ok(Vec::new());
            }
            let load = format!(
                "{} AND {needed}",
                statements::load_rows(
                    model.select_list(),
                    model.table(),
                    model.primary_key(),
                    keys.len()
                )
            );
            runtime::with_schema_hint(
                lease
                    .fetch_models_each::<M>(
                        load,
                        &keys,
                        model.primary_key().as_str(),
                        model.key_type(),
                    )
                    .await,
                lease,
                model,
            )
            .await
        }
        _ => {
            let at = params.len() + 1;
            params.push(Value::Timestamp(lease_until));
            let mut ctx = Ctx::from(db);
            let claim = format!(
                "UPDATE {t} SET {next} = ${at} WHERE {pk} IN (SELECT {pk} FROM {t} WHERE {needed} \
                 AND ({cond}) LIMIT {limit}) RETURNING {list}",
                next = sql.cols.next_attempt.quoted(),
                list = model.select_list(),
            );
            runtime::with_schema_hint(
                ctx.fetch_models_each::<M>(
                    claim,
                    &params,
                    model.primary_key().as_str(),
                    model.key_type(),
                )
                .await,
                &mut ctx,
                model,
            )
            .await
        }
    }
}

/// When the next row of the field becomes due, if any is scheduled (a row
/// its claims pass over because a field it chains on is paused or held
/// left out: it waits for the resume, not for its time).
pub(crate) async fn next_due<M: CachedModel>(
    db: &Db,
    field_idx: usize,
    settings: &Settings,
) -> Result<Option<DateTime<Utc>>> {
    let model = M::model()?;
    let field = &model.fields()[field_idx];
    let sql = FieldSql::of(db.backend(), model, field);
    let stopped = together::pass_over(model, field_idx, settings).stopped;
    let rows = Ctx::from(db)
        .fetch_values(
            sql.next_due(&stopped),
            &[Value::Timestamp(statements::parked_alt())],
            &[SqlType::Float],
        )
        .await?;
    Ok(match rows.first().and_then(|r| r.first()) {
        Some(Value::Float(s)) => statements::from_epoch(*s),
        _ => None,
    })
}
