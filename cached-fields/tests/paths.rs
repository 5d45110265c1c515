//! Issue #11: dependencies along any path through foreign keys — forward,
//! reverse, several hops in any mix, many-to-many through a join table, a
//! cached field at the end of a path (a chain across tables), a tree
//! reading its parent's cached value, a one-to-one through the primary
//! key. Every write is plain SQL; after each, the test asserts exactly
//! which rows are flagged, how many recalculations the drain does, and
//! that every stored value then equals its definition, on both backends.

mod common;

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use cached_fields::{BoxError, Cached, CachedModel, Conn, Ctx, Db, Registry, Worker};
use common::{exec_text, on_both, per_backend, scalar};

/// A model on `$table` whose one field reads `$path`, for a path that
/// `migrate` refuses (its value is never calculated).
macro_rules! refused {
    ($name:ident, $table:literal, $path:literal) => {
        #[derive(Debug, Clone, CachedModel)]
        #[cached_model(table = $table)]
        struct $name {
            id: i64,
            #[cached(depends_on($path))]
            value: Cached<String>,
        }

        impl $name {
            async fn calculate_value(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
                Ok(String::new())
            }
        }
    };
}

/// One value computed by `$sql` for the row `$id` (`$1`), on either backend.
macro_rules! one {
    ($ctx:expr, $sql:expr, $id:expr) => {
        match $ctx.conn().await? {
            Conn::Sqlite(c) => sqlx::query_scalar($sql).bind($id).fetch_one(c).await?,
            Conn::Postgres(c) => sqlx::query_scalar($sql).bind($id).fetch_one(c).await?,
            _ => unreachable!("two backends in the tests"),
        }
    };
}

/// The flagged rows per field (`table.field` → count), zeros left out.
async fn flags(db: &Db, fields: &[&str]) -> BTreeMap<String, i64> {
    let mut out = BTreeMap::new();
    for tf in fields {
        let (t, f) = tf.split_once('.').unwrap();
        let n = scalar(
            db,
            &format!("SELECT CAST(COUNT(*) AS BIGINT) FROM {t} WHERE {f}_recalculation_needed"),
        )
        .await;
        if n > 0 {
            out.insert((*tf).to_owned(), n);
        }
    }
    out
}

fn expect(pairs: &[(&str, i64)]) -> BTreeMap<String, i64> {
    pairs.iter().map(|(k, v)| ((*k).to_owned(), *v)).collect()
}

/// Rows whose stored value differs from `expected` (both as text), or
/// which are still flagged: `sql` returns `(id, stored, expected, flagged)`.
async fn wrong(db: &Db, what: &str, sql: &str) -> Vec<String> {
    let q = sql.to_owned();
    let rows: Vec<(i64, Option<String>, Option<String>, bool)> =
        on_pool!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(q.clone()))
            .fetch_all(p)
            .await
            .unwrap_or_else(|e| panic!("{q}: {e}")));
    rows.into_iter()
        .filter(|(_, stored, expected, flagged)| *flagged || stored != expected)
        .map(|(id, s, e, f)| format!("{what} {id}: stored {s:?}, expected {e:?}, flagged {f}"))
        .collect()
}

/// The error with which `migrate` refuses `registry`'s declarations.
async fn refusal(db: &Db, registry: Registry) -> String {
    registry.migrate(db).await.unwrap_err().to_string()
}

async fn drain(db: &Db, registry: &Registry) -> u64 {
    Worker::new(db.clone(), registry.clone())
        .drain()
        .await
        .unwrap()
        .recalculated
}

// ---------------------------------------------------------------------------
// Streets, lampposts, pigeons: reverse→reverse, forward→forward,
// forward→reverse, and a chain across tables on a cached field.

/// A lamppost's weight and its pigeons'.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lampposts")]
struct Lamp {
    id: i64,
    weight: i64,
    #[cached(depends_on("weight", "pigeons(lamppost_id).weight"))]
    total_weight: Cached<i64>,
}

impl Lamp {
    async fn calculate_total_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        let pigeons: i64 = one!(
            ctx,
            "SELECT CAST(COALESCE(SUM(weight), 0) AS BIGINT) FROM pigeons WHERE lamppost_id = $1",
            self.id
        );
        Ok(self.weight + pigeons)
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "streets")]
struct Street {
    id: i64,
    /// Two reverse hops.
    #[cached(depends_on("lampposts(street_id).pigeons(lamppost_id).weight"))]
    pigeon_weight: Cached<i64>,
    /// A cached field of another table at the end of a reverse hop.
    #[cached(depends_on("lampposts(street_id).total_weight"))]
    heaviest: Cached<i64>,
}

const PIGEON_WEIGHT: &str = "SELECT CAST(COALESCE(SUM(p.weight), 0) AS BIGINT) FROM pigeons p \
     JOIN lampposts l ON l.id = p.lamppost_id WHERE l.street_id = $1";

impl Street {
    async fn calculate_pigeon_weight(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, PIGEON_WEIGHT, self.id))
    }

    async fn calculate_heaviest(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(
            ctx,
            "SELECT CAST(COALESCE(MAX(cached_total_weight), 0) AS BIGINT) FROM lampposts \
             WHERE street_id = $1",
            self.id
        ))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pigeons")]
struct Pigeon {
    id: i64,
    /// Two forward hops (and one).
    #[cached(depends_on(
        "lamppost_id->lampposts.first_name",
        "lamppost_id->lampposts.country",
        "lamppost_id->lampposts.street_id->streets.name"
    ))]
    perch: Cached<String>,
    /// Forward then reverse: every pigeon on the same lamppost.
    #[cached(depends_on("lamppost_id->lampposts.pigeons(lamppost_id).weight"))]
    flock: Cached<i64>,
}

