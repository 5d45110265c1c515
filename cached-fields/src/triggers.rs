//! Triggers, whose SQL each backend's module writes: the bookkeeping triggers (a set flag bumps the
//! version; an insert stamps or wakes), and the dependency triggers that
//! flag a field when a declared input changes.
//!
//! Every dependency trigger flags by the same route as the library:
//! `UPDATE … SET F_recalculation_needed = TRUE`, which the bump trigger
//! turns into a version bump and a notification on commit where the backend has one.

use std::collections::HashMap;

use crate::backend::Backend;
use crate::depends::{Dependency, Hop, Path};
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
    /// Table → the primary key and cached fields (name → value column) of
    /// the model declared on it.
    pub(crate) models: HashMap<String, (Ident, HashMap<String, Ident>)>,
}

impl Catalog {
    /// The catalog with every declared model in `specs`.
    pub(crate) fn with_models(&self, specs: &[TableSpec]) -> Catalog {
        let mut c = self.clone();
        for s in specs {
            let values = s
                .fields
                .iter()
                .map(|f| (f.name.to_string(), f.columns.value.clone()))
                .collect();
            c.models
                .insert(s.table.to_string(), (s.primary_key.clone(), values));
        }
        c
    }

    /// The primary key of `table`: its model's, else `id`.
    pub(crate) fn primary_key(&self, table: &Ident) -> Ident {
        self.models
            .get(table.as_str())
            .map_or_else(Ident::id, |(k, _)| k.clone())
    }

    /// The column a path's last name reads in `table`: a cached field's
    /// value column, else the column of that name.
    pub(crate) fn value_column(&self, table: &Ident, name: &Ident) -> Ident {
        self.models
            .get(table.as_str())
            .and_then(|(_, v)| v.get(name.as_str()))
            .cloned()
            .unwrap_or_else(|| name.clone())
    }
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
    pub(crate) next_attempt: Ident,
}

