//! Dependency declarations (`depends_on`): parsing, and the order they
//! impose on a model's fields.

use std::fmt;

use crate::error::{Error, Result};
use crate::ident::Ident;

/// What a cached field depends on; a change to it flags the field.
///
/// Written as text in `depends_on(..)`: a column or cached field of the
/// field's own row, or a path through foreign keys ending in a column (or
/// a cached field) of the rows it reaches. A path is hops joined by `.`,
/// each naming the foreign key it follows, then the column:
///
/// | hop | follows |
/// |---|---|
/// | `lamppost_id->lampposts` | this table's foreign key `lamppost_id` to the `lampposts` row it points at (its `id`; `lampposts(key)` names another referenced column) |
/// | `pigeons(lamppost_id)` | the `pigeons` rows whose foreign key `lamppost_id` points at this table's row (its primary key; `pigeons(lamppost_code->code)` names another referenced column) |
///
/// | text | meaning |
/// |---|---|
/// | `"weight"` | a column of the field's own row |
/// | `"total_weight"` | another cached field of the same model (a chain) |
/// | `"pigeons(lamppost_id).weight"` | `weight` of the pigeons on this lamppost |
/// | `"lamppost_id->lampposts.first_name"` | `first_name` of this pigeon's lamppost |
/// | `"lampposts(street_id).pigeons(lamppost_id).weight"` | the weights of the pigeons on this street's lampposts (two hops) |
/// | `"post_tags(post_id).tag_id->tags.name"` | the names of this post's tags, through a join table |
/// | `"parent_id->nodes.path"` | the parent node's cached `path` (a tree) |
///
/// ```
/// use cached_fields::depends::Dependency;
/// let d = Dependency::parse("lampposts(street_id).pigeons(lamppost_id).weight", &[]).unwrap();
/// assert_eq!(d.to_string(), "lampposts(street_id).pigeons(lamppost_id).weight");
/// let e = Dependency::parse("lamppost.street.name", &[]).unwrap_err();
/// assert!(e.to_string().contains("hop 1 (lamppost)"), "{e}");
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dependency {
    /// A column of the field's own row.
    Column(Ident),
    /// Another cached field of the same model.
    Field(Ident),
    /// A column (or cached field) of the rows a path of foreign keys reaches.
    Path(Path),
}

/// A path through foreign keys to a column: `hop.hop….column`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Path {
    /// The hops, from the field's own table outwards (at least one).
    pub hops: Vec<Hop>,
    /// The column (or cached field) of the last hop's table.
    pub column: Ident,
}

/// One hop of a [`Path`]: from the table it leaves to the table it names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Hop {
    /// `foreign_key->table` or `foreign_key->table(referenced)`: the row
    /// the leaving table's foreign key points at.
    Forward {
        /// The leaving table's foreign-key column.
        foreign_key: Ident,
        /// The table it references.
        table: Ident,
        /// The column it references (default `id`).
        referenced: Ident,
    },
    /// `table(foreign_key)` or `table(foreign_key->referenced)`: the rows
    /// of `table` whose foreign key points at the leaving table's row.
    Reverse {
        /// The referencing table.
        table: Ident,
        /// Its foreign-key column.
        foreign_key: Ident,
        /// The leaving table's column it references, where named (else
        /// the leaving table's primary key: its model's, or `id`).
        referenced: Option<Ident>,
    },
}

impl Hop {
    /// The table this hop arrives at.
    pub fn table(&self) -> &Ident {
        match self {
            Hop::Forward { table, .. } | Hop::Reverse { table, .. } => table,
        }
    }

    /// The column of the leaving table the join reads, given that table's
    /// primary key.
    pub fn near<'a>(&'a self, leaving_key: &'a Ident) -> &'a Ident {
        match self {
            Hop::Forward { foreign_key, .. } => foreign_key,
            Hop::Reverse { referenced, .. } => referenced.as_ref().unwrap_or(leaving_key),
        }
    }

    /// The column of the arrival table the join reads.
    pub fn far(&self) -> &Ident {
        match self {
            Hop::Forward { referenced, .. } => referenced,
            Hop::Reverse { foreign_key, .. } => foreign_key,
        }
    }
}

