//! Shared test support: fresh databases on both backends, and a test model
//! whose calculate function can be counted, gated, failed and panicked.
#![allow(dead_code, unreachable_pub, missing_docs)]

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, LazyLock, Mutex};
use std::time::{Duration, Instant};

use cached_fields::{Backend, BoxError, Cached, CachedModel, Ctx, Db, Registry, Worker};
use tokio::sync::Semaphore;

pub mod posts;

use cached_fields_test_support::{Engine, only};
pub use cached_fields_test_support::{per_backend, scoped};

/// A fresh SQLite file in a temporary folder.
pub async fn sqlite(name: &str) -> (Db, String) {
    let (url, _) = cached_fields_test_support::fresh_sqlite("cf", name, "test.db");
    (Db::connect(&url).await.unwrap(), url)
}

/// A fresh PostgreSQL database, or `None` (with a message) when no server
/// answers outside CI. In CI (`CI` set) an unreachable server fails the test.
pub async fn postgres(name: &str) -> Option<(Db, String)> {
    let url = cached_fields_test_support::fresh_postgres("cf", name).await?;
    Some((Db::connect(&url).await.unwrap(), url))
}

/// Runs `test` on a fresh SQLite database and on a fresh PostgreSQL
/// database, or on the one backend of a [`per_backend!`] test.
pub async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Db, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let only = only();
    if only != Some(Engine::Postgres) {
        let (db, url) = sqlite(name).await;
        eprintln!("== {name} on SQLite");
        test(db.clone(), url.clone()).await;
        db.close().await;
        cached_fields_test_support::remove_sqlite(&url);
    }
    if only == Some(Engine::Sqlite) {
        return;
    }
    if let Some((db, url)) = postgres(name).await {
        eprintln!("== {name} on PostgreSQL");
        test(db.clone(), url.clone()).await;
        db.close().await;
        drop_postgres(&url).await;
    }
}

/// Drops a database made by [`postgres`] (after a passing test; a failing
/// one keeps its database for inspection).
pub async fn drop_postgres(url: &str) {
    cached_fields_test_support::drop_postgres(url).await;
}

/// Runs `$body` with `$p` bound to the pool of whichever backend `$db` is.
#[macro_export]
macro_rules! on_pool {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            cached_fields::Db::Sqlite($p) => $body,
            cached_fields::Db::Postgres($p) => $body,
            _ => unreachable!("no other backend in the tests"),
        }
    };
}

/// The generated name of `registry`'s object starting with `prefix`
/// (names end in a hash of what they are for).
pub fn object_name(registry: &Registry, backend: Backend, prefix: &str) -> String {
    let plan = cached_fields::schema::plan(backend, &registry.specs());
    let found: Vec<String> = plan
        .iter()
        .map(|o| o.name.to_string())
        .filter(|n| n.starts_with(prefix))
        .collect();
    assert_eq!(found.len(), 1, "one object named {prefix}…: {found:?}");
    found[0].clone()
}

/// The name of the trigger flagging fields for `kind` (`ins`, `del`,
/// `upd`) writes to `table` on a path: PostgreSQL's one per table and
/// event, or SQLite's one per field and path, `cf_{kind}_{per_field}_…`.
pub fn path_trigger(
    registry: &Registry,
    backend: Backend,
    kind: &str,
    per_field: &str,
    table: &str,
) -> String {
    let prefix = match backend {
        Backend::Postgres => format!("cf_{kind}_{table}_"),
        _ => format!("cf_{kind}_{per_field}_"),
    };
    object_name(registry, backend, &prefix)
}

/// Executes any SQL text (one or more statements) on whichever backend.
pub async fn exec_text(db: &Db, sql: String) {
    on_pool!(db, |p| drop(
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(p)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    ));
}

/// An integer from a query with no binds.
pub async fn scalar(db: &Db, q: &str) -> i64 {
    let q = q.to_owned();
    on_pool!(db, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(q.clone()))
        .fetch_one(p)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}")))
}

/// A text from a query with no binds.
pub async fn text(db: &Db, q: &str) -> String {
    let q = q.to_owned();
    on_pool!(db, |p| sqlx::query_scalar(sqlx::AssertSqlSafe(q.clone()))
        .fetch_one(p)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}")))
}

/// The primary-key column type of a table made for a test.
pub fn pk(db: &Db) -> &'static str {
    match db.backend() {
        Backend::Sqlite => "INTEGER PRIMARY KEY",
        _ => "BIGINT PRIMARY KEY",
    }
}

