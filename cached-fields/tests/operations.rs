//! Issue #12, first step: steering the work from the database — a field
//! paused until resumed, a hold over a block of work (released, dropped, or
//! left behind by a process that died and expiring by itself) — and worker
//! heartbeats, on both backends.

mod common;

use std::time::Duration;

use cached_fields::Db;
use common::{insert, on_both, per_backend, raw_write, registry, scalar, setup, start};

async fn flagged(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM items WHERE doubled_recalculation_needed",
    )
    .await
}

async fn drain(db: &Db) -> u64 {
    common::worker(db).drain().await.unwrap().recalculated
}

async fn status(db: &Db) -> cached_fields::worker::FieldStatus {
    registry().status(db).await.unwrap().remove(0)
}

per_backend! {
    async fn a_paused_field_stays_flagged_until_resumed() {
        on_both("pause", |db, _| async move {
            setup(&db).await;
            insert(&db, 3, "pause").await;
            assert_eq!(drain(&db).await, 3);
            let r = registry();
            r.pause(&db, "items.doubled").await.unwrap();
            assert!(status(&db).await.paused);
            raw_write(&db, 1).await;
            raw_write(&db, 2).await;
            // Every worker leaves it alone: nothing recalculated, both flagged.
            assert_eq!(drain(&db).await, 0);
            assert_eq!(flagged(&db).await, 2);
            // Reads still recalculate inline.
            let item = common::item(&db, 1).await.unwrap();
            assert_eq!(item.doubled(&db).await.unwrap(), 4);
            assert_eq!(flagged(&db).await, 1);
            // Resumed: the worker catches up.
            r.resume(&db, "items.doubled").await.unwrap();
            assert!(!status(&db).await.paused);
            assert_eq!(drain(&db).await, 1);
            assert_eq!(flagged(&db).await, 0);
            // A field that is not declared is refused, naming it.
            let e = r.pause(&db, "items.nope").await.unwrap_err().to_string();
            assert!(e.contains("nope"), "{e}");
            let e = r.pause(&db, "items").await.unwrap_err().to_string();
            assert!(e.contains("table.field"), "{e}");
        })
        .await;
    }
}

per_backend! {
    async fn a_running_worker_obeys_a_pause_within_a_second() {
        on_both("pauselive", |db, _| async move {
            setup(&db).await;
            insert(&db, 2, "pauselive").await;
            let running = start(common::worker(&db));
            common::eventually(10, "the new rows calculated", || {
                let db = db.clone();
                async move { flagged(&db).await == 0 }
            })
            .await;
            registry().pause(&db, "items.doubled").await.unwrap();
            tokio::time::sleep(Duration::from_millis(1200)).await;
            raw_write(&db, 1).await;
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert_eq!(flagged(&db).await, 1, "paused: left flagged");
            registry().resume(&db, "items.doubled").await.unwrap();
            common::eventually(10, "caught up after resume", || {
                let db = db.clone();
                async move { flagged(&db).await == 0 }
            })
            .await;
            running.stop().await;
        })
        .await;
    }
}

per_backend! {
    async fn a_hold_defers_recalculation_until_it_ends() {
        on_both("hold", |db, _| async move {
            setup(&db).await;
            insert(&db, 3, "hold").await;
            assert_eq!(drain(&db).await, 3);
            let r = registry();
            // Released: each written row once, after the block.
            let hold = r.hold(&db, &["items.doubled"]).await.unwrap();
            assert!(status(&db).await.held);
            for _ in 0..3 {
                raw_write(&db, 1).await;
                raw_write(&db, 2).await;
            }
            assert_eq!(drain(&db).await, 0);
            hold.release().await.unwrap();
            assert!(!status(&db).await.held);
            assert_eq!(drain(&db).await, 2);
            // Dropped: released in the background.
            let hold = r.hold(&db, &["items.doubled"]).await.unwrap();
            raw_write(&db, 3).await;
            assert_eq!(drain(&db).await, 0);
            drop(hold);
            common::eventually(10, "a dropped hold released", || {
                let db = db.clone();
                async move { !status(&db).await.held }
            })
            .await;
            assert_eq!(drain(&db).await, 1);
            // Left behind by a process that died: it expires by itself.
            let until = chrono::Utc::now() + chrono::Duration::milliseconds(1500);
            on_pool!(&db, |p| sqlx::query(
                "INSERT INTO cached_fields_pauses (table_name, field_name, id, until) \
                 VALUES ('items', 'doubled', 'hold:gone:1:1', $1)"
            )
            .bind(until)
            .execute(p)
            .await
            .map(drop)
            .unwrap());
            raw_write(&db, 1).await;
            assert_eq!(drain(&db).await, 0);
            assert!(status(&db).await.held);
            tokio::time::sleep(Duration::from_millis(1600)).await;
            assert!(!status(&db).await.held);
            assert_eq!(drain(&db).await, 1);
            let left = scalar(&db, "SELECT CAST(COUNT(*) AS BIGINT) FROM cached_fields_pauses").await;
            assert_eq!(left, 0, "the expired hold is deleted");
        })
        .await;
    }
}

