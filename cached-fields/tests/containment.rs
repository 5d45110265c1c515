//! Issue #9: failures stay contained — one bad row or field never stalls
//! the rest — and bad input gets a clear error. Each test that touches a
//! database runs on SQLite and on PostgreSQL.

mod common;

use common::per_backend;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use cached_fields::{Backend, BoxError, Cached, CachedModel, Ctx, Db, Error, Registry, Worker};
use common::{exec, exec_text, on_both, pk, scalar, text};

/// Fails the test instead of hanging when `f` does not finish in `secs`.
async fn within<T>(secs: u64, what: &str, f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(secs), f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not finish within {secs} s"))
}

per_backend! {
    async fn a_calculation_that_never_returns_fails_alone_after_the_timeout() {
        on_both("hang", |db, _| async move {
            common::setup(&db).await;
            common::insert(&db, 10, "hang").await;
            exec(&db, "UPDATE items SET mode = 'hang' WHERE id = 3").await;
            let worker = common::worker(&db).calculation_timeout(Duration::from_millis(300));
            let s = within(20, "a drain beside a hanging calculation", worker.drain())
                .await
                .unwrap();
            assert_eq!((s.recalculated, s.failed), (9, 1), "{s:?}");
            for it in common::items(&db).await {
                if it.id == 3 {
                    assert!(it.doubled.recalculation_needed());
                } else {
                    assert_eq!(it.doubled.stored(), Some(it.input * 2), "item {}", it.id);
                }
            }
            let status = common::registry().status(&db).await.unwrap();
            let (key, attempts, msg) = status[0].last_error.clone().unwrap();
            assert_eq!((key, attempts), (cached_fields::Key::Int(3), 1));
            assert!(msg.contains("did not finish within 300 ms"), "{msg}");
            // Fixed, it recovers by itself at the next attempt.
            exec(&db, "UPDATE items SET mode = 'ok' WHERE id = 3").await;
            let running = common::start(common::worker(&db));
            common::wait_unflagged(&db, 3, "the fixed row").await;
            running.stop().await;
        })
        .await;
    }
}

/// A field with its own time limit, shorter than the worker's.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "slow")]
struct Slow {
    id: i64,
    hang: bool,
    #[cached(timeout_ms = 200)]
    v: Cached<i64>,
}

impl Slow {
    async fn calculate_v(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        if self.hang {
            std::future::pending::<()>().await;
        }
        Ok(self.id)
    }
}

per_backend! {
    async fn a_field_declares_its_own_timeout() {
        on_both("fieldtimeout", |db, _| async move {
            exec_text(
                &db,
                format!("CREATE TABLE slow (id {}, hang BOOLEAN NOT NULL)", pk(&db)),
            )
            .await;
            exec(
                &db,
                "INSERT INTO slow (id, hang) VALUES (1, FALSE), (2, TRUE), (3, FALSE)",
            )
            .await;
            let registry = Registry::new().register::<Slow>().unwrap();
            registry.migrate(&db).await.unwrap();
            // The worker's own limit is the default (20 s): the field's 200 ms applies.
            let s = within(
                10,
                "drain",
                Worker::new(db.clone(), registry.clone()).drain(),
            )
            .await
            .unwrap();
            assert_eq!((s.recalculated, s.failed), (2, 1), "{s:?}");
            let msg = text(&db, "SELECT v_last_error FROM slow WHERE id = 2").await;
            assert!(msg.contains("slow.v") && msg.contains("200 ms"), "{msg}");
        })
        .await;
    }
}

