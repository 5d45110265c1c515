//! Declarations: models, their cached fields, and the [`Cached`] holder a
//! struct keeps each cached value in. The derive expands to this builder.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;

use crate::db::{CachedRow, Ctx};
use crate::depends::{self, Dependency};
use crate::error::{BoxError, Error, Result};
use crate::ident::Ident;
use crate::key::Key;
use crate::runtime::Recalculate;
use crate::value::{CachedValue, SqlType, Value, ValueError};

/// A calculate function: computes the field's value for one row.
pub type CalcFn<M, T> =
    for<'a, 'c> fn(&'a M, &'a mut Ctx<'c>) -> BoxFuture<'a, Result<T, BoxError>>;

/// A batch calculate function: computes the field's value for many rows at
/// once (one query for all of them, say), in the order given.
pub type CalcManyFn<M, T> =
    for<'a, 'c> fn(&'a [&'a M], &'a mut Ctx<'c>) -> BoxFuture<'a, Result<Vec<T>, BoxError>>;

/// A hook run after each successful recalculation of a field.
pub type HookFn<M> = for<'a, 'c> fn(&'a M, &'a mut Ctx<'c>) -> BoxFuture<'a, Result<(), BoxError>>;

pub use crate::backend::{Decoders, FromBackendRows};

/// A struct mapped to a table with cached fields. Usually derived with
/// `#[derive(CachedModel)]`; see the crate root for an example.
pub trait CachedModel: Send + Sync + Unpin + Sized + 'static {
    /// The model's declaration, built once.
    fn model() -> Result<&'static Model<Self>>;
    /// The primary key's Rust type: one of the [`PrimaryKey`](crate::PrimaryKey) types.
    type Key: crate::PrimaryKey;
    /// The row's primary key.
    fn primary_key(&self) -> Key;
}

/// The columns of one cached field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldColumns {
    /// The value: `cached_F`.
    pub value: Ident,
    /// The flag: `F_recalculation_needed`.
    pub needed: Ident,
    /// The expiry, with `temporal_triggers`: `F_expires_after`.
    pub expires: Option<Ident>,
    /// Bumped by every invalidation: `F_recalculation_version`.
    pub version: Ident,
    /// While flagged, when the value became stale; otherwise when it was
    /// last recalculated: `F_stale_since`.
    pub stale_since: Ident,
    /// When the worker may next try (lease, backoff): `F_next_attempt_at`.
    pub next_attempt: Ident,
    /// Failed attempts since the last success: `F_attempts`.
    pub attempts: Ident,
    /// The last failure's message: `F_last_error`.
    pub last_error: Ident,
}

impl FieldColumns {
    /// The columns [`Cached::decode`] reads: value, flag, expiry, version, attempts.
    pub fn decoded(&self) -> Vec<&Ident> {
        let mut v = vec![&self.value, &self.needed];
        v.extend(self.expires.as_ref());
        v.extend([&self.version, &self.attempts]);
        v
    }

    /// Every column, in a stable order.
    pub fn all(&self) -> Vec<&Ident> {
        let mut v = vec![&self.value, &self.needed];
        v.extend(self.expires.as_ref());
        v.extend([
            &self.version,
            &self.stale_since,
            &self.next_attempt,
            &self.attempts,
            &self.last_error,
        ]);
        v
    }
}

/// Type-erased access to a model's [`Cached`] holder.
pub(crate) trait CachedSlot: Send + Sync {
    fn snapshot(&self) -> Snapshot;
    fn store_fresh(&self, value: Value) -> Result<(), ValueError>;
    fn store_expiry(&self, when: Option<DateTime<Utc>>);
    /// The value held now (stored or not), as a [`Value`]; `None` if none.
    fn stored_value(&self) -> Option<Value>;
}

/// The bookkeeping of one cached value as loaded.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Snapshot {
    pub(crate) version: i64,
    pub(crate) attempts: i32,
    /// Flagged, expired or never calculated, as of the snapshot.
    pub(crate) stale: bool,
}

trait ErasedCalc<M>: Send + Sync {
    fn call<'a>(&'a self, m: &'a M, ctx: &'a mut Ctx<'_>)
    -> BoxFuture<'a, Result<Value, BoxError>>;
}

trait ErasedCalcMany<M>: Send + Sync {
    fn call<'a>(
        &'a self,
        rows: &'a [&'a M],
        ctx: &'a mut Ctx<'_>,
    ) -> BoxFuture<'a, Result<Vec<Value>, BoxError>>;
}

struct TypedCalcMany<M, T>(CalcManyFn<M, T>);

