//! Schema per backend: the columns, indexes and bookkeeping triggers each
//! cached field needs; `migrate` installs them, `check` compares.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::db::{Backend, Ctx, Db};
use crate::depends::Dependency;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::{FieldColumns, Model};
use crate::triggers::{self, Catalog, Guarded, TableKeys};
use crate::value::{SqlType, Value};

/// The notification channel the triggers signal on, where the backend
/// has notifications.
pub const CHANNEL: &str = "cached_fields";

/// What a [`Problem`] names as the table of an object of the whole
/// database (an event trigger).
pub const DATABASE: &str = "database";

/// The schema-relevant part of a cached field.
#[derive(Debug, Clone)]
pub struct FieldSpec {
    /// The field's name.
    pub name: Ident,
    /// The value's type.
    pub sql_type: SqlType,
    /// Its columns.
    pub columns: FieldColumns,
    /// What it depends on.
    pub depends_on: Vec<Dependency>,
    /// Who recalculates it when flagged, if declared.
    pub mode: Option<crate::Recalculate>,
}

/// The schema-relevant part of a model: its table and its fields.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table.
    pub table: Ident,
    /// The primary-key column.
    pub primary_key: Ident,
    /// How the primary key is bound and read.
    pub key_type: SqlType,
    /// The cached fields, in declaration order.
    pub fields: Vec<FieldSpec>,
    /// Field indexes in dependency order.
    pub order: Vec<usize>,
}

impl TableSpec {
    /// The spec of a declared model.
    pub fn of<M>(model: &Model<M>) -> Self {
        TableSpec {
            table: model.table().clone(),
            primary_key: model.primary_key().clone(),
            key_type: model.key_type(),
            fields: model
                .fields()
                .iter()
                .map(|f| FieldSpec {
                    name: f.name().clone(),
                    sql_type: f.sql_type(),
                    columns: f.columns().clone(),
                    depends_on: f.depends_on().to_vec(),
                    mode: f.mode(),
                })
                .collect(),
            order: model.order().to_vec(),
        }
    }

    /// The tables whose triggers serve this model: its own and related ones.
    fn trigger_tables(&self) -> Vec<&Ident> {
        let mut v = vec![&self.table];
        for f in &self.fields {
            for d in &f.depends_on {
                if let Dependency::Path(p) = d {
                    for h in &p.hops {
                        if !v.contains(&h.table()) {
                            v.push(h.table());
                        }
                    }
                }
            }
        }
        v
    }
}

/// The kind of a schema object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A column of the model's table.
    Column,
    /// An index.
    Index,
    /// A trigger (and, where the backend needs one, its function).
    Trigger,
    /// An event trigger of the whole database (PostgreSQL: schema changes
    /// that rewrite a table).
    EventTrigger,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Column => "column",
            ObjectKind::Index => "index",
            ObjectKind::Trigger => "trigger",
            ObjectKind::EventTrigger => "event trigger",
        })
    }
}

/// One object the declarations need, with the SQL that creates it.
#[derive(Debug, Clone)]
pub struct SchemaObject {
    /// What it is.
    pub kind: ObjectKind,
    /// The table it belongs to.
    pub table: Ident,
    /// Its name.
    pub name: Ident,
    /// Statements that create or replace it.
    pub sql: Vec<String>,
    /// The definition text to compare with the database's (triggers).
    pub(crate) definition: Option<String>,
    /// A column's type.
    pub(crate) column: Option<ColumnDef>,
    /// The rows to flag when `migrate` repairs it on a table with rows.
    pub(crate) guards: Vec<Guarded>,
}

/// A column's declared type: its SQL type, and the rest of its definition.
#[derive(Debug, Clone)]
pub(crate) struct ColumnDef {
    ty: &'static str,
    rest: &'static str,
}

/// What `check` found wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Problem {
    /// What it is.
    pub kind: ObjectKind,
    /// Its table.
    pub table: String,
    /// Its name.
    pub name: String,
    /// What is wrong with it.
    pub state: State,
    /// How it differs, in words (empty when the state says it all).
    pub detail: String,
}