per_backend! {
    async fn a_broken_column_fails_its_field_alone_and_recovers_without_a_restart() {
        use common::posts::{self, assert_consistent, registry, setup, sql};
        on_both("brokencolumn", |db, _| async move {
            setup(&db, 5).await;
            let running = common::start(
                Worker::new(db.clone(), registry())
                    .poll_interval(Duration::from_millis(50))
                    .retry_backoff(Duration::from_millis(100), Duration::from_millis(400)),
            );
            match db.backend() {
                // The issue's damage: a cached column retyped by hand.
                Backend::Postgres => exec(&db, "ALTER TABLE posts ALTER COLUMN cached_label TYPE integer USING NULL").await,
                // SQLite cannot retype a column: a value of the wrong type in one row.
                _ => exec(&db, "UPDATE posts SET cached_label = x'00ff' WHERE id = 2").await,
            }
            // Writes go on; `total` stays fresh and correct throughout (read
            // with SQL: the damaged row cannot be loaded as a model).
            sql(&db, "UPDATE birds SET weight = weight + 10 WHERE post_id <= $1", &[3]).await;
            sql(&db, "UPDATE posts SET title = 'renamed' WHERE id = $1", &[4]).await;
            let wrong_totals = "SELECT COUNT(*) FROM posts p WHERE p.total_recalculation_needed \
                OR p.cached_total IS DISTINCT FROM p.weight + (SELECT COALESCE(SUM(b.weight), 0) FROM birds b WHERE b.post_id = p.id)";
            let wrong_totals = match db.backend() {
                Backend::Sqlite => wrong_totals.replace("IS DISTINCT FROM", "IS NOT"),
                _ => wrong_totals.to_owned(),
            };
            common::eventually(10, "every total fresh and correct", || {
                let (db, q) = (db.clone(), wrong_totals.clone());
                async move { scalar(&db, &q).await == 0 }
            })
            .await;
            if db.backend() == Backend::Postgres {
                // The label fails, with a message naming the column and its
                // type; status shows it.
                common::eventually(10, "a failing label", || {
                    let db = db.clone();
                    async move {
                        let st = registry().status(&db).await.unwrap();
                        st.iter().any(|f| f.field == "label" && f.failing > 0)
                    }
                })
                .await;
                let st = registry().status(&db).await.unwrap();
                let label = st.iter().find(|f| f.field == "label").unwrap();
                let msg = &label.last_error.as_ref().unwrap().2;
                assert!(msg.contains("cached_label") && msg.contains("integer"), "{msg}");
                // Repaired, everything drains without restarting the worker.
                registry().migrate(&db).await.unwrap();
            }
            // (SQLite: the unreadable value is a cache miss, recalculated and
            // overwritten by the running worker.)
            common::eventually(15, "everything fresh", || {
                let db = db.clone();
                async move { posts::flagged(&db).await.is_empty() }
            })
            .await;
            let stats = running.stop().await;
            assert_eq!(stats.failed > 0, db.backend() == Backend::Postgres, "{stats:?}");
            assert_consistent(&db).await;
        })
        .await;
    }
}

/// A calculation that writes its own input.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "loops")]
struct Loop {
    id: i64,
    n: i64,
    #[cached(depends_on("n"))]
    v: Cached<i64>,
}

impl Loop {
    async fn calculate_v(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let q = "UPDATE loops SET n = n + 1 WHERE id = $1";
        match ctx.conn().await? {
            cached_fields::Conn::Sqlite(c) => sqlx::query(q).bind(self.id).execute(c).await?,
            cached_fields::Conn::Postgres(c) => {
                sqlx::query(q).bind(self.id).execute(c).await?;
                return Ok(self.n);
            }
            _ => unreachable!(),
        };
        Ok(self.n)
    }
}

per_backend! {
    async fn a_calculation_that_invalidates_its_own_inputs_is_reported_not_looped() {
        on_both("selfloop", |db, _| async move {
            exec_text(
                &db,
                format!("CREATE TABLE loops (id {}, n BIGINT NOT NULL)", pk(&db)),
            )
            .await;
            exec(&db, "INSERT INTO loops (id, n) VALUES (1, 0)").await;
            let registry = Registry::new().register::<Loop>().unwrap();
            registry.migrate(&db).await.unwrap();
            let worker = Worker::new(db.clone(), registry.clone())
                .retry_backoff(Duration::from_secs(5), Duration::from_secs(60));
            let s = within(30, "a drain of a self-invalidating row", worker.drain())
                .await
                .unwrap();
            assert_eq!(s.failed, 1, "{s:?}");
            assert!(s.superseded >= 9, "{s:?}");
            let msg = text(&db, "SELECT v_last_error FROM loops WHERE id = 1").await;
            assert!(msg.contains("invalidates it again"), "{msg}");
            let status = registry.status(&db).await.unwrap();
            assert_eq!(status[0].failing, 1);
        })
        .await;
    }
}

/// A ratio that can be NaN, and a label chained on it.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "ratios")]
struct Ratio {
    id: i64,
    a: f64,
    b: f64,
    #[cached(depends_on("a", "b"))]
    r: Cached<f64>,
    #[cached(depends_on("r"))]
    label: Cached<String>,
}

impl Ratio {
    async fn calculate_r(&self, _: &mut Ctx<'_>) -> Result<f64, BoxError> {
        Ok(self.a / self.b)
    }
    async fn calculate_label(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(format!("r = {}", self.r(ctx).await?))
    }
}

