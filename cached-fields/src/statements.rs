//! The runtime's SQL: flag, write back, claim, load, schedule, from the
//! backend's [`Dialect`](crate::backend::Dialect).
//! Names come only from validated [`Ident`](crate::ident::Ident)s; values are
//! always bound (`$1`, `$2`, … on both backends).

use chrono::{DateTime, TimeZone, Utc};

use crate::backend::{Backend, Settings};
use crate::ident::Ident;
use crate::model::FieldColumns;

/// The lazy flag's "never" for `F_next_attempt_at`: the worker leaves a row
/// parked here (or at [`parked_alt`]) alone, and the next read recalculates it.
pub(crate) fn parked() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 31, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// The other parked instant: a lazy flag of a row already parked moves it
/// between the two, so the bump trigger can tell a lazy flag (which changes
/// `F_next_attempt_at`) from any other write to a parked row (which leaves it
/// and makes the row due, see [`PARKED_FROM_SQL`]).
pub(crate) fn parked_alt() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(9999, 12, 30, 0, 0, 0)
        .single()
        .unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// Every parked instant is at or after this one (ISO 8601 text, for the
/// triggers).
pub(crate) const PARKED_FROM_SQL: &str = "9999-01-01T00:00:00Z";

/// A hot row (invalidated again while its recalculation was under way or
/// while it waits, or within this long of its last recalculation) is
/// recalculated this long after its latest invalidation, so that a burst of
/// writes costs one more recalculation rather than one per write. A row
/// invalidated once is due at once.
pub(crate) const HOT_PAUSE_MS: i64 = 50;

/// However long a burst lasts, a hot row is tried at least once per this
/// period, counted from when it first became stale.
pub(crate) const HOT_PAUSE_CAP_MS: i64 = 2000;

/// Now plus `ms` milliseconds, as the backend's timestamp expression.
pub(crate) fn now_plus(backend: Backend, ms: i64) -> String {
    backend.dialect().now_plus(ms)
}

/// When a hot row stale since `since`, due at `next` (timestamp
/// expressions), is next due: [`HOT_PAUSE_MS`] from now, but no later than
/// the end of the [`HOT_PAUSE_CAP_MS`] period (counted from `since`) that
/// `next` is in. So however often it is written, it is tried at least at
/// every period's end: a write just after one cannot push it into the next.
pub(crate) fn hot_until(backend: Backend, since: &str, next: &str) -> String {
    backend
        .dialect()
        .hot_until(since, next, HOT_PAUSE_MS, HOT_PAUSE_CAP_MS)
}

/// `col <= $n` for timestamps.
pub(crate) fn ts_le(backend: Backend, col: &str, param: &str) -> String {
    backend.dialect().ts_le(col, param)
}

/// Whether a row's field is not waiting (no lease, backoff or hot row's
/// pause ending after `now`): its `F_next_attempt_at` column (quoted)
/// `next` is NULL or at or before `now`, in parentheses.
pub(crate) fn not_waiting(backend: Backend, next: &str, now: &str) -> String {
    format!("({next} IS NULL OR {})", ts_le(backend, next, now))
}

/// A timestamp expression as seconds since the Unix epoch (float).
pub(crate) fn epoch(backend: Backend, expr: &str) -> String {
    backend.dialect().epoch(expr)
}

/// Converts seconds since the epoch back to an instant.
pub(crate) fn from_epoch(secs: f64) -> Option<DateTime<Utc>> {
    if !secs.is_finite() {
        return None;
    }
    #[allow(clippy::cast_possible_truncation)]
    let micros = (secs * 1e6).round() as i64;
    DateTime::from_timestamp_micros(micros)
}

/// One table and one of its cached fields, quoted.
#[derive(Debug)]
pub(crate) struct FieldSql<'a> {
    pub(crate) backend: Backend,
    pub(crate) table: String,
    pub(crate) pk: String,
    pub(crate) cols: &'a FieldColumns,
}

