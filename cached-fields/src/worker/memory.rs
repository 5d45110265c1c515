//! What a worker remembers of recent rows: superseded recalculations in a
//! row (a row that invalidates itself) and deferrals in a row.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::execute::DEFER_MS;
use crate::key::Key;

/// A row recalculated this many times in a row, each superseded by a new
/// invalidation within [`LOOP_WINDOW`], is taken to invalidate itself.
pub(super) const LOOP_COUNT: u32 = 10;
pub(super) const LOOP_WINDOW: Duration = Duration::from_secs(5);

/// A row deferred behind another worker's lease waits twice as long each
/// time, from 50 ms up to this (never past that lease's end).
pub(super) const DEFER_MAX_MS: i64 = 5000;

/// Per row of a field: superseded recalculations in a row (since when), and
/// deferrals in a row.
#[derive(Debug, Default)]
pub(crate) struct RowMemory {
    rows: Mutex<HashMap<(String, String, Key), RowTrack>>,
}

#[derive(Debug)]
struct RowTrack {
    superseded: u32,
    since: Instant,
    deferrals: u32,
}

impl RowMemory {
    fn with<T>(
        &self,
        table: &str,
        field: &str,
        key: &Key,
        f: impl FnOnce(&mut RowTrack) -> T,
    ) -> T {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if rows.len() > 10_000 {
            rows.retain(|_, t| t.since.elapsed() < LOOP_WINDOW * 4);
        }
        let t = rows
            .entry((table.to_owned(), field.to_owned(), key.clone()))
            .or_insert_with(|| RowTrack {
                superseded: 0,
                since: Instant::now(),
                deferrals: 0,
            });
        f(t)
    }

    pub(super) fn forget(&self, table: &str, field: &str, key: &Key) {
        let mut rows = self
            .rows
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        // The common case, on every stored value: nothing to forget.
        if !rows.is_empty() {
            rows.remove(&(table.to_owned(), field.to_owned(), key.clone()));
        }
    }

    /// Counts a superseded write-back; true when the row looks like it
    /// invalidates itself.
    pub(super) fn superseded(&self, table: &str, field: &str, key: &Key) -> bool {
        self.with(table, field, key, |t| {
            if t.superseded == 0 || t.since.elapsed() > LOOP_WINDOW {
                t.superseded = 0;
                t.since = Instant::now();
            }
            t.superseded += 1;
            t.superseded >= LOOP_COUNT
        })
    }

    /// How long to defer a row once more.
    pub(super) fn defer(&self, table: &str, field: &str, key: &Key) -> i64 {
        self.with(table, field, key, |t| {
            let ms = DEFER_MS
                .saturating_mul(1 << t.deferrals.min(10))
                .min(DEFER_MAX_MS);
            t.deferrals += 1;
            ms
        })
    }
}
