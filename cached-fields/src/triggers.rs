//! Trigger SQL per backend: the bookkeeping triggers (a set flag bumps the
//! version; an insert stamps or wakes), and the dependency triggers that
//! flag a field when a declared input changes.
//!
//! Every dependency trigger flags by the same route as the library:
//! `UPDATE … SET F_recalculation_needed = TRUE`, which the bump trigger
//! turns into a version bump and (PostgreSQL) a notification on commit.

use std::collections::HashMap;

use crate::db::Backend;
use crate::depends::Dependency;
use crate::ident::Ident;
use crate::model::FieldColumns;
use crate::schema::{CHANNEL, FieldSpec, ObjectKind, SchemaObject, TableSpec};
use crate::statements;

/// A SQLite timestamp for "now" in the format sqlx reads back.
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// Marks a SQLite trigger or index as this library's (SQLite keeps the
/// text of a `CREATE` statement, comments included).
pub(crate) const SQLITE_MARKER: &str = "/* cached-fields */";

/// A transaction-local setting the worker's PostgreSQL statements set
/// (`statements::StatementSettings`), so the guard trigger skips them.
pub(crate) const WORKER_SETTING: &str = "cached_fields.worker";

/// Marks a PostgreSQL trigger function's source as this library's.
pub(crate) const PG_MARKER: &str = "-- cached-fields:";

/// The comment on this library's PostgreSQL objects; a trigger's comment
/// goes on with the digest of its definition as installed, so a trigger
/// changed by hand (events, columns, timing, `WHEN`) shows.
pub(crate) const PG_COMMENT: &str = "cached-fields";

/// What the database says about a table that the triggers guarding it
/// depend on (SQLite only: the keys a `REPLACE` can conflict on).
#[derive(Debug, Clone, Default)]
pub(crate) struct Catalog {
    /// Table → its keys; a table not listed is taken as a rowid table with
    /// no other unique key (which is all an offline script can know).
    pub(crate) keys: HashMap<String, TableKeys>,
}

/// The keys of one table a row can conflict on.
#[derive(Debug, Clone)]
pub(crate) struct TableKeys {
    /// Whether the table has a rowid (not `WITHOUT ROWID`).
    pub(crate) rowid: bool,
    /// The columns of each unique index (a `WITHOUT ROWID` table's primary
    /// key first).
    pub(crate) unique: Vec<Vec<Ident>>,
}

impl Default for TableKeys {
    fn default() -> Self {
        TableKeys {
            rowid: true,
            unique: Vec::new(),
        }
    }
}

/// The rows whose flag a (re)created trigger guards: when `migrate`
/// repairs it on a table that already has rows, it flags them, since writes
/// made while it was missing or wrong were not caught.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Guarded {
    pub(crate) table: Ident,
    pub(crate) field: Ident,
    pub(crate) needed: Ident,
}

fn guarded(spec: &TableSpec, f: &FieldSpec) -> Guarded {
    Guarded {
        table: spec.table.clone(),
        field: f.name.clone(),
        needed: f.columns.needed.clone(),
    }
}