impl<'a> FieldSql<'a> {
    /// The statements of `field` of `model` on `backend`.
    pub(crate) fn of<M>(
        backend: Backend,
        model: &crate::model::Model<M>,
        field: &'a crate::model::Field<M>,
    ) -> Self {
        Self::new(backend, model.table(), model.primary_key(), field.columns())
    }

    pub(crate) fn new(backend: Backend, table: &Ident, pk: &Ident, cols: &'a FieldColumns) -> Self {
        FieldSql {
            backend,
            table: table.quoted(),
            pk: pk.quoted(),
            cols,
        }
    }

    /// The worker's statement settings, where the backend has them (see
    /// [`Dialect::prefix`](crate::backend::Dialect::prefix)); none for an
    /// application's statements, which may run in its transaction.
    fn settings(&self, by_worker: bool) -> Prefix {
        self.backend.dialect().prefix(if by_worker {
            Settings::Worker
        } else {
            Settings::None
        })
    }

    /// Sets the flag of `n` rows. `$1` eager (bool), `$2` and `$3` the two
    /// parked instants ([`parked`], [`parked_alt`]), `$4`… the keys. Eager:
    /// a parked row becomes due now, a lease or backoff stays; lazy: the row
    /// is parked for the next read, always at a different instant than it
    /// was (see [`parked_alt`]). `own_connection`: the statement runs on a
    /// connection of the library's (not in an application's transaction),
    /// so it may carry the mark the guard trigger skips.
    pub(crate) fn flag(&self, n: usize, own_connection: bool) -> String {
        let (t, pk, c) = (&self.table, &self.pk, self.cols);
        let settings = self.backend.dialect().prefix(if own_connection {
            Settings::Marked
        } else {
            Settings::None
        });
        let next = c.next_attempt.quoted();
        let parked = ts_le(self.backend, "$3", &next);
        let at_first = ts_le(self.backend, "$2", &next);
        let keys: Vec<String> = (4..n + 4).map(|i| format!("${i}")).collect();
        format!(
            "{with}UPDATE {t} SET {needed} = TRUE, {next} = CASE WHEN $1 THEN \
             (CASE WHEN {next} IS NOT NULL AND {parked} THEN NULL ELSE {next} END) \
             WHEN {next} IS NOT NULL AND {at_first} THEN $3 ELSE $2 END{from} \
             WHERE {pk} IN ({keys})",
            with = settings.with,
            from = settings.from,
            needed = c.needed.quoted(),
            keys = keys.join(", "),
        )
    }

    /// Stores fresh values of `n` rows in one statement, each only if no
    /// invalidation happened since its inputs were read (its version is
    /// still current); clears the flag, the lease, the failures, and an
    /// expiry that had passed when the inputs were read, and leaves the
    /// instant of the recalculation in `F_stale_since` (which means "stale
    /// since" only while flagged: the bump trigger reads it to spot hot
    /// rows). `$1` the earliest instant read, then `(key, version, value)`
    /// per row from `$2`. Returns the keys stored. The version moves on by
    /// one: the guard trigger takes a write of the value or the flag that
    /// does not do so for a stale save (see `triggers::guard`). `by_worker`: with the
    /// worker's [`settings`](Self::settings).
    pub(crate) fn write_back_many(&self, n: usize, by_worker: bool) -> String {
        let (t, pk, c) = (&self.table, &self.pk, self.cols);
        let expires = match &c.expires {
            Some(e) => {
                let q = e.quoted();
                format!(
                    ", {q} = CASE WHEN {le} THEN NULL ELSE {t}.{q} END",
                    le = ts_le(self.backend, &format!("{t}.{q}"), "$1")
                )
            }
            None => String::new(),
        };
        let rows: Vec<String> = (0..n)
            .map(|i| format!("(${}, ${}, ${})", 3 * i + 2, 3 * i + 3, 3 * i + 4))
            .collect();
        let settings = self.settings(by_worker);
        format!(
            "{with}UPDATE {t} SET {value} = cf_new.column3, {needed} = FALSE, {next} = NULL, {since} = {now}, \
             {attempts} = 0, {err} = NULL, {version} = {t}.{version} + 1{expires} FROM (VALUES {rows}) AS cf_new{also} \
             WHERE {t}.{pk} = cf_new.column1 AND {t}.{version} = cf_new.column2 RETURNING {t}.{pk}",
            value = c.value.quoted(),
            needed = c.needed.quoted(),
            next = c.next_attempt.quoted(),
            since = c.stale_since.quoted(),
            now = now_plus(self.backend, 0),
            attempts = c.attempts.quoted(),
            err = c.last_error.quoted(),
            version = c.version.quoted(),
            rows = rows.join(", "),
            with = settings.with,
            also = settings.also,
        )
    }

