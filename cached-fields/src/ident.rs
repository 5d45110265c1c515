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

/// PostgreSQL's limit on identifier length (longer names are truncated silently).
const MAX_LEN: usize = 63;

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
        let mut chars = name.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_');
        if first_ok && rest_ok && name.len() <= MAX_LEN {
            Ok(Ident(name.to_owned()))
        } else {
            Err(Error::InvalidIdentifier {
                value: name.to_owned(),
                what,
            })
        }
    }

    /// A name for a generated object (index, trigger, function) from parts;
    /// shortened with a hash when it would exceed 63 bytes.
    pub fn derived(parts: &[&str]) -> Self {
        let full = parts.join("_");
        if full.len() <= MAX_LEN {
            return Ident(full);
        }
        // FNV-1a, stable across runs and builds.
        let hash = full.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |h, b| {
            (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
        });
        let suffix = format!("_{hash:016x}");
        Ident(format!("{}{suffix}", &full[..MAX_LEN - suffix.len()]))
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
    fn derived_names_fit() {
        let long = "x".repeat(60);
        let a = Ident::derived(&["cf", &long, "a"]);
        let b = Ident::derived(&["cf", &long, "b"]);
        assert!(a.as_str().len() <= MAX_LEN);
        assert_ne!(a, b);
        assert_eq!(Ident::derived(&["cf", "t"]).as_str(), "cf_t");
    }
}
