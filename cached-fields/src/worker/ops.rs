//! The worker's operations on one model, with the model type erased: what
//! the registry holds for each model it catalogs.

use futures::future::BoxFuture;
use tracing::Instrument;

use super::{BatchReport, Settings};
use crate::db::Db;
use crate::error::Result;
use crate::key::Key;
use crate::model::{CachedModel, Model};

/// Per-model work the worker runs, with the model type erased.
pub(crate) trait ModelOps: Send + Sync {
    fn process<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<BatchReport>>;
    fn next_due<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>>>;
    fn recalculate<'a>(&'a self, db: &'a Db, field: usize, key: Key) -> BoxFuture<'a, Result<()>>;
    /// The rows of a tree's field parked waiting for a row they read (see
    /// `tree`), looked at again: nothing for other fields.
    fn sweep<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<BatchReport>>;
}

impl<M: CachedModel> ModelOps for Model<M> {
    fn process<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<BatchReport>> {
        let span = tracing::debug_span!(
            "batch",
            table = %self.table(),
            field = %self.fields()[field].name()
        );
        Box::pin(super::process_batch::<M>(db, field, settings).instrument(span))
    }
    fn sweep<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<BatchReport>> {
        let span = tracing::debug_span!(
            "sweep",
            table = %self.table(),
            field = %self.fields()[field].name()
        );
        Box::pin(
            super::process_from::<M>(db, field, settings, super::Source::Waiting).instrument(span),
        )
    }
    fn next_due<'a>(
        &'a self,
        db: &'a Db,
        field: usize,
        settings: &'a Settings,
    ) -> BoxFuture<'a, Result<Option<chrono::DateTime<chrono::Utc>>>> {
        Box::pin(super::next_due::<M>(db, field, settings))
    }
    fn recalculate<'a>(&'a self, db: &'a Db, field: usize, key: Key) -> BoxFuture<'a, Result<()>> {
        Box::pin(async move {
            let name = self.fields()[field].name().as_str();
            crate::runtime::recalculate::<M>(key, name, db)
                .await
                .map(drop)
        })
    }
}
