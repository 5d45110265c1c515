//! SQLite's triggers: `AFTER` triggers whose bodies flag by `UPDATE`, and
//! `BEFORE` triggers that catch `REPLACE`.

use crate::backend::Backend;
use crate::ident::Ident;
use crate::schema::{FieldSpec, ObjectKind, SchemaObject, TableSpec};
use crate::statements;
use crate::triggers::{Catalog, Guarded, Reach, TableKeys, guarded, on_change, own_dependency};

/// The null-safe inequality of two values.
const NOT_SAME: &str = "IS NOT";

/// This backend, for the shared statement fragments.
const B: Backend = Backend::Sqlite;

/// A timestamp for "now" in the format sqlx reads back.
const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Marks a trigger or index as this library's (SQLite keeps the text of a
/// `CREATE` statement, comments included).
pub(crate) const MARKER: &str = "/* cached-fields */";

/// A trigger: `CREATE TRIGGER name {head} BEGIN {marker} {body} END`.
#[allow(clippy::needless_pass_by_value)] // each caller builds them for this call
fn trigger(
    table: &Ident,
    name: Ident,
    head: String,
    body: String,
    guards: Vec<Guarded>,
) -> SchemaObject {
    let create = format!(
        "CREATE TRIGGER {} {head} BEGIN {MARKER} {body} END",
        name.quoted()
    );
    SchemaObject {
        kind: ObjectKind::Trigger,
        table: table.clone(),
        sql: vec![
            format!("DROP TRIGGER IF EXISTS {}", name.quoted()),
            create.clone(),
        ],
        name,
        definition: Some(create),
        column: None,
        guards,
    }
}

/// The statements that remove one of this library's triggers.
pub(crate) fn drop(name: &Ident) -> Vec<String> {
    vec![format!("DROP TRIGGER IF EXISTS {}", name.quoted())]
}

/// The instant from which `F_next_attempt_at` means parked (a lazy flag).
fn parked_from() -> String {
    format!("julianday('{}')", statements::PARKED_FROM_SQL)
}

/// See [`crate::triggers::bump`].
pub(crate) fn bump(spec: &TableSpec, f: &FieldSpec) -> SchemaObject {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let c = &f.columns;
    let (needed, version, since, next) = (
        c.needed.quoted(),
        c.version.quoted(),
        c.stale_since.quoted(),
        c.next_attempt.quoted(),
    );
    let name = Ident::derived(&["cf_bump", spec.table.as_str(), c.needed.as_str()]);
    let guards = vec![guarded(spec, f)];
    let jd = |e: &str| format!("julianday({e})");
    let pause = statements::now_plus(B, statements::HOT_PAUSE_MS);
    let recent = statements::now_plus(B, -statements::HOT_PAUSE_MS);
    let hot = statements::hot_until(B, &since, &next);
    // In an UPDATE's SET, every column reads as before the update.
    let later = |until: &str| {
        format!(
            "CASE WHEN {next} IS NULL OR {n} < {u} THEN {until} ELSE {next} END",
            n = jd(&next),
            u = jd(until)
        )
    };
    trigger(
        &spec.table,
        name,
        format!("AFTER UPDATE OF {needed} ON {t} FOR EACH ROW WHEN NEW.{needed}"),
        format!(
            "UPDATE {t} SET {version} = {version} + 1, {since} = CASE WHEN OLD.{needed} \
             AND {since} IS NOT NULL THEN {since} ELSE {NOW} END, \
             {next} = CASE WHEN NEW.{next} IS NOT OLD.{next} THEN {next} \
             WHEN {next} IS NOT NULL AND julianday({next}) >= {parked} THEN NULL \
             WHEN OLD.{needed} AND {since} IS NOT NULL \
             THEN (CASE WHEN {next} IS NULL THEN NULL ELSE {still_hot} END) \
             WHEN {since} IS NOT NULL AND {s} > {r} THEN {hot_again} \
             ELSE {next} END WHERE {pk} = NEW.{pk};",
            still_hot = later(&hot),
            hot_again = later(&pause),
            s = jd(&since),
            r = jd(&recent),
            parked = parked_from(),
        ),
        guards,
    )
}