impl fmt::Display for Hop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Hop::Forward {
                foreign_key,
                table,
                referenced,
            } if referenced.as_str() == "id" => write!(f, "{foreign_key}->{table}"),
            Hop::Forward {
                foreign_key,
                table,
                referenced,
            } => write!(f, "{foreign_key}->{table}({referenced})"),
            Hop::Reverse {
                table,
                foreign_key,
                referenced: None,
            } => write!(f, "{table}({foreign_key})"),
            Hop::Reverse {
                table,
                foreign_key,
                referenced: Some(referenced),
            } => write!(f, "{table}({foreign_key}->{referenced})"),
        }
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for h in &self.hops {
            write!(f, "{h}.")?;
        }
        write!(f, "{}", self.column)
    }
}

impl fmt::Display for Dependency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dependency::Column(c) | Dependency::Field(c) => write!(f, "{c}"),
            Dependency::Path(p) => write!(f, "{p}"),
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

/// The grammar, for messages.
const GRAMMAR: &str = "a hop is foreign_key->table (the row this table's foreign key points at) \
     or table(foreign_key) (the rows of table whose foreign key points here; \
     foreign_key->table(column) and table(foreign_key->column) name a referenced column other \
     than the key), and a path is \
     hops joined by `.` ending in a column, e.g. lamppost_id->lampposts.street_id->streets.name";

impl Dependency {
    /// Parses one `depends_on` entry; `fields` are the model's cached field
    /// names, which make a bare name a chain rather than a column.
    pub fn parse(text: &str, fields: &[&str]) -> Result<Self> {
        let segments: Vec<&str> = text.trim().split('.').map(str::trim).collect();
        let Some((column, hops)) = segments.split_last() else {
            return Err(bad(text, "empty dependency"));
        };
        let ident = |s: &str, what: &'static str, place: &str| {
            Ident::for_what(s.trim(), what).map_err(|_| {
                bad(
                    text,
                    &format!("{place}{what} {:?} is not a plain SQL identifier", s.trim()),
                )
            })
        };
        if hops.is_empty() {
            if column.contains("->") || column.contains('(') {
                return Err(bad(
                    text,
                    &format!("a path ends in a column: missing `.column` ({GRAMMAR})"),
                ));
            }
            let name = ident(column, "column", "")?;
            return Ok(if fields.contains(&name.as_str()) {
                Dependency::Field(name)
            } else {
                Dependency::Column(name)
            });
        }
        let mut parsed = Vec::with_capacity(hops.len());
        for (i, hop) in hops.iter().enumerate() {
            let place = format!("hop {} ({hop}): ", i + 1);
            let wrong = |why: &str| bad(text, &format!("{place}{why}"));
            let parens = |s: &str| -> Result<(String, Option<String>)> {
                match s.split_once('(') {
                    None if s.contains(')') => Err(wrong("unbalanced `)`")),
                    None => Ok((s.to_owned(), None)),
                    Some((t, r)) => {
                        let inner = r
                            .strip_suffix(')')
                            .ok_or_else(|| wrong("expected `)` at the end of the hop"))?;
                        Ok((t.to_owned(), Some(inner.to_owned())))
                    }
                }
            };
            let before_paren = hop.split('(').next().unwrap_or_default();
            if let Some((fk, target)) = before_paren
                .contains("->")
                .then(|| hop.split_once("->"))
                .flatten()
            {
                let (table, referenced) = parens(target)?;
                parsed.push(Hop::Forward {
                    foreign_key: ident(fk, "foreign key column", &place)?,
                    table: ident(&table, "table", &place)?,
                    referenced: ident(
                        referenced.as_deref().unwrap_or("id"),
                        "referenced column",
                        &place,
                    )?,
                });
            } else {
                let (table, fk) = parens(hop)?;
                let Some(fk) = fk else {
                    return Err(wrong(&format!(
                        "names no foreign key to follow: write foreign_key->{hop} for the row \
                         this table's foreign key points at, or {hop}(foreign_key) for the rows \
                         pointing here ({GRAMMAR})"
                    )));
                };
                let (fk, referenced) = match fk.split_once("->") {
                    Some((fk, to)) => (fk, Some(ident(to, "referenced column", &place)?)),
                    None => (fk.as_str(), None),
                };
                parsed.push(Hop::Reverse {
                    table: ident(&table, "table", &place)?,
                    foreign_key: ident(fk, "foreign key column", &place)?,
                    referenced,
                });
            }
        }
        if column.contains("->") || column.contains('(') {
            return Err(bad(
                text,
                &format!("a path ends in a column: missing `.column` after {column:?} ({GRAMMAR})"),
            ));
        }
        Ok(Dependency::Path(Path {
            hops: parsed,
            column: ident(column, "column", "the end of the path: ")?,
        }))
    }
}

