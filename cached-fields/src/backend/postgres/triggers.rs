//! PostgreSQL's triggers: each with its own PL/pgSQL function, enabled
//! `ALWAYS`, commented with the digest of its definition; `BEFORE` triggers
//! flag a row in place, statement triggers read transition tables.

use crate::backend::Backend;
use crate::depends::{Dependency, Hop};
use crate::ident::Ident;
use crate::model::FieldColumns;
use crate::schema::{CHANNEL, FieldSpec, ObjectKind, SchemaObject, TableSpec};
use crate::statements;
use crate::triggers::{Catalog, Guarded, Reach, changed, column_list, guarded, own_dependency};

/// The null-safe inequality of two values.
const NOT_SAME: &str = "IS DISTINCT FROM";

/// This backend, for the shared statement fragments.
const B: Backend = Backend::Postgres;

/// A transaction-local setting the worker's statements set (see
/// [`Dialect::prefix`](crate::backend::Dialect::prefix)), so the guard
/// trigger skips them.
pub(crate) const WORKER_SETTING: &str = "cached_fields.worker";

/// Marks a trigger function's source as this library's.
pub(crate) const MARKER: &str = "-- cached-fields:";

/// The comment on this library's objects; a trigger's comment goes on with
/// the digest of its definition as installed, so a trigger changed by hand
/// (events, columns, timing, `WHEN`) shows.
pub(crate) const COMMENT: &str = "cached-fields";

/// A trigger with its own function, enabled `ALWAYS` (so it also
/// fires under `session_replication_role = replica`), commented with the
/// digest of its definition as installed. The function's source carries
/// the trigger's definition, so `check` sees a change to either.
#[allow(clippy::needless_pass_by_value)] // each caller builds them for this call
fn trigger(
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
    let source = format!("\n{MARKER} {trigger}\n{declare}BEGIN\n{body}\nEND;\n");
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
                 '{COMMENT} ' || (SELECT md5(pg_get_triggerdef(oid)) FROM pg_trigger \
                 WHERE tgname = '{name}' AND tgrelid = to_regclass('{t}'))); END $cfdo$"
            ),
        ],
        name,
        definition: Some(source),
        column: None,
        guards,
    }
}

/// The statements that remove one of this library's triggers, with its
/// function and a guard's helper if it has one.
pub(crate) fn drop(table: &Ident, name: &Ident) -> Vec<String> {
    let (t, n) = (table.quoted(), name.quoted());
    vec![
        format!("DROP TRIGGER IF EXISTS {n} ON {t}"),
        format!("DROP FUNCTION IF EXISTS {n}()"),
        format!("DROP FUNCTION IF EXISTS {}", values_helper(name).quoted()),
    ]
}

/// The SQL function a guard trigger `name` compares values with.
fn values_helper(name: &Ident) -> Ident {
    Ident::derived(&[name.as_str(), "values"])
}

/// The instant from which `F_next_attempt_at` means parked (a lazy flag).
fn parked_from() -> String {
    format!("TIMESTAMPTZ '{}'", statements::PARKED_FROM_SQL)
}

/// See [`crate::triggers::bump`].
pub(crate) fn bump(spec: &TableSpec, f: &FieldSpec) -> SchemaObject {
    let t = spec.table.quoted();
    let c = &f.columns;
    let needed = c.needed.quoted();
    let name = Ident::derived(&["cf_bump", spec.table.as_str(), c.needed.as_str()]);
    let guards = vec![guarded(spec, f)];
    trigger(
        &spec.table,
        name,
        format!("BEFORE UPDATE OF {needed} ON {t} FOR EACH ROW WHEN (NEW.{needed})"),
        flag_in_place_body(c),
        guards,
    )
}

/// The statements of a BEFORE UPDATE trigger that flag the row
/// in place with the bump trigger's bookkeeping (a BEFORE trigger cannot
/// re-update its own row, and changes made to `NEW` fire no other trigger).
fn flag_in_place(c: &FieldColumns) -> String {
    let (needed, version, since, next) = (
        c.needed.quoted(),
        c.version.quoted(),
        c.stale_since.quoted(),
        c.next_attempt.quoted(),
    );
    let b = B;
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
        parked = parked_from(),
    )
}

