//! The registry: a passive catalog of every model and cached field, from
//! their declarations (no name patterns), which the worker and the schema
//! tools read. It calls neither: the worker's operations on a model are
//! the model's declaration itself, type-erased (the worker implements its
//! `ModelOps` for every `Model<M>`).

use std::fmt;

use crate::db::Db;
use crate::error::Result;
use crate::model::CachedModel;
use crate::schema::{self, Migration, Problem, TableSpec};
use crate::worker::ModelOps;

/// One registered model.
#[derive(Clone)]
pub(crate) struct Entry {
    /// The model's Rust type, for messages.
    pub(crate) type_name: &'static str,
    pub(crate) spec: TableSpec,
    /// The worker's operations on the model, the model type erased.
    pub(crate) ops: &'static dyn ModelOps,
}

/// Every model the application declares. The crate root's example runs
/// `migrate` and a worker with one; here, the SQL it would install.
///
/// ```
/// # fn main() -> cached_fields::Result<()> {
/// use cached_fields::{Backend, Cached, CachedModel, Ctx, BoxError, Registry};
///
/// #[derive(Debug, CachedModel)]
/// #[cached_model(table = "items")]
/// struct Item {
///     #[cached_model(primary_key)]
///     id: i64,
///     #[cached(calculate = Item::calculate_doubled)]
///     doubled: Cached<i64>,
/// }
/// impl Item {
///     async fn calculate_doubled(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
///         Ok(self.id * 2)
///     }
/// }
///
/// let registry = Registry::new().register::<Item>()?;
/// for backend in Backend::ALL {
///     let sql = registry.sql(*backend);
///     assert!(sql.contains("\"cached_doubled\""), "{backend}: {sql}");
/// }
/// # Ok(()) }
/// ```
#[derive(Clone, Default)]
pub struct Registry {
    pub(crate) entries: Vec<Entry>,
    /// Every field as (entry, field), each after the cached fields it reads.
    pub(crate) order: Vec<(usize, usize)>,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| e.spec.table.as_str()))
            .finish()
    }
}

impl Registry {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// The primary-key type of the model on `table`.
    pub fn key_type(&self, table: &str) -> Result<crate::SqlType> {
        self.entries
            .iter()
            .find(|e| e.spec.table.as_str() == table)
            .map(|e| e.spec.key_type)
            .ok_or_else(|| crate::Error::declaration(table, "no model is registered on this table"))
    }

    /// Adds model `M`, validating its declaration. A model registered
    /// twice, or a second model on a table another model declares (whose
    /// triggers and cached columns would clash), is an error naming both.
    ///
    /// ```
    /// use cached_fields::{Cached, CachedModel, Ctx, BoxError, Registry};
    ///
    /// #[derive(Debug, CachedModel)]
    /// #[cached_model(table = "items")]
    /// struct Item {
    ///     id: i64,
    ///     doubled: Cached<i64>,
    /// }
    /// impl Item {
    ///     async fn calculate_doubled(&self, _: &mut Ctx<'_>) -> Result<i64, BoxError> {
    ///         Ok(self.id * 2)
    ///     }
    /// }
    ///
    /// let err = Registry::new().register::<Item>().unwrap().register::<Item>().unwrap_err();
    /// assert!(err.to_string().contains("registered twice"), "{err}");
    /// ```
    pub fn register<M: CachedModel>(mut self) -> Result<Self> {
        let model = M::model()?;
        let type_name = std::any::type_name::<M>();
        if let Some(other) = self.entries.iter().find(|e| e.spec.table == *model.table()) {
            let reason = if other.type_name == type_name {
                format!("model {type_name} is registered twice")
            } else {
                let shared: Vec<&str> = model
                    .fields()
                    .iter()
                    .filter(|f| other.spec.fields.iter().any(|o| o.name == *f.name()))
                    .map(|f| f.name().as_str())
                    .collect();
                let what = if shared.is_empty() {
                    String::new()
                } else {
                    format!(" (both declare {})", shared.join(", "))
                };
                format!(
                    "models {} and {type_name} both declare cached fields on this table{what}: \
                     one model per table",
                    other.type_name
                )
            };
            return Err(crate::Error::declaration(model.table().as_str(), reason));
        }
        self.entries.push(Entry {
            type_name,
            spec: TableSpec::of(model),
            ops: model,
        });
        self.order = crate::graph::order(&self.specs());
        Ok(self)
    }

    /// The model on `table` and the index of its cached field `field`.
    pub(crate) fn find(&self, table: &str, field: &str) -> Result<(&Entry, usize)> {
        let entry = self
            .entries
            .iter()
            .find(|e| e.spec.table.as_str() == table)
            .ok_or_else(|| crate::Error::declaration(table, "no such model in the registry"))?;
        let index = entry
            .spec
            .fields
            .iter()
            .position(|f| f.name.as_str() == field)
            .ok_or_else(|| {
                crate::Error::declaration(table, format!("no cached field {field:?}"))
            })?;
        Ok((entry, index))
    }

    /// Every declared field as `table.field`, in the worker's order.
    pub(crate) fn field_names(&self) -> Vec<String> {
        self.order
            .iter()
            .map(|&(e, f)| {
                let spec = &self.entries[e].spec;
                format!("{}.{}", spec.table, spec.fields[f].name)
            })
            .collect()
    }

