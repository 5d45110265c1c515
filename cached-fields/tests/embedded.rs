//! Issue #25: a worker embedded in an app server stops with the app. The
//! example `server` (axum + a worker, one shutdown signal of its own) runs
//! as a process, busy draining; SIGTERM stops both, the worker after the
//! batch in hand: the process exits cleanly and leaves no lease behind.
//! (The library installs no signal handler: before, the worker took
//! SIGTERM for itself and the server went on serving.)

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use cached_fields::Db;
use cached_fields_test_support::{fresh_sqlite, remove_sqlite};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The example's binary, built by `cargo test` beside this test's.
fn example(name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test's own path");
    let dir = exe
        .parent()
        .and_then(std::path::Path::parent)
        .expect("target/<profile>");
    let path = dir.join("examples").join(name);
    if !path.exists() {
        // `cargo test` builds the examples; `cargo test --test embedded` does not.
        let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args(["build", "-p", "cached-fields", "--example", name])
            .args(["--features", "sqlite,derive,web"])
            .status()
            .unwrap();
        assert!(built.success(), "building the {name} example failed");
    }
    path
}

/// One HTTP/1.1 request; the response's status line and body.
async fn http(addr: &str, method: &str, path: &str) -> (String, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    let status = out.lines().next().unwrap_or_default().to_owned();
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

async fn count(db: &Db, sql: &str) -> i64 {
    sqlx::query_scalar(sqlx::AssertSqlSafe(sql.to_owned()))
        .fetch_one(db.as_sqlite().unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn sigterm_stops_the_app_and_its_worker_after_the_batch_in_hand() {
    const NOTES: i64 = 3000;
    let (url, _) = fresh_sqlite("embedded", "server", "server.db");
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    // 20 ms a calculation: the drain of 3,000 notes outlasts the test's
    // wait for its first values.
    let mut child = Command::new(example("server"))
        .args([&url, &addr, "20"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    assert!(first.starts_with("listening on"), "{first}");

    // The app serves; its writes are flagged by the triggers, read inline.
    let (status, id) = http(&addr, "POST", "/notes?body=hello+cached+world").await;
    assert!(status.contains("200"), "{status}");
    let (status, words) = http(&addr, "GET", &format!("/notes/{id}")).await;
    assert!(status.contains("200"), "{status}");
    assert_eq!(words, "3");

    // Work for the worker: the notes written by another program.
    let db = Db::connect(&url).await.unwrap();
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO notes (body) SELECT 'a b c d' FROM n",
    )
    .bind(NOTES)
    .execute(db.as_sqlite().unwrap())
    .await
    .unwrap();
    let stored = "SELECT COUNT(*) FROM notes WHERE NOT words_recalculation_needed";
    let waited = Instant::now();
    while count(&db, stored).await < 50 {
        assert!(
            waited.elapsed() < Duration::from_secs(60),
            "the worker stored nothing"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // SIGTERM, as a process manager sends it: both stop.
    let kill = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit:?}: {rest:?}");
    assert_eq!(
        rest.first().map(String::as_str),
        Some("stopping"),
        "{rest:?}"
    );
    assert!(
        rest.iter().any(|l| l.starts_with("stopped:")),
        "the worker returned its counts: {rest:?}"
    );

    // It stopped in the middle of the drain, after its batch: rows left
    // flagged, none of them leased.
    let flagged = "SELECT COUNT(*) FROM notes WHERE words_recalculation_needed";
    assert!(
        count(&db, flagged).await > 0,
        "the worker drained everything before stopping"
    );
    let leased = "SELECT COUNT(*) FROM notes WHERE words_next_attempt_at IS NOT NULL";
    assert_eq!(count(&db, leased).await, 0, "a lease was left behind");
    // And the server is gone.
    assert!(tokio::net::TcpStream::connect(&addr).await.is_err());
    db.close().await;
    remove_sqlite(&url);
}
