//! Primary keys: the types a model's key may have ([`PrimaryKey`]) and the
//! [`Key`] the library carries one row's key in.

use std::fmt;

use crate::value::{SqlType, Value};

/// One row's primary key, whatever the model's key type.
///
/// ```
/// use cached_fields::Key;
/// assert_eq!(Key::from(7_i64).to_string(), "7");
/// assert_eq!(Key::from("abc").to_string(), "abc");
/// assert_eq!(Key::parse("42", cached_fields::SqlType::Int).unwrap(), Key::Int(42));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Key {
    /// An integer key (`i64`, `i32`).
    Int(i64),
    /// A text key (`String`).
    Text(String),
    /// A UUID key (`uuid::Uuid`).
    #[cfg(feature = "uuid")]
    #[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
    Uuid(uuid::Uuid),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Int(k) => write!(f, "{k}"),
            Key::Text(k) => f.write_str(k),
            #[cfg(feature = "uuid")]
            Key::Uuid(k) => write!(f, "{k}"),
        }
    }
}

/// A key serializes as its JSON number (integer keys) or string.
impl serde::Serialize for Key {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Key::Int(k) => s.serialize_i64(*k),
            Key::Text(k) => s.serialize_str(k),
            #[cfg(feature = "uuid")]
            Key::Uuid(k) => s.collect_str(k),
        }
    }
}

/// Why a text could not be read as a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a valid {expected} key")]
pub struct KeyParseError {
    /// The text given.
    pub text: String,
    /// The key type wanted.
    pub expected: &'static str,
}

impl Key {
    /// Reads a key of type `ty` from text (a command line's `--key`).
    pub fn parse(text: &str, ty: SqlType) -> Result<Key, KeyParseError> {
        let err = || KeyParseError {
            text: text.to_owned(),
            expected: ty.name(),
        };
        match ty {
            SqlType::Int => text.trim().parse().map(Key::Int).map_err(|_| err()),
            #[cfg(feature = "uuid")]
            SqlType::Uuid => uuid::Uuid::parse_str(text.trim())
                .map(Key::Uuid)
                .map_err(|_| err()),
            SqlType::Text => Ok(Key::Text(text.to_owned())),
            _ => Err(err()),
        }
    }

    /// The key as a value to bind.
    pub fn to_value(&self) -> Value {
        match self {
            Key::Int(k) => Value::Int(*k),
            Key::Text(k) => Value::Text(k.clone()),
            #[cfg(feature = "uuid")]
            Key::Uuid(k) => Value::Uuid(*k),
        }
    }

    /// The key in a value read from the database, if it holds one.
    pub fn from_value(value: &Value) -> Option<Key> {
        match value {
            Value::Int(k) => Some(Key::Int(*k)),
            Value::Text(k) => Some(Key::Text(k.clone())),
            #[cfg(feature = "uuid")]
            Value::Uuid(k) => Some(Key::Uuid(*k)),
            _ => None,
        }
    }
}

impl From<i64> for Key {
    fn from(k: i64) -> Self {
        Key::Int(k)
    }
}
impl From<i32> for Key {
    fn from(k: i32) -> Self {
        Key::Int(i64::from(k))
    }
}
impl From<String> for Key {
    fn from(k: String) -> Self {
        Key::Text(k)
    }
}
impl From<&str> for Key {
    fn from(k: &str) -> Self {
        Key::Text(k.to_owned())
    }
}
#[cfg(feature = "uuid")]
impl From<uuid::Uuid> for Key {
    fn from(k: uuid::Uuid) -> Self {
        Key::Uuid(k)
    }
}

/// A Rust type a model's primary key may have: `i64`, `i32`, `String`, and
/// `uuid::Uuid` with the `uuid` feature.
///
/// ```
/// use cached_fields::{Key, PrimaryKey, SqlType};
/// assert_eq!(<i32 as PrimaryKey>::SQL_TYPE, SqlType::Int);
/// assert_eq!(7_i32.key(), Key::Int(7));
/// ```
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be the primary key of a cached model",
    label = "not an accepted primary-key type",
    note = "the accepted primary-key types are i64, i32, String and uuid::Uuid (with the `uuid` feature of cached-fields)"
)]
pub trait PrimaryKey: Send + Sync + 'static {
    /// How the key is bound and read.
    const SQL_TYPE: SqlType;
    /// The key as the library carries it.
    fn key(&self) -> Key;
}

impl PrimaryKey for i64 {
    const SQL_TYPE: SqlType = SqlType::Int;
    fn key(&self) -> Key {
        Key::Int(*self)
    }
}
impl PrimaryKey for i32 {
    const SQL_TYPE: SqlType = SqlType::Int;
    fn key(&self) -> Key {
        Key::Int(i64::from(*self))
    }
}
impl PrimaryKey for String {
    const SQL_TYPE: SqlType = SqlType::Text;
    fn key(&self) -> Key {
        Key::Text(self.clone())
    }
}
#[cfg(feature = "uuid")]
impl PrimaryKey for uuid::Uuid {
    const SQL_TYPE: SqlType = SqlType::Uuid;
    fn key(&self) -> Key {
        Key::Uuid(*self)
    }
}