    /// After write-backs lost to newer invalidations: the rows `$1`…`$n`
    /// are hot, due again after the [`HOT_PAUSE_MS`] pause (which further
    /// invalidations extend); returns the keys of the rows that still exist.
    /// `by_worker`: with the worker's [`settings`](Self::settings).
    pub(crate) fn release_many(&self, n: usize, by_worker: bool) -> String {
        let next = self.cols.next_attempt.quoted();
        let keys: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
        let settings = self.settings(by_worker);
        format!(
            "{with}UPDATE {t} SET {next} = CASE WHEN {needed} THEN {pause} ELSE {next} END{from} \
             WHERE {pk} IN ({keys}) RETURNING {pk}",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            needed = self.cols.needed.quoted(),
            pause = now_plus(self.backend, HOT_PAUSE_MS),
            keys = keys.join(", "),
        )
    }

    /// Leases one row of this field if it is due (stale, and no other
    /// worker holds it: neither a lease written in the row nor, where
    /// claims are locks, another worker's lock): `$1` now, `$2` lease end,
    /// `$3` key. Returns the key when leased.
    pub(crate) fn claim_one(&self) -> String {
        let settings = self.settings(true);
        let unlocked = self
            .backend
            .dialect()
            .try_lock(self, &format!("{}.{}", self.table, self.pk))
            .map(|l| format!(" AND {l}"))
            .unwrap_or_default();
        format!(
            "{with}UPDATE {t} SET {next} = $2{from} WHERE {t}.{pk} = $3 AND {due}{unlocked} RETURNING {t}.{pk}",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            next = self.cols.next_attempt.quoted(),
            due = self.due(),
        )
    }

    /// Loads the rows `$2`… (`n` keys) that are still due at `$1`
    /// (`select_list`): after a [`lock_claim`](Self::lock_claim), in a new
    /// snapshot, so a row another worker stored before releasing its lock
    /// is left out.
    pub(crate) fn load_due(&self, select_list: &str, n: usize) -> String {
        let keys: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
        format!(
            "SELECT {select_list} FROM {t} WHERE {pk} IN ({keys}) AND {due}",
            t = self.table,
            pk = self.pk,
            keys = keys.join(", "),
            due = self.due(),
        )
    }

    /// Puts this field of row `$1` off until `$2` while `upstream` is still
    /// flagged (another worker is on it), but no later than the end of the
    /// upstream's lease or backoff; makes it due now if not.
    pub(crate) fn defer_behind(&self, upstream: &FieldColumns) -> String {
        let up_next = upstream.next_attempt.quoted();
        let settings = self.settings(true);
        format!(
            "{with}UPDATE {t} SET {next} = CASE WHEN {up_needed} THEN \
             (CASE WHEN {up_next} IS NOT NULL AND {le} THEN {up_next} ELSE $2 END) \
             ELSE NULL END{from} WHERE {pk} = $1",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            next = self.cols.next_attempt.quoted(),
            up_needed = upstream.needed.quoted(),
            le = ts_le(self.backend, &up_next, "$2"),
        )
    }