const PERCH: &str = "SELECT l.first_name || ' of ' || l.country || ' on ' || COALESCE(s.name, 'no street') \
     FROM pigeons p JOIN lampposts l ON l.id = p.lamppost_id \
     LEFT JOIN streets s ON s.id = l.street_id WHERE p.id = $1";
const FLOCK: &str = "SELECT CAST(COALESCE(SUM(o.weight), 0) AS BIGINT) FROM pigeons p \
     JOIN pigeons o ON o.lamppost_id = p.lamppost_id WHERE p.id = $1";

impl Pigeon {
    async fn calculate_perch(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(one!(ctx, PERCH, self.id))
    }

    async fn calculate_flock(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, FLOCK, self.id))
    }
}

const STREET_FIELDS: &[&str] = &[
    "lampposts.total_weight",
    "streets.pigeon_weight",
    "streets.heaviest",
    "pigeons.perch",
    "pigeons.flock",
];

fn streets_registry() -> Registry {
    Registry::new()
        .register::<Street>()
        .unwrap()
        .register::<Pigeon>()
        .unwrap()
        .register::<Lamp>()
        .unwrap()
}

async fn streets_setup(db: &Db) -> Registry {
    exec_text(
        db,
        format!(
            "CREATE TABLE streets (id {pk}, name TEXT NOT NULL, city TEXT NOT NULL DEFAULT 'Riga');
             CREATE TABLE lampposts (id {pk}, street_id BIGINT NULL REFERENCES streets(id),
                 first_name TEXT NOT NULL, country TEXT NOT NULL, weight BIGINT NOT NULL,
                 painted TEXT NULL);
             CREATE INDEX lampposts_street ON lampposts (street_id);
             CREATE TABLE pigeons (id {pk}, lamppost_id BIGINT NOT NULL REFERENCES lampposts(id),
                 weight BIGINT NOT NULL, nickname TEXT NULL);
             CREATE INDEX pigeons_lamppost ON pigeons (lamppost_id);
             INSERT INTO streets (id, name) VALUES (1, 'Elm'), (2, 'Oak');
             INSERT INTO lampposts (id, street_id, first_name, country, weight) VALUES
                 (1, 1, 'Anna', 'Latvia', 100), (2, 1, 'Boris', 'Chile', 110),
                 (3, 2, 'Clara', 'Japan', 120), (4, NULL, 'Dmitri', 'Kenya', 130);
             INSERT INTO pigeons (id, lamppost_id, weight) VALUES
                 (1, 1, 1), (2, 1, 2), (3, 2, 3), (4, 3, 4), (5, 3, 5), (6, 4, 6);",
            pk = common::pk(db)
        ),
    )
    .await;
    let registry = streets_registry();
    registry.migrate(db).await.unwrap();
    registry
}

/// Every stored value against its definition, computed from the rows now.
async fn streets_wrong(db: &Db) -> Vec<String> {
    let mut w = wrong(
        db,
        "lamppost",
        "SELECT l.id, CAST(l.cached_total_weight AS TEXT), CAST(l.weight + COALESCE((SELECT SUM(p.weight) \
         FROM pigeons p WHERE p.lamppost_id = l.id), 0) AS TEXT), l.total_weight_recalculation_needed \
         FROM lampposts l",
    )
    .await;
    w.extend(
        wrong(
            db,
            "street (pigeon_weight)",
            "SELECT s.id, CAST(s.cached_pigeon_weight AS TEXT), CAST(COALESCE((SELECT SUM(p.weight) \
             FROM pigeons p JOIN lampposts l ON l.id = p.lamppost_id WHERE l.street_id = s.id), 0) AS TEXT), \
             s.pigeon_weight_recalculation_needed FROM streets s",
        )
        .await,
    );
    w.extend(
        wrong(
            db,
            "street (heaviest)",
            "SELECT s.id, CAST(s.cached_heaviest AS TEXT), CAST(COALESCE((SELECT MAX(l.weight + \
             COALESCE((SELECT SUM(p.weight) FROM pigeons p WHERE p.lamppost_id = l.id), 0)) \
             FROM lampposts l WHERE l.street_id = s.id), 0) AS TEXT), s.heaviest_recalculation_needed \
             FROM streets s",
        )
        .await,
    );
    w.extend(
        wrong(
            db,
            "pigeon (perch)",
            "SELECT p.id, p.cached_perch, l.first_name || ' of ' || l.country || ' on ' || \
             COALESCE(s.name, 'no street'), p.perch_recalculation_needed FROM pigeons p \
             JOIN lampposts l ON l.id = p.lamppost_id LEFT JOIN streets s ON s.id = l.street_id",
        )
        .await,
    );
    w.extend(
        wrong(
            db,
            "pigeon (flock)",
            "SELECT p.id, CAST(p.cached_flock AS TEXT), CAST((SELECT SUM(o.weight) FROM pigeons o \
             WHERE o.lamppost_id = p.lamppost_id) AS TEXT), p.flock_recalculation_needed FROM pigeons p",
        )
        .await,
    );
    w
}

/// A write, the rows it must flag, the recalculations the drain then does.
async fn step(db: &Db, registry: &Registry, sql: &str, flagged: &[(&str, i64)], recalculated: u64) {
    exec_text(db, sql.to_owned()).await;
    assert_eq!(
        flags(db, STREET_FIELDS).await,
        expect(flagged),
        "flagged after {sql}"
    );
    assert_eq!(
        drain(db, registry).await,
        recalculated,
        "recalculations after {sql}"
    );
    assert_eq!(streets_wrong(db).await, Vec::<String>::new(), "after {sql}");
}

