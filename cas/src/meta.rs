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
    // 3 -> 4: namespaces (names, checkouts and containers apart; content shared), leases
    // held by a live process, and the event journal.
    "CREATE TABLE namespaces (
        name TEXT PRIMARY KEY,
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}'
     );
     INSERT INTO namespaces (name, created) VALUES ('default', strftime('%s', 'now'));
     CREATE TABLE images_v4 (
        namespace TEXT NOT NULL,
        name TEXT NOT NULL,
        digest TEXT NOT NULL,
        media_type TEXT NOT NULL,
        size INTEGER NOT NULL,
        created INTEGER NOT NULL,
        updated INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        PRIMARY KEY (namespace, name)
     );
     INSERT INTO images_v4 SELECT 'default', name, digest, media_type, size, created, updated, labels FROM images;
     DROP TABLE images;
     ALTER TABLE images_v4 RENAME TO images;
     CREATE INDEX images_by_digest ON images(digest);
     ALTER TABLE checkouts ADD COLUMN namespace TEXT NOT NULL DEFAULT 'default';
     CREATE TABLE containers_v4 (
        id TEXT PRIMARY KEY,
        namespace TEXT NOT NULL,
        name TEXT,
        image TEXT,
        snapshotter TEXT,
        snapshot TEXT,
        created INTEGER NOT NULL,
        labels TEXT NOT NULL DEFAULT '{}',
        manifest TEXT NOT NULL DEFAULT '',
        checkout TEXT,
        runtime TEXT NOT NULL DEFAULT 'runc',
        command TEXT NOT NULL DEFAULT '[]',
        auto_remove INTEGER NOT NULL DEFAULT 0,
        stop_signal INTEGER NOT NULL DEFAULT 15,
        finished INTEGER,
        exit_code INTEGER,
        network TEXT NOT NULL DEFAULT 'none',
        UNIQUE (namespace, name)
     );
     INSERT INTO containers_v4 SELECT id, 'default', name, image, snapshotter, snapshot, created,
        labels, manifest, checkout, runtime, command, auto_remove, stop_signal, finished,
        exit_code, network FROM containers;
     DROP TABLE containers;
     ALTER TABLE containers_v4 RENAME TO containers;
     ALTER TABLE leases ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
     ALTER TABLE leases ADD COLUMN held INTEGER NOT NULL DEFAULT 0;
     CREATE INDEX lease_resources_by_kind ON lease_resources(kind);
     CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        time INTEGER NOT NULL,
        namespace TEXT NOT NULL,
        topic TEXT NOT NULL,
        subject TEXT NOT NULL,
        attrs TEXT NOT NULL DEFAULT '{}'
     );",
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Labels: small string key/value metadata on blobs, images and others.
pub type Labels = BTreeMap<String, String>;

/// The namespace clients get when they name none (as containerd's).
pub const DEFAULT_NAMESPACE: &str = "default";