    /// Leases the `n` rows `$2`… until `$1` where they are flagged (their
    /// calculations go on after their batch's locks end).
    pub(crate) fn lease_rows(&self, n: usize) -> String {
        let settings = self.settings(true);
        let keys: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
        format!(
            "{with}UPDATE {t} SET {next} = $1{from} WHERE {pk} IN ({keys}) AND {needed}",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            next = self.cols.next_attempt.quoted(),
            needed = self.cols.needed.quoted(),
            keys = keys.join(", "),
        )
    }

    /// Ends row `$1`'s lease until `$2`, if it still holds it.
    pub(crate) fn release_lease(&self) -> String {
        let settings = self.settings(true);
        format!(
            "{with}UPDATE {t} SET {next} = NULL{from} WHERE {pk} = $1 AND {next} = $2",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            next = self.cols.next_attempt.quoted(),
        )
    }

    /// Parks row `$1` at `$2` (see `worker::tree`) while it is flagged.
    pub(crate) fn park(&self) -> String {
        let settings = self.settings(true);
        format!(
            "{with}UPDATE {t} SET {next} = CASE WHEN {needed} THEN $2 ELSE NULL END{from} WHERE {pk} = $1",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            next = self.cols.next_attempt.quoted(),
            needed = self.cols.needed.quoted(),
        )
    }

    /// The flag and version of row `$1`.
    pub(crate) fn flag_state(&self) -> String {
        format!(
            "SELECT {needed}, {version} FROM {t} WHERE {pk} = $1",
            needed = self.cols.needed.quoted(),
            version = self.cols.version.quoted(),
            t = self.table,
            pk = self.pk,
        )
    }

    /// Records a failed attempt. `$1` message, `$2` next attempt, `$3` key.
    pub(crate) fn record_failure(&self) -> String {
        let c = self.cols;
        let settings = self.settings(true);
        format!(
            "{with}UPDATE {t} SET {attempts} = {attempts} + 1, {err} = $1, {next} = $2{from} WHERE {pk} = $3",
            with = settings.with,
            from = settings.from,
            t = self.table,
            pk = self.pk,
            attempts = c.attempts.quoted(),
            err = c.last_error.quoted(),
            next = c.next_attempt.quoted(),
        )
    }

    /// The due condition: flagged or expired, and not leased or backing off.
    /// `$1` is now.
    fn due(&self) -> String {
        let c = self.cols;
        let next = c.next_attempt.quoted();
        let stale = match &c.expires {
            Some(e) => {
                let e = e.quoted();
                format!(
                    "({needed} OR ({e} IS NOT NULL AND {le}))",
                    needed = c.needed.quoted(),
                    le = ts_le(self.backend, &e, "$1")
                )
            }
            None => c.needed.quoted(),
        };
        format!("{stale} AND {}", not_waiting(self.backend, &next, "$1"))
    }

