//! SQLite metadata: the source of truth for names, blobs, checkouts, containers, leases.
//!
//! Snapshots themselves are recorded by each snapshotter in its own database (as
//! containerd's snapshotters do); here live the things that keep them alive: images
//! (through their layers' chainIDs), checkouts and containers.
//!
//! One `meta.db` per root in WAL mode with a busy timeout, so many `berth` processes can
//! use one root at once; each logical change is one transaction. The schema version is
//! kept in `PRAGMA user_version` and upgraded forward by [`MIGRATIONS`], in order.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Schema steps; entry N upgrades version N to N+1.
const MIGRATIONS: &[&str] = &[
    // 0 -> 1: the foundation.
    "CREATE TABLE blobs (
        digest TEXT PRIMARY KEY,
        size INTEGER NOT NULL,
        media_type TEXT NOT NULL DEFAULT '',
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
     );
     CREATE TABLE images (
        name TEXT PRIMARY KEY,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
     );
     CREATE INDEX images_by_digest ON images(digest);
     CREATE TABLE containers (
        id TEXT PRIMARY KEY,
        name TEXT UNIQUE,
        image TEXT,
        snapshotter TEXT,
        snapshot TEXT,
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
     );
     CREATE TABLE leases (
        id TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        expires INTEGER NOT NULL
     );
     CREATE TABLE lease_resources (
        lease TEXT NOT NULL REFERENCES leases(id) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        resource TEXT NOT NULL,
        PRIMARY KEY (lease, kind, resource)
     );",
    // 1 -> 2: checkouts (git-like working trees) and what they are based on.
    "CREATE TABLE checkouts (
        dir TEXT PRIMARY KEY,
        image TEXT NOT NULL,
        manifest TEXT NOT NULL,
        snapshotter TEXT NOT NULL,
        snapshot TEXT NOT NULL,
        readonly INTEGER NOT NULL,
        created INTEGER NOT NULL
     );",
    // 2 -> 3: what a container runs and how it ended (see `containers`).
    "ALTER TABLE containers ADD COLUMN manifest TEXT NOT NULL DEFAULT '';
     ALTER TABLE containers ADD COLUMN checkout TEXT;
     ALTER TABLE containers ADD COLUMN runtime TEXT NOT NULL DEFAULT 'runc';
     ALTER TABLE containers ADD COLUMN command TEXT NOT NULL DEFAULT '[]';
     ALTER TABLE containers ADD COLUMN auto_remove INTEGER NOT NULL DEFAULT 0;
     ALTER TABLE containers ADD COLUMN stop_signal INTEGER NOT NULL DEFAULT 15;
     ALTER TABLE containers ADD COLUMN finished INTEGER;
     ALTER TABLE containers ADD COLUMN exit_code INTEGER;
     ALTER TABLE containers ADD COLUMN network TEXT NOT NULL DEFAULT 'none';",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Labels: small string key/value metadata on blobs, images and others.
pub type Labels = BTreeMap<String, String>;

/// A named image: a name pointing at a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalised reference, e.g. `docker.io/library/busybox:latest`.
    pub name: String,
    /// Digest of the manifest or index the name points at.
    pub digest: String,
    /// Media type of that manifest or index.
    pub media_type: String,
    /// Size of the manifest or index blob.
    pub size: u64,
    /// Seconds since the epoch when the name was first created.
    pub created: i64,
    /// Seconds since the epoch of the last change.
    pub updated: i64,
    /// Labels.
    pub labels: Labels,
}

/// A blob known to the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BlobRecord {
    /// `sha256:…`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// Media type it was first stored under.
    pub media_type: String,
    /// Seconds since the epoch.
    pub created: i64,
}

/// A checkout: a writable (or read-only) root filesystem mounted at `dir`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    /// Absolute path of the mount point.
    pub dir: String,
    /// Image name it was checked out from (`scratch` for none).
    pub image: String,
    /// Digest of the platform manifest it is based on (empty for scratch).
    pub manifest: String,
    /// Snapshotter that holds it.
    pub snapshotter: String,
    /// Its snapshot key.
    pub snapshot: String,
    /// Mounted read-only.
    pub readonly: bool,
    /// Seconds since the epoch.
    pub created: i64,
}

/// What a lease protects from gc.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResourceKind {
    /// A blob, by digest.
    Blob,
    /// A snapshot, as `snapshotter/key`.
    Snapshot,
}

impl ResourceKind {
    fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Blob => "blob",
            ResourceKind::Snapshot => "snapshot",
        }
    }
}

/// Seconds since the epoch, now.
pub fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// WAL size past which closing the database checkpoints and empties it: every open
/// scans the whole WAL (recovery), so it must stay small; a dozen CLI runs' writes.
const WAL_CHECKPOINT_BYTES: u64 = 256 << 10;