/// [`flag_in_place`] as a whole trigger body.
fn flag_in_place_body(c: &FieldColumns) -> String {
    format!("{}\n  RETURN NEW;", flag_in_place(c))
}

/// The rows of other tables that a row of `spec`'s table points at along
/// the first hop of a path of `fields` (a forward hop), each as (its
/// table, the referenced column, this table's foreign key): an insert or
/// a move holds them `FOR KEY SHARE` while its flags are uncommitted (see
/// [`written`]).
fn pointed_at<'a>(
    fields: impl IntoIterator<Item = &'a FieldSpec>,
) -> Vec<(&'a Ident, &'a Ident, &'a Ident)> {
    distinct(
        fields
            .into_iter()
            .flat_map(|f| &f.depends_on)
            .filter_map(|d| match d {
                Dependency::Path(p) => match p.hops.first() {
                    Some(Hop::Forward {
                        foreign_key,
                        table,
                        referenced,
                    }) => Some((table, referenced, foreign_key)),
                    _ => None,
                },
                _ => None,
            }),
    )
}

/// `PERFORM … FOR KEY SHARE` of the row `NEW` points at (see [`pointed_at`]).
fn hold_pointed(table: &Ident, referenced: &Ident, fk: &Ident) -> String {
    format!(
        "PERFORM 1 FROM {} WHERE {} = NEW.{} FOR KEY SHARE;",
        table.quoted(),
        referenced.quoted(),
        fk.quoted()
    )
}

/// See [`crate::triggers::insert`].
pub(crate) fn insert(spec: &TableSpec) -> SchemaObject {
    let t = spec.table.quoted();
    let name = Ident::derived(&["cf_insert", spec.table.as_str()]);
    let guards = spec.fields.iter().map(|f| guarded(spec, f)).collect();
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
    let held: String = pointed_at(&spec.fields)
        .into_iter()
        .map(|(table, referenced, fk)| format!("  {}\n", hold_pointed(table, referenced, fk)))
        .collect();
    trigger(
        &spec.table,
        name,
        format!("BEFORE INSERT ON {t} FOR EACH ROW"),
        format!("{held}{sets}  PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  RETURN NEW;"),
        guards,
    )
}

/// See [`crate::triggers::guards`]: one trigger per table that names no
/// column (the test is in its body), because a column named in a trigger's
/// definition can no longer have its type altered.
pub(crate) fn guards(spec: &TableSpec) -> Vec<SchemaObject> {
    let t = spec.table.quoted();
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
    // The cached values, then the primary key.
    let pk = spec.primary_key.quoted();
    let compare: Vec<String> = spec
        .fields
        .iter()
        .map(|f| format!("o.{v} IS DISTINCT FROM n.{v}", v = f.columns.value.quoted()))
        .chain([format!("o.{pk} IS DISTINCT FROM n.{pk}")])
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
        .chain([format!("OLD.{pk} IS DISTINCT FROM NEW.{pk}")])
        .collect();
    // The statement's own bookkeeping is ignored: it may be as stale.
    let restore = |c: &FieldColumns| -> String {
        [&c.stale_since, &c.next_attempt, &c.attempts, &c.last_error]
            .iter()
            .map(|col| format!("    NEW.{q} := OLD.{q};\n", q = col.quoted()))
            .collect()
    };
    // A new primary key: every field of the row is flagged (what points
    // at the row, and what its calculation reads by key, changed).
    let rekeyed: String = spec
        .fields
        .iter()
        .map(|f| format!("{}  {}\n", restore(&f.columns), flag_in_place(&f.columns)))
        .collect();
    let body: String = spec
        .fields
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let c = &f.columns;
            let (needed, version) = (c.needed.quoted(), c.version.quoted());
            let flag = flag_in_place(c);
            // Only a row left unflagged by a statement that is not
            // the write-back can be wrong: its flag cleared, or its
            // value changed.
            format!(
                "  IF NOT NEW.{needed} AND NEW.{version} IS DISTINCT FROM OLD.{version} + 1 THEN\n\
                 \x20   IF OLD.{needed} OR cf_changed[{n}] THEN\n\
                 {restore}  {flag}\n    END IF;\n  END IF;\n",
                restore = restore(c),
                n = i + 1,
            )
        })
        .collect();
    // Compared once per row (the values and the key).
    let compared = format!(
        "  BEGIN cf_changed := ARRAY[{typed}];\n\
         \x20 EXCEPTION WHEN datatype_mismatch THEN cf_changed := {h}(OLD, NEW);\n\
         \x20 END;\n\
         \x20 IF cf_changed[{k}] THEN\n{rekeyed}    RETURN NEW;\n  END IF;\n",
        h = helper.quoted(),
        typed = typed.join(", "),
        k = spec.fields.len() + 1,
    );
    let mut guard = trigger(
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
            "DECLARE cf_changed boolean[];\n  -- {h}: {cols}\n{compared}{body}  RETURN NEW;",
            h = helper.quoted(),
            cols = compare.join(", ")
        ),
        spec.fields.iter().map(|f| guarded(spec, f)).collect(),
    );
    guard.sql.insert(0, create_helper);
    vec![guard]
}

