//! A row's fields together: a claimed row's other due fields (those the
//! batch's field does not chain on; see [`companions`]) are calculated
//! after it, in dependency order, from its new value in memory, and all of
//! them go back in one statement, each field guarded by its own version
//! (a row whose companions were not all still current is written again
//! with the batch's field alone). The batch holds its companions by locks
//! its claim took with its own, in its lease transaction, where claims are
//! locks (PostgreSQL), else by leases its claim wrote with its own
//! (SQLite), released after the batch where not stored.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};

use super::execute::{Computed, Outcome};
use super::{Settings, Stats};
use crate::db::{Ctx, Db};
use crate::depends::Dependency;
use crate::error::Result;
use crate::failures;
use crate::key::Key;
use crate::model::{CachedModel, Field, Model};
use crate::runtime::{self, Stored};
use crate::statements;
use crate::value::Value;

/// Rows per write-back statement.
const ROWS_PER_STATEMENT: usize = 500;

/// The fields of `model` that may go with a batch of `field`, in an order
/// they can be calculated in after it: first those before it in dependency
/// order that it does not chain on (directly or through others), then
/// those after it; of them, those the worker calculates (not lazy, not
/// paused or held) and that read no cached field along a path (the worker
/// calculates such a field after what it reads, in its own batches: a
/// tree node after its parent, a street's heaviest lamppost after the
/// lampposts' totals). A field reading plain columns of other tables goes
/// too: it reads them as its own batch would, and a write there meanwhile
/// flags it again (its version guards the write-back). In a row, each is
/// calculated when it is stale itself or chains on a value the batch just
/// changed, so whichever field's batch reaches a row first takes all its
/// due fields.
pub(super) fn companions<M>(model: &Model<M>, field: &Field<M>, settings: &Settings) -> Vec<usize> {
    let order = model.order();
    let Some(at) = order
        .iter()
        .position(|&i| model.fields()[i].name() == field.name())
    else {
        return Vec::new();
    };
    let upstream = upstream(model, order[at]);
    let before = order[..at]
        .iter()
        .filter(|&&i| !upstream.contains(&model.fields()[i].name()));
    before
        .chain(&order[at + 1..])
        .copied()
        .filter(|&i| {
            let g = &model.fields()[i];
            !settings
                .reading_cached
                .contains(&(model.table().to_string(), g.name().to_string()))
                && g.mode() != Some(crate::Recalculate::Lazily)
                && !settings.is_stopped(model.table().as_str(), g.name().as_str())
        })
        .collect()
}

/// The names of the fields that field `g` chains on, directly or through
/// others of the row.
fn upstream<M>(model: &Model<M>, g: usize) -> Vec<&crate::ident::Ident> {
    let mut upstream: Vec<&crate::ident::Ident> = Vec::new();
    let mut todo = vec![&model.fields()[g]];
    while let Some(f) = todo.pop() {
        for d in f.depends_on() {
            if let Dependency::Field(n) = d
                && !upstream.contains(&n)
                && let Ok(u) = model.field(n.as_str())
            {
                upstream.push(n);
                todo.push(u);
            }
        }
    }
    upstream
}

/// The fields that field `g` chains on (directly or through others of the
/// row) that take it with their batches (see [`companions`]) and that the
/// worker calculates now: a row of `g` that one of them has due is left to
/// that field's batch, where both are written at once. (A field `g` does
/// not chain on is no leader: should its batches stop, `g` would wait.)
pub(super) fn leaders<'m, M>(
    model: &'m Model<M>,
    g: usize,
    settings: &Settings,
) -> Vec<&'m crate::model::FieldColumns> {
    let upstream = upstream(model, g);
    model
        .fields()
        .iter()
        .filter(|f| {
            upstream.contains(&f.name())
                && f.mode() != Some(crate::Recalculate::Lazily)
                && !settings.is_stopped(model.table().as_str(), f.name().as_str())
                && companions(model, f, settings).contains(&g)
        })
        .map(Field::columns)
        .collect()
}