impl<M: Sync + 'static, T: CachedValue> ErasedCalcMany<M> for TypedCalcMany<M, T> {
    fn call<'a>(
        &'a self,
        rows: &'a [&'a M],
        ctx: &'a mut Ctx<'_>,
    ) -> BoxFuture<'a, Result<Vec<Value>, BoxError>> {
        let fut = (self.0)(rows, ctx);
        Box::pin(async move {
            fut.await
                .map(|values| values.into_iter().map(CachedValue::into_value).collect())
        })
    }
}

struct TypedCalc<M, T>(CalcFn<M, T>);

impl<M: Sync + 'static, T: CachedValue> ErasedCalc<M> for TypedCalc<M, T> {
    fn call<'a>(
        &'a self,
        m: &'a M,
        ctx: &'a mut Ctx<'_>,
    ) -> BoxFuture<'a, Result<Value, BoxError>> {
        let fut = (self.0)(m, ctx);
        Box::pin(async move { fut.await.map(CachedValue::into_value) })
    }
}

/// How long a calculation may take when neither its field nor the worker
/// says otherwise.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(20);

type SlotFn<M> = Box<dyn (Fn(&M) -> &dyn CachedSlot) + Send + Sync>;

/// One cached field of a model, validated.
pub struct Field<M> {
    name: Ident,
    sql_type: SqlType,
    columns: FieldColumns,
    calculate: Box<dyn ErasedCalc<M>>,
    calculate_many: Option<Box<dyn ErasedCalcMany<M>>>,
    after: Option<HookFn<M>>,
    depends_on: Vec<Dependency>,
    timeout: Option<Duration>,
    mode: Option<Recalculate>,
    slot: SlotFn<M>,
}

impl<M> fmt::Debug for Field<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Field")
            .field("name", &self.name)
            .field("sql_type", &self.sql_type)
            .field("columns", &self.columns)
            .field("depends_on", &self.depends_on)
            .finish_non_exhaustive()
    }
}

impl<M: Sync + 'static> Field<M> {
    /// Starts declaring field `name` of type `T`, kept in the [`Cached`]
    /// that `slot` returns and computed by `calculate`.
    pub fn builder<T: CachedValue>(
        name: &str,
        slot: fn(&M) -> &Cached<T>,
        calculate: CalcFn<M, T>,
    ) -> FieldBuilder<M> {
        FieldBuilder {
            name: name.to_owned(),
            sql_type: T::SQL_TYPE,
            value_column: None,
            needed_column: None,
            expires_column: None,
            temporal: false,
            calculate: Box::new(TypedCalc(calculate)),
            calculate_many: None,
            after: None,
            depends_on: Vec::new(),
            timeout: None,
            mode: None,
            slot: Box::new(move |m| slot(m) as &dyn CachedSlot),
        }
    }
}

impl<M> Field<M> {
    /// The field's name.
    pub fn name(&self) -> &Ident {
        &self.name
    }
    /// The value's SQL type.
    pub fn sql_type(&self) -> SqlType {
        self.sql_type
    }
    /// The field's columns.
    pub fn columns(&self) -> &FieldColumns {
        &self.columns
    }
    /// The declared dependencies.
    pub fn depends_on(&self) -> &[Dependency] {
        &self.depends_on
    }
    /// How long one calculation may take, if the field sets it (otherwise
    /// the worker's [`calculation_timeout`](crate::Worker::calculation_timeout),
    /// or [`DEFAULT_TIMEOUT`] for reads).
    pub fn timeout(&self) -> Option<Duration> {
        self.timeout
    }
    /// Who recalculates the field when it is flagged, if declared
    /// (otherwise the global switch decides).
    pub fn mode(&self) -> Option<Recalculate> {
        self.mode
    }

    pub(crate) fn slot<'m>(&self, m: &'m M) -> &'m dyn CachedSlot {
        (self.slot)(m)
    }

    pub(crate) fn calculate<'a>(
        &'a self,
        m: &'a M,
        ctx: &'a mut Ctx<'_>,
    ) -> BoxFuture<'a, Result<Value, BoxError>> {
        self.calculate.call(m, ctx)
    }

    pub(crate) fn calculate_many<'a>(
        &'a self,
        rows: &'a [&'a M],
        ctx: &'a mut Ctx<'_>,
    ) -> Option<BoxFuture<'a, Result<Vec<Value>, BoxError>>> {
        self.calculate_many.as_ref().map(|f| f.call(rows, ctx))
    }

    pub(crate) fn after(&self) -> Option<HookFn<M>> {
        self.after
    }
}

