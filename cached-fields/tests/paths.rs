//! Issue #11, first step: a dependency on a column of the row this row's
//! foreign key points at (`foreign_key->table.column`). Every write on the
//! path flags exactly the rows whose value it can change, on both backends.

mod common;

use cached_fields::{BoxError, Cached, CachedModel, Ctx, Db, Registry, Worker};
use common::{exec_text, on_both, per_backend, scalar, text};

/// A pet's tag reads its owner's name.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pets")]
struct Pet {
    id: i64,
    owner_id: i64,
    name: String,
    #[cached(depends_on("name", "owner_id->owners.name"))]
    tag: Cached<String>,
}

impl Pet {
    async fn calculate_tag(&self, ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
        let owner = match ctx.conn().await? {
            cached_fields::Conn::Sqlite(c) => {
                sqlx::query_scalar::<_, String>("SELECT name FROM owners WHERE id = $1")
                    .bind(self.owner_id)
                    .fetch_one(c)
                    .await?
            }
            cached_fields::Conn::Postgres(c) => {
                sqlx::query_scalar::<_, String>("SELECT name FROM owners WHERE id = $1")
                    .bind(self.owner_id)
                    .fetch_one(c)
                    .await?
            }
            _ => unreachable!("two backends in the tests"),
        };
        Ok(format!("{} of {owner}", self.name))
    }
}

async fn setup(db: &Db) {
    exec_text(
        db,
        format!(
            "CREATE TABLE owners (id {pk}, name TEXT NOT NULL, city TEXT NOT NULL);
             CREATE TABLE pets (id {pk}, owner_id BIGINT NOT NULL REFERENCES owners(id), name TEXT NOT NULL);
             INSERT INTO owners (id, name, city) VALUES (1, 'Ann', 'Riga'), (2, 'Bo', 'Lima');
             INSERT INTO pets (id, owner_id, name) VALUES (1, 1, 'Rex'), (2, 1, 'Tom'), (3, 2, 'Kit');",
            pk = common::pk(db)
        ),
    )
    .await;
    Registry::new()
        .register::<Pet>()
        .unwrap()
        .migrate(db)
        .await
        .unwrap();
}

async fn drain(db: &Db) -> u64 {
    let registry = Registry::new().register::<Pet>().unwrap();
    Worker::new(db.clone(), registry)
        .drain()
        .await
        .unwrap()
        .recalculated
}

async fn flagged(db: &Db) -> i64 {
    scalar(
        db,
        "SELECT CAST(COUNT(*) AS BIGINT) FROM pets WHERE tag_recalculation_needed",
    )
    .await
}

async fn tag(db: &Db, id: i64) -> String {
    text(db, &format!("SELECT cached_tag FROM pets WHERE id = {id}")).await
}

per_backend! {
    async fn a_write_to_the_parent_row_flags_exactly_its_children() {
        on_both("parent", |db, _| async move {
            setup(&db).await;
            assert_eq!(drain(&db).await, 3);
            // A column no field reads: nothing.
            exec_text(&db, "UPDATE owners SET city = 'Oslo' WHERE id = 1".to_owned()).await;
            assert_eq!(flagged(&db).await, 0);
            // The name, set to itself: nothing.
            exec_text(&db, "UPDATE owners SET name = name WHERE id = 2".to_owned()).await;
            assert_eq!(flagged(&db).await, 0);
            // The name of owner 1: exactly its two pets.
            exec_text(&db, "UPDATE owners SET name = 'Zed' WHERE id = 1".to_owned()).await;
            assert_eq!(flagged(&db).await, 2);
            assert_eq!(drain(&db).await, 2);
            assert_eq!(tag(&db, 1).await, "Rex of Zed");
            assert_eq!(tag(&db, 3).await, "Kit of Bo");
            // A pet moved to another owner: that pet alone.
            exec_text(&db, "UPDATE pets SET owner_id = 1 WHERE id = 3".to_owned()).await;
            assert_eq!(flagged(&db).await, 1);
            assert_eq!(drain(&db).await, 1);
            assert_eq!(tag(&db, 3).await, "Kit of Zed");
            // One statement renaming every owner: every pet, once.
            exec_text(&db, "UPDATE owners SET name = name || '!'".to_owned()).await;
            assert_eq!(flagged(&db).await, 3);
            assert_eq!(drain(&db).await, 3);
            assert_eq!(tag(&db, 2).await, "Tom of Zed!");
            assert_eq!(drain(&db).await, 0);
        })
        .await;
    }
}

/// Depends on a parent column that does not exist.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pets")]
struct NoColumn {
    id: i64,
    #[cached(depends_on("owner_id->owners.nope"))]
    tag: Cached<String>,
}

impl NoColumn {
    async fn calculate_tag(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(String::new())
    }
}

/// Depends through a column that is not a foreign key to that table.
#[derive(Debug, Clone, CachedModel)]
#[cached_model(table = "pets")]
struct NotAKey {
    id: i64,
    #[cached(depends_on("name->owners.name"))]
    tag: Cached<String>,
}

impl NotAKey {
    async fn calculate_tag(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
        Ok(String::new())
    }
}

per_backend! {
    async fn a_wrong_parent_path_is_rejected_naming_what_is_wrong() {
        on_both("badparent", |db, _| async move {
            setup(&db).await;
            let e = Registry::new().register::<NoColumn>().unwrap().migrate(&db).await.unwrap_err().to_string();
            assert!(e.contains("owner_id->owners.nope") && e.contains("table owners has no column nope"), "{e}");
            let e = Registry::new().register::<NotAKey>().unwrap().migrate(&db).await.unwrap_err().to_string();
            assert!(e.contains("pets.name is not a foreign key referencing owners(id)"), "{e}");
            let e = cached_fields::depends::Dependency::parse("owner_id->owners.street_id->streets.name", &[])
                .unwrap_err()
                .to_string();
            assert!(e.contains("nested dependency paths are not supported yet"), "{e}");
        })
        .await;
    }
}