/// What a claim of field `g` passes over: the rows its [`leaders`] have
/// due, and the rows where a field it chains on (directly or through
/// others) that is paused or held is flagged: calculating `g` there would
/// store that field first (they wait for the resume).
pub(super) fn pass_over<'m, M>(
    model: &'m Model<M>,
    g: usize,
    settings: &Settings,
) -> statements::PassOver<'m> {
    let upstream = upstream(model, g);
    let table = model.table().as_str();
    statements::PassOver {
        leaders: leaders(model, g, settings),
        stopped: model
            .fields()
            .iter()
            .filter(|f| {
                upstream.contains(&f.name()) && settings.is_stopped(table, f.name().as_str())
            })
            .map(Field::columns)
            .collect(),
    }
}

/// The rows of each companion (by field) whose lock the batch's lease
/// transaction holds.
pub(super) type Locked = HashMap<usize, HashSet<Key>>;

/// How the batch holds its companions: by locks its claim took in its
/// lease transaction, or by leases its claim wrote until the instant given.
pub(super) enum Held {
    Locks(Locked),
    Leases(DateTime<Utc>),
}

/// One companion value of a row: the field, the version it was computed
/// at, the value.
type Companion = (usize, i64, Value);

/// Writes the batch: each row whose outcome is a value of `field` with the
/// values of its companions (`gs`) that could be calculated (held as
/// `held` says, their chained fields fresh),
/// one statement per set of fields; every other outcome as
/// [`super::complete::write_one`] does. Returns what each row of `done`
/// came to for `field`, and the companions' counts.
pub(super) async fn write<M: CachedModel>(
    db: &Db,
    held: Held,
    model: &Model<M>,
    field: &Field<M>,
    settings: &Settings,
    gs: &[usize],
    done: &mut [Computed<M>],
) -> Result<(Vec<Option<Stored>>, Stats)> {
    let key_type = model.key_type();
    let keys: Vec<Value> = done
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Value(..)))
        .map(|c| c.key.to_value())
        .collect();
    // Which rows each companion may be calculated for: those whose lock of
    // it this transaction holds, or whose lease the claim took (another
    // worker may be on it).
    let locked = match held {
        Held::Locks(locked) => locked,
        Held::Leases(until) => {
            let mut locked = Locked::new();
            // No row to lease for: nothing to ask.
            let gs = if keys.is_empty() { &[][..] } else { gs };
            for &g in gs {
                let query = statements::leased_with(
                    model.table(),
                    model.primary_key(),
                    model.fields()[g].columns(),
                    keys.len(),
                );
                let mut params = vec![Value::Timestamp(until)];
                params.extend(keys.iter().cloned());
                let rows = Ctx::from(db)
                    .fetch_values(query, &params, &[key_type])
                    .await?;
                locked.insert(
                    g,
                    rows.into_iter()
                        .filter_map(|r| r.first().and_then(Key::from_value))
                        .collect(),
                );
            }
            locked
        }
    };
    // The batch's field: its version as claimed, then its new value made
    // fresh in memory for the companions to read (a value that cannot be
    // kept as its type is written alone), and whether it changed (which
    // decides whether a companion that is not stale itself is calculated).
    let mut versions = Vec::with_capacity(done.len());
    let mut jobs = Vec::with_capacity(done.len());
    for c in done.iter() {
        let (version, changed) = match &c.outcome {
            Outcome::Value(row, value, _) => {
                let slot = field.slot(row);
                let (v, before) = (slot.snapshot().version, slot.stored_value());
                let kept = slot.store_fresh(value.clone()).is_ok();
                (v, kept.then(|| before.as_ref() != Some(value)))
            }
            _ => (0, None),
        };
        versions.push(version);
        jobs.push(calculate(
            db,
            model,
            settings,
            gs,
            &locked,
            (field.name(), c),
            changed,
        ));
    }
    // A row whose companions take far longer than the others' (one hangs)
    // is written without them: they are left to their own batches.
    let allowance = gs
        .iter()
        .map(|&g| {
            let gf = &model.fields()[g];
            settings.typical.get(model, gf, false).map_or(
                runtime::limit(gf, settings.timeout).min(std::time::Duration::from_secs(1)),
                |t| (t * 8).max(std::time::Duration::from_millis(2)),
            )
        })
        .max()
        .unwrap_or(std::time::Duration::from_secs(1));
    let companions: Vec<Vec<Companion>> =
        super::execute::within_reason(jobs, settings.concurrency, allowance)
            .await
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect();
    // One statement per set of fields.
    let mut groups: HashMap<Vec<usize>, Vec<usize>> = HashMap::new();
    for (i, c) in done.iter().enumerate() {
        if matches!(c.outcome, Outcome::Value(..)) {
            let set: Vec<usize> = companions[i].iter().map(|(g, ..)| *g).collect();
            groups.entry(set).or_default().push(i);
        }
    }
    let mut stored: HashSet<usize> = HashSet::new();
    // Rows written without their companions.
    let mut alone: HashSet<usize> = HashSet::new();
    for (set, rows) in &groups {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            match store(
                db,
                model,
                field,
                &set[..],
                chunk,
                done,
                &versions,
                &companions,
            )
            .await
            {
                Ok(s) => {
                    // A row a companion's invalidation kept from being
                    // written: the batch's field alone (it must not wait
                    // for writes to what only its companions read).
                    let missed: Vec<usize> =
                        chunk.iter().copied().filter(|i| !s.contains(i)).collect();
                    stored.extend(s);
                    if !set.is_empty() && !missed.is_empty() {
                        let s = store(db, model, field, &[], &missed, done, &versions, &companions)
                            .await?;
                        alone.extend(s.iter().copied());
                        stored.extend(s);
                    }
                }
                Err(e) if e.is_retryable() => return Err(e),
                // A value a column rejects: row by row, then the batch's
                // field alone (a companion's column may be the one at
                // fault: that field fails in its own batch), each failing
                // alone.
                Err(_) => {
                    for &i in chunk {
                        let together = store(
                            db,
                            model,
                            field,
                            &set[..],
                            &[i],
                            done,
                            &versions,
                            &companions,
                        )
                        .await;
                        let r = match together {
                            Err(e) if !e.is_retryable() && !set.is_empty() => {
                                alone.insert(i);
                                store(db, model, field, &[], &[i], done, &versions, &companions)
                                    .await
                            }
                            r => r,
                        };
                        match r {
                            Ok(s) => stored.extend(s),
                            Err(e) if e.is_retryable() => return Err(e),
                            Err(e) => done[i].outcome = Outcome::Failed(e),
                        }
                    }
                }
            }
        }
    }
    // A row not stored was invalidated meanwhile: it is hot, due again
    // after the pause (as a lone write-back leaves it), unless deleted.
    let lost: Vec<Value> = done
        .iter()
        .enumerate()
        .filter(|(i, c)| matches!(c.outcome, Outcome::Value(..)) && !stored.contains(i))
        .map(|(_, c)| c.key.to_value())
        .collect();
    let present = runtime::release_lost(&mut Ctx::from(db), model, field, &lost, true).await?;
    // What each row came to; the companions' counts and hooks here, the
    // batch field's by the caller.
    let (table, mut stats) = (model.table().as_str(), Stats::default());
    let mut ctx = Ctx::from(db);
    let mut out = Vec::with_capacity(done.len());
    for (i, c) in done.iter().enumerate() {
        out.push(match &c.outcome {
            Outcome::Value(row, ..) if stored.contains(&i) => {
                let written: &[Companion] = if alone.contains(&i) {
                    &[]
                } else {
                    &companions[i]
                };
                for (g, _, value) in written {
                    let gf = &model.fields()[*g];
                    let name = gf.name().as_str();
                    settings.rows.forget(table, name, &c.key);
                    stats.recalculated += 1;
                    crate::metrics::count(table, name, "stored", 1);
                    settings.activity.stored(table, name);
                    if let Some(message) =
                        runtime::after_store(&mut ctx, model, gf, row, value.clone()).await?
                    {
                        stats.hook_failures += 1;
                        failures::record(db, table, name, failures::Kind::Hook, &message).await;
                    }
                }
                Some(Stored::Fresh)
            }
            Outcome::Value(..) if present.contains(&c.key) => Some(Stored::Superseded),
            Outcome::Value(..) => Some(Stored::Gone),
            _ => super::complete::write_one(&mut ctx, model, field, settings, c).await?,
        });
    }
    Ok((out, stats))
}

