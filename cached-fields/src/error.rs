//! The one error type at the library boundary.

use crate::key::Key;
use std::sync::Arc;

/// An error from a user's calculate function or hook.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`] as the default error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `cached-fields`.
///
/// Each variant names the table, field, column or value at fault. Use
/// [`Error::is_retryable`] to tell passing faults (a lost connection, a busy
/// database) from permanent ones (a bad declaration, a missing column).
///
/// ```
/// use cached_fields::{Error, ident::Ident};
/// let err = Ident::new("lamp posts").unwrap_err();
/// assert!(matches!(err, Error::InvalidIdentifier { .. }));
/// assert!(!err.is_retryable());
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A table, column or field name is not a plain SQL identifier.
    #[error("invalid identifier {value:?} ({what}): {}", cached_fields_ident::RULE)]
    InvalidIdentifier {
        /// The rejected text.
        value: String,
        /// What the name was for (table, column, field).
        what: &'static str,
    },
    /// A model or field declaration is inconsistent.
    #[error("invalid declaration of {model}: {reason}")]
    Declaration {
        /// The table of the model.
        model: String,
        /// What is wrong.
        reason: String,
    },
    /// A `depends_on` entry is malformed, or names a table, column or
    /// foreign key that does not exist.
    #[error("invalid dependency {path:?} of {field}: {reason}")]
    InvalidDependency {
        /// The cached field, as `table.field`.
        field: String,
        /// The dependency as written.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The database URL names no backend this build supports.
    #[error(
        "unsupported database URL {url:?}: expected one of the URL forms of the enabled \
         backends: {enabled}"
    )]
    UnsupportedUrl {
        /// The URL, as given.
        url: String,
        /// The backends compiled in.
        enabled: &'static str,
    },
    /// The database could not be reached or opened.
    #[error("cannot connect to {url}: {message}")]
    Connect {
        /// The URL, with any password removed.
        url: String,
        /// The driver's message.
        message: String,
    },
    /// Columns the declarations need are missing from the table.
    #[error(
        "table {table:?} is missing column(s) {}: run `migrate` to add them",
        missing.join(", ")
    )]
    MissingColumns {
        /// The table.
        table: String,
        /// The missing columns.
        missing: Vec<String>,
    },
    /// A stored value could not be decoded into the declared type.
    #[error("column {table}.{column} holds a value that is not a valid {expected}: {message}")]
    Decode {
        /// The table.
        table: String,
        /// The column.
        column: String,
        /// The declared type.
        expected: String,
        /// The decoder's message.
        message: String,
        /// The decoder's error.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The user's calculate function returned an error.
    #[error("calculating {table}.{field} for row {key} failed: {message}")]
    Calculate {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// The error's message.
        message: String,
        /// The error the function returned, if it returned one.
        #[source]
        source: Option<Arc<dyn std::error::Error + Send + Sync>>,
    },
    /// The user's calculate function panicked.
    #[error("calculating {table}.{field} for row {key} panicked: {message}")]
    Panicked {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// The panic's message.
        message: String,
    },
    /// The user's calculate function did not finish in time.
    #[error(
        "calculating {table}.{field} for row {key} did not finish within {} ms: cancelled \
         (raise the field's timeout_ms, or the worker's calculation timeout, if it needs longer)",
        limit.as_millis()
    )]
    TimedOut {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// The limit it ran into.
        limit: std::time::Duration,
    },
    /// A calculated value that the backend cannot store as it is.
    #[error(
        "calculating {table}.{field} for row {key} gave a value the database cannot store: {reason}"
    )]
    Unstorable {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// Why.
        reason: String,
    },
    /// Storing a row's value keeps invalidating it again.
    #[error(
        "recalculating {table}.{field} for row {key} invalidates it again: {count} recalculations \
         in a row were superseded by a new invalidation within {} s; the calculate function (or \
         something it sets off) probably writes a column the field depends on",
        window.as_secs()
    )]
    SelfInvalidating {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// Superseded recalculations in a row.
        count: u32,
        /// Within this long.
        window: std::time::Duration,
    },
    /// A field that reads its own value along a path (a tree) found a row
    /// that reaches itself: a cycle in the data, which has no value.
    #[error(
        "{table}.{field} of row {key} depends on itself: following {path} from it comes back \
         to it (a cycle in the data; break it and the rows are recalculated at their next retry)"
    )]
    Cycle {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
        /// The primary key of the row.
        key: Key,
        /// The dependency followed.
        path: String,
    },
    /// A setting outside the range that can work.
    #[error("invalid {option} {value}: accepted {accepted}")]
    InvalidSetting {
        /// The option, as the command line spells it.
        option: &'static str,
        /// The value given.
        value: String,
        /// The accepted range.
        accepted: &'static str,
    },
    /// The row does not exist (any more).
    #[error("row {key} of table {table:?} does not exist")]
    RowNotFound {
        /// The table.
        table: String,
        /// The primary key.
        key: Key,
    },
    /// The field was declared without `temporal_triggers`, so it has no expiry column.
    #[error("{table}.{field} has no expiry: declare it with temporal_triggers")]
    NotTemporal {
        /// The table.
        table: String,
        /// The cached field.
        field: String,
    },
    /// Code written for one backend's connection ran on another's: a
    /// calculate function that takes one backend's connection type while
    /// the database is another's.
    #[error("this code needs a {wanted} connection, but the database is {actual}")]
    WrongBackend {
        /// The backend the code was written for.
        wanted: &'static str,
        /// The backend of the database it ran on.
        actual: crate::db::Backend,
    },
    /// The database or driver reported an error.
    #[error("database error: {0}")]
    Database(#[source] Arc<sqlx::Error>),
}