/// How an object differs from the declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum State {
    /// Declared, not in the database.
    Missing,
    /// In the database, but not as declared (a trigger's body, events,
    /// columns, timing or `WHEN` changed; or not installed by this library).
    Outdated,
    /// A column whose type is not the declared one.
    WrongType,
    /// A trigger that is not enabled to fire always (disabled, or enabled
    /// only for origin or replica sessions).
    Disabled,
    /// A trigger or index of this library that no declaration asks for any more.
    Obsolete,
    /// A warning, not an error: writes of a kind this database does not
    /// let the library see (the detail says which, and what to do).
    Unwatched,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Missing => "missing",
            State::Outdated => "outdated",
            State::WrongType => "wrong type of",
            State::Disabled => "disabled",
            State::Obsolete => "obsolete",
            State::Unwatched => "warning: not installed:",
        };
        if self.table == DATABASE {
            write!(f, "{state} {} {}", self.kind, self.name)?;
        } else {
            write!(f, "{state} {} {}.{}", self.kind, self.table, self.name)?;
        }
        if !self.detail.is_empty() {
            write!(f, ": {}", self.detail)?;
        }
        Ok(())
    }
}

impl Problem {
    /// Whether this is a warning (what the database cannot let the library
    /// see), which `migrate` cannot repair and `check` does not fail on.
    pub fn is_warning(&self) -> bool {
        self.state == State::Unwatched
    }
}

/// Rows that `migrate` flagged because a trigger guarding them was missing
/// or wrong (writes made meanwhile were not caught), or their column was
/// repaired.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Flagged {
    /// The table.
    pub table: String,
    /// The cached field.
    pub field: String,
    /// Rows flagged.
    pub rows: u64,
}

impl fmt::Display for Flagged {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "flagged {} row(s) of {}.{} for recalculation",
            self.rows, self.table, self.field
        )
    }
}

/// What `migrate` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Migration {
    /// Every problem it found and repaired.
    pub changes: Vec<Problem>,
    /// Rows it flagged because of a repair.
    pub flagged: Vec<Flagged>,
    /// What it could not install, and why (see [`Problem::is_warning`]).
    pub warnings: Vec<Problem>,
}

impl Migration {
    /// Whether the schema was already as declared.
    pub fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }
}

fn ts(backend: Backend) -> &'static str {
    SqlType::Timestamp.column_type(backend)
}

fn columns(backend: Backend, ty: SqlType, c: &FieldColumns) -> Vec<(Ident, ColumnDef)> {
    let def = |ty, rest| ColumnDef { ty, rest };
    let mut v = vec![
        (c.value.clone(), def(ty.column_type(backend), "")),
        (c.needed.clone(), def("BOOLEAN", " NOT NULL DEFAULT TRUE")),
    ];
    if let Some(e) = &c.expires {
        v.push((e.clone(), def(ts(backend), "")));
    }
    let (since_ty, since_rest) = backend.dialect().stale_since_column();
    let since = def(since_ty, since_rest);
    v.extend([
        (c.version.clone(), def("BIGINT", " NOT NULL DEFAULT 0")),
        (c.stale_since.clone(), since),
        (c.next_attempt.clone(), def(ts(backend), "")),
        (c.attempts.clone(), def("BIGINT", " NOT NULL DEFAULT 0")),
        (c.last_error.clone(), def("TEXT", "")),
    ]);
    v
}

/// Whether a column the database reports as `actual` has the declared type
/// `declared` (see [`Dialect::same_type`](crate::backend::Dialect::same_type)).
fn same_type(backend: Backend, declared: &str, actual: &str) -> bool {
    backend.dialect().same_type(declared, actual)
}

/// Every object the declarations need on `backend`, in creation order:
/// every column of every model first (a trigger may read another model's
/// cached column), then indexes, then triggers. Without a database to ask,
/// triggers that catch an upsert replacing a row (where a backend needs
/// them) cover conflicts on the rowid only; `migrate`
/// adds every unique key it finds.
pub fn plan(backend: Backend, specs: &[TableSpec]) -> Vec<SchemaObject> {
    plan_with(backend, specs, &Catalog::default())
}