/// A SQLite trigger: `CREATE TRIGGER name {head} BEGIN {marker} {body} END`.
#[allow(clippy::needless_pass_by_value)] // each caller builds them for this call
fn sqlite(
    table: &Ident,
    name: Ident,
    head: String,
    body: String,
    guards: Vec<Guarded>,
) -> SchemaObject {
    let create = format!(
        "CREATE TRIGGER {} {head} BEGIN {SQLITE_MARKER} {body} END",
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

/// A PostgreSQL trigger with its own function, enabled `ALWAYS` (so it also
/// fires under `session_replication_role = replica`), commented with the
/// digest of its definition as installed. The function's source carries
/// the trigger's definition, so `check` sees a change to either.
#[allow(clippy::needless_pass_by_value)] // each caller builds them for this call
fn postgres(
    table: &Ident,
    name: Ident,
    head: String,
    body: String,
    guards: Vec<Guarded>,
) -> SchemaObject {
    let (n, t) = (name.quoted(), table.quoted());
    let trigger = format!("CREATE OR REPLACE TRIGGER {n} {head} EXECUTE FUNCTION {n}()");
    // A body may declare variables: `DECLARE …;` on its first line.
    let (declare, body) = match body.strip_prefix("DECLARE ") {
        Some(rest) => rest
            .split_once('\n')
            .map_or((String::new(), rest.to_owned()), |(d, b)| {
                (format!("DECLARE {d}\n"), b.to_owned())
            }),
        None => (String::new(), body),
    };
    let source = format!("\n{PG_MARKER} {trigger}\n{declare}BEGIN\n{body}\nEND;\n");
    SchemaObject {
        kind: ObjectKind::Trigger,
        table: table.clone(),
        sql: vec![
            format!(
                "CREATE OR REPLACE FUNCTION {n}() RETURNS trigger LANGUAGE plpgsql AS $cf${source}$cf$"
            ),
            trigger,
            format!("ALTER TABLE {t} ENABLE ALWAYS TRIGGER {n}"),
            format!(
                "DO $cfdo$ BEGIN EXECUTE format('COMMENT ON TRIGGER %I ON %I IS %L', '{name}', '{table}', \
                 '{PG_COMMENT} ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger \
                 WHERE tgname = '{name}' AND tgrelid = to_regclass('{t}'))); END $cfdo$"
            ),
        ],
        name,
        definition: Some(source),
        column: None,
        guards,
    }
}

/// The statements that remove one of this library's triggers (on
/// PostgreSQL with its function, and a guard's helper if it has one).
pub(crate) fn drop(backend: Backend, table: &Ident, name: &Ident) -> Vec<String> {
    let (t, n) = (table.quoted(), name.quoted());
    match backend {
        Backend::Sqlite => vec![format!("DROP TRIGGER IF EXISTS {n}")],
        Backend::Postgres => vec![
            format!("DROP TRIGGER IF EXISTS {n} ON {t}"),
            format!("DROP FUNCTION IF EXISTS {n}()"),
            format!("DROP FUNCTION IF EXISTS {}", values_helper(name).quoted()),
        ],
    }
}

/// The SQL function a PostgreSQL guard trigger `name` compares values with.
fn values_helper(name: &Ident) -> Ident {
    Ident::derived(&[name.as_str(), "values"])
}

/// The instant from which `F_next_attempt_at` means parked (a lazy flag).
fn parked_from(backend: Backend) -> String {
    let at = statements::PARKED_FROM_SQL;
    match backend {
        Backend::Sqlite => format!("julianday('{at}')"),
        Backend::Postgres => format!("TIMESTAMPTZ '{at}'"),
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
/// longer) stay as they are. A row parked by a lazy flag becomes due now:
/// a write always brings the worker, as an eager flag does. A statement
/// that sets `F_next_attempt_at` itself (the lazy flag) is left alone.
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
    let guards = vec![guarded(spec, f)];
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
                     WHEN {next} IS NOT NULL AND julianday({next}) >= {parked} THEN NULL \
                     WHEN OLD.{needed} AND {since} IS NOT NULL \
                     THEN (CASE WHEN {next} IS NULL THEN NULL ELSE {still_hot} END) \
                     WHEN {since} IS NOT NULL AND {s} > {r} THEN {hot_again} \
                     ELSE {next} END WHERE {pk} = NEW.{pk};",
                    still_hot = later(&hot),
                    hot_again = later(&pause),
                    s = jd(&since),
                    r = jd(&recent),
                    parked = parked_from(backend),
                ),
                guards,
            )
        }
        Backend::Postgres => postgres(
            &spec.table,
            name,
            format!("BEFORE UPDATE OF {needed} ON {t} FOR EACH ROW WHEN (NEW.{needed})"),
            pg_flag_in_place(c),
            guards,
        ),
    }
}

