//! Cycles in the data of a field that reads its own value along a path (a
//! tree whose parent pointers loop): such a row has no value, and
//! recalculating it would go round for ever (each new value flagging the
//! next row on the loop), so it fails instead, naming the path.

use std::fmt::Write as _;

use crate::db::Ctx;
use crate::depends::{Dependency, Path};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::{CachedModel, Field, Model};
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

/// `SELECT COUNT(*)` of the rows equal to `$1` among those reached from row
/// `$1` by following `path` once or more (`UNION` stops at a repeat).
fn reaches_itself(table: &Ident, key: &Ident, path: &Path) -> String {
    let mut joins = String::new();
    let mut last = "cf_t0".to_owned();
    for (i, l) in links(path, key, &Catalog::default()).iter().enumerate() {
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
    let (t, k) = (table.quoted(), key.quoted());
    format!(
        "WITH RECURSIVE cf_up(k) AS (SELECT {last}.{k} FROM {t} cf_t0{joins} WHERE cf_t0.{k} = $1 \
         UNION SELECT {last}.{k} FROM cf_up JOIN {t} cf_t0 ON cf_t0.{k} = cf_up.k{joins}) \
         SELECT CAST(COUNT(*) AS BIGINT) FROM cf_up WHERE k = $1"
    )
}

/// The failure of row `m` when following one of `field`'s paths back to
/// its own table comes back to it.
pub(super) async fn check<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
) -> Result<Option<Error>> {
    for path in self_paths(model, field) {
        let sql = reaches_itself(model.table(), model.primary_key(), path);
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
