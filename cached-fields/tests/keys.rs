//! Issue #10: primary keys of type `i32`, `String` and `uuid::Uuid` work
//! like `i64` ones (migrate, triggers, the worker, reads, flags, errors,
//! paging through keys), and a calculate function may take one backend's
//! own connection. Each test runs on SQLite and on PostgreSQL.

mod common;

use common::per_backend;

use cached_fields::{
    Backend, BoxError, Cached, CachedModel, Ctx, Db, Error, Key, Registry, SqlType, Worker,
};
use common::{exec_text, on_both};
use uuid::Uuid;

/// A text key, and a dependency on child rows that point at it.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "docs")]
struct Doc {
    #[cached_model(primary_key)]
    slug: String,
    body: String,
    #[cached(depends_on("body", "notes(doc_slug).body"))]
    words: Cached<i64>,
}

impl Doc {
    async fn calculate_words(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let mut words = self.body.split_whitespace().count() as i64;
        let notes: Vec<String> = if ctx.backend() == Backend::Sqlite {
            let c =
                <&mut sqlx::SqliteConnection as cached_fields::db::FromCtx>::from_ctx(ctx).await?;
            sqlx::query_scalar("SELECT body FROM notes WHERE doc_slug = $1")
                .bind(&self.slug)
                .fetch_all(c)
                .await?
        } else {
            let c = <&mut sqlx::PgConnection as cached_fields::db::FromCtx>::from_ctx(ctx).await?;
            sqlx::query_scalar("SELECT body FROM notes WHERE doc_slug = $1")
                .bind(&self.slug)
                .fetch_all(c)
                .await?
        };
        words += notes
            .iter()
            .map(|n| n.split_whitespace().count() as i64)
            .sum::<i64>();
        Ok(words)
    }
}

/// A UUID key.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "tags")]
struct Tag {
    id: Uuid,
    name: String,
    #[cached(depends_on("name"))]
    shout: Cached<String>,
}

impl Tag {
    async fn calculate_shout(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(self.name.to_uppercase())
    }
}

/// An `i32` key.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "smalls")]
struct Small {
    id: i32,
    n: i32,
    #[cached(depends_on("n"))]
    twice: Cached<i64>,
}

impl Small {
    async fn calculate_twice(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(i64::from(self.n) * 2)
    }
}

fn registry() -> Registry {
    Registry::new()
        .register::<Doc>()
        .unwrap()
        .register::<Tag>()
        .unwrap()
        .register::<Small>()
        .unwrap()
}

