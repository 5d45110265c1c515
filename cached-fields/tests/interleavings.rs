//! Issue #24: correct under every interleaving. Two connections drive two
//! transactions step by step along every kind of path — one writing the
//! far end (a renamed street, a reweighed bird), the other moving a hop
//! nearer the field (a lamp moved onto the street, a bird landing on a
//! lamp) — in each order of writes and commits, with the worker
//! recalculating between the two commits; then every stored value must
//! equal a recomputation from the tables, and none may be left flagged.
//! A key swap, and random concurrent writers, end the same way. Each test
//! runs on SQLite (where writers take turns) and on PostgreSQL (READ
//! COMMITTED, where they do not).

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use cached_fields::{Backend, BoxError, Cached, CachedModel, Conn, Ctx, Db, Registry, Worker};
use common::{on_both, per_backend};
use tokio::sync::{mpsc, oneshot};

/// One value computed by `$sql` for the row `$id` (`$1`), on either backend.
macro_rules! one {
    ($ctx:expr, $sql:expr, $id:expr) => {
        match $ctx.conn().await? {
            Conn::Sqlite(c) => sqlx::query_scalar($sql).bind($id).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar($sql).bind($id).fetch_one(c).await?,
            _ => unreachable!("two backends in the tests"),
        }
    };
}

const STREET_NAME: &str = "SELECT s.name FROM birds b JOIN lamps l ON l.id = b.lamp_id \
     JOIN streets s ON s.id = l.street_id WHERE b.id = $1";
const CITY_NAME: &str = "SELECT c.name FROM birds b JOIN lamps l ON l.id = b.lamp_id \
     JOIN streets s ON s.id = l.street_id JOIN cities c ON c.id = s.city_id WHERE b.id = $1";
const FLOCK: &str = "SELECT CAST(COALESCE(SUM(o.weight), 0) AS BIGINT) FROM birds b \
     JOIN birds o ON o.lamp_id = b.lamp_id WHERE b.id = $1";
const TAG_LENGTH: &str = "SELECT CAST(COALESCE(SUM(LENGTH(t.name)), 0) AS BIGINT) FROM bird_tags bt \
     JOIN tags t ON t.id = bt.tag_id WHERE bt.bird_id = $1";
const LAMP_WEIGHT: &str =
    "SELECT CAST(COALESCE(SUM(weight), 0) AS BIGINT) FROM birds WHERE lamp_id = $1";
const LAMP_STREET: &str =
    "SELECT s.name FROM lamps l JOIN streets s ON s.id = l.street_id WHERE l.id = $1";
const STREET_WEIGHT: &str = "SELECT CAST(COALESCE(SUM(b.weight), 0) AS BIGINT) FROM birds b \
     JOIN lamps l ON l.id = b.lamp_id WHERE l.street_id = $1";
const HEAVIEST: &str =
    "SELECT CAST(COALESCE(MAX(cached_bird_weight), 0) AS BIGINT) FROM lamps WHERE street_id = $1";
const CITY_WEIGHT: &str = "SELECT CAST(COALESCE(SUM(b.weight), 0) AS BIGINT) FROM birds b \
     JOIN lamps l ON l.id = b.lamp_id JOIN streets s ON s.id = l.street_id WHERE s.city_id = $1";
const NODE_PATH: &str = "SELECT COALESCE((SELECT p.cached_path FROM nodes p WHERE p.id = n.parent_id), '') \
     || '/' || n.name FROM nodes n WHERE n.id = $1";

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "birds")]
struct Bird {
    id: i64,
    /// Forward → forward (the issue's own example).
    #[cached(depends_on("lamp_id->lamps.street_id->streets.name"))]
    street_name: Cached<String>,
    /// Three forward hops.
    #[cached(depends_on("lamp_id->lamps.street_id->streets.city_id->cities.name"))]
    city_name: Cached<String>,
    /// Forward → reverse: every bird on the same lamp.
    #[cached(depends_on("lamp_id->lamps.birds(lamp_id).weight"))]
    flock: Cached<i64>,
    /// Many-to-many through a join table.
    #[cached(depends_on("bird_tags(bird_id).tag_id->tags.name"))]
    tag_length: Cached<i64>,
}