per_backend! {
    async fn workers_record_heartbeats_and_gone_ones_are_shown_then_forgotten() {
        on_both("beats", |db, _| async move {
            setup(&db).await;
            let r = registry();
            assert!(r.workers(&db).await.unwrap().is_empty());
            // A worker that died long ago, and one that went quiet lately.
            let running = start(common::worker(&db));
            common::eventually(10, "the worker's first heartbeat", || {
                let (db, r) = (db.clone(), r.clone());
                async move { !r.workers(&db).await.unwrap().is_empty() }
            })
            .await;
            let ago = |s: i64| chrono::Utc::now() - chrono::Duration::seconds(s);
            for (id, secs) in [("old:1:1", 600), ("quiet:2:2", 20)] {
                on_pool!(&db, |p| sqlx::query(
                    "INSERT INTO cached_fields_workers (id, host, pid, started_at, heartbeat_at, \
                     recalculated, failed) VALUES ($1, 'elsewhere', 7, $2, $2, 0, 0)"
                )
                .bind(id)
                .bind(ago(secs))
                .execute(p)
                .await
                .map(drop)
                .unwrap());
            }
            let workers = r.workers(&db).await.unwrap();
            assert_eq!(workers.len(), 3, "{workers:?}");
            let me = &workers[0];
            assert!(me.alive, "{me:?}");
            assert_eq!(me.pid, i64::from(std::process::id()));
            assert!(workers[1..].iter().all(|w| !w.alive), "{workers:?}");
            // The next heartbeat deletes the one silent for over a minute.
            insert(&db, 2, "beats").await;
            common::eventually(15, "the long-gone worker forgotten", || {
                let (db, r) = (db.clone(), r.clone());
                async move { r.workers(&db).await.unwrap().len() == 2 }
            })
            .await;
            let stats = running.stop().await;
            assert_eq!(stats.recalculated, 2);
            // Its activity, per minute, for the dashboard's chart.
            let recorded = scalar(
                &db,
                "SELECT CAST(SUM(recalculated) AS BIGINT) FROM cached_fields_activity \
                 WHERE table_name = 'items' AND field_name = 'doubled'",
            )
            .await;
            assert_eq!(recorded, 2);
            // A stopped worker deletes its own row.
            let left: Vec<String> = r.workers(&db).await.unwrap().into_iter().map(|w| w.id).collect();
            assert_eq!(left, vec!["quiet:2:2".to_owned()]);
        })
        .await;
    }
}

per_backend! {
    /// Issue #24: a pause is honoured by every path that stores the field,
    /// not only its own batches: a field chaining on a paused one leaves
    /// the row flagged too (calculating it would store the paused field
    /// first), and goes on where the paused field is fresh.
    async fn a_paused_field_is_not_stored_through_a_field_chaining_on_it() {
        use common::posts;
        on_both("pausechain", |db, _| async move {
            posts::setup(&db, 3).await;
            let r = posts::registry();
            for how in ["pause", "hold"] {
                let hold = if how == "pause" {
                    r.pause(&db, "posts.total").await.unwrap();
                    None
                } else {
                    Some(r.hold(&db, &["posts.total"]).await.unwrap())
                };
                // Post 1: both fields stale (label reads total); post 2: only
                // the label (its total is fresh).
                let (change, rename) = if how == "pause" {
                    (
                        "UPDATE posts SET weight = weight + 1, title = 'changed' WHERE id = $1",
                        "UPDATE posts SET title = 'renamed' WHERE id = $1",
                    )
                } else {
                    (
                        "UPDATE posts SET weight = weight + 1, title = 'changed again' WHERE id = $1",
                        "UPDATE posts SET title = 'renamed again' WHERE id = $1",
                    )
                };
                posts::sql(&db, change, &[1]).await;
                posts::sql(&db, rename, &[2]).await;
                let stats = posts::drain(&db).await;
                assert_eq!(stats.recalculated, 1, "{how}: only post 2's label: {stats:?}");
                let p = posts::posts(&db).await;
                assert!(p[0].total.recalculation_needed(), "{how}: the paused total is left flagged");
                assert!(p[0].label.recalculation_needed(), "{how}: the label waits for it");
                assert!(!p[1].label.recalculation_needed(), "{how}: post 2's label went on");
                // Again, with nothing new: nothing is stored, nothing spins.
                assert_eq!(posts::drain(&db).await.recalculated, 0, "{how}");
                match hold {
                    None => r.resume(&db, "posts.total").await.unwrap(),
                    Some(h) => h.release().await.unwrap(),
                }
                assert_eq!(posts::drain(&db).await.recalculated, 2, "{how}: total then label");
                posts::assert_consistent(&db).await;
            }
        })
        .await;
    }
}

