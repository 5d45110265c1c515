//! Fields that read their own value on other rows along a path (a tree
//! node's path from its parent's): recalculated top-down, each row once.
//!
//! A claimed row whose parent (any row its path reaches) is stale waits:
//! where the parent is in the same batch, the row is left to the wave
//! that follows the batch (below); otherwise it is parked, in the parked
//! range at [`waiting`], so that a new value of what it reads (a flag)
//! makes it due at once. After a batch is stored, the worker claims the
//! stored rows' children at once, whatever their wait, and so on down
//! the tree (a wave): a chain of any depth is calculated once per row, in
//! linear work, with at most one wait per row. A parked row no wave took
//! (its parent stored by a read) is looked at again when the worker is
//! idle.
//!
//! A cycle in the data (parent pointers that loop), where no row has a
//! value and recalculating would go round for ever (each new value
//! flagging the next row on the loop), fails every row on it instead,
//! naming the path. Whether a row is on one is asked once per row per
//! wave at most: a row whose every parent was stored in this wave (each
//! found on no cycle) is on none.

use std::collections::HashSet;
use std::fmt::Write as _;

use chrono::{DateTime, TimeZone, Utc};

use crate::db::Ctx;
use crate::depends::{Dependency, Path};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::key::Key;
use crate::model::{CachedModel, Field, Model};
use crate::statements::{HOT_PAUSE_MS, ts_le};
use crate::triggers::{Catalog, links};
use crate::value::{SqlType, Value};

/// The instant in `F_next_attempt_at` of a row waiting for a row it reads
/// along a path: in the parked range (see
/// [`PARKED_FROM_SQL`](crate::statements::PARKED_FROM_SQL)), below the lazy
/// flag's instants, so that the worker's claims pass over it and a flag
/// (the parent's new value) makes it due.
pub(crate) fn waiting() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 6, 30, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// What a wave (a batch and the batches of its rows' children) knows:
/// the rows it took, and those found on no cycle.
#[derive(Debug, Default)]
pub(crate) struct Wave {
    /// Rows claimed in this wave.
    pub(crate) seen: HashSet<Key>,
    /// Rows found on no cycle in this wave (checked, or every parent so).
    pub(crate) rooted: HashSet<Key>,
    /// The end of the leases its batches write (where leases are written,
    /// one instant for the wave): a row a batch left to the wave holds it.
    pub(crate) lease: Option<DateTime<Utc>>,
}

/// The paths along which `field` reads its own value on other rows.
pub(super) fn self_paths<'a, M>(model: &Model<M>, field: &'a Field<M>) -> Vec<&'a Path> {
    field
        .depends_on()
        .iter()
        .filter_map(|d| match d {
            Dependency::Path(p)
                if p.hops.last().is_some_and(|h| h.table() == model.table())
                    && p.column == *field.name() =>
            {
                Some(p)
            }
            _ => None,
        })
        .collect()
}

/// The joins following `path` once from `cf_t0` (a row of `table`, keyed
/// by `key`) and the alias of the row reached; each table passed through
/// is joined on its model's primary key where it has one (`catalog`).
fn step(key: &Ident, path: &Path, catalog: &Catalog) -> (String, String) {
    let mut joins = String::new();
    let mut last = "cf_t0".to_owned();
    for (i, l) in links(path, key, catalog).iter().enumerate() {
        let alias = format!("cf_t{}", i + 1);
        let _ = write!(
            joins,
            " JOIN {} {alias} ON {alias}.{} = {last}.{}",
            l.table.quoted(),
            l.far.quoted(),
            l.near.quoted()
        );
        last = alias;
    }
    (joins, last)
}

/// The keys of the rows reached from row `$1` by following `path` once or
/// more (`UNION` stops at a repeat), at most `limit`.
fn reached(table: &Ident, key: &Ident, path: &Path, catalog: &Catalog, limit: usize) -> String {
    let (joins, last) = step(key, path, catalog);
    let (t, k) = (table.quoted(), key.quoted());
    format!(
        "WITH RECURSIVE cf_up(k) AS (SELECT {last}.{k} FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1 \
         UNION SELECT {last}.{k} FROM cf_up JOIN {t} cf_t0 ON cf_t0.{k} = cf_up.k{joins}) \
         SELECT k FROM cf_up LIMIT {limit}"
    )
}

/// `SELECT COUNT(*)` of the rows equal to `$1` among those reached from row
/// `$1` by following `path` once or more.
fn reaches_itself(table: &Ident, key: &Ident, path: &Path, catalog: &Catalog) -> String {
    let (joins, last) = step(key, path, catalog);
    let (t, k) = (table.quoted(), key.quoted());
    format!(
        "WITH RECURSIVE cf_up(k) AS (SELECT {last}.{k} FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1 \
         UNION SELECT {last}.{k} FROM cf_up JOIN {t} cf_t0 ON cf_t0.{k} = cf_up.k{joins}) \
         SELECT CAST(COUNT(*) AS BIGINT) FROM cf_up WHERE k = $1"
    )
}

/// The rows reached from row `$1` by following `path` once: each key, and
/// whether a row waits for it (1, else 0): another row, flagged for
/// `field` and not failing, due by `$2`, leased by this batch (lease end
/// between `$3` and `$4`) or waiting itself (`$5`); not one leased by
/// another worker (which may have died).
fn above_sql<M: CachedModel>(
    backend: crate::Backend,
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    path: &Path,
) -> String {
    let (t, k) = (model.table().quoted(), model.primary_key().quoted());
    let (joins, last) = step(model.primary_key(), path, catalog);
    let c = field.columns();
    let next = format!("{last}.{}", c.next_attempt.quoted());
    format!(
        "SELECT {last}.{k}, CAST(CASE WHEN {last}.{needed} AND {last}.{attempts} = 0 AND {last}.{k} <> $1 \
         AND ({next} IS NULL OR {due} OR ({after} AND {before}) OR {next} = $5) THEN 1 ELSE 0 END AS BIGINT) \
         FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1",
        needed = c.needed.quoted(),
        attempts = c.attempts.quoted(),
        due = ts_le(backend, &next, "$2"),
        after = ts_le(backend, "$3", &next),
        before = ts_le(backend, &next, "$4"),
    )
}

