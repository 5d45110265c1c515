//! Per-field operations with the seed's names: read (`F`), `flag_F_as_stale`,
//! `recalculate_F`, `expire_F_after`. The derive's methods call these.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use futures::FutureExt;

use crate::backend::Backend;
use crate::db::{Ctx, Db, Target};
use crate::depends::Dependency;
use crate::error::{Error, Result};
use crate::key::Key;
use crate::model::{Cached, CachedModel, DEFAULT_TIMEOUT, Field, Model};
use crate::statements::{self, FieldSql};
use crate::value::{CachedValue, SqlType, Value};

static EAGER: AtomicBool = AtomicBool::new(true);

/// Sets the global default for [`flag`]: eager (`true`, the default) leaves a
/// flagged value to the worker; lazy (`false`) leaves it to the next read.
/// The seed's `CACHED_FIELD_EAGER_RECALCULATION`.
///
/// ```
/// cached_fields::set_eager_recalculation(true);
/// assert!(cached_fields::eager_recalculation());
/// ```
pub fn set_eager_recalculation(eager: bool) {
    EAGER.store(eager, Ordering::Relaxed);
}

/// The global eager/lazy default; see [`set_eager_recalculation`].
pub fn eager_recalculation() -> bool {
    EAGER.load(Ordering::Relaxed)
}

/// Who recalculates a flagged value: the worker (eagerly) or the next read
/// (lazily). For one flag, a per-call choice (`flag_F_as_stale_and_recalculate`)
/// wins over the field's declared mode, which wins over the global switch
/// ([`set_eager_recalculation`]). A field declared lazy (`#[cached(lazy)]`)
/// is never recalculated by the worker, whatever flagged it: its reads do.
/// A `bool` converts: `true` is eager, as in django-cached-field's
/// `and_recalculate`.
///
/// ```
/// use cached_fields::Recalculate;
/// assert_eq!(Recalculate::from(false), Recalculate::Lazily);
/// assert!(Recalculate::Eagerly.is_eager());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Recalculate {
    /// The worker recalculates it in the background.
    Eagerly,
    /// The next read recalculates it; the worker leaves it alone.
    Lazily,
}

impl Recalculate {
    /// Whether the worker recalculates.
    pub fn is_eager(self) -> bool {
        self == Recalculate::Eagerly
    }
}

impl From<bool> for Recalculate {
    fn from(eager: bool) -> Self {
        if eager {
            Recalculate::Eagerly
        } else {
            Recalculate::Lazily
        }
    }
}

/// An instant for `expire_F_after`: a timestamp, or a date (midnight UTC).
///
/// ```
/// use cached_fields::Expiry;
/// use chrono::NaiveDate;
/// let e: Expiry = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap().into();
/// assert_eq!(e.instant().to_rfc3339(), "2026-12-01T00:00:00+00:00");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expiry(DateTime<Utc>);

impl Expiry {
    /// The instant the value expires.
    pub fn instant(self) -> DateTime<Utc> {
        self.0
    }
}

impl From<DateTime<Utc>> for Expiry {
    fn from(t: DateTime<Utc>) -> Self {
        Expiry(t)
    }
}

impl From<NaiveDate> for Expiry {
    fn from(d: NaiveDate) -> Self {
        Expiry(d.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc())
    }
}

fn field_sql<'a, M>(ctx: &Ctx<'_>, model: &Model<M>, field: &'a Field<M>) -> FieldSql<'a> {
    FieldSql::of(ctx.backend(), model, field)
}