per_backend! {
    async fn every_write_on_a_street_path_flags_exactly_what_it_changes() {
        on_both("streets", |db, _| async move {
            let r = streets_setup(&db).await;
            // Every row once: the lampposts' totals before the streets'
            // heaviest, which reads them (no second pass).
            assert_eq!(
                flags(&db, STREET_FIELDS).await,
                expect(&[("lampposts.total_weight", 4), ("streets.pigeon_weight", 2),
                    ("streets.heaviest", 2), ("pigeons.perch", 6), ("pigeons.flock", 6)])
            );
            assert_eq!(drain(&db, &r).await, 20);
            assert_eq!(streets_wrong(&db).await, Vec::<String>::new());

            // Renaming a street: the perches of the pigeons on its lampposts.
            step(&db, &r, "UPDATE streets SET name = 'Main' WHERE id = 1",
                &[("pigeons.perch", 3)], 3).await;
            // Writes outside every path, or that change nothing: nothing.
            step(&db, &r, "UPDATE streets SET city = 'Oslo'", &[], 0).await;
            step(&db, &r, "UPDATE lampposts SET painted = 'red'", &[], 0).await;
            step(&db, &r, "UPDATE pigeons SET nickname = 'Gus'", &[], 0).await;
            step(&db, &r, "UPDATE lampposts SET weight = weight, street_id = street_id", &[], 0).await;
            step(&db, &r, "UPDATE streets SET name = name", &[], 0).await;
            // Moving a lamppost to another street: its pigeons' perches, and
            // both streets' figures.
            step(&db, &r, "UPDATE lampposts SET street_id = 2 WHERE id = 2",
                &[("pigeons.perch", 1), ("streets.pigeon_weight", 2), ("streets.heaviest", 2)], 5).await;
            // … and to no street.
            step(&db, &r, "UPDATE lampposts SET street_id = NULL WHERE id = 3",
                &[("pigeons.perch", 2), ("streets.pigeon_weight", 1), ("streets.heaviest", 1)], 4).await;
            // Moving a pigeon between lampposts of different streets: its own
            // perch and flock, the flocks it left and joined, both lampposts'
            // totals, both streets' pigeon weights; the new totals then flag
            // both streets' heaviest (2 more recalculations).
            step(&db, &r, "UPDATE pigeons SET lamppost_id = 2 WHERE id = 1",
                &[("pigeons.perch", 1), ("pigeons.flock", 3), ("lampposts.total_weight", 2),
                  ("streets.pigeon_weight", 2)], 10).await;
            // A pigeon's weight on a lamppost with no street: its flock and
            // the lamppost's total; no street to tell.
            step(&db, &r, "UPDATE pigeons SET weight = 40 WHERE id = 4",
                &[("pigeons.flock", 2), ("lampposts.total_weight", 1)], 3).await;
            // A pigeon's weight on a street: the street's heaviest follows its
            // lamppost's new total.
            step(&db, &r, "UPDATE pigeons SET weight = 30 WHERE id = 3",
                &[("pigeons.flock", 2), ("lampposts.total_weight", 1), ("streets.pigeon_weight", 1)], 5).await;
            // Deleting a lamppost's pigeons, then the lamppost.
            step(&db, &r, "DELETE FROM pigeons WHERE lamppost_id = 1",
                &[("lampposts.total_weight", 1), ("streets.pigeon_weight", 1)], 3).await;
            step(&db, &r, "DELETE FROM lampposts WHERE id = 1",
                &[("streets.pigeon_weight", 1), ("streets.heaviest", 1)], 2).await;
            // Renaming a lamppost: the perches of its pigeons.
            step(&db, &r, "UPDATE lampposts SET first_name = 'Zed' WHERE id = 2",
                &[("pigeons.perch", 2)], 2).await;
            // A new pigeon: its own fields, the flock it joins, its
            // lamppost's total, the street's weight, then its heaviest.
            step(&db, &r, "INSERT INTO pigeons (id, lamppost_id, weight) VALUES (7, 2, 7)",
                &[("pigeons.perch", 1), ("pigeons.flock", 3), ("lampposts.total_weight", 1),
                  ("streets.pigeon_weight", 1)], 7).await;
            // One statement renaming every street: each pigeon on a street once.
            step(&db, &r, "UPDATE streets SET name = name || '!'", &[("pigeons.perch", 3)], 3).await;
            // A street replaced by an upsert: the pigeons on its lampposts.
            // SQLite's REPLACE deletes the row and inserts a new one, whose
            // own fields are recalculated too (a new row is never trusted).
            if db.backend() == cached_fields::Backend::Sqlite {
                step(&db, &r, "REPLACE INTO streets (id, name) VALUES (2, 'Birch')",
                    &[("pigeons.perch", 3), ("streets.pigeon_weight", 1), ("streets.heaviest", 1)], 5).await;
            } else {
                step(&db, &r, "INSERT INTO streets (id, name) VALUES (2, 'Birch') \
                    ON CONFLICT (id) DO UPDATE SET name = EXCLUDED.name", &[("pigeons.perch", 3)], 3).await;
            }
        })
        .await;
    }
}

/// Each row's flag version of `table.field` (every flag bumps it by one).
async fn versions(db: &Db, table_field: &str) -> BTreeMap<i64, i64> {
    let (t, f) = table_field.split_once('.').unwrap();
    let q = format!("SELECT id, {f}_recalculation_version FROM {t}");
    let rows: Vec<(i64, i64)> = on_pool!(db, |p| sqlx::query_as(sqlx::AssertSqlSafe(q.clone()))
        .fetch_all(p)
        .await
        .unwrap_or_else(|e| panic!("{q}: {e}")));
    rows.into_iter().collect()
}

/// How many times `sql` flagged each row of each `table.field` (rows
/// flagged at least once).
async fn flags_per_row(db: &Db, fields: &[&str], sql: &str) -> Vec<BTreeMap<i64, i64>> {
    let mut before = Vec::new();
    for f in fields {
        before.push(versions(db, f).await);
    }
    exec_text(db, sql.to_owned()).await;
    let mut out = Vec::new();
    for (f, before) in fields.iter().zip(before) {
        out.push(
            versions(db, f)
                .await
                .into_iter()
                .map(|(id, v)| (id, v - before[&id]))
                .filter(|(_, d)| *d > 0)
                .collect(),
        );
    }
    out
}

