//! Issue #8: nothing escapes invalidation, and `check`/`migrate` tell the
//! whole truth. Writes come from plain SQL (and, on SQLite, the `sqlite3`
//! shell); each test runs on SQLite and on PostgreSQL.

mod common;

use common::per_backend;

use cached_fields::schema::{ObjectKind, State};
use cached_fields::{Backend, BoxError, Cached, CachedModel, Conn, Ctx, Db, Registry, Worker};
use common::posts::{self, assert_consistent, drain, flagged, registry, setup, sql};
use common::{exec, exec_text, on_both, pk, scalar};

/// Runs the `sqlite3` shell on the test's database file.
fn sqlite3_shell(url: &str, statement: &str) {
    let file = url.strip_prefix("sqlite:").unwrap();
    let out = std::process::Command::new("sqlite3")
        .arg(file)
        .arg(statement)
        .output()
        .expect("the sqlite3 shell is installed");
    assert!(
        out.status.success(),
        "sqlite3 {statement}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

per_backend! {
    async fn emptying_a_related_table_flags_every_parent() {
        on_both("truncate", |db, _| async move {
            setup(&db, 4).await;
            match db.backend() {
                // SQLite has no TRUNCATE: an unqualified DELETE is its form,
                // and with triggers on the table it deletes row by row.
                Backend::Sqlite => exec(&db, "DELETE FROM birds").await,
                _ => exec(&db, "TRUNCATE birds").await,
            }
            assert_eq!(flagged(&db).await, vec![1, 2, 3, 4]);
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn replacing_a_related_row_flags_its_old_parent() {
        on_both("replace", |db, url| async move {
            setup(&db, 6).await;
            sql(&db, "UPDATE birds SET ring = 'r' || CAST(id AS TEXT)", &[]).await;
            drain(&db).await;
            // Birds 1 and 2 are on post 1, 3 and 4 on post 2, and so on.
            let writes: Vec<(&str, Vec<i64>)> = match db.backend() {
                Backend::Sqlite => vec![
                    // Bird 1 (post 1) replaced by a bird on post 2.
                    ("INSERT OR REPLACE INTO birds (id, post_id, weight) VALUES (1, 2, 40)", vec![1, 2]),
                    ("REPLACE INTO birds (id, post_id, weight) VALUES (3, 3, 41)", vec![2, 3]),
                    // Bird 7 (post 4) renumbered over bird 9 (post 5): bird 9
                    // goes; post 4 keeps its bird under another id.
                    ("UPDATE OR REPLACE birds SET id = 9 WHERE id = 7", vec![5]),
                    // A conflict on the unique ring, not the key: bird 11 (post 6) goes.
                    ("INSERT OR REPLACE INTO birds (post_id, weight, ring) VALUES (1, 5, 'r11')", vec![1, 6]),
                ],
                _ => vec![
                    // PostgreSQL's replace is an upsert: an update, caught as a move.
                    ("INSERT INTO birds (id, post_id, weight) VALUES (1, 2, 40) \
                      ON CONFLICT (id) DO UPDATE SET post_id = EXCLUDED.post_id, weight = EXCLUDED.weight", vec![1, 2]),
                    ("INSERT INTO birds (post_id, weight, ring) VALUES (1, 5, 'r11') \
                      ON CONFLICT (ring) DO UPDATE SET post_id = EXCLUDED.post_id, weight = EXCLUDED.weight", vec![1, 6]),
                ],
            };
            for (write, parents) in writes {
                sql(&db, write, &[]).await;
                assert_eq!(flagged(&db).await, parents, "{write}");
                drain(&db).await;
                assert_consistent(&db).await;
            }
            if db.backend() == Backend::Sqlite {
                // From another program: the sqlite3 shell, with its own settings.
                sqlite3_shell(&url, "INSERT OR REPLACE INTO birds (id, post_id, weight) VALUES (5, 6, 50)");
                assert_eq!(flagged(&db).await, vec![3, 6]);
                drain(&db).await;
                assert_consistent(&db).await;
            }
        })
        .await;
    }
}

per_backend! {
    async fn a_copied_row_is_flagged_not_trusted() {
        on_both("copy", |db, _| async move {
            setup(&db, 2).await;
            // Every column copied, cached values and bookkeeping included.
            let cols = "weight, title, note, cached_total, total_recalculation_needed, \
                total_recalculation_version, total_stale_since, total_next_attempt_at, total_attempts, \
                total_last_error, cached_label, label_recalculation_needed, label_recalculation_version, \
                label_stale_since, label_next_attempt_at, label_attempts, label_last_error";
            exec_text(&db, format!("INSERT INTO posts (id, {cols}) SELECT 10, {cols} FROM posts WHERE id = 1")).await;
            let copy = posts::posts(&db).await.into_iter().find(|p| p.id == 10).unwrap();
            assert!(copy.total.recalculation_needed() && copy.label.recalculation_needed());
            assert_eq!(flagged(&db).await, vec![10]);
            drain(&db).await;
            // The copy has no birds: its total is its own weight.
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn a_write_after_a_lazy_flag_brings_the_worker() {
        on_both("lazy", |db, _| async move {
            setup(&db, 2).await;
            let post = posts::posts(&db).await.remove(0);
            post.flag_total_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            assert_eq!(
                drain(&db).await.recalculated,
                0,
                "a lazy flag waits for a read"
            );
            // Flagged lazily again: still parked.
            post.flag_total_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            assert_eq!(
                drain(&db).await.recalculated,
                0,
                "a second lazy flag still waits"
            );
            // A database write to a dependency makes it due, as an eager flag would.
            sql(
                &db,
                "UPDATE birds SET weight = weight + 10 WHERE post_id = $1",
                &[1],
            )
            .await;
            let s = drain(&db).await;
            assert_eq!(s.recalculated, 2, "total, then its chain label: {s:?}");
            assert_consistent(&db).await;
            // The same through an own column.
            post.flag_total_as_stale_and_recalculate(&db, false)
                .await
                .unwrap();
            sql(
                &db,
                "UPDATE posts SET weight = weight + 1 WHERE id = $1",
                &[1],
            )
            .await;
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn disabled_triggers_are_reported_and_replica_sessions_still_flag() {
        on_both("disabled", |db, _| async move {
            setup(&db, 2).await;
            if db.backend() == Backend::Sqlite {
                // SQLite cannot disable a trigger, only drop it (checked
                // elsewhere); every trigger fires for every connection.
                assert!(registry().check(&db).await.unwrap().is_empty());
                return;
            }
            exec(&db, "ALTER TABLE birds DISABLE TRIGGER USER").await;
            let problems = registry().check(&db).await.unwrap();
            assert!(!problems.is_empty());
            for p in &problems {
                assert_eq!(
                    (p.state, p.kind, p.table.as_str()),
                    (State::Disabled, ObjectKind::Trigger, "birds"),
                    "{p}"
                );
            }
            let done = registry().migrate(&db).await.unwrap();
            assert_eq!(done.changes.len(), problems.len());
            assert!(registry().check(&db).await.unwrap().is_empty());
            drain(&db).await;
            // A session in replica mode (pg_restore --disable-triggers, logical
            // replication) still fires the triggers: they are enabled ALWAYS.
            let Db::Postgres(pool) = &db else {
                unreachable!()
            };
            let mut c = pool.acquire().await.unwrap();
            sqlx::query("SET session_replication_role = replica")
                .execute(&mut *c)
                .await
                .unwrap();
            sqlx::query("UPDATE birds SET weight = weight + 1 WHERE post_id = 2")
                .execute(&mut *c)
                .await
                .unwrap();
            sqlx::query("RESET session_replication_role")
                .execute(&mut *c)
                .await
                .unwrap();
            drop(c);
            assert_eq!(flagged(&db).await, vec![2]);
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn a_stale_full_row_save_never_marks_an_old_value_fresh() {
        on_both("stalesave", |db, _| async move {
            setup(&db, 2).await;
            // The app loads row 1 with every column, as an ORM does.
            let cols = "weight, title, note, cached_total, total_recalculation_needed, \
                total_recalculation_version, cached_label, label_recalculation_needed, label_recalculation_version";
            type Row = (i64, String, String, i64, bool, i64, String, bool, i64);
            let q = format!("SELECT {cols} FROM posts WHERE id = 1");
            let old: Row = on_pool!(&db, |p| sqlx::query_as(sqlx::AssertSqlSafe(q.clone())).fetch_one(p).await.unwrap());
            // Meanwhile a bird lands and the worker stores the new total.
            sql(&db, "INSERT INTO birds (post_id, weight) VALUES (1, 100)", &[]).await;
            drain(&db).await;
            assert_consistent(&db).await;
            // The app saves the whole row as it loaded it, no dependency changed.
            let save = "UPDATE posts SET weight = $1, title = $2, note = $3, cached_total = $4, \
                total_recalculation_needed = $5, total_recalculation_version = $6, cached_label = $7, \
                label_recalculation_needed = $8, label_recalculation_version = $9 WHERE id = 1";
            on_pool!(&db, |p| sqlx::query(save)
                .bind(old.0).bind(&old.1).bind(&old.2).bind(old.3).bind(old.4)
                .bind(old.5).bind(&old.6).bind(old.7).bind(old.8)
                .execute(p).await.map(drop).unwrap());
            // The old values are in the row, but flagged, never fresh.
            assert_eq!(flagged(&db).await, vec![1]);
            drain(&db).await;
            assert_consistent(&db).await;
            // An ORM that knows only the cached column: the same.
            on_pool!(&db, |p| sqlx::query("UPDATE posts SET weight = $1, title = $2, cached_total = $3 WHERE id = 1")
                .bind(old.0).bind(&old.1).bind(old.3)
                .execute(p).await.map(drop).unwrap());
            assert_eq!(flagged(&db).await, vec![1]);
            drain(&db).await;
            assert_consistent(&db).await;
            // A stale save of a cleared flag over a newer invalidation.
            sql(&db, "UPDATE birds SET weight = weight + 1 WHERE post_id = $1", &[2]).await;
            sql(&db, "UPDATE posts SET total_recalculation_needed = FALSE WHERE id = $1", &[2]).await;
            assert_eq!(flagged(&db).await, vec![2]);
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn check_names_hand_changed_triggers_and_migrate_repairs_them() {
        on_both("handchanged", |db, _| async move {
            setup(&db, 3).await;
            let upd = common::path_trigger(&registry(), db.backend(), "upd", "posts_total_birds_post_id", "birds");
            // The library's trigger, re-created by hand on the foreign key only:
            // bird weight changes would be lost.
            match &db {
                Db::Sqlite(p) => {
                    let def: String = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = $1")
                        .bind(&upd).fetch_one(p).await.unwrap();
                    let changed = def.replacen("UPDATE OF \"post_id\", \"weight\"", "UPDATE OF \"post_id\"", 1);
                    assert_ne!(def, changed);
                    let mut c = p.acquire().await.unwrap();
                    sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER {upd}"))).execute(&mut *c).await.unwrap();
                    sqlx::query(sqlx::AssertSqlSafe(changed)).execute(&mut *c).await.unwrap();
                }
                _ => exec_text(&db, format!(
                    "CREATE OR REPLACE TRIGGER {upd} AFTER UPDATE OF post_id ON birds FOR EACH ROW EXECUTE FUNCTION {upd}()"
                )).await,
            }
            sql(&db, "UPDATE birds SET weight = weight + 5 WHERE post_id = $1", &[1]).await;
            assert!(flagged(&db).await.is_empty(), "the changed trigger misses the write");
            let problems = registry().check(&db).await.unwrap();
            assert_eq!(problems.len(), 1, "{problems:?}");
            assert_eq!((problems[0].state, problems[0].name.as_str()), (State::Outdated, upd.as_str()));
            let text = problems[0].to_string();
            assert!(text.contains("birds") && text.contains(&upd), "{text}");
            // The repair flags what the trigger guards: the missed write is caught up.
            let done = registry().migrate(&db).await.unwrap();
            assert_eq!(done.flagged.len(), 1, "{done:?}");
            assert_eq!((done.flagged[0].table.as_str(), done.flagged[0].field.as_str(), done.flagged[0].rows), ("posts", "total", 3));
            assert!(registry().check(&db).await.unwrap().is_empty());
            drain(&db).await;
            assert_consistent(&db).await;
            sql(&db, "UPDATE birds SET weight = weight + 5 WHERE post_id = $1", &[2]).await;
            assert_eq!(flagged(&db).await, vec![2]);
        })
        .await;
    }
}

per_backend! {
    async fn a_dropped_trigger_then_writes_then_migrate_ends_correct() {
        on_both("dropwrite", |db, _| async move {
            setup(&db, 3).await;
            let ins = common::path_trigger(
                &registry(),
                db.backend(),
                "ins",
                "posts_total_birds_post_id",
                "birds",
            );
            exec_text(
                &db,
                match db.backend() {
                    Backend::Sqlite => format!("DROP TRIGGER {ins}"),
                    _ => format!("DROP TRIGGER {ins} ON birds"),
                },
            )
            .await;
            sql(
                &db,
                "INSERT INTO birds (post_id, weight) VALUES ($1, 9)",
                &[3],
            )
            .await;
            assert!(flagged(&db).await.is_empty());
            let done = registry().migrate(&db).await.unwrap();
            assert_eq!(done.changes.len(), 1);
            assert!(
                done.flagged
                    .iter()
                    .any(|f| f.field == "total" && f.rows == 3),
                "{done:?}"
            );
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn a_cached_column_of_the_wrong_type_is_named_and_repaired() {
        on_both("retype", |db, _| async move {
            match db.backend() {
                // SQLite cannot alter a column's type (nor drop one a trigger
                // reads): the damage is a column of that name made beforehand.
                Backend::Sqlite => {
                    exec(&db, "CREATE TABLE posts (id INTEGER PRIMARY KEY, weight BIGINT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL DEFAULT '', cached_label INTEGER)").await;
                    exec(&db, "CREATE TABLE birds (id INTEGER PRIMARY KEY, post_id BIGINT NOT NULL REFERENCES posts(id), weight BIGINT NOT NULL)").await;
                    exec(&db, "INSERT INTO posts (id, weight, title) VALUES (1, 1, 'a'), (2, 2, 'b')").await;
                }
                _ => {
                    setup(&db, 2).await;
                    exec(&db, "ALTER TABLE posts ALTER COLUMN cached_label TYPE integer USING NULL").await;
                }
            }
            let problems = registry().check(&db).await.unwrap();
            let wrong: Vec<_> = problems.iter().filter(|p| p.state == State::WrongType).collect();
            assert_eq!(wrong.len(), 1, "{problems:?}");
            let p = wrong[0];
            assert_eq!((p.kind, p.table.as_str(), p.name.as_str()), (ObjectKind::Column, "posts", "cached_label"));
            let text = p.to_string().to_lowercase();
            assert!(text.contains("has type integer") && text.contains("declared text"), "{p}");
            let done = registry().migrate(&db).await.unwrap();
            assert!(done.flagged.iter().any(|f| f.field == "label" && f.rows == 2), "{done:?}");
            assert!(registry().check(&db).await.unwrap().is_empty());
            drain(&db).await;
            assert_consistent(&db).await;
        })
        .await;
    }
}

per_backend! {
    async fn migrate_never_drops_what_it_did_not_install() {
        on_both("foreign", |db, _| async move {
            setup(&db, 1).await;
            exec(&db, "CREATE TABLE audit (msg TEXT)").await;
            if db.backend() == Backend::Sqlite {
                exec(&db, "CREATE TRIGGER cf_audit AFTER UPDATE ON posts BEGIN INSERT INTO audit VALUES ('post'); END").await;
            } else {
                exec(&db, "CREATE FUNCTION cf_audit() RETURNS trigger LANGUAGE plpgsql AS $$BEGIN INSERT INTO audit VALUES ('post'); RETURN NULL; END$$").await;
                exec(&db, "CREATE TRIGGER cf_audit AFTER UPDATE ON posts FOR EACH ROW EXECUTE FUNCTION cf_audit()").await;
            }
            exec(&db, "CREATE INDEX cf_posts_title ON posts (title)").await;
            assert!(registry().check(&db).await.unwrap().is_empty());
            registry().migrate(&db).await.unwrap();
            let kept = match db.backend() {
                Backend::Sqlite => "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('cf_audit', 'cf_posts_title')",
                _ => "SELECT (SELECT COUNT(*) FROM pg_trigger WHERE tgname = 'cf_audit') \
                      + (SELECT COUNT(*) FROM pg_class WHERE relname = 'cf_posts_title')",
            };
            assert_eq!(scalar(&db, kept).await, 2);
            sql(&db, "UPDATE posts SET note = 'x' WHERE id = $1", &[1]).await;
            assert_eq!(scalar(&db, "SELECT COUNT(*) FROM audit").await, 1);
        })
        .await;
    }
}

/// Tables `a` (field `b_c`) and `a_b` (field `c`): the old naming gave
/// both the same trigger names.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "a")]
struct A {
    id: i64,
    x: i64,
    #[cached(depends_on("x"))]
    b_c: Cached<i64>,
}

impl A {
    async fn calculate_b_c(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.x * 10)
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "a_b")]
struct AB {
    id: i64,
    x: i64,
    #[cached(depends_on("x"))]
    c: Cached<i64>,
}

impl AB {
    async fn calculate_c(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.x * 100)
    }
}

per_backend! {
    async fn generated_names_never_collide() {
        on_both("names", |db, _| async move {
            for t in ["a", "a_b"] {
                exec_text(&db, format!("CREATE TABLE {t} (id {}, x BIGINT NOT NULL)", pk(&db))).await;
                exec_text(&db, format!("INSERT INTO {t} (id, x) VALUES (1, 1), (2, 2)")).await;
            }
            let registry = Registry::new().register::<A>().unwrap().register::<AB>().unwrap();
            registry.migrate(&db).await.unwrap();
            assert!(registry.check(&db).await.unwrap().is_empty());
            let plan = cached_fields::schema::plan(db.backend(), &registry.specs());
            let mut names: Vec<&str> = plan.iter().filter(|o| o.kind != ObjectKind::Column).map(|o| o.name.as_str()).collect();
            let planned = names.len();
            names.sort_unstable();
            names.dedup();
            assert_eq!(names.len(), planned, "every generated name is distinct");
            for n in &names {
                assert!(n.len() <= 63, "{n}");
            }
            Worker::new(db.clone(), registry.clone()).drain().await.unwrap();
            exec(&db, "UPDATE a_b SET x = 5 WHERE id = 1").await;
            exec(&db, "UPDATE a SET x = 7 WHERE id = 2").await;
            let s = Worker::new(db.clone(), registry.clone()).drain().await.unwrap();
            assert_eq!(s.recalculated, 2, "one row of each table, nothing else");
            let q = "SELECT (SELECT cached_b_c FROM a WHERE id = 2) + (SELECT cached_c FROM a_b WHERE id = 1)";
            assert_eq!(scalar(&db, q).await, 70 + 500);
        })
        .await;
    }
}

per_backend! {
    async fn concurrent_migrations_all_succeed() {
        on_both("concurrent", |db, url| async move {
            for round in 0..3 {
                if round > 0 {
                    exec(&db, "DROP TABLE birds").await;
                    exec(&db, "DROP TABLE posts").await;
                }
                if db.backend() == Backend::Sqlite {
                    exec(&db, "CREATE TABLE posts (id INTEGER PRIMARY KEY, weight BIGINT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')").await;
                    exec(&db, "CREATE TABLE birds (id INTEGER PRIMARY KEY, post_id BIGINT NOT NULL REFERENCES posts(id), weight BIGINT NOT NULL)").await;
                } else {
                    exec(&db, "CREATE TABLE posts (id BIGINT PRIMARY KEY, weight BIGINT NOT NULL, title TEXT NOT NULL, note TEXT NOT NULL DEFAULT '')").await;
                    exec(&db, "CREATE TABLE birds (id BIGINT PRIMARY KEY, post_id BIGINT NOT NULL REFERENCES posts(id), weight BIGINT NOT NULL)").await;
                }
                // Separate pools, as separate processes would have.
                let mut tasks = Vec::new();
                for _ in 0..4 {
                    let url = url.clone();
                    tasks.push(tokio::spawn(async move {
                        let db = Db::connect(&url).await.unwrap();
                        let r = registry().migrate(&db).await.map(|m| m.changes.len());
                        db.close().await;
                        r
                    }));
                }
                let mut applied = Vec::new();
                for t in tasks {
                    applied.push(t.await.unwrap().unwrap_or_else(|e| panic!("round {round}: {e}")));
                }
                applied.sort_unstable();
                assert_eq!(applied[..3], [0, 0, 0], "one migration did the work: {applied:?}");
                assert!(registry().check(&db).await.unwrap().is_empty());
            }
        })
        .await;
    }
}

/// Declared before the field it chains on, and reading another model's
/// cached column.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "authors")]
struct Author {
    id: i64,
    name: String,
    #[cached(depends_on("name", "score"))]
    label: Cached<String>,
    #[cached(depends_on("topics(author_id).cached_likes"))]
    score: Cached<i64>,
}

impl Author {
    async fn calculate_label(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(format!("{} ({})", self.name, self.score(ctx).await?))
    }

    async fn calculate_score(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let q = "SELECT CAST(COALESCE(SUM(cached_likes), 0) AS BIGINT) FROM topics WHERE author_id = $1";
        Ok(match ctx.conn().await? {
            Conn::Sqlite(c) => sqlx::query_scalar(q).bind(self.id).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(q).bind(self.id).fetch_one(c).await?,
            _ => unreachable!(),
        })
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "topics")]
struct Topic {
    id: i64,
    #[allow(dead_code)] // a column of the table; the author reads it in SQL
    author_id: i64,
    n: i64,
    #[cached(depends_on("n"))]
    likes: Cached<i64>,
}

impl Topic {
    async fn calculate_likes(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(self.n * 2)
    }
}

per_backend! {
    async fn any_declaration_and_registration_order_migrates_at_once() {
        on_both("order", |db, _| async move {
            exec_text(&db, format!("CREATE TABLE authors (id {}, name TEXT NOT NULL)", pk(&db))).await;
            exec_text(&db, format!(
                "CREATE TABLE topics (id {}, author_id BIGINT NOT NULL REFERENCES authors(id), n BIGINT NOT NULL)",
                pk(&db)
            ))
            .await;
            exec(&db, "INSERT INTO authors (id, name) VALUES (1, 'ann'), (2, 'bob')").await;
            exec(&db, "INSERT INTO topics (id, author_id, n) VALUES (1, 1, 1), (2, 1, 2), (3, 2, 5)").await;
            // The author's model first: its trigger reads a column the topic's adds.
            let registry = Registry::new().register::<Author>().unwrap().register::<Topic>().unwrap();
            registry.migrate(&db).await.unwrap();
            assert!(registry.check(&db).await.unwrap().is_empty());
            let worker = Worker::new(db.clone(), registry.clone());
            worker.drain().await.unwrap();
            exec(&db, "UPDATE topics SET n = 10 WHERE id = 3").await;
            worker.drain().await.unwrap();
            let q = "SELECT cached_score * 1000 + LENGTH(cached_label) FROM authors WHERE id = 2";
            assert_eq!(scalar(&db, q).await, 20 * 1000 + "bob (20)".len() as i64);
            let q = "SELECT cached_score FROM authors WHERE id = 1";
            assert_eq!(scalar(&db, q).await, 6);
        })
        .await;
    }
}

/// A count of children: the foreign key is itself the dependency.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "tallies")]
struct Tally {
    id: i64,
    #[cached(depends_on("marks(tally_id).tally_id"))]
    count: Cached<i64>,
}

impl Tally {
    async fn calculate_count(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let q = "SELECT COUNT(*) FROM marks WHERE tally_id = $1";
        Ok(match ctx.conn().await? {
            Conn::Sqlite(c) => sqlx::query_scalar(q).bind(self.id).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar(q).bind(self.id).fetch_one(c).await?,
            _ => unreachable!(),
        })
    }
}

per_backend! {
    async fn depending_on_the_foreign_key_itself_is_accepted() {
        on_both("fkdep", |db, _| async move {
            exec_text(&db, format!("CREATE TABLE tallies (id {})", pk(&db))).await;
            exec_text(&db, format!(
                "CREATE TABLE marks (id {}, tally_id BIGINT NOT NULL REFERENCES tallies(id))",
                pk(&db)
            ))
            .await;
            exec(&db, "INSERT INTO tallies (id) VALUES (1), (2)").await;
            let registry = Registry::new().register::<Tally>().unwrap();
            registry.migrate(&db).await.unwrap();
            let worker = Worker::new(db.clone(), registry.clone());
            exec(&db, "INSERT INTO marks (id, tally_id) VALUES (1, 1), (2, 1), (3, 2)").await;
            worker.drain().await.unwrap();
            exec(&db, "UPDATE marks SET tally_id = 2 WHERE id = 1").await;
            exec(&db, "DELETE FROM marks WHERE id = 3").await;
            worker.drain().await.unwrap();
            let q = "SELECT cached_count * 10 + (SELECT cached_count FROM tallies WHERE id = 2) FROM tallies WHERE id = 1";
            assert_eq!(scalar(&db, q).await, 10 + 1);
        })
        .await;
    }
}

per_backend! {
    async fn a_hand_retyped_cached_column_breaks_no_session() {
        on_both("retyped_session", |db, url| async move {
            setup(&db, 2).await;
            let Db::Postgres(pool) = &db else {
                // SQLite cannot retype a column (see the wrong-type test).
                return;
            };
            // A session that has run the guard's comparison before the change.
            let mut c = pool.acquire().await.unwrap();
            sqlx::query("UPDATE posts SET note = 'before' WHERE id = 1")
                .execute(&mut *c)
                .await
                .unwrap();
            exec(
                &db,
                "ALTER TABLE posts ALTER COLUMN cached_label TYPE integer USING NULL",
            )
            .await;
            // Its writes still work, and a stale save is still caught.
            sqlx::query("UPDATE posts SET note = 'after' WHERE id = 1")
                .execute(&mut *c)
                .await
                .unwrap();
            // (The test reads through new connections: sqlx's own statement
            // cache in the old ones holds `SELECT *` plans of the old type.)
            // The retype rewrote the table: its fields are flagged (issue
            // #24's event trigger); the drain stores the totals (the labels
            // fail on their column's new type until `migrate`).
            let reader = Db::connect(&url).await.unwrap();
            assert_eq!(flagged(&reader).await, vec![1, 2]);
            let totals_flagged = "SELECT CAST(COUNT(*) AS BIGINT) FROM posts WHERE total_recalculation_needed";
            assert_eq!(scalar(&reader, totals_flagged).await, 2);
            drain(&db).await;
            assert_eq!(scalar(&reader, totals_flagged).await, 0);
            sqlx::query("UPDATE posts SET cached_total = 12345 WHERE id = 2")
                .execute(&mut *c)
                .await
                .unwrap();
            drop(c);
            assert_eq!(scalar(&reader, totals_flagged).await, 1, "the stale save is caught");
            reader.close().await;
            // The labels failed on the wrong type and back off; the repair
            // makes them due at once, and the drain stores them.
            registry().migrate(&db).await.unwrap();
            let backing_off = "SELECT CAST(COUNT(*) AS BIGINT) FROM posts WHERE label_next_attempt_at IS NOT NULL";
            assert_eq!(scalar(&db, backing_off).await, 0);
            // Through new connections, as the reads: the old ones' statement
            // caches hold plans of the type before the repair.
            let fresh = Db::connect(&url).await.unwrap();
            drain(&fresh).await;
            fresh.close().await;
            let reader = Db::connect(&url).await.unwrap();
            assert_consistent(&reader).await;
            reader.close().await;
        })
        .await;
    }
}