/// Reads the field, recalculating inline (and storing) when it is flagged,
/// expired or never calculated.
pub async fn read<'c, M, T>(
    m: &M,
    field: &str,
    slot: &Cached<T>,
    target: impl Target<'c>,
) -> Result<T>
where
    M: CachedModel,
    T: CachedValue,
{
    if let Some(v) = slot.fresh() {
        return Ok(v);
    }
    let model = M::model()?;
    let field = model.field(field)?;
    let mut ctx = target.into_ctx();
    // Flagged only by this process: the flag may have been rolled back.
    if slot.stale_only_here() {
        let sql = field_sql(&ctx, model, field).flag_state();
        let rows = ctx
            .fetch_values(
                sql,
                &[m.primary_key().to_value()],
                &[SqlType::Bool, SqlType::Int],
            )
            .await?;
        if let Some([Value::Bool(false), Value::Int(version)]) = rows.first().map(Vec::as_slice) {
            slot.confirm_fresh(*version);
            if let Some(v) = slot.fresh() {
                return Ok(v);
            }
        }
    }
    let (value, _) = recalculate_loaded(&mut ctx, model, field, m, None).await?;
    T::from_value(value).map_err(|e| value_error(model, field, &e))
}

/// The future a derived accessor (`lamp.total_weight(&db)`) returns: ready
/// at once, without a database round trip or an allocation, when the value
/// is fresh at the call; otherwise it recalculates like [`read`].
///
/// ```
/// # async fn f() -> cached_fields::Result<()> {
/// use cached_fields::runtime::Read;
/// let fresh: Read<'_, i64> = Read::ready(7);
/// assert_eq!(fresh.await?, 7);
/// # Ok(()) }
/// ```
#[must_use = "a Read does nothing unless awaited"]
pub struct Read<'a, T>(ReadState<'a, T>);

enum ReadState<'a, T> {
    Ready(Option<T>),
    Calculating(futures::future::BoxFuture<'a, Result<T>>),
}

impl<T> Read<'_, T> {
    /// A read already answered with `value`.
    pub fn ready(value: T) -> Self {
        Read(ReadState::Ready(Some(value)))
    }
}

impl<T> fmt::Debug for Read<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.0 {
            ReadState::Ready(_) => "Read(ready)",
            ReadState::Calculating(_) => "Read(calculating)",
        })
    }
}

// The value is moved out, never pinned in place.
impl<T> Unpin for Read<'_, T> {}

impl<T> Future for Read<'_, T> {
    type Output = Result<T>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<T>> {
        match &mut self.get_mut().0 {
            ReadState::Ready(v) => match v.take() {
                Some(v) => Poll::Ready(Ok(v)),
                None => panic!("cached_fields::runtime::Read polled after completion"),
            },
            ReadState::Calculating(f) => f.as_mut().poll(cx),
        }
    }
}

/// [`read`] as the derive calls it: the fresh value at once, or a boxed
/// recalculation.
pub fn read_field<'a, 'c: 'a, M, T>(
    m: &'a M,
    field: &'static str,
    slot: &'a Cached<T>,
    target: impl Target<'c> + 'a,
) -> Read<'a, T>
where
    M: CachedModel,
    T: CachedValue,
{
    match slot.fresh() {
        Some(v) => Read::ready(v),
        None => Read(ReadState::Calculating(Box::pin(read(
            m, field, slot, target,
        )))),
    }
}

/// A calculated value that does not convert to the field's type.
fn value_error<M>(model: &Model<M>, field: &Field<M>, e: &crate::value::ValueError) -> Error {
    Error::Decode {
        table: model.table().to_string(),
        column: field.columns().value.to_string(),
        expected: field.sql_type().name().to_owned(),
        message: e.to_string(),
        source: Some(std::sync::Arc::new(e.clone())),
    }
}

/// Flags the field of row `key` as stale. `and_recalculate`: `None` follows
/// the global switch; `Some(true)` leaves it to the worker (eager);
/// `Some(false)` to the next read (lazy). Inside a transaction, no worker
/// sees the flag before commit.
pub async fn flag<'c, M: CachedModel>(
    key: impl Into<Key>,
    field: &str,
    and_recalculate: Option<Recalculate>,
    target: impl Target<'c>,
) -> Result<()> {
    let key = key.into();
    if flag_many::<M>(std::slice::from_ref(&key), field, and_recalculate, target).await? == 0 {
        return Err(Error::RowNotFound {
            table: M::model()?.table().to_string(),
            key,
        });
    }
    Ok(())
}