per_backend! {
    async fn a_value_the_backend_cannot_store_is_a_failure_not_a_loop() {
        on_both("nan", |db, _| async move {
            exec_text(&db, format!("CREATE TABLE ratios (id {}, a DOUBLE PRECISION NOT NULL, b DOUBLE PRECISION NOT NULL)", pk(&db))).await;
            exec(&db, "INSERT INTO ratios (id, a, b) VALUES (1, 1, 2), (2, 0, 0)").await;
            let registry = Registry::new().register::<Ratio>().unwrap();
            registry.migrate(&db).await.unwrap();
            let worker = Worker::new(db.clone(), registry.clone())
                .retry_backoff(Duration::from_secs(5), Duration::from_secs(60));
            let s = within(20, "a drain beside a NaN", worker.drain()).await.unwrap();
            if db.backend() == Backend::Sqlite {
                // Stored, the NaN would read back as "never calculated".
                let msg = text(&db, "SELECT r_last_error FROM ratios WHERE id = 2").await;
                assert!(msg.contains("NaN") && msg.contains("ratios.r"), "{msg}");
                assert!(s.deferred <= 3, "the chained label waits, it does not spin: {s:?}");
                assert_eq!(text(&db, "SELECT cached_label FROM ratios WHERE id = 1").await, "r = 0.5");
            } else {
                // PostgreSQL stores a NaN as it is.
                assert_eq!(s.failed, 0, "{s:?}");
                assert_eq!(text(&db, "SELECT cached_label FROM ratios WHERE id = 2").await, "r = NaN");
            }
        })
        .await;
    }
}

per_backend! {
    async fn a_killed_workers_lease_is_waited_out_not_spun_on() {
        use common::posts::{self, registry, setup};
        on_both("leftover", |db, _| async move {
            setup(&db, 1).await;
            // As a killed worker leaves it: both fields flagged, `total` leased
            // for 2 more seconds.
            exec(&db, "UPDATE posts SET total_recalculation_needed = TRUE, label_recalculation_needed = TRUE").await;
            exec(&db, match db.backend() {
                Backend::Sqlite => "UPDATE posts SET total_next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+2 seconds')",
                _ => "UPDATE posts SET total_next_attempt_at = clock_timestamp() + interval '2 seconds'",
            })
            .await;
            let running = common::start(Worker::new(db.clone(), registry()).poll_interval(Duration::from_millis(20)));
            common::eventually(10, "both fields fresh after the lease", || {
                let db = db.clone();
                async move { posts::flagged(&db).await.is_empty() }
            })
            .await;
            let s = running.stop().await;
            // 50, 100, 200, 400, 800 ms, then the lease's end: not every 50 ms.
            assert!(s.deferred <= 7, "{s:?}");
            posts::assert_consistent(&db).await;
        })
        .await;
    }
}

static HOOK_CALLS: AtomicU64 = AtomicU64::new(0);

/// A field whose after-recalculation hook always fails.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "hooked")]
struct Hooked {
    id: i64,
    #[cached(after_recalculate = Hooked::notify)]
    v: Cached<i64>,
}

impl Hooked {
    async fn calculate_v(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.id * 3)
    }
    async fn notify(&self, _: &mut Ctx<'_>) -> Result<(), BoxError> {
        HOOK_CALLS.fetch_add(1, Ordering::Relaxed);
        Err("the mail server is down".into())
    }
}

per_backend! {
    async fn failed_hooks_are_counted_and_shown_and_the_value_is_kept() {
        on_both("hooks", |db, _| async move {
            exec_text(&db, format!("CREATE TABLE hooked (id {})", pk(&db))).await;
            exec(&db, "INSERT INTO hooked (id) VALUES (1), (2), (3)").await;
            let registry = Registry::new().register::<Hooked>().unwrap();
            registry.migrate(&db).await.unwrap();
            let s = Worker::new(db.clone(), registry.clone())
                .drain()
                .await
                .unwrap();
            assert_eq!((s.recalculated, s.hook_failures), (3, 3), "{s:?}");
            assert_eq!(
                scalar(&db, "SELECT CAST(SUM(cached_v) AS BIGINT) FROM hooked").await,
                18
            );
            let status = registry.status(&db).await.unwrap();
            assert_eq!(
                (status[0].hook_failures, status[0].stale, status[0].failing),
                (3, 0, 0)
            );
        })
        .await;
    }
}

