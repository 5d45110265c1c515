//! The types a cached field can hold, and their SQL column types.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Serialize, de::DeserializeOwned};

use crate::backend::Backend;

/// The SQL type of a cached column.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum SqlType {
    /// 64-bit integer.
    Int,
    /// Double-precision float.
    Float,
    /// Boolean.
    Bool,
    /// Text.
    Text,
    /// Calendar date.
    Date,
    /// Time of day.
    Time,
    /// Instant, stored in UTC.
    Timestamp,
    /// JSON document.
    Json,
    /// UUID (a native type where the backend has one, else 16 bytes, as sqlx
    /// binds one).
    #[cfg(feature = "uuid")]
    #[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
    Uuid,
}

impl SqlType {
    /// The column type used for this value on `backend`.
    ///
    /// ```
    /// use cached_fields::{SqlType, Backend};
    /// for backend in Backend::ALL {
    ///     assert!(!SqlType::Json.column_type(*backend).is_empty());
    /// }
    /// ```
    pub fn column_type(self, backend: Backend) -> &'static str {
        backend.dialect().column_type(self)
    }

    /// A short name for messages.
    pub fn name(self) -> &'static str {
        match self {
            SqlType::Int => "integer",
            SqlType::Float => "float",
            SqlType::Bool => "boolean",
            SqlType::Text => "text",
            SqlType::Date => "date",
            SqlType::Time => "time",
            SqlType::Timestamp => "timestamp",
            SqlType::Json => "JSON",
            #[cfg(feature = "uuid")]
            SqlType::Uuid => "UUID",
        }
    }
}

/// A value in transit between a cached field and its column.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum Value {
    /// SQL NULL of the given type.
    Null(SqlType),
    /// An integer.
    Int(i64),
    /// A float.
    Float(f64),
    /// A boolean.
    Bool(bool),
    /// Text.
    Text(String),
    /// A date.
    Date(NaiveDate),
    /// A time of day.
    Time(NaiveTime),
    /// An instant.
    Timestamp(DateTime<Utc>),
    /// A JSON document.
    Json(serde_json::Value),
    /// A UUID.
    #[cfg(feature = "uuid")]
    #[cfg_attr(docsrs, doc(cfg(feature = "uuid")))]
    Uuid(uuid::Uuid),
}

/// Why a [`Value`] could not become the field's type.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected}, found {found}")]
pub struct ValueError {
    /// The type wanted.
    pub expected: String,
    /// What was there.
    pub found: String,
}

impl ValueError {
    fn new(expected: impl Into<String>, found: &Value) -> Self {
        ValueError {
            expected: expected.into(),
            found: format!("{found:?}"),
        }
    }
}

/// A Rust type that can be stored in a cached column.
///
/// Implemented for `i64`, `i32`, `i16`, `f64`, `f32`, `bool`, `String`,
/// `NaiveDate`, `NaiveTime`, `DateTime<Utc>`, [`Json<T>`] for any serde type,
/// and `Option` of each.
///
/// ```
/// use cached_fields::{CachedValue, Value};
/// assert_eq!(7_i64.into_value(), Value::Int(7));
/// assert_eq!(i32::from_value(Value::Int(7)).unwrap(), 7);
/// assert!(i32::from_value(Value::Int(1 << 40)).is_err());
/// ```
pub trait CachedValue: Sized + Clone + Send + Sync + 'static {
    /// The column type.
    const SQL_TYPE: SqlType;
    /// Converts into a [`Value`] for storage.
    fn into_value(self) -> Value;
    /// Converts a stored non-null [`Value`] back.
    fn from_value(value: Value) -> Result<Self, ValueError>;
    /// What a stored NULL means: `None` for "not calculated yet", or
    /// `Some(v)` for types where NULL is a legitimate result (`Option`).
    fn from_null() -> Option<Self> {
        None
    }
}

macro_rules! simple_value {
    ($t:ty, $variant:ident, $sql:ident) => {
        impl CachedValue for $t {
            const SQL_TYPE: SqlType = SqlType::$sql;
            fn into_value(self) -> Value {
                Value::$variant(self)
            }
            fn from_value(value: Value) -> Result<Self, ValueError> {
                match value {
                    Value::$variant(v) => Ok(v),
                    other => Err(ValueError::new(stringify!($t), &other)),
                }
            }
        }
    };
}

simple_value!(i64, Int, Int);
simple_value!(f64, Float, Float);
simple_value!(bool, Bool, Bool);
simple_value!(String, Text, Text);
simple_value!(NaiveDate, Date, Date);
simple_value!(NaiveTime, Time, Time);
simple_value!(DateTime<Utc>, Timestamp, Timestamp);
#[cfg(feature = "uuid")]
simple_value!(uuid::Uuid, Uuid, Uuid);

macro_rules! narrow_int {
    ($t:ty) => {
        impl CachedValue for $t {
            const SQL_TYPE: SqlType = SqlType::Int;
            fn into_value(self) -> Value {
                Value::Int(i64::from(self))
            }
            fn from_value(value: Value) -> Result<Self, ValueError> {
                match value {
                    Value::Int(v) => <$t>::try_from(v)
                        .map_err(|_| ValueError::new(stringify!($t), &Value::Int(v))),
                    other => Err(ValueError::new(stringify!($t), &other)),
                }
            }
        }
    };
}

narrow_int!(i32);
narrow_int!(i16);

impl CachedValue for f32 {
    const SQL_TYPE: SqlType = SqlType::Float;
    fn into_value(self) -> Value {
        Value::Float(f64::from(self))
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            #[allow(clippy::cast_possible_truncation)]
            Value::Float(v) => Ok(v as f32),
            other => Err(ValueError::new("f32", &other)),
        }
    }
}

impl<T: CachedValue> CachedValue for Option<T> {
    const SQL_TYPE: SqlType = T::SQL_TYPE;
    fn into_value(self) -> Value {
        match self {
            Some(v) => v.into_value(),
            None => Value::Null(T::SQL_TYPE),
        }
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Null(_) => Ok(None),
            v => T::from_value(v).map(Some),
        }
    }
    fn from_null() -> Option<Self> {
        Some(None)
    }
}

/// Stores any serde type as JSON (the backend's JSON type, or text).
///
/// ```
/// use cached_fields::{CachedValue, Json};
/// let v = Json(vec![1, 2, 3]).into_value();
/// assert_eq!(Json::<Vec<i32>>::from_value(v).unwrap().0, vec![1, 2, 3]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Json<T>(pub T);

impl<T> CachedValue for Json<T>
where
    T: Serialize + DeserializeOwned + Clone + Send + Sync + 'static,
{
    const SQL_TYPE: SqlType = SqlType::Json;
    fn into_value(self) -> Value {
        match serde_json::to_value(&self.0) {
            Ok(v) => Value::Json(v),
            // A type whose Serialize fails (a map with non-string keys) is stored
            // as the error text, so the failure is visible rather than silent.
            Err(e) => Value::Json(serde_json::Value::String(format!(
                "serialization failed: {e}"
            ))),
        }
    }
    fn from_value(value: Value) -> Result<Self, ValueError> {
        match value {
            Value::Json(v) => serde_json::from_value(v.clone())
                .map(Json)
                .map_err(|e| ValueError {
                    expected: format!("JSON for {}: {e}", std::any::type_name::<T>()),
                    found: v.to_string(),
                }),
            other => Err(ValueError::new("JSON", &other)),
        }
    }
}
