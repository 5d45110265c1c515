//! `lamppost demo`: the seed README's story on a fresh embedded database.

use std::time::{Duration, Instant};

use cached_fields::{Db, Worker};

use crate::models::{self, Lamppost, Pigeon, Street};
use crate::on_db;

async fn load(db: &Db, id: i64) -> anyhow::Result<Lamppost> {
    Ok(on_db!(db, |p| sqlx::query_as(
        "SELECT * FROM lampposts WHERE id = $1"
    )
    .bind(id)
    .fetch_one(p)
    .await?))
}

async fn wait_until_fresh(db: &Db, id: i64, timeout: Duration) -> anyhow::Result<Lamppost> {
    let start = Instant::now();
    loop {
        let lamp = load(db, id).await?;
        if !lamp.slow_full_name.recalculation_needed()
            && !lamp.total_weight.recalculation_needed()
            && lamp.slow_full_name.expires_after().is_none()
        {
            return Ok(lamp);
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "the worker did not catch up within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Waits until no cached field of any table is flagged.
async fn wait_until_all_fresh(db: &Db, timeout: Duration) -> anyhow::Result<()> {
    const FLAGGED: &str = "SELECT (SELECT COUNT(*) FROM lampposts WHERE total_weight_recalculation_needed \
         OR slow_full_name_recalculation_needed) + (SELECT COUNT(*) FROM streets \
         WHERE pigeon_weight_recalculation_needed OR heaviest_recalculation_needed) \
         + (SELECT COUNT(*) FROM pigeons WHERE perch_recalculation_needed)";
    let start = Instant::now();
    loop {
        let n: i64 = on_db!(db, |p| sqlx::query_scalar(FLAGGED).fetch_one(p).await?);
        if n == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            start.elapsed() < timeout,
            "the worker did not catch up within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn street(db: &Db, id: i64) -> anyhow::Result<Street> {
    Ok(on_db!(db, |p| sqlx::query_as(
        "SELECT * FROM streets WHERE id = $1"
    )
    .bind(id)
    .fetch_one(p)
    .await?))
}

async fn pigeon(db: &Db, id: i64) -> anyhow::Result<Pigeon> {
    Ok(on_db!(db, |p| sqlx::query_as(
        "SELECT * FROM pigeons WHERE id = $1"
    )
    .bind(id)
    .fetch_one(p)
    .await?))
}

/// Step 8: fields that read other tables along paths of two hops.
async fn streets(db: &Db) -> anyhow::Result<()> {
    let lamp = load(db, 1).await?;
    let street_id = lamp.street_id.unwrap_or(1);
    let before = street(db, street_id).await?;
    println!(
        "\n8. Lamppost 1 stands on {:?}, whose cached fields read other tables:",
        before.name
    );
    println!(
        "   pigeon_weight {:?} (lampposts(street_id).pigeons(lamppost_id).weight: two hops back),",
        before.pigeon_weight.stored().unwrap_or_default()
    );
    println!(
        "   heaviest {:?} (lampposts(street_id).total_weight: a chain on the lampposts' cached field).",
        before.heaviest.stored().unwrap_or_default()
    );
    let t = Instant::now();
    exec(db, "UPDATE streets SET name = 'Lantern Row' WHERE id = 1").await?;
    exec(
        db,
        "INSERT INTO pigeons (lamppost_id, weight) VALUES (1, 5)",
    )
    .await?;
    wait_until_all_fresh(db, Duration::from_secs(60)).await?;
    let after = street(db, street_id).await?;
    let perched = pigeon(db, 1).await?;
    println!(
        "   Plain SQL renames the street and lands a pigeon of 5 on lamppost {}; {:.0} ms later",
        perched.lamppost_id,
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "   {:?} has pigeon_weight {:?} and heaviest {:?}, and pigeon 1 perches on {:?}",
        after.name,
        after.pigeon_weight.stored().unwrap_or_default(),
        after.heaviest.stored().unwrap_or_default(),
        perched.perch.stored().unwrap_or_default()
    );
    println!("   (lamppost_id->lampposts.street_id->streets.name: two hops forward).");
    Ok(())
}

async fn exec(db: &Db, sql: &'static str) -> anyhow::Result<()> {
    on_db!(db, |p| sqlx::query(sql).execute(p).await.map(drop)?);
    Ok(())
}

pub(crate) async fn run(cost_us: u64) -> anyhow::Result<()> {
    // The seed's ackermann(5, 2): make the calculation visibly slow unless told otherwise.
    let cost_us = if cost_us == 0 { 300_000 } else { cost_us };
    models::set_cost_us(cost_us);
    let dir = std::env::temp_dir().join(format!("lamppost-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("demo.db");
    let url = format!("sqlite:{}", path.display());
    let db = Db::connect(&url).await?;
    let registry = models::registry()?;

    println!("1. A fresh SQLite database at {}", path.display());
    crate::migrate(&db).await?;
    println!("   `migrate` created streets, lampposts and pigeons, added cached_total_weight,");
    println!("   total_weight_recalculation_needed, cached_slow_full_name,");
    println!("   slow_full_name_recalculation_needed and slow_full_name_expires_after (and the");
    println!("   street and pigeon fields' columns), and installed the triggers the fields'");
    println!("   depends_on declarations ask for (`lamppost deps` prints them).");
    crate::seed(&db, 1, 3, 1).await?;

    let lamp = load(&db, 1).await?;
    let t = Instant::now();
    let name = lamp.slow_full_name(&db).await?;
    println!(
        "\n2. First read of lamp.slow_full_name: {name:?} in {:.0} ms — calculated inline",
        t.elapsed().as_secs_f64() * 1e3
    );
    println!(
        "   (each calculation burns {} ms, like the seed's ackermann(5, 2)), then stored.",
        cost_us / 1000
    );

    let lamp = load(&db, 1).await?;
    let t = Instant::now();
    let name = lamp.slow_full_name(&db).await?;
    println!(
        "\n3. Second read, after reloading the row: {name:?} in {:.3} ms — one column read.",
        t.elapsed().as_secs_f64() * 1e3
    );

    println!("\n4. A pigeon weighing 9 lands: a plain INSERT, nobody calls flag_*_as_stale.");
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(db.clone(), registry.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let t = Instant::now();
    exec(
        &db,
        "INSERT INTO pigeons (lamppost_id, weight) VALUES (1, 9)",
    )
    .await?;
    let lamp = wait_until_fresh(&db, 1, Duration::from_secs(30)).await?;
    println!(
        "   A trigger on pigeons flagged total_weight (declared on pigeons(lamppost_id).weight);"
    );
    println!(
        "   the in-process worker recalculated it, its new value flagged slow_full_name (a chain),"
    );
    println!(
        "   and the worker recalculated that too, {:.0} ms after the insert: {:?}",
        t.elapsed().as_secs_f64() * 1e3,
        lamp.slow_full_name.stored().unwrap_or_default()
    );

    println!("\n5. Another program renames the lamppost with plain SQL.");
    let t = Instant::now();
    exec(
        &db,
        "UPDATE lampposts SET first_name = 'Zelda' WHERE id = 1",
    )
    .await?;
    let lamp = wait_until_fresh(&db, 1, Duration::from_secs(30)).await?;
    println!(
        "   Caught by the trigger on first_name; fresh {:.0} ms later: {:?}",
        t.elapsed().as_secs_f64() * 1e3,
        lamp.slow_full_name.stored().unwrap_or_default()
    );

    println!("\n6. A pigeon's death_date is recorded: no cached field depends on it.");
    exec(
        &db,
        "UPDATE pigeons SET death_date = '2026-12-24' WHERE lamppost_id = 1",
    )
    .await?;
    let lamp = load(&db, 1).await?;
    println!(
        "   Flags after the write: total_weight {}, slow_full_name {} — nothing to recalculate.",
        lamp.total_weight.recalculation_needed(),
        lamp.slow_full_name.recalculation_needed()
    );

    let when = chrono::Utc::now() + chrono::Duration::seconds(2);
    lamp.expire_slow_full_name_after(&db, when).await?;
    println!(
        "\n7. expire_slow_full_name_after({}): valid for two more seconds.",
        when.format("%H:%M:%S%.3f")
    );
    let lamp = wait_until_fresh(&db, 1, Duration::from_secs(30)).await?;
    println!(
        "   The worker recalculated it at the expiry, without any read ({} ms after it passed): {:?}",
        (chrono::Utc::now() - when).num_milliseconds().max(0),
        lamp.slow_full_name.stored().unwrap_or_default()
    );

    streets(&db).await?;

    let _ = stop.send(());
    let stats = worker.await??;
    println!("\nWorker counts: {}", serde_json::to_string(&stats)?);
    db.close().await;
    std::fs::remove_dir_all(&dir)?;
    println!("Done. Next: `lamppost migrate`, `seed`, `worker` and `status` on your own database.");
    Ok(())
}
