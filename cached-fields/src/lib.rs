//! Keep expensive derived values of database rows in columns beside them,
//! and keep them fresh.
//!
//! A cached field `F` of a model lives in the row as `cached_F`, with a flag
//! `F_recalculation_needed` and, with `temporal_triggers`, an expiry
//! `F_expires_after` — the layout of django-cached-field. Reads are one
//! column read; an invalidation flags the value; a [`Worker`] recalculates
//! flagged and expired values in the background (eager), or the next read
//! does (lazy). A recalculation never marks a value fresh if an invalidation
//! arrived after its inputs were read, and a crash loses nothing: the flag in
//! the row is the truth.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use cached_fields::{BoxError, Cached, CachedModel, Ctx, Db, Registry, Worker};
//!
//! #[derive(Debug, CachedModel)]
//! #[cached_model(table = "lampposts")]
//! pub struct Lamppost {
//!     #[cached_model(primary_key)]
//!     pub id: i64,
//!     pub first_name: String,
//!     pub country: String,
//!     #[cached(temporal_triggers)]
//!     pub slow_full_name: Cached<String>,
//! }
//!
//! impl Lamppost {
//!     async fn calculate_slow_full_name(&self, _ctx: &mut Ctx<'_>) -> Result<String, BoxError> {
//!         Ok(format!("The {} of {}", self.first_name, self.country))
//!     }
//! }
//!
//! let db = Db::connect("sqlite::memory:").await?;
//! let pool = db.as_sqlite().unwrap();
//! sqlx::query("CREATE TABLE lampposts (id INTEGER PRIMARY KEY, first_name TEXT NOT NULL, country TEXT NOT NULL)")
//!     .execute(pool).await?;
//! let registry = Registry::new().register::<Lamppost>()?;
//! registry.migrate(&db).await?;            // adds cached_slow_full_name & co.
//! sqlx::query("INSERT INTO lampposts (first_name, country) VALUES ('Anna', 'Latvia')")
//!     .execute(pool).await?;
//!
//! let lamp: Lamppost = sqlx::query_as("SELECT * FROM lampposts WHERE id = 1")
//!     .fetch_one(pool).await?;
//! assert_eq!(lamp.slow_full_name(&db).await?, "The Anna of Latvia"); // calculated, stored
//! lamp.flag_slow_full_name_as_stale(&db).await?;                    // the worker's job now
//! let stats = Worker::new(db.clone(), registry).drain().await?;
//! assert_eq!(stats.recalculated, 1);
//! # Ok(()) }
//! ```
#![cfg_attr(docsrs, feature(doc_cfg))]

pub mod backend;
#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod connect;
pub mod db;
pub mod depends;
pub mod error;
mod failures;
pub mod graph;
pub mod heartbeats;
pub mod ident;
pub mod key;
mod metrics;
pub mod model;
pub mod pauses;
pub mod registry;
/// The derive's plumbing (reads, flags and recalculations by field name);
/// use the generated methods instead.
#[doc(hidden)]
pub mod runtime;
pub mod schema;
mod statements;
pub mod status;
mod triggers;
pub mod value;
#[cfg(feature = "web")]
#[cfg_attr(docsrs, doc(cfg(feature = "web")))]
pub mod web;
pub mod worker;

#[doc(inline)]
pub use backend::Backend;
#[doc(inline)]
pub use connect::{DbOptions, named_statements};
pub use db::{CachedRow, Conn, Ctx, Db, Target};
#[doc(inline)]
pub use error::{BoxError, Error, Result};
#[doc(inline)]
pub use key::{Key, PrimaryKey};
#[doc(inline)]
pub use model::{Cached, CachedModel};
#[doc(inline)]
pub use registry::Registry;
#[doc(inline)]
pub use runtime::{Expiry, Read, Recalculate, eager_recalculation, set_eager_recalculation};
#[doc(inline)]
pub use value::{CachedValue, Json, SqlType, Value};
#[doc(inline)]
pub use worker::{Stats, Worker};

