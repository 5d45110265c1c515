//! `lamppost`: the reference app of cached-fields — django-cached-field's
//! lamppost example, runnable on SQLite (default) or PostgreSQL.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use cached_fields::{Db, Registry, Worker};
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

mod bench;
mod demo;
mod models;
mod tables;

/// Runs `$body` with `$p` bound to the pool of whichever backend `$db` is.
macro_rules! on_db {
    ($db:expr, |$p:ident| $body:expr) => {
        match $db {
            cached_fields::Db::Sqlite($p) => $body,
            cached_fields::Db::Postgres($p) => $body,
            _ => anyhow::bail!("unsupported backend"),
        }
    };
}
pub(crate) use on_db;

#[derive(Debug, Parser)]
#[command(
    name = "lamppost",
    version,
    about = "The cached-fields reference app: lampposts, pigeons and two cached fields"
)]
struct Cli {
    /// Database URL: sqlite:FILE or postgres://… (default: SQLite file lamppost.db here).
    #[arg(
        long,
        global = true,
        env = "DATABASE_URL",
        default_value = "sqlite:lamppost.db"
    )]
    database_url: String,
    /// Microseconds of CPU each calculate function burns first, to model a slow computation.
    #[arg(long, global = true, default_value_t = 0)]
    cost_us: u64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create or upgrade the tables, cached columns, indexes and triggers (idempotent).
    Migrate {
        /// Print the cached-fields SQL for this backend instead of applying it
        /// (for your own migration files).
        #[arg(long)]
        sql: bool,
    },
    /// Compare the database with the declarations; exit 1 listing what is missing or outdated.
    Check,
    /// Insert lampposts, each with some pigeons.
    Seed {
        /// How many lampposts.
        #[arg(long, default_value_t = 100)]
        lampposts: u64,
        /// Pigeons on each lamppost.
        #[arg(long, default_value_t = 3)]
        pigeons_per: u64,
    },
    /// Recalculate flagged and expired values until SIGINT/SIGTERM; prints a JSON line of counts at exit.
    Worker {
        /// Calculations run at once (1 to 10000).
        #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        concurrency: u64,
        /// Rows claimed per statement (1 to 10000).
        #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
        batch_size: u64,
        /// Seconds a claim lasts before another worker may take over a dead worker's rows (1 to 86400).
        #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
        lease_secs: u64,
        /// Longest idle wait between looks for work, in milliseconds (1 to 3600000).
        #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
        poll_ms: u64,
        /// Milliseconds one calculation may take before it counts as failed (at least 1).
        #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
        timeout_ms: u64,
    },
    /// Per cached field: rows, stale, expired, failing, oldest stale age, last error.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Recalculate now, in this process (progress bar on a terminal).
    Recalc {
        /// Every row.
        #[arg(long, conflicts_with = "stale")]
        all: bool,
        /// Only flagged or expired rows (the default).
        #[arg(long)]
        stale: bool,
    },
    /// The seed README's story, narrated, on a fresh embedded database.
    Demo,
    /// Compare every stored value with its inputs; exit 1 listing flagged or disagreeing rows.
    Verify,
    /// Measure reads, invalidations, drains, latency, coalescing, trigger overhead, idle cost,
    /// memory and scale-out, each beside its baseline; the last line is one JSON object (use a
    /// release build).
    Bench {
        /// Lampposts to seed (each with 3 pigeons).
        #[arg(long, default_value_t = 20_000)]
        rows: u64,
        /// Delete every lamppost and pigeon in the database first.
        #[arg(long)]
        reset: bool,
        /// Measure only these figures (comma-separated: read, flag, drain,
        /// latency, coalescing, write_overhead, idle, memory, scale).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bench::FIGURES))]
        only: Vec<String>,
    },
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    models::set_cost_us(cli.cost_us);
    let url = cli.database_url.clone();
    match run(cli).await {
        Ok(code) => code,
        Err(e) => {
            // Whatever quoted the URL, its password is not printed.
            eprintln!(
                "error: {}",
                cached_fields::db::redact_with(&format!("{e:#}"), &url)
            );
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    let registry = models::registry()?;
    if let Command::Bench { rows, reset, only } = cli.command {
        bench::run(&cli.database_url, rows, cli.cost_us, reset, &only).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let Command::Demo = cli.command {
        demo::run(cli.cost_us).await?;
        return Ok(std::process::ExitCode::SUCCESS);
    }
    if let Command::Migrate { sql: true } = cli.command {
        let backend = if cli.database_url.starts_with("postgres") {
            cached_fields::Backend::Postgres
        } else {
            cached_fields::Backend::Sqlite
        };
        print!("{}", registry.sql(backend));
        return Ok(std::process::ExitCode::SUCCESS);
    }
    let db = Db::connect(&cli.database_url).await?;
    match cli.command {
        Command::Migrate { sql: true } => unreachable!("handled above"),
        Command::Migrate { sql: false } => {
            let done = migrate(&db, &registry).await?;
            if done.is_empty() {
                println!("schema up to date");
            }
            for p in &done.changes {
                println!("applied: {p}");
            }
            for f in &done.flagged {
                println!("{f}");
            }
        }
        Command::Check => {
            let problems = registry.check(&db).await?;
            if problems.is_empty() {
                println!("schema matches the declarations");
            } else {
                for p in &problems {
                    println!("{p}");
                }
                eprintln!(
                    "{} problem(s): run `lamppost migrate` to fix",
                    problems.len()
                );
                return Ok(std::process::ExitCode::FAILURE);
            }
        }
        Command::Seed {
            lampposts,
            pigeons_per,
        } => seed(&db, lampposts, pigeons_per).await?,
        Command::Worker {
            concurrency,
            batch_size,
            lease_secs,
            poll_ms,
            timeout_ms,
        } => {
            let stats = Worker::new(db.clone(), registry)
                .concurrency(usize::try_from(concurrency)?)
                .batch_size(usize::try_from(batch_size)?)
                .lease(Duration::from_secs(lease_secs))
                .poll_interval(Duration::from_millis(poll_ms))
                .calculation_timeout(Duration::from_millis(timeout_ms))
                .run()
                .await?;
            println!("{}", serde_json::to_string(&stats)?);
        }
        Command::Status { json } => status(&db, &registry, json).await?,
        Command::Recalc { all, stale: _ } => recalc(&db, &registry, all).await?,
        Command::Verify => {
            let bad = verify(&db).await?;
            if !bad.is_empty() {
                for line in &bad {
                    println!("{line}");
                }
                eprintln!(
                    "{} row(s) flagged or disagreeing with their inputs",
                    bad.len()
                );
                return Ok(std::process::ExitCode::FAILURE);
            }
            println!("every cached value is fresh and agrees with its row");
        }
        Command::Demo | Command::Bench { .. } => unreachable!("handled above"),
    }
    db.close().await;
    Ok(std::process::ExitCode::SUCCESS)
}

/// Creates the app's tables and installs the library's schema.
pub(crate) async fn migrate(
    db: &Db,
    registry: &Registry,
) -> anyhow::Result<cached_fields::schema::Migration> {
    tables::create(db).await?;
    Ok(registry.migrate(db).await?)
}

/// Rows whose cached values are flagged or disagree with what their inputs give.
async fn verify(db: &Db) -> anyhow::Result<Vec<String>> {
    const SQL: &str = "SELECT l.id, l.total_weight_recalculation_needed, l.slow_full_name_recalculation_needed,
            l.cached_total_weight, l.cached_slow_full_name,
            CAST(l.weight + COALESCE((SELECT SUM(p.weight) FROM pigeons p WHERE p.lamppost_id = l.id), 0) AS BIGINT),
            l.first_name, l.country
        FROM lampposts l ORDER BY l.id";
    type Row = (
        i64,
        bool,
        bool,
        Option<i64>,
        Option<String>,
        i64,
        String,
        String,
    );
    let rows: Vec<Row> = on_db!(db, |p| sqlx::query_as(SQL).fetch_all(p).await?);
    Ok(rows
        .into_iter()
        .filter_map(|(id, f1, f2, tw, name, expect_tw, first, country)| {
            let expect_name = format!("The {expect_tw} {first} of {country}");
            let ok = !f1 && !f2 && tw == Some(expect_tw) && name.as_deref() == Some(expect_name.as_str());
            (!ok).then(|| {
                format!(
                    "lamppost {id}: flags ({f1}, {f2}), total_weight {tw:?} (expected {expect_tw}), \
                     slow_full_name {name:?} (expected {expect_name:?})"
                )
            })
        })
        .collect())
}

const FIRST_NAMES: &[&str] = &[
    "Anna", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo",
];
const COUNTRIES: &[&str] = &[
    "Latvia", "Chile", "Japan", "Kenya", "Norway", "Peru", "Spain",
];

/// Inserts `n` lampposts with `per` pigeons each; new rows start flagged.
pub(crate) async fn seed(db: &Db, n: u64, per: u64) -> anyhow::Result<()> {
    let bar = progress(n, "seeding");
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(500);
        on_db!(db, |pool| {
            let mut tx = pool.begin().await?;
            for i in done..done + chunk {
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO lampposts (weight, first_name, country) VALUES ($1, $2, $3) RETURNING id",
                )
                .bind(i64::try_from(100 + i % 50)?)
                .bind(FIRST_NAMES[usize::try_from(i)? % FIRST_NAMES.len()])
                .bind(COUNTRIES[usize::try_from(i)? % COUNTRIES.len()])
                .fetch_one(&mut *tx)
                .await?;
                for j in 0..per {
                    sqlx::query("INSERT INTO pigeons (lamppost_id, weight) VALUES ($1, $2)")
                        .bind(id)
                        .bind(i64::try_from(1 + (i + j) % 7)?)
                        .execute(&mut *tx)
                        .await?;
                }
            }
            tx.commit().await?;
        });
        done += chunk;
        bar.set_position(done);
    }
    bar.finish_and_clear();
    println!("seeded {n} lampposts with {per} pigeons each");
    Ok(())
}

