//! Everything that differs between database engines, one module per
//! engine behind the library's own traits: [`Dialect`], the SQL an engine
//! speaks (column types, timestamps, the claim, triggers, introspection),
//! and the drivers, the connections of the engines this build enables.
//! A new engine is a new folder here and one arm per `match` in this file.

pub(crate) mod postgres;
pub(crate) mod sqlite;

use crate::ident::Ident;
#[allow(unused_imports)] // used by the modules below
use crate::schema::normalize;
use crate::schema::{FieldSpec, SchemaObject, TableSpec, TriggerInfo};
use crate::statements::{FieldSql, Prefix};
use crate::triggers::Catalog;
use crate::value::{SqlType, Value};

/// Which database engine a [`Db`](crate::Db) talks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Backend {
    /// SQLite, the embedded default.
    Sqlite,
    /// PostgreSQL, the scale-out engine.
    Postgres,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.dialect().name())
    }
}

impl Backend {
    /// Everything about SQL that differs on this backend.
    pub(crate) fn dialect(self) -> &'static dyn Dialect {
        match self {
            Backend::Sqlite => &sqlite::Sqlite,
            Backend::Postgres => &postgres::Postgres,
        }
    }
}

impl Backend {
    /// The backends compiled into this build, for messages.
    pub const ENABLED: &'static str = if cfg!(all(feature = "sqlite", feature = "postgres")) {
        "sqlite, postgres"
    } else if cfg!(feature = "sqlite") {
        "sqlite"
    } else {
        "postgres"
    };
}

impl Backend {
    /// The backend a database URL names, if this build has it.
    ///
    /// ```
    /// use cached_fields::Backend;
    /// assert_eq!(Backend::of_url("sqlite::memory:").unwrap(), Backend::Sqlite);
    /// assert!(Backend::of_url("mysql://localhost").is_err());
    /// ```
    pub fn of_url(url: &str) -> crate::Result<Backend> {
        if url.starts_with("sqlite:") && cfg!(feature = "sqlite") {
            return Ok(Backend::Sqlite);
        }
        if (url.starts_with("postgres://") || url.starts_with("postgresql://"))
            && cfg!(feature = "postgres")
        {
            return Ok(Backend::Postgres);
        }
        Err(crate::Error::UnsupportedUrl {
            url: crate::db::redact(url),
            enabled: Backend::ENABLED,
        })
    }
}

/// Which settings a library statement carries, where the engine has
/// per-statement settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Settings {
    /// None: an application's statement, which may run in its transaction.
    None,
    /// The worker's: asynchronous commit, a short lock timeout, and the
    /// mark the guard trigger skips.
    Worker,
    /// The mark alone: a library statement that never writes a cached
    /// value, on a connection of its own.
    Marked,
}

/// The SQL one engine speaks: every fragment the runtime, the worker and
/// the schema tools build statements from that is not the same everywhere.
/// Names reach it quoted; values are always bound (`$1`, `$2`, …).
pub(crate) trait Dialect: Sync {
    /// The engine's name, for messages.
    fn name(&self) -> &'static str;
    /// The column type that holds a value of type `ty`.
    fn column_type(&self, ty: SqlType) -> &'static str;
    /// Now plus `ms` milliseconds, as a timestamp expression.
    fn now_plus(&self, ms: i64) -> String;
    /// When a hot row stale since `since`, due at `next`, is next due
    /// (see [`crate::statements::hot_until`]).
    fn hot_until(&self, since: &str, next: &str, pause_ms: i64, cap_ms: i64) -> String;
    /// `col <= param` for timestamps.
    fn ts_le(&self, col: &str, param: &str) -> String;
    /// A timestamp expression as seconds since the Unix epoch (float).
    fn epoch(&self, expr: &str) -> String;
    /// The indexed expression of an expiry column `x`, whose `MIN` reads the
    /// index's first entry, and how to turn that minimum `m` into epoch
    /// seconds.
    fn indexed_expiry(&self, x: &str) -> (String, String);
    /// The text a statement with `settings` starts with, and the `FROM`
    /// items that make it evaluate them first.
    fn prefix(&self, settings: Settings) -> Prefix;
    /// Claims up to `$3` due rows of `f` by leasing them until `$2` (`$1`
    /// is now), returning `select_list`, without scanning the table.
    fn claim(&self, f: &FieldSql<'_>, select_list: &str) -> String;
    /// A query counting the tables called `table` (0 or 1).
    fn table_exists(&self, table: &str) -> String;
    /// Why a value cannot be stored as it is, if it cannot.
    fn refuses(&self, value: &Value) -> Option<&'static str>;
    /// See [`crate::triggers::bump`].
    fn bump_trigger(&self, spec: &TableSpec, f: &FieldSpec) -> SchemaObject;
    /// See [`crate::triggers::insert`].
    fn insert_trigger(&self, spec: &TableSpec) -> SchemaObject;
    /// See [`crate::triggers::guards`].
    fn guard_triggers(&self, spec: &TableSpec) -> Vec<SchemaObject>;
    /// See [`crate::triggers::dependencies`].
    fn dependency_triggers(
        &self,
        spec: &TableSpec,
        f: &FieldSpec,
        catalog: &Catalog,
    ) -> Vec<SchemaObject>;
    /// The statements that remove one of this library's triggers.
    fn drop_trigger(&self, table: &Ident, name: &Ident) -> Vec<String>;
    /// The statement that removes a trigger alone (its function stays, to be
    /// replaced), before a column it reads is rebuilt.
    fn drop_trigger_only(&self, table: &Ident, name: &Ident) -> String;
    /// The type and the rest of the definition of `F_stale_since`.
    fn stale_since_column(&self) -> (&'static str, &'static str);
    /// Whether a column the database reports as `actual` has the type
    /// declared as `declared`.
    fn same_type(&self, declared: &str, actual: &str) -> bool;
    /// An index key on `col` that sorts NULLs first.
    fn nulls_first(&self, col: &str) -> String;
    /// The statements that create this library's partial index `n` on `t`,
    /// marked as its own.
    fn create_index(&self, n: &str, t: &str, expr: &str, cond: &str) -> Vec<String>;
    /// The queries that read the schema.
    fn introspect(&self) -> Introspection;
    /// Whether an index whose extra text (its SQL or its comment) is
    /// `extra` is this library's.
    fn index_is_ours(&self, extra: &str) -> bool;
    /// A row of [`Introspection::triggers`], read.
    fn trigger_info(&self, row: &[String]) -> Option<(String, TriggerInfo)>;
}

/// The queries that read what exists. Each returns text columns.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Introspection {
    /// `$1` a table: its columns' names and types.
    pub(crate) columns: &'static str,
    /// Every index: name, table, and the text that marks it as ours.
    pub(crate) indexes: &'static str,
    /// Every trigger, one row of `trigger_columns` columns each, read by
    /// [`Dialect::trigger_info`].
    pub(crate) triggers: &'static str,
    pub(crate) trigger_columns: usize,
    /// `$1` a table: its single-column foreign keys as (column, referenced
    /// table, referenced column or "").
    pub(crate) foreign_keys: &'static str,
    /// Where an upsert can delete the row it conflicts with without firing
    /// delete triggers: `$1` a table, whether it has no rowid (an integer,
    /// 1 if so), and its unique indexes as (index, origin, column) rows,
    /// the primary key's first.
    pub(crate) keys: Option<[&'static str; 2]>,
}
