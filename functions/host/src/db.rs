//! The embedded store: SQLite in the data folder, behind the core's `Database` port.

use std::path::Path;
use std::sync::{Arc, Mutex};

use bedside_core::store::{Database, Row, Statement, StoreError, Value};
use rusqlite::types::ValueRef;
use rusqlite::{Connection, ErrorCode, OptionalExtension, params_from_iter};

/// A SQLite database shared by all requests. Statements run on tokio's blocking pool; a
/// batch runs inside one `IMMEDIATE` transaction.
#[derive(Debug, Clone)]
pub struct Sqlite {
    conn: Arc<Mutex<Connection>>,
}

impl Sqlite {
    /// Opens (or creates) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> anyhow::Result<Self> {
        let conn = Connection::open(path)?;
        Self::setup(conn)
    }

    /// A private in-memory database (tests).
    pub fn memory() -> anyhow::Result<Self> {
        Self::setup(Connection::open_in_memory()?)
    }

    fn setup(mut conn: Connection) -> anyhow::Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        migrate(&mut conn)?;
        Ok(Self {
            conn: Arc::new(Mutex::new(conn)),
        })
    }

    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let mut guard = conn
                .lock()
                .map_err(|_| StoreError::Backend("connection lock poisoned".into()))?;
            work(&mut guard)
        })
        .await
        .map_err(|e| StoreError::Backend(e.to_string()))?
    }
}

/// Applies the core's migrations that this database has not seen yet.
fn migrate(conn: &mut Connection) -> anyhow::Result<()> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (name TEXT PRIMARY KEY, applied_at INTEGER)",
    )?;
    for (name, sql) in bedside_core::MIGRATIONS {
        let done: Option<String> = conn
            .query_row(
                "SELECT name FROM schema_migrations WHERE name = ?1",
                [name],
                |r| r.get(0),
            )
            .optional()?;
        if done.is_some() {
            continue;
        }
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.execute(
            "INSERT INTO schema_migrations (name, applied_at) VALUES (?1, unixepoch())",
            [name],
        )?;
        tx.commit()?;
        tracing::info!(migration = name, "applied");
    }
    Ok(())
}

fn to_sql(v: &Value) -> rusqlite::types::Value {
    match v {
        Value::Null => rusqlite::types::Value::Null,
        Value::Int(i) => rusqlite::types::Value::Integer(*i),
        Value::Text(s) => rusqlite::types::Value::Text(s.clone()),
    }
}

/// Only a key collision is a conflict (a writer that lost a race may retry); any other
/// constraint failure is a bug and is reported as such.
fn map_err(e: rusqlite::Error) -> StoreError {
    use rusqlite::ffi::{SQLITE_CONSTRAINT_PRIMARYKEY, SQLITE_CONSTRAINT_UNIQUE};
    match &e {
        rusqlite::Error::SqliteFailure(f, _)
            if f.code == ErrorCode::ConstraintViolation
                && matches!(
                    f.extended_code,
                    SQLITE_CONSTRAINT_PRIMARYKEY | SQLITE_CONSTRAINT_UNIQUE
                ) =>
        {
            StoreError::Conflict
        }
        _ => StoreError::Backend(e.to_string()),
    }
}

fn execute(conn: &Connection, stmt: &Statement) -> Result<Vec<Row>, StoreError> {
    let mut prepared = conn.prepare_cached(stmt.sql).map_err(map_err)?;
    let columns = prepared.column_count();
    let mut rows = prepared
        .query(params_from_iter(stmt.params.iter().map(to_sql)))
        .map_err(map_err)?;
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(map_err)? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            values.push(match row.get_ref(i).map_err(map_err)? {
                ValueRef::Null => Value::Null,
                ValueRef::Integer(n) => Value::Int(n),
                ValueRef::Real(f) => Value::Int(f as i64),
                ValueRef::Text(t) | ValueRef::Blob(t) => {
                    Value::Text(String::from_utf8_lossy(t).into_owned())
                }
            });
        }
        out.push(Row(values));
    }
    Ok(out)
}

impl Database for Sqlite {
    async fn query(&self, stmt: Statement) -> Result<Vec<Row>, StoreError> {
        self.run(move |conn| execute(conn, &stmt)).await
    }

    async fn batch(&self, stmts: Vec<Statement>) -> Result<Vec<Vec<Row>>, StoreError> {
        self.run(move |conn| {
            let tx = conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
                .map_err(map_err)?;
            let mut out = Vec::with_capacity(stmts.len());
            for stmt in &stmts {
                out.push(execute(&tx, stmt)?);
            }
            tx.commit().map_err(map_err)?;
            Ok(out)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn batch_is_atomic_and_conflicts_are_reported() {
        let db = Sqlite::memory().unwrap();
        let insert = |key: &str| {
            Statement::new(
                "INSERT INTO throttles (key, failures, locked_until, updated_at) VALUES (?1, 1, 0, 0)",
                vec![key.into()],
            )
        };
        db.batch(vec![insert("a")]).await.unwrap();
        let err = db.batch(vec![insert("b"), insert("a")]).await.unwrap_err();
        assert!(matches!(err, StoreError::Conflict));
        let rows = db
            .query(Statement::new(
                "SELECT key FROM throttles ORDER BY key",
                vec![],
            ))
            .await
            .unwrap();
        assert_eq!(
            rows,
            vec![Row(vec![Value::Text("a".into())])],
            "b was rolled back"
        );
    }

    #[tokio::test]
    async fn migrations_apply_once() {
        let db = Sqlite::memory().unwrap();
        let mut conn = db.conn.lock().unwrap();
        migrate(&mut conn).unwrap();
        let n: i64 = conn
            .query_row("SELECT count(*) FROM schema_migrations", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n as usize, bedside_core::MIGRATIONS.len());
    }
}