    /// See [`Dialect::lock_claim`](crate::backend::Dialect::lock_claim).
    pub(crate) fn lock_claim(
        &self,
        pass: &PassOver<'_>,
        companions: &[FieldSql<'_>],
        from: crate::backend::ClaimFrom,
    ) -> Option<String> {
        self.backend
            .dialect()
            .lock_claim(self, pass, companions, from)
    }

    /// The first number of this field's advisory locks: a stable hash
    /// (FNV-1a) of its table and flag column.
    pub(crate) fn lock_namespace(&self) -> i32 {
        let mut h: u32 = 0x811c_9dc5;
        for b in format!("{}.{}", self.table, self.cols.needed.quoted()).bytes() {
            h ^= u32::from(b);
            h = h.wrapping_mul(0x0100_0193);
        }
        i32::from_ne_bytes(h.to_ne_bytes())
    }

    /// Claims up to `$3` due rows by leasing them until `$2`, and returns
    /// them (`select_list`): claim and load in one round trip, so the
    /// version returned is the one the inputs beside it were read at.
    pub(crate) fn claim(
        &self,
        select_list: &str,
        with: &[&FieldColumns],
        pass: &PassOver<'_>,
    ) -> String {
        self.backend.dialect().claim(self, select_list, with, pass)
    }

    /// The earliest instant (epoch seconds) at which a row becomes due:
    /// an expiry, or the end of a lease or backoff, of a row where none of
    /// `stopped` (paused fields it chains on) is flagged. `$1` is the
    /// parked instant.
    pub(crate) fn next_due(&self, stopped: &[&FieldColumns]) -> String {
        let c = self.cols;
        let next = c.next_attempt.quoted();
        let waiting: String = stopped
            .iter()
            .map(|s| format!(" AND NOT {}", s.needed.quoted()))
            .collect();
        // The first entry of the flag's partial index past its NULLs (the
        // rows due now), in the index's own order: a look at one entry,
        // never a scan of the table, whatever the planner knows of it.
        let leases = format!(
            "SELECT {e} AS t FROM (SELECT {next} AS m FROM {t} WHERE {needed} AND {next} IS NOT NULL \
             AND NOT ({parked}){waiting} ORDER BY {nulls_first} LIMIT 1) AS cf_next",
            e = epoch(self.backend, "cf_next.m"),
            t = self.table,
            needed = c.needed.quoted(),
            parked = ts_le(self.backend, "$1", &next),
            nulls_first = self.backend.dialect().nulls_first(&next),
        );
        match &c.expires {
            Some(x) => {
                let x = x.quoted();
                // The MIN of the indexed expression, then converted: a
                // look at the index's first entry, not a scan.
                let (indexed, e) = self.backend.dialect().indexed_expiry(&x);
                format!(
                    "SELECT MIN(t) FROM ({leases} UNION ALL SELECT {e} AS t FROM \
                     (SELECT MIN({indexed}) AS m FROM {t} WHERE {x} IS NOT NULL{waiting}) AS cf_first) AS due",
                    t = self.table,
                )
            }
            None => format!("SELECT MIN(t) FROM ({leases}) AS due"),
        }
    }

    /// The flagged rows' figures: how many, how many failing, and the
    /// earliest `F_stale_since` (epoch seconds). Reads only flagged rows,
    /// through the partial index on the flag.
    pub(crate) fn status_flagged(&self) -> String {
        let c = self.cols;
        format!(
            "SELECT CAST(COUNT(*) AS BIGINT), \
             CAST(COALESCE(SUM(CASE WHEN {attempts} > 0 THEN 1 ELSE 0 END), 0) AS BIGINT), \
             MIN({since}) FROM {t} WHERE {needed}",
            needed = c.needed.quoted(),
            attempts = c.attempts.quoted(),
            since = epoch(self.backend, &c.stale_since.quoted()),
            t = self.table,
        )
    }

    /// Unflagged rows whose expiry (`$1` now) has passed, through the
    /// partial index on the expiry; `None` for a field without one.
    pub(crate) fn status_expired(&self) -> Option<String> {
        let c = self.cols;
        let e = c.expires.as_ref()?.quoted();
        Some(format!(
            "SELECT CAST(COUNT(*) AS BIGINT) FROM {t} WHERE {e} IS NOT NULL AND {le} AND NOT {needed}",
            le = ts_le(self.backend, &e, "$1"),
            needed = c.needed.quoted(),
            t = self.table,
        ))
    }

    /// The failing rows, most-retried first, at most `limit`: key,
    /// attempts, next attempt, last error (through the flag's partial index).
    pub(crate) fn failing(&self, limit: usize) -> String {
        let c = self.cols;
        format!(
            "SELECT {pk}, {attempts}, {next}, {err} FROM {t} WHERE {needed} AND {attempts} > 0 \
             ORDER BY {attempts} DESC LIMIT {limit}",
            pk = self.pk,
            t = self.table,
            attempts = c.attempts.quoted(),
            next = c.next_attempt.quoted(),
            err = c.last_error.quoted(),
            needed = c.needed.quoted(),
        )
    }

    /// Keys of rows that are stale (flagged or expired) at `$1`, or every key
    /// when `all`. `$2` limit; with `after`, `$3` keys greater than.
    pub(crate) fn keys(&self, all: bool, after: bool) -> String {
        let cond = if all {
            "TRUE".to_owned()
        } else {
            let c = self.cols;
            match &c.expires {
                Some(e) => format!(
                    "({needed} OR ({e} IS NOT NULL AND {le}))",
                    needed = c.needed.quoted(),
                    e = e.quoted(),
                    le = ts_le(self.backend, &e.quoted(), "$1")
                ),
                // No expiry column: `$1` (now) is still bound, so every field
                // takes the same parameters; it is never NULL.
                None => format!("({} OR $1 IS NULL)", c.needed.quoted()),
            }
        };
        let after = if after {
            format!(" AND {} > $3", self.pk)
        } else {
            String::new()
        };
        format!(
            "SELECT {pk} FROM {t} WHERE {cond}{after} ORDER BY {pk} LIMIT $2",
            pk = self.pk,
            t = self.table,
        )
    }
}

/// The rows a claim of a field passes over: those one of `leaders` (fields
/// that take it with their batches, see `worker::together`) has due,
/// left to the leader's batch; and those where one of `stopped` (fields it
/// chains on that are paused or held) is flagged, since calculating the
/// field would store that one first.
#[derive(Debug, Default)]
pub(crate) struct PassOver<'a> {
    pub(crate) leaders: Vec<&'a FieldColumns>,
    pub(crate) stopped: Vec<&'a FieldColumns>,
}

