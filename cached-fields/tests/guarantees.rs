//! The guarantees of issue #2, each on SQLite and on PostgreSQL.

mod common;

use std::time::Duration;

use cached_fields::{Backend, Db, Error};
use chrono::Utc;
use common::*;

per_backend! {
    async fn read_calculates_once_then_reads_the_column() {
        on_both("read", |db, _| async move {
            setup(&db).await;
            insert(&db, 1, "read").await;
            let it = item(&db, 1).await.unwrap();
            assert_eq!(it.doubled.stored(), None);
            assert!(it.doubled.recalculation_needed(), "new rows start flagged");
            let before = calls("read");
            assert_eq!(it.doubled(&db).await.unwrap(), 2);
            assert_eq!(calls("read"), before + 1);
            // The in-memory copy is fresh now, and so is the row.
            assert_eq!(it.doubled(&db).await.unwrap(), 2);
            let again = item(&db, 1).await.unwrap();
            assert_eq!(again.doubled(&db).await.unwrap(), 2);
            assert_eq!(calls("read"), before + 1, "fresh reads never calculate");
            assert!(!again.doubled.recalculation_needed());
        })
        .await;
    }
}

per_backend! {
    async fn raw_invalidation_during_recalculation_is_never_lost() {
        on_both("race", |db, _| async move {
            setup(&db).await;
            let tag = format!("race-{:?}", db.backend());
            insert(&db, 1, &tag).await;
            let g = gate(&tag);
            let w = worker(&db);
            let drain = tokio::spawn(async move { w.drain().await });
            // The worker has read input = 1 and is calculating.
            g.entered.acquire().await.unwrap().forget();
            // Another program changes the input and sets the flag (already true)
            // with plain SQL.
            let n = exec_with(
                &db,
                "UPDATE items SET input = 5, doubled_recalculation_needed = TRUE WHERE id = $1",
                &[1],
            )
            .await;
            assert_eq!(n, 1);
            ungate(&tag);
            let stats = drain.await.unwrap().unwrap();
            assert!(stats.superseded >= 1, "{stats:?}");
            // The stale result (2) was not marked fresh; the drain went on to
            // recalculate from the new input.
            let it = item(&db, 1).await.unwrap();
            assert!(!it.doubled.recalculation_needed());
            assert_eq!(it.doubled.stored(), Some(10));
        })
        .await;
    }
}

per_backend! {
    async fn flag_inside_a_transaction_is_invisible_until_commit() {
        on_both("tx", |db, _| async move {
            setup(&db).await;
            insert(&db, 2, "tx").await;
            worker(&db).drain().await.unwrap();
            let it = item(&db, 1).await.unwrap();
            let flagged =
                |db: Db| async move { item(&db, 1).await.unwrap().doubled.recalculation_needed() };
            match &db {
                Db::Sqlite(p) => {
                    let mut tx = p.begin().await.unwrap();
                    it.flag_doubled_as_stale(&mut tx).await.unwrap();
                    assert!(!flagged(db.clone()).await, "visible before commit");
                    tx.rollback().await.unwrap();
                    assert!(!flagged(db.clone()).await, "a rollback flags nothing");
                    let mut tx = p.begin().await.unwrap();
                    it.flag_doubled_as_stale(&mut tx).await.unwrap();
                    tx.commit().await.unwrap();
                }
                Db::Postgres(p) => {
                    let mut tx = p.begin().await.unwrap();
                    it.flag_doubled_as_stale(&mut tx).await.unwrap();
                    assert!(!flagged(db.clone()).await, "visible before commit");
                    // A worker running now finds nothing to do.
                    let stats = worker(&db).drain().await.unwrap();
                    assert_eq!(stats.recalculated, 0);
                    tx.rollback().await.unwrap();
                    assert!(!flagged(db.clone()).await, "a rollback flags nothing");
                    let mut tx = p.begin().await.unwrap();
                    it.flag_doubled_as_stale(&mut tx).await.unwrap();
                    tx.commit().await.unwrap();
                }
                _ => unreachable!(),
            }
            assert!(flagged(db.clone()).await, "visible after commit");
            assert_eq!(worker(&db).drain().await.unwrap().recalculated, 1);
        })
        .await;
    }
}

per_backend! {
    async fn a_thousand_invalidations_cost_one_recalculation() {
        on_both("coalesce", |db, _| async move {
            setup(&db).await;
            let tag = format!("coalesce-{:?}", db.backend());
            insert(&db, 1, &tag).await;
            worker(&db).drain().await.unwrap();
            let before = calls(&tag);
            let it = item(&db, 1).await.unwrap();
            for i in 0..1000 {
                if i % 2 == 0 {
                    it.flag_doubled_as_stale(&db).await.unwrap();
                } else {
                    exec_with(
                        &db,
                        "UPDATE items SET doubled_recalculation_needed = TRUE WHERE id = $1",
                        &[1],
                    )
                    .await;
                }
            }
            let stats = worker(&db).drain().await.unwrap();
            assert_eq!(stats.recalculated, 1);
            assert_eq!(calls(&tag) - before, 1);
        })
        .await;
    }
}