/// See [`crate::triggers::insert`].
pub(crate) fn insert(spec: &TableSpec) -> SchemaObject {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let name = Ident::derived(&["cf_insert", spec.table.as_str()]);
    let guards = spec.fields.iter().map(|f| guarded(spec, f)).collect();
    let micros = "CAST((julianday('now') - 2440587.5) * 86400000000.0 AS INTEGER)";
    // Setting each flag fires its bump trigger, which bumps the
    // version once more and stamps `F_stale_since`.
    let sets: Vec<String> = spec
        .fields
        .iter()
        .map(|f| {
            let c = &f.columns;
            let version = c.version.quoted();
            format!(
                "{needed} = TRUE, {since} = NULL, {next} = NULL, {attempts} = 0, {err} = NULL, \
                 {version} = MAX(COALESCE({version}, 0) + 1, {micros})",
                needed = c.needed.quoted(),
                since = c.stale_since.quoted(),
                next = c.next_attempt.quoted(),
                attempts = c.attempts.quoted(),
                err = c.last_error.quoted(),
            )
        })
        .collect();
    trigger(
        &spec.table,
        name,
        format!("AFTER INSERT ON {t} FOR EACH ROW"),
        format!("UPDATE {t} SET {} WHERE {pk} = NEW.{pk};", sets.join(", ")),
        guards,
    )
}

/// See [`crate::triggers::guards`]: one trigger per field, on its value and
/// flag columns; and one flagging every field of a row whose primary key
/// changed (see [`crate::triggers::key_change`]).
pub(crate) fn guards(spec: &TableSpec) -> Vec<SchemaObject> {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let flags: Vec<String> = spec
        .fields
        .iter()
        .map(|f| format!("{} = TRUE", f.columns.needed.quoted()))
        .collect();
    let rekeyed = trigger(
        &spec.table,
        crate::triggers::key_change(spec),
        format!("AFTER UPDATE OF {pk} ON {t} FOR EACH ROW WHEN OLD.{pk} IS NOT NEW.{pk}"),
        format!("UPDATE {t} SET {} WHERE {pk} = NEW.{pk};", flags.join(", ")),
        spec.fields.iter().map(|f| guarded(spec, f)).collect(),
    );
    spec.fields
        .iter()
        .map(|f| {
            let c = &f.columns;
            let (value, needed, version) =
                (c.value.quoted(), c.needed.quoted(), c.version.quoted());
            trigger(
                &spec.table,
                Ident::derived(&["cf_guard", spec.table.as_str(), f.name.as_str()]),
                format!(
                    "AFTER UPDATE OF {value}, {needed} ON {t} FOR EACH ROW WHEN \
                     (NEW.{version} IS NOT OLD.{version} + 1 AND \
                     (OLD.{value} IS NOT NEW.{value} OR (OLD.{needed} AND NOT NEW.{needed})))"
                ),
                // The version never goes back to one a worker may have read.
                format!(
                    "UPDATE {t} SET {needed} = TRUE, {version} = MAX({version}, OLD.{version}) \
                     WHERE {pk} = NEW.{pk};"
                ),
                vec![guarded(spec, f)],
            )
        })
        .chain([rekeyed])
        .collect()
}

/// `(k1 = {row}.k1 AND …) OR …`: an existing row of a table with `keys`
/// that a row `row` conflicts with; `None` when the table has no key.
fn conflict(keys: &TableKeys, row: &str) -> Option<String> {
    let mut any: Vec<String> = Vec::new();
    if keys.rowid {
        any.push(format!("rowid = {row}.rowid"));
    }
    for cols in &keys.unique {
        let all: Vec<String> = cols
            .iter()
            .map(|c| format!("{q} = {row}.{q}", q = c.quoted()))
            .collect();
        any.push(format!("({})", all.join(" AND ")));
    }
    (!any.is_empty()).then(|| any.join(" OR "))
}

