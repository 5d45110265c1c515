//! The operations command line, for any application's [`Registry`]:
//! `migrate [--sql]`, `check`, `status [--json]`, `worker`, `recalc`,
//! `verify`, `deps [--dot]`, `pause`, `resume`, and with feature `web`
//! `serve` (the dashboard). An application gets all of them with one call
//! ([`App::main`]), or embeds [`Command`] among its own subcommands and
//! calls [`App::run`].
//!
//! ```no_run
//! use cached_fields::{BoxError, Cached, CachedModel, Ctx, Registry, cli::App};
//!
//! #[derive(Debug, CachedModel)]
//! #[cached_model(table = "notes")]
//! struct Note {
//!     id: i64,
//!     body: String,
//!     #[cached(depends_on("body"))]
//!     words: Cached<i64>,
//! }
//! impl Note {
//!     async fn calculate_words(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
//!         Ok(self.body.split_whitespace().count() as i64)
//!     }
//! }
//!
//! #[tokio::main]
//! async fn main() -> std::process::ExitCode {
//!     let registry = Registry::new().register::<Note>().expect("a valid declaration");
//!     App::new("notes", registry).main().await // --database-url, or DATABASE_URL
//! }
//! ```
//!
//! `examples/notes.rs` is such an application, with a default database,
//! its own tables and its own comparison for `verify`.

use std::io::IsTerminal;
use std::process::ExitCode;
use std::time::Duration;

/// Prints a line on standard output; a closed pipe (`status | head`) ends
/// the process quietly, as a Unix command does, instead of panicking.
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let mut stdout = std::io::stdout().lock();
        if let Err(e) = writeln!(stdout, $($arg)*) {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                std::process::exit(0);
            }
        }
    }};
}

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};
use futures::future::BoxFuture;
use indicatif::{ProgressBar, ProgressStyle};

use crate::db::{Backend, Db, redact_with};
use crate::error::{BoxError, Error};
use crate::key::Key;
use crate::registry::Registry;
use crate::worker::Worker;

/// The library's commands, to embed among an application's own with
/// `#[command(flatten)]`.
#[derive(Debug, Clone, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Create or upgrade the cached columns, indexes and triggers (idempotent; the
    /// application's own tables first, if it creates them).
    Migrate {
        /// Print the cached-fields SQL for this backend instead of applying it
        /// (for your own migration files).
        #[arg(long)]
        sql: bool,
    },
    /// Compare the database with the declarations; exit 1 listing what is missing or outdated.
    Check,
    /// Recalculate flagged and expired values until SIGINT/SIGTERM; prints a JSON line of counts at exit.
    Worker(WorkerArgs),
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
        /// Only this cached field (`table.field`).
        #[arg(long)]
        field: Option<String>,
        /// Only these rows (needs --field).
        #[arg(long, requires = "field", value_delimiter = ',')]
        key: Vec<String>,
    },
    /// Serve the web dashboard (and /metrics) until SIGINT/SIGTERM.
    #[cfg(feature = "web")]
    Serve {
        /// Address to listen on (loopback unless told otherwise).
        #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
        listen: std::net::SocketAddr,
        /// The token every request must carry (`Authorization: Bearer TOKEN`, or open
        /// `/?token=TOKEN` once in a browser).
        #[arg(long, env = "CACHED_FIELDS_TOKEN", hide_env_values = true)]
        token: String,
        /// Serve /metrics without the token.
        #[arg(long)]
        public_metrics: bool,
    },
    /// Pause a field (`table.field`) until `resume`: every worker leaves its rows flagged
    /// within a second (reads still recalculate inline).
    Pause {
        /// The field, as `table.field`.
        field: String,
    },
    /// End a field's pause: the workers catch up on what was flagged meanwhile.
    Resume {
        /// The field, as `table.field`.
        field: String,
    },
    /// Print every cached field's dependencies, the path of each, and the triggers that
    /// guard every table on it, in the order the worker recalculates the fields (needs no
    /// database).
    Deps {
        /// Print Graphviz DOT instead (`… deps --dot | dot -Tsvg > deps.svg`).
        #[arg(long, conflicts_with = "json")]
        dot: bool,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Check that no value is flagged or expired and, where the application supplies
    /// the comparison, that every stored value agrees with its inputs; exit 1 listing
    /// the rows that do not.
    Verify,
}

