//! Waking idle workers: after this process's own flags and expiry changes,
//! at once; after other connections' commits, by the backend's means
//! (notifications, or watching the database), see [`crate::backend`].
//!
//! A wake-up belongs to a database: a flag on one [`Db`] wakes the workers
//! of that database, not every worker in the process.

use std::sync::{Arc, LazyLock, Mutex, PoisonError, Weak};

use tokio::sync::Notify;

use crate::db::Db;

/// The wake-up of each database with a running worker, by the identity of
/// its pool (shared by every clone of a `Db`).
static WAKERS: LazyLock<Mutex<Wakers>> = LazyLock::new(Mutex::default);

/// Pool identity → its workers' wake-up.
type Wakers = Vec<(usize, Weak<Notify>)>;

/// The wake-up of `db`'s workers (made on first use; kept while a worker
/// holds it).
pub(super) fn waker(db: &Db) -> Arc<Notify> {
    let id = db.identity();
    let mut wakers = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    wakers.retain(|(_, w)| w.strong_count() > 0);
    if let Some(n) = wakers
        .iter()
        .find(|(i, _)| *i == id)
        .and_then(|(_, w)| w.upgrade())
    {
        return n;
    }
    let n = Arc::new(Notify::new());
    wakers.push((id, Arc::downgrade(&n)));
    n
}

/// Wakes an idle worker of `db` (after a flag or an expiry change); with no
/// database to say (a statement on a borrowed connection, which may be in
/// the caller's transaction), one of every database's in this process.
pub(crate) fn wake(db: Option<&Db>) {
    let wakers = WAKERS.lock().unwrap_or_else(PoisonError::into_inner);
    let id = db.map(Db::identity);
    for (i, w) in wakers.iter() {
        if id.is_none_or(|id| id == *i)
            && let Some(n) = w.upgrade()
        {
            n.notify_one();
        }
    }
}