fn plan_with(backend: Backend, specs: &[TableSpec], catalog: &Catalog) -> Vec<SchemaObject> {
    let catalog = &catalog.with_models(specs);
    let mut cols = Vec::new();
    let mut indexes = Vec::new();
    let mut trigs = Vec::new();
    for spec in specs {
        let t = spec.table.quoted();
        for f in &spec.fields {
            let c = &f.columns;
            let guard = crate::triggers::guarded(spec, f);
            for (col, def) in columns(backend, f.sql_type, c) {
                cols.push(SchemaObject {
                    kind: ObjectKind::Column,
                    table: spec.table.clone(),
                    sql: vec![format!(
                        "ALTER TABLE {t} ADD COLUMN {} {}{}",
                        col.quoted(),
                        def.ty,
                        def.rest
                    )],
                    name: col,
                    definition: None,
                    column: Some(def),
                    guards: vec![guard.clone()],
                });
            }
            // Flagged rows by next attempt, then flag time and key: the
            // claim walks it in order (the rows not backing off from where
            // its last batch ended) and stops after a batch; the worker's
            // "next due" is its first entry past the NULLs.
            let needed_idx =
                Ident::derived(&["cf", spec.table.as_str(), c.needed.as_str(), "queue"]);
            indexes.push(index(
                backend,
                &spec.table,
                needed_idx,
                &format!(
                    "{}, {}, {}",
                    backend.dialect().nulls_first(&c.next_attempt.quoted()),
                    c.stale_since.quoted(),
                    spec.primary_key.quoted()
                ),
                &c.needed.quoted(),
            ));
            if let Some(e) = &c.expires {
                let idx = Ident::derived(&["cf", spec.table.as_str(), e.as_str()]);
                let (expr, _) = backend.dialect().indexed_expiry(&e.quoted());
                indexes.push(index(
                    backend,
                    &spec.table,
                    idx,
                    &expr,
                    &format!("{} IS NOT NULL", e.quoted()),
                ));
            }
            trigs.push(triggers::bump(backend, spec, f));
            trigs.extend(triggers::dependencies(backend, spec, f));
        }
        if !spec.fields.is_empty() {
            trigs.extend(triggers::guards(backend, spec));
            trigs.push(triggers::insert(backend, spec));
        }
    }
    trigs.extend(triggers::related(
        backend,
        &triggers::all_reaches(specs, catalog),
        catalog,
    ));
    trigs.extend(backend.dialect().ddl_triggers(specs));
    cols.extend(indexes);
    cols.extend(trigs);
    cols
}

/// A partial index of this library's, marked as its own.
fn index(backend: Backend, table: &Ident, name: Ident, expr: &str, cond: &str) -> SchemaObject {
    let (n, t) = (name.quoted(), table.quoted());
    let sql = backend.dialect().create_index(&n, &t, expr, cond);
    SchemaObject {
        kind: ObjectKind::Index,
        table: table.clone(),
        name,
        sql,
        definition: None,
        column: None,
        guards: Vec::new(),
    }
}

/// The SQL of [`plan`] as one script, for users who keep their own
/// migration files. Columns are added unconditionally: apply it once.
pub fn script(backend: Backend, specs: &[TableSpec]) -> String {
    let mut s = String::new();
    for obj in plan(backend, specs) {
        for stmt in obj.sql {
            s.push_str(&stmt);
            s.push_str(";\n");
        }
    }
    s
}

/// One trigger as the database has it.
#[derive(Debug)]
pub(crate) struct TriggerInfo {
    pub(crate) table: String,
    /// Normalized definition (what the backend compares: the statement
    /// that created it, or its function's source).
    pub(crate) definition: String,
    /// Carries this library's marker.
    pub(crate) ours: bool,
    /// Fires always (even on a replica).
    pub(crate) always: bool,
    /// Its events, columns, timing or `WHEN` differ from when it was installed.
    pub(crate) changed_by_hand: bool,
}

/// What exists in the database for the planned tables.
#[derive(Debug, Default)]
struct Existing {
    /// Table → column → type as the database reports it.
    columns: HashMap<String, HashMap<String, String>>,
    /// Index name → (table, carries this library's marker).
    indexes: HashMap<String, (String, bool)>,
    triggers: HashMap<String, TriggerInfo>,
    /// The database's event triggers, by name.
    event_triggers: HashMap<String, TriggerInfo>,
    /// Whether the connection may create event triggers.
    superuser: bool,
    /// Table → its foreign keys as (column, referenced table, referenced column or "").
    foreign_keys: HashMap<String, Vec<(String, String, String)>>,
    /// The keys an upsert can conflict on, where the backend asks.
    catalog: Catalog,
}

pub(crate) fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn texts(rows: Vec<Vec<Value>>) -> Vec<Vec<String>> {
    rows.into_iter()
        .map(|r| {
            r.into_iter()
                .map(|v| match v {
                    Value::Text(s) => s,
                    _ => String::new(),
                })
                .collect()
        })
        .collect()
}

async fn table_columns(ctx: &mut Ctx<'_>, table: &Ident) -> Result<Vec<String>> {
    Ok(column_types(ctx, table).await?.into_keys().collect())
}

async fn column_types(ctx: &mut Ctx<'_>, table: &Ident) -> Result<HashMap<String, String>> {
    let sql = ctx.backend().dialect().introspect().columns;
    let rows = ctx
        .fetch_values(
            sql.to_owned(),
            &[Value::Text(table.to_string())],
            &[SqlType::Text, SqlType::Text],
        )
        .await?;
    Ok(texts(rows)
        .into_iter()
        .filter_map(|r| match &r[..] {
            [n, t] => Some((n.clone(), t.clone())),
            _ => None,
        })
        .collect())
}