per_backend! {
    async fn a_bulk_statement_flags_each_row_once_where_the_backend_has_statement_triggers() {
        on_both("bulk", |db, _| async move {
            let r = streets_setup(&db).await;
            assert_eq!(drain(&db, &r).await, 20);
            let pg = db.backend() == cached_fields::Backend::Postgres;
            let per = |pairs: &[(i64, i64)]| pairs.iter().copied().collect::<BTreeMap<_, _>>();

            // Every pigeon heavier (6 pigeons, 4 lampposts, 2 streets):
            // PostgreSQL's statement triggers flag each lamppost and street
            // once; SQLite's row triggers once per pigeon under it.
            let sql = "UPDATE pigeons SET weight = weight + 1";
            let (lamps, streets) = if pg {
                (per(&[(1, 1), (2, 1), (3, 1), (4, 1)]), per(&[(1, 1), (2, 1)]))
            } else {
                (per(&[(1, 2), (2, 1), (3, 2), (4, 1)]), per(&[(1, 3), (2, 2)]))
            };
            assert_eq!(
                flags_per_row(&db, &["lampposts.total_weight", "streets.pigeon_weight"], sql).await,
                vec![lamps, streets],
                "{sql}"
            );
            // The lampposts' totals, the streets' weights, the flocks, then
            // the streets' heaviest.
            assert_eq!(drain(&db, &r).await, 4 + 2 + 6 + 2);
            assert_eq!(streets_wrong(&db).await, Vec::<String>::new());

            // Two lampposts moved to another street in one statement: each
            // street once (PostgreSQL), once per lamppost (SQLite).
            let sql = "UPDATE lampposts SET street_id = 2 WHERE street_id = 1";
            let moved = if pg { per(&[(1, 1), (2, 1)]) } else { per(&[(1, 2), (2, 2)]) };
            assert_eq!(flags_per_row(&db, &["streets.pigeon_weight"], sql).await, vec![moved], "{sql}");
            drain(&db, &r).await;
            assert_eq!(streets_wrong(&db).await, Vec::<String>::new());

            // Two pigeons of one lamppost swapping weights change no sum:
            // PostgreSQL compares what the statement did as a whole and
            // flags nothing; SQLite's row triggers see two changed rows.
            let sql = "UPDATE pigeons SET weight = CASE id WHEN 1 THEN 3 ELSE 2 END WHERE id IN (1, 2)";
            let expected = if pg {
                expect(&[])
            } else {
                expect(&[("lampposts.total_weight", 1), ("streets.pigeon_weight", 1), ("pigeons.flock", 2)])
            };
            step(&db, &r, sql, &expected.iter().map(|(k, v)| (k.as_str(), *v)).collect::<Vec<_>>(),
                if pg { 0 } else { 4 }).await;
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// Many-to-many through a join table, and reverse→reverse→forward.

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "posts")]
struct Post {
    id: i64,
    /// The letters in the names of the post's tags.
    #[cached(depends_on("post_tags(post_id).tag_id->tags.name"))]
    tag_letters: Cached<i64>,
}

const POST_LETTERS: &str = "SELECT CAST(COALESCE(SUM(LENGTH(t.name)), 0) AS BIGINT) FROM post_tags pt \
     JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = $1";

impl Post {
    async fn calculate_tag_letters(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, POST_LETTERS, self.id))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "authors")]
struct Author {
    id: i64,
    /// The letters in the names of the tags of the author's posts.
    #[cached(depends_on("posts(author_id).post_tags(post_id).tag_id->tags.name"))]
    tag_letters: Cached<i64>,
}

const AUTHOR_LETTERS: &str = "SELECT CAST(COALESCE(SUM(LENGTH(t.name)), 0) AS BIGINT) FROM posts p \
     JOIN post_tags pt ON pt.post_id = p.id JOIN tags t ON t.id = pt.tag_id WHERE p.author_id = $1";

impl Author {
    async fn calculate_tag_letters(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(one!(ctx, AUTHOR_LETTERS, self.id))
    }
}

const TAG_FIELDS: &[&str] = &["posts.tag_letters", "authors.tag_letters"];

async fn tags_wrong(db: &Db) -> Vec<String> {
    let mut w = wrong(
        db,
        "post",
        "SELECT p.id, CAST(p.cached_tag_letters AS TEXT), CAST(COALESCE((SELECT SUM(LENGTH(t.name)) \
         FROM post_tags pt JOIN tags t ON t.id = pt.tag_id WHERE pt.post_id = p.id), 0) AS TEXT), \
         p.tag_letters_recalculation_needed FROM posts p",
    )
    .await;
    w.extend(
        wrong(
            db,
            "author",
            "SELECT a.id, CAST(a.cached_tag_letters AS TEXT), CAST(COALESCE((SELECT SUM(LENGTH(t.name)) \
             FROM posts p JOIN post_tags pt ON pt.post_id = p.id JOIN tags t ON t.id = pt.tag_id \
             WHERE p.author_id = a.id), 0) AS TEXT), a.tag_letters_recalculation_needed FROM authors a",
        )
        .await,
    );
    w
}