/// Declares one cached field; see [`Field::builder`].
#[must_use = "a field builder declares nothing until passed to ModelBuilder::field"]
pub struct FieldBuilder<M> {
    name: String,
    sql_type: SqlType,
    value_column: Option<String>,
    needed_column: Option<String>,
    expires_column: Option<String>,
    temporal: bool,
    calculate: Box<dyn ErasedCalc<M>>,
    calculate_many: Option<(SqlType, Box<dyn ErasedCalcMany<M>>)>,
    after: Option<HookFn<M>>,
    depends_on: Vec<String>,
    timeout: Option<Duration>,
    mode: Option<Recalculate>,
    slot: SlotFn<M>,
}

impl<M> fmt::Debug for FieldBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FieldBuilder")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl<M> FieldBuilder<M> {
    /// Adds the expiry column `F_expires_after` (the seed's `temporal_triggers=True`).
    pub fn temporal_triggers(mut self, on: bool) -> Self {
        self.temporal = on;
        self
    }
    /// Overrides the value column (default `cached_F`).
    pub fn cached_column(mut self, name: &str) -> Self {
        self.value_column = Some(name.to_owned());
        self
    }
    /// Overrides the flag column (default `F_recalculation_needed`).
    pub fn recalculation_needed_column(mut self, name: &str) -> Self {
        self.needed_column = Some(name.to_owned());
        self
    }
    /// Overrides the expiry column (default `F_expires_after`).
    pub fn expires_after_column(mut self, name: &str) -> Self {
        self.expires_column = Some(name.to_owned());
        self
    }
    /// Adds a batch form of the calculate function, which the worker calls
    /// once for a whole claimed batch: it must return one value per row, in
    /// order. Should it fail (or return a wrong count), the worker falls back
    /// to the one-row function for each row of that batch, so a bad row
    /// fails alone. Reads still use the one-row function.
    ///
    /// ```
    /// use cached_fields::{Cached, Ctx, BoxError, model::{Field, Model}};
    /// use futures::future::BoxFuture;
    ///
    /// struct Item { id: i64, doubled: Cached<i64> }
    /// fn calc<'a>(m: &'a Item, _: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<i64, BoxError>> {
    ///     Box::pin(async move { Ok(m.id * 2) })
    /// }
    /// fn calc_many<'a>(
    ///     rows: &'a [&'a Item],
    ///     _: &'a mut Ctx<'_>,
    /// ) -> BoxFuture<'a, Result<Vec<i64>, BoxError>> {
    ///     Box::pin(async move { Ok(rows.iter().map(|m| m.id * 2).collect()) })
    /// }
    /// let model = Model::<Item>::builder("items")
    ///     .primary_key("id")
    ///     .field(Field::builder("doubled", |m: &Item| &m.doubled, calc).calculate_many(calc_many))
    ///     .build();
    /// assert!(model.is_ok());
    /// ```
    pub fn calculate_many<T: CachedValue>(mut self, f: CalcManyFn<M, T>) -> Self
    where
        M: Sync + 'static,
    {
        self.calculate_many = Some((T::SQL_TYPE, Box::new(TypedCalcMany(f))));
        self
    }
    /// Runs `hook` after each successful recalculation.
    pub fn after_recalculate(mut self, hook: HookFn<M>) -> Self {
        self.after = Some(hook);
        self
    }
    /// How long one calculation of this field may take before it counts as
    /// failed (recorded, retried with backoff) and the rest of its batch is
    /// written without it. A calculation is cancelled at its next `.await`:
    /// one that blocks its thread without awaiting cannot be (run such work
    /// with `tokio::task::spawn_blocking`).
    ///
    /// ```
    /// use std::time::Duration;
    /// use cached_fields::{Cached, Ctx, BoxError, model::{Field, Model}};
    /// use futures::future::BoxFuture;
    ///
    /// struct Item { id: i64, slow: Cached<i64> }
    /// fn calc<'a>(m: &'a Item, _: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<i64, BoxError>> {
    ///     Box::pin(async move { Ok(m.id) })
    /// }
    /// let model = Model::<Item>::builder("items")
    ///     .field(Field::builder("slow", |m: &Item| &m.slow, calc).timeout(Duration::from_secs(5)))
    ///     .build()
    ///     .unwrap();
    /// assert_eq!(model.fields()[0].timeout(), Some(Duration::from_secs(5)));
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }
    /// Declares who recalculates the field when it is flagged:
    /// [`Recalculate::Lazily`] makes it a lazy field, recalculated by the
    /// next read and never by the worker (the seed's lazy mode, per field);
    /// [`Recalculate::Eagerly`], eager whatever the global switch says.
    pub fn recalculate(mut self, mode: Recalculate) -> Self {
        self.mode = Some(mode);
        self
    }
    /// Records what the field depends on (columns of its row, related rows,
    /// other cached fields).
    pub fn depends_on<S: AsRef<str>>(mut self, deps: impl IntoIterator<Item = S>) -> Self {
        self.depends_on
            .extend(deps.into_iter().map(|s| s.as_ref().to_owned()));
        self
    }

    fn build(self, table: &str, field_names: &[&str]) -> Result<Field<M>> {
        let name = Ident::for_what(&self.name, "cached field name")?;
        let col = |given: Option<String>, default: String, what| match given {
            Some(g) => Ident::for_what(&g, what),
            None => Ident::for_what(&default, what),
        };
        let n = &self.name;
        let columns = FieldColumns {
            value: col(self.value_column, format!("cached_{n}"), "cached column")?,
            needed: col(
                self.needed_column,
                format!("{n}_recalculation_needed"),
                "recalculation-needed column",
            )?,
            expires: if self.temporal {
                Some(col(
                    self.expires_column,
                    format!("{n}_expires_after"),
                    "expires-after column",
                )?)
            } else {
                None
            },
            version: Ident::for_what(&format!("{n}_recalculation_version"), "column")?,
            stale_since: Ident::for_what(&format!("{n}_stale_since"), "column")?,
            next_attempt: Ident::for_what(&format!("{n}_next_attempt_at"), "column")?,
            attempts: Ident::for_what(&format!("{n}_attempts"), "column")?,
            last_error: Ident::for_what(&format!("{n}_last_error"), "column")?,
        };
        let calculate_many = match self.calculate_many {
            Some((t, _)) if t != self.sql_type => {
                return Err(Error::Declaration {
                    model: table.to_owned(),
                    reason: format!(
                        "calculate_many of field {n} returns {} values but the field holds {}",
                        t.name(),
                        self.sql_type.name()
                    ),
                });
            }
            Some((_, f)) => Some(f),
            None => None,
        };
        let depends_on = self
            .depends_on
            .iter()
            .map(|d| {
                Dependency::parse(d, field_names).map_err(|e| match e {
                    Error::InvalidDependency { path, reason, .. } => Error::InvalidDependency {
                        field: format!("{table}.{n}"),
                        path,
                        reason,
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Field {
            name,
            sql_type: self.sql_type,
            columns,
            calculate: self.calculate,
            calculate_many,
            after: self.after,
            depends_on,
            timeout: self.timeout,
            mode: self.mode,
            slot: self.slot,
        })
    }
}

/// A model's validated declaration: its table, primary key and cached fields.
///
/// ```
/// use cached_fields::{Cached, Ctx, BoxError, model::{Field, Model}};
/// use futures::future::BoxFuture;
///
/// struct Item { id: i64, doubled: Cached<i64> }
/// fn calc<'a>(m: &'a Item, _: &'a mut Ctx<'_>) -> BoxFuture<'a, Result<i64, BoxError>> {
///     Box::pin(async move { Ok(m.id * 2) })
/// }
/// let model = Model::<Item>::builder("items")
///     .primary_key("id")
///     .field(Field::builder("doubled", |m: &Item| &m.doubled, calc))
///     .build()
///     .unwrap();
/// assert_eq!(model.fields()[0].columns().value.as_str(), "cached_doubled");
///
/// let bad = Model::<Item>::builder("items; --").primary_key("id").build();
/// assert!(bad.unwrap_err().to_string().contains("items; --"));
/// ```
pub struct Model<M> {
    decoders: Decoders<M>,
    table: Ident,
    primary_key: Ident,
    key_type: SqlType,
    fields: Vec<Field<M>>,
    order: Vec<usize>,
    select_list: String,
}

impl<M> fmt::Debug for Model<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("table", &self.table)
            .field("primary_key", &self.primary_key)
            .field("fields", &self.fields)
            .finish()
    }
}

impl<M> Model<M> {
    /// Starts declaring a model on `table`.
    pub fn builder(table: &str) -> ModelBuilder<M> {
        ModelBuilder {
            table: table.to_owned(),
            primary_key: "id".to_owned(),
            key_type: SqlType::Int,
            decoders: Decoders::none(),
            columns: None,
            fields: Vec::new(),
        }
    }
    /// The table.
    pub fn table(&self) -> &Ident {
        &self.table
    }
    /// The primary-key column.
    pub fn primary_key(&self) -> &Ident {
        &self.primary_key
    }
    /// How the primary key is bound and read (see [`PrimaryKey`](crate::PrimaryKey)).
    pub fn key_type(&self) -> SqlType {
        self.key_type
    }
    /// How rows are read on each backend.
    pub fn decoders(&self) -> &Decoders<M> {
        &self.decoders
    }
    /// The cached fields, in declaration order.
    pub fn fields(&self) -> &[Field<M>] {
        &self.fields
    }
    /// The select list that loads a row: every declared column, or `*` when
    /// the plain columns were not declared (see [`ModelBuilder::columns`]).
    pub fn select_list(&self) -> &str {
        &self.select_list
    }
    /// Field indexes in dependency order: each after the fields it depends on.
    pub fn order(&self) -> &[usize] {
        &self.order
    }
    /// The field called `name`.
    pub fn field(&self, name: &str) -> Result<&Field<M>> {
        self.fields
            .iter()
            .find(|f| f.name.as_str() == name)
            .ok_or_else(|| {
                Error::declaration(self.table.as_str(), format!("no cached field {name:?}"))
            })
    }
}

/// Declares a model; see [`Model::builder`].
#[must_use = "a model builder declares nothing until built"]
pub struct ModelBuilder<M> {
    decoders: Decoders<M>,
    table: String,
    primary_key: String,
    key_type: SqlType,
    columns: Option<Vec<String>>,
    fields: Vec<FieldBuilder<M>>,
}

impl<M> fmt::Debug for ModelBuilder<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ModelBuilder")
            .field("table", &self.table)
            .finish_non_exhaustive()
    }
}

