//! The embedded form: an axum app with a worker inside, both stopping on
//! the app's own SIGTERM/SIGINT (the library installs no signal handler).
//! The worker finishes the batch in hand, so it leaves no lease behind.
//!
//! ```sh
//! cargo run --example server --features web -- sqlite:server.db 127.0.0.1:3000
//! curl -X POST 'http://127.0.0.1:3000/notes?body=hello+cached+world'
//! curl http://127.0.0.1:3000/notes/1
//! kill -TERM <pid>   # or Ctrl-C: both stop
//! ```
//!
//! The third argument, if any, is how long each calculation takes in
//! milliseconds (the process test makes the worker busy with it).

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use cached_fields::{BoxError, Cached, CachedModel, Db, Registry, Worker};
use sqlx::SqliteConnection;

/// How long each calculation takes, in milliseconds.
static SLOW_MS: AtomicU64 = AtomicU64::new(0);

/// A note and its cached word count.
#[derive(Debug, CachedModel)]
#[cached_model(table = "notes")]
struct Note {
    id: i64,
    body: String,
    #[cached(depends_on("body"))]
    words: Cached<i64>,
}

impl Note {
    async fn calculate_words(&self, _: &mut SqliteConnection) -> Result<i64, BoxError> {
        tokio::time::sleep(Duration::from_millis(SLOW_MS.load(Ordering::Relaxed))).await;
        Ok(i64::try_from(self.body.split_whitespace().count())?)
    }
}

/// Completes on SIGINT or SIGTERM: the app's own handlers.
async fn shutdown() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("a SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[derive(serde::Deserialize)]
struct NewNote {
    body: String,
}

async fn add(State(db): State<Db>, Query(n): Query<NewNote>) -> Result<String, String> {
    let pool = db.as_sqlite().ok_or("SQLite only")?;
    let id: i64 = sqlx::query_scalar("INSERT INTO notes (body) VALUES ($1) RETURNING id")
        .bind(n.body)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    Ok(id.to_string())
}

async fn words(State(db): State<Db>, Path(id): Path<i64>) -> Result<String, String> {
    let pool = db.as_sqlite().ok_or("SQLite only")?;
    let note: Note = sqlx::query_as("SELECT * FROM notes WHERE id = $1")
        .bind(id)
        .fetch_one(pool)
        .await
        .map_err(|e| e.to_string())?;
    // Stale: recalculated inline; fresh: the stored value.
    Ok(note
        .words(&db)
        .await
        .map_err(|e| e.to_string())?
        .to_string())
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    let mut args = std::env::args().skip(1);
    let url = args.next().unwrap_or_else(|| "sqlite:server.db".to_owned());
    let listen = args.next().unwrap_or_else(|| "127.0.0.1:3000".to_owned());
    SLOW_MS.store(args.next().map_or(Ok(0), |a| a.parse())?, Ordering::Relaxed);

    let db = Db::connect(&url).await?;
    let pool = db.as_sqlite().ok_or("the server example runs on SQLite")?;
    sqlx::query("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(pool)
        .await?;
    let registry = Registry::new().register::<Note>()?;
    registry.migrate(&db).await?;

    // One shutdown signal, shared: the server's graceful shutdown and the
    // worker's both end on it.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker_stop = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let worker = tokio::spawn(Worker::new(db.clone(), registry).run_until(worker_stop));

    let app = axum::Router::new()
        .route("/notes", post(add))
        .route("/notes/{id}", get(words))
        .with_state(db.clone());
    let listener = tokio::net::TcpListener::bind(&listen).await?;
    println!("listening on http://{listen}/");
    let server_stop = {
        let mut stopped = stopped.clone();
        async move {
            let _ = stopped.wait_for(|s| *s).await;
        }
    };
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(server_stop)
            .await
    });
    shutdown().await;
    println!("stopping");
    let _ = stop.send(true);
    server.await??;
    let stats = worker.await??;
    println!("stopped: {} recalculated", stats.recalculated);
    db.close().await;
    Ok(())
}
