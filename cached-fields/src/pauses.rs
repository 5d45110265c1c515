//! Pausing a field, and holding it over a block of work: kept in the
//! library's table `cached_fields_pauses` (created when first needed), so
//! every worker, in any process, leaves the field's rows flagged within a
//! second; reads still recalculate inline. A pause lasts
//! until `resume`; a hold until it is released, or, when the process that
//! took it died, until it expires by itself ([`Hold`]).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::backend::Backend;
use crate::db::{Ctx, Db};
use crate::error::Result;
use crate::value::{SqlType, Value};

/// The library's table of pauses and holds.
pub(crate) const TABLE: &str = "cached_fields_pauses";

/// How often a worker reads the pauses: every worker obeys within this.
pub(crate) const REFRESH: Duration = Duration::from_secs(1);

/// The `id` of a pause (a hold's is its own).
const PAUSE: &str = "pause";

fn create(backend: Backend) -> String {
    let ts = SqlType::Timestamp.column_type(backend);
    format!(
        "CREATE TABLE IF NOT EXISTS {TABLE} (table_name TEXT NOT NULL, field_name TEXT NOT NULL, \
         id TEXT NOT NULL, until {ts} NULL, PRIMARY KEY (table_name, field_name, id))"
    )
}

/// Pauses `table.field` until [`resume`]; idempotent.
pub(crate) async fn pause(db: &Db, table: &str, field: &str) -> Result<()> {
    put(db, &[(table.to_owned(), field.to_owned())], PAUSE, None).await
}

/// Ends the pause of `table.field` (holds stay); idempotent. This
/// process's workers are woken; others find out within [`REFRESH`] of
/// their next look for work.
pub(crate) async fn resume(db: &Db, table: &str, field: &str) -> Result<()> {
    remove(db, &[(table.to_owned(), field.to_owned())], PAUSE).await?;
    crate::worker::wake(Some(db));
    Ok(())
}

async fn put(
    db: &Db,
    fields: &[(String, String)],
    id: &str,
    until: Option<DateTime<Utc>>,
) -> Result<()> {
    let mut ctx = Ctx::from(db);
    ctx.execute(create(db.backend()), &[]).await?;
    for (table, field) in fields {
        ctx.execute(
            format!(
                "INSERT INTO {TABLE} (table_name, field_name, id, until) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (table_name, field_name, id) DO UPDATE SET until = excluded.until"
            ),
            &[
                Value::Text(table.clone()),
                Value::Text(field.clone()),
                Value::Text(id.to_owned()),
                until.map_or(Value::Null(SqlType::Timestamp), Value::Timestamp),
            ],
        )
        .await?;
    }
    Ok(())
}

async fn remove(db: &Db, fields: &[(String, String)], id: &str) -> Result<()> {
    let mut ctx = Ctx::from(db);
    if !ctx.table_exists(TABLE).await? {
        return Ok(());
    }
    for (table, field) in fields {
        ctx.execute(
            format!("DELETE FROM {TABLE} WHERE table_name = $1 AND field_name = $2 AND id = $3"),
            &[
                Value::Text(table.clone()),
                Value::Text(field.clone()),
                Value::Text(id.to_owned()),
            ],
        )
        .await?;
    }
    Ok(())
}

/// What holds a field back now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Why {
    /// Paused until resumed.
    Paused,
    /// Held by a block of work (until it ends or its hold expires).
    Held,
}

