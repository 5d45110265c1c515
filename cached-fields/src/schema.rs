//! Schema per backend: the columns, indexes and bookkeeping triggers each
//! cached field needs; `migrate` installs them, `check` compares.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::db::{Backend, Ctx, Db};
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::{FieldColumns, Model};
use crate::value::{SqlType, Value};

/// The PostgreSQL notification channel the triggers signal on.
pub const CHANNEL: &str = "cached_fields";

/// The schema-relevant part of a model: its table and its fields' columns.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table.
    pub table: Ident,
    /// The primary-key column.
    pub primary_key: Ident,
    /// Each cached field: name, value type, columns.
    pub fields: Vec<(Ident, SqlType, FieldColumns)>,
}

impl TableSpec {
    /// The spec of a declared model.
    pub fn of<M>(model: &Model<M>) -> Self {
        TableSpec {
            table: model.table().clone(),
            primary_key: model.primary_key().clone(),
            fields: model
                .fields()
                .iter()
                .map(|f| (f.name().clone(), f.sql_type(), f.columns().clone()))
                .collect(),
        }
    }
}

/// The kind of a schema object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ObjectKind {
    /// A column of the model's table.
    Column,
    /// An index.
    Index,
    /// A trigger (and, on PostgreSQL, its function).
    Trigger,
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ObjectKind::Column => "column",
            ObjectKind::Index => "index",
            ObjectKind::Trigger => "trigger",
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
}

/// What `check` found wrong with one object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What it is.
    pub kind: ObjectKind,
    /// Its table.
    pub table: String,
    /// Its name.
    pub name: String,
    /// `true`: it exists but differs from the declaration; `false`: missing.
    pub outdated: bool,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = if self.outdated { "outdated" } else { "missing" };
        write!(f, "{state} {} {}.{}", self.kind, self.table, self.name)
    }
}

fn ts(backend: Backend) -> &'static str {
    SqlType::Timestamp.column_type(backend)
}

fn columns(backend: Backend, ty: SqlType, c: &FieldColumns) -> Vec<(Ident, String)> {
    let mut v = vec![
        (c.value.clone(), ty.column_type(backend).to_owned()),
        (c.needed.clone(), "BOOLEAN NOT NULL DEFAULT TRUE".to_owned()),
    ];
    if let Some(e) = &c.expires {
        v.push((e.clone(), ts(backend).to_owned()));
    }
    let since = match backend {
        Backend::Postgres => "TIMESTAMPTZ DEFAULT now()",
        Backend::Sqlite => "TIMESTAMP",
    };
    v.extend([
        (c.version.clone(), "BIGINT NOT NULL DEFAULT 0".to_owned()),
        (c.stale_since.clone(), since.to_owned()),
        (c.next_attempt.clone(), ts(backend).to_owned()),
        (c.attempts.clone(), "BIGINT NOT NULL DEFAULT 0".to_owned()),
        (c.last_error.clone(), "TEXT".to_owned()),
    ]);
    v
}

/// A SQLite timestamp literal for "now" in the format sqlx reads back.
const SQLITE_NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

