//! The storage port: a SQLite-dialect database that runs statements and atomic batches.
//!
//! All SQL lives in this crate; an adapter only moves values in and out of D1, Spin SQLite or
//! an embedded SQLite. Parameters are positional (`?1`, `?2`, …).

use std::future::Future;

/// A value bound to a statement or read from a row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// SQL NULL.
    Null,
    /// A 64-bit integer.
    Int(i64),
    /// UTF-8 text.
    Text(String),
}

impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::Int(v)
    }
}

impl From<&str> for Value {
    fn from(v: &str) -> Self {
        Self::Text(v.to_owned())
    }
}

impl From<String> for Value {
    fn from(v: String) -> Self {
        Self::Text(v)
    }
}

impl<T: Into<Value>> From<Option<T>> for Value {
    fn from(v: Option<T>) -> Self {
        v.map_or(Self::Null, Into::into)
    }
}

/// One SQL statement with its parameters.
#[derive(Debug, Clone)]
pub struct Statement {
    /// SQLite-dialect SQL text.
    pub sql: &'static str,
    /// Positional parameters.
    pub params: Vec<Value>,
}

impl Statement {
    /// A statement with parameters.
    pub fn new(sql: &'static str, params: Vec<Value>) -> Self {
        Self { sql, params }
    }
}

/// A result row: the selected columns in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row(pub Vec<Value>);

impl Row {
    /// Column `i` as text, if it is text.
    pub fn text(&self, i: usize) -> Option<&str> {
        match self.0.get(i) {
            Some(Value::Text(s)) => Some(s),
            _ => None,
        }
    }

    /// Column `i` as an integer, if it is one.
    pub fn int(&self, i: usize) -> Option<i64> {
        match self.0.get(i) {
            Some(Value::Int(v)) => Some(*v),
            _ => None,
        }
    }
}

/// Errors a database adapter reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// A uniqueness or primary-key constraint failed; the batch was rolled back.
    #[error("constraint conflict")]
    Conflict,
    /// Anything else; the batch was rolled back.
    #[error("database error: {0}")]
    Backend(String),
}

/// A SQLite-dialect database.
///
/// Futures need not be `Send`: the Workers runtime is single-threaded. Adapters on a threaded
/// runtime get `Send` futures from their own concrete types.
pub trait Database {
    /// Runs one statement and returns its rows (statements with `RETURNING` return rows too).
    fn query(&self, stmt: Statement) -> impl Future<Output = Result<Vec<Row>, StoreError>>;

    /// Runs the statements in order inside one transaction: all take effect or none does.
    /// Returns each statement's rows.
    fn batch(
        &self,
        stmts: Vec<Statement>,
    ) -> impl Future<Output = Result<Vec<Vec<Row>>, StoreError>>;
}
