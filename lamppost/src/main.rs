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
    /// Microseconds of CPU each lamppost calculate function burns first, to model a slow computation.
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
        /// Streets to spread the lampposts over (default: one per 10 lampposts).
        #[arg(long)]
        streets: Option<u64>,
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
        /// Delete every lamppost, pigeon and street in the database first.
        #[arg(long)]
        reset: bool,
        /// Measure only these figures (comma-separated: read, flag, drain,
        /// `bulk_update`, latency, coalescing, `write_overhead`, idle, memory,
        /// scale, large).
        #[arg(long, value_delimiter = ',', value_parser = clap::builder::PossibleValuesParser::new(bench::FIGURES))]
        only: Vec<String>,
        /// Rows of the last figure, `large` (PostgreSQL): the table is
        /// re-seeded with this many lampposts, drained, and measured for
        /// latency with no manual VACUUM or ANALYZE.
        #[arg(long, default_value_t = 200_000)]
        large_rows: u64,
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
        Command::Bench {
            rows,
            reset,
            only,
            large_rows,
        } => {
            bench::run(
                &cli.database_url,
                rows,
                cli.cost_us,
                reset,
                &only,
                large_rows,
            )
            .await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Demo => {
            demo::run(cli.cost_us).await?;
            Ok(std::process::ExitCode::SUCCESS)
        }
        Command::Seed {
            lampposts,
            pigeons_per,
            streets,
        } => {
            let db = Db::connect(&cli.database_url).await?;
            let streets = streets.unwrap_or_else(|| default_streets(lampposts));
            seed(&db, lampposts, pigeons_per, streets).await?;
            db.close().await;
            Ok(std::process::ExitCode::SUCCESS)
        }
    }
}

/// Creates the app's tables and installs the library's schema.
pub(crate) async fn migrate(db: &Db) -> anyhow::Result<cached_fields::schema::Migration> {
    Ok(app()?.migrate(db).await?)
}

/// Every row `sql` returns, read in a transaction: behind a
/// transaction-mode pooler a statement's two round trips must reach one
/// server connection.
async fn fetch_rows<R>(db: &Db, sql: &'static str) -> anyhow::Result<Vec<R>>
where
    R: Send
        + Unpin
        + for<'r> sqlx::FromRow<'r, sqlx::sqlite::SqliteRow>
        + for<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow>,
{
    Ok(on_db!(db, |p| {
        let mut tx = p.begin().await?;
        let rows = sqlx::query_as(sql)
            .persistent(cached_fields::named_statements())
            .fetch_all(&mut *tx)
            .await?;
        tx.commit().await?;
        rows
    }))
}

/// Rows whose cached values are flagged or disagree with what their inputs give.
async fn verify(db: &Db) -> anyhow::Result<Vec<String>> {
    let mut wrong = verify_lampposts(db).await?;
    wrong.extend(verify_streets(db).await?);
    wrong.extend(verify_pigeons(db).await?);
    Ok(wrong)
}

async fn verify_lampposts(db: &Db) -> anyhow::Result<Vec<String>> {
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
    let rows: Vec<Row> = fetch_rows(db, SQL).await?;
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

async fn verify_streets(db: &Db) -> anyhow::Result<Vec<String>> {
    const SQL: &str = "SELECT s.id, s.pigeon_weight_recalculation_needed, s.heaviest_recalculation_needed,
            s.cached_pigeon_weight, s.cached_heaviest,
            CAST(COALESCE((SELECT SUM(p.weight) FROM pigeons p JOIN lampposts l ON l.id = p.lamppost_id
                WHERE l.street_id = s.id), 0) AS BIGINT),
            CAST(COALESCE((SELECT MAX(l.weight + COALESCE((SELECT SUM(p.weight) FROM pigeons p
                WHERE p.lamppost_id = l.id), 0)) FROM lampposts l WHERE l.street_id = s.id), 0) AS BIGINT)
        FROM streets s ORDER BY s.id";
    type Row = (i64, bool, bool, Option<i64>, Option<i64>, i64, i64);
    let rows: Vec<Row> = fetch_rows(db, SQL).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, f1, f2, pw, heaviest, expect_pw, expect_heaviest)| {
            let ok = !f1 && !f2 && pw == Some(expect_pw) && heaviest == Some(expect_heaviest);
            (!ok).then(|| {
                format!(
                    "street {id}: flags ({f1}, {f2}), pigeon_weight {pw:?} (expected {expect_pw}), \
                     heaviest {heaviest:?} (expected {expect_heaviest})"
                )
            })
        })
        .collect())
}