per_backend! {
    /// Issue #25: a field failure recorded by one worker (here written as
    /// another process would) is cleared by whichever worker next
    /// recalculates the field successfully, not only by the one that
    /// recorded it; the row failures of its hooks stay counted.
    async fn a_field_failure_clears_when_any_worker_recalculates_the_field() {
        on_both("fieldclear", |db, _| async move {
            exec_text(&db, format!("CREATE TABLE hooked (id {})", pk(&db))).await;
            exec(&db, "INSERT INTO hooked (id) VALUES (1), (2), (3)").await;
            let registry = Registry::new().register::<Hooked>().unwrap();
            registry.migrate(&db).await.unwrap();
            Worker::new(db.clone(), registry.clone()).drain().await.unwrap();
            exec(
                &db,
                "INSERT INTO cached_fields_failures (table_name, field_name, kind, count, last_error, last_at) \
                 VALUES ('hooked', 'v', 'field', 4, 'column \"cached_v\" is of type text', CURRENT_TIMESTAMP)",
            )
            .await;
            let status = registry.status(&db).await.unwrap();
            assert_eq!(status[0].field_error.as_ref().map(|e| e.0), Some(4));
            exec(&db, "INSERT INTO hooked (id) VALUES (4)").await;
            let s = Worker::new(db.clone(), registry.clone()).drain().await.unwrap();
            assert_eq!(s.recalculated, 1, "{s:?}");
            let status = registry.status(&db).await.unwrap();
            assert_eq!(status[0].field_error, None, "{:?}", status[0]);
            assert_eq!(status[0].hook_failures, 4);
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn settings_that_cannot_work_are_rejected_naming_the_option() {
    let db = Db::connect("sqlite::memory:").await.unwrap();
    let w = || common::worker(&db);
    for (worker, option, accepted) in [
        (w().concurrency(0), "concurrency", "1 to 10000"),
        (w().batch_size(0), "batch size", "1 to 10000"),
        (w().lease(Duration::ZERO), "lease", "1 s to 1 day"),
        (
            w().poll_interval(Duration::ZERO),
            "poll interval",
            "1 ms to 1 h",
        ),
        (
            w().calculation_timeout(Duration::ZERO),
            "calculation timeout",
            "at least 1 ms",
        ),
    ] {
        let err = worker.clone().drain().await.unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::InvalidSetting { .. }), "{msg}");
        assert!(msg.contains(option) && msg.contains(accepted), "{msg}");
        let err = worker.run_until(async {}).await.unwrap_err();
        assert!(err.to_string().contains(option), "{err}");
    }
}

per_backend! {
    async fn status_of_an_unmigrated_database_says_to_migrate() {
        on_both("unmigrated", |db, _| async move {
            let err = common::registry().status(&db).await.unwrap_err().to_string();
            assert!(err.contains("items") && err.contains("migrate"), "{err}");
            exec(&db, "CREATE TABLE items (id BIGINT PRIMARY KEY, input BIGINT NOT NULL, tag TEXT NOT NULL, mode TEXT NOT NULL)").await;
            let err = common::registry().status(&db).await.unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::MissingColumns { .. }), "{msg}");
            assert!(msg.contains("cached_doubled") && msg.contains("migrate"), "{msg}");
        })
        .await;
    }
}

/// Another model on the `items` table, declaring the same field.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "items")]
struct OtherItem {
    id: i64,
    doubled: Cached<i64>,
}

impl OtherItem {
    async fn calculate_doubled(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.id)
    }
}

#[test]
fn registering_a_table_twice_is_rejected_naming_both() {
    let err = common::registry()
        .register::<common::Item>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("registered twice") && err.contains("Item"),
        "{err}"
    );
    let err = common::registry()
        .register::<OtherItem>()
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("common::Item") && err.contains("OtherItem") && err.contains("doubled"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn connection_errors_say_what_is_wrong_and_hide_passwords() {
    let err = Db::connect("postgres://ann:s3cret@127.0.0.1:1/x?password=0ther")
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("refused") && msg.contains("127.0.0.1:1"),
        "{msg}"
    );
    assert!(!msg.contains("s3cret") && !msg.contains("0ther"), "{msg}");
    let dir = std::env::temp_dir().join(format!("cf_missing_dir_{}", std::process::id()));
    let err = Db::connect(&format!("sqlite:{}", dir.join("x.db").display()))
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("does not exist") && msg.contains(&dir.display().to_string()),
        "{msg}"
    );
    // A directory no one can write, root included (the tests may run as root).
    let err = Db::connect("sqlite:/proc/cf_test.db")
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("/proc is not writable"), "{err}");
}

