//! A second, tiny application: notes whose word count is cached. It gets
//! the library's operations commands (`migrate`, `check`, `status`,
//! `worker`, `recalc`, `verify`) for its own model with one call.
//!
//! ```sh
//! cargo run --example notes --features cli -- migrate
//! sqlite3 notes.db "INSERT INTO notes (body) VALUES ('hello cached world')"
//! cargo run --example notes --features cli -- recalc
//! cargo run --example notes --features cli -- verify
//! ```

use cached_fields::cli::App;
use cached_fields::{BoxError, Cached, CachedModel, Db, Registry};
use sqlx::SqliteConnection;

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
        Ok(i64::try_from(self.body.split_whitespace().count())?)
    }
}

/// The app's own table.
async fn create_tables(db: &Db) -> Result<(), BoxError> {
    let pool = db.as_sqlite().ok_or("the notes example runs on SQLite")?;
    sqlx::query("CREATE TABLE IF NOT EXISTS notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)")
        .execute(pool)
        .await?;
    Ok(())
}

/// Notes whose stored count disagrees with their body.
async fn verify(db: &Db) -> Result<Vec<String>, BoxError> {
    let pool = db.as_sqlite().ok_or("the notes example runs on SQLite")?;
    let notes: Vec<Note> = sqlx::query_as("SELECT * FROM notes ORDER BY id")
        .fetch_all(pool)
        .await?;
    Ok(notes
        .iter()
        .filter_map(|n| {
            let want = i64::try_from(n.body.split_whitespace().count()).ok()?;
            (n.words.stored() != Some(want)).then(|| {
                format!(
                    "note {}: words {:?}, expected {want}",
                    n.id,
                    n.words.stored()
                )
            })
        })
        .collect())
}

#[tokio::main]
async fn main() -> std::process::ExitCode {
    let registry = match Registry::new().register::<Note>() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    App::new("notes", registry)
        .default_database_url("sqlite:notes.db")
        .create_tables(|db| Box::pin(create_tables(db)))
        .verify(|db| Box::pin(verify(db)))
        .main()
        .await
}
