//! Issue #10: any application gets the operations commands for its own
//! registry with one call — the `notes` example, run as a process.
#![allow(missing_docs)]

use std::path::PathBuf;
use std::process::{Command, Output};

/// The `notes` example, built by `cargo test` beside the test binaries.
fn notes_binary() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let target = exe.parent().unwrap().parent().unwrap();
    let bin = target
        .join("examples")
        .join(format!("notes{}", std::env::consts::EXE_SUFFIX));
    if !bin.exists() {
        // `cargo test` builds the examples; `cargo test --test cli` does not.
        let built = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .args([
                "build",
                "-p",
                "cached-fields",
                "--example",
                "notes",
                "--features",
                "sqlite,derive,cli",
            ])
            .status()
            .unwrap();
        assert!(built.success(), "building the notes example failed");
    }
    bin
}

fn notes(dir: &std::path::Path, args: &[&str]) -> Output {
    Command::new(notes_binary())
        .args(args)
        .current_dir(dir)
        .env_remove("DATABASE_URL")
        .output()
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Runs `q` on the SQLite file `db` (another program writing the table).
fn sql(db: &std::path::Path, q: &str) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = cached_fields::Db::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        sqlx::raw_sql(sqlx::AssertSqlSafe(q.to_owned()))
            .execute(db.as_sqlite().unwrap())
            .await
            .unwrap();
        db.close().await;
    });
}

/// A text from a query on the SQLite file `db`.
fn sql_text(db: &std::path::Path, q: &str) -> String {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = cached_fields::Db::connect(&format!("sqlite:{}", db.display()))
            .await
            .unwrap();
        let t: String = sqlx::query_scalar(sqlx::AssertSqlSafe(q.to_owned()))
            .fetch_one(db.as_sqlite().unwrap())
            .await
            .unwrap();
        db.close().await;
        t
    })
}

#[test]
fn an_app_gets_every_operations_command_with_one_call() {
    let dir = std::env::temp_dir().join(format!("cf_cli_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let help = stdout(&notes(&dir, &["--help"]));
    for cmd in [
        "migrate", "check", "worker", "status", "recalc", "verify", "deps", "pause", "resume",
    ] {
        assert!(help.contains(cmd), "{cmd} missing from:\n{help}");
    }
    assert!(
        help.contains("sqlite:notes.db"),
        "the app's default URL is shown:\n{help}"
    );

    // Before migrate: check fails naming the table it needs.
    let check = notes(&dir, &["check"]);
    assert!(!check.status.success());
    assert!(
        stderr(&check).contains("table notes does not exist"),
        "{}",
        stderr(&check)
    );

    let migrate = notes(&dir, &["migrate"]);
    assert!(migrate.status.success(), "{}", stderr(&migrate));
    assert!(
        stdout(&migrate).contains("applied:"),
        "{}",
        stdout(&migrate)
    );
    let check = notes(&dir, &["check"]);
    assert!(check.status.success(), "{}", stdout(&check));
    let db = dir.join("notes.db");
    // A trigger dropped by hand: check names it and says to migrate.
    let trigger = sql_text(
        &db,
        "SELECT name FROM sqlite_master WHERE type = 'trigger' AND name LIKE 'cf_dep_%'",
    );
    sql(&db, &format!("DROP TRIGGER {trigger}"));
    let check = notes(&dir, &["check"]);
    assert!(!check.status.success());
    assert!(stdout(&check).contains(&trigger), "{}", stdout(&check));
    assert!(
        stderr(&check).contains("run `notes migrate`"),
        "{}",
        stderr(&check)
    );
    assert!(notes(&dir, &["migrate"]).status.success());

    // Rows written by anyone start flagged; verify says so, recalc fixes it.
    sql(
        &db,
        "INSERT INTO notes (body) VALUES ('one two three'), ('four')",
    );
    let verify = notes(&dir, &["verify"]);
    assert!(!verify.status.success());
    assert!(
        stdout(&verify).contains("notes.words: 2 row(s) flagged"),
        "{}",
        stdout(&verify)
    );
    assert!(
        stdout(&verify).contains("note 1: words None, expected 3"),
        "{}",
        stdout(&verify)
    );

    let status = notes(&dir, &["status", "--json"]);
    let json: serde_json::Value = serde_json::from_str(&stdout(&status)).unwrap();
    assert_eq!(json["fields"][0]["stale"], 2, "{json}");

    // One row by key, then the rest.
    let one = notes(&dir, &["recalc", "--field", "notes.words", "--key", "2"]);
    assert!(one.status.success(), "{}", stderr(&one));
    assert!(
        stdout(&one).contains("recalculated 1 row(s)"),
        "{}",
        stdout(&one)
    );
    let bad_key = notes(&dir, &["recalc", "--field", "notes.words", "--key", "two"]);
    assert!(!bad_key.status.success());
    assert!(
        stderr(&bad_key).contains("\"two\" is not a valid integer key"),
        "{}",
        stderr(&bad_key)
    );
    let bad_field = notes(&dir, &["recalc", "--field", "notes.nope"]);
    assert!(
        stderr(&bad_field).contains("no cached field \"notes.nope\"; declared: notes.words"),
        "{}",
        stderr(&bad_field)
    );
    let rest = notes(&dir, &["recalc"]);
    assert!(
        stdout(&rest).contains("notes.words: recalculated 1 row(s)"),
        "{}",
        stdout(&rest)
    );

    let verify = notes(&dir, &["verify"]);
    assert!(
        verify.status.success(),
        "{}{}",
        stdout(&verify),
        stderr(&verify)
    );
    assert!(stdout(&verify).contains("every cached value is fresh"));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Issue #25: commands that tell the truth. A field the registry does not
/// declare is named with the ones it does; an output cut short by its
/// reader (`status | head`) ends the command quietly, not in a panic.
#[test]
fn undeclared_fields_and_closed_pipes_are_answered_plainly() {
    let dir = std::env::temp_dir().join(format!("cf_cli_pipe_{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    assert!(notes(&dir, &["migrate"]).status.success());
    for cmd in ["pause", "resume"] {
        let out = notes(&dir, &[cmd, "orders.total"]);
        assert!(!out.status.success(), "{cmd}");
        assert!(
            stderr(&out).contains("no cached field \"orders.total\"; declared: notes.words"),
            "{cmd}: {}",
            stderr(&out)
        );
    }
    for cmd in [&["status"][..], &["deps"], &["verify"], &["--help"]] {
        // The reader is gone before the command writes.
        let mut child = Command::new(notes_binary())
            .args(cmd)
            .current_dir(&dir)
            .env_remove("DATABASE_URL")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());
        let out = child.wait_with_output().unwrap();
        assert!(
            !stderr(&out).contains("panicked"),
            "{cmd:?}: {}",
            stderr(&out)
        );
        assert_ne!(out.status.code(), Some(101), "{cmd:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
