//! Trigger SQL per backend: the bookkeeping triggers (a set flag bumps the
//! version; an insert stamps or wakes), and the dependency triggers that
//! flag a field when a declared input changes.
//!
//! Every dependency trigger flags by the same route as the library:
//! `UPDATE … SET F_recalculation_needed = TRUE`, which the bump trigger
//! turns into a version bump and (PostgreSQL) a notification on commit.

use crate::db::Backend;
use crate::depends::Dependency;
use crate::ident::Ident;
use crate::schema::{CHANNEL, FieldSpec, ObjectKind, SchemaObject, TableSpec};
use crate::statements;

/// A SQLite timestamp for "now" in the format sqlx reads back.
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// A SQLite trigger: `CREATE TRIGGER name {head} BEGIN {body} END`.
fn sqlite(table: &Ident, name: Ident, head: String, body: String) -> SchemaObject {
    let create = format!("CREATE TRIGGER {} {head} BEGIN {body} END", name.quoted());
    SchemaObject {
        kind: ObjectKind::Trigger,
        table: table.clone(),
        sql: vec![
            format!("DROP TRIGGER IF EXISTS {}", name.quoted()),
            create.clone(),
        ],
        name,
        definition: Some(create),
    }
}

/// A PostgreSQL trigger with its own function; the function's source
/// carries the trigger's definition, so `check` sees either change.
fn postgres(table: &Ident, name: Ident, head: String, body: String) -> SchemaObject {
    let n = name.quoted();
    let trigger = format!("CREATE OR REPLACE TRIGGER {n} {head} EXECUTE FUNCTION {n}()");
    let source = format!("\n-- cached-fields: {trigger}\nBEGIN\n{body}\nEND;\n");
    SchemaObject {
        kind: ObjectKind::Trigger,
        table: table.clone(),
        sql: vec![
            format!(
                "CREATE OR REPLACE FUNCTION {n}() RETURNS trigger LANGUAGE plpgsql AS $cf${source}$cf$"
            ),
            trigger,
        ],
        name,
        definition: Some(source),
    }
}

/// The statements that remove a trigger `check` found obsolete.
pub(crate) fn drop(backend: Backend, table: &str, name: &str) -> Vec<String> {
    let (t, n) = (format!("\"{table}\""), format!("\"{name}\""));
    match backend {
        Backend::Sqlite => vec![format!("DROP TRIGGER IF EXISTS {n}")],
        Backend::Postgres => vec![
            format!("DROP TRIGGER IF EXISTS {n} ON {t}"),
            format!("DROP FUNCTION IF EXISTS {n}()"),
        ],
    }
}

/// Setting the flag true bumps the version (even when it already was true)
/// and stamps `F_stale_since`; on PostgreSQL it also notifies workers.
///
/// A row is hot when it is invalidated again while it waits on a lease, a
/// retry or a hot-row pause, or within [`HOT_PAUSE_MS`](statements::HOT_PAUSE_MS)
/// of its last recalculation (write-backs leave that instant in
/// `F_stale_since`). A hot row's next attempt moves to
/// [`statements::hot_until`], never earlier than it was; leases (far
/// longer) and parked rows stay as they are. A statement that sets
/// `F_next_attempt_at` itself (the lazy flag) is left alone.
pub(crate) fn bump(backend: Backend, spec: &TableSpec, f: &FieldSpec) -> SchemaObject {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let c = &f.columns;
    let (needed, version, since, next) = (
        c.needed.quoted(),
        c.version.quoted(),
        c.stale_since.quoted(),
        c.next_attempt.quoted(),
    );
    let name = Ident::derived(&["cf_bump", spec.table.as_str(), c.needed.as_str()]);
    match backend {
        Backend::Sqlite => {
            let jd = |e: &str| format!("julianday({e})");
            let pause = statements::now_plus(backend, statements::HOT_PAUSE_MS);
            let recent = statements::now_plus(backend, -statements::HOT_PAUSE_MS);
            let hot = statements::hot_until(backend, &since, &next);
            // In an UPDATE's SET, every column reads as before the update.
            let later = |until: &str| {
                format!(
                    "CASE WHEN {next} IS NULL OR {n} < {u} THEN {until} ELSE {next} END",
                    n = jd(&next),
                    u = jd(until)
                )
            };
            sqlite(
                &spec.table,
                name,
                format!("AFTER UPDATE OF {needed} ON {t} FOR EACH ROW WHEN NEW.{needed}"),
                format!(
                    "UPDATE {t} SET {version} = {version} + 1, {since} = CASE WHEN OLD.{needed} \
                     AND {since} IS NOT NULL THEN {since} ELSE {SQLITE_NOW} END, \
                     {next} = CASE WHEN NEW.{next} IS NOT OLD.{next} THEN {next} \
                     WHEN OLD.{needed} AND {since} IS NOT NULL \
                     THEN (CASE WHEN {next} IS NULL THEN NULL ELSE {still_hot} END) \
                     WHEN {since} IS NOT NULL AND {s} > {r} THEN {hot_again} \
                     ELSE {next} END WHERE {pk} = NEW.{pk};",
                    still_hot = later(&hot),
                    hot_again = later(&pause),
                    s = jd(&since),
                    r = jd(&recent),
                ),
            )
        }
        Backend::Postgres => postgres(
            &spec.table,
            name,
            format!("BEFORE UPDATE OF {needed} ON {t} FOR EACH ROW WHEN (NEW.{needed})"),
            pg_flag_in_place(c),
        ),
    }
}