per_backend! {
    async fn a_many_to_many_path_flags_every_row_carrying_the_tag() {
        on_both("tags", |db, _| async move {
            exec_text(
                &db,
                format!(
                    "CREATE TABLE authors (id {pk}, name TEXT NOT NULL);
                     CREATE TABLE posts (id {pk}, author_id BIGINT NOT NULL REFERENCES authors(id),
                         title TEXT NOT NULL);
                     CREATE TABLE tags (id {pk}, name TEXT NOT NULL, color TEXT NULL);
                     CREATE TABLE post_tags (id {pk}, post_id BIGINT NOT NULL REFERENCES posts(id),
                         tag_id BIGINT NOT NULL REFERENCES tags(id));
                     INSERT INTO authors (id, name) VALUES (1, 'Ann'), (2, 'Bo');
                     INSERT INTO posts (id, author_id, title) VALUES (1, 1, 'a'), (2, 1, 'b'), (3, 2, 'c');
                     INSERT INTO tags (id, name) VALUES (1, 'rust'), (2, 'sql'), (3, 'web');
                     INSERT INTO post_tags (id, post_id, tag_id) VALUES (1, 1, 1), (2, 1, 2), (3, 2, 2), (4, 3, 3);",
                    pk = common::pk(&db)
                ),
            )
            .await;
            let r = Registry::new().register::<Post>().unwrap().register::<Author>().unwrap();
            r.migrate(&db).await.unwrap();
            assert_eq!(drain(&db, &r).await, 5);
            let step = |sql: &'static str, flagged: &'static [(&'static str, i64)], n: u64| {
                let (db, r) = (db.clone(), r.clone());
                async move {
                    exec_text(&db, sql.to_owned()).await;
                    assert_eq!(flags(&db, TAG_FIELDS).await, expect(flagged), "flagged after {sql}");
                    assert_eq!(drain(&db, &r).await, n, "recalculations after {sql}");
                    assert_eq!(tags_wrong(&db).await, Vec::<String>::new(), "after {sql}");
                }
            };
            // A tag renamed: every post carrying it, and their authors.
            step("UPDATE tags SET name = 'db' WHERE id = 2",
                &[("posts.tag_letters", 2), ("authors.tag_letters", 1)], 3).await;
            step("UPDATE tags SET name = 'www' WHERE id = 3",
                &[("posts.tag_letters", 1), ("authors.tag_letters", 1)], 2).await;
            // Outside the paths: nothing.
            step("UPDATE tags SET color = 'red'", &[], 0).await;
            step("UPDATE posts SET title = 'z'", &[], 0).await;
            step("UPDATE authors SET name = 'Cy'", &[], 0).await;
            // A tag added to a post, a link moved to another tag.
            step("INSERT INTO post_tags (id, post_id, tag_id) VALUES (5, 3, 1)",
                &[("posts.tag_letters", 1), ("authors.tag_letters", 1)], 2).await;
            step("UPDATE post_tags SET tag_id = 3 WHERE id = 1",
                &[("posts.tag_letters", 1), ("authors.tag_letters", 1)], 2).await;
            // A link moved to another post of another author: both posts, both authors.
            step("UPDATE post_tags SET post_id = 3 WHERE id = 3",
                &[("posts.tag_letters", 2), ("authors.tag_letters", 2)], 4).await;
            // A post moved to another author: both authors.
            step("UPDATE posts SET author_id = 2 WHERE id = 2",
                &[("authors.tag_letters", 2)], 2).await;
            // A tag's links deleted (on posts 1 and 3, of both authors), then the tag.
            step("DELETE FROM post_tags WHERE tag_id = 2",
                &[("posts.tag_letters", 2), ("authors.tag_letters", 2)], 4).await;
            step("DELETE FROM tags WHERE id = 2", &[], 0).await;
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// A tree: each node's path is its parent's cached path and its name.

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "nodes")]
struct Node {
    id: i64,
    parent_id: Option<i64>,
    name: String,
    #[cached(depends_on("name", "parent_id->nodes.path"))]
    path: Cached<String>,
}

impl Node {
    async fn calculate_path(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        let Some(parent) = self.parent_id else {
            return Ok(format!("/{}", self.name));
        };
        let above: Option<String> =
            one!(ctx, "SELECT cached_path FROM nodes WHERE id = $1", parent);
        Ok(format!(
            "{}/{}",
            above.unwrap_or_else(|| "?".to_owned()),
            self.name
        ))
    }
}

/// Nodes whose stored path is not their ancestors' names (or is flagged),
/// leaving out `skip`.
async fn nodes_wrong(db: &Db, skip: &[i64]) -> Vec<String> {
    type Row = (i64, Option<i64>, String, Option<String>, bool);
    let rows: Vec<Row> = on_pool!(&db, |p| sqlx::query_as(
        "SELECT id, parent_id, name, cached_path, path_recalculation_needed FROM nodes"
    )
    .fetch_all(p)
    .await
    .unwrap());
    let by_id: HashMap<i64, &Row> = rows.iter().map(|r| (r.0, r)).collect();
    let mut out = Vec::new();
    for r in &rows {
        if skip.contains(&r.0) {
            continue;
        }
        let mut path = format!("/{}", r.2);
        let mut up = r.1;
        while let Some(p) = up {
            let parent = by_id[&p];
            path = format!("/{}{path}", parent.2);
            up = parent.1;
        }
        if r.4 || r.3.as_deref() != Some(path.as_str()) {
            out.push(format!(
                "node {}: stored {:?}, expected {path:?}, flagged {}",
                r.0, r.3, r.4
            ));
        }
    }
    out
}

per_backend! {
    async fn a_tree_is_recalculated_top_down_and_a_cycle_fails_its_rows() {
        on_both("tree", |db, _| async move {
            exec_text(
                &db,
                format!(
                    "CREATE TABLE nodes (id {pk}, parent_id BIGINT NULL REFERENCES nodes(id),
                         name TEXT NOT NULL, note TEXT NULL);
                     INSERT INTO nodes (id, parent_id, name) VALUES (1, NULL, 'a');
                     INSERT INTO nodes (id, parent_id, name) VALUES (2, 1, 'b'), (4, 1, 'd');
                     INSERT INTO nodes (id, parent_id, name) VALUES (3, 2, 'c');",
                    pk = common::pk(&db)
                ),
            )
            .await;
            let r = Registry::new().register::<Node>().unwrap();
            r.migrate(&db).await.unwrap();
            // Every node new at once: each waits for its parent, so each is
            // calculated once, top-down.
            assert_eq!(drain(&db, &r).await, 4);
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
            // A deeper tree inserted in one statement: the same.
            exec_text(&db, "INSERT INTO nodes (id, parent_id, name) VALUES (10, NULL, 'r'), \
                (11, 10, 's'), (12, 11, 't'), (13, 12, 'u'), (14, 13, 'v'), (15, 11, 'w')".to_owned()).await;
            assert_eq!(drain(&db, &r).await, 6);
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
            let fields = &["nodes.path"];
            // Renaming the root: the root, then its children, then theirs —
            // each once.
            exec_text(&db, "UPDATE nodes SET name = 'A' WHERE id = 1".to_owned()).await;
            assert_eq!(flags(&db, fields).await, expect(&[("nodes.path", 1)]));
            assert_eq!(drain(&db, &r).await, 4);
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
            // Moving a leaf: the leaf alone.
            exec_text(&db, "UPDATE nodes SET parent_id = 4 WHERE id = 3".to_owned()).await;
            assert_eq!(flags(&db, fields).await, expect(&[("nodes.path", 1)]));
            assert_eq!(drain(&db, &r).await, 1);
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
            // Moving a subtree: its root, then its child.
            exec_text(&db, "UPDATE nodes SET parent_id = 2 WHERE id = 4".to_owned()).await;
            assert_eq!(drain(&db, &r).await, 2);
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
            // A column the path does not read: nothing.
            exec_text(&db, "UPDATE nodes SET note = 'x'".to_owned()).await;
            assert_eq!(flags(&db, fields).await, expect(&[]));

            // A cycle in the data: its rows fail (recorded, retried later),
            // the drain ends, the rest of the tree stays right.
            exec_text(
                &db,
                "INSERT INTO nodes (id, parent_id, name) VALUES (5, NULL, 'x');
                 INSERT INTO nodes (id, parent_id, name) VALUES (6, 5, 'y');
                 UPDATE nodes SET parent_id = 6 WHERE id = 5;"
                    .to_owned(),
            )
            .await;
            let stats = tokio::time::timeout(
                Duration::from_secs(60),
                Worker::new(db.clone(), r.clone()).drain(),
            )
            .await
            .expect("a cycle does not keep the worker busy")
            .unwrap();
            assert_eq!(stats.failed, 2, "{stats:?}");
            assert_eq!(nodes_wrong(&db, &[5, 6]).await, Vec::<String>::new());
            let errors: Vec<String> = on_pool!(&db, |p| sqlx::query_scalar(
                "SELECT path_last_error FROM nodes WHERE id IN (5, 6) ORDER BY id"
            )
            .fetch_all(p)
            .await
            .unwrap());
            for e in &errors {
                assert!(e.contains("cycle") && e.contains("parent_id->nodes.path"), "{e}");
            }
            // Broken by hand: both recalculated at their retry.
            exec_text(&db, "UPDATE nodes SET parent_id = NULL WHERE id = 5".to_owned()).await;
            tokio::time::sleep(Duration::from_millis(2100)).await;
            drain(&db, &r).await;
            assert_eq!(nodes_wrong(&db, &[]).await, Vec::<String>::new());
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// A tree through other tables: an employee ranks one below the managers of
// their department, and the departments are a model keyed by a text code
// (the worker's walk up the tree joins on that key, not on `id`).

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "depts")]
struct Dept {
    #[cached_model(primary_key)]
    code: String,
    name: String,
    #[cached(depends_on("name"))]
    title: Cached<String>,
}

impl Dept {
    async fn calculate_title(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(format!("{} ({})", self.name, self.code))
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "employees")]
struct Employee {
    id: i64,
    dept_code: String,
    #[cached(depends_on(
        "dept_code->depts(code).managers(dept_code).employee_id->employees.rank"
    ))]
    rank: Cached<i64>,
}

impl Employee {
    async fn calculate_rank(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        rank_below_managers(ctx, &self.dept_code).await
    }
}

/// One more than the highest stored rank among the managers of `dept`
/// (0 where it has none).
async fn rank_below_managers(ctx: &mut Ctx<'_>, dept: &str) -> Result<i64, BoxError> {
    let above: Option<i64> = one!(
        ctx,
        "SELECT MAX(e.cached_rank) FROM managers m JOIN employees e ON e.id = m.employee_id \
         WHERE m.dept_code = $1",
        dept
    );
    Ok(above.map_or(0, |r| r + 1))
}

/// The same ranks with the departments a plain table (no model): the hop
/// from a department to its managers names the column it joins on.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "employees")]
struct Member {
    id: i64,
    dept_code: String,
    #[cached(depends_on(
        "dept_code->depts(code).managers(dept_code->code).employee_id->employees.rank"
    ))]
    rank: Cached<i64>,
}

