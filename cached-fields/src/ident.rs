//! Identifier validation and quoting: the only place that builds SQL from
//! user-chosen table and column names.
//!
//! Every table, column and generated object name passes through [`Ident::new`]
//! (which accepts only plain SQL identifiers) and is written into SQL only
//! quoted. `sql` is the crate's only caller of [`sqlx::AssertSqlSafe`]: the
//! text it receives is built from [`Ident`]s and literal SQL, never from
//! values, which are always bound.

use std::fmt;

use crate::error::{Error, Result};

use cached_fields_ident::MAX_LEN;

/// A validated SQL identifier: ASCII letters, digits and underscores, not
/// starting with a digit, at most 63 bytes.
///
/// ```
/// use cached_fields::ident::Ident;
/// let t = Ident::new("lampposts").unwrap();
/// assert_eq!(t.quoted(), "\"lampposts\"");
/// assert!(Ident::new("lampposts; DROP TABLE x").is_err());
/// assert!(Ident::new("9lives").is_err());
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Validates `name` as an identifier.
    pub fn new(name: &str) -> Result<Self> {
        Self::for_what(name, "identifier")
    }

    /// Validates `name`, saying in the error what the name is for.
    pub fn for_what(name: &str, what: &'static str) -> Result<Self> {
        if cached_fields_ident::is_plain(name) {
            Ok(Ident(name.to_owned()))
        } else {
            Err(Error::InvalidIdentifier {
                value: name.to_owned(),
                what,
            })
        }
    }

    /// A name for a generated object (index, trigger, function) from parts:
    /// the parts joined by `_`, shortened to fit 63 bytes, then a hash of
    /// the parts themselves. Distinct parts give distinct names even where
    /// the joined text is the same (table `a` with field `b_c`, table `a_b`
    /// with field `c`) or where the text had to be cut.
    ///
    /// ```
    /// use cached_fields::ident::Ident;
    /// let a = Ident::derived(&["cf_dep", "a", "b_c"]);
    /// let b = Ident::derived(&["cf_dep", "a_b", "c"]);
    /// assert_ne!(a, b);
    /// assert!(a.as_str().starts_with("cf_dep_a_b_c_"));
    /// ```
    pub fn derived(parts: &[&str]) -> Self {
        // FNV-1a over the parts with a separator no identifier contains,
        // stable across runs and builds; 40 bits of it.
        let hash = parts
            .iter()
            .flat_map(|p| p.bytes().chain([0x1f]))
            .fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
                (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
            });
        let suffix = format!("_{:010x}", hash & 0xff_ffff_ffff);
        let full = parts.join("_");
        // Identifiers are ASCII: any byte is a character boundary.
        let keep = full.len().min(MAX_LEN - suffix.len());
        Ident(format!("{}{suffix}", &full[..keep]))
    }

    /// `id`, the conventional primary key.
    pub(crate) fn id() -> Self {
        Ident("id".to_owned())
    }

    /// The name as written.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name in double quotes, ready for SQL.
    pub fn quoted(&self) -> String {
        format!("\"{}\"", self.0)
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Marks SQL text built by this crate from [`Ident`]s and literals as safe.
pub(crate) fn sql(text: String) -> sqlx::AssertSqlSafe<String> {
    sqlx::AssertSqlSafe(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_plain_names() {
        for ok in ["a", "_x", "lampposts", "cached_total_weight", "A1_b2"] {
            assert_eq!(Ident::new(ok).unwrap().as_str(), ok);
        }
    }

    #[test]
    fn rejects_everything_else() {
        for bad in [
            "",
            "1a",
            "a b",
            "a\"b",
            "a;b",
            "a-b",
            "é",
            "a.b",
            &"x".repeat(64),
        ] {
            let err = Ident::new(bad).unwrap_err();
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn derived_names_fit_and_never_collide() {
        let long = "x".repeat(60);
        let a = Ident::derived(&["cf", &long, "a"]);
        let b = Ident::derived(&["cf", &long, "b"]);
        assert!(a.as_str().len() <= MAX_LEN);
        assert_ne!(a, b);
        assert!(Ident::derived(&["cf", "t"]).as_str().starts_with("cf_t_"));
        assert_ne!(
            Ident::derived(&["cf_dep", "a", "b_c"]),
            Ident::derived(&["cf_dep", "a_b", "c"])
        );
        assert_ne!(
            Ident::derived(&["cf_bump", "a", "b_c_recalculation_needed"]),
            Ident::derived(&["cf_bump", "a_b", "c_recalculation_needed"])
        );
    }
}