/// Most keys flagged by one statement.
const FLAG_BATCH: usize = 500;

/// Flags the field of many rows, a few hundred per statement; returns how
/// many rows exist among `keys`. See [`flag`].
pub async fn flag_many<'c, M: CachedModel>(
    keys: &[Key],
    field: &str,
    and_recalculate: Option<Recalculate>,
    target: impl Target<'c>,
) -> Result<u64> {
    let model = M::model()?;
    let field = model.field(field)?;
    let mut ctx = target.into_ctx();
    let eager = and_recalculate
        .or(field.mode())
        .map_or_else(eager_recalculation, Recalculate::is_eager);
    let mut flagged = 0;
    for chunk in keys.chunks(FLAG_BATCH) {
        let sql = field_sql(&ctx, model, field).flag(chunk.len(), ctx.db().is_some());
        let mut args = vec![
            Value::Bool(eager),
            Value::Timestamp(statements::parked()),
            Value::Timestamp(statements::parked_alt()),
        ];
        args.extend(chunk.iter().map(Key::to_value));
        flagged += with_schema_hint(ctx.execute(sql, &args).await, &mut ctx, model).await?;
    }
    crate::worker::wake(ctx.db().as_ref());
    Ok(flagged)
}

/// Reloads row `key` and recalculates the field, storing the value unless an
/// invalidation arrived meanwhile. Returns the model as reloaded, with the
/// new value.
pub async fn recalculate<'c, M: CachedModel>(
    key: impl Into<Key>,
    field: &str,
    target: impl Target<'c>,
) -> Result<M> {
    let model = M::model()?;
    let field = model.field(field)?;
    let mut ctx = target.into_ctx();
    let m = load(&mut ctx, model, key.into()).await?;
    recalculate_loaded(&mut ctx, model, field, &m, None).await?;
    Ok(m)
}

/// Sets the field's expiry for row `key`.
pub async fn expire_after<'c, M: CachedModel>(
    m: &M,
    field: &str,
    when: impl Into<Expiry>,
    target: impl Target<'c>,
) -> Result<()> {
    let model = M::model()?;
    let field = model.field(field)?;
    let Some(col) = &field.columns().expires else {
        return Err(Error::NotTemporal {
            table: model.table().to_string(),
            field: field.name().to_string(),
        });
    };
    let when = when.into().instant();
    let key = m.primary_key();
    let mut ctx = target.into_ctx();
    let sql = format!(
        "UPDATE {} SET {} = $1 WHERE {} = $2",
        model.table().quoted(),
        col.quoted(),
        model.primary_key().quoted()
    );
    let n = with_schema_hint(
        ctx.execute(sql, &[Value::Timestamp(when), key.to_value()])
            .await,
        &mut ctx,
        model,
    )
    .await?;
    if n == 0 {
        return Err(Error::RowNotFound {
            table: model.table().to_string(),
            key,
        });
    }
    field.slot(m).store_expiry(Some(when));
    crate::worker::wake(ctx.db().as_ref());
    Ok(())
}

/// Loads one row as the model.
pub async fn load<M: CachedModel>(ctx: &mut Ctx<'_>, model: &Model<M>, key: Key) -> Result<M> {
    let sql = statements::load_rows(model.select_list(), model.table(), model.primary_key(), 1);
    let rows = with_schema_hint(
        ctx.fetch_models::<M>(sql, &[key.to_value()]).await,
        ctx,
        model,
    )
    .await?;
    rows.into_iter().next().ok_or_else(|| Error::RowNotFound {
        table: model.table().to_string(),
        key,
    })
}

/// Outcome of one calculation and write-back.
#[derive(Debug)]
pub(crate) enum Stored {
    /// The value was stored and the flag cleared.
    Fresh,
    /// An invalidation arrived while calculating: the row stays flagged.
    Superseded,
    /// The row no longer exists.
    Gone,
}