/// Every paused or held field (`table`, `field`) now, with why; a paused
/// field that is also held says paused. Expired holds are deleted.
pub(crate) async fn current(db: &Db) -> Result<Vec<((String, String), Why)>> {
    let mut ctx = Ctx::from(db);
    if !ctx.table_exists(TABLE).await? {
        return Ok(Vec::new());
    }
    let rows = ctx
        .fetch_values(
            format!("SELECT table_name, field_name, id, until FROM {TABLE}"),
            &[],
            &[
                SqlType::Text,
                SqlType::Text,
                SqlType::Text,
                SqlType::Timestamp,
            ],
        )
        .await?;
    let now = Utc::now();
    let mut out: Vec<((String, String), Why)> = Vec::new();
    let mut expired = false;
    for r in rows {
        let [Value::Text(t), Value::Text(f), Value::Text(id), until] = &r[..] else {
            continue;
        };
        let why = match until {
            Value::Timestamp(u) if *u <= now => {
                expired = true;
                continue;
            }
            _ if id == PAUSE => Why::Paused,
            _ => Why::Held,
        };
        let key = (t.clone(), f.clone());
        match out.iter_mut().find(|(k, _)| *k == key) {
            Some((_, w)) if why == Why::Paused => *w = why,
            Some(_) => {}
            None => out.push((key, why)),
        }
    }
    if expired {
        let ended = crate::statements::ts_le(db.backend(), "until", "$1");
        ctx.execute(
            format!("DELETE FROM {TABLE} WHERE until IS NOT NULL AND {ended}"),
            &[Value::Timestamp(now)],
        )
        .await?;
    }
    Ok(out)
}

/// The fields paused or held now, as a set.
pub(crate) async fn stopped(db: &Db) -> Result<HashSet<(String, String)>> {
    Ok(current(db).await?.into_iter().map(|(k, _)| k).collect())
}

/// A hold on some fields: while it lives, workers leave their rows flagged
/// (reads still recalculate inline); [`Hold::release`] ends it and wakes
/// the workers. It is renewed in the background every third of its time
/// to live, so a hold left behind by a process that died expires by itself
/// after at most that long. Dropped without `release`, it is released in
/// the background.
///
/// ```no_run
/// # async fn f(db: cached_fields::Db, registry: cached_fields::Registry) -> cached_fields::Result<()> {
/// let hold = registry.hold(&db, &["lampposts.total_weight"]).await?;
/// // … many writes to pigeons: the worker waits until the end …
/// hold.release().await?; // one recalculation per lamppost, now
/// # Ok(()) }
/// ```
#[derive(Debug)]
#[must_use = "a hold ends when dropped"]
pub struct Hold {
    db: Db,
    id: String,
    fields: Arc<Vec<(String, String)>>,
    renew: Option<tokio::task::JoinHandle<()>>,
}

/// How long a hold lives without renewal.
pub(crate) const HOLD_TTL: Duration = Duration::from_secs(30);

impl Hold {
    pub(crate) async fn take(db: &Db, fields: Vec<(String, String)>) -> Result<Hold> {
        let id = format!(
            "hold:{}:{}:{}",
            crate::heartbeats::host(),
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        let until = || Utc::now() + chrono::Duration::from_std(HOLD_TTL).unwrap_or_default();
        put(db, &fields, &id, Some(until())).await?;
        let fields = Arc::new(fields);
        let renew = {
            let (db, id, fields) = (db.clone(), id.clone(), fields.clone());
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(HOLD_TTL / 3).await;
                    if let Err(e) = put(&db, &fields, &id, Some(until())).await {
                        tracing::warn!(error = %e, "could not renew a hold");
                    }
                }
            })
        };
        Ok(Hold {
            db: db.clone(),
            id,
            fields,
            renew: Some(renew),
        })
    }

    /// Ends the hold now and wakes this process's workers.
    pub async fn release(mut self) -> Result<()> {
        if let Some(r) = self.renew.take() {
            r.abort();
        }
        remove(&self.db, &self.fields, &self.id).await?;
        crate::worker::wake(Some(&self.db));
        Ok(())
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        let Some(renew) = self.renew.take() else {
            return;
        };
        renew.abort();
        let (db, fields, id) = (self.db.clone(), self.fields.clone(), self.id.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Err(e) = remove(&db, &fields, &id).await {
                    tracing::warn!(error = %e, "could not release a dropped hold; it expires by itself");
                }
                crate::worker::wake(Some(&db));
            });
        }
    }
}
