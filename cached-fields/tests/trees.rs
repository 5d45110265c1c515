//! Issue #24: trees of any depth drain in linear work. A chain of nodes,
//! each reading its parent's cached path, inserted at once, is calculated
//! top-down with each node calculated once and at most one wait per node,
//! whichever order its rows were flagged in; every node of a cycle in the
//! data is reported failing, not only the one that closed it.

mod common;

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};

use cached_fields::{BoxError, Cached, CachedModel, Conn, Ctx, Db, Registry, Worker};
use common::{on_both, per_backend, scalar};

static CALLS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// The name of every node of this test's backend (calculations run in
/// tasks of their own: the test's backend is in the rows, not the task).
fn name() -> String {
    common::scoped("n").to_lowercase()
}

/// Calculations of this backend's nodes so far.
fn calls() -> u64 {
    CALLS.lock().unwrap().get(&name()).copied().unwrap_or(0)
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "nodes")]
struct Node {
    id: i64,
    name: String,
    #[cached(depends_on("name", "parent_id->nodes.path"))]
    path: Cached<String>,
}

impl Node {
    async fn calculate_path(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        *CALLS
            .lock()
            .unwrap()
            .entry(self.name.to_lowercase())
            .or_default() += 1;
        let sql =
            "SELECT p.cached_path FROM nodes n JOIN nodes p ON p.id = n.parent_id WHERE n.id = $1";
        let parent: Option<Option<String>> = match ctx.conn().await? {
            Conn::Sqlite(c) => {
                sqlx::query_scalar(sql)
                    .bind(self.id)
                    .fetch_optional(c)
                    .await?
            }
            Conn::Postgres(c) => {
                sqlx::query_scalar(sql)
                    .bind(self.id)
                    .fetch_optional(c)
                    .await?
            }
            _ => unreachable!(),
        };
        // The root's name, then a dash per level: short for deep chains.
        Ok(match parent {
            None => self.name.clone(),
            Some(p) => format!("{}-", p.unwrap_or_default()),
        })
    }
}

fn registry() -> Registry {
    Registry::new().register::<Node>().unwrap()
}

async fn create(db: &Db) {
    common::exec_text(
        db,
        format!(
            "CREATE TABLE nodes (id {}, parent_id BIGINT REFERENCES nodes(id), name TEXT NOT NULL)",
            common::pk(db)
        ),
    )
    .await;
    registry().migrate(db).await.unwrap();
}

async fn drain(db: &Db) -> cached_fields::Stats {
    Worker::new(db.clone(), registry()).drain().await.unwrap()
}

/// Nodes whose stored path is not their root's name then a dash per
/// level, or that are still flagged.
async fn wrong(db: &Db) -> i64 {
    scalar(
        db,
        "WITH RECURSIVE up(id, depth, root) AS (SELECT id, 0, name FROM nodes WHERE parent_id IS NULL \
         UNION ALL SELECT n.id, up.depth + 1, up.root FROM nodes n JOIN up ON n.parent_id = up.id) \
         SELECT CAST(COUNT(*) AS BIGINT) FROM nodes n JOIN up ON up.id = n.id \
         WHERE n.path_recalculation_needed OR n.cached_path IS NULL \
         OR LENGTH(n.cached_path) <> LENGTH(up.root) + up.depth \
         OR SUBSTR(n.cached_path, 1, LENGTH(up.root)) <> up.root",
    )
    .await
}

const DEPTH: i64 = 600;