/// The companion values of row `c`, in order, each calculated from the
/// row with the fields before it fresh in memory: a companion stale itself,
/// or chaining on a field whose value just changed (`changed`: whether the
/// batch's field did; `None` when its value could not be kept in memory).
/// Stops at the first that cannot be calculated (left to its own batch:
/// the new value of what it chains on flags it).
async fn calculate<M: CachedModel>(
    db: &Db,
    model: &Model<M>,
    settings: &Settings,
    gs: &[usize],
    locked: &HashMap<usize, HashSet<Key>>,
    (batch_field, c): (&crate::ident::Ident, &Computed<M>),
    changed: Option<bool>,
) -> Vec<Companion> {
    let mut out = Vec::new();
    let (Outcome::Value(row, ..), Some(changed)) = (&c.outcome, changed) else {
        return out;
    };
    // The fields whose value this write changes.
    let mut moved: Vec<&crate::ident::Ident> = Vec::new();
    if changed {
        moved.push(batch_field);
    }
    for &g in gs {
        let gf = &model.fields()[g];
        let snapshot = gf.slot(row).snapshot();
        let chains_on_moved = gf
            .depends_on()
            .iter()
            .any(|d| matches!(d, Dependency::Field(n) if moved.contains(&n)));
        let ready = (snapshot.stale || chains_on_moved)
            && locked.get(&g).is_some_and(|k| k.contains(&c.key))
            && gf.depends_on().iter().all(|d| match d {
                Dependency::Field(n) => model
                    .field(n.as_str())
                    .is_ok_and(|u| !u.slot(row).snapshot().stale),
                _ => true,
            });
        if !ready {
            continue;
        }
        let before = gf.slot(row).stored_value();
        let limit = runtime::limit(gf, settings.timeout);
        let started = std::time::Instant::now();
        match runtime::compute(&mut Ctx::from(db), model, gf, row, limit).await {
            Ok(value) if gf.slot(row).store_fresh(value.clone()).is_ok() => {
                settings.typical.note(model, gf, false, started.elapsed());
                if before.as_ref() != Some(&value) {
                    moved.push(gf.name());
                }
                out.push((g, snapshot.version, value));
            }
            _ => break,
        }
    }
    out
}