/// Orders fields so each comes after the fields it depends on; a cycle is
/// an error naming its path. `deps[i]` lists the indexes field `i` depends on.
pub(crate) fn order(table: &str, names: &[&str], deps: &[Vec<usize>]) -> Result<Vec<usize>> {
    topological(deps).map_err(|cycle| {
        let path: Vec<&str> = cycle.iter().map(|&c| names[c]).collect();
        Error::declaration(table, format!("dependency cycle: {}", path.join(" -> ")))
    })
}

/// Nodes `0..deps.len()` so each comes after the nodes it lists in `deps`
/// (depth first, in index order); or the first cycle found, as the nodes
/// on it with the first repeated at the end.
pub(crate) fn topological(deps: &[Vec<usize>]) -> std::result::Result<Vec<usize>, Vec<usize>> {
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
    let mut marks = vec![Mark::New; deps.len()];
    let mut out = Vec::with_capacity(deps.len());
    for i in 0..deps.len() {
        visit(i, deps, &mut marks, &mut Vec::new(), &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_form_and_prints_it_back() {
        let f = ["total_weight"];
        assert!(matches!(
            Dependency::parse("weight", &f).unwrap(),
            Dependency::Column(_)
        ));
        assert!(matches!(
            Dependency::parse("total_weight", &f).unwrap(),
            Dependency::Field(_)
        ));
        for text in [
            "pigeons(lamppost_id).weight",
            "lamppost_id->lampposts.first_name",
            "code->places(code).name",
            "places(place_code->code).name",
            "lampposts(street_id).pigeons(lamppost_id).weight",
            "lamppost_id->lampposts.street_id->streets.name",
            "post_tags(post_id).tag_id->tags.name",
            "lamppost_id->lampposts.pigeons(lamppost_id).weight",
            "parent_id->nodes.path",
        ] {
            let d = Dependency::parse(&format!(" {text} "), &f).unwrap();
            assert_eq!(d.to_string(), text);
        }
        let Dependency::Path(p) =
            Dependency::parse("post_tags(post_id).tag_id->tags.name", &[]).unwrap()
        else {
            panic!("a path")
        };
        assert_eq!(p.hops.len(), 2);
        let pk = Ident::new("id").unwrap();
        assert_eq!(p.hops[0].near(&pk).as_str(), "id");
        assert_eq!(p.hops[0].far().as_str(), "post_id");
        assert_eq!(p.hops[1].near(&pk).as_str(), "tag_id");
        assert_eq!(p.hops[1].far().as_str(), "id");
        let Dependency::Path(p) = Dependency::parse("places(place_code->code).name", &[]).unwrap()
        else {
            panic!("a path")
        };
        assert_eq!(p.hops[0].near(&pk).as_str(), "code");
        assert_eq!(p.hops[0].far().as_str(), "place_code");
    }

    #[test]
    fn a_wrong_path_names_its_hop() {
        for (text, says) in [
            (
                "lamppost.street.name",
                "hop 1 (lamppost): names no foreign key",
            ),
            (
                "lamppost_id->lampposts.street.name",
                "hop 2 (street): names no foreign key",
            ),
            ("pigeons(lamppost_id)", "missing `.column`"),
            ("pigeons(lamppost_id.weight", "hop 1 (pigeons(lamppost_id)"),
            (
                "pigeons(lamp post).weight",
                "hop 1 (pigeons(lamp post)): foreign key column",
            ),
            ("pigeons(x).w;drop", "column \"w;drop\""),
            ("a->b.c->d", "missing `.column`"),
            (
                "pigeons(lamppost_id->).weight",
                "hop 1 (pigeons(lamppost_id->)): referenced column \"\"",
            ),
            ("", "column \"\""),
        ] {
            let e = Dependency::parse(text, &[]).unwrap_err().to_string();
            assert!(e.contains(&format!("{text:?}")), "{e}");
            assert!(e.contains(says), "{text}: {e}");
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