/// The open metadata database.
pub struct Meta {
    conn: Connection,
}

impl Drop for Meta {
    /// Checkpoints a grown WAL (skipped if another connection is busy: a later close
    /// does it). Auto-checkpoints cannot do this for short-lived processes: recovery on
    /// the next open forgets what was checkpointed, so the WAL would never restart.
    fn drop(&mut self) {
        let wal = self.conn.path().map(|p| format!("{p}-wal"));
        let grown =
            wal.is_some_and(|w| std::fs::metadata(w).is_ok_and(|m| m.len() > WAL_CHECKPOINT_BYTES));
        if grown {
            let _ = self
                .conn
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()));
        }
    }
}

/// Switches to WAL. A new database needs an exclusive lock for that, and SQLite answers
/// "busy" at once, without the busy handler, when two connections race for it; many
/// berth processes open the store at once, so the switch is retried for a while.
fn set_wal(conn: &Connection) -> rusqlite::Result<()> {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        match conn.pragma_update(None, "journal_mode", "WAL") {
            Err(rusqlite::Error::SqliteFailure(e, _))
                if e.code == rusqlite::ErrorCode::DatabaseBusy
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            other => return other,
        }
    }
}

impl Meta {
    /// Opens (creating and migrating as needed) the database at `path`.
    pub fn open(path: &Path) -> Result<Self> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(30))?;
        set_wal(&conn)?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        // Keep the WAL across closes: a checkpoint on every close, and a fresh WAL (header
        // and directory fsyncs) on every open, cost each short CLI run several fsyncs.
        // Drop checkpoints once the WAL has grown (see `WAL_CHECKPOINT_BYTES`).
        conn.set_db_config(
            rusqlite::config::DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE,
            true,
        )?;
        let mut meta = Meta { conn };
        meta.migrate()?;
        Ok(meta)
    }

    fn migrate(&mut self) -> Result<()> {
        let found: i64 = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if found > SCHEMA_VERSION {
            return Err(Error::SchemaTooNew {
                found,
                supported: SCHEMA_VERSION,
            });
        }
        if found == SCHEMA_VERSION {
            return Ok(());
        }
        // IMMEDIATE takes the write lock first, so two processes cannot both migrate.
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let current: i64 = tx.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        for (version, step) in MIGRATIONS.iter().enumerate().skip(current.max(0) as usize) {
            tx.execute_batch(step)?;
            tx.pragma_update(None, "user_version", version as i64 + 1)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// Runs `f` in one write transaction (taken up front to avoid lock upgrades).
    pub fn write<T>(&mut self, f: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let tx = self
            .conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// Read access for queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// All images, by name.
    pub fn images(&self) -> Result<Vec<ImageRecord>> {
        let mut st = self.conn.prepare(
            "SELECT name, digest, media_type, size, created, updated, labels FROM images ORDER BY name",
        )?;
        let rows = st.query_map([], image_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One image by normalised name.
    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT name, digest, media_type, size, created, updated, labels FROM images WHERE name = ?1",
                [name],
                image_row,
            )
            .optional()?)
    }

    /// One blob's record.
    pub fn blob(&self, digest: &str) -> Result<Option<BlobRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT digest, size, media_type, created FROM blobs WHERE digest = ?1",
                [digest],
                blob_row,
            )
            .optional()?)
    }

    /// Every blob record.
    pub fn blobs(&self) -> Result<Vec<BlobRecord>> {
        let mut st = self
            .conn
            .prepare("SELECT digest, size, media_type, created FROM blobs ORDER BY digest")?;
        let rows = st.query_map([], blob_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Resources held by leases that have not expired.
    pub fn leased(&self, kind: ResourceKind) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT r.resource FROM lease_resources r JOIN leases l ON l.id = r.lease
             WHERE r.kind = ?1 AND l.expires > ?2",
        )?;
        let rows = st.query_map(params![kind.as_str(), now()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

impl Meta {
    /// Every checkout.
    pub fn checkouts(&self) -> Result<Vec<CheckoutRecord>> {
        let mut st = self.conn.prepare(
            "SELECT dir, image, manifest, snapshotter, snapshot, readonly, created FROM checkouts ORDER BY dir",
        )?;
        let rows = st.query_map([], checkout_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The checkout mounted at `dir` (an absolute path).
    pub fn checkout(&self, dir: &str) -> Result<Option<CheckoutRecord>> {
        Ok(self
            .conn
            .query_row(
                "SELECT dir, image, manifest, snapshotter, snapshot, readonly, created FROM checkouts WHERE dir = ?1",
                [dir],
                checkout_row,
            )
            .optional()?)
    }
}

/// Records or replaces a checkout.
pub fn put_checkout(tx: &Transaction<'_>, c: &CheckoutRecord) -> Result<()> {
    tx.execute(
        "INSERT OR REPLACE INTO checkouts (dir, image, manifest, snapshotter, snapshot, readonly, created)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![c.dir, c.image, c.manifest, c.snapshotter, c.snapshot, c.readonly, c.created],
    )?;
    Ok(())
}

/// Forgets a checkout.
pub fn delete_checkout(tx: &Transaction<'_>, dir: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM checkouts WHERE dir = ?1", [dir])? > 0)
}

fn checkout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckoutRecord> {
    Ok(CheckoutRecord {
        dir: r.get(0)?,
        image: r.get(1)?,
        manifest: r.get(2)?,
        snapshotter: r.get(3)?,
        snapshot: r.get(4)?,
        readonly: r.get(5)?,
        created: r.get(6)?,
    })
}

/// Records a blob (first media type wins).
pub fn insert_blob(tx: &Transaction<'_>, digest: &str, size: u64, media_type: &str) -> Result<()> {
    tx.execute(
        "INSERT INTO blobs (digest, size, media_type, created) VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT(digest) DO UPDATE SET media_type = excluded.media_type WHERE blobs.media_type = ''",
        params![digest, size as i64, media_type, now()],
    )?;
    Ok(())
}

/// Points `name` at a manifest or index, keeping the original creation time.
pub fn put_image(
    tx: &Transaction<'_>,
    name: &str,
    digest: &str,
    media_type: &str,
    size: u64,
) -> Result<()> {
    let t = now();
    tx.execute(
        "INSERT INTO images (name, digest, media_type, size, created, updated) VALUES (?1, ?2, ?3, ?4, ?5, ?5)
         ON CONFLICT(name) DO UPDATE SET digest = excluded.digest, media_type = excluded.media_type,
            size = excluded.size, updated = excluded.updated",
        params![name, digest, media_type, size as i64, t],
    )?;
    Ok(())
}

/// Removes an image name; false when there was none.
pub fn delete_image(tx: &Transaction<'_>, name: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM images WHERE name = ?1", [name])? > 0)
}

/// Creates a lease that protects what is added to it until `ttl` passes.
pub fn create_lease(tx: &Transaction<'_>, id: &str, ttl: Duration) -> Result<()> {
    let t = now();
    tx.execute(
        "INSERT INTO leases (id, created, expires) VALUES (?1, ?2, ?3)",
        params![id, t, t + ttl.as_secs() as i64],
    )?;
    Ok(())
}

/// Adds a resource to a lease.
pub fn lease_add(
    tx: &Transaction<'_>,
    lease: &str,
    kind: ResourceKind,
    resource: &str,
) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO lease_resources (lease, kind, resource) VALUES (?1, ?2, ?3)",
        params![lease, kind.as_str(), resource],
    )?;
    Ok(())
}

/// Ends a lease.
pub fn delete_lease(tx: &Transaction<'_>, lease: &str) -> Result<()> {
    tx.execute("DELETE FROM leases WHERE id = ?1", [lease])?;
    Ok(())
}

/// Removes expired leases; returns how many.
pub fn expire_leases(tx: &Transaction<'_>) -> Result<usize> {
    Ok(tx.execute("DELETE FROM leases WHERE expires <= ?1", [now()])?)
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    let labels: String = r.get(6)?;
    Ok(ImageRecord {
        name: r.get(0)?,
        digest: r.get(1)?,
        media_type: r.get(2)?,
        size: r.get::<_, i64>(3)? as u64,
        created: r.get(4)?,
        updated: r.get(5)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
    })
}

fn blob_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<BlobRecord> {
    Ok(BlobRecord {
        digest: r.get(0)?,
        size: r.get::<_, i64>(1)? as u64,
        media_type: r.get(2)?,
        created: r.get(3)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let mut m = Meta::open(&path).expect("open");
        m.write(|tx| put_image(tx, "docker.io/library/a:latest", "sha256:x", "m", 1))
            .expect("put");
        drop(m);
        let m = Meta::open(&path).expect("reopen");
        assert_eq!(m.images().expect("list").len(), 1);
        m.conn()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        drop(m);
        assert!(matches!(Meta::open(&path), Err(Error::SchemaTooNew { .. })));
    }

    #[test]
    fn leases_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut m = Meta::open(&dir.path().join("meta.db")).expect("open");
        m.write(|tx| {
            create_lease(tx, "l1", Duration::from_secs(3600))?;
            lease_add(tx, "l1", ResourceKind::Blob, "sha256:a")?;
            create_lease(tx, "l0", Duration::ZERO)?;
            lease_add(tx, "l0", ResourceKind::Blob, "sha256:b")
        })
        .expect("leases");
        assert_eq!(
            m.leased(ResourceKind::Blob).expect("leased"),
            vec!["sha256:a".to_string()]
        );
        assert_eq!(m.write(expire_leases).expect("expire"), 1);
    }
}
