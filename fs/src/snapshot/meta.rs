//! The snapshot metadata database and the directory bookkeeping that goes with it.
//!
//! Layout: `<root>/metadata.db` and `<root>/snapshots/<id>/`. New directories are built
//! as `snapshots/new-*` and removed ones renamed to `snapshots/rm-*` first; the rename
//! happens inside the SQLite transaction that records the change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{io_err, Info, Kind, SnapshotError};

const SCHEMA_VERSION: i64 = 1;

/// WAL size past which closing the database checkpoints and empties it (each open
/// scans the whole WAL): a dozen snapshot changes.
const WAL_CHECKPOINT_BYTES: u64 = 256 << 10;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS snapshots (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    key TEXT NOT NULL UNIQUE,
    parent_id INTEGER REFERENCES snapshots(id),
    kind TEXT NOT NULL CHECK (kind IN ('active', 'view', 'committed')),
    created_ns INTEGER NOT NULL,
    labels TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS snapshots_parent ON snapshots(parent_id);
";

/// One snapshot row.
#[derive(Debug, Clone)]
pub struct Record {
    /// Row id, also the directory name.
    pub id: i64,
    /// Parent row id.
    pub parent_id: Option<i64>,
    /// Public view.
    pub info: Info,
}

/// Metadata and directories of one snapshotter root.
pub struct Store {
    root: PathBuf,
    db_path: PathBuf,
    conn: Mutex<Connection>,
}

const SELECT: &str = "SELECT s.id, s.key, s.parent_id, p.key, s.kind, s.created_ns, s.labels \
                      FROM snapshots s LEFT JOIN snapshots p ON p.id = s.parent_id";

fn row_to_record(r: &rusqlite::Row<'_>) -> rusqlite::Result<RawRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

type RawRow = (
    i64,
    String,
    Option<i64>,
    Option<String>,
    String,
    i64,
    String,
);

fn record(raw: RawRow) -> Result<Record, SnapshotError> {
    let (id, key, parent_id, parent, kind, created_ns, labels) = raw;
    let kind = Kind::parse(&kind).ok_or(SnapshotError::Corrupt { id, what: "kind" })?;
    let labels: BTreeMap<String, String> =
        serde_json::from_str(&labels).map_err(|_| SnapshotError::Corrupt { id, what: "labels" })?;
    let created = UNIX_EPOCH + Duration::from_nanos(u64::try_from(created_ns).unwrap_or_default());
    Ok(Record {
        id,
        parent_id,
        info: Info {
            key,
            parent,
            kind,
            created,
            labels,
        },
    })
}

impl Store {
    /// Opens (creating) `<root>/metadata.db` and `<root>/snapshots`.
    pub fn open(root: &Path) -> Result<Store, SnapshotError> {
        let snaps = root.join("snapshots");
        std::fs::create_dir_all(&snaps).map_err(io_err("creating", &snaps))?;
        let db_path = root.join("metadata.db");
        let db = |source| SnapshotError::Db {
            path: db_path.clone(),
            source,
        };
        let mut conn = crate::sqlite::open_wal(&db_path).map_err(db)?;
        // NORMAL: WAL commits do not fsync (a power cut may lose the last transactions,
        // never consistency; `cleanup` removes directories whose row was lost). The WAL
        // is kept across closes so short CLI runs pay no checkpoint or WAL-creation fsyncs;
        // Drop checkpoints it once grown, so the scan of it on each open stays short.
        conn.pragma_update(None, "synchronous", "NORMAL")
            .map_err(db)?;
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )
        .map_err(db)?;
        if let Some(found) =
            crate::sqlite::ensure_schema(&mut conn, SCHEMA, SCHEMA_VERSION).map_err(db)?
        {
            return Err(SnapshotError::SchemaTooNew {
                path: db_path,
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Store {
            root: root.to_path_buf(),
            db_path,
            conn: Mutex::new(conn),
        })
    }

    /// The snapshotter root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// `<root>/snapshots/<id>`.
    pub fn dir(&self, id: i64) -> PathBuf {
        self.root.join("snapshots").join(id.to_string())
    }

    /// A fresh temporary directory name under `snapshots/` with `prefix`.
    pub fn temp_dir(&self, prefix: &str) -> PathBuf {
        static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos();
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.root
            .join("snapshots")
            .join(format!("{prefix}-{}-{nanos}-{n}", std::process::id()))
    }

    fn db(&self) -> impl FnOnce(rusqlite::Error) -> SnapshotError + '_ {
        |source| SnapshotError::Db {
            path: self.db_path.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent (transactions
        // roll back on drop), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn find(conn: &Connection, key: &str) -> Result<Option<RawRow>, rusqlite::Error> {
        conn.query_row(&format!("{SELECT} WHERE s.key = ?1"), [key], row_to_record)
            .optional()
    }

    /// The record of `key`.
    pub fn get(&self, key: &str) -> Result<Record, SnapshotError> {
        let conn = self.lock();
        let raw = Self::find(&conn, key).map_err(self.db())?;
        record(raw.ok_or_else(|| SnapshotError::NotFound(key.into()))?)
    }

    /// `key` and its ancestors, `key` first.
    pub fn chain(&self, key: &str) -> Result<Vec<Record>, SnapshotError> {
        let mut out = vec![self.get(key)?];
        while let Some(p) = out.last().and_then(|r| r.info.parent.clone()) {
            out.push(self.get(&p)?);
        }
        Ok(out)
    }

    /// Every record, oldest first.
    pub fn list(&self) -> Result<Vec<Record>, SnapshotError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare(&format!("{SELECT} ORDER BY s.id"))
            .map_err(self.db())?;
        let rows = stmt.query_map([], row_to_record).map_err(self.db())?;
        let raws: Vec<RawRow> = rows.collect::<Result<_, _>>().map_err(self.db())?;
        raws.into_iter().map(record).collect()
    }

    /// Records a new snapshot whose directory was built at `built`, renaming it into
    /// place inside the transaction. The parent must be committed.
    pub fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
        built: &Path,
    ) -> Result<Record, SnapshotError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        if Self::find(&tx, key).map_err(self.db())?.is_some() {
            return Err(SnapshotError::AlreadyExists(key.into()));
        }
        let parent_id = match parent {
            None => None,
            Some(p) => Some(committed_id(&tx, p).map_err(|e| self.wrap(e))??),
        };
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos() as i64;
        tx.execute(
            "INSERT INTO snapshots (key, parent_id, kind, created_ns) VALUES (?1, ?2, ?3, ?4)",
            params![key, parent_id, kind.as_str(), now],
        )
        .map_err(self.db())?;
        let id = tx.last_insert_rowid();
        let dir = self.dir(id);
        // A directory left by a crashed call that reused this id is not in the database.
        if dir.exists() {
            std::fs::remove_dir_all(&dir).map_err(io_err("removing stale", &dir))?;
        }
        std::fs::rename(built, &dir).map_err(io_err("renaming into place", built))?;
        if let Err(e) = tx.commit() {
            let _ = std::fs::rename(&dir, built);
            return Err(self.db()(e));
        }
        drop(conn);
        self.get(key)
    }

    fn wrap(&self, e: rusqlite::Error) -> SnapshotError {
        self.db()(e)
    }

    /// Turns the active `key` into the committed `name`, optionally re-parenting it.
    pub fn commit(
        &self,
        name: &str,
        key: &str,
        new_parent: Option<Option<&str>>,
    ) -> Result<(), SnapshotError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let rec = record(
            Self::find(&tx, key)
                .map_err(self.db())?
                .ok_or_else(|| SnapshotError::NotFound(key.into()))?,
        )?;
        if rec.info.kind != Kind::Active {
            return Err(SnapshotError::WrongKind {
                key: key.into(),
                actual: rec.info.kind,
                expected: Kind::Active,
            });
        }
        if name != key && Self::find(&tx, name).map_err(self.db())?.is_some() {
            return Err(SnapshotError::AlreadyExists(name.into()));
        }
        let mut parent_id = rec.parent_id;
        if let Some(Some(p)) = new_parent {
            let pid = committed_id(&tx, p).map_err(|e| self.wrap(e))??;
            match (&rec.info.parent, rec.parent_id) {
                (Some(old), Some(old_id)) if old_id != pid => {
                    return Err(SnapshotError::ParentConflict {
                        key: key.into(),
                        parent: old.clone(),
                    })
                }
                _ => parent_id = Some(pid),
            }
        }
        tx.execute(
            "UPDATE snapshots SET key = ?1, kind = 'committed', parent_id = ?2 WHERE id = ?3",
            params![name, parent_id, rec.id],
        )
        .map_err(self.db())?;
        tx.commit().map_err(self.db())
    }

    /// Replaces the labels of `key`.
    pub fn set_labels(
        &self,
        key: &str,
        labels: &BTreeMap<String, String>,
    ) -> Result<Record, SnapshotError> {
        let json = serde_json::to_string(labels).unwrap_or_else(|_| "{}".into());
        let n = self
            .lock()
            .execute(
                "UPDATE snapshots SET labels = ?1 WHERE key = ?2",
                params![json, key],
            )
            .map_err(self.db())?;
        if n == 0 {
            return Err(SnapshotError::NotFound(key.into()));
        }
        self.get(key)
    }

    /// Forgets `key` (refusing if it has children) and deletes its directory.
    pub fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        if let Some(doomed) = self.remove_detached(key)? {
            std::fs::remove_dir_all(&doomed).map_err(io_err("removing", &doomed))?;
        }
        Ok(())
    }

    /// Forgets `key` (refusing if it has children) and renames its directory out of
    /// the way, in one transaction; returns that directory for the caller to delete
    /// when it suits (a process that dies first leaves it to [`Store::cleanup`]).
    pub fn remove_detached(&self, key: &str) -> Result<Option<PathBuf>, SnapshotError> {
        let doomed = self.temp_dir("rm");
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let rec = record(
            Self::find(&tx, key)
                .map_err(self.db())?
                .ok_or_else(|| SnapshotError::NotFound(key.into()))?,
        )?;
        let children: i64 = tx
            .query_row(
                "SELECT count(*) FROM snapshots WHERE parent_id = ?1",
                [rec.id],
                |r| r.get(0),
            )
            .map_err(self.db())?;
        let children = children.unsigned_abs();
        if children > 0 {
            return Err(SnapshotError::HasChildren {
                key: key.into(),
                children,
            });
        }
        tx.execute("DELETE FROM snapshots WHERE id = ?1", [rec.id])
            .map_err(self.db())?;
        let dir = self.dir(rec.id);
        let moved = dir.exists();
        if moved {
            std::fs::rename(&dir, &doomed).map_err(io_err("renaming for removal", &dir))?;
        }
        if let Err(e) = tx.commit() {
            if moved {
                let _ = std::fs::rename(&doomed, &dir);
            }
            return Err(self.db()(e));
        }
        Ok(moved.then_some(doomed))
    }

    /// Removes every entry of `snapshots/` that is not a recorded id's directory. The
    /// listing and the renames out of the way happen inside a write transaction, so a
    /// snapshot being created (renamed into place inside its own transaction) is never
    /// taken for an orphan.
    pub fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        let snaps = self.root.join("snapshots");
        let mut doomed = Vec::new();
        {
            let mut conn = self.lock();
            let tx = conn
                .transaction_with_behavior(TransactionBehavior::Immediate)
                .map_err(self.db())?;
            let ids: std::collections::HashSet<String> = {
                let mut stmt = tx.prepare("SELECT id FROM snapshots").map_err(self.db())?;
                let rows = stmt
                    .query_map([], |r| r.get::<_, i64>(0))
                    .map_err(self.db())?;
                rows.map(|r| r.map(|id| id.to_string()))
                    .collect::<Result<_, _>>()
                    .map_err(self.db())?
            };
            for e in std::fs::read_dir(&snaps).map_err(io_err("listing", &snaps))? {
                let e = e.map_err(io_err("listing", &snaps))?;
                let name = e.file_name().to_string_lossy().into_owned();
                if ids.contains(&name) || in_flight(&name) {
                    continue;
                }
                let p = e.path();
                // A killed process may have left a view mounted inside it.
                berth_mount::unmount_recursive(&p)?;
                let away = self.temp_dir("rm");
                std::fs::rename(&p, &away).map_err(io_err("renaming unreferenced", &p))?;
                doomed.push((p, away));
            }
            tx.commit().map_err(self.db())?;
        }
        let mut removed = Vec::new();
        for (p, away) in doomed {
            let removal = if away.is_dir() {
                std::fs::remove_dir_all(&away)
            } else {
                std::fs::remove_file(&away)
            };
            removal.map_err(io_err("removing unreferenced", &p))?;
            removed.push(p);
        }
        Ok(removed)
    }
}