per_backend! {
    async fn a_flag_rolled_back_with_its_transaction_costs_no_recalculation() {
        on_both("rolledback", |db, _| async move {
            common::setup(&db).await;
            common::insert(&db, 1, "rolledback").await;
            common::worker(&db).drain().await.unwrap();
            let item = common::item(&db, 1).await.unwrap();
            let before = common::calls("rolledback");
            on_pool!(&db, |p| {
                let mut tx = p.begin().await.unwrap();
                item.flag_doubled_as_stale(&mut *tx).await.unwrap();
                tx.rollback().await.unwrap();
            });
            assert_eq!(item.doubled(&db).await.unwrap(), 2);
            assert_eq!(
                common::calls("rolledback"),
                before,
                "the row was never flagged"
            );
            // A flag that did commit is still honoured.
            item.flag_doubled_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            assert_eq!(item.doubled(&db).await.unwrap(), 2);
            assert_eq!(common::calls("rolledback"), before + 1);
        })
        .await;
    }
}

per_backend! {
    async fn a_stopped_worker_leaves_no_lease_behind() {
        on_both("stoplease", |db, _| async move {
            common::setup(&db).await;
            common::insert(&db, 5, "stoplease").await;
            let gate = common::gate("stoplease");
            let running = common::start(
                common::worker(&db)
                    .lease(Duration::from_secs(60))
                    .calculation_timeout(Duration::from_millis(300)),
            );
            // The worker is inside a calculation when it is asked to stop.
            within(10, "a calculation to start", gate.entered.acquire()).await.unwrap().forget();
            let stats = within(10, "the worker to stop", running.stop()).await;
            assert_eq!(stats.failed, 5, "{stats:?}");
            common::ungate("stoplease");
            // Each claimed row was written back as failed, its 60 s lease
            // replaced by a short backoff: another worker takes it soon.
            let leased = match db.backend() {
                Backend::Sqlite => "SELECT COUNT(*) FROM items WHERE julianday(doubled_next_attempt_at) > julianday('now', '+10 seconds')",
                _ => "SELECT COUNT(*) FROM items WHERE doubled_next_attempt_at > now() + interval '10 seconds'",
            };
            assert_eq!(scalar(&db, leased).await, 0);
            let s = within(20, "another worker", common::worker(&db).drain()).await.unwrap();
            assert_eq!(s.recalculated, 0, "still backing off: {s:?}");
        })
        .await;
    }
}

/// A bare `#[cached]` declares a field with every default.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "bare")]
struct Bare {
    id: i64,
    #[cached]
    v: Cached<i64>,
}

impl Bare {
    async fn calculate_v(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.id)
    }
}

#[test]
fn a_bare_cached_attribute_declares_the_defaults() {
    let registry = Registry::new().register::<Bare>().unwrap();
    let specs = registry.specs();
    let f = &specs[0].fields[0];
    assert_eq!(
        (f.name.as_str(), f.columns.value.as_str()),
        ("v", "cached_v")
    );
    assert!(f.depends_on.is_empty() && f.columns.expires.is_none());
}

/// A field declared lazy: reads recalculate it, the worker never does.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lazies")]
struct Lazy {
    id: i64,
    n: i64,
    #[cached(lazy, depends_on("n"))]
    v: Cached<i64>,
}

impl Lazy {
    async fn calculate_v(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.n * 10)
    }
}

per_backend! {
    async fn a_field_declared_lazy_is_left_to_reads() {
        on_both("lazyfield", |db, _| async move {
            exec_text(
                &db,
                format!("CREATE TABLE lazies (id {}, n BIGINT NOT NULL)", pk(&db)),
            )
            .await;
            exec(&db, "INSERT INTO lazies (id, n) VALUES (1, 1), (2, 2)").await;
            let registry = Registry::new().register::<Lazy>().unwrap();
            registry.migrate(&db).await.unwrap();
            let worker = Worker::new(db.clone(), registry.clone());
            assert_eq!(
                worker.drain().await.unwrap().recalculated,
                0,
                "the worker leaves it"
            );
            let load = |id: i64| {
                let db = db.clone();
                async move {
                    on_pool!(&db, |p| sqlx::query_as::<_, Lazy>(
                        "SELECT * FROM lazies WHERE id = $1"
                    )
                    .bind(id)
                    .fetch_one(p)
                    .await
                    .unwrap())
                }
            };
            let one = load(1).await;
            assert_eq!(one.v(&db).await.unwrap(), 10, "a read recalculates it");
            // A per-call choice wins over the declaration; a bool still works.
            one.flag_v_as_stale_and_recalculate(&db, cached_fields::Recalculate::Eagerly)
                .await
                .unwrap();
            assert_eq!(
                worker.drain().await.unwrap().recalculated,
                0,
                "declared lazy: still the reads' job"
            );
            one.flag_v_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            exec(&db, "UPDATE lazies SET n = 5 WHERE id = 2").await;
            assert_eq!(load(2).await.v(&db).await.unwrap(), 50);
            assert_eq!(
                scalar(
                    &db,
                    "SELECT COUNT(*) FROM lazies WHERE v_recalculation_needed"
                )
                .await,
                1
            );
        })
        .await;
    }
}