/// Writes rows `idx` of `done` with the companions `set` in one statement;
/// returns the indexes stored.
#[allow(clippy::too_many_arguments)]
async fn store<M: CachedModel>(
    db: &Db,
    model: &Model<M>,
    field: &Field<M>,
    set: &[usize],
    idx: &[usize],
    done: &[Computed<M>],
    versions: &[i64],
    companions: &[Vec<Companion>],
) -> Result<Vec<usize>> {
    let mut cols = vec![field.columns()];
    cols.extend(set.iter().map(|&g| model.fields()[g].columns()));
    let sql = statements::write_back_together(
        db.backend(),
        model.table(),
        model.primary_key(),
        &cols,
        idx.len(),
    );
    let read_at: DateTime<Utc> = idx
        .iter()
        .filter_map(|&i| match &done[i].outcome {
            Outcome::Value(_, _, at) => Some(*at),
            _ => None,
        })
        .min()
        .unwrap_or_else(Utc::now);
    let mut args = vec![Value::Timestamp(read_at)];
    let mut by_key = HashMap::new();
    for &i in idx {
        let Outcome::Value(_, value, _) = &done[i].outcome else {
            continue;
        };
        by_key.insert(done[i].key.clone(), i);
        args.push(done[i].key.to_value());
        args.push(Value::Int(versions[i]));
        args.push(value.clone());
        for (_, version, value) in companions[i].iter().filter(|(g, ..)| set.contains(g)) {
            args.push(Value::Int(*version));
            args.push(value.clone());
        }
    }
    let rows = runtime::with_schema_hint(
        Ctx::from(db)
            .fetch_values(sql, &args, &[model.key_type()])
            .await,
        &mut Ctx::from(db),
        model,
    )
    .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| r.first().and_then(Key::from_value))
        .filter_map(|k| by_key.get(&k).copied())
        .collect())
}