async fn verify_pigeons(db: &Db) -> anyhow::Result<Vec<String>> {
    const SQL: &str = "SELECT p.id, p.perch_recalculation_needed, p.cached_perch,
            l.first_name || ' of ' || l.country || ' on ' || COALESCE(s.name, 'no street')
        FROM pigeons p JOIN lampposts l ON l.id = p.lamppost_id
        LEFT JOIN streets s ON s.id = l.street_id ORDER BY p.id";
    type Row = (i64, bool, Option<String>, String);
    let rows: Vec<Row> = fetch_rows(db, SQL).await?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, flagged, perch, expect)| {
            let ok = !flagged && perch.as_deref() == Some(expect.as_str());
            (!ok).then(|| {
                format!("pigeon {id}: flag {flagged}, perch {perch:?} (expected {expect:?})")
            })
        })
        .collect())
}

/// One street per 10 lampposts, at least one.
pub(crate) fn default_streets(lampposts: u64) -> u64 {
    lampposts.div_ceil(10).max(1)
}

const FIRST_NAMES: &[&str] = &[
    "Anna", "Boris", "Clara", "Dmitri", "Elena", "Felix", "Greta", "Hugo",
];
const COUNTRIES: &[&str] = &[
    "Latvia", "Chile", "Japan", "Kenya", "Norway", "Peru", "Spain",
];

const STREET_NAMES: &[&str] = &["Elm", "Oak", "Birch", "Linden", "Maple", "Rowan"];

/// Inserts `n` lampposts with `per` pigeons each, spread over `streets` new
/// streets (none: no lamppost has a street); new rows start flagged.
pub(crate) async fn seed(db: &Db, n: u64, per: u64, streets: u64) -> anyhow::Result<()> {
    let mut street_ids: Vec<i64> = Vec::new();
    on_db!(db, |pool| {
        let mut tx = pool.begin().await?;
        for i in 0..streets {
            let name = format!(
                "{} Street {}",
                STREET_NAMES[usize::try_from(i)? % STREET_NAMES.len()],
                i + 1
            );
            street_ids.push(
                sqlx::query_scalar("INSERT INTO streets (name) VALUES ($1) RETURNING id")
                    .persistent(cached_fields::named_statements())
                    .bind(name)
                    .fetch_one(&mut *tx)
                    .await?,
            );
        }
        tx.commit().await?;
    });
    let bar = cached_fields::cli::progress(n, "seeding");
    let mut done = 0;
    while done < n {
        let chunk = (n - done).min(500);
        on_db!(db, |pool| {
            let mut tx = pool.begin().await?;
            for i in done..done + chunk {
                let street = (!street_ids.is_empty())
                    .then(|| street_ids[usize::try_from(i).unwrap_or(0) % street_ids.len()]);
                let id: i64 = sqlx::query_scalar(
                    "INSERT INTO lampposts (weight, first_name, country, street_id) \
                     VALUES ($1, $2, $3, $4) RETURNING id",
                )
                .persistent(cached_fields::named_statements())
                .bind(i64::try_from(100 + i % 50)?)
                .bind(FIRST_NAMES[usize::try_from(i)? % FIRST_NAMES.len()])
                .bind(COUNTRIES[usize::try_from(i)? % COUNTRIES.len()])
                .bind(street)
                .fetch_one(&mut *tx)
                .await?;
                for j in 0..per {
                    sqlx::query("INSERT INTO pigeons (lamppost_id, weight) VALUES ($1, $2)")
                        .persistent(cached_fields::named_statements())
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
    println!("seeded {n} lampposts with {per} pigeons each on {streets} streets");
    Ok(())
}
