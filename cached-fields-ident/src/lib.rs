//! The rule a table, column or field name of `cached-fields` follows, in
//! one place for the library (which checks names at run time) and its
//! derive (which checks the names written in attributes at compile time).

/// The shortest identifier-length limit of the backends (longer names are
/// truncated silently by some).
pub const MAX_LEN: usize = 63;

/// What the rule says, for messages.
pub const RULE: &str =
    "use letters, digits and underscores, not starting with a digit, at most 63 bytes";

/// Whether `name` is a plain SQL identifier: ASCII letters, digits and
/// underscores, not starting with a digit, at most [`MAX_LEN`] bytes.
///
/// ```
/// use cached_fields_ident::is_plain;
/// assert!(is_plain("lampposts"));
/// assert!(is_plain("_x9"));
/// assert!(!is_plain("9lives"));
/// assert!(!is_plain("a; DROP TABLE b"));
/// assert!(!is_plain(&"x".repeat(64)));
/// ```
pub fn is_plain(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_');
    first_ok && chars.all(|c| c.is_ascii_alphanumeric() || c == '_') && name.len() <= MAX_LEN
}
