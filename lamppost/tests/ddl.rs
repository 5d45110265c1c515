//! Issue #10: the SQL the library generates for lamppost's declarations,
//! pinned per backend, so that a change to generated SQL shows up in
//! review. `UPDATE_SNAPSHOTS=1 cargo test -p lamppost --test ddl` rewrites
//! the files after an intended change.
#![allow(missing_docs)]

use std::process::Command;

fn migrate_sql(url: &str) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_lamppost"))
        .args(["--database-url", url, "migrate", "--sql"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn check(backend: &str, url: &str) {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/snapshots")
        .join(format!("schema.{backend}.sql"));
    let sql = migrate_sql(url);
    if std::env::var_os("UPDATE_SNAPSHOTS").is_some() {
        std::fs::write(&path, &sql).unwrap();
        return;
    }
    let pinned = std::fs::read_to_string(&path).unwrap_or_default();
    if pinned != sql {
        let first = pinned
            .lines()
            .zip(sql.lines())
            .position(|(a, b)| a != b)
            .unwrap_or_else(|| pinned.lines().count().min(sql.lines().count()));
        panic!(
            "the generated {backend} SQL differs from {} from line {}:\n  pinned:    {:?}\n  generated: {:?}\n\
             (after an intended change: UPDATE_SNAPSHOTS=1 cargo test -p lamppost --test ddl)",
            path.display(),
            first + 1,
            pinned.lines().nth(first),
            sql.lines().nth(first),
        );
    }
}

#[test]
fn generated_sql_for_sqlite_is_as_pinned() {
    check("sqlite", "sqlite:unused.db");
}

#[test]
fn generated_sql_for_postgres_is_as_pinned() {
    check("postgres", "postgres://nobody@127.0.0.1:1/unused");
}