impl Member {
    async fn calculate_rank(&self, ctx: &mut Ctx<'_>) -> Result<i64, BoxError> {
        rank_below_managers(ctx, &self.dept_code).await
    }
}

// A reverse hop from the departments that leaves out the column: it
// would join on `depts.id`.
refused!(
    DeptManagers,
    "employees",
    "dept_code->depts(code).managers(dept_code).id"
);

// A path to the departments that leaves out their key.
refused!(DeptName, "employees", "dept_code->depts.name");

/// Every employee's (id, stored rank, flagged), by id.
async fn ranks(db: &Db) -> Vec<(i64, Option<i64>, bool)> {
    on_pool!(&db, |p| sqlx::query_as(
        "SELECT id, cached_rank, rank_recalculation_needed FROM employees ORDER BY id"
    )
    .fetch_all(p)
    .await
    .unwrap())
}

/// Departments keyed by a text code, four employees, and who manages
/// which department: the board manages engineering, whose second employee
/// manages web.
async fn ranks_setup(db: &Db) {
    exec_text(
        db,
        format!(
            "CREATE TABLE depts (code TEXT PRIMARY KEY, name TEXT NOT NULL);
             CREATE TABLE employees (id {pk}, dept_code TEXT NOT NULL REFERENCES depts(code));
             CREATE TABLE managers (id {pk}, dept_code TEXT NOT NULL REFERENCES depts(code),
                 employee_id BIGINT NOT NULL REFERENCES employees(id));
             INSERT INTO depts (code, name) VALUES ('top', 'Board'), ('eng', 'Engineering'),
                 ('web', 'Web');
             INSERT INTO employees (id, dept_code) VALUES (1, 'top'), (2, 'eng'), (3, 'eng'),
                 (4, 'web');
             INSERT INTO managers (id, dept_code, employee_id) VALUES (1, 'eng', 1), (2, 'web', 3);",
            pk = common::pk(db)
        ),
    )
    .await;
}