/// A named image: a name pointing at a manifest or index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// The namespace the name lives in.
    pub namespace: String,
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
    /// The namespace it belongs to.
    pub namespace: String,
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

    /// Runs `f` in one read transaction: every query in it sees the same snapshot of the
    /// database, whatever other processes commit meanwhile.
    pub fn read<T>(&mut self, f: impl FnOnce(&Meta) -> Result<T>) -> Result<T> {
        self.conn.execute_batch("BEGIN DEFERRED")?;
        let out = f(self);
        let end = self.conn.execute_batch("COMMIT");
        let out = out?;
        end?;
        Ok(out)
    }

    /// Read access for queries.
    pub fn conn(&self) -> &Connection {
        &self.conn
    }

    /// `PRAGMA integrity_check`: empty when the database is sound, else what is wrong.
    pub fn integrity_problems(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare("PRAGMA integrity_check")?;
        let rows = st.query_map([], |r| r.get::<_, String>(0))?;
        let found = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        Ok(found.into_iter().filter(|r| r != "ok").collect())
    }

    /// The images of one namespace, by name.
    pub fn images(&self, namespace: &str) -> Result<Vec<ImageRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images WHERE namespace = ?1 ORDER BY name"
        ))?;
        let rows = st.query_map([namespace], image_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The images of every namespace (gc's roots).
    pub fn all_images(&self) -> Result<Vec<ImageRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {IMAGE_COLUMNS} FROM images ORDER BY namespace, name"
        ))?;
        let rows = st.query_map([], image_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// One image by normalised name.
    pub fn image(&self, namespace: &str, name: &str) -> Result<Option<ImageRecord>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {IMAGE_COLUMNS} FROM images WHERE namespace = ?1 AND name = ?2"),
                [namespace, name],
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

    /// Every namespace that exists, by name.
    pub fn namespaces(&self) -> Result<Vec<String>> {
        let mut st = self.conn.prepare(
            "SELECT name FROM namespaces UNION SELECT namespace FROM images
             UNION SELECT namespace FROM checkouts UNION SELECT namespace FROM containers
             ORDER BY 1",
        )?;
        let rows = st.query_map([], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every checkout of one namespace.
    pub fn checkouts(&self, namespace: &str) -> Result<Vec<CheckoutRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {CHECKOUT_COLUMNS} FROM checkouts WHERE namespace = ?1 ORDER BY dir"
        ))?;
        let rows = st.query_map([namespace], checkout_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// Every checkout of every namespace (gc's roots).
    pub fn all_checkouts(&self) -> Result<Vec<CheckoutRecord>> {
        let mut st = self.conn.prepare(&format!(
            "SELECT {CHECKOUT_COLUMNS} FROM checkouts ORDER BY dir"
        ))?;
        let rows = st.query_map([], checkout_row)?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }

    /// The checkout mounted at `dir` (an absolute path), in whichever namespace.
    pub fn checkout(&self, dir: &str) -> Result<Option<CheckoutRecord>> {
        Ok(self
            .conn
            .query_row(
                &format!("SELECT {CHECKOUT_COLUMNS} FROM checkouts WHERE dir = ?1"),
                [dir],
                checkout_row,
            )
            .optional()?)
    }
}

const IMAGE_COLUMNS: &str = "namespace, name, digest, media_type, size, created, updated, labels";
const CHECKOUT_COLUMNS: &str =
    "namespace, dir, image, manifest, snapshotter, snapshot, readonly, created";

/// Makes sure `namespace` is listed (it is, once anything was made in it).
pub fn ensure_namespace(tx: &Transaction<'_>, namespace: &str) -> Result<()> {
    tx.execute(
        "INSERT OR IGNORE INTO namespaces (name, created) VALUES (?1, ?2)",
        params![namespace, now()],
    )?;
    Ok(())
}

/// Removes an empty namespace; false when it holds images, checkouts or containers.
pub fn delete_namespace(tx: &Transaction<'_>, namespace: &str) -> Result<bool> {
    let used: i64 = tx.query_row(
        "SELECT (SELECT count(*) FROM images WHERE namespace = ?1)
              + (SELECT count(*) FROM checkouts WHERE namespace = ?1)
              + (SELECT count(*) FROM containers WHERE namespace = ?1)",
        [namespace],
        |r| r.get(0),
    )?;
    if used > 0 {
        return Ok(false);
    }
    tx.execute("DELETE FROM namespaces WHERE name = ?1", [namespace])?;
    Ok(true)
}

/// Records or replaces a checkout.
pub fn put_checkout(tx: &Transaction<'_>, c: &CheckoutRecord) -> Result<()> {
    ensure_namespace(tx, &c.namespace)?;
    tx.execute(
        &format!("INSERT OR REPLACE INTO checkouts ({CHECKOUT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"),
        params![c.namespace, c.dir, c.image, c.manifest, c.snapshotter, c.snapshot, c.readonly, c.created],
    )?;
    Ok(())
}

/// Forgets a checkout.
pub fn delete_checkout(tx: &Transaction<'_>, dir: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM checkouts WHERE dir = ?1", [dir])? > 0)
}

fn checkout_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<CheckoutRecord> {
    Ok(CheckoutRecord {
        namespace: r.get(0)?,
        dir: r.get(1)?,
        image: r.get(2)?,
        manifest: r.get(3)?,
        snapshotter: r.get(4)?,
        snapshot: r.get(5)?,
        readonly: r.get(6)?,
        created: r.get(7)?,
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

/// Forgets a blob's record.
pub fn delete_blob(tx: &Transaction<'_>, digest: &str) -> Result<()> {
    tx.execute("DELETE FROM blobs WHERE digest = ?1", [digest])?;
    Ok(())
}

/// Points `name` at a manifest or index, keeping the original creation time. Returns
/// what it pointed at before (None: the name is new).
pub fn put_image(
    tx: &Transaction<'_>,
    namespace: &str,
    name: &str,
    digest: &str,
    media_type: &str,
    size: u64,
) -> Result<Option<String>> {
    ensure_namespace(tx, namespace)?;
    let before: Option<String> = tx
        .query_row(
            "SELECT digest FROM images WHERE namespace = ?1 AND name = ?2",
            [namespace, name],
            |r| r.get(0),
        )
        .optional()?;
    let t = now();
    tx.execute(
        "INSERT INTO images (namespace, name, digest, media_type, size, created, updated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)
         ON CONFLICT(namespace, name) DO UPDATE SET digest = excluded.digest,
            media_type = excluded.media_type, size = excluded.size, updated = excluded.updated",
        params![namespace, name, digest, media_type, size as i64, t],
    )?;
    let topic = match &before {
        None => "/images/create",
        Some(d) if d != digest => "/images/update",
        Some(_) => return Ok(before),
    };
    let attrs: Labels = [("digest".to_string(), digest.to_string())].into();
    crate::events::record(tx, namespace, topic, name, &attrs)?;
    Ok(before)
}

/// Removes an image name; false when there was none.
pub fn delete_image(tx: &Transaction<'_>, namespace: &str, name: &str) -> Result<bool> {
    let gone = tx.execute(
        "DELETE FROM images WHERE namespace = ?1 AND name = ?2",
        [namespace, name],
    )? > 0;
    if gone {
        crate::events::record(tx, namespace, "/images/delete", name, &Labels::new())?;
    }
    Ok(gone)
}

fn image_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImageRecord> {
    let labels: String = r.get(7)?;
    Ok(ImageRecord {
        namespace: r.get(0)?,
        name: r.get(1)?,
        digest: r.get(2)?,
        media_type: r.get(3)?,
        size: r.get::<_, i64>(4)? as u64,
        created: r.get(5)?,
        updated: r.get(6)?,
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

/// Whether a failed statement broke a UNIQUE or PRIMARY KEY constraint (a name taken),
/// as opposed to any other database failure.
pub fn is_unique_violation(e: &Error) -> bool {
    matches!(e, Error::Db(rusqlite::Error::SqliteFailure(f, _))
        if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
            || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn migrates_and_refuses_newer_schema() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        let mut m = Meta::open(&path).expect("open");
        m.write(|tx| {
            put_image(
                tx,
                "default",
                "docker.io/library/a:latest",
                "sha256:x",
                "m",
                1,
            )
        })
        .expect("put");
        drop(m);
        let m = Meta::open(&path).expect("reopen");
        assert_eq!(m.images("default").expect("list").len(), 1);
        m.conn()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("bump");
        drop(m);
        assert!(matches!(Meta::open(&path), Err(Error::SchemaTooNew { .. })));
    }

    #[test]
    fn version_3_databases_move_into_the_default_namespace() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("meta.db");
        {
            let conn = Connection::open(&path).expect("open");
            let tx = conn.unchecked_transaction().expect("tx");
            for step in &MIGRATIONS[..3] {
                tx.execute_batch(step).expect("old schema");
            }
            tx.pragma_update(None, "user_version", 3).expect("version");
            tx.execute(
                "INSERT INTO images (name, digest, media_type, size, created, updated)
                 VALUES ('docker.io/library/a:latest', 'sha256:x', 'm', 1, 5, 5)",
                [],
            )
            .expect("image");
            tx.execute(
                "INSERT INTO containers (id, name, image, created) VALUES ('c1', 'web', 'a', 1)",
                [],
            )
            .expect("container");
            tx.commit().expect("commit");
        }
        let mut m = Meta::open(&path).expect("migrate");
        assert_eq!(m.images("default").expect("images")[0].created, 5);
        assert_eq!(m.containers("default").expect("containers")[0].id, "c1");
        assert_eq!(m.namespaces().expect("ns"), vec!["default".to_string()]);
        // Names are unique per namespace, not across them.
        m.write(|tx| {
            put_image(
                tx,
                "k8s.io",
                "docker.io/library/a:latest",
                "sha256:y",
                "m",
                1,
            )
        })
        .expect("same name elsewhere");
        assert_eq!(m.all_images().expect("all").len(), 2);
        assert!(m.integrity_problems().expect("check").is_empty());
    }
}