/// Executes literal SQL on whichever backend.
pub async fn exec(db: &Db, sql: &'static str) {
    on_pool!(db, |p| drop(sqlx::query(sql).execute(p).await.unwrap()));
}

/// Executes SQL with integer binds; returns rows affected.
pub async fn exec_with(db: &Db, sql: &'static str, binds: &[i64]) -> u64 {
    on_pool!(db, |p| {
        let mut q = sqlx::query(sql);
        for b in binds {
            q = q.bind(*b);
        }
        q.execute(p).await.unwrap().rows_affected()
    })
}

/// One row of the test table.
pub async fn item(db: &Db, id: i64) -> Option<Item> {
    on_pool!(db, |p| sqlx::query_as("SELECT * FROM items WHERE id = $1")
        .bind(id)
        .fetch_optional(p)
        .await
        .unwrap())
}

/// Every row of the test table, by id.
pub async fn items(db: &Db) -> Vec<Item> {
    on_pool!(db, |p| sqlx::query_as("SELECT * FROM items ORDER BY id")
        .fetch_all(p)
        .await
        .unwrap())
}

/// A table with an input column and one cached field, `doubled = input * 2`.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "items")]
pub struct Item {
    #[cached_model(primary_key)]
    pub id: i64,
    pub input: i64,
    /// Names this row's gate and counter.
    pub tag: String,
    /// `ok`, `fail`, `panic` or `hang` (never returns).
    pub mode: String,
    #[cached(temporal_triggers, calculate_many = Item::calculate_doubled_many)]
    pub doubled: Cached<i64>,
}

/// Blocks a calculation until released.
pub struct Gate {
    pub entered: Semaphore,
    pub release: Semaphore,
}

static GATES: LazyLock<Mutex<HashMap<String, Arc<Gate>>>> = LazyLock::new(Default::default);
static CALLS: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Installs a gate for rows tagged `tag`: each calculation signals `entered`
/// and waits for a `release` permit.
pub fn gate(tag: &str) -> Arc<Gate> {
    let tag = &scoped(tag);
    let g = Arc::new(Gate {
        entered: Semaphore::new(0),
        release: Semaphore::new(0),
    });
    GATES.lock().unwrap().insert(tag.to_owned(), g.clone());
    g
}

pub fn ungate(tag: &str) {
    let tag = &scoped(tag);
    if let Some(g) = GATES.lock().unwrap().remove(tag) {
        g.release.add_permits(1_000_000);
    }
}

static BATCHES: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Calls of the batch calculate function whose first row is tagged `tag`.
pub fn batches(tag: &str) -> u64 {
    let tag = &scoped(tag);
    BATCHES.lock().unwrap().get(tag).copied().unwrap_or(0)
}

/// Calculations performed for rows tagged `tag`.
pub fn calls(tag: &str) -> u64 {
    let tag = &scoped(tag);
    CALLS.lock().unwrap().get(tag).copied().unwrap_or(0)
}

impl Item {
    /// The batch form: refuses the whole batch when a row would fail (the
    /// worker then falls back to one row at a time), panics on a panicking
    /// row; gates like the one-row form.
    async fn calculate_doubled_many(
        rows: &[&Item],
        _ctx: &mut Ctx<'_>,
    ) -> Result<Vec<i64>, BoxError> {
        let tag = rows[0].tag.clone();
        *BATCHES.lock().unwrap().entry(tag.clone()).or_default() += 1;
        let gate = GATES.lock().unwrap().get(&tag).cloned();
        if let Some(g) = gate {
            g.entered.add_permits(1);
            g.release.acquire().await?.forget();
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            match r.mode.as_str() {
                "fail" => return Err(format!("batch refused: item {} would fail", r.id).into()),
                "panic" => panic!("batch panicked on item {}", r.id),
                "hang" => std::future::pending::<()>().await,
                _ => out.push(r.input * 2),
            }
        }
        *CALLS.lock().unwrap().entry(tag).or_default() += rows.len() as u64;
        Ok(out)
    }

    async fn calculate_doubled(&self, _ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        *CALLS.lock().unwrap().entry(self.tag.clone()).or_default() += 1;
        let gate = GATES.lock().unwrap().get(&self.tag).cloned();
        if let Some(g) = gate {
            g.entered.add_permits(1);
            g.release.acquire().await?.forget();
        }
        match self.mode.as_str() {
            "fail" => Err(format!("boom on item {}", self.id).into()),
            "panic" => panic!("kaboom on item {}", self.id),
            "hang" => {
                std::future::pending::<()>().await;
                unreachable!()
            }
            _ => Ok(self.input * 2),
        }
    }
}

