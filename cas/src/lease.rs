//! Leases: what an operation in flight has written or relies on, kept from gc until
//! its result is referenced by a name or a record.
//!
//! A lease is a row in `meta.db` with its resources (blobs by digest, snapshots as
//! `snapshotter/key`, layers by chainID). A lease *held* by a process also has a lock
//! file, `<root>/leases/<id>`, that its holders keep flock'ed (shared) for as long as
//! they live: when the last holder dies, killed or not, gc finds the file unlocked and
//! the lease has lapsed. Every lease also has an expiry, so one whose holders never
//! let go (or that no process holds) still ends.
//!
//! Resources are added under a shared hold of the store's gc gate, with the check that
//! what is added still exists, so gc never decides between the two.

use std::path::PathBuf;
use std::time::Duration;

use rusqlite::{params, OptionalExtension, Transaction};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::lock::{self, Lock, Mode};
use crate::meta::{self, Labels, Meta};
use crate::store::Store;

/// How long a held lease lives at most; its holder's death ends it sooner.
pub const HELD_LEASE_TTL: Duration = Duration::from_secs(24 * 3600);

/// What a lease protects from gc.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ResourceKind {
    /// A blob, by digest; a manifest or index keeps everything it reaches.
    Blob,
    /// A snapshot, as `snapshotter/key`.
    Snapshot,
    /// An unpacked or indexed layer, by chainID: its snapshot in every snapshotter and
    /// its tree index.
    Layer,
}

impl ResourceKind {
    /// The word stored in the database.
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Blob => "blob",
            ResourceKind::Snapshot => "snapshot",
            ResourceKind::Layer => "layer",
        }
    }

    fn parse(s: &str) -> Option<Self> {
        match s {
            "blob" => Some(ResourceKind::Blob),
            "snapshot" => Some(ResourceKind::Snapshot),
            "layer" => Some(ResourceKind::Layer),
            _ => None,
        }
    }
}

/// A lease as recorded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LeaseRecord {
    /// Its id.
    pub id: String,
    /// Seconds since the epoch.
    pub created: i64,
    /// Seconds since the epoch when it ends at the latest.
    pub expires: i64,
    /// Whether holders keep it alive through its lock file.
    pub held: bool,
    /// What it is for (`berth.op=pull`, ...).
    pub labels: Labels,
    /// What it protects.
    pub resources: Vec<(ResourceKind, String)>,
}

/// A lease this process holds. Dropping it without [`Store::release`] lets it lapse:
/// gc then removes it and, in time, whatever only it protected.
pub struct Lease {
    id: String,
    _held: Lock,
}

impl Lease {
    /// The lease's id.
    pub fn id(&self) -> &str {
        &self.id
    }
}

impl std::fmt::Debug for Lease {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lease").field("id", &self.id).finish()
    }
}

impl Store {
    fn lease_file(&self, id: &str) -> Result<PathBuf> {
        let ok = !id.is_empty() && id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
        if !ok {
            return Err(Error::LeaseNotFound(id.to_string()));
        }
        Ok(self.root().join("leases").join(id))
    }

    /// A new lease held by this process (see the module docs).
    pub fn lease(&self, labels: Labels) -> Result<Lease> {
        let id = new_id();
        let file = self.lease_file(&id)?;
        let dir = self.root().join("leases");
        std::fs::create_dir_all(&dir).map_err(Error::io(&dir))?;
        // Lock first, row second: gc never sees the row with nobody holding the file.
        let held = lock::lock(&file, Mode::Shared)?;
        let t = meta::now();
        let labels_json = serde_json::to_string(&labels).map_err(Error::json("lease labels"))?;
        self.meta().write(|tx| {
            tx.execute(
                "INSERT INTO leases (id, created, expires, labels, held) VALUES (?1, ?2, ?3, ?4, 1)",
                params![id, t, t + HELD_LEASE_TTL.as_secs() as i64, labels_json],
            )?;
            Ok(())
        })?;
        Ok(Lease { id, _held: held })
    }

    /// A lease nobody holds: it lives until `ttl` passes or it is released.
    pub fn lease_for(&self, ttl: Duration, labels: Labels) -> Result<String> {
        let id = new_id();
        let t = meta::now();
        let labels_json = serde_json::to_string(&labels).map_err(Error::json("lease labels"))?;
        self.meta().write(|tx| {
            tx.execute(
                "INSERT INTO leases (id, created, expires, labels, held) VALUES (?1, ?2, ?3, ?4, 0)",
                params![id, t, t + ttl.as_secs() as i64, labels_json],
            )?;
            Ok(())
        })?;
        Ok(id)
    }