#[cfg(feature = "cli")]
mod recalc_order {
    use super::*;
    use cached_fields::cli::{App, Command};
    use cached_fields::{BoxError, Cached, CachedModel, Conn, Ctx, Registry};

    /// A customer's lifetime value: the cached totals of its orders.
    #[derive(Debug, Clone, CachedModel)]
    #[cached_model(table = "customers")]
    struct Customer {
        id: i64,
        #[cached(depends_on("orders(customer_id).total_cents"))]
        lifetime_value: Cached<i64>,
    }

    impl Customer {
        async fn calculate_lifetime_value(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
            let sql = "SELECT CAST(COALESCE(SUM(cached_total_cents), 0) AS BIGINT) FROM orders \
                       WHERE customer_id = $1";
            Ok(match ctx.conn().await? {
                Conn::Sqlite(c) => sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?,
                Conn::Postgres(c) => sqlx::query_scalar(sql).bind(self.id).fetch_one(c).await?,
                _ => unreachable!(),
            })
        }
    }

    #[derive(Debug, Clone, CachedModel)]
    #[cached_model(table = "orders")]
    struct Order {
        id: i64,
        quantity: i64,
        unit_cents: i64,
        #[cached(depends_on("quantity", "unit_cents"))]
        total_cents: Cached<i64>,
    }

    impl Order {
        async fn calculate_total_cents(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
            Ok(self.quantity * self.unit_cents)
        }
    }

    /// Customers whose stored value is not the sum of their orders'
    /// quantities times prices, or that are still flagged.
    async fn wrong(db: &Db) -> i64 {
        scalar(
            db,
            "SELECT CAST(COUNT(*) AS BIGINT) FROM customers c WHERE c.lifetime_value_recalculation_needed \
             OR c.cached_lifetime_value IS DISTINCT FROM (SELECT COALESCE(SUM(quantity * unit_cents), 0) \
             FROM orders o WHERE o.customer_id = c.id)",
        )
        .await
    }

    per_backend! {
        /// Issue #24: `recalc` follows the order `deps` prints, whatever the
        /// registration order: a customer's value after its orders' totals.
        async fn recalc_follows_the_dependency_order() {
            on_both("recalcorder", |db, _| async move {
                for ddl in [
                    "CREATE TABLE customers (id BIGINT PRIMARY KEY)",
                    "CREATE TABLE orders (id BIGINT PRIMARY KEY, customer_id BIGINT NOT NULL \
                     REFERENCES customers(id), quantity BIGINT NOT NULL, unit_cents BIGINT NOT NULL)",
                ] {
                    common::exec_text(&db, ddl.to_owned()).await;
                }
                // The reader registered first.
                let registry = Registry::new()
                    .register::<Customer>()
                    .unwrap()
                    .register::<Order>()
                    .unwrap();
                registry.migrate(&db).await.unwrap();
                common::exec_text(&db, "INSERT INTO customers (id) VALUES (1), (2), (3)".to_owned()).await;
                common::exec_text(
                    &db,
                    "INSERT INTO orders (id, customer_id, quantity, unit_cents) VALUES \
                     (1, 1, 2, 100), (2, 1, 1, 250), (3, 2, 5, 10)"
                        .to_owned(),
                )
                .await;
                let app = App::new("shop", registry);
                let recalc = || Command::Recalc { all: false, stale: true, field: None, key: Vec::new() };
                app.run_on(recalc(), &db).await.unwrap();
                assert_eq!(wrong(&db).await, 0, "after the first recalc");
                // A price change: the order, then the customer reading it.
                common::exec_text(&db, "UPDATE orders SET unit_cents = 300 WHERE id = 2".to_owned()).await;
                app.run_on(recalc(), &db).await.unwrap();
                assert_eq!(wrong(&db).await, 0, "after a price change");
                let flagged = scalar(
                    &db,
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE total_cents_recalculation_needed",
                )
                .await;
                assert_eq!(flagged, 0);
                // A paused field is skipped, saying so.
                app.registry().pause(&db, "orders.total_cents").await.unwrap();
                common::exec_text(&db, "UPDATE orders SET quantity = 9 WHERE id = 3".to_owned()).await;
                app.run_on(recalc(), &db).await.unwrap();
                let flagged = scalar(
                    &db,
                    "SELECT CAST(COUNT(*) AS BIGINT) FROM orders WHERE total_cents_recalculation_needed",
                )
                .await;
                assert_eq!(flagged, 1, "the paused field is left for its resume");
            })
            .await;
        }
    }
}