/// The statements of a PostgreSQL BEFORE UPDATE trigger that flag the row
/// in place with the bump trigger's bookkeeping (a BEFORE trigger cannot
/// re-update its own row, and changes made to `NEW` fire no other trigger).
fn flag_in_place(c: &FieldColumns) -> String {
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
         ELSIF OLD.{next} >= {parked} THEN\n    NEW.{next} := NULL;\n  \
         ELSIF OLD.{needed} AND OLD.{since} IS NOT NULL THEN\n    \
         IF NEW.{next} IS NOT NULL THEN NEW.{next} := GREATEST(NEW.{next}, {hot}); END IF;\n  \
         ELSIF OLD.{since} > {recent} THEN\n    \
         NEW.{next} := GREATEST(NEW.{next}, {pause});\n  END IF;\n  \
         IF NOT OLD.{needed} OR OLD.{since} IS NULL THEN NEW.{since} := clock_timestamp(); END IF;\n  \
         PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);",
        parked = parked_from(b),
    )
}

/// [`flag_in_place`] as a whole trigger body.
fn pg_flag_in_place(c: &FieldColumns) -> String {
    format!("{}\n  RETURN NEW;", flag_in_place(c))
}

/// A newly inserted row's values are never trusted (it may be a copy of
/// another row, cached columns and all): every field is flagged, with fresh
/// bookkeeping and a version no earlier incarnation of the key had (the
/// clock in microseconds), so a write-back computed from a deleted row of
/// the same key cannot land on it. PostgreSQL also wakes workers.
pub(crate) fn insert(backend: Backend, spec: &TableSpec) -> SchemaObject {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let name = Ident::derived(&["cf_insert", spec.table.as_str()]);
    let guards = spec.fields.iter().map(|f| guarded(spec, f)).collect();
    match backend {
        Backend::Sqlite => {
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
            sqlite(
                &spec.table,
                name,
                format!("AFTER INSERT ON {t} FOR EACH ROW"),
                format!("UPDATE {t} SET {} WHERE {pk} = NEW.{pk};", sets.join(", ")),
                guards,
            )
        }
        Backend::Postgres => {
            let micros = "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000 AS BIGINT)";
            let sets: String = spec
                .fields
                .iter()
                .map(|f| {
                    let c = &f.columns;
                    let version = c.version.quoted();
                    format!(
                        "  NEW.{needed} := TRUE;\n  NEW.{version} := GREATEST(COALESCE(NEW.{version}, 0) + 1, {micros});\n  \
                         NEW.{since} := clock_timestamp();\n  NEW.{next} := NULL;\n  NEW.{attempts} := 0;\n  NEW.{err} := NULL;\n",
                        needed = c.needed.quoted(),
                        since = c.stale_since.quoted(),
                        next = c.next_attempt.quoted(),
                        attempts = c.attempts.quoted(),
                        err = c.last_error.quoted(),
                    )
                })
                .collect();
            postgres(
                &spec.table,
                name,
                format!("BEFORE INSERT ON {t} FOR EACH ROW"),
                format!("{sets}  PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  RETURN NEW;"),
                guards,
            )
        }
    }
}