    /// Holds another process's lease too (a FUSE server taking over its starter's), so
    /// it lives while either does.
    pub fn join_lease(&self, id: &str) -> Result<Lease> {
        let file = self.lease_file(id)?;
        if !file.exists() {
            return Err(Error::LeaseNotFound(id.to_string()));
        }
        let held = lock::lock(&file, Mode::Shared)?;
        let known = self.meta().lease(id)?.is_some();
        if !known {
            return Err(Error::LeaseNotFound(id.to_string()));
        }
        Ok(Lease {
            id: id.to_string(),
            _held: held,
        })
    }

    /// Adds `resource` to `lease`, under the gc gate: the caller makes sure it exists
    /// (or creates it) while `under` runs, so gc sees both or neither.
    pub fn lease_add<T, E: From<Error>>(
        &self,
        lease: &str,
        kind: ResourceKind,
        resource: &str,
        under: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let _gate = self.gate().shared()?;
        self.meta()
            .write(|tx| lease_add(tx, lease, kind, resource))?;
        under()
    }

    /// [`Store::lease_add`] for several resources of one kind, in one transaction.
    pub fn lease_add_all<T, E: From<Error>>(
        &self,
        lease: &str,
        kind: ResourceKind,
        resources: &[String],
        under: impl FnOnce() -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let _gate = self.gate().shared()?;
        self.meta().write(|tx| {
            for r in resources {
                lease_add(tx, lease, kind, r)?;
            }
            Ok(())
        })?;
        under()
    }

    /// Ends a lease: what only it protected is garbage from now on.
    pub fn release(&self, lease: Lease) -> Result<()> {
        self.release_with(lease, |_| Ok(()))
    }