fn progress(len: u64, msg: &'static str) -> ProgressBar {
    if !std::io::stderr().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new(len).with_message(msg);
    if let Ok(style) =
        ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} ({per_sec}, eta {eta})")
    {
        bar.set_style(style);
    }
    bar
}

async fn status(db: &Db, registry: &Registry, json: bool) -> anyhow::Result<()> {
    let rows = registry.status(db).await?;
    if json {
        println!("{}", serde_json::to_string_pretty(&rows)?);
        return Ok(());
    }
    println!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "field", "rows", "stale", "expired", "failing", "oldest stale"
    );
    for s in &rows {
        let oldest = s
            .oldest_stale_secs
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}s"));
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>12}",
            format!("{}.{}", s.table, s.field),
            s.rows,
            s.stale,
            s.expired,
            s.failing,
            oldest
        );
        if let Some((key, attempts, msg)) = &s.last_error {
            println!("  last error (row {key}, {attempts} attempts): {msg}");
        }
        if let Some((count, msg)) = &s.field_error {
            println!("  the field failed as a whole ({count} times in a row): {msg}");
        }
        if s.hook_failures > 0 {
            println!(
                "  after-recalculation hook failed {} times",
                s.hook_failures
            );
        }
    }
    Ok(())
}

async fn recalc(db: &Db, registry: &Registry, all: bool) -> anyhow::Result<()> {
    let status = registry.status(db).await?;
    for s in status {
        let total = if all { s.rows } else { s.stale + s.expired };
        let bar = progress(u64::try_from(total).unwrap_or(0), "recalculating");
        let mut after = i64::MIN;
        let mut done = 0u64;
        loop {
            let keys =
                cached_fields::worker::keys(db, registry, &s.table, &s.field, all, after, 500)
                    .await
                    .with_context(|| format!("listing rows of {}.{}", s.table, s.field))?;
            let Some(&last) = keys.last() else { break };
            cached_fields::worker::recalculate_keys(db, registry, &s.table, &s.field, &keys)
                .await?;
            done += keys.len() as u64;
            bar.set_position(done);
            after = last;
        }
        bar.finish_and_clear();
        println!("{}.{}: recalculated {done} row(s)", s.table, s.field);
    }
    Ok(())
}