per_backend! {
    async fn a_tree_through_a_model_keyed_by_text_waits_for_the_rows_above() {
        on_both("ranks", |db, _| async move {
            ranks_setup(&db).await;
            let r = Registry::new()
                .register::<Dept>()
                .unwrap()
                .register::<Employee>()
                .unwrap();
            r.migrate(&db).await.unwrap();
            // All new at once: each employee waits for the managers above
            // them, so each is calculated once (and each department once).
            assert_eq!(drain(&db, &r).await, 4 + 3);
            let want = vec![(1, Some(0), false), (2, Some(1), false), (3, Some(1), false), (4, Some(2), false)];
            assert_eq!(ranks(&db).await, want);
            // The board takes over the web department: its people move up.
            exec_text(&db, "UPDATE managers SET employee_id = 1 WHERE id = 2".to_owned()).await;
            assert_eq!(flags(&db, &["employees.rank"]).await, expect(&[("employees.rank", 1)]));
            assert_eq!(drain(&db, &r).await, 1);
            let want = vec![(1, Some(0), false), (2, Some(1), false), (3, Some(1), false), (4, Some(1), false)];
            assert_eq!(ranks(&db).await, want);
            // A forward hop that names no referenced column joins on `id`;
            // the refusal says which column the foreign key references.
            let e = refusal(&db, Registry::new().register::<DeptName>().unwrap()).await;
            assert!(
                e.contains("hop 1 (dept_code->depts): table depts has no column id \
                    (it references depts(code): write dept_code->depts(code))"),
                "{e}"
            );
        })
        .await;
    }
}

