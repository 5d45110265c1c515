//! `lamppost bench`: every figure measured in one run beside its baseline;
//! the last line printed is one JSON object.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use cached_fields::{Db, Key, Registry, Worker};
use futures::StreamExt;
use serde_json::json;

use crate::models::{self, Lamppost};
use crate::on_db;

/// Per-phase progress goes to stderr; stdout gets the JSON line only.
fn say(msg: impl AsRef<str>) {
    eprintln!("bench: {}", msg.as_ref());
}

async fn exec(db: &Db, sql: &'static str, a: i64) -> anyhow::Result<()> {
    on_db!(db, |p| sqlx::query(sql)
        .bind(a)
        .execute(p)
        .await
        .map(drop)?);
    Ok(())
}

async fn scalar(db: &Db, sql: &'static str) -> anyhow::Result<i64> {
    Ok(on_db!(db, |p| sqlx::query_scalar(sql).fetch_one(p).await?))
}

async fn load(db: &Db, id: i64) -> anyhow::Result<Lamppost> {
    Ok(on_db!(db, |p| sqlx::query_as(Lamppost::SELECT_BY_ID)
        .bind(id)
        .fetch_one(p)
        .await?))
}

async fn flagged(db: &Db) -> anyhow::Result<i64> {
    scalar(
        db,
        "SELECT COUNT(*) FROM lampposts WHERE total_weight_recalculation_needed \
         OR slow_full_name_recalculation_needed",
    )
    .await
}

async fn ids(db: &Db) -> anyhow::Result<Vec<i64>> {
    Ok(on_db!(db, |p| sqlx::query_scalar(
        "SELECT id FROM lampposts ORDER BY id"
    )
    .fetch_all(p)
    .await?))
}

async fn flag_all(db: &Db, ids: &[i64]) -> anyhow::Result<()> {
    let keys: Vec<Key> = ids.iter().map(|&id| Key::from(id)).collect();
    for field in ["total_weight", "slow_full_name"] {
        cached_fields::runtime::flag_many::<Lamppost>(
            &keys,
            field,
            Some(cached_fields::Recalculate::Eagerly),
            db,
        )
        .await?;
    }
    Ok(())
}