fn bump_trigger(backend: Backend, spec: &TableSpec, c: &FieldColumns) -> SchemaObject {
    let t = spec.table.quoted();
    let pk = spec.primary_key.quoted();
    let (needed, version, since) = (
        c.needed.quoted(),
        c.version.quoted(),
        c.stale_since.quoted(),
    );
    let name = Ident::derived(&["cf_bump", spec.table.as_str(), c.needed.as_str()]);
    match backend {
        Backend::Sqlite => {
            let create = format!(
                "CREATE TRIGGER {n} AFTER UPDATE OF {needed} ON {t} FOR EACH ROW WHEN NEW.{needed} \
                 BEGIN UPDATE {t} SET {version} = {version} + 1, {since} = CASE WHEN OLD.{needed} \
                 AND {since} IS NOT NULL THEN {since} ELSE {SQLITE_NOW} END WHERE {pk} = NEW.{pk}; END",
                n = name.quoted()
            );
            SchemaObject {
                kind: ObjectKind::Trigger,
                table: spec.table.clone(),
                sql: vec![
                    format!("DROP TRIGGER IF EXISTS {}", name.quoted()),
                    create.clone(),
                ],
                name,
                definition: Some(create),
            }
        }
        Backend::Postgres => {
            let trigger = format!(
                "CREATE OR REPLACE TRIGGER {n} BEFORE UPDATE OF {needed} ON {t} FOR EACH ROW \
                 WHEN (NEW.{needed}) EXECUTE FUNCTION {n}()",
                n = name.quoted()
            );
            let body = format!(
                "\n-- cached-fields: {trigger}\nBEGIN\n  NEW.{version} := OLD.{version} + 1;\n  \
                 IF NOT OLD.{needed} OR OLD.{since} IS NULL THEN NEW.{since} := clock_timestamp(); END IF;\n  \
                 PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  RETURN NEW;\nEND;\n"
            );
            SchemaObject {
                kind: ObjectKind::Trigger,
                table: spec.table.clone(),
                sql: vec![
                    format!(
                        "CREATE OR REPLACE FUNCTION {n}() RETURNS trigger LANGUAGE plpgsql AS $cf${body}$cf$",
                        n = name.quoted()
                    ),
                    trigger,
                ],
                name,
                definition: Some(body),
            }
        }
    }
}

/// On insert: SQLite stamps `F_stale_since` of flagged rows; PostgreSQL wakes workers.
fn insert_trigger(backend: Backend, spec: &TableSpec) -> SchemaObject {
    let t = spec.table.quoted();
    let pk = spec.primary_key.quoted();
    let name = Ident::derived(&["cf_insert", spec.table.as_str()]);
    match backend {
        Backend::Sqlite => {
            let sets: Vec<String> = spec
                .fields
                .iter()
                .map(|(_, _, c)| {
                    let (needed, since) = (c.needed.quoted(), c.stale_since.quoted());
                    format!("{since} = CASE WHEN {needed} THEN COALESCE({since}, {SQLITE_NOW}) ELSE {since} END")
                })
                .collect();
            let create = format!(
                "CREATE TRIGGER {n} AFTER INSERT ON {t} FOR EACH ROW BEGIN UPDATE {t} SET {} \
                 WHERE {pk} = NEW.{pk}; END",
                sets.join(", "),
                n = name.quoted()
            );
            SchemaObject {
                kind: ObjectKind::Trigger,
                table: spec.table.clone(),
                sql: vec![
                    format!("DROP TRIGGER IF EXISTS {}", name.quoted()),
                    create.clone(),
                ],
                name,
                definition: Some(create),
            }
        }
        Backend::Postgres => {
            let trigger = format!(
                "CREATE OR REPLACE TRIGGER {n} AFTER INSERT ON {t} FOR EACH STATEMENT \
                 EXECUTE FUNCTION {n}()",
                n = name.quoted()
            );
            let body = format!(
                "\n-- cached-fields: {trigger}\nBEGIN\n  PERFORM pg_notify('{CHANNEL}', TG_TABLE_NAME);\n  \
                 RETURN NULL;\nEND;\n"
            );
            SchemaObject {
                kind: ObjectKind::Trigger,
                table: spec.table.clone(),
                sql: vec![
                    format!(
                        "CREATE OR REPLACE FUNCTION {n}() RETURNS trigger LANGUAGE plpgsql AS $cf${body}$cf$",
                        n = name.quoted()
                    ),
                    trigger,
                ],
                name,
                definition: Some(body),
            }
        }
    }
}

