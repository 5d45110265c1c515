//! Issue #24: schema changes that rewrite data fire no row trigger. On
//! PostgreSQL an event trigger flags the fields that read a table an
//! `ALTER TABLE` rewrote for a column's new type (`… TYPE … USING …`), in
//! the altering transaction; where it cannot be installed (no superuser)
//! `check` warns. SQLite cannot retype a column: its way, rebuilding the
//! table, drops the table's triggers, which `check` reports and `migrate`
//! repairs, flagging what they guard.

mod common;

use cached_fields::{Backend, BoxError, Cached, CachedModel, Conn, Ctx, Db, Registry, Worker};
use common::{on_both, per_backend, scalar};

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lampposts")]
struct Lamp {
    id: i64,
    weight: i64,
    #[cached(depends_on("weight", "pigeons(lamppost_id).weight"))]
    total_weight: Cached<i64>,
}

impl Lamp {
    async fn calculate_total_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let sql =
            "SELECT CAST(COALESCE(SUM(weight), 0) AS BIGINT) FROM pigeons WHERE lamppost_id = $1";
        let pigeons: i64 = match ctx.conn().await? {
            Conn::Sqlite(c) => sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?,
            _ => unreachable!(),
        };
        Ok(self.weight + pigeons)
    }
}

fn registry() -> Registry {
    Registry::new().register::<Lamp>().unwrap()
}

async fn flagged(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM lampposts WHERE total_weight_recalculation_needed",
    )
    .await
}

/// Lampposts whose stored total is not their weight plus their pigeons'.
async fn wrong(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM lampposts l WHERE l.total_weight_recalculation_needed \
         OR l.cached_total_weight IS DISTINCT FROM l.weight + \
         (SELECT COALESCE(SUM(p.weight), 0) FROM pigeons p WHERE p.lamppost_id = l.id)",
    )
    .await
}

async fn drain(db: &Db) -> u64 {
    Worker::new(db.clone(), registry())
        .drain()
        .await
        .unwrap()
        .recalculated
}

/// Fifty lampposts with two pigeons each, all calculated.
async fn setup(db: &Db) {
    let pk = common::pk(db);
    common::exec_text(
        db,
        format!(
            "CREATE TABLE lampposts (id {pk}, weight BIGINT NOT NULL);
             CREATE TABLE pigeons (id {pk}, lamppost_id BIGINT NOT NULL REFERENCES lampposts(id),
               weight BIGINT NOT NULL);"
        ),
    )
    .await;
    registry().migrate(db).await.unwrap();
    let inserts: String = (1..=50)
        .map(|i| {
            format!(
                "INSERT INTO lampposts (id, weight) VALUES ({i}, {i});
                 INSERT INTO pigeons (id, lamppost_id, weight) VALUES ({a}, {i}, 1), ({b}, {i}, 2);",
                a = 2 * i,
                b = 2 * i + 1
            )
        })
        .collect();
    common::exec_text(db, inserts).await;
    assert_eq!(drain(db).await, 50);
    assert_eq!(wrong(db).await, 0);
}

per_backend! {
    async fn a_column_rewritten_by_a_schema_change_is_recalculated() {
        on_both("rewrite", |db, url| async move {
            setup(&db).await;
            assert!(registry().check(&db).await.unwrap().is_empty());
            match db.backend() {
                Backend::Postgres => {
                    // A schema change that adds a column rewrites nothing
                    // any field reads: nothing is flagged.
                    common::exec_text(&db, "ALTER TABLE pigeons ADD COLUMN note TEXT".to_owned()).await;
                    assert_eq!(flagged(&db).await, 0);
                    // The change: every pigeon's weight doubled by
                    // the rewrite, no row trigger fired. Every lamppost is
                    // flagged in the altering transaction.
                    common::exec_text(
                        &db,
                        "ALTER TABLE pigeons ALTER COLUMN weight TYPE BIGINT USING weight * 2".to_owned(),
                    )
                    .await;
                    assert_eq!(flagged(&db).await, 50);
                    // Rolled back, it flags nothing.
                    common::exec_text(
                        &db,
                        "BEGIN; ALTER TABLE pigeons ALTER COLUMN weight TYPE BIGINT USING weight + 1; \
                         ROLLBACK;"
                            .to_owned(),
                    )
                    .await;
                    assert_eq!(drain(&db).await, 50);
                    assert_eq!(wrong(&db).await, 0);
                    assert!(registry().check(&db).await.unwrap().is_empty());
                    // Without a superuser the event triggers cannot be
                    // installed: `check` warns (and does not fail), naming
                    // what is not seen.
                    common::exec_text(&db, "SELECT 1".to_owned()).await;
                    let names: Vec<String> = on_pool!(&db, |p| sqlx::query_scalar(
                        "SELECT evtname::text FROM pg_event_trigger ORDER BY 1"
                    )
                    .fetch_all(p)
                    .await
                    .unwrap());
                    assert_eq!(names.len(), 2, "{names:?}");
                    for n in &names {
                        common::exec_text(&db, format!("DROP EVENT TRIGGER \"{n}\"")).await;
                    }
                    let role = format!("cf_plain_{}", std::process::id());
                    common::exec_text(&db, format!("CREATE ROLE {role} LOGIN")).await;
                    let (base, rest) = url.split_once("postgres@").unwrap();
                    let plain = Db::connect(&format!("{base}{role}@{rest}")).await.unwrap();
                    let problems = registry().check(&plain).await.unwrap();
                    assert_eq!(problems.len(), 2, "{problems:?}");
                    assert!(problems.iter().all(cached_fields::schema::Problem::is_warning), "{problems:?}");
                    let text = problems[0].to_string();
                    assert!(text.contains("superuser") && text.contains("USING"), "{text}");
                    let done = registry().migrate(&plain).await.unwrap();
                    assert!(done.is_empty() && done.warnings.len() == 2, "{done:?}");
                    plain.close().await;
                    common::exec_text(&db, format!("DROP ROLE {role}")).await;
                    // A superuser's migrate puts them back.
                    let done = registry().migrate(&db).await.unwrap();
                    assert_eq!(done.changes.len(), 2, "{done:?}");
                    assert!(registry().check(&db).await.unwrap().is_empty());
                }
                _ => {
                    // SQLite retypes a column by rebuilding its table: the
                    // new table has none of the old one's triggers.
                    common::exec_text(
                        &db,
                        "PRAGMA foreign_keys = OFF; BEGIN;
                         CREATE TABLE pigeons_new (id INTEGER PRIMARY KEY,
                           lamppost_id BIGINT NOT NULL REFERENCES lampposts(id), weight BIGINT NOT NULL);
                         INSERT INTO pigeons_new SELECT id, lamppost_id, weight * 2 FROM pigeons;
                         DROP TABLE pigeons; ALTER TABLE pigeons_new RENAME TO pigeons;
                         COMMIT; PRAGMA foreign_keys = ON;"
                            .to_owned(),
                    )
                    .await;
                    assert_eq!(flagged(&db).await, 0, "no trigger saw the rewrite");
                    let problems = registry().check(&db).await.unwrap();
                    assert!(
                        problems.iter().any(|p| p.table == "pigeons" && !p.is_warning()),
                        "check reports the rebuilt table's missing triggers: {problems:?}"
                    );
                    let done = registry().migrate(&db).await.unwrap();
                    assert_eq!(done.flagged.iter().map(|f| f.rows).sum::<u64>(), 50, "{done:?}");
                    assert_eq!(drain(&db).await, 50);
                    assert_eq!(wrong(&db).await, 0);
                }
            }
        })
        .await;
    }
}