/// The triggers that catch `REPLACE`: an `INSERT OR REPLACE` (or
/// `REPLACE INTO`) or `UPDATE OR REPLACE` of a row on a path deletes the
/// row it conflicts with without firing delete triggers (unless a
/// connection turned on `recursive_triggers`), so before the write they
/// flag the rows that reach the row it is about to replace.
fn replace(r: &Reach<'_>, keys: &TableKeys) -> Vec<SchemaObject> {
    let (ct, far) = (r.table.quoted(), r.far.quoted());
    let Some(on_insert) = conflict(keys, "NEW") else {
        return Vec::new();
    };
    let not_self = if keys.rowid {
        "rowid <> OLD.rowid".to_owned()
    } else {
        let first = keys.unique.first().map(Vec::as_slice).unwrap_or_default();
        let same: Vec<String> = first
            .iter()
            .map(|c| format!("{q} = OLD.{q}", q = c.quoted()))
            .collect();
        format!("NOT ({})", same.join(" AND "))
    };
    let mut key_cols: Vec<String> = Vec::new();
    if keys.rowid {
        key_cols.push("NEW.rowid IS NOT OLD.rowid".to_owned());
    }
    for c in keys.unique.iter().flatten() {
        let changed = format!("NEW.{q} IS NOT OLD.{q}", q = c.quoted());
        if !key_cols.contains(&changed) {
            key_cols.push(changed);
        }
    }
    let guards = vec![r.guarded()];
    let flag = |cond: &str| {
        format!(
            "{};",
            r.flag(&format!("SELECT {far} FROM {ct} WHERE {cond}"), member)
        )
    };
    let on_update = format!("({on_insert}) AND {not_self}");
    vec![
        trigger(
            &r.table,
            r.name("rep"),
            format!(
                "BEFORE INSERT ON {ct} FOR EACH ROW WHEN EXISTS (SELECT 1 FROM {ct} WHERE {on_insert})"
            ),
            flag(&on_insert),
            guards.clone(),
        ),
        trigger(
            &r.table,
            r.name("repu"),
            format!(
                "BEFORE UPDATE ON {ct} FOR EACH ROW WHEN ({}) AND EXISTS (SELECT 1 FROM {ct} WHERE {on_update})",
                key_cols.join(" OR ")
            ),
            flag(&on_update),
            guards,
        ),
    ]
}

/// See [`crate::triggers::dependencies`].
pub(crate) fn dependencies(spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject> {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let c = &f.columns;
    let needed = c.needed.quoted();
    let guards = vec![guarded(spec, f)];
    let mut out = Vec::new();

    if let Some((name, own)) = own_dependency(spec, f) {
        let head = format!(
            "AFTER UPDATE OF {cols} ON {t} FOR EACH ROW WHEN (({changed}) AND NOT ({itself}))",
            cols = crate::triggers::column_list(&own),
            changed = crate::triggers::changed(&own, NOT_SAME),
            itself = crate::triggers::stores_itself(c),
        );
        out.push(trigger(
            &spec.table,
            name,
            head,
            format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} = NEW.{pk};"),
            guards,
        ));
    }
    out
}

/// See [`crate::triggers::related`]: row triggers, a set per field and
/// table on its path: inserts, deletes, updates of a watched column (old
/// and new arrival key: a move), and replacements.
pub(crate) fn related(reaches: &[Reach<'_>], catalog: &Catalog) -> Vec<SchemaObject> {
    let mut out = Vec::new();
    for r in reaches {
        let (table, far) = (r.table.quoted(), r.far.quoted());
        let guards = vec![r.guarded()];
        out.push(trigger(
            &r.table,
            r.name("ins"),
            format!("AFTER INSERT ON {table} FOR EACH ROW"),
            format!("{};", r.flag(&format!("NEW.{far}"), member)),
            guards.clone(),
        ));
        out.push(trigger(
            &r.table,
            r.name("del"),
            format!("AFTER DELETE ON {table} FOR EACH ROW"),
            format!("{};", r.flag(&format!("OLD.{far}"), member)),
            guards.clone(),
        ));
        let watched: Vec<&Ident> = r.watched.iter().collect();
        out.push(trigger(
            &r.table,
            r.name("upd"),
            on_change("AFTER", &r.table, &watched, NOT_SAME),
            format!("{};", r.flag(&format!("OLD.{far}, NEW.{far}"), member)),
            guards.clone(),
        ));
        let keys = catalog
            .keys
            .get(r.table.as_str())
            .cloned()
            .unwrap_or_default();
        out.extend(replace(r, &keys));
    }
    out
}

/// `col IN (values)`.
fn member(col: &str, values: &str) -> String {
    format!("{col} IN ({values})")
}