/// Every object the declarations need on `backend`, in creation order.
pub fn plan(backend: Backend, specs: &[TableSpec]) -> Vec<SchemaObject> {
    let mut out = Vec::new();
    for spec in specs {
        let t = spec.table.quoted();
        for (_, ty, c) in &spec.fields {
            for (col, ddl) in columns(backend, *ty, c) {
                out.push(SchemaObject {
                    kind: ObjectKind::Column,
                    table: spec.table.clone(),
                    sql: vec![format!("ALTER TABLE {t} ADD COLUMN {} {ddl}", col.quoted())],
                    name: col,
                    definition: None,
                });
            }
            let needed_idx = Ident::derived(&["cf", spec.table.as_str(), c.needed.as_str()]);
            out.push(SchemaObject {
                kind: ObjectKind::Index,
                table: spec.table.clone(),
                sql: vec![format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} ({}) WHERE {}",
                    needed_idx.quoted(),
                    spec.primary_key.quoted(),
                    c.needed.quoted()
                )],
                name: needed_idx,
                definition: None,
            });
            if let Some(e) = &c.expires {
                let idx = Ident::derived(&["cf", spec.table.as_str(), e.as_str()]);
                let expr = match backend {
                    Backend::Sqlite => format!("julianday({})", e.quoted()),
                    Backend::Postgres => e.quoted(),
                };
                out.push(SchemaObject {
                    kind: ObjectKind::Index,
                    table: spec.table.clone(),
                    sql: vec![format!(
                        "CREATE INDEX IF NOT EXISTS {} ON {t} ({expr}) WHERE {} IS NOT NULL",
                        idx.quoted(),
                        e.quoted()
                    )],
                    name: idx,
                    definition: None,
                });
            }
            out.push(bump_trigger(backend, spec, c));
        }
        if !spec.fields.is_empty() {
            out.push(insert_trigger(backend, spec));
        }
    }
    out
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

/// What exists in the database for the planned tables.
#[derive(Debug, Default)]
struct Existing {
    tables: HashSet<String>,
    columns: HashMap<String, HashSet<String>>,
    indexes: HashSet<String>,
    triggers: HashMap<String, String>,
}

fn normalize(sql: &str) -> String {
    sql.split_whitespace().collect::<Vec<_>>().join(" ")
}

async fn table_columns(ctx: &mut Ctx<'_>, table: &Ident) -> Result<Vec<String>> {
    let sql = match ctx.backend() {
        Backend::Sqlite => "SELECT name FROM pragma_table_info($1)",
        Backend::Postgres => {
            "SELECT column_name::text FROM information_schema.columns \
             WHERE table_schema = current_schema() AND table_name = $1"
        }
    };
    let rows = ctx
        .fetch_values(
            sql.to_owned(),
            &[Value::Text(table.to_string())],
            &[SqlType::Text],
        )
        .await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| match r.into_iter().next() {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        })
        .collect())
}

async fn inspect(ctx: &mut Ctx<'_>, specs: &[TableSpec]) -> Result<Existing> {
    let mut ex = Existing::default();
    for spec in specs {
        let cols = table_columns(ctx, &spec.table).await?;
        if !cols.is_empty() {
            ex.tables.insert(spec.table.to_string());
        }
        ex.columns
            .insert(spec.table.to_string(), cols.into_iter().collect());
        let arg = [Value::Text(spec.table.to_string())];
        let (idx_sql, trg_sql) = match ctx.backend() {
            Backend::Sqlite => (
                "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
                "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1",
            ),
            Backend::Postgres => (
                "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
                 AND tablename = $1",
                "SELECT t.tgname::text, p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
                 WHERE t.tgrelid = to_regclass(quote_ident($1)) AND NOT t.tgisinternal",
            ),
        };
        for row in ctx
            .fetch_values(idx_sql.to_owned(), &arg, &[SqlType::Text])
            .await?
        {
            if let Some(Value::Text(n)) = row.into_iter().next() {
                ex.indexes.insert(n);
            }
        }
        for row in ctx
            .fetch_values(trg_sql.to_owned(), &arg, &[SqlType::Text, SqlType::Text])
            .await?
        {
            if let [Value::Text(n), Value::Text(def)] = &row[..] {
                ex.triggers.insert(n.clone(), normalize(def));
            }
        }
    }
    Ok(ex)
}