/// See [`crate::triggers::dependencies`].
pub(crate) fn dependencies(spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject> {
    let c = &f.columns;
    own_dependency(spec, f)
        .map(|(name, own)| {
            let head = format!(
                "BEFORE UPDATE OF {cols} ON {t} FOR EACH ROW WHEN (({changed}) AND NOT ({itself}))",
                cols = column_list(&own),
                t = spec.table.quoted(),
                changed = changed(&own, NOT_SAME),
                itself = crate::triggers::stores_itself(c),
            );
            // A move along a path's first hop holds the row it now points at.
            let held: String = pointed_at([f])
                .into_iter()
                .map(|(table, referenced, fk)| {
                    format!(
                        "  IF NEW.{q} IS DISTINCT FROM OLD.{q} THEN\n    {}\n  END IF;\n",
                        hold_pointed(table, referenced, fk),
                        q = fk.quoted()
                    )
                })
                .collect();
            trigger(
                &spec.table,
                name,
                head,
                format!("{held}{}", flag_in_place_body(c)),
                vec![guarded(spec, f)],
            )
        })
        .into_iter()
        .collect()
}

/// See [`crate::triggers::related`]: one statement trigger per table on a
/// path and event (insert, delete, update, truncate), reading the
/// statement's transition tables once for every field reached through the
/// table: inserts and deletes flag each reached row once per statement;
/// an update, the rows reached by the old and new arrival keys of the rows
/// whose watched columns changed (a move included); a truncation, every
/// row. A statement trigger runs for every statement of its event, whatever
/// it changed: one per event, not one per field, is what a write pays.
pub(crate) fn related(reaches: &[Reach<'_>], _catalog: &Catalog) -> Vec<SchemaObject> {
    distinct(reaches.iter().map(|r| &r.table))
        .into_iter()
        .flat_map(|t| {
            let here: Vec<&Reach<'_>> = reaches.iter().filter(|r| r.table == *t).collect();
            written(t, &here)
        })
        .collect()
}

/// `items` without repeats, in their first order.
fn distinct<T: PartialEq>(items: impl IntoIterator<Item = T>) -> Vec<T> {
    let mut out = Vec::new();
    for i in items {
        if !out.contains(&i) {
            out.push(i);
        }
    }
    out
}

/// The four statement triggers on `table`, for the fields `reaches` flag.
///
/// Before a trigger walks the joins back from the rows its statement
/// wrote, it holds the rows it reads on the way, each in a statement of
/// its own (so the next step, under READ COMMITTED, sees what committed
/// while it waited), so that a transaction writing elsewhere on the path
/// at the same time is either seen by the walk or sees this one's rows:
///
/// - a row whose foreign key the walk follows back (the path arrives at
///   it by that key) is held `FOR KEY SHARE`, and a statement moving a row
///   (a new value of that key) holds it `FOR UPDATE`;
/// - a row whose referencing rows the walk searches (the path arrives at
///   the column they reference) is held `FOR UPDATE`, and a statement
///   pointing a row at it (an insert, or a move) holds it `FOR KEY SHARE`.
///
/// So whatever the order two such transactions commit in, the later one's
/// flags reach every row whose value their writes together changed, and
/// no value computed between their commits is left marked fresh. (Both
/// lock modes let other writes of those rows through: `FOR KEY SHARE` is
/// what a foreign-key check takes.)
fn written(table: &Ident, reaches: &[&Reach<'_>]) -> Vec<SchemaObject> {
    let t = table.quoted();
    let guards = distinct(reaches.iter().map(|r| r.guarded()));
    let name = |kind: &str| crate::triggers::table_trigger_name(kind, table);
    // The rows the statement points at along a forward hop onward.
    let pointed = |values: &dyn Fn(&Ident) -> String| {
        distinct(
            reaches
                .iter()
                .flat_map(|r| r.onward.iter())
                .filter(|o| o.forward)
                .map(|o| {
                    format!(
                        "PERFORM 1 FROM {} WHERE {} FOR KEY SHARE",
                        o.table.quoted(),
                        member(&o.far.quoted(), &values(&o.near))
                    )
                }),
        )
    };
    let lines = |stmts: &[String], indent: &str| -> String {
        stmts.iter().map(|s| format!("{indent}{s};\n")).collect()
    };
    let rows = |kind: &str, event: &str, image: &str| {
        let mut stmts = if kind == "ins" {
            pointed(&|near| format!("SELECT {} FROM cf_rows", near.quoted()))
        } else {
            Vec::new()
        };
        for r in reaches {
            let values = format!("SELECT {} FROM cf_rows", r.far.quoted());
            stmts.extend(walk_locks(r, &values));
            stmts.push(r.flag(&values, member));
        }
        trigger(
            table,
            name(kind),
            format!("AFTER {event} ON {t} REFERENCING {image} TABLE AS cf_rows FOR EACH STATEMENT"),
            format!("{}  RETURN NULL;", lines(&distinct(stmts), "  ")),
            guards.clone(),
        )
    };
    // Most updates change no watched column (the worker's own write-backs
    // of other fields, a user's edit of a column no path reads): then one
    // query over the transition tables answers for every field, and
    // nothing else is planned or run. (The old and new images of an update
    // are as many: where they are not the same multiset, some row's
    // watched columns changed.) A statement trigger also fires for a
    // statement that updated nothing: the flags it sets on its own table
    // (a tree) would otherwise fire it again, and again.
    let all = distinct(reaches.iter().flat_map(|r| r.watched.iter()));
    let cols = all
        .iter()
        .map(|c| c.quoted())
        .collect::<Vec<_>>()
        .join(", ");
    let moved_in = |c: &Ident| {
        let c = c.quoted();
        format!("SELECT {c} FROM cf_new EXCEPT ALL SELECT {c} FROM cf_old")
    };
    let pointed_at = lines(&pointed(&moved_in), "    ");
    let flags: String = reaches
        .iter()
        .map(|r| {
            let moved = moved(&r.watched);
            let mut stmts = vec![own_locks(r)];
            stmts.extend(walk_locks(r, &moved));
            stmts.push(r.flag(&moved, member));
            let stmts = distinct(stmts);
            if reaches.len() == 1 {
                lines(&stmts, "    ")
            } else {
                format!(
                    "    IF EXISTS ({moved}) THEN\n{}    END IF;\n",
                    lines(&stmts, "      ")
                )
            }
        })
        .collect();
    let update = trigger(
        table,
        name("upd"),
        format!(
            "AFTER UPDATE ON {t} REFERENCING OLD TABLE AS cf_old NEW TABLE AS cf_new FOR EACH STATEMENT"
        ),
        format!(
            "  IF EXISTS (SELECT {cols} FROM cf_old EXCEPT ALL SELECT {cols} FROM cf_new) THEN\n\
             {pointed_at}{flags}  END IF;\n  RETURN NULL;"
        ),
        guards.clone(),
    );
    let all_rows = distinct(reaches.iter().map(|r| format!("  {};\n", r.flag_all())));
    vec![
        rows("ins", "INSERT", "NEW"),
        rows("del", "DELETE", "OLD"),
        update,
        trigger(
            table,
            name("trunc"),
            format!("AFTER TRUNCATE ON {t} FOR EACH STATEMENT"),
            format!("{}  RETURN NULL;", all_rows.concat()),
            guards,
        ),
    ]
}

/// The locks a walk back from this table's rows whose arrival values are
/// `values` takes on the rows of the tables it passes through, nearest
/// first, before it flags (see [`written`]): each table's rows reached,
/// `FOR UPDATE` where the walk searches the rows pointing at them (the
/// path arrives at the column they reference), `FOR KEY SHARE` where it
/// follows their foreign key back.
fn walk_locks(r: &Reach<'_>, values: &str) -> Vec<String> {
    let links = r.links();
    (1..links.len())
        .rev()
        .map(|k| {
            let arrival = &links[k - 1];
            let mode = if arrival.forward {
                "UPDATE"
            } else {
                "KEY SHARE"
            };
            format!(
                "PERFORM 1 FROM {} WHERE {} FOR {mode}",
                arrival.table.quoted(),
                r.reaching(k, values, member)
            )
        })
        .collect()
}

/// For an `UPDATE`: the rows it wrote that walks from elsewhere read,
/// held `FOR UPDATE` (see [`written`]): where the path arrives at this
/// table's referenced column, the rows whose watched columns changed (no
/// row may point at them while this transaction's flags are uncommitted);
/// where it arrives by this table's foreign key, the rows moved to another
/// row (a walk following that key back waits for the move, or it for the
/// walk).
fn own_locks(r: &Reach<'_>) -> String {
    let cols = r
        .watched
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let (t, far) = (r.table.quoted(), r.far.quoted());
    let changed = format!("SELECT {cols} FROM cf_new EXCEPT ALL SELECT {cols} FROM cf_old");
    let forward = r.links().last().is_some_and(|l| l.forward);
    if forward {
        format!(
            "PERFORM 1 FROM {t} WHERE {} FOR UPDATE",
            member(
                &far,
                &format!("SELECT {far} FROM ({changed}) AS cf_changed")
            )
        )
    } else {
        format!(
            "PERFORM 1 FROM {t} WHERE ({cols}) IN ({changed}) AND {} FOR UPDATE",
            member(
                &far,
                &format!("SELECT {far} FROM cf_new EXCEPT ALL SELECT {far} FROM cf_old")
            )
        )
    }
}

/// The arrival keys (the first of `watched`) of the rows an `UPDATE`
/// statement changed in a watched column: the old and new images that are
/// not in the other transition table (as multisets, so a statement that
/// swaps values between rows flags only where the set of values a key
/// reaches changed), without pairing rows (a statement may change the key).
fn moved(watched: &[Ident]) -> String {
    let cols = watched
        .iter()
        .map(Ident::quoted)
        .collect::<Vec<_>>()
        .join(", ");
    let far = watched[0].quoted();
    format!(
        "SELECT {far} FROM ((SELECT {cols} FROM cf_old EXCEPT ALL SELECT {cols} FROM cf_new) \
         UNION ALL (SELECT {cols} FROM cf_new EXCEPT ALL SELECT {cols} FROM cf_old)) AS cf_moved"
    )
}

/// `col = ANY(ARRAY(values))`: the keys collected first (an init plan),
/// then found through the index on `col`, whatever the planner guesses of
/// a transition table's size.
fn member(col: &str, values: &str) -> String {
    format!("{col} = ANY(ARRAY({values}))")
}

/// The transaction-local setting in which the rewrite trigger lists the
/// tables an `ALTER TABLE` rewrote for a column's new type.
const REWRITTEN: &str = "cached_fields.rewritten";

/// The tables each field reads (its own, where it reads a column of its
/// row or joins a path from it, and every table on its paths), and the
/// statement flagging its every row, by table.
fn readers(specs: &[TableSpec]) -> Vec<(&Ident, Vec<String>)> {
    let mut out: Vec<(&Ident, Vec<String>)> = Vec::new();
    for spec in specs {
        for f in &spec.fields {
            // Due at once, a row backing off after a failure included:
            // the change may be what it failed on.
            let flag = format!(
                "UPDATE {} SET {} = TRUE, {} = NULL",
                spec.table.quoted(),
                f.columns.needed.quoted(),
                f.columns.next_attempt.quoted()
            );
            let mut tables: Vec<&Ident> = Vec::new();
            for d in &f.depends_on {
                match d {
                    Dependency::Column(_) | Dependency::Field(_) => tables.push(&spec.table),
                    Dependency::Path(p) => {
                        tables.push(&spec.table);
                        tables.extend(p.hops.iter().map(Hop::table));
                    }
                }
            }
            for t in distinct(tables) {
                match out.iter_mut().find(|(o, _)| *o == t) {
                    Some((_, flags)) => {
                        if !flags.contains(&flag) {
                            flags.push(flag.clone());
                        }
                    }
                    None => out.push((t, vec![flag.clone()])),
                }
            }
        }
    }
    out
}

/// An event trigger with its own function, enabled `ALWAYS`.
fn event_trigger(name: &Ident, on: &str, body: &str) -> SchemaObject {
    let n = name.quoted();
    let create = format!("CREATE EVENT TRIGGER {n} ON {on} EXECUTE FUNCTION {n}()");
    let source = format!("\n{MARKER} {create}\n{body}\n");
    SchemaObject {
        kind: ObjectKind::EventTrigger,
        table: Ident::new(crate::schema::DATABASE).unwrap_or_else(|_| Ident::id()),
        name: name.clone(),
        sql: vec![
            format!(
                "CREATE OR REPLACE FUNCTION {n}() RETURNS event_trigger LANGUAGE plpgsql AS $cf${source}$cf$"
            ),
            format!("DROP EVENT TRIGGER IF EXISTS {n}"),
            create,
            format!("ALTER EVENT TRIGGER {n} ENABLE ALWAYS"),
            format!("COMMENT ON EVENT TRIGGER {n} IS '{COMMENT}'"),
        ],
        definition: Some(source),
        column: None,
        guards: Vec::new(),
    }
}

/// Schema changes that rewrite data no trigger sees: an `ALTER TABLE …
/// ALTER COLUMN … TYPE … USING …` (or any type change that rewrites the
/// table) of a table some field reads flags every row of those fields,
/// in the altering transaction. One event trigger notes each table
/// rewritten for a column's type (`table_rewrite`), another flags at the
/// end of the command (`ddl_command_end`). Creating them needs a
/// superuser: without them `check` says so (a warning), and `verify`
/// finds what such a change left wrong.
pub(crate) fn ddl(specs: &[TableSpec]) -> Vec<SchemaObject> {
    let readers = readers(specs);
    if readers.is_empty() {
        return Vec::new();
    }
    let tables: Vec<&str> = readers.iter().map(|(t, _)| t.as_str()).collect();
    let mut parts = vec!["cf_rewrite"];
    parts.extend(tables.iter().copied());
    let note = Ident::derived(&parts);
    parts[0] = "cf_ddl";
    let flag = Ident::derived(&parts);
    // The rewrite reason's bit for a column's new type.
    let noted = format!(
        "BEGIN\n  IF pg_event_trigger_table_rewrite_reason() & 4 <> 0 THEN\n    \
         PERFORM set_config('{REWRITTEN}', COALESCE(current_setting('{REWRITTEN}', true), '') \
         || ',' || CAST(pg_event_trigger_table_rewrite_oid() AS TEXT) || ',', true);\n  END IF;\nEND;"
    );
    let cases: String = readers
        .iter()
        .map(|(t, flags)| {
            // A flag that cannot run (a cached column dropped by hand)
            // must not stop the application's own schema change.
            let stmts: String = flags
                .iter()
                .map(|f| {
                    format!(
                        "      BEGIN {f};\n      EXCEPTION WHEN OTHERS THEN RAISE WARNING \
                         'cached-fields: % after a rewrite of %', SQLERRM, cf_table::regclass;\n      END;\n"
                    )
                })
                .collect();
            format!(
                "    IF cf_table = to_regclass('{q}') THEN\n{stmts}    END IF;\n",
                q = t.quoted()
            )
        })
        .collect();
    let flagged = format!(
        "DECLARE cf_table oid;\nBEGIN\n  \
         FOR cf_table IN SELECT DISTINCT objid FROM pg_event_trigger_ddl_commands() \
         WHERE classid = CAST('pg_class' AS regclass) AND position(',' || CAST(objid AS TEXT) || ',' \
         IN COALESCE(current_setting('{REWRITTEN}', true), '')) > 0 LOOP\n{cases}  END LOOP;\n  \
         PERFORM set_config('{REWRITTEN}', '', true);\nEND;"
    );
    vec![
        event_trigger(&note, "table_rewrite", &noted),
        event_trigger(
            &flag,
            "ddl_command_end WHEN TAG IN ('ALTER TABLE')",
            &flagged,
        ),
    ]
}
