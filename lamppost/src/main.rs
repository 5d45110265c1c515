//! `lamppost`: the reference app of cached-fields — django-cached-field's
//! lamppost example, runnable on SQLite (default) or PostgreSQL.

use cached_fields::Db;
use cached_fields::cli::App;
use clap::{Parser, Subcommand};

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
    #[command(flatten)]
    Library(cached_fields::cli::Command),
    /// Insert lampposts, each with some pigeons.
    Seed {
        /// How many lampposts.
        #[arg(long, default_value_t = 100)]
        lampposts: u64,
        /// Pigeons on each lamppost.
        #[arg(long, default_value_t = 3)]
        pigeons_per: u64,
    },
    /// The seed README's story, narrated, on a fresh embedded database.
    Demo,
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
        /// latency, coalescing, `write_overhead`, idle, memory, scale).
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
                cached_fields::db::redact_with(&cached_fields::error::report(e.as_ref()), &url)
            );
            std::process::ExitCode::FAILURE
        }
    }
}

/// The library's commands for lamppost's registry, its tables and its comparison.
pub(crate) fn app() -> anyhow::Result<App> {
    Ok(App::new("lamppost", models::registry()?)
        .create_tables(|db| Box::pin(async move { Ok(tables::create(db).await?) }))
        .verify(|db| Box::pin(async move { Ok(verify(db).await?) })))
}

async fn run(cli: Cli) -> anyhow::Result<std::process::ExitCode> {
    match cli.command {
        Command::Library(command) => Ok(app()?.run(command, &cli.database_url).await?),
        Command::Bench { rows, reset, only } => {
            bench::run(&cli.database_url, rows, cli.cost_us, reset, &only).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo => {
            demo::run(cli.cost_us).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Seed {
            lampposts,
            pigeons_per,
        } => {
            let db = Db::connect(&cli.database_url).await?;
            seed(&db, lampposts, pigeons_per).await?;
            db.close().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Creates the app's tables and installs the library's schema.
pub(crate) async fn migrate(db: &Db) -> anyhow::Result<cached_fields::schema::Migration> {
    Ok(app()?.migrate(db).await?)
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
    let bar = cached_fields::cli::progress(n, "seeding");
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