async fn setup(db: &Db) {
    let uuid = match db.backend() {
        Backend::Sqlite => "BLOB",
        _ => "UUID",
    };
    exec_text(
        db,
        format!(
            "CREATE TABLE docs (slug TEXT PRIMARY KEY, body TEXT NOT NULL);
             CREATE TABLE notes (id INTEGER PRIMARY KEY, doc_slug TEXT NOT NULL REFERENCES docs(slug), body TEXT NOT NULL);
             CREATE TABLE tags (id {uuid} PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE smalls (id INTEGER PRIMARY KEY, n INTEGER NOT NULL);"
        ),
    )
    .await;
    registry().migrate(db).await.unwrap();
}

async fn docs(db: &Db) -> Vec<Doc> {
    on_pool!(db, |p| sqlx::query_as("SELECT * FROM docs ORDER BY slug")
        .fetch_all(p)
        .await
        .unwrap())
}

async fn tags(db: &Db) -> Vec<Tag> {
    on_pool!(db, |p| sqlx::query_as("SELECT * FROM tags ORDER BY name")
        .fetch_all(p)
        .await
        .unwrap())
}

async fn smalls(db: &Db) -> Vec<Small> {
    on_pool!(db, |p| sqlx::query_as("SELECT * FROM smalls ORDER BY id")
        .fetch_all(p)
        .await
        .unwrap())
}

async fn drain(db: &Db) -> cached_fields::Stats {
    Worker::new(db.clone(), registry()).drain().await.unwrap()
}

per_backend! {
    async fn text_keys_are_claimed_flagged_read_and_named_in_errors() {
        on_both("textkeys", |db, _| async move {
            setup(&db).await;
            exec_text(
                &db,
                "INSERT INTO docs (slug, body) VALUES ('a-b', 'one two'), ('it''s', 'three'), ('x y', '');
                 INSERT INTO notes (id, doc_slug, body) VALUES (1, 'a-b', 'four five six');"
                    .to_owned(),
            )
            .await;
            let s = drain(&db).await;
            assert_eq!((s.recalculated, s.failed), (3, 0), "{s:?}");
            let words: Vec<_> = docs(&db).await.iter().map(|d| (d.slug.clone(), d.words.stored())).collect();
            assert_eq!(
                words,
                [("a-b".into(), Some(5)), ("it's".into(), Some(1)), ("x y".into(), Some(0))]
            );
            // A write to a child row flags exactly its document.
            exec_text(&db, "UPDATE notes SET body = 'seven' WHERE doc_slug = 'a-b'".to_owned()).await;
            let flagged: Vec<String> = docs(&db)
                .await
                .into_iter()
                .filter(|d| d.words.recalculation_needed())
                .map(|d| d.slug)
                .collect();
            assert_eq!(flagged, ["a-b"]);
            assert_eq!(drain(&db).await.recalculated, 1);
            // The derived methods with a text key.
            let doc = docs(&db).await.remove(1);
            doc.flag_words_as_stale(&db).await.unwrap();
            assert_eq!(doc.words(&db).await.unwrap(), 1);
            assert_eq!(doc.recalculate_words(&db).await.unwrap(), 1);
            // An error names the text key.
            let err = cached_fields::runtime::recalculate::<Doc>("no such doc", "words", &db)
                .await
                .unwrap_err();
            assert!(matches!(&err, Error::RowNotFound { key: Key::Text(k), .. } if k == "no such doc"));
            assert!(err.to_string().contains("no such doc"), "{err}");
            // Paging through text keys, two at a time.
            let reg = registry();
            let mut after: Option<Key> = None;
            let mut seen = Vec::new();
            loop {
                let page = cached_fields::worker::keys(&db, &reg, "docs", "words", true, after.as_ref(), 2)
                    .await
                    .unwrap();
                let Some(last) = page.last().cloned() else { break };
                seen.extend(page);
                after = Some(last);
            }
            assert_eq!(seen, [Key::from("a-b"), Key::from("it's"), Key::from("x y")]);
            assert_eq!(reg.key_type("docs").unwrap(), SqlType::Text);
        })
        .await;
    }
}

per_backend! {
    async fn uuid_and_i32_keys_work_like_integer_keys() {
        on_both("uuidkeys", |db, _| async move {
            setup(&db).await;
            let ids = [Uuid::new_v4(), Uuid::new_v4()];
            for (id, name) in ids.iter().zip(["ann", "bo"]) {
                on_pool!(&db, |p| sqlx::query("INSERT INTO tags (id, name) VALUES ($1, $2)")
                    .bind(id)
                    .bind(name)
                    .execute(p)
                    .await
                    .map(drop)
                    .unwrap());
            }
            exec_text(&db, "INSERT INTO smalls (id, n) VALUES (1, 10), (2, 20), (2147483647, 5)".to_owned()).await;
            let s = drain(&db).await;
            assert_eq!((s.recalculated, s.failed), (5, 0), "{s:?}");
            let shouts: Vec<_> = tags(&db).await.iter().map(|t| t.shout.stored()).collect();
            assert_eq!(shouts, [Some("ANN".to_owned()), Some("BO".to_owned())]);
            let twice: Vec<_> = smalls(&db).await.iter().map(|s| (s.id, s.twice.stored())).collect();
            assert_eq!(twice, [(1, Some(20)), (2, Some(40)), (2_147_483_647, Some(10))]);
            // A raw write to one row flags it alone, whatever the key type.
            on_pool!(&db, |p| sqlx::query("UPDATE tags SET name = 'cy' WHERE id = $1")
                .bind(ids[1])
                .execute(p)
                .await
                .map(drop)
                .unwrap());
            exec_text(&db, "UPDATE smalls SET n = 6 WHERE id = 2147483647".to_owned()).await;
            assert_eq!(drain(&db).await.recalculated, 2);
            let tag = tags(&db).await.into_iter().find(|t| t.id == ids[1]).unwrap();
            assert_eq!(tag.shout.stored().as_deref(), Some("CY"));
            assert_eq!(tag.primary_key(), Key::Uuid(ids[1]));
            tag.flag_shout_as_stale(&db).await.unwrap();
            assert_eq!(tag.shout(&db).await.unwrap(), "CY");
            let small = smalls(&db).await.pop().unwrap();
            assert_eq!(small.twice.stored(), Some(12));
            small.flag_twice_as_stale(&db).await.unwrap();
            assert_eq!(small.recalculate_twice(&db).await.unwrap(), 12);
            // Keys read back as the model's key type, and parse from text.
            let reg = registry();
            let keys = cached_fields::worker::keys(&db, &reg, "tags", "shout", true, None, 10)
                .await
                .unwrap();
            let mut want: Vec<Key> = ids.iter().map(|u| Key::Uuid(*u)).collect();
            want.sort();
            let mut got = keys.clone();
            got.sort();
            assert_eq!(got, want);
            let parsed = Key::parse(&ids[0].to_string(), reg.key_type("tags").unwrap()).unwrap();
            assert_eq!(parsed, Key::Uuid(ids[0]));
            assert!(Key::parse("not-a-uuid", SqlType::Uuid).unwrap_err().to_string().contains("not-a-uuid"));
        })
        .await;
    }
}

/// A calculate function written for PostgreSQL's own connection.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pgonly")]
struct PgOnly {
    id: i64,
    #[cached]
    now: Cached<String>,
}

impl PgOnly {
    async fn calculate_now(&self, conn: &mut sqlx::PgConnection) -> Result<String, BoxError> {
        Ok(sqlx::query_scalar("SELECT current_database()::text")
            .fetch_one(conn)
            .await?)
    }
}

per_backend! {
    async fn a_calculate_function_takes_its_backends_own_connection() {
        on_both("ownconn", |db, _| async move {
            exec_text(&db, "CREATE TABLE pgonly (id BIGINT PRIMARY KEY)".to_owned()).await;
            exec_text(&db, "INSERT INTO pgonly (id) VALUES (1)".to_owned()).await;
            let registry = Registry::new().register::<PgOnly>().unwrap();
            registry.migrate(&db).await.unwrap();
            let s = Worker::new(db.clone(), registry.clone()).drain().await.unwrap();
            if db.backend() == Backend::Postgres { assert_eq!((s.recalculated, s.failed), (1, 0), "{s:?}") } else {
                // On another backend the row fails, saying why.
                assert_eq!((s.recalculated, s.failed), (0, 1), "{s:?}");
                let status = registry.status(&db).await.unwrap();
                let (key, _, msg) = status[0].last_error.clone().unwrap();
                assert_eq!(key, Key::Int(1));
                assert!(
                    msg.contains("needs a PostgreSQL connection, but the database is SQLite"),
                    "{msg}"
                );
            }
        })
        .await;
    }
}

/// A hand-written model that reads PostgreSQL rows only: it implements
/// sqlx's `FromRow` for `PgRow` alone, in a build where SQLite is enabled
/// too (features are additive: no bound for the other backend's rows).
#[derive(Debug)]
struct Handmade {
    id: i64,
    tripled: Cached<i64>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Handmade {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> Result<Self, sqlx::Error> {
        use sqlx::Row;
        let model =
            <Handmade as CachedModel>::model().map_err(|e| sqlx::Error::Decode(Box::new(e)))?;
        Ok(Handmade {
            id: row.try_get("id")?,
            tripled: Cached::decode(row, model.fields()[0].columns())?,
        })
    }
}

fn calculate_tripled<'a>(
    m: &'a Handmade,
    _: &'a mut Ctx<'_>,
) -> futures::future::BoxFuture<'a, Result<i64, BoxError>> {
    Box::pin(async move { Ok(m.id * 3) })
}