/// The body of a PostgreSQL BEFORE UPDATE trigger that flags the row in
/// place with the bump trigger's bookkeeping (a BEFORE trigger cannot
/// re-update its own row, and changes made to `NEW` fire no other trigger).
fn pg_flag_in_place(c: &crate::model::FieldColumns) -> String {
    let (needed, version, since, next) = (
        c.needed.quoted(),
        c.version.quoted(),
        c.stale_since.quoted(),
        c.next_attempt.quoted(),
    );
    let b = Backend::Postgres;
    let hot = statements::hot_until(b, &format!("OLD.{since}"), &format!("OLD.{next}"));
    let pause = statements::now_plus(b, statements::HOT_PAUSE_MS);
    let recent = statements::now_plus(b, -statements::HOT_PAUSE_MS);
    // GREATEST ignores NULLs.
    format!(
        "  NEW.{needed} := TRUE;\n  NEW.{version} := OLD.{version} + 1;\n  \
         IF NEW.{next} IS DISTINCT FROM OLD.{next} THEN\n    NULL;\n  \
         ELSIF OLD.{needed} AND OLD.{since} IS NOT NULL THEN\n    \
         IF NEW.{next} IS NOT NULL THEN NEW.{next} := GREATEST(NEW.{next}, {hot}); END IF;\n  \
         ELSIF OLD.{since} > {recent} THEN\n    \
         NEW.{next} := GREATEST(NEW.{next}, {pause});\n  END IF;\n  \
         IF NOT OLD.{needed} OR OLD.{since} IS NULL THEN NEW.{since} := clock_timestamp(); END IF;\n  \
         PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  RETURN NEW;"
    )
}

/// On insert: SQLite stamps `F_stale_since` of flagged rows; PostgreSQL
/// wakes workers (the column's default stamps it).
pub(crate) fn insert(backend: Backend, spec: &TableSpec) -> SchemaObject {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let name = Ident::derived(&["cf_insert", spec.table.as_str()]);
    match backend {
        Backend::Sqlite => {
            let sets: Vec<String> = spec
                .fields
                .iter()
                .map(|f| {
                    let (needed, since) = (f.columns.needed.quoted(), f.columns.stale_since.quoted());
                    format!(
                        "{since} = CASE WHEN {needed} THEN COALESCE({since}, {SQLITE_NOW}) ELSE {since} END"
                    )
                })
                .collect();
            sqlite(
                &spec.table,
                name,
                format!("AFTER INSERT ON {t} FOR EACH ROW"),
                format!("UPDATE {t} SET {} WHERE {pk} = NEW.{pk};", sets.join(", ")),
            )
        }
        Backend::Postgres => postgres(
            &spec.table,
            name,
            format!("AFTER INSERT ON {t} FOR EACH STATEMENT"),
            format!("  PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  RETURN NULL;"),
        ),
    }
}

/// `OLD.a IS DISTINCT FROM NEW.a OR …` (SQLite: `IS NOT`).
fn changed(backend: Backend, cols: &[&Ident]) -> String {
    let op = match backend {
        Backend::Sqlite => "IS NOT",
        Backend::Postgres => "IS DISTINCT FROM",
    };
    cols.iter()
        .map(|c| format!("OLD.{q} {op} NEW.{q}", q = c.quoted()))
        .collect::<Vec<_>>()
        .join(" OR ")
}