impl Error {
    /// Whether trying the same operation again later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Connect { .. } => true,
            Error::Database(e) => {
                matches!(
                    **e,
                    sqlx::Error::Io(_)
                        | sqlx::Error::PoolTimedOut
                        | sqlx::Error::PoolClosed
                        | sqlx::Error::WorkerCrashed
                        | sqlx::Error::Protocol(_)
                ) || is_busy_or_gone(e)
            }
            _ => false,
        }
    }

    pub(crate) fn declaration(model: &str, reason: impl Into<String>) -> Self {
        Error::Declaration {
            model: model.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A busy or locked database, a lost connection, a deadlock: an error
/// whose code some backend classifies as passing (see
/// [`Dialect::is_transient`](crate::backend::Dialect::is_transient)).
impl Error {
    /// Whether a statement gave up waiting for a lock (PostgreSQL's
    /// `lock_timeout`; SQLite's busy timeout).
    pub fn is_lock_timeout(&self) -> bool {
        match self {
            Error::Database(e) => match &**e {
                sqlx::Error::Database(d) => {
                    matches!(d.code().as_deref(), Some("55P03" | "5" | "517" | "262"))
                }
                _ => false,
            },
            _ => false,
        }
    }
}

fn is_busy_or_gone(e: &sqlx::Error) -> bool {
    let sqlx::Error::Database(db) = e else {
        return false;
    };
    let code = db.code().unwrap_or_default();
    crate::backend::Backend::ALL
        .iter()
        .any(|b| b.dialect().is_transient(&code))
}

/// An error and its causes as one line: each cause not already part of
/// the message before it is appended after a colon (this crate's messages
/// include their cause, an application's may not).
///
/// ```
/// use cached_fields::error::report;
/// let e = std::io::Error::other("disk full");
/// assert_eq!(report(&e), "disk full");
/// ```
pub fn report(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text = format!("{text}: {part}");
        }
        source = s.source();
    }
    text
}

impl From<sqlx::Error> for Error {
    fn from(e: sqlx::Error) -> Self {
        Error::Database(Arc::new(e))
    }
}
