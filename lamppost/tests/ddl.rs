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

/// Issue #13 (write overhead): PostgreSQL guards a table on a path with one
/// statement trigger per event, however many fields reach it (pigeons:
/// `lampposts.total_weight` and `streets.pigeon_weight`; lampposts: three
/// fields), so a write pays one transition-table read, not one per field.
#[test]
fn postgres_guards_each_table_on_a_path_with_one_trigger_per_event() {
    let sql = migrate_sql("postgres://nobody@127.0.0.1:1/unused");
    for table in ["pigeons", "lampposts", "streets"] {
        for (kind, event) in [
            ("ins", "AFTER INSERT"),
            ("del", "AFTER DELETE"),
            ("upd", "AFTER UPDATE"),
            ("trunc", "AFTER TRUNCATE"),
        ] {
            let heads: Vec<&str> = sql
                .lines()
                .filter(|l| l.starts_with("CREATE OR REPLACE TRIGGER"))
                .filter(|l| l.contains(&format!(" {event} ON \"{table}\" ")))
                .filter(|l| l.contains("FOR EACH STATEMENT"))
                .collect();
            assert_eq!(heads.len(), 1, "{table} {kind}: {heads:#?}");
            assert!(
                heads[0].contains(&format!("\"cf_{kind}_{table}_")),
                "{}",
                heads[0]
            );
        }
    }
    // Both fields reached through pigeons are flagged by its one trigger.
    let upd = sql
        .split("CREATE OR REPLACE FUNCTION \"cf_upd_pigeons_")
        .nth(1)
        .and_then(|f| f.split("$cf$;").next())
        .unwrap();
    assert!(
        upd.contains("\"total_weight_recalculation_needed\" = TRUE"),
        "{upd}"
    );
    assert!(
        upd.contains("\"pigeon_weight_recalculation_needed\" = TRUE"),
        "{upd}"
    );
}
