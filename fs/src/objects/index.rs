//! Tree indexes in `objects/index.db`: one row per node of each unpacked layer, keyed by
//! the layer's snapshot key (its chainID).
//!
//! The index lives beside the objects rather than in a snapshotter's `metadata.db`: it
//! describes content shared by every snapshotter and read by the FUSE view, which must
//! not need the overlay snapshotter. A layer's rows are written in one transaction after
//! its files are objects; gc drops the rows of layers whose snapshot is gone, then the
//! objects no row names.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use rusqlite::{params, Connection, TransactionBehavior};

use super::entry::{decode_xattrs, encode_xattrs, Entry, EntryKind};
use super::ObjectError;

const SCHEMA_VERSION: i64 = 1;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS layers (
    key TEXT PRIMARY KEY,
    entries INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS entries (
    layer TEXT NOT NULL REFERENCES layers(key) ON DELETE CASCADE,
    path BLOB NOT NULL,
    kind INTEGER NOT NULL,
    mode INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    gid INTEGER NOT NULL,
    mtime_s INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    size INTEGER NOT NULL,
    blocks INTEGER NOT NULL,
    object TEXT,
    target BLOB,
    rdev INTEGER NOT NULL,
    xattrs BLOB NOT NULL,
    link_group INTEGER,
    PRIMARY KEY (layer, path)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS entries_object ON entries(object);
";

/// The tree index database.
pub struct Index {
    path: PathBuf,
    conn: Mutex<Connection>,
}

impl Index {
    /// Opens (creating, migrating) the index at `path`.
    pub fn open(path: &Path) -> Result<Index, ObjectError> {
        let db = |source| ObjectError::Db {
            path: path.to_path_buf(),
            source,
        };
        let mut conn = crate::sqlite::open_wal(path).map_err(db)?;
        if let Some(found) =
            crate::sqlite::ensure_schema(&mut conn, SCHEMA, SCHEMA_VERSION).map_err(db)?
        {
            return Err(ObjectError::SchemaTooNew {
                path: path.to_path_buf(),
                found,
                supported: SCHEMA_VERSION,
            });
        }
        Ok(Index {
            path: path.to_path_buf(),
            conn: Mutex::new(conn),
        })
    }

    fn db(&self) -> impl FnOnce(rusqlite::Error) -> ObjectError + '_ {
        |source| ObjectError::Db {
            path: self.path.clone(),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Connection> {
        // Transactions roll back on drop, so a poisoned lock is still consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replaces the index of layer `key` with `entries`.
    pub fn put_layer(&self, key: &str, entries: &[Entry]) -> Result<(), ObjectError> {
        self.put_layer_with(key, entries, || Ok(()))
    }

    /// Replaces the index of layer `key` with `entries`, running `publish` (which makes
    /// the entries' objects visible) inside the same write transaction: gc, which sweeps
    /// inside one too, sees the objects and the rows naming them together or not at all.
    pub fn put_layer_with(
        &self,
        key: &str,
        entries: &[Entry],
        publish: impl FnOnce() -> Result<(), ObjectError>,
    ) -> Result<(), ObjectError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        publish()?;
        tx.execute("DELETE FROM layers WHERE key = ?1", [key])
            .map_err(self.db())?;
        tx.execute(
            "INSERT INTO layers (key, entries) VALUES (?1, ?2)",
            params![key, entries.len() as i64],
        )
        .map_err(self.db())?;
        {
            let mut stmt = tx
                .prepare(
                    "INSERT INTO entries (layer, path, kind, mode, uid, gid, mtime_s, mtime_ns,
                     size, blocks, object, target, rdev, xattrs, link_group)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)",
                )
                .map_err(self.db())?;
            for e in entries {
                stmt.execute(params![
                    key,
                    e.path,
                    e.kind.code(),
                    e.mode,
                    e.uid,
                    e.gid,
                    e.mtime.0,
                    e.mtime.1,
                    e.size as i64,
                    e.blocks as i64,
                    e.object,
                    e.target,
                    e.rdev as i64,
                    encode_xattrs(&e.xattrs),
                    e.link_group.map(|g| g as i64),
                ])
                .map_err(self.db())?;
            }
        }
        tx.commit().map_err(self.db())
    }

    /// The index of layer `key`, sorted by path; `None` if the layer was never indexed.
    pub fn layer(&self, key: &str) -> Result<Option<Vec<Entry>>, ObjectError> {
        let conn = self.lock();
        let known: i64 = conn
            .query_row("SELECT count(*) FROM layers WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .map_err(self.db())?;
        if known == 0 {
            return Ok(None);
        }
        let mut stmt = conn
            .prepare(
                "SELECT path, kind, mode, uid, gid, mtime_s, mtime_ns, size, blocks, object,
                 target, rdev, xattrs, link_group FROM entries WHERE layer = ?1 ORDER BY path",
            )
            .map_err(self.db())?;
        let rows = stmt
            .query_map([key], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, i64>(1)?,
                    (
                        r.get::<_, u32>(2)?,
                        r.get::<_, u32>(3)?,
                        r.get::<_, u32>(4)?,
                    ),
                    (r.get::<_, i64>(5)?, r.get::<_, i64>(6)?),
                    (r.get::<_, i64>(7)?, r.get::<_, i64>(8)?),
                    r.get::<_, Option<String>>(9)?,
                    r.get::<_, Option<Vec<u8>>>(10)?,
                    r.get::<_, i64>(11)?,
                    r.get::<_, Vec<u8>>(12)?,
                    r.get::<_, Option<i64>>(13)?,
                ))
            })
            .map_err(self.db())?;
        let mut out = Vec::new();
        for row in rows {
            let (path, kind, (mode, uid, gid), mtime, (size, blocks), object, target, rdev, x, g) =
                row.map_err(self.db())?;
            let corrupt = |what| ObjectError::Corrupt {
                layer: key.to_string(),
                path: String::from_utf8_lossy(&path).into_owned(),
                what,
            };
            let kind = EntryKind::from_code(kind).ok_or_else(|| corrupt("kind"))?;
            let xattrs = decode_xattrs(&x).ok_or_else(|| corrupt("xattrs"))?;
            out.push(Entry {
                path,
                kind,
                mode,
                uid,
                gid,
                mtime,
                size: size as u64,
                blocks: blocks as u64,
                object,
                target,
                rdev: rdev as u64,
                xattrs,
                link_group: g.map(|g| g as u64),
            });
        }
        Ok(Some(out))
    }

    /// Keys of every indexed layer.
    pub fn layers(&self) -> Result<Vec<String>, ObjectError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT key FROM layers ORDER BY key")
            .map_err(self.db())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Drops the index of layer `key`.
    pub fn remove_layer(&self, key: &str) -> Result<(), ObjectError> {
        self.lock()
            .execute("DELETE FROM layers WHERE key = ?1", [key])
            .map(|_| ())
            .map_err(self.db())
    }

    /// Every object id some index names.
    pub fn objects(&self) -> Result<Vec<String>, ObjectError> {
        let conn = self.lock();
        self.objects_in(&conn)
    }

    fn objects_in(&self, conn: &Connection) -> Result<Vec<String>, ObjectError> {
        let mut stmt = conn
            .prepare("SELECT DISTINCT object FROM entries WHERE object IS NOT NULL")
            .map_err(self.db())?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Runs `sweep` with the ids every index names, inside a write transaction: no layer
    /// is recorded (and no object published) until it returns.
    pub fn sweep_with<T>(
        &self,
        sweep: impl FnOnce(&std::collections::HashSet<String>) -> Result<T, ObjectError>,
    ) -> Result<T, ObjectError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(self.db())?;
        let live = self.objects_in(&tx)?.into_iter().collect();
        let out = sweep(&live)?;
        tx.commit().map_err(self.db())?;
        Ok(out)
    }

    /// `PRAGMA integrity_check`: empty when the database is sound.
    pub fn integrity_problems(&self) -> Result<Vec<String>, ObjectError> {
        crate::sqlite::integrity_problems(&self.lock()).map_err(self.db())
    }

    /// `(layer, path, object)` of every file entry.
    pub fn object_refs(&self) -> Result<Vec<(String, String, String)>, ObjectError> {
        let conn = self.lock();
        let mut stmt = conn
            .prepare("SELECT layer, path, object FROM entries WHERE object IS NOT NULL")
            .map_err(self.db())?;
        let rows = stmt
            .query_map([], |r| {
                let p: Vec<u8> = r.get(1)?;
                Ok((
                    r.get(0)?,
                    String::from_utf8_lossy(&p).into_owned(),
                    r.get(2)?,
                ))
            })
            .map_err(self.db())?;
        rows.collect::<Result<_, _>>().map_err(self.db())
    }

    /// Files and their allocated bytes over every indexed layer, as if each layer kept
    /// its own copy (a hardlink group once per layer).
    pub fn logical_bytes(&self) -> Result<(u64, u64), ObjectError> {
        self.lock()
            .query_row(
                "SELECT count(*), coalesce(sum(b), 0) FROM (SELECT max(blocks) AS b FROM entries
                 WHERE kind = 0
                 GROUP BY layer, CASE WHEN link_group IS NULL THEN path ELSE link_group END)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .map_err(self.db())
    }
}