/// The rows a row reads `field` from along its paths (its parents), and
/// those of them it waits for.
#[derive(Debug, Default)]
pub(super) struct Above {
    pub(super) parents: Vec<Key>,
    pub(super) stale: Vec<Key>,
}

/// What row `m` reads `field` from (see [`Above`]); a batch leased until
/// `lease_until` (where leases are written) counts as due.
pub(super) async fn above<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    lease_until: DateTime<Utc>,
) -> Result<Above> {
    let ms = chrono::Duration::milliseconds;
    let mut out = Above::default();
    for path in self_paths(model, field) {
        let args = [
            m.primary_key().to_value(),
            Value::Timestamp(Utc::now() + ms(HOT_PAUSE_MS)),
            Value::Timestamp(lease_until - ms(1)),
            Value::Timestamp(lease_until + ms(1)),
            Value::Timestamp(waiting()),
        ];
        let rows = ctx
            .fetch_values(
                above_sql(ctx.backend(), catalog, model, field, path),
                &args,
                &[model.key_type(), SqlType::Int],
            )
            .await?;
        for r in rows {
            let Some(k) = r.first().and_then(Key::from_value) else {
                continue;
            };
            if r.get(1) == Some(&Value::Int(1)) {
                out.stale.push(k.clone());
            }
            out.parents.push(k);
        }
    }
    Ok(out)
}

/// The failure of row `m` when following one of `field`'s paths back to
/// its own table comes back to it, and that path.
pub(super) async fn cycle<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
) -> Result<Option<(Error, Path)>> {
    for path in self_paths(model, field) {
        if on_cycle(ctx, catalog, model, path, &m.primary_key()).await? {
            return Ok(Some((
                cycle_error(model, field, m.primary_key(), path),
                path.clone(),
            )));
        }
    }
    Ok(None)
}

fn cycle_error<M>(model: &Model<M>, field: &Field<M>, key: Key, path: &Path) -> Error {
    Error::Cycle {
        table: model.table().to_string(),
        field: field.name().to_string(),
        key,
        path: path.to_string(),
    }
}

/// Whether following `path` from row `key` comes back to it.
async fn on_cycle<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    path: &Path,
    key: &Key,
) -> Result<bool> {
    let sql = reaches_itself(model.table(), model.primary_key(), path, catalog);
    let rows = ctx
        .fetch_values(sql, &[key.to_value()], &[SqlType::Int])
        .await?;
    Ok(matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0))
}

/// The other rows on the cycle through row `key` along `path` (each
/// reached from it that comes back to itself), at most a thousand.
pub(super) async fn cycle_members<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    path: &Path,
    key: &Key,
) -> Result<Vec<Key>> {
    let sql = reached(model.table(), model.primary_key(), path, catalog, 1000);
    let rows = ctx
        .fetch_values(sql, &[key.to_value()], &[model.key_type()])
        .await?;
    let mut members = Vec::new();
    for k in rows
        .iter()
        .filter_map(|r| r.first().and_then(Key::from_value))
    {
        if k != *key && on_cycle(ctx, catalog, model, path, &k).await? {
            members.push(k);
        }
    }
    Ok(members)
}

/// Marks row `$3` failing with message `$1` until `$2`, flagged (a row on
/// a cycle another row found, whether or not it was stale).
pub(super) fn fail_on_cycle_sql<M>(
    backend: crate::Backend,
    model: &Model<M>,
    field: &Field<M>,
) -> String {
    let c = field.columns();
    let settings = backend.dialect().prefix(crate::backend::Settings::Worker);
    format!(
        "{with}UPDATE {t} SET {needed} = TRUE, {attempts} = {attempts} + 1, {err} = $1, {next} = $2{from} \
         WHERE {pk} = $3",
        with = settings.with,
        from = settings.from,
        t = model.table().quoted(),
        pk = model.primary_key().quoted(),
        needed = c.needed.quoted(),
        attempts = c.attempts.quoted(),
        err = c.last_error.quoted(),
        next = c.next_attempt.quoted(),
    )
}

/// The condition on the field's table selecting the rows whose paths
/// reach one of the `n` rows whose keys are bound from `$first` on: the
/// children of rows just stored.
pub(super) fn reaching_keys<M>(
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    first: usize,
    n: usize,
) -> String {
    let (t, pk) = (model.table().quoted(), model.primary_key());
    let keys: Vec<String> = (first..first + n).map(|i| format!("${i}")).collect();
    let keys = keys.join(", ");
    let member = |col: &str, values: &str| format!("{col} IN ({values})");
    let any: Vec<String> = self_paths(model, field)
        .into_iter()
        .map(|path| {
            let links = links(path, pk, catalog);
            let far = &links[links.len() - 1].far;
            let values = if far == pk {
                keys.clone()
            } else {
                format!(
                    "SELECT {} FROM {t} WHERE {} IN ({keys})",
                    far.quoted(),
                    pk.quoted()
                )
            };
            format!(
                "({})",
                crate::triggers::reaching(&links, 0, &values, member)
            )
        })
        .collect();
    if any.is_empty() {
        "FALSE".to_owned()
    } else {
        any.join(" OR ")
    }
}