/// A write to a cached value or its flag that is not the library's own
/// write-back (which moves the version on by exactly one) cannot leave a
/// wrong value marked fresh: a stale full-row save, as ORMs do, writing
/// back a value (or a cleared flag) loaded before the worker's last
/// recalculation, flags the row again instead.
///
/// SQLite: one trigger per field, on its value and flag columns.
/// PostgreSQL: one trigger per table that names no column (the test is in
/// its body), because a column named in a trigger's definition can no
/// longer have its type altered.
pub(crate) fn guards(backend: Backend, spec: &TableSpec) -> Vec<SchemaObject> {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    match backend {
        Backend::Sqlite => spec
            .fields
            .iter()
            .map(|f| {
                let c = &f.columns;
                let (value, needed, version) =
                    (c.value.quoted(), c.needed.quoted(), c.version.quoted());
                sqlite(
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
            .collect(),
        Backend::Postgres => {
            let name = Ident::derived(&["cf_guard", spec.table.as_str()]);
            // Which cached values a statement changed: compared directly,
            // but PL/pgSQL keeps a plan per column type, and once a cached
            // column is retyped by hand that comparison fails in sessions
            // that ran it before (every later UPDATE of the table would).
            // Then a SQL function of the old and new rows answers instead:
            // it is planned anew for each statement (STRICT keeps it from
            // being inlined), and its polymorphic arguments keep it from
            // depending on the table (which can be dropped without CASCADE).
            let helper = values_helper(&name);
            let compare: Vec<String> = spec
                .fields
                .iter()
                .map(|f| format!("o.{v} IS DISTINCT FROM n.{v}", v = f.columns.value.quoted()))
                .collect();
            let create_helper = format!(
                "CREATE OR REPLACE FUNCTION {h}(o anyelement, n anyelement) RETURNS boolean[] \
                 LANGUAGE sql STABLE STRICT AS $cf$ SELECT ARRAY[{cols}] $cf$",
                h = helper.quoted(),
                cols = compare.join(", "),
            );
            let typed: Vec<String> = spec
                .fields
                .iter()
                .map(|f| {
                    format!(
                        "OLD.{v} IS DISTINCT FROM NEW.{v}",
                        v = f.columns.value.quoted()
                    )
                })
                .collect();
            let body: String = spec
                .fields
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    let c = &f.columns;
                    let (needed, version) = (c.needed.quoted(), c.version.quoted());
                    // The statement's own bookkeeping is ignored: it may be as stale.
                    let restore: String =
                        [&c.stale_since, &c.next_attempt, &c.attempts, &c.last_error]
                            .iter()
                            .map(|col| format!("    NEW.{q} := OLD.{q};\n", q = col.quoted()))
                            .collect();
                    let flag = flag_in_place(c);
                    // Only a row left unflagged by a statement that is not
                    // the write-back can be wrong: its flag cleared, or its
                    // value changed (compared once per row, when first needed).
                    format!(
                        "  IF NOT NEW.{needed} AND NEW.{version} IS DISTINCT FROM OLD.{version} + 1 THEN\n\
                         \x20   IF NOT OLD.{needed} AND cf_changed IS NULL THEN\n\
                         \x20     BEGIN cf_changed := ARRAY[{typed}];\n\
                         \x20     EXCEPTION WHEN datatype_mismatch THEN cf_changed := {h}(OLD, NEW);\n\
                         \x20     END;\n\
                         \x20   END IF;\n\
                         \x20   IF OLD.{needed} OR cf_changed[{n}] THEN\n\
                         {restore}  {flag}\n    END IF;\n  END IF;\n",
                        h = helper.quoted(),
                        n = i + 1,
                        typed = typed.join(", "),
                    )
                })
                .collect();
            let mut guard = postgres(
                &spec.table,
                name,
                // The library's own statements (claims, leases, write-backs,
                // flags on its own connections) mark themselves and skip it,
                // as do the flags this library's triggers set (a statement
                // from a trigger: depth 1 and more).
                format!(
                    "BEFORE UPDATE ON {t} FOR EACH ROW WHEN (pg_trigger_depth() = 0 AND \
                     current_setting('{WORKER_SETTING}', true) IS DISTINCT FROM 'on')"
                ),
                // The helper's text is part of this source, so `check` sees
                // a change to it too.
                format!(
                    "DECLARE cf_changed boolean[];\n  -- {h}: {cols}\n{body}  RETURN NEW;",
                    h = helper.quoted(),
                    cols = compare.join(", ")
                ),
                spec.fields.iter().map(|f| guarded(spec, f)).collect(),
            );
            guard.sql.insert(0, create_helper);
            vec![guard]
        }
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

/// The SQLite triggers that catch `REPLACE`: an `INSERT OR REPLACE` (or
/// `REPLACE INTO`) or `UPDATE OR REPLACE` of a child row deletes the row
/// it conflicts with without firing delete triggers (unless a connection
/// turned on `recursive_triggers`), so before the write they flag the
/// parent of any row it is about to replace.
fn sqlite_replace(
    spec: &TableSpec,
    f: &FieldSpec,
    child: &Ident,
    fk: &Ident,
    keys: &TableKeys,
    named: &dyn Fn(&str) -> Ident,
) -> Vec<SchemaObject> {
    let (t, pk, needed) = (
        spec.table.quoted(),
        spec.primary_key.quoted(),
        f.columns.needed.quoted(),
    );
    let (ct, k) = (child.quoted(), fk.quoted());
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
    let guards = vec![guarded(spec, f)];
    let flag = |cond: &str| {
        format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (SELECT {k} FROM {ct} WHERE {cond});")
    };
    let on_update = format!("({on_insert}) AND {not_self}");
    vec![
        sqlite(
            child,
            named("rep"),
            format!(
                "BEFORE INSERT ON {ct} FOR EACH ROW WHEN EXISTS (SELECT 1 FROM {ct} WHERE {on_insert})"
            ),
            flag(&on_insert),
            guards.clone(),
        ),
        sqlite(
            child,
            named("repu"),
            format!(
                "BEFORE UPDATE ON {ct} FOR EACH ROW WHEN ({}) AND EXISTS (SELECT 1 FROM {ct} WHERE {on_update})",
                key_cols.join(" OR ")
            ),
            flag(&on_update),
            guards,
        ),
    ]
}

/// The dependency triggers of one field.
pub(crate) fn dependencies(
    backend: Backend,
    spec: &TableSpec,
    f: &FieldSpec,
    catalog: &Catalog,
) -> Vec<SchemaObject> {
    let (t, pk) = (spec.table.quoted(), spec.primary_key.quoted());
    let c = &f.columns;
    let needed = c.needed.quoted();
    let guards = vec![guarded(spec, f)];
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
                guards.clone(),
            ),
            Backend::Postgres => {
                postgres(&spec.table, name, head, pg_flag_in_place(c), guards.clone())
            }
        });
    }

    for (child, fk, cols) in relations(f) {
        // `cf_{kind}_{table}_{field}_{child}_{fk}_{hash}`: the kind first,
        // where a long name is not cut.
        let named = |kind: &str| {
            Ident::derived(&[
                "cf",
                kind,
                spec.table.as_str(),
                f.name.as_str(),
                child.as_str(),
                fk.as_str(),
            ])
        };
        let (ct, k) = (child.quoted(), fk.quoted());
        // The foreign key may be a dependency itself (a child count).
        let mut watched = cols.clone();
        if !watched.contains(&fk) {
            watched.push(fk);
        }
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
                    guards.clone(),
                ));
                out.push(sqlite(
                    child,
                    named("del"),
                    format!("AFTER DELETE ON {ct} FOR EACH ROW"),
                    format!("UPDATE {t} SET {needed} = TRUE WHERE {pk} = OLD.{k};"),
                    guards.clone(),
                ));
                out.push(sqlite(
                    child,
                    named("upd"),
                    upd_head,
                    flag_moved,
                    guards.clone(),
                ));
                let keys = catalog
                    .keys
                    .get(child.as_str())
                    .cloned()
                    .unwrap_or_default();
                out.extend(sqlite_replace(spec, f, child, fk, &keys, &named));
            }
            Backend::Postgres => {
                // Inserts and deletes flag each parent once per statement,
                // from the transition table; updates compare row by row; a
                // TRUNCATE flags every parent.
                out.push(postgres(
                    child,
                    named("ins"),
                    format!("AFTER INSERT ON {ct} REFERENCING NEW TABLE AS cf_rows FOR EACH STATEMENT"),
                    format!(
                        "  UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (SELECT {k} FROM cf_rows);\n  RETURN NULL;"
                    ),
                    guards.clone(),
                ));
                out.push(postgres(
                    child,
                    named("del"),
                    format!("AFTER DELETE ON {ct} REFERENCING OLD TABLE AS cf_rows FOR EACH STATEMENT"),
                    format!(
                        "  UPDATE {t} SET {needed} = TRUE WHERE {pk} IN (SELECT {k} FROM cf_rows);\n  RETURN NULL;"
                    ),
                    guards.clone(),
                ));
                out.push(postgres(
                    child,
                    named("upd"),
                    upd_head,
                    format!("  {flag_moved}\n  RETURN NULL;"),
                    guards.clone(),
                ));
                out.push(postgres(
                    child,
                    named("trunc"),
                    format!("AFTER TRUNCATE ON {ct} FOR EACH STATEMENT"),
                    format!("  UPDATE {t} SET {needed} = TRUE;\n  RETURN NULL;"),
                    guards.clone(),
                ));
            }
        }
    }
    out
}