per_backend! {
    async fn a_burst_of_commits_under_a_running_worker_coalesces() {
        on_both("burst", |db, _| async move {
            setup(&db).await;
            let tag = format!("burst-{:?}", db.backend());
            insert(&db, 1, &tag).await;
            worker(&db).drain().await.unwrap();
            let before = calls(&tag);
            let running = start(worker(&db));
            tokio::time::sleep(Duration::from_millis(100)).await;
            // 300 separate commits, each changing the input and setting the flag,
            // while the worker is running: the first is recalculated at once, the
            // row is hot from then on and waits for the burst to pause.
            const WRITES: u64 = 300;
            let burst = Burst::new();
            for _ in 0..WRITES {
                raw_write(&db, 1).await;
                burst.committed();
            }
            wait_unflagged(&db, 1, "the row is fresh after the burst").await;
            running.stop().await;
            assert_all_fresh(&db).await;
            assert_eq!(item(&db, 1).await.unwrap().input, 1 + WRITES as i64);
            let performed = calls(&tag) - before;
            let allowed = burst.promised(1);
            eprintln!("{performed} calculations for {WRITES} invalidations ({burst:?})");
            // The README's promise: the first and the final recalculation,
            // plus one for each pause of the burst and each 2 s period.
            assert!(
                (1..=allowed).contains(&performed),
                "{performed} calculations for {WRITES} invalidations, {allowed} promised ({burst:?})"
            );
        })
        .await;
    }
}

per_backend! {
    async fn a_row_written_without_pause_is_still_tried_every_period() {
        on_both("endless", |db, _| async move {
            setup(&db).await;
            let tag = format!("endless-{:?}", db.backend());
            insert(&db, 1, &tag).await;
            worker(&db).drain().await.unwrap();
            let g = gate(&tag);
            let before = calls(&tag);
            let running = start(worker(&db));
            tokio::time::sleep(Duration::from_millis(100)).await;
            // Writes every few milliseconds for 2.6 s, never pausing 50 ms: the
            // first calculation is held at the gate until the row is hot.
            let start = std::time::Instant::now();
            let mut released = false;
            while start.elapsed() < Duration::from_millis(2600) {
                raw_write(&db, 1).await;
                if !released && start.elapsed() > Duration::from_millis(100) {
                    ungate(&tag);
                    released = true;
                }
                tokio::time::sleep(Duration::from_millis(3)).await;
            }
            let during = calls(&tag) - before;
            drop(g);
            wait_unflagged(&db, 1, "the row is fresh after the writes stop").await;
            running.stop().await;
            assert_all_fresh(&db).await;
            // The first calculation, then one when the 2 s period since the row
            // went stale ends: never starved, never once per write.
            eprintln!("{during} calculations during 2.6 s of writes");
            assert!(
                (2..=4).contains(&during),
                "{during} calculations during the writes"
            );
        })
        .await;
    }
}