/// Runs the calculate function, catching panics, cancelled after `limit`,
/// with a typed error; a value the backend cannot store is an error too.
pub(crate) async fn compute<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    limit: Duration,
) -> Result<Value> {
    if let Some(db) = pinned(ctx) {
        let mut tx = db.begin().await?;
        let value = compute_on(&mut tx.ctx(), model, field, m, limit).await;
        tx.commit().await?;
        return value;
    }
    compute_on(ctx, model, field, m, limit).await
}

/// Behind a transaction-mode pooler (see [`crate::connect`]), a
/// calculation on the library's pool runs in a transaction of its own: its
/// queries (unnamed statements, two round trips each) then stay on one
/// server connection. The pool, in that case.
fn pinned(ctx: &Ctx<'_>) -> Option<Db> {
    if crate::connect::named_statements() || ctx.backend() != Backend::Postgres {
        return None;
    }
    ctx.db()
}

async fn compute_on<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    limit: Duration,
) -> Result<Value> {
    let key = m.primary_key();
    let backend = ctx.backend();
    let run = std::panic::AssertUnwindSafe(field.calculate(m, ctx)).catch_unwind();
    let outcome = tokio::time::timeout(limit, run)
        .await
        .map_err(|_| timed_out(model, field, &key, limit))?;
    let value = calculated(model, field, &key, outcome)?;
    storable(backend, model, field, &key, &value)?;
    Ok(value)
}

/// The time limit of one calculation of `field`: its own, else `default`.
pub(crate) fn limit<M>(field: &Field<M>, default: Duration) -> Duration {
    field.timeout().unwrap_or(default)
}

fn timed_out<M>(model: &Model<M>, field: &Field<M>, key: &Key, limit: Duration) -> Error {
    Error::TimedOut {
        table: model.table().to_string(),
        field: field.name().to_string(),
        key: key.clone(),
        limit,
    }
}

/// Refuses a value the backend would not store as it is (one that would
/// read back as another value, or as "never calculated").
fn storable<M>(
    backend: Backend,
    model: &Model<M>,
    field: &Field<M>,
    key: &Key,
    v: &Value,
) -> Result<()> {
    if let Some(reason) = backend.dialect().refuses(v) {
        return Err(Error::Unstorable {
            table: model.table().to_string(),
            field: field.name().to_string(),
            key: key.clone(),
            reason: reason.to_owned(),
        });
    }
    Ok(())
}

/// Runs the field's batch calculate function on `rows`, catching panics,
/// cancelled after `limit`; `None` when the field has none. An error names
/// the first row's key (or the row whose value cannot be stored).
pub(crate) async fn compute_many<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    rows: &[&M],
    limit: Duration,
) -> Option<Result<Vec<Value>>> {
    if let Some(db) = pinned(ctx) {
        let mut tx = match db.begin().await {
            Ok(tx) => tx,
            Err(e) => return Some(Err(e)),
        };
        let values = compute_many_on(&mut tx.ctx(), model, field, rows, limit).await;
        if let Err(e) = tx.commit().await {
            return Some(Err(e));
        }
        return values;
    }
    compute_many_on(ctx, model, field, rows, limit).await
}

async fn compute_many_on<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    rows: &[&M],
    limit: Duration,
) -> Option<Result<Vec<Value>>> {
    let backend = ctx.backend();
    let fut = field.calculate_many(rows, ctx)?;
    let key = rows.first().map_or(Key::Int(0), |m| m.primary_key());
    let run = std::panic::AssertUnwindSafe(fut).catch_unwind();
    let Ok(outcome) = tokio::time::timeout(limit, run).await else {
        return Some(Err(timed_out(model, field, &key, limit)));
    };
    Some(calculated(model, field, &key, outcome).and_then(|values| {
        if values.len() != rows.len() {
            return Err(Error::Calculate {
                table: model.table().to_string(),
                field: field.name().to_string(),
                key,
                message: format!(
                    "calculate_many returned {} values for {} rows",
                    values.len(),
                    rows.len()
                ),
                source: None,
            });
        }
        for (m, v) in rows.iter().zip(&values) {
            storable(backend, model, field, &m.primary_key(), v)?;
        }
        Ok(values)
    }))
}