impl<M> ModelBuilder<M> {
    /// The primary-key column (default `id`; an integer).
    pub fn primary_key(mut self, column: &str) -> Self {
        self.primary_key = column.to_owned();
        self
    }
    /// The primary key's Rust type, when it is not `i64`: one of the
    /// [`PrimaryKey`](crate::PrimaryKey) types.
    ///
    /// ```
    /// use cached_fields::{SqlType, model::Model};
    /// struct Doc;
    /// let model = Model::<Doc>::builder("docs").primary_key("slug").key::<String>().build().unwrap();
    /// assert_eq!(model.key_type(), SqlType::Text);
    /// ```
    pub fn key<K: crate::PrimaryKey>(mut self) -> Self {
        self.key_type = K::SQL_TYPE;
        self
    }
    /// [`key`](Self::key) with the model's own key type (the derive's: a
    /// wrong key type is then reported once, at `type Key`).
    #[doc(hidden)]
    pub fn key_of_model(mut self) -> Self
    where
        M: CachedModel,
    {
        self.key_type = <M::Key as crate::PrimaryKey>::SQL_TYPE;
        self
    }
    /// How rows are read on each backend (the derive sets
    /// [`Decoders::all`]; the default reads none: such a model can be
    /// declared and migrated, not loaded).
    pub fn rows(mut self, decoders: Decoders<M>) -> Self {
        self.decoders = decoders;
        self
    }
    /// The plain columns the struct reads (the derive lists its fields).
    /// With them, rows load with an explicit select list rather than `*`,
    /// which stays valid when a migration adds columns to the table.
    pub fn columns<S: AsRef<str>>(mut self, columns: impl IntoIterator<Item = S>) -> Self {
        self.columns = Some(columns.into_iter().map(|c| c.as_ref().to_owned()).collect());
        self
    }
    /// Adds a cached field.
    pub fn field(mut self, field: FieldBuilder<M>) -> Self {
        self.fields.push(field);
        self
    }
    /// Validates every name and returns the declaration.
    pub fn build(self) -> Result<Model<M>> {
        let table = Ident::for_what(&self.table, "table name")?;
        let primary_key = Ident::for_what(&self.primary_key, "primary-key column")?;
        let names: Vec<String> = self.fields.iter().map(|f| f.name.clone()).collect();
        let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let fields = self
            .fields
            .into_iter()
            .map(|f| f.build(table.as_str(), &name_refs))
            .collect::<Result<Vec<_>>>()?;
        let deps: Vec<Vec<usize>> = fields
            .iter()
            .map(|f| {
                f.depends_on
                    .iter()
                    .filter_map(|d| match d {
                        Dependency::Field(n) => name_refs.iter().position(|x| *x == n.as_str()),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let order = depends::order(table.as_str(), &name_refs, &deps)?;
        let select_list = match &self.columns {
            None => "*".to_owned(),
            Some(plain) => {
                let mut cols = plain
                    .iter()
                    .map(|c| Ident::for_what(c, "column").map(|i| i.quoted()))
                    .collect::<Result<Vec<_>>>()?;
                if !plain.contains(&self.primary_key) {
                    cols.insert(0, primary_key.quoted());
                }
                let cached: Vec<String> = fields
                    .iter()
                    .flat_map(|f| f.columns.decoded())
                    .map(Ident::quoted)
                    .collect();
                cols.extend(cached);
                cols.join(", ")
            }
        };
        let mut seen = std::collections::HashSet::new();
        for col in std::iter::once(&primary_key).chain(fields.iter().flat_map(|f| f.columns.all()))
        {
            if !seen.insert(col.as_str()) {
                return Err(Error::declaration(
                    table.as_str(),
                    format!("column {col} is used twice"),
                ));
            }
        }
        Ok(Model {
            decoders: self.decoders,
            table,
            primary_key,
            key_type: self.key_type,
            fields,
            order,
            select_list,
        })
    }
}

/// The bookkeeping of a [`Cached`], behind its mutex.
#[derive(Debug, Clone)]
struct State<T> {
    /// The current value when it is not the one in `Cached::settled`.
    value: Option<T>,
    /// Whether the current value is the one in `Cached::settled`.
    settled: bool,
    needed: bool,
    expires_after: Option<DateTime<Utc>>,
    version: i64,
    attempts: i32,
    /// Flagged by this process's `flag_F_as_stale` (maybe inside a
    /// transaction that was then rolled back), not as loaded.
    flagged_here: bool,
}

/// `Cached::expires` when there is no expiry.
const NO_EXPIRY: i64 = i64::MIN;

fn expiry_micros(e: Option<DateTime<Utc>>) -> i64 {
    e.map_or(NO_EXPIRY, |e| e.timestamp_micros())
}

/// Holds a cached field's stored value and bookkeeping, as loaded with its row.
///
/// Read it through the accessor the derive generates (`lamp.total_weight(&db)`),
/// which recalculates when the value is stale; [`Cached::stored`] gives the
/// stored value without that (the seed's `cached_F`).
///
/// A fresh value is read without taking a lock: the first value the holder
/// gets (loaded or calculated) is kept in a set-once cell, and an atomic
/// flag says whether it is still the current, unflagged value. A later
/// value (a second recalculation of the same in-memory row) lives behind the
/// mutex with the bookkeeping.
///
/// ```
/// use cached_fields::Cached;
/// let c: Cached<i64> = Cached::default();
/// assert_eq!(c.stored(), None);
/// assert!(c.recalculation_needed());
/// ```
pub struct Cached<T> {
    /// The first value this holder got; never replaced.
    settled: OnceLock<T>,
    /// `settled` holds the current value, and it is not flagged.
    fast: AtomicBool,
    /// The expiry in microseconds since the epoch, or [`NO_EXPIRY`].
    expires: AtomicI64,
    state: Mutex<State<T>>,
}

impl<T> Default for Cached<T> {
    fn default() -> Self {
        Cached {
            settled: OnceLock::new(),
            fast: AtomicBool::new(false),
            expires: AtomicI64::new(NO_EXPIRY),
            state: Mutex::new(State {
                value: None,
                settled: false,
                needed: true,
                expires_after: None,
                version: 0,
                attempts: 0,
                flagged_here: false,
            }),
        }
    }
}

impl<T: Clone> Clone for Cached<T> {
    fn clone(&self) -> Self {
        let (value, mut state) = self.current();
        state.value = value;
        Cached::from_state(state)
    }
}

impl<T: fmt::Debug> fmt::Debug for Cached<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        let value = if s.settled {
            self.settled.get()
        } else {
            s.value.as_ref()
        };
        f.debug_struct("Cached")
            .field("value", &value)
            .field("recalculation_needed", &s.needed)
            .field("expires_after", &s.expires_after)
            .finish()
    }
}

impl<T> Cached<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // The state is plain data, valid after any panic: recover it.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A holder whose current value is `state.value`, put in the set-once
    /// cell.
    fn from_state(mut state: State<T>) -> Self {
        let settled = OnceLock::new();
        if let Some(v) = state.value.take() {
            let _ = settled.set(v);
            state.settled = true;
        } else {
            state.settled = false;
        }
        Cached {
            settled,
            fast: AtomicBool::new(state.settled && !state.needed),
            expires: AtomicI64::new(expiry_micros(state.expires_after)),
            state: Mutex::new(state),
        }
    }

    /// Makes `value` current (under the lock): into the set-once cell if it
    /// is still empty, else beside the bookkeeping.
    fn set_value(&self, s: &mut State<T>, value: Option<T>) {
        s.settled = false;
        s.value = None;
        if let Some(v) = value {
            match self.settled.set(v) {
                Ok(()) => s.settled = true,
                Err(v) => s.value = Some(v),
            }
        }
        self.publish(s);
    }

    /// Publishes the lock-free view of `s`.
    fn publish(&self, s: &State<T>) {
        self.expires
            .store(expiry_micros(s.expires_after), Ordering::Release);
        self.fast.store(s.settled && !s.needed, Ordering::Release);
    }

    /// Whether the row was flagged when loaded (or since, by this process).
    pub fn recalculation_needed(&self) -> bool {
        self.lock().needed
    }

    /// The expiry as loaded, if any.
    pub fn expires_after(&self) -> Option<DateTime<Utc>> {
        self.lock().expires_after
    }

    /// Failed worker attempts recorded when the row was loaded.
    pub fn attempts(&self) -> i32 {
        self.lock().attempts
    }

    /// Marks this in-memory copy stale (the generated `flag_F_as_stale` does).
    pub fn mark_stale(&self) {
        let mut s = self.lock();
        if !s.needed {
            s.flagged_here = true;
        }
        s.needed = true;
        self.publish(&s);
    }

    /// Whether this copy is stale only because this process flagged it: it
    /// was loaded fresh, holds a value and has not expired. The flag may
    /// have been rolled back with its transaction, so the database decides.
    pub(crate) fn stale_only_here(&self) -> bool {
        let s = self.lock();
        s.needed
            && s.flagged_here
            && (s.settled || s.value.is_some())
            && s.expires_after.is_none_or(|e| e > Utc::now())
    }

    /// The database says the row is not flagged, at `version`: this copy's
    /// value is fresh again.
    pub(crate) fn confirm_fresh(&self, version: i64) {
        let mut s = self.lock();
        s.needed = false;
        s.flagged_here = false;
        s.version = version;
        self.publish(&s);
    }
}

impl<T: Clone> Cached<T> {
    /// The current value and a copy of the bookkeeping (its `value` unset).
    fn current(&self) -> (Option<T>, State<T>) {
        let s = self.lock();
        let value = if s.settled {
            self.settled.get().cloned()
        } else {
            s.value.clone()
        };
        let state = State {
            value: None,
            settled: false,
            needed: s.needed,
            expires_after: s.expires_after,
            version: s.version,
            attempts: s.attempts,
            flagged_here: s.flagged_here,
        };
        (value, state)
    }

