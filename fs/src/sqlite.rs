//! Opening this crate's SQLite databases (snapshot metadata, object index) one way.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode, TransactionBehavior};

/// How long a process waits for another holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `path` in WAL mode with a busy timeout and foreign keys on.
///
/// Switching a new database to WAL needs an exclusive lock, and SQLite answers "busy" at
/// once, without calling the busy handler, when two connections race for it (each would
/// wait on the other). Many processes and threads open these databases at once, so that
/// first switch is retried until the timeout.
pub(crate) fn open_wal(path: &Path) -> rusqlite::Result<Connection> {
    let conn = Connection::open(path)?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let deadline = Instant::now() + BUSY_TIMEOUT;
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == ErrorCode::DatabaseBusy && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => {
                other?;
                conn.pragma_update(None, "foreign_keys", "ON")?;
                return Ok(conn);
            }
        }
    }
}

/// Creates the tables of a database at schema `version` if it is older, inside an
/// immediate transaction so that concurrent openers do it once. Returns the version
/// found when it is newer than this build understands.
pub(crate) fn ensure_schema(
    conn: &mut Connection,
    schema: &str,
    version: i64,
) -> rusqlite::Result<Option<i64>> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let found: i64 = tx.pragma_query_value(None, "user_version", |r| r.get(0))?;
    if found > version {
        return Ok(Some(found));
    }
    if found < version {
        tx.execute_batch(schema)?;
        tx.pragma_update(None, "user_version", version)?;
    }
    tx.commit()?;
    Ok(None)
}

/// `PRAGMA integrity_check`: empty when the database is sound, else what is wrong.
pub(crate) fn integrity_problems(conn: &Connection) -> rusqlite::Result<Vec<String>> {
    let mut st = conn.prepare("PRAGMA integrity_check")?;
    let rows = st.query_map([], |r| r.get::<_, String>(0))?;
    let found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(found.into_iter().filter(|r| r != "ok").collect())
}

#[cfg(test)]
mod tests {
    /// Many threads creating the same database at once all get a WAL connection.
    #[test]
    fn concurrent_first_opens_all_succeed() {
        for _ in 0..20 {
            let dir = tempfile::tempdir().expect("tempdir");
            let path = dir.path().join("x.db");
            std::thread::scope(|s| {
                let handles: Vec<_> = (0..12)
                    .map(|_| s.spawn(|| super::open_wal(&path)))
                    .collect();
                for h in handles {
                    let conn = h.join().expect("thread").expect("open");
                    let mode: String = conn
                        .query_row("PRAGMA journal_mode", [], |r| r.get(0))
                        .expect("mode");
                    assert_eq!(mode, "wal");
                }
            });
        }
    }
}
