//! Triggers, whose SQL each backend's module writes: the bookkeeping triggers (a set flag bumps the
//! version; an insert stamps or wakes), and the dependency triggers that
//! flag a field when a declared input changes.
//!
//! Every dependency trigger flags by the same route as the library:
//! `UPDATE … SET F_recalculation_needed = TRUE`, which the bump trigger
//! turns into a version bump and a notification on commit where the backend has one.

use std::collections::HashMap;

use crate::backend::Backend;
use crate::depends::Dependency;
use crate::ident::Ident;
use crate::schema::{FieldSpec, SchemaObject, TableSpec};

/// What the database says about a table that the triggers guarding it
/// depend on (where a backend needs it: the keys an upsert that deletes
/// the row it conflicts with, without delete triggers, can conflict on).
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

pub(crate) fn guarded(spec: &TableSpec, f: &FieldSpec) -> Guarded {
    Guarded {
        table: spec.table.clone(),
        field: f.name.clone(),
        needed: f.columns.needed.clone(),
    }
}

/// The statements that remove one of this library's triggers.
pub(crate) fn drop(backend: Backend, table: &Ident, name: &Ident) -> Vec<String> {
    backend.dialect().drop_trigger(table, name)
}

/// Setting the flag true bumps the version (even when it already was true)
/// and stamps `F_stale_since`, and notifies workers where the backend can.
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
    backend.dialect().bump_trigger(spec, f)
}

/// A newly inserted row's values are never trusted (it may be a copy of
/// another row, cached columns and all): every field is flagged, with fresh
/// bookkeeping and a version no earlier incarnation of the key had (the
/// clock in microseconds), so a write-back computed from a deleted row of
/// the same key cannot land on it. Workers are woken where the backend can.
pub(crate) fn insert(backend: Backend, spec: &TableSpec) -> SchemaObject {
    backend.dialect().insert_trigger(spec)
}

/// A write to a cached value or its flag that is not the library's own
/// write-back (which moves the version on by exactly one) cannot leave a
/// wrong value marked fresh: a stale full-row save, as ORMs do, writing
/// back a value (or a cleared flag) loaded before the worker's last
/// recalculation, flags the row again instead.
///
pub(crate) fn guards(backend: Backend, spec: &TableSpec) -> Vec<SchemaObject> {
    backend.dialect().guard_triggers(spec)
}

/// The dependency triggers of one field: an update of a column of its own
/// row, and inserts, deletes, updates (moves included: old and new parent)
/// and truncations of related rows.
pub(crate) fn dependencies(
    backend: Backend,
    spec: &TableSpec,
    f: &FieldSpec,
    catalog: &Catalog,
) -> Vec<SchemaObject> {
    backend.dialect().dependency_triggers(spec, f, catalog)
}

pub(crate) fn column_list(cols: &[&Ident]) -> String {
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
            // Pointing at another parent row changes the value too.
            Dependency::Parent { foreign_key, .. } => Some(foreign_key),
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

/// A field's dependency on columns of its own row: the trigger's name and
/// the columns it watches (plain columns, and the value columns of the
/// cached fields it chains on); `None` when it has none.
pub(crate) fn own_dependency<'a>(
    spec: &'a TableSpec,
    f: &'a FieldSpec,
) -> Option<(Ident, Vec<&'a Ident>)> {
    let own = own_columns(spec, f);
    (!own.is_empty()).then(|| {
        (
            Ident::derived(&["cf_dep", spec.table.as_str(), f.name.as_str()]),
            own,
        )
    })
}

/// A field's dependency on one related table, as every backend's triggers
/// see it: the child table, its foreign key, and the columns an update of
/// which flags the parent (the foreign key among them: a move).
pub(crate) struct Related<'a> {
    pub(crate) child: &'a Ident,
    pub(crate) fk: &'a Ident,
    pub(crate) watched: Vec<&'a Ident>,
    table: &'a Ident,
    field: &'a Ident,
}

impl Related<'_> {
    /// `cf_{kind}_{table}_{field}_{child}_{fk}_{hash}`: the kind first,
    /// where a long name is not cut.
    pub(crate) fn name(&self, kind: &str) -> Ident {
        Ident::derived(&[
            "cf",
            kind,
            self.table.as_str(),
            self.field.as_str(),
            self.child.as_str(),
            self.fk.as_str(),
        ])
    }
}

/// The related tables a field depends on (see [`Related`]).
pub(crate) fn related<'a>(spec: &'a TableSpec, f: &'a FieldSpec) -> Vec<Related<'a>> {
    relations(f)
        .into_iter()
        .map(|(child, fk, cols)| {
            let mut watched = cols;
            if !watched.contains(&fk) {
                watched.push(fk);
            }
            Related {
                child,
                fk,
                watched,
                table: &spec.table,
                field: &f.name,
            }
        })
        .collect()
}

/// `OLD.a {op} NEW.a OR …`: whether a row's watched columns changed, with
/// the backend's null-safe inequality `op`.
pub(crate) fn changed(cols: &[&Ident], op: &str) -> String {
    cols.iter()
        .map(|c| format!("OLD.{q} {op} NEW.{q}", q = c.quoted()))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// A field's dependency on columns of the row its foreign key points at,
/// as every backend's triggers see it: an update of those columns (or of
/// the referenced key) in the parent table flags the rows pointing at it.
pub(crate) struct Parent<'a> {
    pub(crate) table: &'a Ident,
    pub(crate) referenced: &'a Ident,
    pub(crate) foreign_key: &'a Ident,
    /// The parent's columns whose changes matter, the referenced key among them.
    pub(crate) watched: Vec<&'a Ident>,
    own_table: &'a Ident,
    field: &'a Ident,
}

impl Parent<'_> {
    /// `cf_par_{table}_{field}_{parent}_{fk}_{hash}`.
    pub(crate) fn name(&self) -> Ident {
        Ident::derived(&[
            "cf_par",
            self.own_table.as_str(),
            self.field.as_str(),
            self.table.as_str(),
            self.foreign_key.as_str(),
        ])
    }
}

/// The parent tables a field depends on, one per (foreign key, table).
pub(crate) fn parents<'a>(spec: &'a TableSpec, f: &'a FieldSpec) -> Vec<Parent<'a>> {
    let mut out: Vec<Parent<'_>> = Vec::new();
    for d in &f.depends_on {
        if let Dependency::Parent {
            foreign_key,
            table,
            referenced,
            column,
        } = d
        {
            match out
                .iter_mut()
                .find(|p| p.table == table && p.foreign_key == foreign_key)
            {
                Some(p) if !p.watched.contains(&column) => p.watched.push(column),
                Some(_) => {}
                None => out.push(Parent {
                    table,
                    referenced,
                    foreign_key,
                    watched: if column == referenced {
                        vec![column]
                    } else {
                        vec![column, referenced]
                    },
                    own_table: &spec.table,
                    field: &f.name,
                }),
            }
        }
    }
    out
}

/// The head of a trigger that fires when an `UPDATE` changes one of `cols`
/// of `table`: `{timing} UPDATE OF cols ON table FOR EACH ROW WHEN (changed)`,
/// with the backend's null-safe inequality `op`.
pub(crate) fn on_change(timing: &str, table: &Ident, cols: &[&Ident], op: &str) -> String {
    format!(
        "{timing} UPDATE OF {} ON {} FOR EACH ROW WHEN ({})",
        column_list(cols),
        table.quoted(),
        changed(cols, op)
    )
}
