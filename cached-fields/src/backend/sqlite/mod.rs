//! SQLite, the embedded default.

pub(crate) mod triggers;

use crate::backend::{Dialect, Settings};
use crate::ident::Ident;
use crate::schema::{FieldSpec, SchemaObject, TableSpec};
use crate::statements::{FieldSql, Prefix};
use crate::triggers::Catalog;
use crate::value::{SqlType, Value};

/// SQLite's dialect.
#[derive(Debug)]
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn name(&self) -> &'static str {
        "SQLite"
    }

    fn column_type(&self, ty: SqlType) -> &'static str {
        match ty {
            SqlType::Int => "BIGINT",
            SqlType::Float => "REAL",
            SqlType::Bool => "BOOLEAN",
            SqlType::Text | SqlType::Json => "TEXT",
            SqlType::Date => "DATE",
            SqlType::Time => "TIME",
            SqlType::Timestamp => "TIMESTAMP",
            #[cfg(feature = "uuid")]
            SqlType::Uuid => "BLOB",
        }
    }

    fn now_plus(&self, ms: i64) -> String {
        format!("strftime('%Y-%m-%dT%H:%M:%fZ', julianday('now') + {ms} / 86400000.0)")
    }

    fn hot_until(&self, since: &str, next: &str, pause: i64, cap: i64) -> String {
        // Periods reached by `next`, less a little for rounding (julianday
        // is good to tens of microseconds).
        let periods =
            format!("((julianday({next}) - julianday({since})) * 86400000.0 / {cap} - 0.001)");
        let ceil = format!(
            "MAX(1, CAST({periods} AS INTEGER) + ({periods} > CAST({periods} AS INTEGER)))"
        );
        format!(
            "strftime('%Y-%m-%dT%H:%M:%fZ', MIN(julianday('now') + {pause} / 86400000.0, \
             julianday({since}) + {cap} / 86400000.0 * {ceil}))"
        )
    }

    /// Through `julianday`, so that any ISO-8601 spelling (the `sqlite3`
    /// shell's included) orders correctly.
    fn ts_le(&self, col: &str, param: &str) -> String {
        format!("julianday({col}) <= julianday({param})")
    }

    fn epoch(&self, expr: &str) -> String {
        format!("((julianday({expr}) - 2440587.5) * 86400.0)")
    }

    fn indexed_expiry(&self, x: &str) -> (String, String) {
        (
            format!("julianday({x})"),
            "((m - 2440587.5) * 86400.0)".to_owned(),
        )
    }

    fn prefix(&self, _: Settings) -> Prefix {
        Prefix::NONE
    }

    fn claim(&self, f: &FieldSql<'_>, select_list: &str) -> String {
        let (t, pk, c) = (&f.table, &f.pk, f.cols);
        let next = c.next_attempt.quoted();
        // One arm per index (flagged rows; passed expiries), so a claim
        // never scans the table.
        let not_leased = format!("({next} IS NULL OR {le})", le = self.ts_le(&next, "$1"));
        let flagged = format!(
            "SELECT k FROM (SELECT {pk} AS k FROM {t} WHERE {needed} AND {not_leased} LIMIT $3)",
            needed = c.needed.quoted(),
        );
        let candidates = match &c.expires {
            Some(e) => {
                let e = e.quoted();
                format!(
                    "{flagged} UNION SELECT k FROM (SELECT {pk} AS k FROM {t} WHERE {e} IS NOT NULL \
                     AND {le} AND {not_leased} LIMIT $3)",
                    le = self.ts_le(&e, "$1"),
                )
            }
            None => flagged,
        };
        format!(
            "UPDATE {t} SET {next} = $2 WHERE {pk} IN (SELECT k FROM ({candidates}) LIMIT $3) \
             RETURNING {select_list}"
        )
    }

    fn table_exists(&self, table: &str) -> String {
        format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
    }

    fn refuses(&self, value: &Value) -> Option<&'static str> {
        matches!(value, Value::Float(f) if f.is_nan())
            .then_some("NaN (SQLite stores a NaN as NULL, which reads back as never calculated)")
    }

    fn bump_trigger(&self, spec: &TableSpec, f: &FieldSpec) -> SchemaObject {
        triggers::bump(spec, f)
    }

    fn insert_trigger(&self, spec: &TableSpec) -> SchemaObject {
        triggers::insert(spec)
    }

    fn guard_triggers(&self, spec: &TableSpec) -> Vec<SchemaObject> {
        triggers::guards(spec)
    }

    fn dependency_triggers(
        &self,
        spec: &TableSpec,
        f: &FieldSpec,
        catalog: &Catalog,
    ) -> Vec<SchemaObject> {
        triggers::dependencies(spec, f, catalog)
    }

    fn drop_trigger(&self, _: &Ident, name: &Ident) -> Vec<String> {
        triggers::drop(name)
    }
}
