//! Checkouts: git-like working trees. A checkout is a snapshot mounted at a directory,
//! recorded (dir → image, manifest, snapshotter, snapshot) in its namespace.
//!
//! One writer per checkout: every operation that changes one (commit, discard, mount,
//! umount, the repair after a crash) holds its lock, `locks/checkout-<hash of dir>`, for
//! its whole run; a second one waits. Locks are taken before the gc gate and before any
//! database transaction, never after.

mod commit;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_cas::lock::{self, Lock, Mode};
use berth_cas::meta::{self, CheckoutRecord};
use berth_cas::Platform;
use berth_fs::diff::{Change, ChangeKind};
use berth_fs::snapshot::{SnapshotError, Snapshotter};
use serde::Serialize;

pub use commit::{CommitRequest, Committed, LayerCompression};

use crate::error::{Error, Result};
use crate::namespace::Ns;
use crate::root::Root;
use crate::unpack::Unpack;
use crate::views;

/// The image name `checkout` takes for an empty root filesystem.
pub const SCRATCH: &str = "scratch";

/// Snapshot labels of a checkout, so an interrupted commit can be finished: which
/// checkout the snapshot is for and which image it is based on.
pub const CHECKOUT_LABEL: &str = "berth.checkout";
const IMAGE_LABEL: &str = "berth.image";
const MANIFEST_LABEL: &str = "berth.manifest";

/// The checkout services of a namespace.
pub struct Checkouts<'a> {
    ns: Ns<'a>,
}

impl<'a> Ns<'a> {
    /// The checkout services of this namespace.
    pub fn checkouts(&self) -> Checkouts<'a> {
        Checkouts { ns: *self }
    }
}

/// What to check out.
#[derive(Debug, Clone)]
pub struct CheckoutRequest {
    /// Image name or digest, or [`SCRATCH`].
    pub image: String,
    /// Where to mount it (created if missing; must be empty).
    pub dir: PathBuf,
    /// Mount read-only.
    pub readonly: bool,
    /// Stack the writable overlay on a FUSE view of the image instead of unpacked layers.
    pub fuse: bool,
    /// The platform to resolve a multi-platform image to.
    pub platform: Platform,
}

/// A checkout as listed.
#[derive(Debug, Clone, Serialize)]
pub struct CheckoutInfo {
    /// The record.
    #[serde(flatten)]
    pub record: CheckoutRecord,
    /// Whether its directory is mounted now.
    pub mounted: bool,
}

/// A checkout's changes counted.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct DiffSummary {
    /// Paths added.
    pub added: usize,
    /// Paths modified.
    pub modified: usize,
    /// Paths deleted.
    pub deleted: usize,
    /// Bytes of file content in the changes.
    pub content_bytes: u64,
    /// Size of the changes as an uncompressed layer tar.
    pub layer_bytes: u64,
}

/// The writer lock of one checkout directory.
pub(crate) struct CheckoutLock {
    _held: Lock,
}

impl CheckoutLock {
    /// Waits for and takes the lock of checkout `dir` (an absolute path).
    pub fn acquire(root: &Root, dir: &str) -> Result<CheckoutLock> {
        use sha2::Digest as _;
        let locks = root.layout().locks();
        std::fs::create_dir_all(&locks)
            .map_err(Error::io(format!("creating {}", locks.display())))?;
        let hash = hex::encode(sha2::Sha256::digest(dir.as_bytes()));
        let path = locks.join(format!("checkout-{}", &hash[..32]));
        Ok(CheckoutLock {
            _held: lock::lock(&path, Mode::Exclusive)?,
        })
    }
}

/// An absolute, symlink-free form of a directory (it must exist).
pub fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .map_err(Error::io(format!("{}: no such directory", dir.display())))
}

/// Refuses a directory that holds anything (a mount would hide it).
pub(crate) fn check_empty(dir: &Path) -> Result<()> {
    let mut entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("reading {}", dir.display())))?;
    match entries.next() {
        None => Ok(()),
        Some(_) => Err(Error::DirNotEmpty(dir.to_path_buf())),
    }
}