/// The worker's settings, as `worker` options.
#[derive(Debug, Clone, Args)]
#[non_exhaustive]
pub struct WorkerArgs {
    /// Calculations run at once (1 to 10000).
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub concurrency: u64,
    /// Rows claimed per statement (1 to 10000).
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u64).range(1..=10_000))]
    pub batch_size: u64,
    /// Seconds a claim lasts before another worker may take over a dead worker's rows (1 to 86400).
    #[arg(long, default_value_t = 30, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lease_secs: u64,
    /// Longest idle wait between looks for work, in milliseconds (1 to 3600000).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=3_600_000))]
    pub poll_ms: u64,
    /// Milliseconds one calculation may take before it counts as failed (at least 1).
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub timeout_ms: u64,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (e.g. 127.0.0.1:9464).
    #[cfg(feature = "web")]
    #[arg(long, value_name = "ADDR")]
    pub metrics_listen: Option<std::net::SocketAddr>,
}

/// The option every command takes.
#[derive(Debug, Clone, Args)]
#[non_exhaustive]
pub struct DatabaseArgs {
    /// The database URL (the help shows the forms this build accepts).
    #[arg(long, global = true, env = "DATABASE_URL", help = Backend::URL_HELP)]
    pub database_url: Option<String>,
}

/// The command line of an application that has only the library's commands.
#[derive(Debug, Parser)]
struct OnlyLibrary {
    #[command(flatten)]
    database: DatabaseArgs,
    #[command(subcommand)]
    command: Command,
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CliError {
    /// The library failed.
    #[error(transparent)]
    Library(#[from] Error),
    /// The application's own step (creating its tables, its comparison) failed.
    #[error("{what}: {source}")]
    App {
        /// Which step.
        what: &'static str,
        /// Why.
        #[source]
        source: BoxError,
    },
    /// An argument is not valid (a field that is not declared, a key of the wrong type).
    #[error("{0}")]
    Usage(String),
    /// Printing JSON failed.
    #[error("cannot print JSON: {0}")]
    Json(#[from] serde_json::Error),
}

/// A step the application supplies: it gets the database and may fail.
pub type AppStep<T> = for<'a> fn(&'a Db) -> BoxFuture<'a, Result<T, BoxError>>;

/// An application's registry and the steps only it knows, from which the
/// library runs its commands.
#[derive(Debug, Clone)]
pub struct App {
    name: String,
    registry: Registry,
    default_url: Option<String>,
    create_tables: Option<AppStep<()>>,
    verify: Option<AppStep<Vec<String>>>,
}

impl App {
    /// An application called `name` (in messages) with its `registry`.
    pub fn new(name: &str, registry: Registry) -> Self {
        App {
            name: name.to_owned(),
            registry,
            default_url: None,
            create_tables: None,
            verify: None,
        }
    }

    /// The database URL when neither `--database-url` nor `DATABASE_URL` gives one.
    #[must_use]
    pub fn default_database_url(mut self, url: &str) -> Self {
        self.default_url = Some(url.to_owned());
        self
    }

    /// Creates the application's own tables; `migrate` runs it first.
    #[must_use]
    pub fn create_tables(mut self, step: AppStep<()>) -> Self {
        self.create_tables = Some(step);
        self
    }

    /// Compares stored values with their inputs; `verify` prints each line
    /// it returns (one per disagreeing row) and fails when there are any.
    #[must_use]
    pub fn verify(mut self, step: AppStep<Vec<String>>) -> Self {
        self.verify = Some(step);
        self
    }

    /// The registry.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// The database URL `database` gives, else the application's default.
    pub fn database_url(&self, database: &DatabaseArgs) -> Result<String, CliError> {
        database
            .database_url
            .clone()
            .or_else(|| self.default_url.clone())
            .ok_or_else(|| {
                CliError::Usage("no database: pass --database-url or set DATABASE_URL".to_owned())
            })
    }

    /// Parses the process's arguments as the library's commands, runs the
    /// one given, prints any error (without the URL's password) and returns
    /// the exit code.
    pub async fn main(self) -> ExitCode {
        let mut cmd = OnlyLibrary::command().name(self.name.clone());
        if let Some(url) = &self.default_url {
            let url = url.clone();
            cmd = cmd.mut_arg("database_url", |a| a.default_value(url));
        }
        let matches = cmd.get_matches();
        let cli = match OnlyLibrary::from_arg_matches(&matches) {
            Ok(cli) => cli,
            Err(e) => e.exit(),
        };
        let url = match self.database_url(&cli.database) {
            Ok(url) => url,
            Err(e) => return report(&e, ""),
        };
        match self.run(cli.command, &url).await {
            Ok(code) => code,
            Err(e) => report(&e, &url),
        }
    }

    /// Runs one of the library's commands on the database at `url`.
    pub async fn run(&self, command: Command, url: &str) -> Result<ExitCode, CliError> {
        if let Command::Migrate { sql: true } = command {
            out!("{}", self.registry.sql(Backend::of_url(url)?).trim_end());
            return Ok(ExitCode::SUCCESS);
        }
        if let Command::Deps { dot, json } = command {
            deps(&self.registry, dot, json)?;
            return Ok(ExitCode::SUCCESS);
        }
        let db = Db::connect(url).await?;
        let code = self.run_on(command, &db).await;
        db.close().await;
        code
    }

    /// Runs one of the library's commands on `db`.
    pub async fn run_on(&self, command: Command, db: &Db) -> Result<ExitCode, CliError> {
        let registry = &self.registry;
        match command {
            Command::Migrate { sql: true } => out!("{}", registry.sql(db.backend()).trim_end()),
            Command::Migrate { sql: false } => {
                let done = self.migrate(db).await?;
                if done.is_empty() {
                    out!("schema up to date");
                }
                for p in &done.changes {
                    out!("applied: {p}");
                }
                for f in &done.flagged {
                    out!("{f}");
                }
                for w in &done.warnings {
                    out!("{w}");
                }
            }
            Command::Check => {
                let (warnings, problems): (Vec<_>, Vec<_>) = registry
                    .check(db)
                    .await?
                    .into_iter()
                    .partition(crate::schema::Problem::is_warning);
                for w in &warnings {
                    out!("{w}");
                }
                if !problems.is_empty() {
                    for p in &problems {
                        out!("{p}");
                    }
                    eprintln!(
                        "{} problem(s): run `{} migrate` to fix",
                        problems.len(),
                        self.name
                    );
                    return Ok(ExitCode::FAILURE);
                }
                out!("schema matches the declarations");
            }
            Command::Worker(w) => {
                #[cfg(feature = "web")]
                if let Some(listen) = w.metrics_listen {
                    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|e| {
                        CliError::Usage(format!("cannot listen on {listen} for metrics: {e}"))
                    })?;
                    crate::metrics::enable();
                    let (db, registry) = (db.clone(), registry.clone());
                    tokio::spawn(async move {
                        if let Err(e) = crate::metrics::serve(listener, db, registry).await {
                            tracing::error!(%listen, error = %e, "the metrics server stopped");
                        }
                    });
                }
                let stats = Worker::new(db.clone(), registry.clone())
                    .concurrency(usize::try_from(w.concurrency).unwrap_or(usize::MAX))
                    .batch_size(usize::try_from(w.batch_size).unwrap_or(usize::MAX))
                    .lease(Duration::from_secs(w.lease_secs))
                    .poll_interval(Duration::from_millis(w.poll_ms))
                    .calculation_timeout(Duration::from_millis(w.timeout_ms))
                    .run_until(shutdown_signal())
                    .await?;
                out!("{}", serde_json::to_string(&stats)?);
            }
            Command::Status { json } => status(db, registry, json).await?,
            Command::Recalc {
                all,
                stale: _,
                field,
                key,
            } => recalc(db, registry, all, field.as_deref(), &key).await?,
            Command::Verify => return self.verify_all(db).await,
            Command::Deps { dot, json } => deps(registry, dot, json)?,
            #[cfg(feature = "web")]
            Command::Serve {
                listen,
                token,
                public_metrics,
            } => {
                if token.len() < 8 {
                    return Err(CliError::Usage(
                        "the token must be at least 8 characters".to_owned(),
                    ));
                }
                let listener = tokio::net::TcpListener::bind(listen)
                    .await
                    .map_err(|e| CliError::Usage(format!("cannot listen on {listen}: {e}")))?;
                eprintln!("dashboard on http://{listen}/ (open /?token=… once)");
                let app = crate::web::router(db.clone(), registry.clone(), token, public_metrics);
                axum::serve(listener, app)
                    .with_graceful_shutdown(shutdown_signal())
                    .await
                    .map_err(|e| CliError::Usage(format!("the dashboard stopped: {e}")))?;
            }
            Command::Pause { field } => {
                registry.pause(db, &field).await?;
                out!("{field} paused: workers leave its rows flagged until `resume {field}`");
            }
            Command::Resume { field } => {
                registry.resume(db, &field).await?;
                out!("{field} resumed");
            }
        }
        Ok(ExitCode::SUCCESS)
    }

    /// The application's tables, then the library's schema.
    pub async fn migrate(&self, db: &Db) -> Result<crate::schema::Migration, CliError> {
        if let Some(create) = self.create_tables {
            create(db).await.map_err(|source| CliError::App {
                what: "creating the application's tables",
                source,
            })?;
        }
        Ok(self.registry.migrate(db).await?)
    }

    async fn verify_all(&self, db: &Db) -> Result<ExitCode, CliError> {
        let mut bad = Vec::new();
        for s in self.registry.status(db).await? {
            if s.stale + s.expired > 0 {
                bad.push(format!(
                    "{}.{}: {} row(s) flagged, {} expired",
                    s.table, s.field, s.stale, s.expired
                ));
            }
        }
        if let Some(compare) = self.verify {
            bad.extend(compare(db).await.map_err(|source| CliError::App {
                what: "comparing stored values with their inputs",
                source,
            })?);
        }
        if bad.is_empty() {
            out!("every cached value is fresh and agrees with its row");
            return Ok(ExitCode::SUCCESS);
        }
        for line in &bad {
            out!("{line}");
        }
        eprintln!(
            "{} problem(s): values flagged or disagreeing with their inputs",
            bad.len()
        );
        Ok(ExitCode::FAILURE)
    }
}

/// Prints `e` (whose message includes its cause) without any secret of
/// `url`; the failure exit code.
fn report(e: &CliError, url: &str) -> ExitCode {
    eprintln!("error: {}", redact_with(&crate::error::report(e), url));
    ExitCode::FAILURE
}

/// A progress bar on a terminal, nothing elsewhere.
pub fn progress(len: u64, msg: &'static str) -> ProgressBar {
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

/// Prints the dependency graph as text, DOT or JSON.
fn deps(registry: &Registry, dot: bool, json: bool) -> Result<(), CliError> {
    let graph = registry.graph();
    if dot {
        out!("{}", graph.dot().trim_end());
    } else if json {
        out!("{}", serde_json::to_string_pretty(&graph)?);
    } else {
        out!("{}", graph.to_string().trim_end());
    }
    Ok(())
}

async fn status(db: &Db, registry: &Registry, json: bool) -> Result<(), CliError> {
    let rows = registry.status(db).await?;
    let workers = registry.workers(db).await?;
    if json {
        let all = serde_json::json!({ "fields": rows, "workers": workers });
        out!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(());
    }
    out!(
        "{:<28} {:>8} {:>8} {:>8} {:>8} {:>12}",
        "field",
        "rows",
        "stale",
        "expired",
        "failing",
        "oldest stale"
    );
    for s in &rows {
        let oldest = s
            .oldest_stale_secs
            .map_or_else(|| "-".to_owned(), |x| format!("{x:.1}s"));
        out!(
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>12}",
            format!("{}.{}", s.table, s.field),
            s.rows,
            s.stale,
            s.expired,
            s.failing,
            oldest
        );
        if let Some((key, attempts, msg)) = &s.last_error {
            out!("  last error (row {key}, {attempts} attempts): {msg}");
        }
        if let Some((count, msg)) = &s.field_error {
            out!("  the field failed as a whole ({count} times in a row): {msg}");
        }
        if s.hook_failures > 0 {
            out!(
                "  after-recalculation hook failed {} times",
                s.hook_failures
            );
        }
        if s.paused {
            out!("  paused: workers leave its rows flagged until resumed");
        } else if s.held {
            out!("  held by a block of work: workers wait until it ends");
        }
    }
    let now = chrono::Utc::now();
    if workers.is_empty() {
        out!("workers: none recorded");
    }
    for w in &workers {
        out!(
            "worker {} (pid {} on {}): {}, last heartbeat {:.0} s ago, {} recalculated, {} failed",
            w.id,
            w.pid,
            w.host,
            if w.alive { "alive" } else { "gone" },
            (now - w.heartbeat_at).num_milliseconds() as f64 / 1e3,
            w.recalculated,
            w.failed
        );
    }
    Ok(())
}

async fn recalc(
    db: &Db,
    registry: &Registry,
    all: bool,
    only: Option<&str>,
    keys: &[String],
) -> Result<(), CliError> {
    let mut fields = registry.status(db).await?;
    if let Some(only) = only {
        fields.retain(|s| format!("{}.{}", s.table, s.field) == only);
        if fields.is_empty() {
            return Err(CliError::Usage(format!(
                "no cached field {only:?}; declared: {}",
                registry.field_names().join(", ")
            )));
        }
    }
    // In the order `deps` prints, whatever the registration order: a field
    // after every cached field it reads (whose new values flag it first).
    fields.sort_by_key(|s| registry.rank(&s.table, &s.field));
    let stopped = crate::pauses::stopped(db).await?;
    for s in fields {
        if let Some((table, field)) = registry
            .chain(&s.table, &s.field)
            .into_iter()
            .find(|tf| stopped.contains(tf))
        {
            let why = if (table.as_str(), field.as_str()) == (s.table.as_str(), s.field.as_str()) {
                "paused or held".to_owned()
            } else {
                format!("it reads {table}.{field}, which is paused or held")
            };
            out!("{}.{}: skipped: {why} (resume it first)", s.table, s.field);
            continue;
        }
        if !keys.is_empty() {
            let ty = registry.key_type(&s.table)?;
            let keys = keys
                .iter()
                .map(|k| {
                    Key::parse(k, ty).map_err(|e| CliError::Usage(format!("{}: {e}", s.table)))
                })
                .collect::<Result<Vec<_>, _>>()?;
            crate::worker::recalculate_keys(db, registry, &s.table, &s.field, &keys).await?;
            out!(
                "{}.{}: recalculated {} row(s)",
                s.table,
                s.field,
                keys.len()
            );
            continue;
        }
        // The figures now: fields recalculated before this one may have
        // flagged its rows.
        let now = registry
            .status(db)
            .await?
            .into_iter()
            .find(|n| n.table == s.table && n.field == s.field)
            .unwrap_or(s);
        let total = if all {
            now.rows
        } else {
            now.stale + now.expired
        };
        let bar = progress(u64::try_from(total).unwrap_or(0), "recalculating");
        let mut after: Option<Key> = None;
        let mut done = 0u64;
        loop {
            let keys = crate::worker::keys(
                db,
                registry,
                &now.table,
                &now.field,
                all,
                after.as_ref(),
                500,
            )
            .await?;
            let Some(last) = keys.last().cloned() else {
                break;
            };
            crate::worker::recalculate_keys(db, registry, &now.table, &now.field, &keys).await?;
            done += keys.len() as u64;
            bar.set_position(done);
            after = Some(last);
        }
        bar.finish_and_clear();
        out!("{}.{}: recalculated {done} row(s)", now.table, now.field);
    }
    Ok(())
}

/// Completes on SIGINT or SIGTERM: the command line's own handlers (the
/// library installs none).
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