    /// Writes what `record` writes (the name or record that now keeps the lease's
    /// resources) and ends the lease, in one transaction.
    pub fn release_with(
        &self,
        lease: Lease,
        record: impl FnOnce(&Transaction<'_>) -> Result<()>,
    ) -> Result<()> {
        self.meta().write(|tx| {
            record(tx)?;
            delete_lease(tx, &lease.id)
        })?;
        let file = self.lease_file(&lease.id)?;
        let _ = std::fs::remove_file(file);
        Ok(())
    }

    /// Ends a lease by id (an unheld one, or one of a dead holder).
    pub fn release_id(&self, id: &str) -> Result<bool> {
        let gone = self.meta().write(|tx| delete_lease(tx, id))?;
        if let Ok(file) = self.lease_file(id) {
            let _ = std::fs::remove_file(file);
        }
        Ok(gone)
    }

    /// Removes leases that expired or whose holders are all gone; returns their ids.
    /// gc calls it under the exclusive gate.
    pub fn expire_leases(&self) -> Result<Vec<String>> {
        let mut ended = Vec::new();
        for l in self.meta().leases()? {
            if l.expires <= meta::now() || (l.held && !self.is_held(&l.id)?) {
                ended.push(l.id);
            }
        }
        self.meta().write(|tx| {
            for id in &ended {
                delete_lease(tx, id)?;
            }
            Ok(())
        })?;
        for id in &ended {
            if let Ok(file) = self.lease_file(id) {
                let _ = std::fs::remove_file(file);
            }
        }
        self.remove_stray_lease_files()?;
        Ok(ended)
    }

    /// Whether a live process still holds the lease's lock file.
    pub fn is_held(&self, id: &str) -> Result<bool> {
        let file = self.lease_file(id)?;
        if !file.exists() {
            return Ok(false);
        }
        Ok(lock::try_lock(&file, Mode::Exclusive)?.is_none())
    }

    /// Lock files without a row (a holder killed between the two) that nobody holds.
    fn remove_stray_lease_files(&self) -> Result<()> {
        let dir = self.root().join("leases");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let id = e.file_name().to_string_lossy().into_owned();
            if self.meta().lease(&id)?.is_none() && !self.is_held(&id)? {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }
}

fn new_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!(
        "{nanos:x}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

impl Meta {
    /// One lease, with its resources.
    pub fn lease(&self, id: &str) -> Result<Option<LeaseRecord>> {
        let row = self
            .conn()
            .query_row(
                "SELECT id, created, expires, held, labels FROM leases WHERE id = ?1",
                [id],
                lease_row,
            )
            .optional()?;
        row.map(|l| self.with_resources(l)).transpose()
    }

    /// Every lease, with its resources.
    pub fn leases(&self) -> Result<Vec<LeaseRecord>> {
        let mut st = self.conn().prepare(
            "SELECT id, created, expires, held, labels FROM leases ORDER BY created, id",
        )?;
        let rows = st.query_map([], lease_row)?;
        let leases = rows.collect::<rusqlite::Result<Vec<_>>>()?;
        leases.into_iter().map(|l| self.with_resources(l)).collect()
    }

    fn with_resources(&self, mut l: LeaseRecord) -> Result<LeaseRecord> {
        let mut st = self.conn().prepare(
            "SELECT kind, resource FROM lease_resources WHERE lease = ?1 ORDER BY kind, resource",
        )?;
        let rows = st.query_map([&l.id], |r| Ok((r.get::<_, String>(0)?, r.get(1)?)))?;
        for row in rows {
            let (kind, resource) = row?;
            if let Some(kind) = ResourceKind::parse(&kind) {
                l.resources.push((kind, resource));
            }
        }
        Ok(l)
    }

    /// Resources of `kind` held by leases that have not expired.
    pub fn leased(&self, kind: ResourceKind) -> Result<Vec<String>> {
        let mut st = self.conn().prepare(
            "SELECT r.resource FROM lease_resources r JOIN leases l ON l.id = r.lease
             WHERE r.kind = ?1 AND l.expires > ?2",
        )?;
        let rows = st.query_map(params![kind.as_str(), meta::now()], |r| r.get(0))?;
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
    }
}

fn lease_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<LeaseRecord> {
    let labels: String = r.get(4)?;
    Ok(LeaseRecord {
        id: r.get(0)?,
        created: r.get(1)?,
        expires: r.get(2)?,
        held: r.get(3)?,
        labels: serde_json::from_str(&labels).unwrap_or_default(),
        resources: Vec::new(),
    })
}

/// Creates an unheld lease that protects what is added to it until `ttl` passes.
pub fn create_lease(tx: &Transaction<'_>, id: &str, ttl: Duration) -> Result<()> {
    let t = meta::now();
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
    let n = tx.execute(
        "INSERT OR IGNORE INTO lease_resources (lease, kind, resource)
         SELECT ?1, ?2, ?3 WHERE EXISTS (SELECT 1 FROM leases WHERE id = ?1)",
        params![lease, kind.as_str(), resource],
    )?;
    let exists: bool = tx.query_row(
        "SELECT EXISTS (SELECT 1 FROM leases WHERE id = ?1)",
        [lease],
        |r| r.get(0),
    )?;
    if n == 0 && !exists {
        return Err(Error::LeaseNotFound(lease.to_string()));
    }
    Ok(())
}

/// Ends a lease; false when there was none.
pub fn delete_lease(tx: &Transaction<'_>, lease: &str) -> Result<bool> {
    Ok(tx.execute("DELETE FROM leases WHERE id = ?1", [lease])? > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unheld_leases_expire() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let live = store
            .lease_for(Duration::from_secs(3600), Labels::new())
            .expect("lease");
        let dead = store
            .lease_for(Duration::ZERO, Labels::new())
            .expect("lease");
        store
            .meta()
            .write(|tx| {
                lease_add(tx, &live, ResourceKind::Blob, "sha256:a")?;
                lease_add(tx, &dead, ResourceKind::Blob, "sha256:b")
            })
            .expect("add");
        assert_eq!(
            store.meta().leased(ResourceKind::Blob).expect("leased"),
            vec!["sha256:a".to_string()]
        );
        assert_eq!(store.expire_leases().expect("expire"), vec![dead]);
        assert!(store.meta().lease(&live).expect("get").is_some());
    }

    #[test]
    fn a_held_lease_lapses_when_its_holder_lets_go() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let lease = store.lease(Labels::new()).expect("lease");
        let id = lease.id().to_string();
        store
            .lease_add(&id, ResourceKind::Layer, "sha256:l", || Ok::<_, Error>(()))
            .expect("add");
        assert!(store.expire_leases().expect("expire").is_empty(), "held");
        let joined = store.join_lease(&id).expect("join");
        drop(lease);
        assert!(
            store.expire_leases().expect("expire").is_empty(),
            "still held by the joiner"
        );
        drop(joined); // as a SIGKILL would
        assert_eq!(store.expire_leases().expect("expire"), vec![id.clone()]);
        assert!(!dir.path().join("leases").join(&id).exists());
        assert!(matches!(
            store
                .meta()
                .write(|tx| lease_add(tx, &id, ResourceKind::Blob, "x")),
            Err(Error::LeaseNotFound(_))
        ));
    }

    #[test]
    fn released_leases_are_gone_at_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let lease = store.lease(Labels::new()).expect("lease");
        let id = lease.id().to_string();
        store.release(lease).expect("release");
        assert!(store.meta().lease(&id).expect("get").is_none());
        assert!(store.join_lease(&id).is_err());
    }
}