per_backend! {
    threads = 4;
    async fn a_deep_chain_drains_once_per_node_and_a_cycle_fails_every_node() {
        on_both("chain", |db, _| async move {
            create(&db).await;
            // Inserted at once, root first: flagged top-down.
            common::exec_text(
                &db,
                format!(
                    "INSERT INTO nodes (id, parent_id, name) VALUES (1, NULL, '{n}');
                     WITH RECURSIVE s(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM s WHERE i < {DEPTH})
                     INSERT INTO nodes (id, parent_id, name) SELECT i, i - 1, '{n}' FROM s;",
                    n = name()
                ),
            )
            .await;
            let before = calls();
            let stats = drain(&db).await;
            if stats.field_failures > 0 {
                eprintln!("{:?}", registry().status(&db).await.unwrap());
            }
            assert_eq!(calls() - before, DEPTH as u64, "each node once: {stats:?}");
            assert_eq!(stats.recalculated, DEPTH as u64, "{stats:?}");
            assert!(stats.deferred <= DEPTH as u64, "at most one wait per node: {stats:?}");
            assert_eq!(wrong(&db).await, 0);
            // Flagged bottom-up: the leaf first, the root last.
            common::exec_text(&db, "UPDATE nodes SET parent_id = NULL; DELETE FROM nodes;".to_owned()).await;
            common::exec_text(
                &db,
                format!(
                    "WITH RECURSIVE s(i) AS (SELECT {DEPTH} UNION ALL SELECT i - 1 FROM s WHERE i > 1)
                     INSERT INTO nodes (id, parent_id, name) SELECT i, NULL, '{n}' FROM s;
                     UPDATE nodes SET parent_id = id - 1 WHERE id > 1;",
                    n = name()
                ),
            )
            .await;
            let before = calls();
            let stats = drain(&db).await;
            assert_eq!(calls() - before, DEPTH as u64, "each node once: {stats:?}");
            assert!(stats.deferred <= DEPTH as u64, "at most one wait per node: {stats:?}");
            assert_eq!(wrong(&db).await, 0);
            // A rename at the top: every node below recalculated once.
            common::exec_text(&db, format!("UPDATE nodes SET name = '{}' WHERE id = 1", name().to_uppercase())).await;
            let before = calls();
            let stats = drain(&db).await;
            assert_eq!(calls() - before, DEPTH as u64, "{stats:?}");
            assert_eq!(wrong(&db).await, 0);
            // Cycles, on the same table emptied.
            common::exec_text(&db, "UPDATE nodes SET parent_id = NULL; DELETE FROM nodes;".to_owned()).await;
            every_node_of_a_cycle_is_reported_failing(db.clone()).await;
        })
        .await;
    }
}

/// Rows failing, and whether each names a cycle.
async fn failing(db: &Db) -> Vec<(i64, String)> {
    let q = "SELECT id, COALESCE(path_last_error, '') FROM nodes WHERE path_recalculation_needed \
             AND path_attempts > 0 ORDER BY id";
    on_pool!(db, |p| sqlx::query_as(q).fetch_all(p).await.unwrap())
}

/// Every node of a cycle in the data is reported failing (on a fresh
/// table).
async fn every_node_of_a_cycle_is_reported_failing(db: Db) {
    {
        {
            let db = &db;
            let db = db.clone();
            // Three nodes pointing at each other, all new.
            common::exec_text(
                &db,
                "INSERT INTO nodes (id, parent_id, name) VALUES (1, NULL, 'root'), (2, NULL, 'a'),
                   (3, NULL, 'b'), (4, NULL, 'c');
                 UPDATE nodes SET parent_id = 3 WHERE id = 2; UPDATE nodes SET parent_id = 4 WHERE id = 3;
                 UPDATE nodes SET parent_id = 2 WHERE id = 4;"
                    .to_owned(),
            )
            .await;
            let stats = drain(&db).await;
            let f = failing(&db).await;
            assert_eq!(
                f.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                vec![2, 3, 4],
                "{f:?} {stats:?}"
            );
            assert!(f.iter().all(|(_, e)| e.contains("cycle")), "{f:?}");
            // A loop closed among calculated nodes: every node on it fails.
            common::exec_text(
                &db,
                "UPDATE nodes SET parent_id = NULL WHERE id = 2;
                 INSERT INTO nodes (id, parent_id, name) VALUES (5, 1, 'd'), (6, 5, 'e'), (7, 6, 'f');"
                    .to_owned(),
            )
            .await;
            // The retries of the old cycle's rows come after their backoff.
            tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
            drain(&db).await;
            assert!(failing(&db).await.is_empty(), "{:?}", failing(&db).await);
            assert_eq!(wrong(&db).await, 0);
            common::exec_text(
                &db,
                "UPDATE nodes SET parent_id = 7 WHERE id = 5".to_owned(),
            )
            .await;
            drain(&db).await;
            let f = failing(&db).await;
            assert_eq!(
                f.iter().map(|(id, _)| *id).collect::<Vec<_>>(),
                vec![5, 6, 7],
                "{f:?}"
            );
        }
    }
}