impl CachedModel for Handmade {
    type Key = i64;
    fn model() -> cached_fields::Result<&'static cached_fields::model::Model<Self>> {
        static MODEL: std::sync::OnceLock<
            cached_fields::Result<cached_fields::model::Model<Handmade>>,
        > = std::sync::OnceLock::new();
        MODEL
            .get_or_init(|| {
                cached_fields::model::Model::builder("handmade")
                    .rows(cached_fields::model::Decoders::none().postgres())
                    .field(cached_fields::model::Field::builder(
                        "tripled",
                        |m: &Handmade| &m.tripled,
                        calculate_tripled,
                    ))
                    .build()
            })
            .as_ref()
            .map_err(Clone::clone)
    }
    fn primary_key(&self) -> Key {
        Key::Int(self.id)
    }
}

per_backend! {
    async fn a_hand_written_model_reads_only_the_rows_it_implements() {
        on_both("handmade", |db, _| async move {
            exec_text(&db, "CREATE TABLE handmade (id BIGINT PRIMARY KEY)".to_owned()).await;
            exec_text(&db, "INSERT INTO handmade (id) VALUES (1), (2)".to_owned()).await;
            let registry = Registry::new().register::<Handmade>().unwrap();
            registry.migrate(&db).await.unwrap();
            match db.backend() {
                Backend::Postgres => {
                    let s = Worker::new(db.clone(), registry).drain().await.unwrap();
                    assert_eq!((s.recalculated, s.failed), (2, 0), "{s:?}");
                    let m = cached_fields::runtime::recalculate::<Handmade>(2, "tripled", &db)
                        .await
                        .unwrap();
                    assert_eq!(m.tripled.stored(), Some(6));
                }
                _ => {
                    // No reader for this backend's rows: an error that says so.
                    let e = cached_fields::runtime::recalculate::<Handmade>(2, "tripled", &db)
                        .await
                        .unwrap_err()
                        .to_string();
                    assert!(e.contains("handmade") && e.contains("no reader for SQLite rows"), "{e}");
                }
            }
        })
        .await;
    }
}
