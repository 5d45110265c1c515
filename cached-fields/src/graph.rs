//! The dependency graph of every registered cached field: what each reads,
//! along which path, and which trigger guards each table on the way; the
//! order the worker recalculates fields in (a field after the cached
//! fields it reads, across tables too).

use std::fmt::{self, Write as _};

use serde::Serialize;

use crate::depends::Dependency;
use crate::schema::TableSpec;
use crate::triggers::{self, Catalog};

/// Every cached field's dependencies ([`Registry::graph`](crate::Registry::graph)).
///
/// ```
/// use cached_fields::{BoxError, Cached, CachedModel, Ctx, Registry};
///
/// #[derive(Debug, CachedModel)]
/// #[cached_model(table = "pets")]
/// struct Pet {
///     id: i64,
///     #[cached(depends_on("name", "owner_id->owners.name"))]
///     tag: Cached<String>,
/// }
/// impl Pet {
///     async fn calculate_tag(&self, _: &mut Ctx<'_>) -> Result<String, BoxError> {
///         Ok(String::new())
///     }
/// }
///
/// let graph = Registry::new().register::<Pet>().unwrap().graph();
/// let text = graph.to_string();
/// assert!(text.contains("pets.tag"), "{text}");
/// assert!(text.contains("owner_id->owners.name"), "{text}");
/// assert!(graph.dot().starts_with("digraph"));
/// ```
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Graph {
    /// Every field, in the order the worker recalculates them.
    pub fields: Vec<FieldNode>,
}

/// One cached field and what it reads.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct FieldNode {
    /// Its table.
    pub table: String,
    /// Its name.
    pub field: String,
    /// Each `depends_on` entry.
    pub dependencies: Vec<Edge>,
}

/// One dependency of a field.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Edge {
    /// As declared.
    pub declared: String,
    /// The cached field it reads, as `(table, field)`, when it ends in one.
    pub reads_field: Option<(String, String)>,
    /// The table each write of which can flag the field, with the columns
    /// watched there and the triggers that do it.
    pub guards: Vec<Guard>,
}

/// Writes to one table that flag a field.
#[derive(Debug, Clone, Serialize)]
#[non_exhaustive]
pub struct Guard {
    /// The table written.
    pub table: String,
    /// Whether inserting or deleting a row of it flags the field (a table
    /// on a path; the field's own table flags new rows anyway).
    pub rows: bool,
    /// The columns whose update flags the field.
    pub watches: Vec<String>,
    /// The triggers' names: for a field's own row, the one trigger on
    /// every backend; for a table on a path, a set per field and path
    /// (SQLite's), each backend adding its own for replacements or
    /// truncations.
    pub triggers: Vec<String>,
    /// For a table on a path, where a backend guards the table with one
    /// statement trigger per event for every field reached through it
    /// (PostgreSQL), those triggers' names instead; empty for an own row.
    pub table_triggers: Vec<String>,
}