/// Whether a claim passes over the row (`$1` now; see [`PassOver`]).
pub(crate) fn led(backend: Backend, pass: &PassOver<'_>) -> String {
    let leaders = pass.leaders.iter().map(|l| {
        format!(
            "({} AND {})",
            l.needed.quoted(),
            not_waiting(backend, &l.next_attempt.quoted(), "$1"),
        )
    });
    let stopped = pass.stopped.iter().map(|s| s.needed.quoted());
    let any: Vec<String> = leaders.chain(stopped).collect();
    if any.is_empty() {
        "FALSE".to_owned()
    } else {
        any.join(" OR ")
    }
}

/// The `SET` items, after a claim's own, that lease the fields `with` of
/// the claimed rows until `$2` where no one holds them (`$1` now).
pub(crate) fn lease_also(backend: Backend, with: &[&FieldColumns]) -> String {
    with.iter()
        .map(|c| {
            let n = c.next_attempt.quoted();
            format!(
                ", {n} = CASE WHEN {} THEN $2 ELSE {n} END",
                not_waiting(backend, &n, "$1")
            )
        })
        .collect()
}

/// Of the `n` rows `$2`… of `table`, those whose field `c` is leased until
/// `$1` (by the claim that leased them with its batch, [`lease_also`]).
pub(crate) fn leased_with(table: &Ident, pk: &Ident, c: &FieldColumns, n: usize) -> String {
    let params: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
    format!(
        "SELECT {pk} FROM {t} WHERE {pk} IN ({params}) AND {next} = $1",
        pk = pk.quoted(),
        t = table.quoted(),
        params = params.join(", "),
        next = c.next_attempt.quoted(),
    )
}

/// Ends the leases until `$1` of the fields `with` on the `n` rows `$2`…
/// of `table` (those the batch did not store).
pub(crate) fn release_with(
    backend: Backend,
    table: &Ident,
    pk: &Ident,
    with: &[&FieldColumns],
    n: usize,
) -> String {
    let params: Vec<String> = (2..n + 2).map(|i| format!("${i}")).collect();
    let sets: Vec<String> = with
        .iter()
        .map(|c| {
            let n = c.next_attempt.quoted();
            format!("{n} = CASE WHEN {n} = $1 THEN NULL ELSE {n} END")
        })
        .collect();
    let any: Vec<String> = with
        .iter()
        .map(|c| format!("{} = $1", c.next_attempt.quoted()))
        .collect();
    let settings = backend.dialect().prefix(Settings::Worker);
    format!(
        "{with}UPDATE {t} SET {sets}{from} WHERE {pk} IN ({params}) AND ({any})",
        with = settings.with,
        from = settings.from,
        t = table.quoted(),
        pk = pk.quoted(),
        sets = sets.join(", "),
        params = params.join(", "),
        any = any.join(" OR "),
    )
}