impl Store {
    /// What is wrong between the database and the directories: SQLite's own integrity
    /// check, records without a directory (or without `required` inside it), and
    /// directories no record names (orphans, other than builds and removals in flight).
    pub fn check(&self, required: &[&str]) -> Result<Vec<String>, SnapshotError> {
        let conn = self.lock();
        let mut problems = crate::sqlite::integrity_problems(&conn)
            .map_err(self.db())?
            .into_iter()
            .map(|p| format!("metadata.db: {p}"))
            .collect::<Vec<_>>();
        drop(conn);
        let records = self.list()?;
        let ids: std::collections::HashSet<String> =
            records.iter().map(|r| r.id.to_string()).collect();
        for r in &records {
            let dir = self.dir(r.id);
            if !dir.is_dir() {
                problems.push(format!(
                    "snapshot {:?}: its directory {} is missing",
                    r.info.key,
                    dir.display()
                ));
                continue;
            }
            for part in required {
                if !dir.join(part).exists() {
                    problems.push(format!(
                        "snapshot {:?}: {} has no {part}",
                        r.info.key,
                        dir.display()
                    ));
                }
            }
        }
        let snaps = self.root.join("snapshots");
        for e in std::fs::read_dir(&snaps).map_err(io_err("listing", &snaps))? {
            let e = e.map_err(io_err("listing", &snaps))?;
            let name = e.file_name().to_string_lossy().into_owned();
            if !ids.contains(&name) && !in_flight(&name) {
                problems.push(format!(
                    "{}: no snapshot record names it (orphan)",
                    e.path().display()
                ));
            }
        }
        Ok(problems)
    }
}