/// A calculate function's outcome (its panic caught) as a typed result
/// naming the table, field and key.
fn calculated<M, T>(
    model: &Model<M>,
    field: &Field<M>,
    key: &Key,
    outcome: std::thread::Result<std::result::Result<T, crate::error::BoxError>>,
) -> Result<T> {
    match outcome {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(Error::Calculate {
            table: model.table().to_string(),
            field: field.name().to_string(),
            key: key.clone(),
            message: e.to_string(),
            source: Some(std::sync::Arc::from(e)),
        }),
        Err(panic) => Err(Error::Panicked {
            table: model.table().to_string(),
            field: field.name().to_string(),
            key: key.clone(),
            message: panic
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "non-string panic payload".to_owned()),
        }),
    }
}

/// Stores `value` computed from `m` (whose bookkeeping says which version
/// the inputs were read at), unless a newer invalidation arrived; then
/// updates `m` and runs the field's hook.
pub(crate) async fn write_back<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    value: Value,
    read_at: DateTime<Utc>,
) -> Result<Stored> {
    let stored = store(ctx, model, field, m, &value, read_at, false).await?;
    if let Stored::Fresh = stored
        && let Some(message) = after_store(ctx, model, field, m, value).await?
        && let Some(db) = ctx.db()
    {
        crate::failures::record(
            &db,
            model.table().as_str(),
            field.name().as_str(),
            crate::failures::Kind::Hook,
            &message,
        )
        .await;
    }
    Ok(stored)
}

/// The SQL half of [`write_back`]: the conditional UPDATE, and releasing
/// the lease when it lost to a newer invalidation. `by_worker`: with the
/// worker's statement settings (never in an application's transaction).
pub(crate) async fn store<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    value: &Value,
    read_at: DateTime<Utc>,
    by_worker: bool,
) -> Result<Stored> {
    let mut stored = store_many(ctx, model, field, &[(m, value)], read_at, by_worker).await?;
    Ok(stored.pop().unwrap_or(Stored::Gone))
}

/// [`store`] for many rows in two statements: the conditional UPDATE of
/// all, then releasing those that lost to a newer invalidation. `read_at`
/// is the earliest instant any of the inputs were read.
pub(crate) async fn store_many<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    rows: &[(&M, &Value)],
    read_at: DateTime<Utc>,
    by_worker: bool,
) -> Result<Vec<Stored>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let sql = field_sql(ctx, model, field);
    let mut args = vec![Value::Timestamp(read_at)];
    for (m, value) in rows {
        args.push(m.primary_key().to_value());
        args.push(Value::Int(field.slot(*m).snapshot().version));
        args.push((*value).clone());
    }
    let keys = |rows: Vec<Vec<Value>>| -> std::collections::HashSet<Key> {
        rows.into_iter()
            .filter_map(|r| r.first().and_then(Key::from_value))
            .collect()
    };
    let fresh = keys(
        with_schema_hint(
            ctx.fetch_values(
                sql.write_back_many(rows.len(), by_worker),
                &args,
                &[model.key_type()],
            )
            .await,
            ctx,
            model,
        )
        .await?,
    );
    let lost: Vec<Value> = rows
        .iter()
        .map(|(m, _)| m.primary_key())
        .filter(|k| !fresh.contains(k))
        .map(|k| k.to_value())
        .collect();
    let present = release_lost(ctx, model, field, &lost, by_worker).await?;
    Ok(rows
        .iter()
        .map(|(m, _)| {
            let k = m.primary_key();
            if fresh.contains(&k) {
                Stored::Fresh
            } else if present.contains(&k) {
                Stored::Superseded
            } else {
                Stored::Gone
            }
        })
        .collect())
}