    /// Copies value and bookkeeping from `other` (a freshly loaded copy).
    pub fn replace_with(&self, other: &Cached<T>) {
        let (value, fresh) = other.current();
        let mut s = self.lock();
        s.needed = fresh.needed;
        s.expires_after = fresh.expires_after;
        s.version = fresh.version;
        s.attempts = fresh.attempts;
        s.flagged_here = fresh.flagged_here;
        self.set_value(&mut s, value);
    }
}

impl<T: CachedValue> Cached<T> {
    /// The stored value, stale or not; `None` if never calculated.
    pub fn stored(&self) -> Option<T> {
        self.current().0
    }

    /// The stored value if it is fresh now: not flagged, not expired (the
    /// clock is read only when there is an expiry to compare). The derived
    /// accessor returns this without touching the database.
    ///
    /// ```
    /// use cached_fields::Cached;
    /// let c: Cached<i64> = Cached::default();
    /// assert_eq!(c.fresh(), None); // never calculated
    /// ```
    #[inline]
    pub fn fresh(&self) -> Option<T> {
        if self.fast.load(Ordering::Acquire) {
            let e = self.expires.load(Ordering::Acquire);
            if e == NO_EXPIRY || e > Utc::now().timestamp_micros() {
                return self.settled.get().cloned();
            }
            return None;
        }
        let (value, s) = self.current();
        if s.needed || s.expires_after.is_some_and(|e| e <= Utc::now()) {
            return None;
        }
        value
    }