fn column_list(cols: &[&Ident]) -> String {
    cols.iter()
        .map(|c| c.quoted())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns of the field's own row it depends on: plain columns, and the
/// value columns of the cached fields it chains on.
fn own_columns<'a>(spec: &'a TableSpec, f: &'a FieldSpec) -> Vec<&'a Ident> {
    let mut cols: Vec<&Ident> = Vec::new();
    for d in &f.depends_on {
        let col = match d {
            Dependency::Column(c) => Some(c),
            Dependency::Field(n) => spec
                .fields
                .iter()
                .find(|o| o.name == *n)
                .map(|o| &o.columns.value),
            _ => None,
        };
        if let Some(c) = col
            && !cols.contains(&c)
        {
            cols.push(c);
        }
    }
    cols
}

/// The related tables a field depends on: `(table, foreign key, columns)`.
pub(crate) fn relations(f: &FieldSpec) -> Vec<(&Ident, &Ident, Vec<&Ident>)> {
    let mut out: Vec<(&Ident, &Ident, Vec<&Ident>)> = Vec::new();
    for d in &f.depends_on {
        if let Dependency::Related {
            table,
            foreign_key,
            column,
        } = d
        {
            match out
                .iter_mut()
                .find(|(t, k, _)| *t == table && *k == foreign_key)
            {
                Some((_, _, cols)) if !cols.contains(&column) => cols.push(column),
                Some(_) => {}
                None => out.push((table, foreign_key, vec![column])),
            }
        }
    }
    out
}

/// The dependency triggers of one field.
pub(crate) fn dependencies(backend: Backend, spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject> {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let c = &f.columns;
    let needed = c.needed.quoted();
    let mut out = Vec::new();

    let own = own_columns(spec, f);
    if !own.is_empty() {
        let name = Ident::derived(&["cf_dep", spec.table.as_str(), f.name.as_str()]);
        let head = format!(
            "{when} UPDATE OF {cols} ON {t} FOR EACH ROW WHEN ({changed})",
            when = if backend == Backend::Postgres {
                "BEFORE"
            } else {
                "AFTER"
            },
            cols = column_list(&own),
            changed = changed(backend, &own),
        );
        out.push(match backend {
            Backend::Sqlite => sqlite(
                &spec.table,
                name,
                head,
                format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} = NEW.{pk};"),
            ),
            Backend::Postgres => postgres(&spec.table, name, head, pg_flag_in_place(c)),
        });
    }

    for (child, fk, cols) in relations(f) {
        let base = [
            "cf_rel",
            spec.table.as_str(),
            f.name.as_str(),
            child.as_str(),
            fk.as_str(),
        ];
        let named = |suffix: &str| {
            let mut parts = base.to_vec();
            parts.push(suffix);
            Ident::derived(&parts)
        };
        let (ct, k) = (child.quoted(), fk.quoted());
        let mut watched = cols.clone();
        watched.push(fk);
        let upd_head = format!(
            "AFTER UPDATE OF {} ON {ct} FOR EACH ROW WHEN ({})",
            column_list(&watched),
            changed(backend, &watched)
        );
        let flag_moved =
            format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (OLD.{k}, NEW.{k});");
        match backend {
            Backend::Sqlite => {
                out.push(sqlite(
                    child,
                    named("ins"),
                    format!("AFTER INSERT ON {ct} FOR EACH ROW"),
                    format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} = NEW.{k};"),
                ));
                out.push(sqlite(
                    child,
                    named("del"),
                    format!("AFTER DELETE ON {ct} FOR EACH ROW"),
                    format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} = OLD.{k};"),
                ));
                out.push(sqlite(child, named("upd"), upd_head, flag_moved));
            }
            Backend::Postgres => {
                // Inserts and deletes flag each parent once per statement,
                // from the transition table; updates compare row by row.
                out.push(postgres(
                    child,
                    named("ins"),
                    format!("AFTER INSERT ON {ct} REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT"),
                    format!(
                        "  UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (SELECT {k} FROM cf_rows);\n  RETURN NULL;"
                    ),
                ));
                out.push(postgres(
                    child,
                    named("del"),
                    format!("AFTER DELETE ON {ct} REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT"),
                    format!(
                        "  UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (SELECT {k} FROM cf_rows);\n  RETURN NULL;"
                    ),
                ));
                out.push(postgres(
                    child,
                    named("upd"),
                    upd_head,
                    format!("  {flag_moved}\n  RETURN NULL;"),
                ));
            }
        }
    }
    out
}
