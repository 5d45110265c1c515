//! SQLite, the embedded default.

#[cfg(feature = "sqlite")]
pub(crate) mod driver;
pub(crate) mod triggers;

use crate::backend::{Backend, Dialect, Introspection, Settings};
use crate::ident::Ident;
use crate::model::FieldColumns;
use crate::schema::{FieldSpec, SchemaObject, TableSpec, TriggerInfo, normalize};
use crate::statements::{FieldSql, Prefix};
use crate::triggers::{Catalog, Reach};
use crate::value::{SqlType, Value};

/// SQLite's dialect.
#[derive(Debug)]
pub(crate) struct Sqlite;

impl Dialect for Sqlite {
    fn writes_in_one_transaction(&self) -> bool {
        true
    }

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

    /// Each arm reads at most four batches of candidates from its index
    /// (flagged rows; passed expiries), so a claim never scans the table,
    /// and passes over a candidate a leader has due (it goes with the
    /// leader's batch).
    fn claim(
        &self,
        f: &FieldSql<'_>,
        select_list: &str,
        with: &[&FieldColumns],
        pass: &crate::statements::PassOver<'_>,
    ) -> String {
        let (t, pk, c) = (&f.table, &f.pk, f.cols);
        let next = c.next_attempt.quoted();
        let led = crate::statements::led(Backend::Sqlite, pass);
        let not_leased = crate::statements::not_waiting(Backend::Sqlite, &next, "$1");
        let flagged = format!(
            "SELECT k, led FROM (SELECT {pk} AS k, {led} AS led FROM {t} WHERE {needed} AND {not_leased} \
             LIMIT $3 * 4)",
            needed = c.needed.quoted(),
        );
        let candidates = match &c.expires {
            Some(e) => {
                let e = e.quoted();
                format!(
                    "{flagged} UNION ALL SELECT k, led FROM (SELECT {pk} AS k, {led} AS led FROM {t} \
                     WHERE {e} IS NOT NULL AND {le} AND {not_leased} LIMIT $3 * 4)",
                    le = self.ts_le(&e, "$1"),
                )
            }
            None => flagged,
        };
        format!(
            "UPDATE {t} SET {next} = $2{also} WHERE {pk} IN (SELECT k FROM ({candidates}) \
             WHERE NOT led LIMIT $3) RETURNING {select_list}",
            also = crate::statements::lease_also(Backend::Sqlite, with),
        )
    }

    fn table_exists(&self, table: &str) -> String {
        format!("SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = '{table}'")
    }

    /// `SQLITE_BUSY` (5), `SQLITE_LOCKED` (6) and their extended codes.
    fn is_transient(&self, code: &str) -> bool {
        matches!(code, "5" | "6" | "517" | "262")
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

    fn dependency_triggers(&self, spec: &TableSpec, f: &FieldSpec) -> Vec<SchemaObject> {
        triggers::dependencies(spec, f)
    }

    fn related_triggers(&self, reaches: &[Reach<'_>], catalog: &Catalog) -> Vec<SchemaObject> {
        triggers::related(reaches, catalog)
    }

    fn drop_trigger(&self, _: &Ident, name: &Ident) -> Vec<String> {
        triggers::drop(name)
    }

    fn drop_trigger_only(&self, _: &Ident, name: &Ident) -> String {
        format!("DROP TRIGGER IF EXISTS {}", name.quoted())
    }

    fn stale_since_column(&self) -> (&'static str, &'static str) {
        ("TIMESTAMP", "")
    }

    /// By type affinity, which is all SQLite's columns have.
    fn same_type(&self, declared: &str, actual: &str) -> bool {
        affinity(declared) == affinity(actual)
    }

    fn nulls_first(&self, col: &str) -> String {
        // NULLs sort first in SQLite.
        col.to_owned()
    }

    fn create_index(&self, n: &str, t: &str, expr: &str, cond: &str) -> Vec<String> {
        vec![format!(
            "CREATE INDEX IF NOT EXISTS {n} ON {t} ({} {expr}) WHERE {cond}",
            triggers::MARKER
        )]
    }

    fn introspect(&self) -> Introspection {
        Introspection {
            columns: "SELECT name, type FROM pragma_table_info($1)",
            indexes: "SELECT name, tbl_name, COALESCE(sql, '') FROM sqlite_master WHERE type = 'index'",
            triggers: "SELECT name, tbl_name, sql FROM sqlite_master WHERE type = 'trigger'",
            trigger_columns: 3,
            foreign_keys: "SELECT \"from\", \"table\", COALESCE(\"to\", '') FROM pragma_foreign_key_list($1)",
            keys: Some([
                "SELECT \"wr\" FROM pragma_table_list WHERE \"schema\" = 'main' AND \"name\" = $1",
                "SELECT il.\"name\", il.\"origin\", ii.\"name\" FROM pragma_index_list($1) AS il \
                 JOIN pragma_index_info(il.\"name\") AS ii WHERE il.\"unique\" = 1 \
                 ORDER BY il.\"origin\" <> 'pk', il.\"name\", ii.\"seqno\"",
            ]),
            event_triggers: None,
            superuser: None,
        }
    }

    fn is_ours(&self, source: &str) -> bool {
        source.contains(triggers::MARKER)
    }

    fn index_is_ours(&self, extra: &str) -> bool {
        extra.contains(triggers::MARKER)
    }

    fn trigger_info(&self, row: &[String]) -> Option<(String, TriggerInfo)> {
        let [name, table, sql] = row else { return None };
        Some((
            name.clone(),
            TriggerInfo {
                table: table.clone(),
                definition: normalize(sql),
                ours: sql.contains(triggers::MARKER),
                always: true,
                changed_by_hand: false,
            },
        ))
    }
}

/// SQLite's type affinity of a declared column type (section 3.1 of its
/// datatype documentation).
fn affinity(declared: &str) -> &'static str {
    let t = declared.to_ascii_uppercase();
    if t.contains("INT") {
        "INTEGER"
    } else if t.contains("CHAR") || t.contains("CLOB") || t.contains("TEXT") {
        "TEXT"
    } else if t.contains("BLOB") || t.is_empty() {
        "BLOB"
    } else if t.contains("REAL") || t.contains("FLOA") || t.contains("DOUB") {
        "REAL"
    } else {
        "NUMERIC"
    }
}