impl Graph {
    pub(crate) fn of(specs: &[TableSpec]) -> Self {
        let catalog = Catalog::default().with_models(specs);
        let mut fields = Vec::new();
        for (e, f) in order(specs) {
            let spec = &specs[e];
            let field = &spec.fields[f];
            let reaches = triggers::reaches(spec, field, &catalog);
            let own = triggers::own_dependency(spec, field);
            let dependencies = field
                .depends_on
                .iter()
                .map(|d| {
                    let mut guards = Vec::new();
                    let own_guard = |cols: Vec<String>| Guard {
                        table: spec.table.to_string(),
                        rows: false,
                        watches: cols,
                        triggers: own.iter().map(|(n, _)| n.to_string()).collect(),
                        table_triggers: Vec::new(),
                    };
                    let reads_field = match d {
                        Dependency::Column(c) => {
                            guards.push(own_guard(vec![c.to_string()]));
                            None
                        }
                        Dependency::Field(n) => {
                            let col = spec
                                .fields
                                .iter()
                                .find(|o| o.name == *n)
                                .map_or_else(|| n.to_string(), |o| o.columns.value.to_string());
                            guards.push(own_guard(vec![col]));
                            Some((spec.table.to_string(), n.to_string()))
                        }
                        Dependency::Path(p) => {
                            if let Some(crate::depends::Hop::Forward { foreign_key, .. }) =
                                p.hops.first()
                            {
                                guards.push(own_guard(vec![foreign_key.to_string()]));
                            }
                            let links = triggers::links(p, &spec.primary_key, &catalog);
                            for j in 1..=links.len() {
                                if let Some(r) = reaches.iter().find(|r| r.links() == &links[..j]) {
                                    guards.push(Guard {
                                        table: r.table.to_string(),
                                        rows: true,
                                        watches: r
                                            .watched
                                            .iter()
                                            .map(ToString::to_string)
                                            .collect(),
                                        triggers: ["ins", "del", "upd"]
                                            .iter()
                                            .map(|k| r.name(k).to_string())
                                            .collect(),
                                        table_triggers: ["ins", "del", "upd"]
                                            .iter()
                                            .map(|k| {
                                                triggers::table_trigger_name(k, &r.table)
                                                    .to_string()
                                            })
                                            .collect(),
                                    });
                                }
                            }
                            let last = p.hops.last().map(crate::depends::Hop::table);
                            last.and_then(|t| {
                                specs.iter().find(|s| s.table == *t).and_then(|s| {
                                    s.fields
                                        .iter()
                                        .find(|o| o.name == p.column)
                                        .map(|o| (s.table.to_string(), o.name.to_string()))
                                })
                            })
                        }
                    };
                    Edge {
                        declared: d.to_string(),
                        reads_field,
                        guards,
                    }
                })
                .collect();
            fields.push(FieldNode {
                table: spec.table.to_string(),
                field: field.name.to_string(),
                dependencies,
            });
        }
        Graph { fields }
    }

    /// The graph in Graphviz's DOT language: a node per field (and per
    /// column read), an edge per dependency labelled with its path.
    pub fn dot(&self) -> String {
        let mut out = String::from("digraph cached_fields {\n  rankdir=LR;\n");
        for n in &self.fields {
            let _ = writeln!(
                out,
                "  \"{t}.{f}\" [shape=box, style=bold];",
                t = n.table,
                f = n.field
            );
        }
        for n in &self.fields {
            for d in &n.dependencies {
                let from = match &d.reads_field {
                    Some((t, f)) => format!("{t}.{f}"),
                    None => {
                        let table = d
                            .guards
                            .last()
                            .map_or(n.table.as_str(), |g| g.table.as_str());
                        let column = d.declared.rsplit('.').next().unwrap_or_default();
                        format!("{table}.{column}")
                    }
                };
                let guarded: Vec<&str> = d.guards.iter().map(|g| g.table.as_str()).collect();
                let _ = writeln!(
                    out,
                    "  \"{from}\" -> \"{t}.{f}\" [label=\"{label}\\nguarded on {tables}\"];",
                    t = n.table,
                    f = n.field,
                    label = d.declared.replace('"', "'"),
                    tables = guarded.join(", "),
                );
            }
        }
        out.push_str("}\n");
        out
    }
}

