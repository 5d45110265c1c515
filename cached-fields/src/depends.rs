//! Dependency declarations (`depends_on`): parsing, and the order they
//! impose on a model's fields.

use std::fmt;

use crate::error::{Error, Result};
use crate::ident::Ident;

/// What a cached field depends on; a change to it flags the field.
///
/// Written as text in `depends_on(..)`:
///
/// | text | meaning |
/// |---|---|
/// | `"weight"` | a column of the field's own row |
/// | `"total_weight"` | another cached field of the same model (a chain) |
/// | `"pigeons(lamppost_id).weight"` | column `weight` of the `pigeons` rows whose foreign key `lamppost_id` points at this row |
/// | `"lamppost_id->lampposts.first_name"` | column `first_name` of the `lampposts` row this row's foreign key `lamppost_id` points at (its `id`; `lampposts(key).first_name` names another referenced column) |
///
/// ```
/// use cached_fields::depends::Dependency;
/// let d = Dependency::parse("pigeons(lamppost_id).weight", &[]).unwrap();
/// assert_eq!(d.to_string(), "pigeons(lamppost_id).weight");
/// assert!(Dependency::parse("pigeons(lamppost_id)", &[]).is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dependency {
    /// A column of the field's own row.
    Column(Ident),
    /// Another cached field of the same model.
    Field(Ident),
    /// A column of related rows: `table(foreign_key).column`.
    Related {
        /// The related (child) table.
        table: Ident,
        /// Its foreign-key column referencing this model's primary key.
        foreign_key: Ident,
        /// The column whose changes matter.
        column: Ident,
    },
    /// A column of the row this row's foreign key points at:
    /// `foreign_key->table.column` (or `foreign_key->table(referenced).column`).
    Parent {
        /// This row's foreign-key column.
        foreign_key: Ident,
        /// The referenced (parent) table.
        table: Ident,
        /// The column the foreign key references (default `id`).
        referenced: Ident,
        /// The column whose changes matter.
        column: Ident,
    },
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dependency::Column(c) | Dependency::Field(c) => write!(f, "{c}"),
            Dependency::Related {
                table,
                foreign_key,
                column,
            } => write!(f, "{table}({foreign_key}).{column}"),
            Dependency::Parent {
                foreign_key,
                table,
                referenced,
                column,
            } if referenced.as_str() == "id" => write!(f, "{foreign_key}->{table}.{column}"),
            Dependency::Parent {
                foreign_key,
                table,
                referenced,
                column,
            } => write!(f, "{foreign_key}->{table}({referenced}).{column}"),
        }
    }
}

fn bad(text: &str, why: &str) -> Error {
    Error::InvalidDependency {
        field: "(field)".to_owned(),
        path: text.to_owned(),
        reason: why.to_owned(),
    }
}

impl Dependency {
    /// Parses one `depends_on` entry; `fields` are the model's cached field
    /// names, which make a bare name a chain rather than a column.
    pub fn parse(text: &str, fields: &[&str]) -> Result<Self> {
        let text_trim = text.trim();
        let ident = |s: &str, what| {
            Ident::for_what(s.trim(), what).map_err(|_| {
                bad(
                    text,
                    &format!("{what} {:?} is not a plain SQL identifier", s.trim()),
                )
            })
        };
        // One hop forward: `fk->table.column`, `fk->table(referenced).column`.
        if let Some((fk, rest)) = text_trim.split_once("->") {
            let (target, column) = rest.rsplit_once('.').ok_or_else(|| {
                bad(
                    text,
                    "expected foreign_key->table.column: missing `.column`",
                )
            })?;
            if column.contains("->") || target.contains(['.', '>']) {
                return Err(bad(
                    text,
                    "nested dependency paths are not supported yet: one foreign key away \
                     (foreign_key->table.column or table(foreign_key).column)",
                ));
            }
            let (table, referenced) = match target.split_once('(') {
                Some((t, r)) => (
                    t,
                    r.strip_suffix(')').ok_or_else(|| {
                        bad(
                            text,
                            "expected foreign_key->table(referenced).column: missing `)`",
                        )
                    })?,
                ),
                None => (target, "id"),
            };
            return Ok(Dependency::Parent {
                foreign_key: ident(fk, "foreign key column")?,
                table: ident(table, "table")?,
                referenced: ident(referenced, "referenced column")?,
                column: ident(column, "column")?,
            });
        }
        // More than one hop (`a(b).c(d).e`, `lamppost.street.name`).
        let nested = match text_trim.split_once('(') {
            None => text_trim.contains('.'),
            Some((_, rest)) => rest
                .split_once(')')
                .is_some_and(|(_, col)| col.strip_prefix('.').unwrap_or(col).contains(['.', '('])),
        };
        if nested {
            return Err(bad(
                text,
                "nested dependency paths are not supported yet: depend on a column of this row, \
                 another cached field, or table(foreign_key).column one foreign key away",
            ));
        }
        match text_trim.split_once('(') {
            None => {
                let name = ident(text_trim, "column")?;
                if fields.contains(&name.as_str()) {
                    Ok(Dependency::Field(name))
                } else {
                    Ok(Dependency::Column(name))
                }
            }
            Some((table, rest)) => {
                let (fk, rest) = rest
                    .split_once(')')
                    .ok_or_else(|| bad(text, "expected table(foreign_key).column: missing `)`"))?;
                let column = rest.strip_prefix('.').ok_or_else(|| {
                    bad(
                        text,
                        "expected table(foreign_key).column: missing `.column`",
                    )
                })?;
                Ok(Dependency::Related {
                    table: ident(table, "table")?,
                    foreign_key: ident(fk, "foreign key column")?,
                    column: ident(column, "column")?,
                })
            }
        }
    }
}