per_backend! {
    async fn a_reverse_hop_names_the_column_its_foreign_key_references() {
        on_both("refs", |db, _| async move {
            ranks_setup(&db).await;
            // Left out, the hop from a department (a plain table, keyed by
            // `code`) to its managers joins on `depts.id`: refused, saying
            // how to write it.
            let e = refusal(&db, Registry::new().register::<DeptManagers>().unwrap()).await;
            assert!(
                e.contains("hop 2 (managers(dept_code)): table depts has no column id \
                    (it references depts(code): write managers(dept_code->code))"),
                "{e}"
            );
            let r = Registry::new().register::<Member>().unwrap();
            r.migrate(&db).await.unwrap();
            assert_eq!(drain(&db, &r).await, 4);
            let want = vec![(1, Some(0), false), (2, Some(1), false), (3, Some(1), false), (4, Some(2), false)];
            assert_eq!(ranks(&db).await, want);
            // A department's managers change: its people, each once.
            exec_text(&db, "UPDATE managers SET employee_id = 1 WHERE id = 2".to_owned()).await;
            assert_eq!(flags(&db, &["employees.rank"]).await, expect(&[("employees.rank", 1)]));
            assert_eq!(drain(&db, &r).await, 1);
            // Web managed by employee 3 again: its people, each once.
            exec_text(&db, "UPDATE managers SET employee_id = 3 WHERE id = 2".to_owned()).await;
            assert_eq!(drain(&db, &r).await, 1);
            // Employee 3 moves to the board: their rank drops, and so, along
            // the hop through the named column, does that of the people of
            // the department they manage: two recalculations.
            exec_text(&db, "UPDATE employees SET dept_code = 'top' WHERE id = 3".to_owned()).await;
            assert_eq!(drain(&db, &r).await, 2);
            let want = vec![(1, Some(0), false), (2, Some(1), false), (3, Some(0), false), (4, Some(1), false)];
            assert_eq!(ranks(&db).await, want);
            // The board is now managed by employee 4 of web, which employee
            // 3 of the board manages: a cycle in the data fails employee 3.
            exec_text(&db, "INSERT INTO managers (id, dept_code, employee_id) VALUES (3, 'top', 4)".to_owned()).await;
            let stats = Worker::new(db.clone(), r.clone()).drain().await.unwrap();
            assert_eq!(stats.failed, 1, "{stats:?}");
            let error: Option<String> = on_pool!(&db, |p| sqlx::query_scalar(
                "SELECT rank_last_error FROM employees WHERE id = 3"
            )
            .fetch_one(p)
            .await
            .unwrap());
            assert!(error.as_deref().is_some_and(|e| e.contains("cycle")), "{error:?}");
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// A one-to-one through the primary key (multi-table inheritance).

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "restaurants")]
struct Restaurant {
    id: i64,
    rating: i64,
    #[cached(depends_on("rating", "id->places.name"))]
    label: Cached<String>,
}

impl Restaurant {
    async fn calculate_label(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        let name: String = one!(ctx, "SELECT name FROM places WHERE id = $1", self.id);
        Ok(format!("{name} ({})", self.rating))
    }
}

per_backend! {
    async fn a_one_to_one_through_the_primary_key_reads_the_parent_table() {
        on_both("inherit", |db, _| async move {
            exec_text(
                &db,
                format!(
                    "CREATE TABLE places (id {pk}, name TEXT NOT NULL, city TEXT NULL);
                     CREATE TABLE restaurants (id BIGINT PRIMARY KEY REFERENCES places(id),
                         rating BIGINT NOT NULL);
                     INSERT INTO places (id, name) VALUES (1, 'Cafe'), (2, 'Park');
                     INSERT INTO restaurants (id, rating) VALUES (1, 4);",
                    pk = common::pk(&db)
                ),
            )
            .await;
            let r = Registry::new().register::<Restaurant>().unwrap();
            r.migrate(&db).await.unwrap();
            assert_eq!(drain(&db, &r).await, 1);
            let fields = &["restaurants.label"];
            exec_text(&db, "UPDATE places SET name = 'Park!' WHERE id = 2".to_owned()).await;
            exec_text(&db, "UPDATE places SET city = 'Oslo'".to_owned()).await;
            assert_eq!(flags(&db, fields).await, expect(&[]));
            exec_text(&db, "UPDATE places SET name = 'Bistro' WHERE id = 1".to_owned()).await;
            assert_eq!(flags(&db, fields).await, expect(&[("restaurants.label", 1)]));
            assert_eq!(drain(&db, &r).await, 1);
            let label = common::text(&db, "SELECT cached_label FROM restaurants WHERE id = 1").await;
            assert_eq!(label, "Bistro (4)");
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// Wrong paths are refused at `migrate`, naming the hop and why.

refused!(
    NoColumn,
    "pigeons",
    "lamppost_id->lampposts.street_id->streets.nope"
);

refused!(
    NotAKey,
    "pigeons",
    "lamppost_id->lampposts.weight->streets.name"
);

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "streets")]
struct WrongDirection {
    id: i64,
    #[cached(depends_on("lampposts(street_id).lamppost_id->pigeons.weight"))]
    weight: Cached<i64>,
}

impl WrongDirection {
    async fn calculate_weight(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(0)
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "streets")]
struct Loop {
    id: i64,
    #[cached(depends_on("lampposts(street_id).echo"))]
    echo: Cached<i64>,
}

impl Loop {
    async fn calculate_echo(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(0)
    }
}

#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "lampposts")]
struct LoopBack {
    id: i64,
    #[cached(depends_on("street_id->streets.echo"))]
    echo: Cached<i64>,
}

impl LoopBack {
    async fn calculate_echo(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
        Ok(0)
    }
}

per_backend! {
    async fn a_wrong_path_is_refused_naming_the_hop_and_why() {
        on_both("badpath", |db, _| async move {
            streets_setup(&db).await;
            let e = refusal(&db, Registry::new().register::<NoColumn>().unwrap()).await;
            assert!(e.contains("lamppost_id->lampposts.street_id->streets.nope")
                && e.contains("the end of the path: table streets has no column nope"), "{e}");
            let e = refusal(&db, Registry::new().register::<NotAKey>().unwrap()).await;
            assert!(e.contains("hop 2 (weight->streets): lampposts.weight is not a foreign key \
                referencing streets(id)"), "{e}");
            let e = refusal(&db, Registry::new().register::<WrongDirection>().unwrap()).await;
            assert!(e.contains("hop 2 (lamppost_id->pigeons): lampposts has no column lamppost_id")
                || e.contains("hop 2 (lamppost_id->pigeons): table lampposts has no column lamppost_id"), "{e}");
            let e = refusal(
                &db,
                Registry::new().register::<Loop>().unwrap().register::<LoopBack>().unwrap(),
            )
            .await;
            assert!(e.contains("dependency cycle between cached fields: streets.echo -> lampposts.echo -> streets.echo"), "{e}");
            let e = cached_fields::depends::Dependency::parse("lamppost.street.name", &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("hop 1 (lamppost): names no foreign key to follow"), "{e}");
        })
        .await;
    }
}

// ---------------------------------------------------------------------------
// The graph.

#[test]
fn the_graph_lists_every_hop_and_its_triggers_in_recalculation_order() {
    let g = streets_registry().graph();
    let order: Vec<String> = g
        .fields
        .iter()
        .map(|f| format!("{}.{}", f.table, f.field))
        .collect();
    let at = |n: &str| order.iter().position(|o| o == n).unwrap();
    assert!(
        at("lampposts.total_weight") < at("streets.heaviest"),
        "{order:?}"
    );
    let text = g.to_string();
    assert!(
        text.contains("lampposts(street_id).pigeons(lamppost_id).weight"),
        "{text}"
    );
    assert!(text.contains("on pigeons: insert, delete, update of lamppost_id, weight by cf_ins_streets_pigeon_weight_"), "{text}");
    // PostgreSQL's: one per event on pigeons, for every field reached there.
    let pigeons = g
        .fields
        .iter()
        .flat_map(|f| &f.dependencies)
        .flat_map(|d| &d.guards)
        .filter(|g| g.table == "pigeons" && g.rows)
        .collect::<Vec<_>>();
    assert!(!pigeons.is_empty(), "{text}");
    assert!(
        pigeons[0].table_triggers[0].starts_with("cf_ins_pigeons_"),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "on SQLite, by {} on PostgreSQL",
            pigeons[0].table_triggers.join(", ")
        )),
        "{text}"
    );
    assert!(
        text.contains("lampposts(street_id).total_weight  (cached field lampposts.total_weight)"),
        "{text}"
    );
    assert!(
        text.contains("on lampposts: insert, delete, update of street_id, cached_total_weight"),
        "{text}"
    );
    let dot = g.dot();
    assert!(
        dot.contains("\"lampposts.total_weight\" -> \"streets.heaviest\""),
        "{dot}"
    );
}