/// What differs between the database and the declarations.
fn diff(plan: &[SchemaObject], ex: &Existing) -> Vec<Problem> {
    plan.iter()
        .filter_map(|o| {
            let outdated = match o.kind {
                ObjectKind::Column => {
                    let present = ex
                        .columns
                        .get(o.table.as_str())
                        .is_some_and(|c| c.contains(o.name.as_str()));
                    return (!present).then(|| problem(o, false));
                }
                ObjectKind::Index => {
                    return (!ex.indexes.contains(o.name.as_str())).then(|| problem(o, false));
                }
                ObjectKind::Trigger => match ex.triggers.get(o.name.as_str()) {
                    None => return Some(problem(o, false)),
                    Some(def) => o.definition.as_deref().map(normalize).as_ref() != Some(def),
                },
            };
            outdated.then(|| problem(o, true))
        })
        .collect()
}

fn problem(o: &SchemaObject, outdated: bool) -> Problem {
    Problem {
        kind: o.kind,
        table: o.table.to_string(),
        name: o.name.to_string(),
        outdated,
    }
}

fn require_tables(specs: &[TableSpec], ex: &Existing) -> Result<()> {
    for spec in specs {
        if !ex.tables.contains(spec.table.as_str()) {
            return Err(Error::declaration(
                spec.table.as_str(),
                format!(
                    "table {} does not exist: create it (with its primary key {}) before migrating",
                    spec.table, spec.primary_key
                ),
            ));
        }
    }
    Ok(())
}

/// Lists every missing or outdated column, index and trigger.
pub async fn check(db: &Db, specs: &[TableSpec]) -> Result<Vec<Problem>> {
    let mut ctx = Ctx::from(db);
    let ex = inspect(&mut ctx, specs).await?;
    require_tables(specs, &ex)?;
    Ok(diff(&plan(db.backend(), specs), &ex))
}

/// Adds what is missing and replaces what is outdated, in one transaction;
/// returns what it changed. Running it again changes nothing.
pub async fn migrate(db: &Db, specs: &[TableSpec]) -> Result<Vec<Problem>> {
    let problems = check(db, specs).await?;
    if problems.is_empty() {
        return Ok(problems);
    }
    let todo: HashSet<(String, String)> = problems
        .iter()
        .map(|p| (p.table.clone(), p.name.clone()))
        .collect();
    let objects: Vec<SchemaObject> = plan(db.backend(), specs)
        .into_iter()
        .filter(|o| todo.contains(&(o.table.to_string(), o.name.to_string())))
        .collect();
    match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            run_all(&mut Ctx::from_target(&mut tx), &objects).await?;
            tx.commit().await?;
        }
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            run_all(&mut Ctx::from_target(&mut tx), &objects).await?;
            tx.commit().await?;
        }
    }
    Ok(problems)
}

async fn run_all(ctx: &mut Ctx<'_>, objects: &[SchemaObject]) -> Result<()> {
    for o in objects {
        for stmt in &o.sql {
            ctx.execute(stmt.clone(), &[]).await?;
        }
    }
    Ok(())
}

/// The declared columns `model` needs that its table lacks.
pub(crate) async fn missing_columns<M>(ctx: &mut Ctx<'_>, model: &Model<M>) -> Result<Vec<String>> {
    let spec = TableSpec::of(model);
    let have: HashSet<String> = table_columns(ctx, &spec.table).await?.into_iter().collect();
    Ok(spec
        .fields
        .iter()
        .flat_map(|(_, _, c)| c.all())
        .filter(|c| !have.contains(c.as_str()))
        .map(ToString::to_string)
        .collect())
}