/// Orders fields so each comes after the fields it depends on; a cycle is
/// an error naming its path. `deps[i]` lists the indexes field `i` depends on.
pub(crate) fn order(table: &str, names: &[&str], deps: &[Vec<usize>]) -> Result<Vec<usize>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        New,
        Active,
        Done,
    }
    fn visit(
        i: usize,
        deps: &[Vec<usize>],
        marks: &mut [Mark],
        stack: &mut Vec<usize>,
        out: &mut Vec<usize>,
    ) -> std::result::Result<(), Vec<usize>> {
        match marks[i] {
            Mark::Done => return Ok(()),
            Mark::Active => {
                let start = stack.iter().position(|&s| s == i).unwrap_or(0);
                let mut cycle = stack[start..].to_vec();
                cycle.push(i);
                return Err(cycle);
            }
            Mark::New => {}
        }
        marks[i] = Mark::Active;
        stack.push(i);
        for &d in &deps[i] {
            visit(d, deps, marks, stack, out)?;
        }
        stack.pop();
        marks[i] = Mark::Done;
        out.push(i);
        Ok(())
    }
    let mut marks = vec![Mark::New; names.len()];
    let mut out = Vec::with_capacity(names.len());
    for i in 0..names.len() {
        visit(i, deps, &mut marks, &mut Vec::new(), &mut out).map_err(|cycle| {
            let path: Vec<&str> = cycle.iter().map(|&c| names[c]).collect();
            Error::declaration(table, format!("dependency cycle: {}", path.join(" -> ")))
        })?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_three_forms() {
        let f = ["total_weight"];
        assert!(matches!(
            Dependency::parse("weight", &f).unwrap(),
            Dependency::Column(_)
        ));
        assert!(matches!(
            Dependency::parse("total_weight", &f).unwrap(),
            Dependency::Field(_)
        ));
        let r = Dependency::parse(" pigeons(lamppost_id).weight ", &f).unwrap();
        assert_eq!(r.to_string(), "pigeons(lamppost_id).weight");
    }

    #[test]
    fn nested_paths_say_nesting_is_not_supported_yet() {
        for nested in [
            "pigeons(lamppost_id).streets(id).name",
            "lamppost.street.name",
            "street.name",
        ] {
            let e = Dependency::parse(nested, &[]).unwrap_err().to_string();
            assert!(
                e.contains("nested dependency paths are not supported yet"),
                "{e}"
            );
            assert!(e.contains(&format!("{nested:?}")), "{e}");
        }
    }

    #[test]
    fn rejects_malformed_paths_naming_them() {
        for bad in [
            "pigeons(lamppost_id)",
            "pigeons(lamppost_id.weight",
            "pigeons(lamp post).weight",
            "pigeons(x).w;drop",
            "",
        ] {
            let e = Dependency::parse(bad, &[]).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")), "{e}");
        }
    }

    #[test]
    fn orders_and_finds_cycles() {
        let names = ["a", "b", "c"];
        assert_eq!(
            order("t", &names, &[vec![1], vec![], vec![0]]).unwrap(),
            vec![1, 0, 2]
        );
        let e = order("t", &names, &[vec![1], vec![2], vec![0]])
            .unwrap_err()
            .to_string();
        assert!(e.contains("a -> b -> c -> a"), "{e}");
        let e = order("t", &names[..1], &[vec![0]]).unwrap_err().to_string();
        assert!(e.contains("a -> a"), "{e}");
    }
}