/// Stores the values of several fields of `n` rows of `table` in one
/// statement (the worker's settings), each row only if every one of those
/// fields' versions is still the one its value was computed at; per field,
/// as [`FieldSql::write_back_many`] does. `$1` the earliest instant read,
/// then per row its key and, per field in `cols`' order, its version and
/// value. Returns the keys stored.
pub(crate) fn write_back_together(
    backend: Backend,
    table: &Ident,
    pk: &Ident,
    cols: &[&FieldColumns],
    n: usize,
) -> String {
    let t = table.quoted();
    let per_row = 1 + 2 * cols.len();
    let rows: Vec<String> = (0..n)
        .map(|i| {
            let params: Vec<String> = (0..per_row)
                .map(|j| format!("${}", 2 + i * per_row + j))
                .collect();
            format!("({})", params.join(", "))
        })
        .collect();
    let mut sets = Vec::new();
    let mut guards = Vec::new();
    for (j, c) in cols.iter().enumerate() {
        let (version_col, value_col) = (2 + 2 * j, 3 + 2 * j);
        let version = c.version.quoted();
        sets.push(format!(
            "{value} = cf_new.column{value_col}, {needed} = FALSE, {next} = NULL, {since} = {now}, \
             {attempts} = 0, {err} = NULL, {version} = {t}.{version} + 1",
            value = c.value.quoted(),
            needed = c.needed.quoted(),
            next = c.next_attempt.quoted(),
            since = c.stale_since.quoted(),
            now = now_plus(backend, 0),
            attempts = c.attempts.quoted(),
            err = c.last_error.quoted(),
        ));
        if let Some(e) = &c.expires {
            let q = e.quoted();
            sets.push(format!(
                "{q} = CASE WHEN {le} THEN NULL ELSE {t}.{q} END",
                le = ts_le(backend, &format!("{t}.{q}"), "$1")
            ));
        }
        guards.push(format!("{t}.{version} = cf_new.column{version_col}"));
    }
    let settings = backend.dialect().prefix(Settings::Worker);
    format!(
        "{with}UPDATE {t} SET {sets} FROM (VALUES {rows}) AS cf_new{also} \
         WHERE {t}.{pk} = cf_new.column1 AND {guards} RETURNING {t}.{pk}",
        with = settings.with,
        also = settings.also,
        sets = sets.join(", "),
        rows = rows.join(", "),
        pk = pk.quoted(),
        guards = guards.join(" AND "),
    )
}

/// What a statement starts with to carry its settings, and the `FROM`
/// items (after others, or alone) that make it evaluate them first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Prefix {
    pub(crate) with: &'static str,
    pub(crate) also: &'static str,
    pub(crate) from: &'static str,
}

impl Prefix {
    /// No settings.
    pub(crate) const NONE: Prefix = Prefix {
        with: "",
        also: "",
        from: "",
    };
}

/// `SELECT {select_list} FROM table WHERE pk IN ($1, …, $n)`.
pub(crate) fn load_rows(select_list: &str, table: &Ident, pk: &Ident, n: usize) -> String {
    let params: Vec<String> = (1..=n).map(|i| format!("${i}")).collect();
    format!(
        "SELECT {select_list} FROM {} WHERE {} IN ({})",
        table.quoted(),
        pk.quoted(),
        params.join(", ")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_round_trip() {
        let t = Utc.with_ymd_and_hms(2026, 11, 26, 4, 0, 0).unwrap();
        assert_eq!(from_epoch(t.timestamp() as f64), Some(t));
        assert_eq!(from_epoch(f64::NAN), None);
    }
}
