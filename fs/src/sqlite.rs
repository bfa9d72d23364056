//! Opening this crate's SQLite databases (snapshot metadata, object index) one way.

use std::path::Path;
use std::time::{Duration, Instant};

use rusqlite::{Connection, ErrorCode};

/// How long a process waits for another holding the database.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Opens `path` in WAL mode with a busy timeout.
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
            other => return other.map(|_| conn),
        }
    }
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