    /// Where `table.field` comes in the worker's order (after every cached
    /// field it reads); past the end for a field not declared.
    pub(crate) fn rank(&self, table: &str, field: &str) -> usize {
        self.order
            .iter()
            .position(|&(e, f)| {
                let spec = &self.entries[e].spec;
                spec.table.as_str() == table && spec.fields[f].name.as_str() == field
            })
            .unwrap_or(usize::MAX)
    }

    /// Every field that reads `table.field`, directly or through others,
    /// as (entry, field).
    pub(crate) fn downstream(&self, table: &str, field: &str) -> Vec<(usize, usize)> {
        match self.find(table, field) {
            Ok((entry, f)) => {
                let e = self
                    .entries
                    .iter()
                    .position(|x| std::ptr::eq(x, entry))
                    .unwrap_or_default();
                crate::graph::downstream(&self.specs(), (e, f))
            }
            Err(_) => Vec::new(),
        }
    }

    /// `table.field` and every field of its row it chains on, directly or
    /// through others (a recalculation of the field stores those first
    /// where they are stale), as `(table, field)`.
    pub(crate) fn chain(&self, table: &str, field: &str) -> Vec<(String, String)> {
        let Ok((entry, i)) = self.find(table, field) else {
            return Vec::new();
        };
        let spec = &entry.spec;
        let mut out = vec![i];
        let mut at = 0;
        while let Some(&f) = out.get(at) {
            for d in &spec.fields[f].depends_on {
                if let crate::depends::Dependency::Field(n) = d
                    && let Some(u) = spec.fields.iter().position(|g| g.name == *n)
                    && !out.contains(&u)
                {
                    out.push(u);
                }
            }
            at += 1;
        }
        out.into_iter()
            .map(|f| (spec.table.to_string(), spec.fields[f].name.to_string()))
            .collect()
    }

    /// The schema view of every model.
    pub fn specs(&self) -> Vec<TableSpec> {
        self.entries.iter().map(|e| e.spec.clone()).collect()
    }

    /// Every field's dependencies, the triggers guarding each, and the
    /// order the worker recalculates fields in (see [`Graph`](crate::graph::Graph)).
    pub fn graph(&self) -> crate::graph::Graph {
        crate::graph::Graph::of(&self.specs())
    }

    /// Installs or upgrades columns, indexes and triggers; idempotent.
    /// Returns what was changed, and the rows flagged because a trigger
    /// guarding them was repaired.
    pub async fn migrate(&self, db: &Db) -> Result<Migration> {
        schema::migrate(db, &self.specs()).await
    }

    /// Lists what is missing or outdated in the database.
    pub async fn check(&self, db: &Db) -> Result<Vec<Problem>> {
        schema::check(db, &self.specs()).await
    }

    /// The whole schema as SQL text, for your own migration files.
    pub fn sql(&self, backend: crate::db::Backend) -> String {
        schema::script(backend, &self.specs())
    }

    /// The declared field named `table.field`, as `(table, field)`.
    fn field_named(&self, name: &str) -> Result<(String, String)> {
        let (table, field) = name.split_once('.').ok_or_else(|| {
            crate::Error::declaration(name, format!("{name:?} names no field: write table.field"))
        })?;
        let (entry, i) = self.find(table, field).map_err(|_| {
            crate::Error::declaration(
                table,
                format!(
                    "no cached field {name:?}; declared: {}",
                    self.field_names().join(", ")
                ),
            )
        })?;
        Ok((
            entry.spec.table.to_string(),
            entry.spec.fields[i].name.to_string(),
        ))
    }

    /// Pauses the field `table.field` in the database until [`Registry::resume`]:
    /// every worker, in any process, leaves its rows flagged within a
    /// second (reads still recalculate inline).
    ///
    /// ```no_run
    /// # async fn f(db: cached_fields::Db, registry: cached_fields::Registry) -> cached_fields::Result<()> {
    /// registry.pause(&db, "lampposts.total_weight").await?;
    /// // … invalidations stay flagged …
    /// registry.resume(&db, "lampposts.total_weight").await?; // the workers catch up
    /// # Ok(()) }
    /// ```
    pub async fn pause(&self, db: &Db, field: &str) -> Result<()> {
        let (t, f) = self.field_named(field)?;
        crate::pauses::pause(db, &t, &f).await
    }

    /// Ends a [`Registry::pause`] (holds stay until released).
    pub async fn resume(&self, db: &Db, field: &str) -> Result<()> {
        let (t, f) = self.field_named(field)?;
        crate::pauses::resume(db, &t, &f).await
    }

    /// Holds the fields (`table.field`) over a block of work: the workers
    /// leave their rows flagged until the [`Hold`](crate::pauses::Hold) is
    /// released or dropped, then recalculate each once. A hold left behind
    /// by a process that died expires by itself.
    pub async fn hold(&self, db: &Db, fields: &[&str]) -> Result<crate::pauses::Hold> {
        let named = fields
            .iter()
            .map(|f| self.field_named(f))
            .collect::<Result<Vec<_>>>()?;
        crate::pauses::Hold::take(db, named).await
    }

    /// The workers recorded by their heartbeats, live first.
    pub async fn workers(&self, db: &Db) -> Result<Vec<crate::heartbeats::WorkerStatus>> {
        crate::heartbeats::all(db).await
    }

    /// Per-field status figures.
    pub async fn status(&self, db: &Db) -> Result<Vec<crate::status::FieldStatus>> {
        crate::status::status(db, self).await
    }
}