per_backend! {
    /// A calculate function's error is the `source` of the library's error
    /// (not only its text), and a report of the chain says it once.
    async fn a_calculation_error_keeps_its_cause() {
        on_both("cause", |db, _| async move {
            common::setup(&db).await;
            common::insert(&db, 1, "cause").await;
            exec(&db, "UPDATE items SET mode = 'fail' WHERE id = 1").await;
            let it = common::item(&db, 1).await.unwrap();
            let err = it.doubled(&db).await.unwrap_err();
            assert!(matches!(err, Error::Calculate { .. }), "{err:?}");
            let source = std::error::Error::source(&err).expect("the function's error");
            assert_eq!(source.to_string(), "boom on item 1");
            let report = cached_fields::error::report(&err);
            assert_eq!(report.matches("boom on item 1").count(), 1, "{report}");
            assert!(report.contains("items.doubled") && report.contains("row 1"), "{report}");
        })
        .await;
    }
}

per_backend! {
    /// Issue #24: a hanging calculation holds nothing else. Rows of every
    /// batch go on being stored while the hung ones run, each in a worker
    /// slot of its own, until their time limit fails them alone.
    async fn hung_calculations_hold_no_batch_and_no_other_row() {
        on_both("hung", |db, _| async move {
            common::setup(&db).await;
            common::insert(&db, 200, "hung").await;
            // One row in a hundred never returns, in different batches.
            exec(&db, "UPDATE items SET mode = 'hang' WHERE id IN (7, 150)").await;
            let running = common::start(
                common::worker(&db)
                    .batch_size(20)
                    .concurrency(4)
                    .calculation_timeout(Duration::from_secs(12))
                    // Failed, they are not tried again before the end.
                    .retry_backoff(Duration::from_secs(60), Duration::from_secs(60)),
            );
            // Every other row is stored while the hung ones still run: none of
            // them has failed (timed out) yet.
            common::eventually(10, "every row but the hung ones stored", || {
                let db = db.clone();
                async move {
                    scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM items WHERE doubled_recalculation_needed").await == 2
                }
            })
            .await;
            let attempts = scalar(&db, "SELECT CAST(SUM(doubled_attempts) AS BIGINT) FROM items").await;
            assert_eq!(attempts, 0, "the hung rows are still running");
            for it in common::items(&db).await {
                if it.mode != "hang" {
                    assert_eq!(it.doubled.stored(), Some(it.input * 2), "item {}", it.id);
                }
            }
            // At their time limit they fail, alone.
            common::eventually(20, "the hung rows failed", || {
                let db = db.clone();
                async move { scalar(&db, "SELECT CAST(SUM(doubled_attempts) AS BIGINT) FROM items").await == 2 }
            })
            .await;
            let stats = running.stop().await;
            assert_eq!((stats.recalculated, stats.failed), (198, 2), "{stats:?}");
        })
        .await;
    }
}

per_backend! {
    /// Issue #24: a batch size larger than one claim's locks can hold on
    /// PostgreSQL (its lock table is shared by every session) still drains:
    /// the claims take as many rows as the server allows.
    async fn a_batch_larger_than_the_servers_lock_table_still_drains() {
        on_both("hugebatch", |db, _| async move {
            common::setup(&db).await;
            let tag = common::scoped("hugebatch");
            let fill = format!(
                "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < 20000) \
                 INSERT INTO items (id, input, tag) SELECT i, i, '{tag}' FROM s"
            );
            common::exec_text(&db, fill).await;
            let stats = common::worker(&db).batch_size(10_000).drain().await.unwrap();
            assert_eq!((stats.recalculated, stats.failed, stats.field_failures), (20_000, 0, 0), "{stats:?}");
            let flagged = scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM items WHERE doubled_recalculation_needed").await;
            assert_eq!(flagged, 0);
        })
        .await;
    }
}