/// `#[derive(CachedModel)]`: declares a struct as a model with cached
/// fields, and generates the seed's methods for each.
///
/// # On the struct
///
/// | attribute | meaning |
/// |---|---|
/// | `#[cached_model(table = "name")]` | the table (required; a plain SQL identifier) |
///
/// # On a plain field
///
/// | attribute | meaning |
/// |---|---|
/// | `#[cached_model(primary_key)]` | the primary key (default: the field called `id`); its type is `i64`, `i32`, `String` or `uuid::Uuid` (feature `uuid`) — any other is a compile error listing these |
/// | `#[cached_model(skip)]` | not a column: filled with `Default::default()` when a row loads |
///
/// Every other plain field is a column of the same name.
///
/// # On a cached field (`F: Cached<T>`)
///
/// No attribute is needed (a bare `#[cached]` is accepted). `T` is any
/// [`CachedValue`]. Inside `#[cached(...)]`, comma-separated:
///
/// | attribute | meaning |
/// |---|---|
/// | `calculate = path` | the calculate function (default `Self::calculate_F`): `async fn(&self, conn) -> Result<T, E>` |
/// | `calculate_many = path` | a batch form the worker calls once per claimed batch: `async fn(&[&Self], conn) -> Result<Vec<T>, E>`, values in the order given |
/// | `after_recalculate = path` | a hook run after each stored recalculation: `async fn(&self, conn) -> Result<(), E>` |
/// | `depends_on("col", "other_field", "child(fk).col", "fk->parent.col", "a(fk).b_id->b.col", ...)` | what the value depends on: columns of the row, other cached fields (a chain), and paths of hops through foreign keys — `child(fk)` to the rows whose `fk` points here, `fk->parent` to the row this row's `fk` points at — ending in a column or another table's cached field; triggers flag the field on every write along the path (see [`depends::Dependency`]) |
/// | `temporal_triggers` | adds the expiry column `F_expires_after` and `expire_F_after` |
/// | `lazy` / `eager` | who recalculates when flagged: the next read (never the worker) / the worker, whatever the global switch says |
/// | `timeout_ms = N` | how long one calculation may take (default: the worker's `calculation_timeout`, 20 s) |
/// | `cached_column = "c"`, `recalculation_needed_column = "c"`, `expires_after_column = "c"` | other column names than `cached_F`, `F_recalculation_needed`, `F_expires_after` |
///
/// `conn` is the connection argument: `&mut Ctx<'_>` (any backend), or one
/// backend's own `&mut sqlx::SqliteConnection` / `&mut sqlx::PgConnection`
/// (see [`db::FromCtx`]). `E` is any error convertible into a [`BoxError`].
///
/// # Generated
///
/// Implementations of [`CachedModel`] and of sqlx's `FromRow` for each
/// enabled backend (rows load with plain `sqlx::query_as`), and per cached
/// field `F` of type `T`, where `db` is a `&Db`, a connection, a
/// transaction or a calculate function's connection ([`Target`]):
///
/// | method | does |
/// |---|---|
/// | `fn F(&self, db) -> Read<'_, T>` (await it: `Result<T>`) | the stored value if fresh, else recalculated now and stored |
/// | `async fn flag_F_as_stale(&self, db) -> Result<()>` | flags the value stale; eager or lazy per the field and the global switch |
/// | `async fn flag_F_as_stale_and_recalculate(&self, db, impl Into<Recalculate>) -> Result<()>` | the same, choosing eager or lazy for this call |
/// | `async fn recalculate_F(&self, db) -> Result<T>` | reloads the row and recalculates now |
/// | `async fn expire_F_after(&self, db, impl Into<Expiry>) -> Result<()>` | with `temporal_triggers`: stale at that instant; the worker recalculates it then |
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use cached_fields::{BoxError, Cached, CachedModel, Db, Recalculate, Registry, Worker};
/// use sqlx::SqliteConnection;
///
/// #[derive(Debug, CachedModel)]
/// #[cached_model(table = "orders")]
/// struct Order {
///     #[cached_model(primary_key)]
///     number: String,
///     customer: String,
///     #[cached_model(skip)]
///     note: String,
///     #[cached(depends_on("lines(order_number).amount"), calculate_many = Order::totals)]
///     total: Cached<i64>,
///     #[cached(lazy, temporal_triggers, timeout_ms = 5000, depends_on("customer", "total"))]
///     label: Cached<String>,
/// }
///
/// impl Order {
///     async fn calculate_total(&self, conn: &mut SqliteConnection) -> Result<i64, BoxError> {
///         Ok(sqlx::query_scalar("SELECT COALESCE(SUM(amount), 0) FROM lines WHERE order_number = $1")
///             .bind(&self.number).fetch_one(conn).await?)
///     }
///     async fn totals(rows: &[&Self], conn: &mut SqliteConnection) -> Result<Vec<i64>, BoxError> {
///         let mut out = Vec::new();
///         for o in rows {
///             out.push(o.calculate_total(&mut *conn).await?);
///         }
///         Ok(out)
///     }
///     async fn calculate_label(&self, conn: &mut SqliteConnection) -> Result<String, BoxError> {
///         Ok(format!("{}: {}", self.customer, self.total(conn).await?))
///     }
/// }
///
/// let db = Db::connect("sqlite::memory:").await?;
/// let pool = db.as_sqlite().unwrap().clone();
/// sqlx::raw_sql("CREATE TABLE orders (number TEXT PRIMARY KEY, customer TEXT NOT NULL);
///     CREATE TABLE lines (id INTEGER PRIMARY KEY, order_number TEXT NOT NULL REFERENCES orders(number),
///         amount BIGINT NOT NULL);
///     INSERT INTO orders VALUES ('A-1', 'Ann'); INSERT INTO lines (order_number, amount) VALUES ('A-1', 5);")
///     .execute(&pool).await?;
/// let registry = Registry::new().register::<Order>()?;
/// registry.migrate(&db).await?;
/// assert_eq!(Worker::new(db.clone(), registry).drain().await?.recalculated, 1); // total; label is lazy
///
/// let order: Order = sqlx::query_as("SELECT * FROM orders").fetch_one(&pool).await?;
/// assert_eq!(order.total(&db).await?, 5);
/// assert_eq!(order.label(&db).await?, "Ann: 5");                     // calculated by the read
/// order.flag_label_as_stale_and_recalculate(&db, Recalculate::Lazily).await?;
/// order.expire_label_after(&db, chrono::Utc::now()).await?;
/// assert_eq!(order.recalculate_total(&db).await?, 5);
/// # Ok(()) }
/// ```
#[cfg(feature = "derive")]
#[cfg_attr(docsrs, doc(cfg(feature = "derive")))]
pub use cached_fields_macros::CachedModel;

/// Items the derive's generated code uses; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::db::from_ctx;
    pub use crate::runtime::{expire_after, flag, read_field, recalculate};

    /// The key of a model's row, converted where the model's key type is
    /// known to be a [`PrimaryKey`](crate::PrimaryKey) (so a wrong one is
    /// reported once, at `type Key`).
    pub fn key_of<M: crate::CachedModel>(key: &M::Key) -> crate::Key {
        crate::PrimaryKey::key(key)
    }
    pub use futures::future::BoxFuture;
    pub use sqlx;
}

/// The README's examples compile, and its PostgreSQL example runs (on
/// `CACHED_FIELDS_PG_URL`, as the tests do).
#[cfg(all(doctest, feature = "postgres", feature = "uuid"))]
#[doc = include_str!("../../README.md")]
struct ReadmeDoctests;
