//! PostgreSQL, the scale-out engine.

#[cfg(feature = "postgres")]
pub(crate) mod driver;
pub(crate) mod triggers;

use std::fmt::Write as _;

use crate::backend::{ClaimFrom, Dialect, Introspection, Settings};
use crate::ident::Ident;
use crate::model::FieldColumns;
use crate::schema::{FieldSpec, SchemaObject, TableSpec, TriggerInfo, normalize};
use crate::statements::{FieldSql, Prefix, not_waiting};
use crate::triggers::{Catalog, Reach};
use crate::value::{SqlType, Value};

/// PostgreSQL's dialect.
#[derive(Debug)]
pub(crate) struct Postgres;

impl Dialect for Postgres {
    fn writes_in_one_transaction(&self) -> bool {
        false
    }

    fn name(&self) -> &'static str {
        "PostgreSQL"
    }

    fn column_type(&self, ty: SqlType) -> &'static str {
        match ty {
            SqlType::Int => "BIGINT",
            SqlType::Float => "DOUBLE PRECISION",
            SqlType::Bool => "BOOLEAN",
            SqlType::Text => "TEXT",
            SqlType::Date => "DATE",
            SqlType::Time => "TIME",
            SqlType::Timestamp => "TIMESTAMPTZ",
            SqlType::Json => "JSONB",
            #[cfg(feature = "uuid")]
            SqlType::Uuid => "UUID",
        }
    }

    fn now_plus(&self, ms: i64) -> String {
        format!("(clock_timestamp() + interval '{ms} milliseconds')")
    }

    fn hot_until(&self, since: &str, next: &str, pause: i64, cap: i64) -> String {
        format!(
            "LEAST(clock_timestamp() + interval '{pause} milliseconds', \
             {since} + interval '{cap} milliseconds' * \
             GREATEST(1, ceil(EXTRACT(EPOCH FROM {next} - {since}) * 1000 / {cap} - 0.001)))"
        )
    }

    fn ts_le(&self, col: &str, param: &str) -> String {
        format!("{col} <= {param}")
    }

    fn epoch(&self, expr: &str) -> String {
        format!("CAST(EXTRACT(EPOCH FROM {expr}) AS DOUBLE PRECISION)")
    }

    fn indexed_expiry(&self, x: &str) -> (String, String) {
        (x.to_owned(), self.epoch("m"))
    }

    /// A `WITH` that sets the settings for the statement's transaction
    /// (`set_config(…, true)`), and a `FROM` item that makes the statement
    /// evaluate it before it produces (and locks) any row. The worker's
    /// transactions commit without waiting for the disk (a claim or a
    /// write-back lost in a server crash only leaves its rows due again)
    /// and give up on a row lock held over 100 ms rather than risk a
    /// deadlock in which an application's transaction would be the one
    /// aborted.
    fn prefix(&self, settings: Settings) -> Prefix {
        let with = match settings {
            Settings::None => return Prefix::NONE,
            Settings::Worker => {
                "WITH cf_settings AS MATERIALIZED (SELECT set_config('synchronous_commit', 'off', true), \
                 set_config('lock_timeout', '100ms', true), set_config('cached_fields.worker', 'on', true)) "
            }
            Settings::Marked => {
                "WITH cf_settings AS MATERIALIZED (SELECT set_config('cached_fields.worker', 'on', true)) "
            }
        };
        Prefix {
            with,
            also: ", cf_settings",
            from: " FROM cf_settings",
        }
    }

    /// (Its rows are locked as they are read: it takes no leaders' rows
    /// into account, which a pool of one connection, the one case it
    /// serves, leaves to the chain.)
    fn claim(
        &self,
        f: &FieldSql<'_>,
        select_list: &str,
        with: &[&FieldColumns],
        _pass: &crate::statements::PassOver<'_>,
    ) -> String {
        let (t, pk, c) = (&f.table, &f.pk, f.cols);
        let next = c.next_attempt.quoted();
        let list = if select_list == "*" {
            format!("{t}.*")
        } else {
            select_list.to_owned()
        };
        // Each arm walks its own index in order and stops after a batch
        // (flagged rows by next attempt; expiries by time), so a claim
        // costs the same on a table of any size.
        let not_leased = not_waiting(crate::Backend::Postgres, &next, "$1");
        let flagged = format!(
            "SELECT k FROM (SELECT {pk} AS k FROM {t} WHERE {needed} AND {not_leased} \
             ORDER BY {next} NULLS FIRST LIMIT $3 FOR UPDATE SKIP LOCKED) AS cf_flagged",
            needed = c.needed.quoted(),
        );
        let candidates = match &c.expires {
            Some(e) => {
                let e = e.quoted();
                format!(
                    "{flagged} UNION SELECT k FROM (SELECT {pk} AS k FROM {t} \
                     WHERE {e} IS NOT NULL AND {e} <= $1 AND {not_leased} \
                     ORDER BY {e} LIMIT $3 FOR UPDATE SKIP LOCKED) AS cf_expired"
                )
            }
            None => flagged,
        };
        let p = self.prefix(Settings::Worker);
        format!(
            "{with}UPDATE {t} SET {next} = $2{companions} FROM (SELECT k FROM ({candidates}) AS cf_all LIMIT $3) \
             AS cf_due{also} WHERE {t}.{pk} = cf_due.k RETURNING {list}",
            with = p.with,
            also = p.also,
            companions = crate::statements::lease_also(crate::Backend::Postgres, with),
        )
    }

    /// Advisory locks scoped to the claiming transaction, one per (field,
    /// key): no row version is written, a killed worker's locks die with its
    /// connection, and no application write ever waits on one. Each arm
    /// reads at most four batches of candidates in its index's order (a
    /// bound however the planner runs the filter, and whatever the rows'
    /// other fields), and the lock is tried on candidates in turn until a
    /// batch is held; a candidate a leader has due is passed over (it goes
    /// with the leader's batch). Rows flagged and not backing off are read
    /// in the order they were flagged (`F_stale_since`, then key), from
    /// where `from` says: a claim does not walk
    /// again the index entries of the row versions stored before it (dead
    /// until a vacuum), whatever their number.
    fn lock_claim(
        &self,
        f: &FieldSql<'_>,
        pass: &crate::statements::PassOver<'_>,
        companions: &[FieldSql<'_>],
        from: ClaimFrom,
    ) -> Option<String> {
        let (t, pk, c) = (&f.table, &f.pk, f.cols);
        let next = c.next_attempt.quoted();
        let led = crate::statements::led(crate::Backend::Postgres, pass);
        let (needed, since) = (c.needed.quoted(), c.stale_since.quoted());
        let past = match from {
            ClaimFrom::First => String::new(),
            ClaimFrom::Time => format!(" AND {since} >= $4"),
            ClaimFrom::Row => format!(" AND ({since}, {pk}) > ($4, $5)"),
        };
        // Each companion: whether it is not waiting, read with the row
        // (`due`) and carried through the union (`dues`), then its lock
        // tried on the rows locked where so (`held`).
        let (mut due, mut dues, mut held) = (String::new(), String::new(), String::new());
        for (i, g) in companions.iter().enumerate() {
            let next = g.cols.next_attempt.quoted();
            let _ = write!(
                due,
                ", {} AS cf_due{i}",
                not_waiting(crate::Backend::Postgres, &next, "$1")
            );
            let _ = write!(dues, ", cf_due{i}");
            let _ = write!(
                held,
                ", CASE WHEN cf_due{i} THEN {lock} ELSE FALSE END",
                lock = self.try_lock(g, "k")?
            );
        }
        let arm = |name: &str, cond: &str, order: &str, fresh: bool| {
            format!(
                "SELECT k, since, led, {fresh} AS fresh{dues} FROM (SELECT {pk} AS k, {since} AS since, \
                 {led} AS led{due} FROM {t} WHERE {cond} ORDER BY {order} LIMIT $3 * 4) AS {name}"
            )
        };
        let mut candidates = vec![
            arm(
                "cf_flagged",
                &format!("{needed} AND {next} IS NULL{past}"),
                &format!("{next} NULLS FIRST, {since}, {pk}"),
                true,
            ),
            arm(
                "cf_retried",
                &format!("{needed} AND {next} <= $1"),
                &format!("{next} NULLS FIRST, {since}, {pk}"),
                false,
            ),
        ];
        if let Some(e) = &c.expires {
            let e = e.quoted();
            candidates.push(arm(
                "cf_expired",
                &format!(
                    "{e} IS NOT NULL AND {e} <= $1 AND {}",
                    not_waiting(crate::Backend::Postgres, &next, "$1")
                ),
                &e,
                false,
            ));
        }
        Some(format!(
            "SELECT k, since, fresh{held} FROM ({candidates}) AS cf_all WHERE NOT led AND {lock} LIMIT $3",
            candidates = candidates.join(" UNION ALL "),
            lock = self.try_lock(f, "k")?,
        ))
    }

    fn claims_by_lock(&self) -> bool {
        true
    }

    /// The shared lock table: `max_locks_per_transaction` × (`max_connections`
    /// + `max_prepared_transactions`) locks for every session at once.
    fn lock_table_size(&self) -> Option<&'static str> {
        Some(
            "SELECT CAST(current_setting('max_locks_per_transaction') AS BIGINT) * \
             (CAST(current_setting('max_connections') AS BIGINT) + \
             CAST(current_setting('max_prepared_transactions') AS BIGINT)), \
             'max_locks_per_transaction ' || current_setting('max_locks_per_transaction') || \
             ' × (max_connections ' || current_setting('max_connections') || \
             ' + max_prepared_transactions ' || current_setting('max_prepared_transactions') || ')'",
        )
    }

    fn try_lock(&self, f: &FieldSql<'_>, key: &str) -> Option<String> {
        Some(format!(
            "pg_try_advisory_xact_lock({ns}, hashtext(CAST({key} AS TEXT)))",
            ns = f.lock_namespace(),
        ))
    }

    fn table_exists(&self, table: &str) -> String {
        format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM (SELECT to_regclass('{table}') AS t) AS r WHERE t IS NOT NULL"
        )
    }

    /// Class 08 (connection exception), 57P01..57P03 (admin shutdown,
    /// crash shutdown, cannot connect now), 40001/40P01 (serialization,
    /// deadlock), 55P03 (lock not available: a `lock_timeout`).
    fn is_transient(&self, code: &str) -> bool {
        matches!(code, "40001" | "40P01" | "55P03")
            || code.starts_with("08")
            || code.starts_with("57P")
    }

    /// "cached plan must not change result type".
    fn is_stale_plan(&self, e: &sqlx::Error) -> bool {
        match e {
            sqlx::Error::Database(d) => {
                d.code().as_deref() == Some("0A000")
                    && d.message()
                        .contains("cached plan must not change result type")
            }
            _ => false,
        }
    }

    fn refuses(&self, _: &Value) -> Option<&'static str> {
        None
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

    fn ddl_triggers(&self, specs: &[TableSpec]) -> Vec<SchemaObject> {
        triggers::ddl(specs)
    }

    fn lock_holders(&self, tables: &[&Ident]) -> Option<String> {
        let rels: Vec<String> = tables
            .iter()
            .map(|t| format!("to_regclass('{}')", t.quoted()))
            .collect();
        Some(format!(
            "SELECT DISTINCT CAST(a.pid AS BIGINT), COALESCE(a.state, ''), \
             left(regexp_replace(COALESCE(a.query, ''), '\\s+', ' ', 'g'), 200) \
             FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid \
             WHERE l.granted AND a.pid <> pg_backend_pid() AND (l.relation IN ({}) \
             OR (l.locktype = 'advisory' AND l.objid = {})) ORDER BY 1",
            if rels.is_empty() {
                "NULL".to_owned()
            } else {
                rels.join(", ")
            },
            driver::MIGRATION_LOCK,
        ))
    }

    fn is_ours(&self, source: &str) -> bool {
        source.contains(triggers::MARKER)
    }

    fn drop_trigger(&self, table: &Ident, name: &Ident) -> Vec<String> {
        triggers::drop(table, name)
    }

    fn drop_trigger_only(&self, table: &Ident, name: &Ident) -> String {
        format!(
            "DROP TRIGGER IF EXISTS {} ON {}",
            name.quoted(),
            table.quoted()
        )
    }

    fn stale_since_column(&self) -> (&'static str, &'static str) {
        ("TIMESTAMPTZ", " DEFAULT now()")
    }

    /// By the canonical name (`format_type`).
    fn same_type(&self, declared: &str, actual: &str) -> bool {
        let canonical = match declared {
            "BIGINT" => "bigint",
            "BOOLEAN" => "boolean",
            "TEXT" => "text",
            "DOUBLE PRECISION" => "double precision",
            "REAL" => "real",
            "DATE" => "date",
            "TIME" => "time without time zone",
            "TIMESTAMPTZ" => "timestamp with time zone",
            "TIMESTAMP" => "timestamp without time zone",
            "JSONB" => "jsonb",
            "UUID" => "uuid",
            other => other,
        };
        canonical.eq_ignore_ascii_case(actual)
    }

    fn nulls_first(&self, col: &str) -> String {
        format!("{col} NULLS FIRST")
    }

    fn create_index(&self, n: &str, t: &str, expr: &str, cond: &str) -> Vec<String> {
        vec![
            format!("CREATE INDEX IF NOT EXISTS {n} ON {t} ({expr}) WHERE {cond}"),
            format!("COMMENT ON INDEX {n} IS '{}'", triggers::COMMENT),
        ]
    }

    fn introspect(&self) -> Introspection {
        Introspection {
            columns: "SELECT attname::text, format_type(atttypid, atttypmod) FROM pg_attribute \
                WHERE attrelid = to_regclass(quote_ident($1)) AND attnum > 0 AND NOT attisdropped",
            indexes: "SELECT i.relname::text, t.relname::text, COALESCE(obj_description(i.oid, 'pg_class'), '') \
                FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid \
                WHERE t.relnamespace = current_schema()::regnamespace",
            triggers: "SELECT t.tgname::text, c.relname::text, p.prosrc, t.tgenabled::text, \
                COALESCE(obj_description(t.oid, 'pg_trigger'), ''), md5(pg_get_triggerdef(t.oid)) \
                FROM pg_trigger t JOIN pg_proc p ON p.oid = t.tgfoid JOIN pg_class c ON c.oid = t.tgrelid \
                WHERE c.relnamespace = current_schema()::regnamespace AND NOT t.tgisinternal",
            trigger_columns: 6,
            foreign_keys: "SELECT a.attname::text, rc.relname::text, COALESCE(ra.attname::text, '') \
                FROM pg_constraint c \
                JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1] \
                JOIN pg_class rc ON rc.oid = c.confrelid \
                LEFT JOIN pg_attribute ra ON ra.attrelid = c.confrelid AND ra.attnum = c.confkey[1] \
                WHERE c.contype = 'f' AND c.conrelid = to_regclass(quote_ident($1)) \
                AND array_length(c.conkey, 1) = 1",
            keys: None,
            event_triggers: Some(
                "SELECT e.evtname::text, p.prosrc, e.evtenabled::text, \
                 COALESCE(obj_description(e.oid, 'pg_event_trigger'), '') \
                 FROM pg_event_trigger e JOIN pg_proc p ON p.oid = e.evtfoid",
            ),
            superuser: Some(
                "SELECT CAST(CASE WHEN rolsuper THEN 1 ELSE 0 END AS BIGINT) FROM pg_roles \
                 WHERE rolname = current_user",
            ),
        }
    }

    fn index_is_ours(&self, extra: &str) -> bool {
        extra == triggers::COMMENT
    }

    fn trigger_info(&self, row: &[String]) -> Option<(String, TriggerInfo)> {
        let [name, table, src, enabled, comment, digest] = row else {
            return None;
        };
        Some((
            name.clone(),
            TriggerInfo {
                table: table.clone(),
                definition: normalize(src),
                ours: src.contains(triggers::MARKER),
                always: enabled == "A",
                changed_by_hand: *comment != format!("{} {digest}", triggers::COMMENT),
            },
        ))
    }
}