impl Bird {
    async fn calculate_street_name(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(one!(ctx, STREET_NAME, self.id))
    }
    async fn calculate_city_name(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(one!(ctx, CITY_NAME, self.id))
    }
    async fn calculate_flock(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, FLOCK, self.id))
    }
    async fn calculate_tag_length(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, TAG_LENGTH, self.id))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lamps")]
struct Lamp {
    id: i64,
    /// Reverse.
    #[cached(depends_on("birds(lamp_id).weight"))]
    bird_weight: Cached<i64>,
    /// Forward.
    #[cached(depends_on("street_id->streets.name"))]
    street_name: Cached<String>,
}

impl Lamp {
    async fn calculate_bird_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, LAMP_WEIGHT, self.id))
    }
    async fn calculate_street_name(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(one!(ctx, LAMP_STREET, self.id))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "streets")]
struct Street {
    id: i64,
    /// Reverse → reverse.
    #[cached(depends_on("lamps(street_id).birds(lamp_id).weight"))]
    bird_weight: Cached<i64>,
    /// A cached field of another table along a path.
    #[cached(depends_on("lamps(street_id).bird_weight"))]
    heaviest: Cached<i64>,
}

impl Street {
    async fn calculate_bird_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, STREET_WEIGHT, self.id))
    }
    async fn calculate_heaviest(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, HEAVIEST, self.id))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "cities")]
struct City {
    id: i64,
    /// Three reverse hops.
    #[cached(depends_on("streets(city_id).lamps(street_id).birds(lamp_id).weight"))]
    bird_weight: Cached<i64>,
}

impl City {
    async fn calculate_bird_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, CITY_WEIGHT, self.id))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "nodes")]
struct Node {
    id: i64,
    /// A tree: the parent's cached path, then this node's name.
    #[cached(depends_on("name", "parent_id->nodes.path"))]
    path: Cached<String>,
}

impl Node {
    async fn calculate_path(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(one!(ctx, NODE_PATH, self.id))
    }
}

fn registry() -> Registry {
    Registry::new()
        .register::<Bird>()
        .unwrap()
        .register::<Lamp>()
        .unwrap()
        .register::<Street>()
        .unwrap()
        .register::<City>()
        .unwrap()
        .register::<Node>()
        .unwrap()
}

async fn create(db: &Db) {
    let pk = common::pk(db);
    let ddl = format!(
        "CREATE TABLE cities (id {pk}, name TEXT NOT NULL);
         CREATE TABLE streets (id {pk}, name TEXT NOT NULL, city_id BIGINT NOT NULL REFERENCES cities(id));
         CREATE TABLE lamps (id {pk}, street_id BIGINT NOT NULL REFERENCES streets(id));
         CREATE TABLE birds (id {pk}, lamp_id BIGINT NOT NULL REFERENCES lamps(id), weight BIGINT NOT NULL);
         CREATE TABLE tags (id {pk}, name TEXT NOT NULL);
         CREATE TABLE bird_tags (bird_id BIGINT NOT NULL REFERENCES birds(id), tag_id BIGINT NOT NULL REFERENCES tags(id));
         CREATE TABLE nodes (id {pk}, parent_id BIGINT REFERENCES nodes(id), name TEXT NOT NULL);"
    );
    common::exec_text(db, ddl).await;
    registry().migrate(db).await.unwrap();
}

/// The starting data: two cities, three streets, six lamps with two birds
/// each, three tags, and a tree of five nodes; all calculated.
async fn reset(db: &Db) {
    common::exec_text(
        db,
        "DELETE FROM bird_tags; DELETE FROM birds; DELETE FROM lamps; DELETE FROM streets;
         DELETE FROM cities; DELETE FROM tags; UPDATE nodes SET parent_id = NULL; DELETE FROM nodes;
         INSERT INTO cities (id, name) VALUES (1, 'Riga'), (2, 'Oslo');
         INSERT INTO streets (id, name, city_id) VALUES (1, 'Elm', 1), (2, 'Oak', 1), (3, 'Ash', 2);
         INSERT INTO lamps (id, street_id) VALUES (1, 1), (2, 1), (3, 2), (4, 2), (5, 3), (6, 3);
         INSERT INTO birds (id, lamp_id, weight) VALUES (1, 1, 1), (2, 1, 2), (3, 2, 3), (4, 2, 4),
           (5, 3, 5), (6, 3, 6), (7, 4, 7), (8, 4, 8), (9, 5, 9), (10, 5, 10), (11, 6, 11), (12, 6, 12);
         INSERT INTO tags (id, name) VALUES (1, 'a'), (2, 'bb'), (3, 'ccc');
         INSERT INTO bird_tags (bird_id, tag_id) VALUES (1, 1), (2, 2), (3, 3), (4, 1), (4, 2);
         INSERT INTO nodes (id, parent_id, name) VALUES (1, NULL, 'r'), (2, 1, 'x'), (3, 2, 'y'),
           (4, 1, 'z'), (5, 4, 'w');"
            .to_owned(),
    )
    .await;
    settle(db).await;
    let bad = wrong(db).await;
    assert!(bad.is_empty(), "the starting data: {bad:#?}");
}