/// Every table a spec names: its own, and those its dependencies read.
fn tables(specs: &[TableSpec]) -> Vec<&Ident> {
    let mut tables: Vec<&Ident> = Vec::new();
    for spec in specs {
        for t in spec.trigger_tables() {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
    }
    tables
}

async fn inspect(ctx: &mut Ctx<'_>, specs: &[TableSpec]) -> Result<Existing> {
    let backend = ctx.backend();
    let mut ex = Existing::default();
    let dialect = backend.dialect();
    let queries = dialect.introspect();
    for r in texts(
        ctx.fetch_values(queries.indexes.to_owned(), &[], &[SqlType::Text; 3])
            .await?,
    ) {
        if let [name, table, extra] = &r[..] {
            ex.indexes
                .insert(name.clone(), (table.clone(), dialect.index_is_ours(extra)));
        }
    }
    let trigger_types = vec![SqlType::Text; queries.trigger_columns];
    for r in texts(
        ctx.fetch_values(queries.triggers.to_owned(), &[], &trigger_types)
            .await?,
    ) {
        if let Some((name, info)) = dialect.trigger_info(&r) {
            ex.triggers.insert(name, info);
        }
    }
    if let Some(q) = queries.event_triggers {
        for r in texts(
            ctx.fetch_values(q.to_owned(), &[], &[SqlType::Text; 4])
                .await?,
        ) {
            if let [name, src, enabled, comment] = &r[..] {
                ex.event_triggers.insert(
                    name.clone(),
                    TriggerInfo {
                        table: DATABASE.to_owned(),
                        definition: normalize(src),
                        ours: dialect.is_ours(src),
                        always: enabled == "A",
                        changed_by_hand: comment.is_empty(),
                    },
                );
            }
        }
    }
    if let Some(q) = queries.superuser {
        let rows = ctx.fetch_values(q.to_owned(), &[], &[SqlType::Int]).await?;
        ex.superuser = matches!(rows.first().and_then(|r| r.first()), Some(Value::Int(1)));
    }
    for table in tables(specs) {
        let cols = column_types(ctx, table).await?;
        ex.columns.insert(table.to_string(), cols);
        let arg = [Value::Text(table.to_string())];
        let fks = texts(
            ctx.fetch_values(queries.foreign_keys.to_owned(), &arg, &[SqlType::Text; 3])
                .await?,
        );
        ex.foreign_keys.insert(
            table.to_string(),
            fks.into_iter()
                .filter_map(|r| match &r[..] {
                    [c, t, to] => Some((c.clone(), t.clone(), to.clone())),
                    _ => None,
                })
                .collect(),
        );
        if let Some([kind, unique]) = queries.keys {
            let kind = ctx
                .fetch_values(kind.to_owned(), &arg, &[SqlType::Int])
                .await?;
            let without_rowid = matches!(kind.first().and_then(|r| r.first()), Some(Value::Int(1)));
            let unique = texts(
                ctx.fetch_values(unique.to_owned(), &arg, &[SqlType::Text; 3])
                    .await?,
            );
            let keys = table_keys(table, without_rowid, unique);
            ex.catalog.keys.insert(table.to_string(), keys);
        }
    }
    Ok(ex)
}

/// A table's keys from its unique indexes (`index, origin, column` rows,
/// the primary key's first): the rowid unless `without_rowid`, and each
/// unique index whose columns are all plain identifiers.
fn table_keys(table: &Ident, without_rowid: bool, rows: Vec<Vec<String>>) -> TableKeys {
    let mut unique: Vec<(String, Vec<Ident>)> = Vec::new();
    let mut unusable: Vec<String> = Vec::new();
    for r in rows {
        let [index, _, column] = &r[..] else { continue };
        let Ok(col) = Ident::new(column) else {
            unusable.push(index.clone());
            continue;
        };
        match unique.iter_mut().find(|(i, _)| i == index) {
            Some((_, cols)) => cols.push(col),
            None => unique.push((index.clone(), vec![col])),
        }
    }
    for index in &unusable {
        tracing::warn!(%table, %index, "unique index on a column that is not a plain identifier: \
            an upsert conflicting on it is not caught");
    }
    TableKeys {
        rowid: !without_rowid,
        unique: unique
            .into_iter()
            .filter(|(i, _)| !unusable.contains(i))
            .map(|(_, c)| c)
            .collect(),
    }
}

/// Rejects tables that do not exist, and dependencies naming a table,
/// column or foreign key that does not exist (or that no declaration adds:
/// another model's cached column counts, since `migrate` adds it first).
fn validate(specs: &[TableSpec], ex: &Existing, plan: &[SchemaObject]) -> Result<()> {
    let catalog = Catalog::default().with_models(specs);
    if let Some((table, cycle)) = crate::graph::cycle(specs) {
        return Err(Error::declaration(
            &table,
            format!("dependency cycle between cached fields: {cycle}"),
        ));
    }
    let has = |t: &Ident| ex.columns.get(t.as_str()).filter(|c| !c.is_empty());
    let exists = |t: &Ident, c: &Ident| {
        has(t).is_some_and(|cols| cols.contains_key(c.as_str()))
            || plan
                .iter()
                .any(|o| o.kind == ObjectKind::Column && o.table == *t && o.name == *c)
    };
    for spec in specs {
        if has(&spec.table).is_none() {
            return Err(Error::declaration(
                spec.table.as_str(),
                format!(
                    "table {} does not exist: create it (with its primary key {}) before migrating",
                    spec.table, spec.primary_key
                ),
            ));
        }
        for f in &spec.fields {
            let err = |d: &Dependency, reason: String| Error::InvalidDependency {
                field: format!("{}.{}", spec.table, f.name),
                path: d.to_string(),
                reason,
            };
            for d in &f.depends_on {
                match d {
                    Dependency::Column(c) if !exists(&spec.table, c) => {
                        return Err(err(d, format!("table {} has no column {c}", spec.table)));
                    }
                    Dependency::Path(p) => validate_path(spec, p, ex, &catalog, &exists)
                        .map_err(|reason| err(d, reason))?,
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// Checks each hop of a path: both tables and both join columns exist, and
/// a foreign key backs the join in the hop's direction; then the path's
/// column. The reason names the hop that is wrong.
fn validate_path(
    spec: &TableSpec,
    path: &crate::depends::Path,
    ex: &Existing,
    catalog: &Catalog,
    exists: &dyn Fn(&Ident, &Ident) -> bool,
) -> std::result::Result<(), String> {
    let references = |child: &Ident, col: &Ident, parent: &Ident, to_col: &Ident| {
        ex.foreign_keys.get(child.as_str()).is_some_and(|fks| {
            fks.iter().any(|(c, t, to)| {
                c == col.as_str()
                    && t == parent.as_str()
                    && (to.is_empty() || to == to_col.as_str())
            })
        })
    };
    // A hop naming no referenced column joins on the key (`id`, or the
    // model's): where the foreign key references another column, the
    // message says which, and how to write the hop.
    let referenced_instead = |child: &Ident, col: &Ident, parent: &Ident, to_col: &Ident| {
        ex.foreign_keys.get(child.as_str()).and_then(|fks| {
            fks.iter()
                .find(|(c, t, to)| {
                    c == col.as_str()
                        && t == parent.as_str()
                        && !to.is_empty()
                        && to != to_col.as_str()
                })
                .map(|(_, _, to)| to.clone())
        })
    };
    let links = triggers::links(path, &spec.primary_key, catalog);
    let mut from = &spec.table;
    for (i, (hop, l)) in path.hops.iter().zip(&links).enumerate() {
        let place = format!("hop {} ({hop})", i + 1);
        let (t, near, far) = (&l.table, &l.near, &l.far);
        let hint = match hop {
            crate::depends::Hop::Forward { .. } => referenced_instead(from, near, t, far)
                .map(|to| format!(" (it references {t}({to}): write {near}->{t}({to}))")),
            crate::depends::Hop::Reverse { .. } => referenced_instead(t, far, from, near)
                .map(|to| format!(" (it references {from}({to}): write {t}({far}->{to}))")),
        }
        .unwrap_or_default();
        if ex
            .columns
            .get(l.table.as_str())
            .is_none_or(HashMap::is_empty)
        {
            return Err(format!("{place}: table {} does not exist", l.table));
        }
        for (t, c) in [(from, &l.near), (&l.table, &l.far)] {
            if !exists(t, c) {
                return Err(format!("{place}: table {t} has no column {c}{hint}"));
            }
        }
        match hop {
            crate::depends::Hop::Reverse { .. } => {
                if !references(&l.table, &l.far, from, &l.near) {
                    return Err(format!(
                        "{place}: {}.{} is not a foreign key referencing {from}({}){hint}",
                        l.table, l.far, l.near
                    ));
                }
            }
            _ => {
                if !references(from, &l.near, &l.table, &l.far) {
                    return Err(format!(
                        "{place}: {from}.{} is not a foreign key referencing {}({}){hint}",
                        l.near, l.table, l.far
                    ));
                }
            }
        }
        from = &l.table;
    }
    let column = catalog.value_column(from, &path.column);
    if !exists(from, &column) {
        return Err(format!(
            "the end of the path: table {from} has no column {}",
            path.column
        ));
    }
    Ok(())
}

/// What differs between the database and the declarations.
fn diff(backend: Backend, plan: &[SchemaObject], ex: &Existing) -> Vec<Problem> {
    let problem = |o: &SchemaObject, state, detail: String| Problem {
        kind: o.kind,
        table: o.table.to_string(),
        name: o.name.to_string(),
        state,
        detail,
    };
    let mut out: Vec<Problem> =
        plan.iter()
            .filter_map(|o| match o.kind {
                ObjectKind::Column => {
                    let actual = ex
                        .columns
                        .get(o.table.as_str())
                        .and_then(|c| c.get(o.name.as_str()));
                    match (actual, &o.column) {
                        (None, _) => Some(problem(o, State::Missing, String::new())),
                        (Some(actual), Some(def)) if !same_type(backend, def.ty, actual) => {
                            Some(problem(
                                o,
                                State::WrongType,
                                format!("has type {actual}, declared {}", def.ty),
                            ))
                        }
                        _ => None,
                    }
                }
                ObjectKind::Index => (!ex.indexes.contains_key(o.name.as_str()))
                    .then(|| problem(o, State::Missing, String::new())),
                ObjectKind::Trigger | ObjectKind::EventTrigger => {
                    let found = if o.kind == ObjectKind::Trigger {
                        &ex.triggers
                    } else {
                        &ex.event_triggers
                    };
                    let wrong = match found.get(o.name.as_str()) {
                    None => Some((State::Missing, String::new())),
                    Some(t) if !t.ours => {
                        Some((State::Outdated, "not installed by cached-fields".to_owned()))
                    }
                    Some(t)
                        if o.definition.as_deref().map(normalize).as_ref()
                            != Some(&t.definition) =>
                    {
                        Some((
                            State::Outdated,
                            "its definition differs from the declarations".to_owned(),
                        ))
                    }
                    Some(t) if t.changed_by_hand => Some((
                        State::Outdated,
                        "its events, columns, timing or WHEN were changed by hand".to_owned(),
                    )),
                    Some(t) if !t.always => Some((
                        State::Disabled,
                        "it does not fire for every session (ALTER TABLE … DISABLE TRIGGER, or \
                         ENABLE without ALWAYS)"
                            .to_owned(),
                    )),
                    Some(_) => None,
                };
                    match wrong {
                    // Only a superuser may create or alter an event trigger.
                    Some(_) if o.kind == ObjectKind::EventTrigger && !ex.superuser => Some(problem(
                        o,
                        State::Unwatched,
                        "a schema change that rewrites a column (ALTER TABLE … ALTER COLUMN … \
                         TYPE … USING …) fires no trigger, and only a superuser may create the \
                         event trigger that sees it: run `migrate` as one, or `verify` after such \
                         a change"
                            .to_owned(),
                    )),
                    Some((state, detail)) => Some(problem(o, state, detail)),
                    None => None,
                }
                }
            })
            .collect();
    let planned: HashSet<&str> = plan.iter().map(|o| o.name.as_str()).collect();
    let mut obsolete: Vec<Problem> = ex
        .triggers
        .iter()
        .filter(|(name, t)| t.ours && !planned.contains(name.as_str()))
        .map(|(name, t)| (ObjectKind::Trigger, name, &t.table))
        .chain(
            ex.event_triggers
                .iter()
                .filter(|(name, t)| t.ours && !planned.contains(name.as_str()))
                .map(|(name, t)| (ObjectKind::EventTrigger, name, &t.table)),
        )
        .chain(
            ex.indexes
                .iter()
                .filter(|(name, (_, ours))| *ours && !planned.contains(name.as_str()))
                .map(|(name, (table, _))| (ObjectKind::Index, name, table)),
        )
        .map(|(kind, name, table)| {
            // Only a superuser may drop an event trigger.
            let (state, detail) = if kind == ObjectKind::EventTrigger && !ex.superuser {
                (
                    State::Unwatched,
                    "obsolete, left in place: only a superuser may drop it".to_owned(),
                )
            } else {
                (State::Obsolete, String::new())
            };
            Problem {
                kind,
                table: table.clone(),
                name: name.clone(),
                state,
                detail,
            }
        })
        .collect();
    obsolete.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(obsolete);
    out
}

/// Lists every missing, outdated, wrongly typed, disabled or obsolete
/// column, index and trigger. A dependency on a table, column or foreign
/// key that does not exist is an error naming it.
pub async fn check(db: &Db, specs: &[TableSpec]) -> Result<Vec<Problem>> {
    let mut ctx = Ctx::from(db);
    let (problems, _) = examine(&mut ctx, specs).await?;
    Ok(problems)
}

/// Inspects, validates and compares; returns the problems and the plan.
async fn examine(
    ctx: &mut Ctx<'_>,
    specs: &[TableSpec],
) -> Result<(Vec<Problem>, Vec<SchemaObject>)> {
    let backend = ctx.backend();
    let ex = inspect(ctx, specs).await?;
    let plan = plan_with(backend, specs, &ex.catalog);
    validate(specs, &ex, &plan)?;
    Ok((diff(backend, &plan, &ex), plan))
}

/// Adds what is missing, repairs what is outdated, wrongly typed or
/// disabled, drops this library's obsolete triggers and indexes (never an
/// object without its marker), in one transaction taken before looking, so
/// that concurrent `migrate`s wait for each other. A trigger repaired on a
/// table with rows, or a column re-created with its type, flags the rows
/// it guards: writes made while it was missing or wrong were not caught.
/// Running it again changes nothing.
///
/// Every statement takes its locks within a short wait (PostgreSQL's
/// `lock_timeout`, SQLite's busy timeout): behind a transaction holding
/// a table it alters (a worker's batch, an application's transaction), the
/// migration gives up, lets the writes queued behind it through, and
/// tries again, waiting twice as long each time (at most 5 s); after a few
/// seconds it says what it waits on (the blocking process and its query).
pub async fn migrate(db: &Db, specs: &[TableSpec]) -> Result<Migration> {
    let started = std::time::Instant::now();
    let mut wait = std::time::Duration::from_millis(50);
    let mut said = started;
    loop {
        match migrate_once(db, specs).await {
            Err(e) if e.is_lock_timeout() => {
                if said.elapsed() >= std::time::Duration::from_secs(3) {
                    said = std::time::Instant::now();
                    let holders = lock_holders(db, specs).await.unwrap_or_default();
                    tracing::warn!(
                        waited_s = started.elapsed().as_secs(),
                        holders = %if holders.is_empty() { "unknown".to_owned() } else { holders.join("; ") },
                        "migrate waits for locks held by others; trying again"
                    );
                }
                tokio::time::sleep(wait).await;
                wait = (wait * 2).min(std::time::Duration::from_secs(5));
            }
            r => return r,
        }
    }
}

/// The processes holding locks on the tables `specs` name (or the
/// migration lock), each as `pid N (state): query`, where the backend can
/// say.
async fn lock_holders(db: &Db, specs: &[TableSpec]) -> Result<Vec<String>> {
    let Some(sql) = db.backend().dialect().lock_holders(&tables(specs)) else {
        return Ok(Vec::new());
    };
    let rows = Ctx::from(db)
        .fetch_values(sql, &[], &[SqlType::Int, SqlType::Text, SqlType::Text])
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match &r[..] {
            [Value::Int(pid), Value::Text(state), Value::Text(query)] => {
                Some(format!("pid {pid} ({state}): {query}"))
            }
            _ => None,
        })
        .collect())
}

async fn migrate_once(db: &Db, specs: &[TableSpec]) -> Result<Migration> {
    let backend = db.backend();
    let mut tx = db.begin_exclusive().await?;
    let mut ctx = tx.ctx();
    let (mut problems, plan) = examine(&mut ctx, specs).await?;
    let warnings: Vec<Problem> = problems
        .iter()
        .filter(|p| p.is_warning())
        .cloned()
        .collect();
    problems.retain(|p| !p.is_warning());
    if problems.is_empty() {
        drop(ctx);
        tx.commit().await?;
        return Ok(Migration {
            warnings,
            ..Migration::default()
        });
    }
    let key = |table: &str, name: &str| (table.to_owned(), name.to_owned());
    let todo: HashSet<(String, String)> = problems.iter().map(|p| key(&p.table, &p.name)).collect();
    let retyped: Vec<&SchemaObject> = plan
        .iter()
        .filter(|o| {
            problems.iter().any(|p| {
                p.state == State::WrongType
                    && p.table == o.table.as_str()
                    && p.name == o.name.as_str()
            })
        })
        .collect();
    // A column is re-created empty when its type is wrong; what reads it
    // (triggers, indexes) goes first and comes back after.
    let rebuild = !retyped.is_empty();
    let mut statements: Vec<String> = Vec::new();
    for p in problems.iter().filter(|p| p.state == State::Obsolete) {
        let (table, name) = (Ident::new(&p.table)?, Ident::new(&p.name)?);
        statements.extend(match p.kind {
            ObjectKind::Index => vec![format!("DROP INDEX IF EXISTS {}", name.quoted())],
            ObjectKind::EventTrigger => vec![
                format!("DROP EVENT TRIGGER IF EXISTS {}", name.quoted()),
                format!("DROP FUNCTION IF EXISTS {}()", name.quoted()),
            ],
            _ => triggers::drop(backend, &table, &name),
        });
    }
    if rebuild {
        for o in &plan {
            match o.kind {
                ObjectKind::Trigger => {
                    statements.push(backend.dialect().drop_trigger_only(&o.table, &o.name));
                }
                ObjectKind::Index => {
                    statements.push(format!("DROP INDEX IF EXISTS {}", o.name.quoted()));
                }
                ObjectKind::Column | ObjectKind::EventTrigger => {}
            }
        }
        for o in &retyped {
            statements.push(format!(
                "ALTER TABLE {} DROP COLUMN {}",
                o.table.quoted(),
                o.name.quoted()
            ));
        }
    }
    for o in &plan {
        if rebuild && !matches!(o.kind, ObjectKind::Column | ObjectKind::EventTrigger)
            || todo.contains(&key(o.table.as_str(), o.name.as_str()))
        {
            statements.extend(o.sql.iter().cloned());
        }
    }
    run_all(&mut ctx, statements).await?;
    // Flag what a repair guards, unless its field's value column is new
    // (a new column starts flagged).
    let new_columns: HashSet<(String, String)> = problems
        .iter()
        .filter(|p| p.kind == ObjectKind::Column && p.state == State::Missing)
        .map(|p| key(&p.table, &p.name))
        .collect();
    let value_column = |g: &Guarded| {
        specs
            .iter()
            .find(|s| s.table == g.table)
            .and_then(|s| s.fields.iter().find(|f| f.name == g.field))
            .map(|f| f.columns.value.to_string())
    };
    let mut guarded: Vec<&Guarded> = Vec::new();
    for o in plan
        .iter()
        .filter(|o| todo.contains(&key(o.table.as_str(), o.name.as_str())))
    {
        for g in &o.guards {
            let fresh =
                value_column(g).is_some_and(|v| new_columns.contains(&key(g.table.as_str(), &v)));
            if !fresh && !guarded.contains(&g) {
                guarded.push(g);
            }
        }
    }
    let mut flagged = Vec::new();
    for g in guarded {
        // Due at once, a row backing off after a failure included: the
        // repair may be what it failed on.
        let rows = ctx
            .execute(
                format!(
                    "UPDATE {} SET {} = TRUE, {} = NULL",
                    g.table.quoted(),
                    g.needed.quoted(),
                    g.next_attempt.quoted()
                ),
                &[],
            )
            .await?;
        flagged.push(Flagged {
            table: g.table.to_string(),
            field: g.field.to_string(),
            rows,
        });
    }
    drop(ctx);
    tx.commit().await?;
    db.after_migrate().await?;
    Ok(Migration {
        changes: problems,
        flagged,
        warnings,
    })
}

async fn run_all(ctx: &mut Ctx<'_>, statements: Vec<String>) -> Result<()> {
    for stmt in statements {
        ctx.execute(stmt, &[]).await?;
    }
    Ok(())
}

/// Fails with [`Error::MissingColumns`] (which says to run `migrate`) when
/// the table lacks a declared column, or [`Error::Declaration`] when there
/// is no such table.
pub(crate) async fn require_columns(ctx: &mut Ctx<'_>, spec: &TableSpec) -> Result<()> {
    let (exists, missing) = missing_in(ctx, spec).await?;
    if !exists {
        return Err(Error::declaration(
            spec.table.as_str(),
            format!(
                "table {} does not exist: create it, then run `migrate`",
                spec.table
            ),
        ));
    }
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::MissingColumns {
            table: spec.table.to_string(),
            missing,
        })
    }
}

/// Whether `spec`'s table exists, and the declared columns it lacks.
async fn missing_in(ctx: &mut Ctx<'_>, spec: &TableSpec) -> Result<(bool, Vec<String>)> {
    let have: HashSet<String> = table_columns(ctx, &spec.table).await?.into_iter().collect();
    let missing = spec
        .fields
        .iter()
        .flat_map(|f| f.columns.all())
        .filter(|c| !have.contains(c.as_str()))
        .map(ToString::to_string)
        .collect();
    Ok((!have.is_empty(), missing))
}

/// The declared columns `model` needs that its table lacks.
pub(crate) async fn missing_columns<M>(ctx: &mut Ctx<'_>, model: &Model<M>) -> Result<Vec<String>> {
    Ok(missing_in(ctx, &TableSpec::of(model)).await?.1)
}