    /// Decodes the holder from a row; used by the derived `FromRow`.
    ///
    /// A stored value that cannot be read as the declared type (written by
    /// hand, or left in a column whose type was changed) is a cache miss,
    /// not an error: the holder is stale, so the value is recalculated and
    /// overwritten, and the row's other fields load as usual.
    pub fn decode<R>(row: &R, columns: &FieldColumns) -> Result<Self, sqlx::Error>
    where
        R: CachedRow,
        for<'a> &'a str: sqlx::ColumnIndex<R>,
    {
        let decoded = row
            .value_at(columns.value.as_str(), T::SQL_TYPE)
            .and_then(|v| match v {
                Value::Null(_) => Ok(T::from_null()),
                v => T::from_value(v)
                    .map(Some)
                    .map_err(|e| sqlx::Error::ColumnDecode {
                        index: columns.value.to_string(),
                        source: Box::new(e),
                    }),
            });
        let (value, unreadable) = match decoded {
            Ok(v) => (v, false),
            Err(e) => {
                tracing::warn!(column = %columns.value, error = %e,
                    "a stored value cannot be read as its declared type: treated as stale");
                (None, true)
            }
        };
        let needed = unreadable
            || match row.value_at(columns.needed.as_str(), SqlType::Bool)? {
                Value::Bool(b) => b,
                _ => true,
            };
        let expires_after = match &columns.expires {
            Some(c) => match row.value_at(c.as_str(), SqlType::Timestamp)? {
                Value::Timestamp(t) => Some(t),
                _ => None,
            },
            None => None,
        };
        let version = match row.value_at(columns.version.as_str(), SqlType::Int)? {
            Value::Int(v) => v,
            _ => 0,
        };
        let attempts = match row.value_at(columns.attempts.as_str(), SqlType::Int)? {
            Value::Int(v) => i32::try_from(v).unwrap_or(i32::MAX),
            _ => 0,
        };
        Ok(Cached::from_state(State {
            value,
            settled: false,
            needed,
            expires_after,
            version,
            attempts,
            flagged_here: false,
        }))
    }
}

impl<T: CachedValue> CachedSlot for Cached<T> {
    fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            version: s.version,
            attempts: s.attempts,
            stale: s.needed
                || !(s.settled || s.value.is_some())
                || s.expires_after.is_some_and(|e| e <= Utc::now()),
        }
    }
    fn store_fresh(&self, value: Value) -> Result<(), ValueError> {
        let v = match value {
            Value::Null(_) => T::from_null(),
            v => Some(T::from_value(v)?),
        };
        let mut s = self.lock();
        s.needed = false;
        s.flagged_here = false;
        s.attempts = 0;
        // The write-back moved the row's version on by one.
        s.version += 1;
        if s.expires_after.is_some_and(|e| e <= Utc::now()) {
            s.expires_after = None;
        }
        self.set_value(&mut s, v);
        Ok(())
    }
    fn store_expiry(&self, when: Option<DateTime<Utc>>) {
        let mut s = self.lock();
        s.expires_after = when;
        self.publish(&s);
    }
    fn stored_value(&self) -> Option<Value> {
        self.stored().map(CachedValue::into_value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn loaded(value: Option<&str>, needed: bool) -> Cached<String> {
        Cached::from_state(State {
            value: value.map(str::to_owned),
            settled: false,
            needed,
            expires_after: None,
            version: 1,
            attempts: 0,
            flagged_here: false,
        })
    }

    #[test]
    fn a_fresh_loaded_value_is_read_until_flagged() {
        let c = loaded(Some("a"), false);
        assert_eq!(c.fresh().as_deref(), Some("a"));
        c.mark_stale();
        assert_eq!(c.fresh(), None);
        assert_eq!(c.stored().as_deref(), Some("a"));
    }

    #[test]
    fn every_later_value_replaces_the_first() {
        let c = loaded(None, true);
        assert_eq!(c.fresh(), None);
        c.store_fresh(Value::Text("b".into())).unwrap();
        assert_eq!(c.fresh().as_deref(), Some("b"));
        c.mark_stale();
        assert_eq!(c.fresh(), None);
        // The set-once cell holds "b"; "c" and "d" live beside the bookkeeping.
        c.store_fresh(Value::Text("c".into())).unwrap();
        assert_eq!(c.fresh().as_deref(), Some("c"));
        c.store_fresh(Value::Text("d".into())).unwrap();
        assert_eq!(c.fresh().as_deref(), Some("d"));
        assert_eq!(c.clone().fresh().as_deref(), Some("d"));
        let other = loaded(Some("e"), true);
        c.replace_with(&other);
        assert_eq!(c.fresh(), None);
        assert_eq!(c.stored().as_deref(), Some("e"));
    }

    #[test]
    fn an_expired_value_is_not_fresh() {
        let c = loaded(Some("a"), false);
        c.store_expiry(Some(Utc::now() + chrono::Duration::hours(1)));
        assert_eq!(c.fresh().as_deref(), Some("a"));
        c.store_expiry(Some(Utc::now() - chrono::Duration::seconds(1)));
        assert_eq!(c.fresh(), None);
        assert!(c.snapshot().stale);
    }
}