/// PostgreSQL's own count of row versions written by `UPDATE`s of `table`
/// (`pg_stat_user_tables.n_tup_upd`); `None` on SQLite. A backend reports
/// its counts when it exits (an idle one may wait 10 s): the writes
/// measured run on pools of their own, closed before this is read.
async fn row_updates(db: &Db, table: &'static str) -> anyhow::Result<Option<i64>> {
    let Db::Postgres(p) = db else {
        return Ok(None);
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    let n: i64 = sqlx::query_scalar("SELECT n_tup_upd FROM pg_stat_user_tables WHERE relname = $1")
        .bind(table)
        .fetch_one(p)
        .await?;
    Ok(Some(n))
}

/// `after - before` over `per`, when the database counts.
fn per_unit(before: Option<i64>, after: Option<i64>, per: f64) -> Option<f64> {
    Some(round((after? - before?) as f64 / per, 3))
}

/// The physical limit of a drain: one set-based `UPDATE` storing both
/// fields' values, computed in SQL, in every row at once (seconds).
async fn set_based(db: &Db) -> anyhow::Result<f64> {
    let sql = match db.backend() {
        cached_fields::Backend::Sqlite => {
            "UPDATE lampposts SET cached_total_weight = weight + COALESCE((SELECT SUM(p.weight) \
             FROM pigeons p WHERE p.lamppost_id = lampposts.id), 0), \
             total_weight_recalculation_needed = FALSE, \
             total_weight_recalculation_version = total_weight_recalculation_version + 1, \
             cached_slow_full_name = 'The ' || (weight + COALESCE((SELECT SUM(p.weight) \
             FROM pigeons p WHERE p.lamppost_id = lampposts.id), 0)) || ' ' || first_name || ' of ' || country, \
             slow_full_name_recalculation_needed = FALSE, \
             slow_full_name_recalculation_version = slow_full_name_recalculation_version + 1"
        }
        _ => {
            "UPDATE lampposts l SET cached_total_weight = l.weight + COALESCE(s.w, 0), \
             total_weight_recalculation_needed = FALSE, \
             total_weight_recalculation_version = l.total_weight_recalculation_version + 1, \
             cached_slow_full_name = 'The ' || (l.weight + COALESCE(s.w, 0)) || ' ' || l.first_name || ' of ' || l.country, \
             slow_full_name_recalculation_needed = FALSE, \
             slow_full_name_recalculation_version = l.slow_full_name_recalculation_version + 1 \
             FROM (SELECT i.id, (SELECT SUM(p.weight) FROM pigeons p WHERE p.lamppost_id = i.id)::BIGINT AS w \
             FROM lampposts i) AS s WHERE s.id = l.id"
        }
    };
    let t = Instant::now();
    on_db!(db, |p| sqlx::query(sql).execute(p).await.map(drop)?);
    Ok(t.elapsed().as_secs_f64())
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn round(x: f64, digits: i32) -> f64 {
    let m = 10f64.powi(digits);
    (x * m).round() / m
}

/// The cached accessor on a fresh row against a plain field of the same row.
async fn read(db: &Db, id: i64) -> anyhow::Result<serde_json::Value> {
    let lamp = load(db, id).await?;
    lamp.slow_full_name(db).await?; // fresh from here on
    const ITER: u32 = 200_000;
    let mut best = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let t = Instant::now();
        for _ in 0..ITER {
            std::hint::black_box(lamp.slow_full_name(db).await?);
        }
        let cached = t.elapsed().as_secs_f64() * 1e9 / f64::from(ITER);
        let t = Instant::now();
        for _ in 0..ITER {
            std::hint::black_box(std::hint::black_box(&lamp).first_name.clone());
        }
        let plain = t.elapsed().as_secs_f64() * 1e9 / f64::from(ITER);
        best = (best.0.min(cached), best.1.min(plain));
    }
    Ok(json!({
        "cached_ns": round(best.0, 1),
        "plain_ns": round(best.1, 1),
        "ratio": round(best.0 / best.1, 2),
    }))
}

/// Invalidations per second through the library, one by one and batched.
async fn flag(db: &Db, ids: &[i64]) -> anyhow::Result<serde_json::Value> {
    let n = ids.len().min(2000);
    let t = Instant::now();
    for id in &ids[..n] {
        cached_fields::runtime::flag::<Lamppost>(
            Key::from(*id),
            "total_weight",
            Some(cached_fields::Recalculate::Eagerly),
            db,
        )
        .await?;
    }
    let single = n as f64 / t.elapsed().as_secs_f64();
    let keys: Vec<Key> = ids.iter().map(|&id| Key::from(id)).collect();
    let t = Instant::now();
    cached_fields::runtime::flag_many::<Lamppost>(
        &keys,
        "total_weight",
        Some(cached_fields::Recalculate::Eagerly),
        db,
    )
    .await?;
    let batched = ids.len() as f64 / t.elapsed().as_secs_f64();
    Ok(json!({ "single_per_s": round(single, 0), "batched_per_s": round(batched, 0) }))
}

/// The hand-written baseline: load, calculate, UPDATE, with plain sqlx at
/// the worker's concurrency; `total_weight` for every row, then `slow_full_name`.
async fn baseline(db: &Db, ids: &[i64], concurrency: usize) -> anyhow::Result<()> {
    for field in 0..2 {
        let results: Vec<anyhow::Result<()>> = futures::stream::iter(ids.iter().copied())
            .map(|id| async move {
                let lamp = load(db, id).await?;
                let mut ctx = cached_fields::Ctx::from(db);
                if field == 0 {
                    let v = lamp
                        .calculate_total_weight(&mut ctx)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                    drop(ctx);
                    on_db!(db, |p| sqlx::query(
                        "UPDATE lampposts SET cached_total_weight = $1, \
                         total_weight_recalculation_needed = FALSE, \
                         total_weight_recalculation_version = total_weight_recalculation_version + 1 \
                         WHERE id = $2"
                    )
                    .bind(v)
                    .bind(id)
                    .execute(p)
                    .await
                    .map(drop)?);
                } else {
                    let v = lamp
                        .calculate_slow_full_name(&mut ctx)
                        .await
                        .map_err(|e| anyhow::anyhow!(e))?;
                    drop(ctx);
                    on_db!(db, |p| sqlx::query(
                        "UPDATE lampposts SET cached_slow_full_name = $1, \
                         slow_full_name_recalculation_needed = FALSE, \
                         slow_full_name_recalculation_version = slow_full_name_recalculation_version + 1 \
                         WHERE id = $2"
                    )
                    .bind(v)
                    .bind(id)
                    .execute(p)
                    .await
                    .map(drop)?);
                }
                Ok(())
            })
            .buffer_unordered(concurrency)
            .collect()
            .await;
        results.into_iter().collect::<anyhow::Result<Vec<()>>>()?;
    }
    Ok(())
}

/// N stale rows (both fields): the worker against the hand-written loop.
async fn drain(
    db: &Db,
    url: &str,
    registry: &Registry,
    ids: &[i64],
) -> anyhow::Result<serde_json::Value> {
    const CONCURRENCY: usize = 8; // the worker's default
    let own = Db::connect(url).await?;
    flag_all(&own, ids).await?;
    own.close().await;
    let before = row_updates(db, "lampposts").await?;
    let own = Db::connect(url).await?;
    let t = Instant::now();
    let stats = Worker::new(own.clone(), registry.clone()).drain().await?;
    let worker_s = t.elapsed().as_secs_f64();
    own.close().await;
    let after = row_updates(db, "lampposts").await?;
    anyhow::ensure!(flagged(db).await? == 0, "the worker left rows flagged");
    flag_all(db, ids).await?;
    let t = Instant::now();
    baseline(db, ids, CONCURRENCY).await?;
    let loop_s = t.elapsed().as_secs_f64();
    flag_all(db, ids).await?;
    let limit_s = set_based(db).await?;
    anyhow::ensure!(
        flagged(db).await? == 0,
        "the set-based UPDATE left rows flagged"
    );
    // Every lamppost's two fields: the street fields the new totals flag
    // are counted in worker_recalculated, not here.
    let recalcs = 2.0 * ids.len() as f64;
    Ok(json!({
        "rows": ids.len(),
        "recalcs_per_s": round(recalcs / worker_s, 0),
        "baseline_per_s": round(recalcs / loop_s, 0),
        "ratio": round(worker_s / loop_s, 2),
        "limit_per_s": round(recalcs / limit_s, 0),
        "limit_ratio": round(limit_s / worker_s, 3),
        "row_writes_per_recalc": per_unit(before, after, recalcs),
        "worker_recalculated": stats.recalculated,
        "worker_superseded": stats.superseded,
    }))
}

/// One `UPDATE` of every pigeon's weight (3 per lamppost): row versions
/// written to `lampposts` per lamppost (its flags; the minimum is 1).
async fn bulk_update(db: &Db, url: &str, ids: &[i64]) -> anyhow::Result<serde_json::Value> {
    let before = row_updates(db, "lampposts").await?;
    let own = Db::connect(url).await?;
    let t = Instant::now();
    on_db!(&own, |p| sqlx::query(
        "UPDATE pigeons SET weight = weight + 1"
    )
    .execute(p)
    .await
    .map(drop)?);
    let statement_ms = t.elapsed().as_secs_f64() * 1e3;
    own.close().await;
    let after = row_updates(db, "lampposts").await?;
    Ok(json!({
        "pigeons": 3 * ids.len(),
        "lampposts": ids.len(),
        "statement_ms": round(statement_ms, 1),
        "writes_per_parent": per_unit(before, after, ids.len() as f64),
    }))
}

/// A table of `rows` lampposts (3 pigeons each, one street per 10), seeded
/// in a few set-based statements: every row new, so flagged, and drained;
/// then, as `drain` measures it, every lamppost's two fields flagged and
/// drained again (the rate), and the latency of single invalidations, with
/// no manual `VACUUM` or `ANALYZE` at any point (autovacuum may be off).
/// Only the lamppost fields are recalculated (the street and pigeon fields
/// stay flagged): the figures are those of `drain` and `latency` at scale.
async fn large(db: &Db, url: &str, rows: u64) -> anyhow::Result<serde_json::Value> {
    let registry = &Registry::new().register::<Lamppost>()?;
    let Db::Postgres(p) = db else {
        return Ok(json!(null));
    };
    let rows = i64::try_from(rows)?;
    for sql in [
        "DELETE FROM pigeons",
        "DELETE FROM lampposts",
        "DELETE FROM streets",
    ] {
        sqlx::query(sql).execute(p).await?;
    }
    say(format!(
        "large: seeding {rows} lampposts with 3 pigeons each"
    ));
    sqlx::query(
        "INSERT INTO streets (name) SELECT 'Street ' || g FROM generate_series(1, GREATEST($1 / 10, 1)) g",
    )
    .bind(rows)
    .execute(p)
    .await?;
    sqlx::query(
        "INSERT INTO lampposts (weight, first_name, country, street_id) \
         SELECT 100 + g % 50, 'Lamp ' || g, 'Latvia', \
         (SELECT MIN(id) FROM streets) + g % GREATEST($1 / 10, 1) FROM generate_series(0, $1 - 1) g",
    )
    .bind(rows)
    .execute(p)
    .await?;
    sqlx::query(
        "INSERT INTO pigeons (lamppost_id, weight) SELECT l.id, 1 + (l.id + j) % 7 \
         FROM lampposts l, generate_series(0, 2) j",
    )
    .execute(p)
    .await?;
    say("large: draining the new rows");
    Worker::new(db.clone(), registry.clone()).drain().await?;
    let ids = ids(db).await?;
    say("large: draining every lamppost again");
    flag_all(db, &ids).await?;
    let t = Instant::now();
    let stats = Worker::new(db.clone(), registry.clone()).drain().await?;
    let drain_s = t.elapsed().as_secs_f64();
    anyhow::ensure!(flagged(db).await? == 0, "the worker left rows flagged");
    say("large: latency");
    let latency = latency(db, url, registry, &ids).await?;
    Ok(json!({
        "rows": rows,
        "drain": {
            "recalcs_per_s": round(2.0 * rows as f64 / drain_s, 0),
            "worker_recalculated": stats.recalculated,
        },
        "latency_ms": latency,
    }))
}

/// A running in-process worker on its own pool.
struct Running {
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<cached_fields::Result<cached_fields::Stats>>,
}

async fn start_worker(url: &str, registry: &Registry) -> anyhow::Result<Running> {
    let db = Db::connect(url).await?;
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(Worker::new(db, registry.clone()).run_until(async {
        let _ = stopped.await;
    }));
    tokio::time::sleep(Duration::from_millis(200)).await; // LISTEN is in place
    Ok(Running { stop, task })
}

impl Running {
    async fn stop(self) -> anyhow::Result<cached_fields::Stats> {
        let _ = self.stop.send(());
        Ok(self.task.await??)
    }
}

/// Commit of a dependency change → fresh value visible on another connection.
async fn latency(
    db: &Db,
    url: &str,
    registry: &Registry,
    ids: &[i64],
) -> anyhow::Result<serde_json::Value> {
    let running = start_worker(url, registry).await?;
    let reader = Db::connect_with(url, 1).await?;
    let mut samples = Vec::with_capacity(200);
    for i in 0..200_i64 {
        let id = ids[usize::try_from(i)? % ids.len().min(50)];
        exec(
            db,
            "UPDATE lampposts SET weight = weight + 1 WHERE id = $1",
            id,
        )
        .await?;
        samples.push(until_fresh(&reader, id).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reader.close().await;
    running.stop().await?;
    samples.sort_by(f64::total_cmp);
    Ok(json!({
        "p50": round(percentile(&samples, 0.50), 2),
        "p95": round(percentile(&samples, 0.95), 2),
        "p99": round(percentile(&samples, 0.99), 2),
    }))
}

/// 1,000 invalidations of one row in a burst, with a worker running.
async fn coalescing(
    db: &Db,
    url: &str,
    registry: &Registry,
    id: i64,
) -> anyhow::Result<serde_json::Value> {
    let running = start_worker(url, registry).await?;
    let before = models::total_weight_calculations();
    let burst = Instant::now();
    let mut last = burst;
    let mut max_gap = Duration::ZERO;
    for _ in 0..1000 {
        exec(
            db,
            "UPDATE lampposts SET weight = weight + 1 WHERE id = $1",
            id,
        )
        .await?;
        max_gap = max_gap.max(last.elapsed());
        last = Instant::now();
    }
    let burst_ms = burst.elapsed().as_secs_f64() * 1e3;
    let t = Instant::now();
    while flagged(db).await? > 0 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "not drained within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    running.stop().await?;
    Ok(json!({
        "invalidations": 1000,
        "recalculations": models::total_weight_calculations() - before,
        // A hot row waits for a 50 ms pause in its invalidations (tried at
        // least every 2 s): these say whether the burst had one.
        "burst_ms": round(burst_ms, 1),
        "longest_commit_ms": round(max_gap.as_secs_f64() * 1e3, 2),
    }))
}

/// 10,000 single-row UPDATEs of a dependency column, with and without the
/// library's triggers (all dropped for the second run, then reinstalled by
/// migrate).
async fn write_overhead(db: &Db, registry: &Registry) -> anyhow::Result<serde_json::Value> {
    const N: i64 = 10_000;
    async fn run(db: &Db, sql: &'static str, (first, rows): (i64, i64)) -> anyhow::Result<f64> {
        let t = Instant::now();
        for i in 0..N {
            exec(db, sql, first + i % rows).await?;
        }
        Ok(t.elapsed().as_secs_f64() * 1e6 / N as f64)
    }
    // Ids are consecutive from the seed; every UPDATE hits one row.
    let rows = (
        scalar(db, "SELECT MIN(id) FROM lampposts").await?,
        scalar(db, "SELECT COUNT(*) FROM lampposts").await?.max(1),
    );
    let pigeons = (
        scalar(db, "SELECT MIN(id) FROM pigeons").await?,
        scalar(db, "SELECT COUNT(*) FROM pigeons").await?.max(1),
    );
    let own = "UPDATE lampposts SET weight = weight + 1 WHERE id = $1";
    let related = "UPDATE pigeons SET weight = weight + 1 WHERE id = $1";
    let with_own = run(db, own, rows).await?;
    let with_related = run(db, related, pigeons).await?;
    // Without: none of the library's triggers on either table (the
    // migrate after it restores them and flags every row, which the next
    // figure's drain recalculates).
    let plan = cached_fields::schema::plan(db.backend(), &registry.specs());
    let triggers = plan
        .iter()
        .filter(|o| o.kind == cached_fields::schema::ObjectKind::Trigger)
        .filter(|o| ["lampposts", "pigeons"].contains(&o.table.as_str()));
    for o in triggers {
        let (name, table) = (o.name.quoted(), o.table.quoted());
        let sql = match db.backend() {
            cached_fields::Backend::Sqlite => format!("DROP TRIGGER {name}"),
            _ => format!("DROP TRIGGER {name} ON {table}"),
        };
        on_db!(db, |p| sqlx::query(sqlx::AssertSqlSafe(sql))
            .execute(p)
            .await
            .map(drop)?);
    }
    let without_own = run(db, own, rows).await?;
    let without_related = run(db, related, pigeons).await?;
    crate::migrate(db).await?;
    anyhow::ensure!(
        registry.check(db).await?.is_empty(),
        "migrate did not restore the triggers"
    );
    Ok(json!({
        "column": "lampposts.weight",
        "with_triggers_us": round(with_own, 1),
        "without_us": round(without_own, 1),
        "ratio": round(with_own / without_own, 2),
        "related": {
            "column": "pigeons.weight",
            "with_triggers_us": round(with_related, 1),
            "without_us": round(without_related, 1),
            "ratio": round(with_related / without_related, 2),
        },
    }))
}

fn spawn_worker(url: &str, cost_us: u64) -> anyhow::Result<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args([
            "worker",
            "--database-url",
            url,
            "--cost-us",
            &cost_us.to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?)
}

fn peak_rss_mib(pid: u32) -> Option<f64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn stop_child(child: Child) -> anyhow::Result<serde_json::Value> {
    let pid = child.id().to_string();
    Command::new("kill").args(["-TERM", &pid]).status()?;
    let out = child.wait_with_output()?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    Ok(serde_json::from_str(stdout.lines().last().unwrap_or("{}"))?)
}

async fn wait_drained(db: &Db) -> anyhow::Result<()> {
    let t = Instant::now();
    while flagged(db).await? > 0 {
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(600),
            "not drained within 10 minutes"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    Ok(())
}

/// Milliseconds until lamppost `id`'s total weight is no longer flagged,
/// polling through `reader` (at most 30 s).
async fn until_fresh(reader: &Db, id: i64) -> anyhow::Result<f64> {
    let t = Instant::now();
    loop {
        let fresh: bool = on_db!(reader, |p| sqlx::query_scalar(
            "SELECT NOT total_weight_recalculation_needed FROM lampposts WHERE id = $1"
        )
        .bind(id)
        .fetch_one(p)
        .await?);
        if fresh {
            return Ok(t.elapsed().as_secs_f64() * 1e3);
        }
        anyhow::ensure!(
            t.elapsed() < Duration::from_secs(30),
            "no recalculation within 30 s"
        );
    }
}

/// CPU time (user + system) a process has used, from `/proc`.
fn cpu_secs(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces): state is the
    // 3rd field, utime the 14th and stime the 15th.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // The kernel's USER_HZ: 100 on Linux.
    Some(ticks / 100.0)
}

/// An idle worker process: its share of one core over 10 s with nothing to
/// do, then how long the first invalidation after that quiet spell takes
/// to be fresh.
async fn idle(db: &Db, url: &str, ids: &[i64], cost_us: u64) -> anyhow::Result<serde_json::Value> {
    let child = spawn_worker(url, cost_us)?;
    // Let it start and settle into its quiet pace.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let (cpu0, t0) = (cpu_secs(child.id()), Instant::now());
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (cpu1, wall) = (cpu_secs(child.id()), t0.elapsed().as_secs_f64());
    let id = ids[0];
    exec(
        db,
        "UPDATE lampposts SET weight = weight + 1 WHERE id = $1",
        id,
    )
    .await?;
    let first_fresh_ms = until_fresh(db, id).await?;
    stop_child(child)?;
    let percent = match (cpu0, cpu1) {
        (Some(a), Some(b)) => Some(round((b - a) / wall * 100.0, 2)),
        _ => None,
    };
    Ok(
        json!({ "cpu_percent": percent, "seconds": round(wall, 1), "first_fresh_ms": round(first_fresh_ms, 1) }),
    )
}

/// Peak RSS of a worker process draining every row.
async fn memory(
    db: &Db,
    url: &str,
    ids: &[i64],
    cost_us: u64,
) -> anyhow::Result<serde_json::Value> {
    flag_all(db, ids).await?;
    let child = spawn_worker(url, cost_us)?;
    wait_drained(db).await?;
    let rss = peak_rss_mib(child.id());
    stop_child(child)?;
    Ok(json!({ "worker_peak_rss_mib": rss.map(|r| round(r, 1)) }))
}

/// 1, 2 and 4 worker processes draining N stale rows (both fields) together.
async fn scale(db: &Db, url: &str, ids: &[i64], cost_us: u64) -> anyhow::Result<serde_json::Value> {
    let mut out = Vec::new();
    for processes in [1_usize, 2, 4] {
        flag_all(db, ids).await?;
        let t = Instant::now();
        let children = (0..processes)
            .map(|_| spawn_worker(url, cost_us))
            .collect::<anyhow::Result<Vec<_>>>()?;
        wait_drained(db).await?;
        let secs = t.elapsed().as_secs_f64();
        let mut performed = 0_u64;
        for c in children {
            let s = stop_child(c)?;
            performed +=
                s["recalculated"].as_u64().unwrap_or(0) + s["superseded"].as_u64().unwrap_or(0);
        }
        // Inputs do not change here, so each row needs exactly one
        // recalculation per field: anything beyond that is duplicate work.
        let needed = 2 * ids.len() as u64;
        let duplicates = performed.saturating_sub(needed);
        say(format!(
            "scale: {processes} process(es), {performed} recalculations in {secs:.2} s"
        ));
        out.push(json!({
            "processes": processes,
            "recalcs_per_s": round(needed as f64 / secs, 0),
            "duplicate_share": round(duplicates as f64 / performed.max(1) as f64, 4),
        }));
    }
    Ok(json!(out))
}

/// How long one calculation may take in the `hang` figure.
const HANG_LIMIT: Duration = Duration::from_secs(2);

/// Lampposts flagged in either field, leaving out one in `every` (0: none
/// left out).
async fn stale_but_every(db: &Db, every: i64) -> anyhow::Result<i64> {
    Ok(on_db!(db, |p| {
        sqlx::query_scalar::<_, i64>(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM lampposts WHERE (total_weight_recalculation_needed \
             OR slow_full_name_recalculation_needed) AND ($1 = 0 OR id % $1 <> 0)",
        )
        .bind(every)
        .fetch_one(p)
        .await?
    }))
}

/// Every lamppost's two fields flagged, one `slow_full_name` in `every`
/// hanging (0: none): how long a running worker takes to store every other
/// value.
async fn hung_drain(
    url: &str,
    registry: &Registry,
    ids: &[i64],
    every: u64,
) -> anyhow::Result<f64> {
    let own = Db::connect(url).await?;
    flag_all(&own, ids).await?;
    models::set_hang_every(every);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = Worker::new(own.clone(), registry.clone())
        .calculation_timeout(HANG_LIMIT)
        .retry_backoff(Duration::from_secs(60), Duration::from_secs(60));
    let t = Instant::now();
    let task = tokio::spawn(worker.run_until(async {
        let _ = stopped.await;
    }));
    let every = i64::try_from(every)?;
    while stale_but_every(&own, every).await? > 0 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let secs = t.elapsed().as_secs_f64();
    let _ = stop.send(());
    task.await??;
    models::set_hang_every(0);
    // The hung rows failed, and back off for a minute: tried again now.
    on_db!(&own, |p| {
        sqlx::query(
            "UPDATE lampposts SET slow_full_name_next_attempt_at = NULL, slow_full_name_attempts = 0 \
             WHERE slow_full_name_attempts > 0",
        )
        .execute(p)
        .await?;
    });
    Worker::new(own.clone(), registry.clone()).drain().await?;
    own.close().await;
    Ok(secs)
}

/// One `slow_full_name` calculation in a hundred never returns (past its
/// time limit, which fails it): the rate at which a running worker stores
/// every other value, against the same worker with none hanging.
async fn hang(url: &str, registry: &Registry, ids: &[i64]) -> anyhow::Result<serde_json::Value> {
    let none = hung_drain(url, registry, ids, 0).await?;
    let hung = hung_drain(url, registry, ids, 100).await?;
    let good = ids.iter().filter(|&&i| i % 100 != 0).count() as f64;
    let (with, without) = (2.0 * good / hung, 2.0 * ids.len() as f64 / none);
    Ok(json!({
        "hanging_share": 0.01,
        "limit_ms": HANG_LIMIT.as_millis(),
        "recalcs_per_s": round(with, 0),
        "baseline_per_s": round(without, 0),
        "throughput_ratio": round(with / without, 3),
    }))
}

/// A node of the `tree` figure's chain: its path is its parent's and a dash.
#[derive(Debug, Clone, cached_fields::CachedModel)]
#[cached_model(table = "bench_nodes")]
struct Node {
    id: i64,
    name: String,
    #[cached(depends_on("name", "parent_id->bench_nodes.path"))]
    path: cached_fields::Cached<String>,
}

impl Node {
    async fn calculate_path(
        &self,
        ctx: &mut cached_fields::Ctx<'_>,
    ) -> Result<String, cached_fields::BoxError> {
        let sql = "SELECT p.cached_path FROM bench_nodes n JOIN bench_nodes p ON p.id = n.parent_id \
                   WHERE n.id = $1";
        let parent: Option<Option<String>> = match ctx.conn().await? {
            cached_fields::Conn::Sqlite(c) => {
                sqlx::query_scalar(sql)
                    .bind(self.id)
                    .fetch_optional(c)
                    .await?
            }
            cached_fields::Conn::Postgres(c) => {
                sqlx::query_scalar(sql)
                    .bind(self.id)
                    .fetch_optional(c)
                    .await?
            }
            _ => return Err("unsupported backend".into()),
        };
        Ok(match parent {
            None => self.name.clone(),
            Some(p) => format!("{}-", p.unwrap_or_default()),
        })
    }
}

/// Nodes in the `tree` figure's chain.
const TREE_NODES: i64 = 10_000;

/// A chain of nodes each reading its parent's cached value, inserted at
/// once (root first), then again flagged leaf first: the waits (deferrals)
/// and calculations per node a drain takes, and its rate.
async fn tree(db: &Db) -> anyhow::Result<serde_json::Value> {
    let registry = Registry::new().register::<Node>()?;
    let pk = match db.backend() {
        cached_fields::Backend::Sqlite => "INTEGER PRIMARY KEY",
        _ => "BIGINT PRIMARY KEY",
    };
    let create = format!(
        "DROP TABLE IF EXISTS bench_nodes; CREATE TABLE bench_nodes (id {pk}, \
         parent_id BIGINT REFERENCES bench_nodes(id), name TEXT NOT NULL)"
    );
    on_db!(db, |p| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(create.clone()))
            .execute(p)
            .await?;
    });
    registry.migrate(db).await?;
    let mut out = serde_json::Map::new();
    for (order, fill) in [
        (
            "root_first",
            "INSERT INTO bench_nodes (id, parent_id, name) VALUES (1, NULL, 'root'); \
             WITH RECURSIVE s(i) AS (SELECT 2 UNION ALL SELECT i + 1 FROM s WHERE i < 10000) \
             INSERT INTO bench_nodes (id, parent_id, name) SELECT i, i - 1, 'n' FROM s;",
        ),
        (
            "leaf_first",
            "UPDATE bench_nodes SET parent_id = NULL; DELETE FROM bench_nodes; \
             WITH RECURSIVE s(i) AS (SELECT 10000 UNION ALL SELECT i - 1 FROM s WHERE i > 1) \
             INSERT INTO bench_nodes (id, parent_id, name) SELECT i, NULL, 'n' FROM s; \
             UPDATE bench_nodes SET parent_id = id - 1 WHERE id > 1;",
        ),
    ] {
        on_db!(db, |p| {
            sqlx::raw_sql(fill).execute(p).await?;
        });
        let t = Instant::now();
        let stats = Worker::new(db.clone(), registry.clone()).drain().await?;
        let secs = t.elapsed().as_secs_f64();
        let left = on_db!(db, |p| {
            sqlx::query_scalar::<_, i64>(
                "SELECT CAST(COUNT(*) AS BIGINT) FROM bench_nodes WHERE path_recalculation_needed",
            )
            .fetch_one(p)
            .await?
        });
        anyhow::ensure!(left == 0, "{left} nodes left flagged");
        let n = TREE_NODES as f64;
        out.insert(
            order.into(),
            json!({
                "nodes": TREE_NODES,
                "deferrals_per_node": round(stats.deferred as f64 / n, 4),
                "calculations_per_node": round((stats.recalculated + stats.superseded + stats.failed) as f64 / n, 4),
                "recalcs_per_s": round(n / secs, 0),
            }),
        );
    }
    // The chain's table and the library's objects for it go.
    let plan = cached_fields::schema::plan(db.backend(), &registry.specs());
    let mut drop = vec!["DROP TABLE bench_nodes;".to_owned()];
    for o in plan
        .iter()
        .filter(|o| o.kind == cached_fields::schema::ObjectKind::EventTrigger)
    {
        drop.push(format!(
            "DROP EVENT TRIGGER IF EXISTS \"{n}\"; DROP FUNCTION IF EXISTS \"{n}\"();",
            n = o.name
        ));
    }
    let drop = drop.concat();
    on_db!(db, |p| {
        sqlx::raw_sql(sqlx::AssertSqlSafe(drop.clone()))
            .execute(p)
            .await?;
    });
    let worst = ["root_first", "leaf_first"]
        .iter()
        .filter_map(|k| out.get(*k)?.get("deferrals_per_node")?.as_f64())
        .fold(0.0, f64::max);
    out.insert("deferrals_per_node".into(), json!(worst));
    Ok(serde_json::Value::Object(out))
}

/// The figures `bench` measures, in the order it measures them.
pub(crate) const FIGURES: [&str; 13] = [
    "read",
    "flag",
    "drain",
    "bulk_update",
    "latency",
    "coalescing",
    "write_overhead",
    "idle",
    "memory",
    "scale",
    "hang",
    "tree",
    "large",
];

pub(crate) async fn run(
    url: &str,
    rows: u64,
    cost_us: u64,
    reset: bool,
    only: &[String],
    large_rows: u64,
) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    let registry = models::registry()?;
    crate::migrate(&db).await?;
    let existing = scalar(&db, "SELECT COUNT(*) FROM lampposts").await?;
    if existing > 0 && !reset {
        anyhow::bail!(
            "{} already has {existing} lampposts: bench needs an empty database, \
             or --reset to delete every lamppost, pigeon and street in it",
            cached_fields::db::redact_with(url, url)
        );
    }
    on_db!(&db, |p| {
        sqlx::query("DELETE FROM pigeons").execute(p).await?;
        sqlx::query("DELETE FROM lampposts").execute(p).await?;
        sqlx::query("DELETE FROM streets").execute(p).await?;
    });
    say(format!("seeding {rows} lampposts with 3 pigeons each"));
    crate::seed(&db, rows, 3, crate::default_streets(rows)).await?;
    Worker::new(db.clone(), registry.clone()).drain().await?;
    let ids = ids(&db).await?;

    let mut report = serde_json::Map::new();
    report.insert("backend".into(), json!(format!("{:?}", db.backend())));
    report.insert("rows".into(), json!(rows));
    report.insert("cost_us".into(), json!(cost_us));
    for figure in FIGURES {
        if !only.is_empty() && !only.iter().any(|o| o == figure) {
            continue;
        }
        say(figure);
        // Every figure starts with every value fresh.
        Worker::new(db.clone(), registry.clone()).drain().await?;
        let value = match figure {
            "read" => read(&db, ids[0]).await?,
            "flag" => flag(&db, &ids).await?,
            "drain" => drain(&db, url, &registry, &ids).await?,
            "bulk_update" => bulk_update(&db, url, &ids).await?,
            // Last: it replaces the table's rows.
            "large" => large(&db, url, large_rows).await?,
            "latency" => latency(&db, url, &registry, &ids).await?,
            "coalescing" => coalescing(&db, url, &registry, ids[0]).await?,
            "write_overhead" => write_overhead(&db, &registry).await?,
            "idle" => idle(&db, url, &ids, cost_us).await?,
            "memory" => memory(&db, url, &ids, cost_us).await?,
            "scale" => scale(&db, url, &ids, cost_us).await?,
            "hang" => hang(url, &registry, &ids).await?,
            "tree" => tree(&db).await?,
            other => anyhow::bail!("no figure named {other}"),
        };
        let key = if figure == "latency" {
            "latency_ms"
        } else {
            figure
        };
        report.insert(key.into(), value);
    }
    db.close().await;
    let report = serde_json::Value::Object(report);
    println!("{}", serde_json::to_string_pretty(&report)?);
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
