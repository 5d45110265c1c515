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

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
pub mod db;
pub mod depends;
pub mod error;
mod failures;
pub mod ident;
pub mod key;
pub mod model;
pub mod registry;
pub mod runtime;
pub mod schema;
mod statements;
mod triggers;
pub mod value;
pub mod worker;

#[doc(inline)]
pub use db::{Backend, CachedRow, Conn, Ctx, Db, Target};
#[doc(inline)]
pub use error::{BoxError, Error, Result};
#[doc(inline)]
pub use key::{Key, PrimaryKey};
#[doc(inline)]
pub use model::{Cached, CachedModel};
#[doc(inline)]
pub use registry::Registry;
#[doc(inline)]
pub use runtime::{Expiry, Recalculate, eager_recalculation, set_eager_recalculation};
#[doc(inline)]
pub use value::{CachedValue, Json, SqlType, Value};
#[doc(inline)]
pub use worker::{Stats, Worker};

/// `#[derive(CachedModel)]`: see the crate root for an example.
#[cfg(feature = "derive")]
pub use cached_fields_macros::CachedModel;

/// Items the derive's generated code uses; not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::db::from_ctx;

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