pub(crate) fn labels(dir: &str, image: &str, manifest: &str) -> BTreeMap<String, String> {
    [
        (CHECKOUT_LABEL, dir),
        (IMAGE_LABEL, image),
        (MANIFEST_LABEL, manifest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

impl Checkouts<'_> {
    fn root(&self) -> &Root {
        self.ns.root()
    }

    /// Checks out an image (or scratch) at `req.dir`.
    pub fn create(&self, req: &CheckoutRequest) -> Result<CheckoutRecord> {
        if req.readonly && req.image == SCRATCH {
            return Err(Error::Unsupported(
                "a read-only checkout of scratch would be an empty directory; drop --readonly"
                    .into(),
            ));
        }
        if req.fuse && req.image == SCRATCH {
            return Err(Error::Unsupported(
                "--fuse needs an image; scratch has nothing to serve".into(),
            ));
        }
        let root = self.root();
        std::fs::create_dir_all(&req.dir)
            .map_err(Error::io(format!("creating {}", req.dir.display())))?;
        let dir = canonical_dir(&req.dir)?;
        let dir_s = dir.to_string_lossy().into_owned();
        let _lock = CheckoutLock::acquire(root, &dir_s)?;
        if root.store().meta().checkout(&dir_s)?.is_some() {
            return Err(Error::AlreadyACheckout(req.dir.clone()));
        }
        check_empty(&dir)?;
        let (snap_name, snap) = root.default_snapshotter()?;
        let key = format!("checkout-{}", crate::ids::random_hex(8)?);
        let new = |image: String, manifest: String| CheckoutRecord {
            namespace: self.ns.name().to_string(),
            dir: dir_s.clone(),
            image,
            manifest,
            snapshotter: snap_name.clone(),
            snapshot: key.clone(),
            readonly: req.readonly,
            created: meta::now(),
        };
        let unpacked = match req.fuse || req.image == SCRATCH {
            true => None,
            false => self.create_unpacked(req, snap.as_ref(), &key, &new)?,
        };
        let (record, mounts) = match unpacked {
            Some(done) => done,
            None => self.create_leased(req, &dir_s, &snap_name, snap.as_ref(), &key, &new)?,
        };
        crate::faults::point("checkout-recorded");
        if let Err(e) = berth_mount::mount_all(&mounts, &dir) {
            let _ = root
                .store()
                .meta()
                .write(|tx| meta::delete_checkout(tx, &record.dir));
            let _ = views::release(snap.as_ref(), &key);
            let _ = snap.remove(&key);
            return Err(e.into());
        }
        self.ns.event(
            "/checkouts/create",
            &record.dir,
            &[("image", record.image.clone())],
        );
        Ok(record)
    }

    /// The common case, every layer of the image unpacked already: no lease is needed.
    /// The gc gate is held (shared) from resolving the image until the record, which then
    /// keeps it all, is written: a few metadata steps. None when a layer is missing.
    fn create_unpacked(
        &self,
        req: &CheckoutRequest,
        snap: &dyn Snapshotter,
        key: &str,
        new: &dyn Fn(String, String) -> CheckoutRecord,
    ) -> Result<Option<(CheckoutRecord, Vec<berth_mount::Mount>)>> {
        let root = self.root();
        let _gate = root.store().gate().shared()?;
        let (img, resolved) = self.ns.images().resolve(&req.image, &req.platform)?;
        crate::unpack::check_layers(&resolved)?;
        let chain = resolved.chain_ids();
        if !chain.iter().all(|c| crate::unpack::is_committed(snap, c)) {
            return Ok(None);
        }
        let manifest = resolved.manifest_desc.digest().to_string();
        let record = new(img.name, manifest);
        let mounts = match req.readonly {
            true => snap.view(key, chain.last().map(String::as_str))?,
            false => snap.prepare(key, chain.last().map(String::as_str))?,
        };
        let recorded = snap
            .update_labels(key, labels(&record.dir, &record.image, &record.manifest))
            .map_err(Error::from)
            .and_then(|_| {
                Ok(root
                    .store()
                    .meta()
                    .write(|tx| meta::put_checkout(tx, &record))?)
            });
        if let Err(e) = recorded {
            let _ = views::release(snap, key);
            let _ = snap.remove(key);
            return Err(e);
        }
        Ok(Some((record, mounts)))
    }

    /// A checkout that unpacks (or indexes, for `--fuse`) what it needs first: all of it
    /// on a lease until the record is written.
    #[allow(clippy::too_many_arguments)]
    fn create_leased(
        &self,
        req: &CheckoutRequest,
        dir_s: &str,
        snap_name: &str,
        snap: &dyn Snapshotter,
        key: &str,
        new: &dyn Fn(String, String) -> CheckoutRecord,
    ) -> Result<(CheckoutRecord, Vec<berth_mount::Mount>)> {
        let root = self.root();
        let lease = root.lease("checkout", dir_s)?;
        let (image, manifest, mounts) = if req.image == SCRATCH {
            let mounts =
                root.lease_snapshot(&lease, snap_name, key, || Ok(snap.prepare(key, None)?))?;
            snap.update_labels(key, labels(dir_s, SCRATCH, ""))?;
            (SCRATCH.to_string(), String::new(), mounts)
        } else {
            let (img, resolved) = self.ns.images().resolve(&req.image, &req.platform)?;
            let manifest = resolved.manifest_desc.digest().to_string();
            root.store()
                .claim(resolved.manifest_desc.digest(), Some(lease.id()))?;
            let labels = labels(dir_s, &img.name, &manifest);
            let mounts = if req.fuse {
                views::prepare_checkout_snapshot(
                    root, snap_name, snap, key, &resolved, labels, &lease,
                )?
            } else {
                let top = Unpack {
                    root,
                    snap_name,
                    snap,
                    lease: &lease,
                }
                .all(&resolved)?;
                let mounts = root.lease_snapshot(&lease, snap_name, key, || {
                    Ok(match req.readonly {
                        true => snap.view(key, top.as_deref())?,
                        false => snap.prepare(key, top.as_deref())?,
                    })
                })?;
                snap.update_labels(key, labels)?;
                mounts
            };
            (img.name, manifest, mounts)
        };
        let record = new(image, manifest);
        // Record first: a crash after this leaves a checkout `mount` or `discard` handles.
        // The record keeps what the lease kept, so both change in one transaction.
        root.store()
            .release_with(lease, |tx| meta::put_checkout(tx, &record))?;
        Ok((record, mounts))
    }

    /// Every checkout of the namespace.
    pub fn list(&self) -> Result<Vec<CheckoutInfo>> {
        let records = self.root().store().meta().checkouts(self.ns.name())?;
        Ok(records
            .into_iter()
            .map(|record| CheckoutInfo {
                mounted: berth_mount::is_mount_point(Path::new(&record.dir)),
                record,
            })
            .collect())
    }

    /// The record of the checkout at `dir` (which may be gone, e.g. after a reboot).
    fn record(&self, dir: &Path) -> Result<CheckoutRecord> {
        let abs = match dir.exists() {
            true => canonical_dir(dir)?,
            false => std::path::absolute(dir)
                .map_err(Error::io(format!("{}: bad path", dir.display())))?,
        };
        self.root()
            .store()
            .meta()
            .checkout(&abs.to_string_lossy())?
            .filter(|c| c.namespace == self.ns.name())
            .ok_or_else(|| Error::NotACheckout(dir.to_path_buf()))
    }

    /// The checkout at `dir`, locked and reconciled with what is mounted (a commit
    /// killed after mounting its new snapshot but before recording it is finished).
    pub(crate) fn open(&self, dir: &Path) -> Result<(CheckoutRecord, CheckoutLock)> {
        let rec = self.record(dir)?;
        let lock = CheckoutLock::acquire(self.root(), &rec.dir)?;
        let rec = self.record(dir)?; // it may have changed while we waited
        let rec = self.reconcile(rec)?;
        Ok((rec, lock))
    }

    /// The checkout at `dir`, repaired if a crash left it half switched.
    pub fn find(&self, dir: &Path) -> Result<CheckoutRecord> {
        Ok(self.open(dir)?.0)
    }

    /// If a commit was killed after mounting the checkout's new snapshot but before
    /// recording it, the mount is the truth: adopt the mounted snapshot.
    fn reconcile(&self, rec: CheckoutRecord) -> Result<CheckoutRecord> {
        let Some(mounted) = berth_mount::mount_info(Path::new(&rec.dir)) else {
            return Ok(rec);
        };
        let snap = self.root().snapshotter(&rec.snapshotter)?;
        if snap
            .fs_dir(&rec.snapshot)
            .is_ok_and(|d| is_mounted_from(&mounted, &d))
        {
            return Ok(rec);
        }
        for info in snap.list()? {
            let for_this = info
                .labels
                .get(CHECKOUT_LABEL)
                .is_some_and(|d| *d == rec.dir);
            if !for_this
                || !snap
                    .fs_dir(&info.key)
                    .is_ok_and(|d| is_mounted_from(&mounted, &d))
            {
                continue;
            }
            let label = |k: &str| info.labels.get(k).cloned().unwrap_or_default();
            let next = CheckoutRecord {
                snapshot: info.key.clone(),
                image: label(IMAGE_LABEL),
                manifest: label(MANIFEST_LABEL),
                ..rec.clone()
            };
            self.root()
                .store()
                .meta()
                .write(|tx| meta::put_checkout(tx, &next))?;
            let _ = views::release(snap.as_ref(), &rec.snapshot);
            let _ = self
                .root()
                .remove_snapshot(&rec.snapshotter, snap.as_ref(), &rec.snapshot);
            tracing::info!("checkout {}: finished an interrupted commit", rec.dir);
            return Ok(next);
        }
        Ok(rec)
    }

    /// Mounts a checkout again (after `umount` or a reboot).
    pub fn mount(&self, dir: &Path) -> Result<CheckoutRecord> {
        let (rec, _lock) = self.open(dir)?;
        self.ensure_mounted(&rec)?;
        Ok(rec)
    }

    /// Mounts a recorded checkout unless it is mounted; the caller holds its lock.
    pub(crate) fn ensure_mounted(&self, c: &CheckoutRecord) -> Result<()> {
        let dir = Path::new(&c.dir);
        if berth_mount::is_mount_point(dir) {
            return Ok(());
        }
        let snap = self.root().snapshotter(&c.snapshotter)?;
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let mounts = views::checkout_mounts(self.root(), snap.as_ref(), &c.snapshot)?;
        Ok(berth_mount::mount_all(&mounts, dir)?)
    }

    /// Unmounts a checkout without deleting it.
    pub fn umount(&self, dir: &Path) -> Result<CheckoutRecord> {
        let (rec, _lock) = self.open(dir)?;
        berth_mount::unmount_recursive(Path::new(&rec.dir))?;
        let snap = self.root().snapshotter(&rec.snapshotter)?;
        views::release(snap.as_ref(), &rec.snapshot)?;
        Ok(rec)
    }

    /// Unmounts and deletes a checkout and its changes. Running containers that use it
    /// make it refuse, unless `force` (they are killed first).
    pub fn discard(&self, dir: &Path, force: bool) -> Result<CheckoutRecord> {
        let (c, _lock) = self.open(dir)?;
        self.ns.containers().stop_users_of(&c.dir, force)?;
        let root = self.root();
        berth_mount::unmount_recursive(Path::new(&c.dir))?;
        let snap = root.snapshotter(&c.snapshotter)?;
        views::release(snap.as_ref(), &c.snapshot)?;
        match root.remove_snapshot(&c.snapshotter, snap.as_ref(), &c.snapshot) {
            Ok(()) | Err(Error::Snapshot(SnapshotError::NotFound(_))) => {}
            Err(e) => return Err(e),
        }
        root.store()
            .meta()
            .write(|tx| meta::delete_checkout(tx, &c.dir))?;
        let _ = std::fs::remove_dir(&c.dir); // only if empty: never delete what the user put there
        self.ns.event("/checkouts/delete", &c.dir, &[]);
        Ok(c)
    }

    /// What changed in a checkout against its base, like `git status --short`.
    pub fn status(&self, dir: &Path) -> Result<Vec<Change>> {
        let (c, _lock) = self.open(dir)?;
        let snap = self.root().snapshotter(&c.snapshotter)?;
        Ok(berth_fs::diff::changes(snap.as_ref(), &c.snapshot)?)
    }

    /// A checkout's changes counted, and their size as a layer.
    pub fn diff_summary(&self, dir: &Path) -> Result<DiffSummary> {
        let (c, _lock) = self.open(dir)?;
        let snap = self.root().snapshotter(&c.snapshotter)?;
        let changes = berth_fs::diff::changes(snap.as_ref(), &c.snapshot)?;
        let count = |k: ChangeKind| changes.iter().filter(|ch| ch.kind == k).count();
        let stats = berth_fs::diff::write_diff(
            snap.as_ref(),
            &c.snapshot,
            std::io::sink(),
            berth_fs::Compression::None,
        )?;
        Ok(DiffSummary {
            added: count(ChangeKind::Added),
            modified: count(ChangeKind::Modified),
            deleted: count(ChangeKind::Deleted),
            content_bytes: stats.content_bytes,
            layer_bytes: stats.uncompressed_size,
        })
    }
}

/// Whether a mount shows the snapshot directory `dir` (as overlay upper or bind source).
fn is_mounted_from(m: &berth_mount::MountInfo, dir: &Path) -> bool {
    let d = dir.to_string_lossy();
    let upper = m
        .super_options
        .split(',')
        .any(|o| o.strip_prefix("upperdir=") == Some(d.as_ref()));
    let root = m.root.trim_start_matches('/');
    upper || (m.fstype != "overlay" && !root.is_empty() && dir.ends_with(root))
}

impl Root {
    /// Removes a snapshot and journals it.
    pub fn remove_snapshot(
        &self,
        snapshotter: &str,
        snap: &dyn Snapshotter,
        key: &str,
    ) -> Result<()> {
        snap.remove(key)?;
        self.event(
            "",
            "/snapshots/remove",
            &format!("{snapshotter}/{key}"),
            &[],
        );
        Ok(())
    }
}