pub fn registry() -> Registry {
    Registry::new().register::<Item>().unwrap()
}

/// Creates and migrates the test table.
pub async fn setup(db: &Db) {
    match db.backend() {
        Backend::Sqlite => {
            exec(
                db,
                "CREATE TABLE items (id INTEGER PRIMARY KEY, input BIGINT NOT NULL, \
             tag TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'ok')",
            )
            .await;
        }
        Backend::Postgres => {
            exec(
                db,
                "CREATE TABLE items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             input BIGINT NOT NULL, tag TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'ok')",
            )
            .await;
        }
        other => unreachable!("no test tables for {other:?}"),
    }
    registry().migrate(db).await.unwrap();
}

/// Inserts rows `1..=n` with `input = id`, tagged `tag`.
pub async fn insert(db: &Db, n: i64, tag: &str) {
    let tag = &scoped(tag);
    for i in 1..=n {
        on_pool!(db, |p| {
            sqlx::query("INSERT INTO items (id, input, tag) VALUES ($1, $1, $2)")
                .bind(i)
                .bind(tag)
                .execute(p)
                .await
                .unwrap();
        });
    }
}

pub fn worker(db: &Db) -> Worker {
    Worker::new(db.clone(), registry())
        .poll_interval(Duration::from_millis(50))
        .retry_backoff(Duration::from_millis(200), Duration::from_secs(5))
}

/// A worker running as a task until [`Running::stop`].
pub struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<cached_fields::Result<cached_fields::Stats>>,
}

/// Starts `worker` as a task.
pub fn start(worker: Worker) -> Running {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    Running { stop, task }
}

impl Running {
    /// Stops the worker and returns its counts.
    pub async fn stop(self) -> cached_fields::Stats {
        self.stop.send(()).unwrap();
        self.task.await.unwrap().unwrap()
    }
}

/// Another program's write: changes row `id`'s input and sets its flag with
/// plain SQL.
pub async fn raw_write(db: &Db, id: i64) {
    exec_with(
        db,
        "UPDATE items SET input = input + 1, doubled_recalculation_needed = TRUE WHERE id = $1",
        &[id],
    )
    .await;
}

/// Waits (at most 10 s) until row `id` is no longer flagged.
pub async fn wait_unflagged(db: &Db, id: i64, what: &str) {
    eventually(10, what, || {
        let db = db.clone();
        async move { !item(&db, id).await.unwrap().doubled.recalculation_needed() }
    })
    .await;
}

/// Polls `cond` until it holds, failing after `secs` seconds.
pub async fn eventually<F, Fut>(secs: u64, what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let start = Instant::now();
    while !cond().await {
        assert!(
            start.elapsed() < Duration::from_secs(secs),
            "timed out after {secs}s waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every row fresh, unflagged, and equal to `input * 2`.
pub async fn assert_all_fresh(db: &Db) {
    for it in items(db).await {
        assert!(
            !it.doubled.recalculation_needed(),
            "item {} still flagged",
            it.id
        );
        assert_eq!(it.doubled.stored(), Some(it.input * 2), "item {}", it.id);
    }
}

/// The commits of a burst of writes, for the README's coalescing promise:
/// a burst costs the first and the final recalculation of each field, plus
/// one for each pause of 50 ms or more between commits and one for each
/// 2 s period the burst lasts.
#[derive(Debug)]
pub struct Burst {
    started: Instant,
    last: Mutex<Instant>,
    pauses: AtomicU64,
}

/// The pause that ends a row's hot wait (the README's 50 ms); a gap a
/// little shorter counts too, as the worker's clock and the test's differ.
const PAUSE: Duration = Duration::from_millis(40);

impl Burst {
    pub fn new() -> Self {
        let now = Instant::now();
        Burst {
            started: now,
            last: Mutex::new(now),
            pauses: AtomicU64::new(0),
        }
    }

    /// One more commit.
    pub fn committed(&self) {
        let now = Instant::now();
        let mut last = self.last.lock().unwrap();
        if now.duration_since(*last) >= PAUSE {
            self.pauses.fetch_add(1, Ordering::Relaxed);
        }
        *last = now;
    }

    /// The recalculations the README promises for `fields` fields.
    pub fn promised(&self, fields: u64) -> u64 {
        let lasted = self.last.lock().unwrap().duration_since(self.started);
        let periods = lasted.as_millis() as u64 / 2000;
        fields * (2 + self.pauses.load(Ordering::Relaxed) + periods)
    }
}
