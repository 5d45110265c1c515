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

pub const ADMIN_URL_DEFAULT: &str = "postgres://postgres@127.0.0.1:5432/test";

static COUNTER: AtomicU64 = AtomicU64::new(0);

fn unique(name: &str) -> String {
    format!(
        "cf_{}_{}_{}",
        name,
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// A fresh SQLite file in a temporary folder.
pub async fn sqlite(name: &str) -> (Db, String) {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("sqlite:{}", dir.join("test.db").display());
    (Db::connect(&url).await.unwrap(), url)
}

/// A fresh PostgreSQL database, or `None` (with a message) when no server
/// answers outside CI. In CI (`CI` set) an unreachable server fails the test.
pub async fn postgres(name: &str) -> Option<(Db, String)> {
    let admin_url =
        std::env::var("CACHED_FIELDS_PG_URL").unwrap_or_else(|_| ADMIN_URL_DEFAULT.to_owned());
    let admin = match Db::connect_with(&admin_url, 1).await {
        Ok(db) => db,
        Err(e) if std::env::var_os("CI").is_none() => {
            eprintln!("SKIPPING the PostgreSQL half of {name}: {e} (set CI to make this fatal)");
            return None;
        }
        Err(e) => panic!("PostgreSQL is required in CI: {e}"),
    };
    let db_name = unique(name);
    let pool = admin.as_postgres().unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE \"{db_name}\""
    )))
    .execute(pool)
    .await
    .unwrap();
    admin.close().await;
    let base = admin_url.rsplit_once('/').unwrap().0;
    let url = format!("{base}/{db_name}");
    Some((Db::connect(&url).await.unwrap(), url))
}

/// Runs `test` on a fresh SQLite database and on a fresh PostgreSQL database.
pub async fn on_both<F, Fut>(name: &str, test: F)
where
    F: Fn(Db, String) -> Fut,
    Fut: Future<Output = ()>,
{
    let (db, url) = sqlite(name).await;
    eprintln!("== {name} on SQLite");
    test(db.clone(), url.clone()).await;
    db.close().await;
    if let Some(dir) = url
        .strip_prefix("sqlite:")
        .and_then(|f| std::path::Path::new(f).parent())
    {
        let _ = std::fs::remove_dir_all(dir);
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
    let admin_url =
        std::env::var("CACHED_FIELDS_PG_URL").unwrap_or_else(|_| ADMIN_URL_DEFAULT.to_owned());
    let name = url.rsplit_once('/').unwrap().1;
    let admin = Db::connect_with(&admin_url, 1).await.unwrap();
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"
    )))
    .execute(admin.as_postgres().unwrap())
    .await
    .unwrap();
    admin.close().await;
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

/// Executes any SQL text (one or more statements) on whichever backend.
pub async fn exec_text(db: &Db, sql: String) {
    on_pool!(db, |p| drop(
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.clone()))
            .execute(p)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"))
    ))
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
    on_pool!(db, |p| drop(sqlx::query(sql).execute(p).await.unwrap()))
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
    let g = Arc::new(Gate {
        entered: Semaphore::new(0),
        release: Semaphore::new(0),
    });
    GATES.lock().unwrap().insert(tag.to_owned(), g.clone());
    g
}

pub fn ungate(tag: &str) {
    if let Some(g) = GATES.lock().unwrap().remove(tag) {
        g.release.add_permits(1_000_000);
    }
}

static BATCHES: LazyLock<Mutex<HashMap<String, u64>>> = LazyLock::new(Default::default);

/// Calls of the batch calculate function whose first row is tagged `tag`.
pub fn batches(tag: &str) -> u64 {
    BATCHES.lock().unwrap().get(tag).copied().unwrap_or(0)
}

/// Calculations performed for rows tagged `tag`.
pub fn calls(tag: &str) -> u64 {
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
            .await
        }
        Backend::Postgres => {
            exec(
                db,
                "CREATE TABLE items (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, \
             input BIGINT NOT NULL, tag TEXT NOT NULL, mode TEXT NOT NULL DEFAULT 'ok')",
            )
            .await
        }
        other => unreachable!("no test tables for {other:?}"),
    }
    registry().migrate(db).await.unwrap();
}

/// Inserts rows `1..=n` with `input = id`, tagged `tag`.
pub async fn insert(db: &Db, n: i64, tag: &str) {
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