impl fmt::Display for Graph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for n in &self.fields {
            writeln!(f, "{}.{}", n.table, n.field)?;
            for d in &n.dependencies {
                match &d.reads_field {
                    Some((t, c)) => writeln!(f, "  {}  (cached field {t}.{c})", d.declared)?,
                    None => writeln!(f, "  {}", d.declared)?,
                }
                for g in &d.guards {
                    write!(
                        f,
                        "    on {}: {}update of {} by {}",
                        g.table,
                        if g.rows { "insert, delete, " } else { "" },
                        g.watches.join(", "),
                        g.triggers.join(", ")
                    )?;
                    if g.table_triggers.is_empty() {
                        writeln!(f)?;
                    } else {
                        writeln!(
                            f,
                            " on SQLite, by {} on PostgreSQL",
                            g.table_triggers.join(", ")
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

/// Every field as `(spec index, field index)`, in declaration order, and
/// for each the indexes (into that list) of the cached fields it reads —
/// its own row's chain, and other tables' fields at the end of a path. A
/// field reading itself along a path (a tree) is not an edge.
fn nodes(specs: &[TableSpec]) -> (Vec<(usize, usize)>, Vec<Vec<usize>>) {
    let nodes: Vec<(usize, usize)> = specs
        .iter()
        .enumerate()
        .flat_map(|(e, s)| s.order.iter().map(move |&f| (e, f)))
        .collect();
    let deps = nodes
        .iter()
        .map(|&n| {
            upstream(specs, n)
                .into_iter()
                .filter(|&up| up != n)
                .filter_map(|up| nodes.iter().position(|&m| m == up))
                .collect()
        })
        .collect();
    (nodes, deps)
}

/// Every field as `(spec index, field index)`, each after the cached fields
/// it reads. With a cycle between fields (which `migrate` refuses, naming
/// it), the declaration order.
pub(crate) fn order(specs: &[TableSpec]) -> Vec<(usize, usize)> {
    let (nodes, deps) = nodes(specs);
    match crate::depends::topological(&deps) {
        Ok(order) => order.into_iter().map(|i| nodes[i]).collect(),
        Err(_) => nodes,
    }
}

/// The fields, as (`table`, `field`), that read a cached field along a
/// path: the worker calculates them after what they read (see [`order`]),
/// in their own batches, never ahead with a batch of another field of
/// their row.
pub(crate) fn reading_cached_along_paths(
    specs: &[TableSpec],
) -> std::collections::HashSet<(String, String)> {
    specs
        .iter()
        .enumerate()
        .flat_map(|(e, spec)| spec.fields.iter().map(move |f| (e, spec, f)))
        .filter(|(e, _, f)| {
            f.depends_on
                .iter()
                .any(|d| matches!(d, Dependency::Path(_)) && reads(specs, *e, d).is_some())
        })
        .map(|(_, spec, f)| (spec.table.to_string(), f.name.to_string()))
        .collect()
}

/// Every field that reads `(e, f)`, directly or through others, as (spec
/// index, field index).
pub(crate) fn downstream(specs: &[TableSpec], at: (usize, usize)) -> Vec<(usize, usize)> {
    let all: Vec<(usize, usize)> = specs
        .iter()
        .enumerate()
        .flat_map(|(e, s)| (0..s.fields.len()).map(move |f| (e, f)))
        .collect();
    let mut out = vec![at];
    let mut i = 0;
    while let Some(&up) = out.get(i) {
        for &n in &all {
            if !out.contains(&n) && upstream(specs, n).contains(&up) {
                out.push(n);
            }
        }
        i += 1;
    }
    out.remove(0);
    out
}

/// The cached fields field `n` reads directly.
fn upstream(specs: &[TableSpec], (e, f): (usize, usize)) -> Vec<(usize, usize)> {
    specs[e].fields[f]
        .depends_on
        .iter()
        .filter_map(|d| reads(specs, e, d))
        .collect()
}

/// The cached field, as (spec index, field index), that dependency `d` of
/// a field of spec `e` reads, if it reads one.
fn reads(specs: &[TableSpec], e: usize, d: &Dependency) -> Option<(usize, usize)> {
    match d {
        Dependency::Field(n) => specs[e]
            .fields
            .iter()
            .position(|o| o.name == *n)
            .map(|i| (e, i)),
        Dependency::Path(p) => {
            let t = p.hops.last()?.table();
            let te = specs.iter().position(|s| s.table == *t)?;
            let tf = specs[te].fields.iter().position(|o| o.name == p.column)?;
            Some((te, tf))
        }
        Dependency::Column(_) => None,
    }
}

/// A cycle between distinct fields through paths: the table of its first
/// field, and the cycle as `a.x -> b.y -> a.x`.
pub(crate) fn cycle(specs: &[TableSpec]) -> Option<(String, String)> {
    let (nodes, deps) = nodes(specs);
    let cycle = crate::depends::topological(&deps).err()?;
    let names: Vec<String> = cycle
        .iter()
        .map(|&i| {
            let (e, f) = nodes[i];
            format!("{}.{}", specs[e].table, specs[e].fields[f].name)
        })
        .collect();
    let (e, _) = nodes[cycle[0]];
    Some((specs[e].table.to_string(), names.join(" -> ")))
}
