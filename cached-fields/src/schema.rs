//! Schema per backend: the columns, indexes and bookkeeping triggers each
//! cached field needs; `migrate` installs them, `check` compares.

use std::collections::{HashMap, HashSet};
use std::fmt;

use crate::db::{Backend, Ctx, Db};
use crate::depends::Dependency;
use crate::error::{Error, Result};
use crate::ident::Ident;
use crate::model::{FieldColumns, Model};
use crate::triggers;
use crate::value::{SqlType, Value};

/// The PostgreSQL notification channel the triggers signal on.
pub const CHANNEL: &str = "cached_fields";

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
}

/// The schema-relevant part of a model: its table and its fields.
#[derive(Debug, Clone)]
pub struct TableSpec {
    /// The table.
    pub table: Ident,
    /// The primary-key column.
    pub primary_key: Ident,
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
            fields: model
                .fields()
                .iter()
                .map(|f| FieldSpec {
                    name: f.name().clone(),
                    sql_type: f.sql_type(),
                    columns: f.columns().clone(),
                    depends_on: f.depends_on().to_vec(),
                })
                .collect(),
            order: model.order().to_vec(),
        }
    }

    /// The tables whose triggers serve this model: its own and related ones.
    fn trigger_tables(&self) -> Vec<&Ident> {
        let mut v = vec![&self.table];
        for f in &self.fields {
            for (child, _, _) in triggers::relations(f) {
                if !v.contains(&child) {
                    v.push(child);
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
    /// What is wrong with it.
    pub state: State,
}

/// How an object differs from the declarations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Declared, not in the database.
    Missing,
    /// In the database, but not as declared.
    Outdated,
    /// A trigger of this library that no declaration asks for any more.
    Obsolete,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let state = match self.state {
            State::Missing => "missing",
            State::Outdated => "outdated",
            State::Obsolete => "obsolete",
        };
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

/// Every object the declarations need on `backend`, in creation order.
pub fn plan(backend: Backend, specs: &[TableSpec]) -> Vec<SchemaObject> {
    let mut out = Vec::new();
    for spec in specs {
        let t = spec.table.quoted();
        for f in &spec.fields {
            let c = &f.columns;
            for (col, ddl) in columns(backend, f.sql_type, c) {
                out.push(SchemaObject {
                    kind: ObjectKind::Column,
                    table: spec.table.clone(),
                    sql: vec![format!("ALTER TABLE {t} ADD COLUMN {} {ddl}", col.quoted())],
                    name: col,
                    definition: None,
                });
            }
            // Flagged rows by next attempt: the claim walks it in order and
            // stops after a batch; the worker's "next due" is its first entry.
            let needed_idx = Ident::derived(&["cf", spec.table.as_str(), c.needed.as_str(), "due"]);
            let nulls_first = match backend {
                Backend::Sqlite => "",
                Backend::Postgres => " NULLS FIRST",
            };
            out.push(SchemaObject {
                kind: ObjectKind::Index,
                table: spec.table.clone(),
                sql: vec![format!(
                    "CREATE INDEX IF NOT EXISTS {} ON {t} ({}{nulls_first}) WHERE {}",
                    needed_idx.quoted(),
                    c.next_attempt.quoted(),
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
            out.push(triggers::bump(backend, spec, f));
            out.extend(triggers::dependencies(backend, spec, f));
        }
        if !spec.fields.is_empty() {
            out.push(triggers::insert(backend, spec));
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
    columns: HashMap<String, HashSet<String>>,
    indexes: HashSet<String>,
    /// Trigger name → (table, normalized definition).
    triggers: HashMap<String, (String, String)>,
    /// Table → its foreign keys as (column, referenced table, referenced column or "").
    foreign_keys: HashMap<String, Vec<(String, String, String)>>,
}

fn normalize(sql: &str) -> String {
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
    Ok(texts(rows).into_iter().flatten().collect())
}

async fn inspect(ctx: &mut Ctx<'_>, specs: &[TableSpec]) -> Result<Existing> {
    let mut ex = Existing::default();
    let mut tables: Vec<&Ident> = Vec::new();
    for spec in specs {
        for t in spec.trigger_tables() {
            if !tables.contains(&t) {
                tables.push(t);
            }
        }
    }
    let (idx_sql, trg_sql, fk_sql) = match ctx.backend() {
        Backend::Sqlite => (
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1",
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' AND tbl_name = $1",
            "SELECT \"from\", \"table\", COALESCE(\"to\", '') FROM pragma_foreign_key_list($1)",
        ),
        Backend::Postgres => (
            "SELECT indexname::text FROM pg_indexes WHERE schemaname = current_schema() \
             AND tablename = $1",
            "SELECT t.tgname::text, p.prosrc FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid \
             WHERE t.tgrelid = to_regclass(quote_ident($1)) AND NOT t.tgisinternal",
            "SELECT a.attname::text, rc.relname::text, COALESCE(ra.attname::text, '') \
             FROM pg_constraint c \
             JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
             JOIN pg_class rc ON rc.oid = c.confrelid \
             LEFT JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] \
             WHERE c.contype = 'f' AND c.conrelid = to_regclass(quote_ident($1)) \
             AND array_length(c.conkey, 1) = 1",
        ),
    };
    for table in tables {
        let cols = table_columns(ctx, table).await?;
        ex.columns
            .insert(table.to_string(), cols.into_iter().collect());
        let arg = [Value::Text(table.to_string())];
        for r in texts(
            ctx.fetch_values(idx_sql.to_owned(), &arg, &[SqlType::Text])
                .await?,
        ) {
            ex.indexes.extend(r);
        }
        for r in texts(
            ctx.fetch_values(trg_sql.to_owned(), &arg, &[SqlType::Text, SqlType::Text])
                .await?,
        ) {
            if let [name, def] = &r[..] {
                ex.triggers
                    .insert(name.clone(), (table.to_string(), normalize(def)));
            }
        }
        let fks = texts(
            ctx.fetch_values(
                fk_sql.to_owned(),
                &arg,
                &[SqlType::Text, SqlType::Text, SqlType::Text],
            )
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
    }
    Ok(ex)
}

/// Rejects tables that do not exist, and dependencies naming a table,
/// column or foreign key that does not exist.
fn validate(specs: &[TableSpec], ex: &Existing) -> Result<()> {
    let has = |t: &Ident| ex.columns.get(t.as_str()).filter(|c| !c.is_empty());
    for spec in specs {
        let Some(own) = has(&spec.table) else {
            return Err(Error::declaration(
                spec.table.as_str(),
                format!(
                    "table {} does not exist: create it (with its primary key {}) before migrating",
                    spec.table, spec.primary_key
                ),
            ));
        };
        for f in &spec.fields {
            let err = |d: &Dependency, reason: String| Error::InvalidDependency {
                field: format!("{}.{}", spec.table, f.name),
                path: d.to_string(),
                reason,
            };
            for d in &f.depends_on {
                match d {
                    Dependency::Column(c) if !own.contains(c.as_str()) => {
                        return Err(err(d, format!("table {} has no column {c}", spec.table)));
                    }
                    Dependency::Related {
                        table,
                        foreign_key,
                        column,
                    } => {
                        let Some(cols) = has(table) else {
                            return Err(err(d, format!("table {table} does not exist")));
                        };
                        for c in [foreign_key, column] {
                            if !cols.contains(c.as_str()) {
                                return Err(err(d, format!("table {table} has no column {c}")));
                            }
                        }
                        let fk_ok = ex.foreign_keys.get(table.as_str()).is_some_and(|fks| {
                            fks.iter().any(|(c, t, to)| {
                                c == foreign_key.as_str()
                                    && t == spec.table.as_str()
                                    && (to.is_empty() || to == spec.primary_key.as_str())
                            })
                        });
                        if !fk_ok {
                            return Err(err(
                                d,
                                format!(
                                    "{table}.{foreign_key} is not a foreign key referencing {}({})",
                                    spec.table, spec.primary_key
                                ),
                            ));
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    Ok(())
}

/// What differs between the database and the declarations.
fn diff(plan: &[SchemaObject], ex: &Existing) -> Vec<Problem> {
    let mut out: Vec<Problem> = plan
        .iter()
        .filter_map(|o| {
            let state = match o.kind {
                ObjectKind::Column => {
                    let present = ex
                        .columns
                        .get(o.table.as_str())
                        .is_some_and(|c| c.contains(o.name.as_str()));
                    (!present).then_some(State::Missing)
                }
                ObjectKind::Index => {
                    (!ex.indexes.contains(o.name.as_str())).then_some(State::Missing)
                }
                ObjectKind::Trigger => match ex.triggers.get(o.name.as_str()) {
                    None => Some(State::Missing),
                    Some((_, def)) => (o.definition.as_deref().map(normalize).as_ref()
                        != Some(def))
                    .then_some(State::Outdated),
                },
            };
            state.map(|state| Problem {
                kind: o.kind,
                table: o.table.to_string(),
                name: o.name.to_string(),
                state,
            })
        })
        .collect();
    let planned: HashSet<&str> = plan.iter().map(|o| o.name.as_str()).collect();
    let mut obsolete: Vec<Problem> = ex
        .triggers
        .iter()
        .filter(|(name, _)| name.starts_with("cf_") && !planned.contains(name.as_str()))
        .map(|(name, (table, _))| Problem {
            kind: ObjectKind::Trigger,
            table: table.clone(),
            name: name.clone(),
            state: State::Obsolete,
        })
        .collect();
    obsolete.sort_by(|a, b| a.name.cmp(&b.name));
    out.extend(obsolete);
    out
}

/// Lists every missing, outdated or obsolete column, index and trigger.
/// A dependency on a table, column or foreign key that does not exist is
/// an error naming it.
pub async fn check(db: &Db, specs: &[TableSpec]) -> Result<Vec<Problem>> {
    let mut ctx = Ctx::from(db);
    let ex = inspect(&mut ctx, specs).await?;
    validate(specs, &ex)?;
    Ok(diff(&plan(db.backend(), specs), &ex))
}

/// Adds what is missing, replaces what is outdated and drops obsolete
/// triggers, in one transaction; returns what it changed. Running it again
/// changes nothing.
pub async fn migrate(db: &Db, specs: &[TableSpec]) -> Result<Vec<Problem>> {
    let problems = check(db, specs).await?;
    if problems.is_empty() {
        return Ok(problems);
    }
    let todo: HashSet<(&str, &str)> = problems
        .iter()
        .map(|p| (p.table.as_str(), p.name.as_str()))
        .collect();
    let mut statements: Vec<String> = problems
        .iter()
        .filter(|p| p.state == State::Obsolete)
        .flat_map(|p| triggers::drop(db.backend(), &p.table, &p.name))
        .collect();
    statements.extend(
        plan(db.backend(), specs)
            .into_iter()
            .filter(|o| todo.contains(&(o.table.as_str(), o.name.as_str())))
            .flat_map(|o| o.sql),
    );
    match db {
        #[cfg(feature = "sqlite")]
        Db::Sqlite(pool) => {
            let mut tx = pool.begin().await?;
            run_all(&mut Ctx::from_target(&mut tx), statements).await?;
            tx.commit().await?;
            // Idle connections still hold the old schema; one that prepares a
            // `SELECT *` with it breaks sqlx when SQLite re-prepares. A read
            // makes each reload it.
            let mut refreshed = Vec::new();
            while let Some(mut conn) = pool.try_acquire() {
                sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1")
                    .execute(&mut *conn)
                    .await?;
                refreshed.push(conn);
            }
        }
        #[cfg(feature = "postgres")]
        Db::Postgres(pool) => {
            let mut tx = pool.begin().await?;
            // Two processes migrating at once wait for each other.
            Ctx::from_target(&mut tx)
                .execute("SELECT pg_advisory_xact_lock(7438002)".to_owned(), &[])
                .await?;
            run_all(&mut Ctx::from_target(&mut tx), statements).await?;
            tx.commit().await?;
        }
    }
    Ok(problems)
}

async fn run_all(ctx: &mut Ctx<'_>, statements: Vec<String>) -> Result<()> {
    for stmt in statements {
        ctx.execute(stmt, &[]).await?;
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
        .flat_map(|f| f.columns.all())
        .filter(|c| !have.contains(c.as_str()))
        .map(ToString::to_string)
        .collect())
}