per_backend! {
    async fn a_batch_calculation_serves_a_claim_and_a_bad_row_fails_alone() {
        on_both("batch", |db, _| async move {
            setup(&db).await;
            let tag = format!("batch-{:?}", db.backend());
            insert(&db, 10, &tag).await;
            let w = worker(&db);
            let stats = w.drain().await.unwrap();
            assert_eq!(stats.recalculated, 10, "{stats:?}");
            assert_eq!(batches(&tag), 1, "one call for the whole claim");
            assert_eq!(calls(&tag), 10);
            assert_all_fresh(&db).await;
            // One row fails and one panics: the batch is refused, then panics;
            // each time the rows are calculated one by one and only the bad row
            // fails.
            for (mode, id) in [("fail", 3), ("panic", 5)] {
                // The previous round's bad row is due again (backoff 200 ms).
                tokio::time::sleep(Duration::from_millis(400)).await;
                exec(&db, "UPDATE items SET mode = 'ok'").await;
                exec_with(
                    &db,
                    "UPDATE items SET mode = 'fail', input = input + 100 WHERE id = $1",
                    &[id],
                )
                .await;
                if mode == "panic" {
                    exec_with(&db, "UPDATE items SET mode = 'panic' WHERE id = $1", &[id]).await;
                }
                exec(
                    &db,
                    "UPDATE items SET input = input + 1, doubled_recalculation_needed = TRUE",
                )
                .await;
                let batches_before = batches(&tag);
                let stats = w.drain().await.unwrap();
                assert_eq!(
                    (stats.recalculated, stats.failed),
                    (9, 1),
                    "{mode}: {stats:?}"
                );
                assert_eq!(batches(&tag), batches_before + 1, "{mode}");
                for it in items(&db).await {
                    if it.id == id {
                        assert!(
                            it.doubled.recalculation_needed(),
                            "{mode}: the bad row stays flagged"
                        );
                        assert_eq!(it.doubled.attempts(), 1, "{mode}");
                    } else {
                        assert!(!it.doubled.recalculation_needed(), "{mode}: item {}", it.id);
                        assert_eq!(
                            it.doubled.stored(),
                            Some(it.input * 2),
                            "{mode}: item {}",
                            it.id
                        );
                    }
                }
                let err = item(&db, id).await.unwrap().doubled(&db).await.unwrap_err();
                assert!(
                    err.to_string().contains(&format!("on item {id}")),
                    "{mode}: {err}"
                );
            }
            // Fixed: the retry succeeds.
            exec(&db, "UPDATE items SET mode = 'ok'").await;
            tokio::time::sleep(Duration::from_millis(500)).await;
            w.drain().await.unwrap();
            assert_all_fresh(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn expiry_is_acted_on_by_a_running_worker_without_a_read() {
        on_both("expiry", |db, _| async move {
            setup(&db).await;
            insert(&db, 1, "expiry").await;
            worker(&db).drain().await.unwrap();
            // The input changes behind the cache's back; only the expiry will notice.
            exec_with(&db, "UPDATE items SET input = 21 WHERE id = $1", &[1]).await;
            let it = item(&db, 1).await.unwrap();
            let when = Utc::now() + chrono::Duration::milliseconds(700);
            it.expire_doubled_after(&db, when).await.unwrap();
            let running = start(worker(&db).poll_interval(Duration::from_secs(60)));
            tokio::time::sleep(Duration::from_millis(300)).await;
            assert_eq!(
                item(&db, 1).await.unwrap().doubled.stored(),
                Some(2),
                "not before expiry"
            );
            eventually(10, "the expired value is recalculated", || {
                let db = db.clone();
                async move { item(&db, 1).await.unwrap().doubled.stored() == Some(42) }
            })
            .await;
            let fresh = item(&db, 1).await.unwrap();
            assert!(Utc::now() >= when);
            assert_eq!(
                fresh.doubled.expires_after(),
                None,
                "a passed expiry is cleared"
            );
            assert_eq!(running.stop().await.recalculated, 1);
        })
        .await;
    }
}

per_backend! {
    async fn failing_and_panicking_calculations_are_retried_with_backoff() {
        on_both("failures", |db, _| async move {
            setup(&db).await;
            insert(&db, 4, "failures").await;
            exec(&db, "UPDATE items SET mode = 'fail' WHERE id = 2").await;
            exec(&db, "UPDATE items SET mode = 'panic' WHERE id = 3").await;
            let w = worker(&db);
            let stats = w.drain().await.unwrap();
            assert_eq!((stats.recalculated, stats.failed), (2, 2), "{stats:?}");
            for (id, msg) in [(2, "boom on item 2"), (3, "kaboom on item 3")] {
                let it = item(&db, id).await.unwrap();
                assert!(
                    it.doubled.recalculation_needed(),
                    "a failure leaves the flag"
                );
                assert_eq!(it.doubled.attempts(), 1);
                let status = registry().status(&db).await.unwrap();
                assert_eq!(status[0].failing, 2);
                let (_, _, last) = status[0].last_error.clone().unwrap();
                assert!(last.contains("on item"), "{last}");
                let err = it.doubled(&db).await.unwrap_err();
                assert!(err.to_string().contains(msg), "{err}");
            }
            // Backing off: an immediate second drain leaves them alone.
            assert_eq!(w.drain().await.unwrap().failed, 0);
            // Still failing after the backoff: attempts grow.
            tokio::time::sleep(Duration::from_millis(300)).await;
            let stats = w.drain().await.unwrap();
            assert_eq!(stats.failed, 2, "{stats:?}");
            assert_eq!(item(&db, 2).await.unwrap().doubled.attempts(), 2);
            // Fixed: the next retry succeeds and counts as a retry.
            exec(&db, "UPDATE items SET mode = 'ok'").await;
            tokio::time::sleep(Duration::from_millis(650)).await;
            let stats = w.drain().await.unwrap();
            assert_eq!((stats.recalculated, stats.retried), (2, 2), "{stats:?}");
            assert_all_fresh(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn a_row_deleted_under_the_worker_is_skipped() {
        on_both("deleted", |db, _| async move {
            setup(&db).await;
            let tag = format!("deleted-{:?}", db.backend());
            insert(&db, 3, &tag).await;
            let g = gate(&tag);
            let w = worker(&db).concurrency(1);
            let drain = tokio::spawn(async move { w.drain().await });
            g.entered.acquire().await.unwrap().forget();
            // One row is being calculated; delete it and another still waiting.
            let calculating: Vec<i64> = items(&db).await.iter().map(|i| i.id).collect();
            exec_with(&db, "DELETE FROM items WHERE id = $1", &[calculating[0]]).await;
            exec_with(&db, "DELETE FROM items WHERE id = $1", &[calculating[2]]).await;
            ungate(&tag);
            let stats = drain.await.unwrap().unwrap();
            assert_eq!(stats.recalculated, 1, "{stats:?}");
            assert_eq!(stats.deleted, 2, "{stats:?}");
            assert_all_fresh(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn lazy_flags_wait_for_the_next_read() {
        on_both("lazy", |db, _| async move {
            setup(&db).await;
            insert(&db, 1, "lazy").await;
            worker(&db).drain().await.unwrap();
            exec(&db, "UPDATE items SET input = 4").await;
            let it = item(&db, 1).await.unwrap();
            it.flag_doubled_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            assert_eq!(worker(&db).drain().await.unwrap().recalculated, 0);
            let it = item(&db, 1).await.unwrap();
            assert!(it.doubled.recalculation_needed());
            assert_eq!(it.doubled(&db).await.unwrap(), 8);
            // An eager flag after a lazy one goes to the worker again.
            exec(&db, "UPDATE items SET input = 5").await;
            it.flag_doubled_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            it.flag_doubled_as_stale(&db).await.unwrap();
            assert_eq!(worker(&db).drain().await.unwrap().recalculated, 1);
            assert_all_fresh(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn recalculate_reloads_and_stores() {
        on_both("recalc", |db, _| async move {
            setup(&db).await;
            insert(&db, 1, "recalc").await;
            let it = item(&db, 1).await.unwrap();
            exec(&db, "UPDATE items SET input = 7").await;
            assert_eq!(it.recalculate_doubled(&db).await.unwrap(), 14);
            assert_eq!(it.doubled.stored(), Some(14));
            assert_all_fresh(&db).await;
            let gone = cached_fields::runtime::recalculate::<Item>(99, "doubled", &db).await;
            assert!(matches!(
                gone,
                Err(Error::RowNotFound {
                    key: cached_fields::Key::Int(99),
                    ..
                })
            ));
        })
        .await;
    }
}

per_backend! {
    async fn concurrent_writers_while_the_worker_recalculates() {
        on_both("writers", |db, _| async move {
            setup(&db).await;
            insert(&db, 50, "writers").await;
            let running = start(worker(&db).concurrency(4));
            let mut writers = Vec::new();
            for w in 0..3_i64 {
                let db = db.clone();
                writers.push(tokio::spawn(async move {
                    for i in 0..200_i64 {
                        let id = (i * 7 + w * 13) % 50 + 1;
                        exec_with(
                            &db,
                            "UPDATE items SET input = input + $2, \
                             doubled_recalculation_needed = TRUE WHERE id = $1",
                            &[id, w + 1],
                        )
                        .await;
                    }
                }));
            }
            for w in writers {
                w.await.unwrap();
            }
            eventually(30, "the worker drains every flag", || {
                let db = db.clone();
                async move {
                    items(&db)
                        .await
                        .iter()
                        .all(|i| !i.doubled.recalculation_needed())
                }
            })
            .await;
            running.stop().await;
            assert_all_fresh(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn missing_columns_are_named_with_the_migrate_hint() {
        on_both("missing", |db, _| async move {
            exec(
                &db,
                "CREATE TABLE items (id BIGINT PRIMARY KEY, input BIGINT NOT NULL, tag TEXT NOT NULL, mode TEXT NOT NULL)",
            )
            .await;
            exec(&db, "INSERT INTO items VALUES (1, 1, 'missing', 'ok')").await;
            let err = cached_fields::runtime::recalculate::<Item>(1, "doubled", &db)
                .await
                .unwrap_err();
            let msg = err.to_string();
            assert!(matches!(err, Error::MissingColumns { .. }), "{msg}");
            assert!(msg.contains("cached_doubled") && msg.contains("items") && msg.contains("migrate"), "{msg}");
            let problems = registry().check(&db).await.unwrap();
            assert!(problems.iter().any(|p| p.name == "doubled_recalculation_needed"));
            registry().migrate(&db).await.unwrap();
            assert!(registry().check(&db).await.unwrap().is_empty());
            assert!(registry().migrate(&db).await.unwrap().is_empty(), "migrate is idempotent");
        })
        .await;
    }
}

per_backend! {
    async fn a_wrong_type_in_the_cached_column_is_a_cache_miss_and_named_by_check() {
        on_both("wrongtype", |db, url| async move {
            setup(&db).await;
            insert(&db, 1, "wrongtype").await;
            if let Db::Postgres(_) = db {
                exec(
                    &db,
                    "ALTER TABLE items ALTER COLUMN cached_doubled TYPE TEXT",
                )
                .await;
            }
            exec(&db, "UPDATE items SET cached_doubled = 'abc'").await;
            // A stored value that cannot be read is a cache miss, not an error.
            assert!(item(&db, 1).await.unwrap().doubled.recalculation_needed());
            let r = cached_fields::runtime::recalculate::<Item>(1, "doubled", &db).await;
            assert_eq!(r.unwrap().doubled.stored(), Some(2));
            if db.backend() == Backend::Postgres {
                // PostgreSQL took the number as text; check names the damage.
                let problems = registry().check(&db).await.unwrap();
                assert!(
                    problems
                        .iter()
                        .any(|p| p.name == "cached_doubled" && p.to_string().contains("has type text")),
                    "{problems:?}"
                );
                registry().migrate(&db).await.unwrap();
                assert!(registry().check(&db).await.unwrap().is_empty());
            }
            common::worker(&db).drain().await.unwrap();
            // Read on a new pool: the test's own pooled connections prepared
            // `SELECT *` before the column was retyped back (the library's
            // statements prepare again; sqlx's plain queries do not).
            let fresh = Db::connect(&url).await.unwrap();
            assert_eq!(item(&fresh, 1).await.unwrap().doubled.stored(), Some(2));
            fresh.close().await;
        })
        .await;
    }
}

per_backend! {
    async fn a_dropped_trigger_is_caught_by_check_and_repaired_by_migrate() {
        on_both("trigger", |db, _| async move {
            setup(&db).await;
            let bump = common::object_name(
                &registry(),
                db.backend(),
                "cf_bump_items_doubled_recalculation_needed_",
            );
            common::exec_text(
                &db,
                match db.backend() {
                    Backend::Sqlite => format!("DROP TRIGGER {bump}"),
                    _ => format!("DROP TRIGGER {bump} ON items"),
                },
            )
            .await;
            let problems = registry().check(&db).await.unwrap();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!(
                problems[0].to_string(),
                format!("missing trigger items.{bump}")
            );
            registry().migrate(&db).await.unwrap();
            assert!(registry().check(&db).await.unwrap().is_empty());
        })
        .await;
    }
}

/// A table `row_updates` whose one row `n` a trigger of the test's own
/// adds one to on every row update of `table` (a plain identifier).
async fn count_row_updates(db: &Db, table: &str) {
    exec(db, "CREATE TABLE row_updates (n BIGINT NOT NULL)").await;
    exec(db, "INSERT INTO row_updates (n) VALUES (0)").await;
    let trigger = match db.backend() {
        Backend::Sqlite => format!(
            "CREATE TRIGGER count_updates AFTER UPDATE ON {table} \
             BEGIN UPDATE row_updates SET n = n + 1; END"
        ),
        _ => format!(
            "CREATE FUNCTION count_updates() RETURNS trigger LANGUAGE plpgsql AS \
             $$ BEGIN UPDATE row_updates SET n = n + 1; RETURN NULL; END $$; \
             CREATE TRIGGER count_updates AFTER UPDATE ON {table} FOR EACH ROW \
             EXECUTE FUNCTION count_updates();"
        ),
    };
    exec_text(db, trigger).await;
}

per_backend! {
    /// Issue #13: a drain calculates a row's fields together and writes
    /// them in one statement: `label`, which chains on `total`, is
    /// calculated with it. On PostgreSQL claims are locks of the worker's
    /// transaction (no row version written): one write per row; SQLite
    /// writes the claim's leases of both fields into the row: two. Counted
    /// by a trigger of the test's own on every row update of the table.
    async fn a_drain_writes_each_row_once_for_all_its_fields_after_its_claim() {
        use common::posts;
        on_both("claimwrites", |db, _| async move {
            // More rows than a batch (64): a `label` batch must leave to
            // `total`'s batches the rows `total` still has due.
            const POSTS: i64 = 150;
            posts::setup(&db, POSTS).await;
            count_row_updates(&db, "posts").await;
            // Every post's total (and so its label, flagged in place).
            exec(&db, "UPDATE posts SET weight = weight + 1").await;
            exec(&db, "UPDATE row_updates SET n = 0").await;
            let stats = posts::drain(&db).await;
            assert_eq!(stats.recalculated, 2 * POSTS as u64, "{stats:?}");
            let per_row = match db.backend() {
                // The claim, which leases both fields (written into the
                // row), and one write-back of both.
                Backend::Sqlite => 2,
                // One write-back of both fields.
                _ => 1,
            };
            assert_eq!(scalar(&db, "SELECT n FROM row_updates").await, POSTS * per_row);
            posts::assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    /// A row whose flag time is behind where the worker's walk of the
    /// flagged rows stands (on PostgreSQL, claims walk them in flag order
    /// from where the last batch ended) is still taken: flagged by a
    /// transaction that commits after the walk passed its flag time
    /// (PostgreSQL), and flagged with a flag time set back an hour (both
    /// backends).
    async fn a_row_flagged_behind_the_walk_is_still_recalculated() {
        use common::posts;
        on_both("behind", |db, _| async move {
            posts::setup(&db, 200).await;
            // Past the hot-row pause of the setup's recalculations: a flag
            // makes the rows due at once, not after a pause.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let running = start(
                cached_fields::Worker::new(db.clone(), posts::registry())
                    .poll_interval(Duration::from_millis(50)),
            );
            let total = |id: i64| {
                let db = db.clone();
                async move {
                    posts::posts(&db)
                        .await
                        .into_iter()
                        .find(|p| p.id == id)
                        .is_some_and(|p| !p.total.recalculation_needed())
                }
            };
            let late = match &db {
                Db::Postgres(pool) => {
                    let mut tx = pool.begin().await.unwrap();
                    sqlx::query("UPDATE posts SET weight = weight + 100 WHERE id = 1")
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    Some(tx)
                }
                _ => None,
            };
            // The others, flagged after it, drained past it.
            posts::sql(&db, "UPDATE posts SET weight = weight + 1 WHERE id > $1", &[2]).await;
            eventually(20, "the posts flagged later stored", || {
                let db = db.clone();
                async move { posts::flagged(&db).await.iter().all(|&id| id <= 2) }
            })
            .await;
            if let Some(tx) = late {
                tx.commit().await.unwrap();
                eventually(10, "post 1, committed late, stored", || total(1)).await;
            }
            let back = match db.backend() {
                Backend::Sqlite => "UPDATE posts SET total_stale_since = datetime(total_stale_since, '-1 hour') WHERE id = $1",
                _ => "UPDATE posts SET total_stale_since = total_stale_since - interval '1 hour' WHERE id = $1",
            };
            crate::on_pool!(&db, |p| {
                let mut tx = p.begin().await.unwrap();
                sqlx::query("UPDATE posts SET weight = weight + 100 WHERE id = $1")
                    .bind(2_i64)
                    .execute(&mut *tx)
                    .await
                    .unwrap();
                sqlx::query(back).bind(2_i64).execute(&mut *tx).await.unwrap();
                tx.commit().await.unwrap();
            });
            eventually(10, "post 2, flagged an hour back, stored", || total(2)).await;
            let stats = running.stop().await;
            assert_eq!(stats.failed, 0, "{stats:?}");
            posts::assert_consistent(&db).await;
        })
        .await;
    }
}

/// Issue #13's shelves: `upper` reads the shelf's own `name`, `pages` the
/// pages of its books (along a path), `summary` chains on both.
#[derive(Debug, Clone, cached_fields::CachedModel)]
#[cached_model(table = "shelves")]
struct Shelf {
    id: i64,
    name: String,
    #[cached(depends_on("name"))]
    upper: cached_fields::Cached<String>,
    #[cached(depends_on("books(shelf_id).pages"))]
    pages: cached_fields::Cached<i64>,
    #[cached(depends_on("upper", "pages"))]
    summary: cached_fields::Cached<String>,
}

impl Shelf {
    async fn calculate_upper(
        &self,
        _: &mut cached_fields::Ctx<'_>,
    ) -> Result<String, cached_fields::BoxError> {
        Ok(self.name.to_uppercase())
    }

    async fn calculate_pages(
        &self,
        ctx: &mut cached_fields::Ctx<'_>,
    ) -> Result<i64, cached_fields::BoxError> {
        let sql = "SELECT CAST(COALESCE(SUM(pages), 0) AS BIGINT) FROM books WHERE shelf_id = $1";
        Ok(match ctx.conn().await? {
            cached_fields::Conn::Sqlite(c) => {
                sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?
            }
            cached_fields::Conn::Postgres(c) => {
                sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?
            }
            _ => unreachable!(),
        })
    }

    async fn calculate_summary(
        &self,
        ctx: &mut cached_fields::Ctx<'_>,
    ) -> Result<String, cached_fields::BoxError> {
        let upper = self.upper(&mut *ctx).await?;
        Ok(format!("{upper} {}", self.pages(ctx).await?))
    }
}

/// Tables `shelves` (`shelves` of them, fresh) and `books` (two on each
/// shelf: 10 pages and as many as the shelf's id), past the hot-row pause
/// of their recalculations (a flag makes a row due at once).
async fn shelves(db: &Db, shelves: i64) -> cached_fields::Registry {
    let registry = cached_fields::Registry::new().register::<Shelf>().unwrap();
    exec_text(
        db,
        format!("CREATE TABLE shelves (id {}, name TEXT NOT NULL)", pk(db)),
    )
    .await;
    exec_text(
        db,
        format!(
            "CREATE TABLE books (id {}, shelf_id BIGINT NOT NULL REFERENCES shelves (id), \
             pages BIGINT NOT NULL)",
            pk(db)
        ),
    )
    .await;
    registry.migrate(db).await.unwrap();
    for i in 1..=shelves {
        exec_with(
            db,
            "INSERT INTO shelves (id, name) VALUES ($1, 'shelf')",
            &[i],
        )
        .await;
        exec_with(
            db,
            "INSERT INTO books (id, shelf_id, pages) VALUES (2 * $1, $1, 10), (2 * $1 + 1, $1, $1)",
            &[i],
        )
        .await;
    }
    cached_fields::Worker::new(db.clone(), registry.clone())
        .drain()
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    registry
}

/// Every shelf, in key order.
async fn shelves_now(db: &Db) -> Vec<Shelf> {
    let q = "SELECT * FROM shelves ORDER BY id";
    on_pool!(db, |p| sqlx::query_as(q).fetch_all(p).await.unwrap())
}

/// `count` shelves, each with its three fields fresh: `upper` as given,
/// `pages` as `pages` gives for its id, `summary` both.
async fn assert_shelves_fresh(db: &Db, count: i64, upper: &str, pages: impl Fn(i64) -> i64) {
    let shelves = shelves_now(db).await;
    assert_eq!(shelves.len(), count as usize);
    for s in shelves {
        let pages = pages(s.id);
        assert!(
            !s.upper.recalculation_needed()
                && !s.pages.recalculation_needed()
                && !s.summary.recalculation_needed(),
            "shelf {}",
            s.id
        );
        assert_eq!(s.upper.stored().as_deref(), Some(upper), "shelf {}", s.id);
        assert_eq!(s.pages.stored(), Some(pages), "shelf {}", s.id);
        assert_eq!(
            s.summary.stored(),
            Some(format!("{upper} {pages}")),
            "shelf {}",
            s.id
        );
    }
}

per_backend! {
    /// Issue #13: a field that reads another table along a path goes with
    /// the batch of an earlier field of its row like any other: a rename
    /// of every shelf and a page added to every book, then a drain, write
    /// each shelf once for all three of its fields after the claim (twice
    /// on SQLite, whose claim writes the leases into the row). Counted by a
    /// trigger of the test's own on every row update of the table.
    async fn a_field_read_along_a_path_is_written_with_the_rest_of_its_row() {
        on_both("shelves", |db, _| async move {
            const SHELVES: i64 = 150;
            let registry = shelves(&db, SHELVES).await;
            let worker = || cached_fields::Worker::new(db.clone(), registry.clone());
            count_row_updates(&db, "shelves").await;
            // Every shelf's `upper` and `pages` due at once (the rename's
            // flag is itself a row update: counted from here).
            exec(&db, "UPDATE shelves SET name = 'renamed'").await;
            exec(&db, "UPDATE books SET pages = pages + 1").await;
            exec(&db, "UPDATE row_updates SET n = 0").await;
            let stats = worker().drain().await.unwrap();
            assert_eq!(stats.recalculated, 3 * SHELVES as u64, "{stats:?}");
            assert_eq!(stats.failed, 0, "{stats:?}");
            let per_row = match db.backend() {
                // The claim, which leases the three fields (written into
                // the row), and one write-back of all three.
                Backend::Sqlite => 2,
                // One write-back of all three.
                _ => 1,
            };
            assert_eq!(scalar(&db, "SELECT n FROM row_updates").await, SHELVES * per_row);
            assert_shelves_fresh(&db, SHELVES, "RENAMED", |id| 10 + 1 + id + 1).await;
        })
        .await;
    }
}

/// Index entries read from the flag index of `field` of `table`, as
/// PostgreSQL counts them once the backends that read them have reported
/// (at their exit: the caller closes their pool first).
async fn flag_index_reads(db: &Db, table: &str, field: &str) -> i64 {
    let q = format!(
        "SELECT CAST(COALESCE(SUM(idx_tup_read), 0) AS BIGINT) FROM pg_stat_user_indexes \
         WHERE relname = '{table}' AND indexrelname LIKE 'cf\\_{table}\\_{field}\\_recalculation\\_needed%'"
    );
    let mut last = scalar(db, &q).await;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let now = scalar(db, &q).await;
        if now == last {
            return now;
        }
        last = now;
    }
    panic!("the index statistics of {table}.{field} kept changing");
}

/// Issue #13: a claim walks the flag's index in its order, from where the
/// field's last batch ended, even where the planner knows nothing of the
/// table (never analyzed, autovacuum off for it) and plans a claim for its
/// own parameters (the first executions of a prepared statement, or every
/// one behind a transaction-mode pooler). Such a plan used to read every
/// flagged row and sort them, for each of a worker's first claims: a
/// drain of 3,000 renamed shelves read 46,787 entries of the index, where
/// it now reads 3,177. PostgreSQL only: SQLite's claims are another
/// statement, planned by another engine, with no such figures.
#[tokio::test]
async fn claims_walk_the_flag_index_without_statistics_postgres() {
    const SHELVES: i64 = 3000;
    let Some((db, url)) = common::postgres("claimwalk").await else {
        return;
    };
    let registry = shelves(&db, 1).await;
    exec(&db, "ALTER TABLE shelves SET (autovacuum_enabled = false)").await;
    exec_with(
        &db,
        "INSERT INTO shelves (id, name) SELECT i, 'shelf' FROM generate_series(2, $1) AS i",
        &[SHELVES],
    )
    .await;
    exec_with(
        &db,
        "INSERT INTO books (id, shelf_id, pages) SELECT 2 * i + j, i, CASE WHEN j = 0 THEN 10 ELSE i END \
         FROM generate_series(2, $1) AS i, generate_series(0, 1) AS j",
        &[SHELVES],
    )
    .await;
    // Each drain on a pool of its own, closed after it: its backends
    // report what they read as they exit (an idle one may wait 10 s), and
    // its statements are prepared afresh, so its first claims are planned
    // for their parameters.
    let drain = || async {
        let own = Db::connect(&url).await.unwrap();
        let stats = cached_fields::Worker::new(own.clone(), registry.clone())
            .drain()
            .await
            .unwrap();
        own.close().await;
        stats
    };
    drain().await;
    exec(&db, "UPDATE shelves SET name = 'renamed'").await;
    let before = flag_index_reads(&db, "shelves", "upper").await;
    let stats = drain().await;
    let read = flag_index_reads(&db, "shelves", "upper").await - before;
    assert_eq!(stats.recalculated, 2 * SHELVES as u64, "upper and summary");
    assert!(
        read < 2 * SHELVES,
        "the drain read {read} entries of upper's flag index for {SHELVES} flagged rows"
    );
    assert_shelves_fresh(&db, SHELVES, "RENAMED", |id| 10 + id).await;
    db.close().await;
    drop_postgres(&url).await;
}

per_backend! {
    /// Issue #13: a field of the row that waits (its retry an hour off, as
    /// a failure's backoff leaves it) is not calculated with another
    /// field's batch: the pages are stored, `upper` stays flagged with its
    /// retry where it was.
    async fn a_companion_backing_off_is_left_to_its_retry() {
        on_both("shelves_backoff", |db, _| async move {
            const SHELVES: i64 = 20;
            let registry = shelves(&db, SHELVES).await;
            let later = match db.backend() {
                Backend::Sqlite => "UPDATE shelves SET upper_recalculation_needed = TRUE, \
                    upper_next_attempt_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '+1 hour')",
                _ => "UPDATE shelves SET upper_recalculation_needed = TRUE, \
                    upper_next_attempt_at = now() + interval '1 hour'",
            };
            exec(&db, later).await;
            exec(&db, "UPDATE books SET pages = pages + 1").await;
            let stats = cached_fields::Worker::new(db.clone(), registry.clone())
                .drain()
                .await
                .unwrap();
            assert_eq!(stats.failed, 0, "{stats:?}");
            let shelves = shelves_now(&db).await;
            for s in shelves {
                assert_eq!(s.pages.stored(), Some(10 + 1 + s.id + 1), "shelf {}", s.id);
                assert!(!s.pages.recalculation_needed(), "shelf {}", s.id);
                assert!(s.upper.recalculation_needed(), "shelf {}: upper taken during its backoff", s.id);
            }
            let waiting = match db.backend() {
                Backend::Sqlite => "SELECT COUNT(*) FROM shelves WHERE julianday(upper_next_attempt_at) > julianday('now', '+50 minutes')",
                _ => "SELECT COUNT(*) FROM shelves WHERE upper_next_attempt_at > now() + interval '50 minutes'",
            };
            assert_eq!(scalar(&db, waiting).await, SHELVES, "every retry where it was");
        })
        .await;
    }
}

per_backend! {
    /// Issue #13: workers draining the shelves at once, each batch taking
    /// the row's other due fields (those before its field in dependency
    /// order too) where no other worker holds them, never calculate a
    /// field of a row twice: every shelf's three fields flagged with their
    /// inputs unchanged, 3 × shelves calculations in all.
    async fn workers_taking_each_others_fields_never_repeat_work() {
        on_both("shelves_workers", |db, _| async move {
            const SHELVES: i64 = 300;
            let registry = shelves(&db, SHELVES).await;
            exec(&db, "UPDATE shelves SET upper_recalculation_needed = TRUE, \
                pages_recalculation_needed = TRUE, summary_recalculation_needed = TRUE").await;
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    let w = cached_fields::Worker::new(db.clone(), registry.clone()).batch_size(16);
                    tokio::spawn(async move { w.drain().await })
                })
                .collect();
            let mut performed = 0;
            for w in workers {
                let s = w.await.unwrap().unwrap();
                assert_eq!(s.failed, 0, "{s:?}");
                performed += s.recalculated + s.superseded;
            }
            assert_eq!(performed, 3 * SHELVES as u64, "calculations beyond one per field and shelf");
            assert_shelves_fresh(&db, SHELVES, "SHELF", |id| 10 + id).await;
        })
        .await;
    }
}