impl Drop for Store {
    /// Checkpoints a grown WAL (see `WAL_CHECKPOINT_BYTES`; skipped while another
    /// connection is busy). Auto-checkpoints do not restart the WAL of short-lived
    /// processes: recovery on the next open forgets what was checkpointed.
    fn drop(&mut self) {
        let wal = PathBuf::from(format!("{}-wal", self.db_path.display()));
        if wal.metadata().is_ok_and(|m| m.len() > WAL_CHECKPOINT_BYTES) {
            let _ = self
                .lock()
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// Whether `name` is a `new-<pid>-…` build or `rm-<pid>-…` removal directory of a
/// process still running (this one included).
fn in_flight(name: &str) -> bool {
    let Some(rest) = name
        .strip_prefix("new-")
        .or_else(|| name.strip_prefix("rm-"))
    else {
        return false;
    };
    let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
        return false;
    };
    Path::new(&format!("/proc/{pid}")).exists()
}

/// The id of the committed snapshot `key`, or the typed reason it cannot be a parent.
fn committed_id(conn: &Connection, key: &str) -> rusqlite::Result<Result<i64, SnapshotError>> {
    let row: Option<(i64, String)> = conn
        .query_row(
            "SELECT id, kind FROM snapshots WHERE key = ?1",
            [key],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    Ok(match row {
        None => Err(SnapshotError::NotFound(key.into())),
        Some((id, kind)) if kind == "committed" => Ok(id),
        Some((id, kind)) => match Kind::parse(&kind) {
            Some(actual) => Err(SnapshotError::WrongKind {
                key: key.into(),
                actual,
                expected: Kind::Committed,
            }),
            None => Err(SnapshotError::Corrupt { id, what: "kind" }),
        },
    })
}
