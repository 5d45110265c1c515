//! Fields that read their own value on other rows along a path (a tree
//! node's path from its parent's): recalculated top-down, a row waiting
//! while a row it reads is stale and due; and a cycle in the data (parent
//! pointers that loop), where no row has a value and recalculating would
//! go round for ever (each new value flagging the next row on the loop),
//! fails the rows on it instead, naming the path.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};

use crate::db::Ctx;
use crate::depends::{Dependency, Path};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::{CachedModel, Field, Model};
use crate::statements::{HOT_PAUSE_MS, ts_le};
use crate::triggers::{Catalog, links};
use crate::value::{SqlType, Value};

/// The paths along which `field` reads its own value on other rows.
fn self_paths<'a, M>(model: &Model<M>, field: &'a Field<M>) -> Vec<&'a Path> {
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

/// `SELECT COUNT(*)` of the rows equal to `$1` among those reached from row
/// `$1` by following `path` once or more (`UNION` stops at a repeat).
fn reaches_itself(table: &Ident, key: &Ident, path: &Path, catalog: &Catalog) -> String {
    let (joins, last) = step(key, path, catalog);
    let (t, k) = (table.quoted(), key.quoted());
    format!(
        "WITH RECURSIVE cf_up(k) AS (SELECT {last}.{k} FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1 \
         UNION SELECT {last}.{k} FROM cf_up JOIN {t} cf_t0 ON cf_t0.{k} = cf_up.k{joins}) \
         SELECT CAST(COUNT(*) AS BIGINT) FROM cf_up WHERE k = $1"
    )
}

/// `SELECT COUNT(*)` of the other rows reached from row `$1` by following
/// `path` once that are flagged for `field` and due by `$2`, or leased by
/// this batch (lease end between `$3` and `$4`): not failing (a failing row
/// is not waited for), not leased by another worker (which may have died).
fn stale_above<M: CachedModel>(
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
        "SELECT CAST(COUNT(*) AS BIGINT) FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1 \
         AND {last}.{needed} AND {last}.{attempts} = 0 AND {last}.{k} <> $1 \
         AND ({next} IS NULL OR {due} OR ({after} AND {before}))",
        needed = c.needed.quoted(),
        attempts = c.attempts.quoted(),
        due = ts_le(backend, &next, "$2"),
        after = ts_le(backend, "$3", &next),
        before = ts_le(backend, &next, "$4"),
    )
}

/// Whether row `m` should wait: a row it reads `field` from is stale and
/// due, or in this batch (leased until `lease_until`), and will flag it
/// again once stored (top-down, each row once).
pub(super) async fn waits<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    lease_until: DateTime<Utc>,
) -> Result<bool> {
    let ms = chrono::Duration::milliseconds;
    for path in self_paths(model, field) {
        let args = [
            m.primary_key().to_value(),
            Value::Timestamp(Utc::now() + ms(HOT_PAUSE_MS)),
            Value::Timestamp(lease_until - ms(1)),
            Value::Timestamp(lease_until + ms(1)),
        ];
        let rows = ctx
            .fetch_values(
                stale_above(ctx.backend(), catalog, model, field, path),
                &args,
                &[SqlType::Int],
            )
            .await?;
        if matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// The failure of row `m` when following one of `field`'s paths back to
/// its own table comes back to it.
pub(super) async fn cycle<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    catalog: &Catalog,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
) -> Result<Option<Error>> {
    for path in self_paths(model, field) {
        let sql = reaches_itself(model.table(), model.primary_key(), path, catalog);
        let key = m.primary_key();
        let rows = ctx
            .fetch_values(sql, &[key.to_value()], &[SqlType::Int])
            .await?;
        if matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(n)) if *n > 0) {
            return Ok(Some(Error::Cycle {
                table: model.table().to_string(),
                field: field.name().to_string(),
                key,
                path: path.to_string(),
            }));
        }
    }
    Ok(None)
}