/// Drains until a drain succeeds (a row lock held by a writer can fail
/// one on PostgreSQL: the worker gives up on a lock after 100 ms).
async fn settle(db: &Db) -> cached_fields::Stats {
    let worker = Worker::new(db.clone(), registry());
    for _ in 0..50 {
        match worker.drain().await {
            Ok(stats) => return stats,
            Err(e) => {
                eprintln!("drain: {e}; again");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    panic!("no drain succeeded");
}

/// Every field's rows whose stored value is not what a recomputation from
/// the tables gives, or that are still flagged: `(key, stored, expected,
/// flagged)` per row, all as text.
async fn wrong(db: &Db) -> Vec<String> {
    let tree = "WITH RECURSIVE up(id, p) AS (SELECT id, '/' || name FROM nodes WHERE parent_id IS NULL \
         UNION ALL SELECT n.id, up.p || '/' || n.name FROM nodes n JOIN up ON n.parent_id = up.id) ";
    let checks: Vec<(&str, String)> = vec![
        ("birds.street_name", format!("SELECT x.id, x.cached_street_name, ({}), x.street_name_recalculation_needed FROM birds x", STREET_NAME.replace("$1", "x.id"))),
        ("birds.city_name", format!("SELECT x.id, x.cached_city_name, ({}), x.city_name_recalculation_needed FROM birds x", CITY_NAME.replace("$1", "x.id"))),
        ("birds.flock", format!("SELECT x.id, CAST(x.cached_flock AS TEXT), CAST(({}) AS TEXT), x.flock_recalculation_needed FROM birds x", FLOCK.replace("$1", "x.id"))),
        ("birds.tag_length", format!("SELECT x.id, CAST(x.cached_tag_length AS TEXT), CAST(({}) AS TEXT), x.tag_length_recalculation_needed FROM birds x", TAG_LENGTH.replace("$1", "x.id"))),
        ("lamps.bird_weight", format!("SELECT x.id, CAST(x.cached_bird_weight AS TEXT), CAST(({}) AS TEXT), x.bird_weight_recalculation_needed FROM lamps x", LAMP_WEIGHT.replace("$1", "x.id"))),
        ("lamps.street_name", format!("SELECT x.id, x.cached_street_name, ({}), x.street_name_recalculation_needed FROM lamps x", LAMP_STREET.replace("$1", "x.id"))),
        ("streets.bird_weight", format!("SELECT x.id, CAST(x.cached_bird_weight AS TEXT), CAST(({}) AS TEXT), x.bird_weight_recalculation_needed FROM streets x", STREET_WEIGHT.replace("$1", "x.id"))),
        ("streets.heaviest", "SELECT x.id, CAST(x.cached_heaviest AS TEXT), CAST((SELECT COALESCE(MAX(w), 0) FROM \
             (SELECT (SELECT COALESCE(SUM(b.weight), 0) FROM birds b WHERE b.lamp_id = l.id) AS w FROM lamps l \
             WHERE l.street_id = x.id) AS ws) AS TEXT), x.heaviest_recalculation_needed FROM streets x".to_owned()),
        ("cities.bird_weight", format!("SELECT x.id, CAST(x.cached_bird_weight AS TEXT), CAST(({}) AS TEXT), x.bird_weight_recalculation_needed FROM cities x", CITY_WEIGHT.replace("$1", "x.id"))),
        ("nodes.path", format!("{tree}SELECT x.id, x.cached_path, up.p, x.path_recalculation_needed FROM nodes x JOIN up ON up.id = x.id")),
    ];
    let mut out = Vec::new();
    for (what, q) in checks {
        let rows: Vec<(i64, Option<String>, Option<String>, bool)> =
            on_pool!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(q.clone()))
                .fetch_all(p)
                .await
                .unwrap_or_else(|e| panic!("{q}: {e}")));
        out.extend(
            rows.into_iter()
                .filter(|(_, stored, expected, flagged)| *flagged || stored != expected)
                .map(|(id, s, e, f)| {
                    format!("{what} {id}: stored {s:?}, expected {e:?}, flagged {f}")
                }),
        );
    }
    out
}

/// A connection of its own, running the statements sent to it in order:
/// one side of an interleaving, whose step may wait on the other's locks.
struct Session {
    sender: mpsc::UnboundedSender<(String, oneshot::Sender<Result<(), String>>)>,
}

/// A statement sent to a [`Session`], done or still waiting.
type Pending = oneshot::Receiver<Result<(), String>>;

impl Session {
    async fn open(db: &Db) -> Session {
        let (sender, mut receiver) =
            mpsc::unbounded_channel::<(String, oneshot::Sender<Result<(), String>>)>();
        macro_rules! serve {
            ($pool:expr) => {{
                let mut conn = $pool.acquire().await.unwrap();
                tokio::spawn(async move {
                    while let Some((sql, reply)) = receiver.recv().await {
                        let done = sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
                            .execute(&mut *conn)
                            .await
                            .map(drop)
                            .map_err(|e| format!("{sql}: {e}"));
                        let _ = reply.send(done);
                    }
                });
            }};
        }
        match db {
            Db::Sqlite(p) => serve!(p),
            Db::Postgres(p) => serve!(p),
            _ => unreachable!("two backends in the tests"),
        }
        Session { sender }
    }

    fn send(&self, sql: &str) -> Pending {
        let (reply, done) = oneshot::channel();
        self.sender.send((sql.to_owned(), reply)).unwrap();
        done
    }
}

/// Waits up to `ms` for a step: `true` when it is done (and succeeded).
async fn step_done(pending: &mut Pending, ms: u64) -> bool {
    match tokio::time::timeout(Duration::from_millis(ms), &mut *pending).await {
        Ok(done) => {
            done.unwrap().unwrap();
            true
        }
        Err(_) => false,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    A,
    B,
}

#[derive(Debug, Clone, Copy)]
enum Step {
    Write(Who),
    Commit(Who),
    /// The worker recalculates what has committed, before the other commit.
    Drain,
}

use Step::{Commit, Drain, Write};
use Who::{A, B};

/// Each order of two transactions' writes and commits, with the worker
/// between the commits.
const ORDERS: [[Step; 5]; 4] = [
    [Write(A), Write(B), Commit(B), Drain, Commit(A)],
    [Write(B), Write(A), Commit(B), Drain, Commit(A)],
    [Write(A), Write(B), Commit(A), Drain, Commit(B)],
    [Write(B), Write(A), Commit(A), Drain, Commit(B)],
];

/// One interleaving: a far write, a near one, and what they exercise.
struct Scenario {
    what: &'static str,
    a: &'static str,
    b: &'static str,
}

const SCENARIOS: &[Scenario] = &[
    Scenario {
        what: "forward→forward and forward: a street renamed, a lamp moved onto it",
        a: "UPDATE streets SET name = 'Oak Lane' WHERE id = 2",
        b: "UPDATE lamps SET street_id = 2 WHERE id = 5",
    },
    Scenario {
        what: "forward→forward: a street renamed, a bird landing on a lamp of it",
        a: "UPDATE streets SET name = 'Oak Lane' WHERE id = 2",
        b: "INSERT INTO birds (id, lamp_id, weight) VALUES (100, 3, 1)",
    },
    Scenario {
        what: "forward→forward: a street renamed, a bird moving to a lamp of it",
        a: "UPDATE streets SET name = 'Oak Lane' WHERE id = 2",
        b: "UPDATE birds SET lamp_id = 3 WHERE id = 9",
    },
    Scenario {
        what: "three forward hops: a city renamed, a street moved into it",
        a: "UPDATE cities SET name = 'Riga Town' WHERE id = 1",
        b: "UPDATE streets SET city_id = 1 WHERE id = 3",
    },
    Scenario {
        what: "three forward hops: a city renamed, a lamp moved to a street of it",
        a: "UPDATE cities SET name = 'Riga Town' WHERE id = 1",
        b: "UPDATE lamps SET street_id = 1 WHERE id = 6",
    },
    Scenario {
        what: "reverse→reverse: a bird reweighed, its lamp moved to another street",
        a: "UPDATE birds SET weight = weight + 100 WHERE id = 9",
        b: "UPDATE lamps SET street_id = 1 WHERE id = 5",
    },
    Scenario {
        what: "reverse→reverse: a bird landing on a lamp, the lamp moved",
        a: "INSERT INTO birds (id, lamp_id, weight) VALUES (101, 5, 7)",
        b: "UPDATE lamps SET street_id = 1 WHERE id = 5",
    },
    Scenario {
        what: "three reverse hops: a bird reweighed, its street moved to another city",
        a: "UPDATE birds SET weight = weight + 100 WHERE id = 9",
        b: "UPDATE streets SET city_id = 1 WHERE id = 3",
    },
    Scenario {
        what: "forward→reverse: a bird reweighed, another landing beside it",
        a: "UPDATE birds SET weight = weight + 100 WHERE id = 1",
        b: "INSERT INTO birds (id, lamp_id, weight) VALUES (102, 1, 3)",
    },
    Scenario {
        what: "forward→reverse: a bird reweighed, another moving beside it",
        a: "UPDATE birds SET weight = weight + 100 WHERE id = 1",
        b: "UPDATE birds SET lamp_id = 1 WHERE id = 12",
    },
    Scenario {
        what: "many-to-many: a tag renamed, given to a bird",
        a: "UPDATE tags SET name = 'aaaa' WHERE id = 1",
        b: "INSERT INTO bird_tags (bird_id, tag_id) VALUES (5, 1)",
    },
    Scenario {
        what: "many-to-many: a tag renamed, a bird's tag changed to it",
        a: "UPDATE tags SET name = 'aaaa' WHERE id = 1",
        b: "UPDATE bird_tags SET tag_id = 1 WHERE bird_id = 2",
    },
    Scenario {
        what: "cached field on a path: a lamp moved, a bird on it reweighed",
        a: "UPDATE lamps SET street_id = 1 WHERE id = 5",
        b: "UPDATE birds SET weight = weight + 50 WHERE id = 10",
    },
    Scenario {
        what: "tree: a node renamed, a node moved under it",
        a: "UPDATE nodes SET name = 'xx' WHERE id = 2",
        b: "UPDATE nodes SET parent_id = 2 WHERE id = 5",
    },
    Scenario {
        what: "tree: a node renamed, a node added under its child",
        a: "UPDATE nodes SET name = 'xx' WHERE id = 2",
        b: "INSERT INTO nodes (id, parent_id, name) VALUES (9, 3, 'new')",
    },
];

/// Runs `scenario` in `order` on fresh data, then checks every value.
async fn interleave(db: &Db, scenario: &Scenario, order: &[Step; 5]) -> Vec<String> {
    reset(db).await;
    let begin = match db.backend() {
        Backend::Sqlite => "BEGIN IMMEDIATE",
        _ => "BEGIN",
    };
    let (a, b) = (Session::open(db).await, Session::open(db).await);
    let mut pending: Vec<(String, Pending, bool)> = Vec::new();
    let mut drains = Vec::new();
    for step in order {
        match *step {
            Write(who) => {
                let (s, sql) = if who == A {
                    (&a, scenario.a)
                } else {
                    (&b, scenario.b)
                };
                pending.push((format!("{who:?} begins"), s.send(begin), false));
                pending.push((format!("{who:?}: {sql}"), s.send(sql), false));
            }
            Commit(who) => {
                let s = if who == A { &a } else { &b };
                pending.push((format!("{who:?} commits"), s.send("COMMIT"), false));
            }
            Drain => {
                let db = db.clone();
                drains.push(tokio::spawn(async move {
                    // It may fail on a writer's lock, or wait for one
                    // (SQLite's single writer); either way it runs
                    // between the two commits.
                    let _ = Worker::new(db, registry()).drain().await;
                }));
                let mut d = drains.pop().unwrap();
                if tokio::time::timeout(Duration::from_millis(600), &mut d)
                    .await
                    .is_err()
                {
                    drains.push(d);
                }
                continue;
            }
        }
        // Each step gets a moment; one that waits on the other's locks
        // stays pending, behind the next.
        let (_, last, done) = pending.last_mut().unwrap();
        *done = step_done(last, 150).await;
    }
    for (what, mut p, done) in pending {
        assert!(
            done || step_done(&mut p, 30_000).await,
            "{what}: still waiting"
        );
    }
    for d in drains {
        d.await.unwrap();
    }
    settle(db).await;
    wrong(db).await
}

per_backend! {
    async fn every_interleaving_along_every_path_kind_ends_right() {
        on_both("interleave", |db, _| async move {
            create(&db).await;
            let mut failures = Vec::new();
            for scenario in SCENARIOS {
                for (i, order) in ORDERS.iter().enumerate() {
                    let bad = interleave(&db, scenario, order).await;
                    if !bad.is_empty() {
                        failures.push(format!("{} (order {}: {order:?}):\n  {}", scenario.what, i + 1, bad.join("\n  ")));
                    }
                }
            }
            assert!(failures.is_empty(), "{} interleavings left wrong values:\n{}", failures.len(), failures.join("\n"));
        })
        .await;
    }
}

per_backend! {
    /// Issue #24: a row's key is watched like any dependency: two lamps
    /// swapping ids in one transaction (the birds keep their lamp ids, so
    /// each lamp now has the other's birds), and a lamp renumbered onto a
    /// new id.
    async fn a_key_change_flags_the_row_and_what_reads_it() {
        on_both("keyswap", |db, _| async move {
            create(&db).await;
            reset(&db).await;
            // The birds' foreign key is checked at the end of the statement
            // on SQLite and of each statement on PostgreSQL: swap through a
            // free id, birds first pointing nowhere in between.
            let swap = match db.backend() {
                Backend::Postgres => {
                    "BEGIN; ALTER TABLE birds DROP CONSTRAINT birds_lamp_id_fkey;
                     ALTER TABLE birds ADD CONSTRAINT birds_lamp_id_fkey FOREIGN KEY (lamp_id)
                       REFERENCES lamps(id) DEFERRABLE INITIALLY DEFERRED;
                     COMMIT;
                     BEGIN; UPDATE lamps SET id = 100 WHERE id = 1; UPDATE lamps SET id = 1 WHERE id = 3;
                     UPDATE lamps SET id = 3 WHERE id = 100; COMMIT;"
                }
                _ => "PRAGMA defer_foreign_keys = ON; BEGIN; UPDATE lamps SET id = 100 WHERE id = 1;
                      UPDATE lamps SET id = 1 WHERE id = 3; UPDATE lamps SET id = 3 WHERE id = 100; COMMIT;",
            };
            common::exec_text(&db, swap.to_owned()).await;
            let flagged = common::scalar(
                &db,
                "SELECT CAST(COUNT(*) AS BIGINT) FROM lamps WHERE bird_weight_recalculation_needed",
            )
            .await;
            assert_eq!(flagged, 2, "both swapped lamps flagged");
            settle(&db).await;
            let bad = wrong(&db).await;
            assert!(bad.is_empty(), "after the swap: {bad:#?}");
            // A lamp renumbered onto a free id its birds then follow.
            common::exec_text(
                &db,
                "PRAGMA defer_foreign_keys = ON; BEGIN; UPDATE lamps SET id = 7 WHERE id = 6;
                 UPDATE birds SET lamp_id = 7 WHERE lamp_id = 6; COMMIT;"
                    .replace("PRAGMA defer_foreign_keys = ON;", if db.backend() == Backend::Sqlite {
                        "PRAGMA defer_foreign_keys = ON;"
                    } else {
                        ""
                    }),
            )
            .await;
            settle(&db).await;
            let bad = wrong(&db).await;
            assert!(bad.is_empty(), "after renumbering: {bad:#?}");
        })
        .await;
    }
}

per_backend! {
    /// Random writers along every path at once, each transaction a few
    /// statements with pauses between them, beside a running worker;
    /// then every value equals its recomputation.
    async fn random_concurrent_writers_leave_every_value_right() {
        on_both("randomwriters", |db, _| async move {
            create(&db).await;
            reset(&db).await;
            let running = common::start(Worker::new(db.clone(), registry()).poll_interval(Duration::from_millis(20)));
            let stop = Arc::new(AtomicBool::new(false));
            let next_id = Arc::new(AtomicU64::new(1000));
            let committed = Arc::new(AtomicU64::new(0));
            let aborted = Arc::new(AtomicU64::new(0));
            let mut writers = Vec::new();
            for w in 0..4u64 {
                let (db, stop, next_id, committed, aborted) =
                    (db.clone(), stop.clone(), next_id.clone(), committed.clone(), aborted.clone());
                writers.push(tokio::spawn(async move {
                    let mut seed = 0x9E37_79B9_7F4A_7C15_u64 ^ (w + 1);
                    let mut rand = move |n: u64| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed % n
                    };
                    let session = Session::open(&db).await;
                    if db.backend() == Backend::Postgres {
                        // Writers deadlock now and then (as any would, in
                        // transactions of random statements): find out sooner.
                        let mut p = session.send("SET deadlock_timeout = '50ms'");
                        assert!(step_done(&mut p, 5000).await);
                    }
                    let begin = if db.backend() == Backend::Sqlite { "BEGIN IMMEDIATE" } else { "BEGIN" };
                    while !stop.load(Ordering::Relaxed) {
                        let mut stmts = vec![begin.to_owned()];
                        for _ in 0..=rand(2) {
                            let id = next_id.fetch_add(1, Ordering::Relaxed);
                            stmts.push(match rand(9) {
                                0 => format!("UPDATE streets SET name = 'street {id}' WHERE id = {}", 1 + rand(3)),
                                1 => format!("UPDATE cities SET name = 'city {id}' WHERE id = {}", 1 + rand(2)),
                                2 => format!("UPDATE lamps SET street_id = {} WHERE id = {}", 1 + rand(3), 1 + rand(6)),
                                3 => format!("UPDATE streets SET city_id = {} WHERE id = {}", 1 + rand(2), 1 + rand(3)),
                                4 => format!("UPDATE birds SET weight = weight + 1 WHERE id = {}", 1 + rand(12)),
                                5 => format!("UPDATE birds SET lamp_id = {} WHERE id = {}", 1 + rand(6), 1 + rand(12)),
                                6 => format!("INSERT INTO birds (id, lamp_id, weight) VALUES ({id}, {}, {})", 1 + rand(6), rand(20)),
                                7 => format!("UPDATE tags SET name = '{}' WHERE id = {}", "t".repeat(1 + rand(5) as usize), 1 + rand(3)),
                                _ => format!("INSERT INTO bird_tags (bird_id, tag_id) VALUES ({}, {})", 1 + rand(12), 1 + rand(3)),
                            });
                        }
                        let mut ok = true;
                        for s in &stmts {
                            let mut p = session.send(s);
                            match tokio::time::timeout(Duration::from_secs(60), &mut p).await {
                                Ok(Ok(Ok(()))) => {}
                                // A deadlock between writers aborts one of them.
                                Ok(Ok(Err(e))) if e.contains("deadlock") || e.contains("locked") => {
                                    ok = false;
                                    break;
                                }
                                other => panic!("{s}: {other:?}"),
                            }
                            tokio::time::sleep(Duration::from_millis(rand(5))).await;
                        }
                        let end = if ok { "COMMIT" } else { "ROLLBACK" };
                        let mut p = session.send(end);
                        let _ = tokio::time::timeout(Duration::from_secs(60), &mut p).await;
                        if ok {
                            committed.fetch_add(1, Ordering::Relaxed);
                        } else {
                            aborted.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }));
            }
            tokio::time::sleep(Duration::from_secs(4)).await;
            stop.store(true, Ordering::Relaxed);
            for w in writers {
                w.await.unwrap();
            }
            running.stop().await;
            eprintln!(
                "{} transactions committed, {} aborted by a deadlock",
                committed.load(Ordering::Relaxed),
                aborted.load(Ordering::Relaxed)
            );
            assert!(committed.load(Ordering::Relaxed) > 20);
            settle(&db).await;
            let bad = wrong(&db).await;
            assert!(bad.is_empty(), "after random writers: {bad:#?}");
        })
        .await;
    }
}
