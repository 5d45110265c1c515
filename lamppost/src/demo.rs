//! `lamppost demo`: the seed README's story on a fresh embedded database.

use std::time::{Duration, Instant};

use cached_fields::{Db, Worker};

use crate::models::{self, Lamppost};
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
    crate::migrate(&db, &registry).await?;
    println!("   `migrate` created lampposts and pigeons, and added cached_total_weight,");
    println!("   total_weight_recalculation_needed, cached_slow_full_name,");
    println!("   slow_full_name_recalculation_needed and slow_full_name_expires_after.");
    crate::seed(&db, 1, 3).await?;

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

    println!("\n4. A pigeon weighing 9 lands; the app flags both fields as stale.");
    on_db!(&db, |p| sqlx::query(
        "INSERT INTO pigeons (lamppost_id, weight) VALUES (1, 9)"
    )
    .execute(p)
    .await
    .map(drop)?);
    lamp.flag_total_weight_as_stale(&db).await?;
    lamp.flag_slow_full_name_as_stale(&db).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(
        Worker::new(db.clone(), registry.clone())
            .poll_interval(Duration::from_millis(100))
            .run_until(async {
                let _ = stopped.await;
            }),
    );
    let t = Instant::now();
    let lamp = wait_until_fresh(&db, 1, Duration::from_secs(30)).await?;
    println!(
        "   The in-process worker recalculated it in the background within {:.0} ms: {:?}",
        t.elapsed().as_secs_f64() * 1e3,
        lamp.slow_full_name.stored().unwrap_or_default()
    );

    println!("\n5. Someone renames the lamppost behind the app's back (no flag),");
    on_db!(&db, |p| sqlx::query(
        "UPDATE lampposts SET first_name = 'Zelda' WHERE id = 1"
    )
    .execute(p)
    .await
    .map(drop)?);
    let when = chrono::Utc::now() + chrono::Duration::seconds(2);
    lamp.expire_slow_full_name_after(&db, when).await?;
    println!(
        "   but the name expires at {} (expire_slow_full_name_after).",
        when.format("%H:%M:%S%.3f")
    );
    println!(
        "   Stored now: {:?}",
        load(&db, 1)
            .await?
            .slow_full_name
            .stored()
            .unwrap_or_default()
    );
    let lamp = wait_until_fresh(&db, 1, Duration::from_secs(30)).await?;
    println!(
        "   At expiry the worker recalculated it without any read: {:?} ({} ms after the expiry)",
        lamp.slow_full_name.stored().unwrap_or_default(),
        (chrono::Utc::now() - when).num_milliseconds().max(0)
    );

    let _ = stop.send(());
    let stats = worker.await??;
    println!("\nWorker counts: {}", serde_json::to_string(&stats)?);
    db.close().await;
    std::fs::remove_dir_all(&dir)?;
    println!("Done. Next: `lamppost migrate`, `seed`, `worker` and `status` on your own database.");
    Ok(())
}