/// After write-backs of `field` lost to newer invalidations: the rows
/// `lost` (keys) are hot, due again after the pause (see
/// [`FieldSql::release_many`](crate::statements::FieldSql::release_many));
/// returns the keys of those that still exist.
pub(crate) async fn release_lost<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    lost: &[Value],
    by_worker: bool,
) -> Result<std::collections::HashSet<Key>> {
    if lost.is_empty() {
        return Ok(std::collections::HashSet::default());
    }
    let sql = field_sql(ctx, model, field).release_many(lost.len(), by_worker);
    Ok(ctx
        .fetch_values(sql, lost, &[model.key_type()])
        .await?
        .into_iter()
        .filter_map(|r| r.first().and_then(Key::from_value))
        .collect())
}

/// After a value is stored (and committed): the in-memory copy, then the
/// hook. Returns the hook's error message if it failed (the value stays
/// stored: the hook's failure is counted, not the recalculation's).
pub(crate) async fn after_store<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    value: Value,
) -> Result<Option<String>> {
    field
        .slot(m)
        .store_fresh(value)
        .map_err(|e| value_error(model, field, &e))?;
    if let Some(hook) = field.after()
        && let Err(e) = hook(m, ctx).await
    {
        tracing::warn!(table = %model.table(), field = %field.name(), key = %m.primary_key(),
            error = %e, "after-recalculation hook failed");
        return Ok(Some(format!(
            "after-recalculation hook failed for row {}: {e}",
            m.primary_key()
        )));
    }
    Ok(None)
}

/// The worker's hold on a row's chain (see [`refresh_chain`]): now, the
/// lease end, and which fields are paused or held (never stored here).
#[derive(Clone, Copy)]
pub(crate) struct Lease<'a> {
    pub(crate) now: DateTime<Utc>,
    pub(crate) until: DateTime<Utc>,
    pub(crate) stopped: &'a (dyn Fn(&str) -> bool + Sync),
}

/// What [`refresh_chain`] did.
pub(crate) enum Chain<M> {
    /// Every chained field was fresh: calculate from the row as loaded.
    Fresh,
    /// Some were recalculated (this many, here), or found recalculated by
    /// another worker: calculate from this reloaded row.
    Reloaded(M, u64),
    /// A chained field is being recalculated by another worker (its lease):
    /// calculating now would repeat its work. The upstream field's index.
    Busy(usize),
}

/// Brings the cached fields that `field` chains on up to date in row `m`.
/// When one had to be recalculated, its new value flagged `field` again (a
/// trigger), so the row is reloaded: `field` must be calculated from the
/// reloaded row, whose version is current. With `lease` (the worker's now
/// and lease end), a stale upstream field is first leased like a claim, so
/// two workers never calculate it both; one leased by another worker, or
/// paused or held (which the worker never stores), makes this
/// [`Chain::Busy`].
pub(crate) async fn refresh_chain<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    lease: Option<Lease<'_>>,
) -> Result<Chain<M>> {
    let mut recalculated = 0;
    for dep in field.depends_on() {
        let Dependency::Field(name) = dep else {
            continue;
        };
        let upstream = model.field(name.as_str())?;
        if !upstream.slot(m).snapshot().stale {
            continue;
        }
        if let Some(Lease {
            now,
            until,
            stopped,
        }) = lease
        {
            let index = || {
                model
                    .fields()
                    .iter()
                    .position(|f| f.name() == upstream.name())
                    .unwrap_or_default()
            };
            if stopped(upstream.name().as_str()) {
                return Ok(Chain::Busy(index()));
            }
            let sql = field_sql(ctx, model, upstream).claim_one();
            let args = [
                Value::Timestamp(now),
                Value::Timestamp(until),
                m.primary_key().to_value(),
            ];
            if ctx
                .fetch_values(sql, &args, &[model.key_type()])
                .await?
                .is_empty()
            {
                // Not due: another worker holds it, or has recalculated it
                // since `m` was loaded; then carry on from the row as it is.
                let row = load(ctx, model, m.primary_key()).await?;
                if upstream.slot(&row).snapshot().stale {
                    return Ok(Chain::Busy(index()));
                }
                return Ok(
                    match Box::pin(refresh_chain(ctx, model, field, &row, lease)).await? {
                        Chain::Fresh => Chain::Reloaded(row, recalculated),
                        Chain::Reloaded(row, n) => Chain::Reloaded(row, recalculated + n),
                        busy @ Chain::Busy(_) => busy,
                    },
                );
            }
        }
        let (_, n) = Box::pin(recalculate_loaded(ctx, model, upstream, m, lease)).await?;
        recalculated += n;
    }
    if recalculated == 0 {
        return Ok(Chain::Fresh);
    }
    Ok(Chain::Reloaded(
        load(ctx, model, m.primary_key()).await?,
        recalculated,
    ))
}