pub(crate) fn guarded(spec: &TableSpec, f: &FieldSpec) -> Guarded {
    Guarded {
        table: spec.table.clone(),
        field: f.name.clone(),
        needed: f.columns.needed.clone(),
        next_attempt: f.columns.next_attempt.clone(),
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

/// The trigger flagging one field for an update of a column of its own
/// row (none when it reads none).
pub(crate) fn dependencies(backend: Backend, spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject> {
    backend.dialect().dependency_triggers(spec, f)
}

/// The triggers flagging fields for inserts, deletes, updates (moves
/// included: old and new parent) and truncations of the rows their paths
/// pass through: `reaches` is every field's (see [`all_reaches`]), so a
/// backend can guard each written table with one trigger per event for
/// every field reached through it.
pub(crate) fn related(
    backend: Backend,
    reaches: &[Reach<'_>],
    catalog: &Catalog,
) -> Vec<SchemaObject> {
    backend.dialect().related_triggers(reaches, catalog)
}

/// Every table every field of `specs` reaches along its paths, field by
/// field in declaration order.
pub(crate) fn all_reaches<'a>(specs: &'a [TableSpec], catalog: &Catalog) -> Vec<Reach<'a>> {
    specs
        .iter()
        .flat_map(|s| s.fields.iter().flat_map(move |f| reaches(s, f, catalog)))
        .collect()
}

/// The name of a trigger guarding `table` for every field reached through
/// it, on a backend with statement triggers: `cf_{kind}_{table}_{hash}`.
pub(crate) fn table_trigger_name(kind: &str, table: &Ident) -> Ident {
    Ident::derived(&["cf", kind, table.as_str()])
}

pub(crate) fn column_list(cols: &[&Ident]) -> String {
    cols.iter()
        .map(|c| c.quoted())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Columns of the field's own row it depends on: plain columns, the value
/// columns of the cached fields it chains on, and the column a path's
/// first hop joins on out of this row (the foreign key it follows, or the
/// referenced column other rows' foreign keys point at where the hop names
/// one: pointing elsewhere, or being pointed at by others, changes the
/// value). The primary key, which a reverse hop joins on by default, is
/// watched for every field (see [`key_change`]).
fn own_columns<'a>(spec: &'a TableSpec, f: &'a FieldSpec) -> Vec<&'a Ident> {
    let mut cols: Vec<&Ident> = Vec::new();
    for d in &f.depends_on {
        let col = match d {
            Dependency::Column(c) => Some(c),
            Dependency::Path(p) => match p.hops.first() {
                Some(Hop::Forward { foreign_key, .. }) => Some(foreign_key),
                Some(Hop::Reverse {
                    referenced: Some(c),
                    ..
                }) if *c != spec.primary_key => Some(c),
                _ => None,
            },
            Dependency::Field(n) => spec
                .fields
                .iter()
                .find(|o| o.name == *n)
                .map(|o| &o.columns.value),
        };
        if let Some(c) = col
            && !cols.contains(&c)
        {
            cols.push(c);
        }
    }
    cols
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

/// The name of the trigger that flags every field of a row whose primary
/// key an `UPDATE` changed, whatever the fields declare: after a key swap,
/// or an `UPDATE OR REPLACE` moving a row onto another's key, the rows that
/// point at it, and what its calculation reads by key, are others.
/// (PostgreSQL's guard trigger does it instead, naming no column, so the
/// key's type stays alterable.)
pub(crate) fn key_change(spec: &TableSpec) -> Ident {
    Ident::derived(&["cf_key", spec.table.as_str()])
}

/// One join of a path as SQL reads it: the leaving table's column `near`
/// equals the arrival `table`'s column `far`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Link {
    pub(crate) table: Ident,
    pub(crate) near: Ident,
    pub(crate) far: Ident,
    /// A forward hop: `near` is the leaving table's foreign key, `far` the
    /// column of the arrival table it references. Otherwise `far` is the
    /// arrival table's foreign key to the leaving table's `near`.
    pub(crate) forward: bool,
}

/// The joins of `path` from the table `root` (whose primary key is
/// `root_key`); a reverse hop leaves an intermediate table by its primary
/// key as the catalog knows it (`id` for a table no model declares).
pub(crate) fn links(path: &Path, root_key: &Ident, catalog: &Catalog) -> Vec<Link> {
    let mut key = root_key.clone();
    path.hops
        .iter()
        .map(|h| {
            let link = Link {
                table: h.table().clone(),
                near: h.near(&key).clone(),
                far: h.far().clone(),
                forward: matches!(h, Hop::Forward { .. }),
            };
            key = catalog.primary_key(h.table());
            link
        })
        .collect()
}

/// The condition on the rows of the `k`th table of a path of `links` (0:
/// its first table; the table the `k`th join leaves) whose path reaches a
/// row of its last table whose arrival column (the last join's `far`) is
/// one of `values` (a list or a subquery): the joins walked back, each
/// membership written by the backend's `member(column, values)`.
pub(crate) fn reaching(
    links: &[Link],
    k: usize,
    values: &str,
    member: impl Fn(&str, &str) -> String,
) -> String {
    let last = links.len() - 1;
    let mut cond = member(&links[last].near.quoted(), values);
    for l in links[k..last].iter().rev() {
        cond = member(
            &l.near.quoted(),
            &format!(
                "SELECT {} FROM {} WHERE {cond}",
                l.far.quoted(),
                l.table.quoted()
            ),
        );
    }
    cond
}

/// One table a field's paths pass through, as every backend's triggers see
/// it: a write to `table` that changes one of `watched` (its join column
/// back along the path, and the next hop's join column or the path's
/// column) flags the field's rows whose path reaches the written row,
/// found by walking the joins back to the field's table.
#[derive(Debug, Clone)]
pub(crate) struct Reach<'a> {
    /// The table written.
    pub(crate) table: Ident,
    /// Its column the path arrives by.
    pub(crate) far: Ident,
    /// Its columns whose change matters.
    pub(crate) watched: Vec<Ident>,
    /// The joins from the field's table to here.
    links: Vec<Link>,
    /// The next join of each path through here, where it goes on.
    pub(crate) onward: Vec<Link>,
    spec: &'a TableSpec,
    field: &'a FieldSpec,
}

impl Reach<'_> {
    /// The joins from the field's table to this one.
    pub(crate) fn links(&self) -> &[Link] {
        &self.links
    }

    /// The field's rows a trigger built from this reach guards.
    pub(crate) fn guarded(&self) -> Guarded {
        guarded(self.spec, self.field)
    }

    /// The statement that flags every row of the field (for a truncation
    /// of this table).
    pub(crate) fn flag_all(&self) -> String {
        format!(
            "UPDATE {} SET {} = TRUE",
            self.spec.table.quoted(),
            self.field.columns.needed.quoted()
        )
    }

    /// `cf_{kind}_{table}_{field}_{hop table}_{hop column}…_{hash}`: the
    /// kind first, where a long name is not cut.
    pub(crate) fn name(&self, kind: &str) -> Ident {
        let mut parts = vec![
            "cf",
            kind,
            self.spec.table.as_str(),
            self.field.name.as_str(),
        ];
        for l in self.links.iter().rev() {
            parts.push(l.table.as_str());
            parts.push(l.far.as_str());
        }
        Ident::derived(&parts)
    }

    /// `UPDATE {field's table} SET {flag} = TRUE WHERE …`: flags the rows
    /// whose path reaches a row of this table whose arrival column is one
    /// of `values` (a list or a subquery), each join's membership written
    /// by the backend's `member(column, values)`.
    pub(crate) fn flag(&self, values: &str, member: impl Fn(&str, &str) -> String) -> String {
        format!(
            "{} WHERE {}",
            self.flag_all(),
            self.reaching(0, values, member)
        )
    }

    /// The condition on the rows of the `k`th table of the path (0: the
    /// field's own; the table the `k`th join leaves) whose path reaches a
    /// row of this table whose arrival column is one of `values`: the
    /// joins walked back from the written table's neighbour.
    pub(crate) fn reaching(
        &self,
        k: usize,
        values: &str,
        member: impl Fn(&str, &str) -> String,
    ) -> String {
        reaching(&self.links, k, values, member)
    }
}

/// Every table a field's paths pass through (see [`Reach`]), one per
/// distinct way of getting there.
pub(crate) fn reaches<'a>(
    spec: &'a TableSpec,
    f: &'a FieldSpec,
    catalog: &Catalog,
) -> Vec<Reach<'a>> {
    let mut out: Vec<Reach<'a>> = Vec::new();
    for d in &f.depends_on {
        let Dependency::Path(p) = d else { continue };
        let links = links(p, &spec.primary_key, catalog);
        for j in 1..=links.len() {
            let here = &links[j - 1];
            let onward = match links.get(j) {
                Some(next) => next.near.clone(),
                None => catalog.value_column(&here.table, &p.column),
            };
            let prefix = &links[..j];
            let next: Vec<Link> = links.get(j).cloned().into_iter().collect();
            match out.iter_mut().find(|r| r.links == prefix) {
                Some(r) => {
                    if !r.watched.contains(&onward) {
                        r.watched.push(onward);
                    }
                    for l in next {
                        if !r.onward.contains(&l) {
                            r.onward.push(l);
                        }
                    }
                }
                None => {
                    let mut watched = vec![here.far.clone()];
                    if onward != here.far {
                        watched.push(onward);
                    }
                    out.push(Reach {
                        table: here.table.clone(),
                        far: here.far.clone(),
                        watched,
                        links: prefix.to_vec(),
                        onward: next,
                        spec,
                        field: f,
                    });
                }
            }
        }
    }
    out
}

/// `OLD.a {op} NEW.a OR …`: whether a row's watched columns changed, with
/// the backend's null-safe inequality `op`.
pub(crate) fn changed(cols: &[&Ident], op: &str) -> String {
    cols.iter()
        .map(|c| format!("OLD.{q} {op} NEW.{q}", q = c.quoted()))
        .collect::<Vec<_>>()
        .join(" OR ")
}

/// Whether an `UPDATE` stores the field of columns `c` itself (its
/// version moved on by one, its flag cleared): the worker writing a row's
/// fields together, this one computed from the new values of those it
/// chains on. The trigger flagging the field for a change of what it
/// chains on does not fire for such a statement.
pub(crate) fn stores_itself(c: &crate::model::FieldColumns) -> String {
    format!(
        "NEW.{v} = OLD.{v} + 1 AND NOT NEW.{n}",
        v = c.version.quoted(),
        n = c.needed.quoted()
    )
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