/// Computes and stores one field of a loaded row (its chained fields first);
/// returns the value computed and how many calculations that took.
async fn recalculate_loaded<M: CachedModel>(
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
    field: &Field<M>,
    m: &M,
    lease: Option<Lease<'_>>,
) -> Result<(Value, u64)> {
    let (reloaded, chained) = match refresh_chain(ctx, model, field, m, lease).await? {
        Chain::Reloaded(row, n) => (Some(row), n),
        // Fresh; or another worker is on the upstream field: this one's
        // inputs would be stale anyway; calculate from what is stored,
        // leaving it flagged.
        Chain::Fresh | Chain::Busy(_) => (None, 0),
    };
    let row = reloaded.as_ref().unwrap_or(m);
    // Inputs are read from `row` (loaded at its version) and by the calculate
    // function from now on: any invalidation after the load bumps the version.
    let read_at = Utc::now();
    let value = compute(ctx, model, field, row, limit(field, DEFAULT_TIMEOUT)).await?;
    match write_back(ctx, model, field, row, value.clone(), read_at).await? {
        Stored::Fresh => {
            if reloaded.is_some() {
                // Keep the caller's copy in step with what was stored.
                let _ = field.slot(m).store_fresh(value.clone());
            }
        }
        Stored::Superseded => {
            tracing::debug!(table = %model.table(), field = %field.name(), key = %m.primary_key(),
                "invalidated while recalculating: left flagged");
        }
        Stored::Gone => {
            tracing::info!(table = %model.table(), field = %field.name(), key = %m.primary_key(),
                "row deleted before its recalculation was stored");
        }
    }
    Ok((value, chained + 1))
}

/// Turns "no such column" into [`Error::MissingColumns`] naming the columns.
pub(crate) async fn with_schema_hint<T, M>(
    r: Result<T>,
    ctx: &mut Ctx<'_>,
    model: &Model<M>,
) -> Result<T> {
    let Err(Error::Database(e)) = &r else {
        return r;
    };
    let undefined = match &**e {
        sqlx::Error::Database(d) => {
            d.code().as_deref() == Some("42703") || d.message().contains("no such column")
        }
        sqlx::Error::ColumnNotFound(_) => true,
        sqlx::Error::ColumnDecode { .. } => {
            return Err(decode_error(model, e));
        }
        _ => false,
    };
    if !undefined {
        return r;
    }
    match crate::schema::missing_columns(ctx, model).await {
        Ok(missing) if !missing.is_empty() => Err(Error::MissingColumns {
            table: model.table().to_string(),
            missing,
        }),
        _ => r,
    }
}

fn decode_error<M>(model: &Model<M>, e: &std::sync::Arc<sqlx::Error>) -> Error {
    let sqlx::Error::ColumnDecode { index, source } = &**e else {
        return Error::Database(std::sync::Arc::new(sqlx::Error::Protocol(e.to_string())));
    };
    let column = index.trim_matches('"').to_owned();
    let expected = model
        .fields()
        .iter()
        .find(|f| f.columns().value.as_str() == column)
        .map_or("declared type", |f| f.sql_type().name())
        .to_owned();
    Error::Decode {
        table: model.table().to_string(),
        column,
        expected,
        message: source.to_string(),
        source: Some(e.clone()),
    }
}
