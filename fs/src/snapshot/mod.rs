//! Snapshotters with containerd's semantics: an *active* snapshot is writable, a *view*
//! is read-only, a *committed* one is immutable and may be the parent of others.
//!
//! Each snapshotter keeps its own SQLite `metadata.db` in its root (WAL, busy timeout,
//! versioned schema) and its directories under `<root>/snapshots/<id>/`. Directories
//! are built under a temporary name and renamed into place inside the same SQLite
//! transaction that records them, so an interrupted call leaves nothing or a finished
//! snapshot; [`Snapshotter::cleanup`] removes directories the database does not know.

mod copy;
mod meta;
mod native;
mod overlay;
mod usage;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use berth_mount::Mount;

use crate::apply::WhiteoutMode;
pub use copy::copy_tree;
pub use native::NativeSnapshotter;
pub use overlay::{OverlaySnapshotter, LOWER_LABEL};

/// The state of a snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Writable; becomes committed with `commit`.
    Active,
    /// Read-only view of a committed parent.
    View,
    /// Immutable; may be a parent.
    Committed,
}

impl Kind {
    fn as_str(self) -> &'static str {
        match self {
            Kind::Active => "active",
            Kind::View => "view",
            Kind::Committed => "committed",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        match s {
            "active" => Some(Kind::Active),
            "view" => Some(Kind::View),
            "committed" => Some(Kind::Committed),
            _ => None,
        }
    }
}

/// What a snapshotter knows about one snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Info {
    /// The snapshot's key (its name once committed).
    pub key: String,
    /// The parent's key.
    pub parent: Option<String>,
    /// Active, view or committed.
    pub kind: Kind,
    /// When it was created.
    pub created: SystemTime,
    /// Free-form labels.
    pub labels: BTreeMap<String, String>,
}

/// Disk use of a snapshot's own directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Bytes allocated (blocks, as `du` counts).
    pub size: u64,
    /// Distinct inodes.
    pub inodes: u64,
}

/// Which implementation a snapshotter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SnapshotterKind {
    /// overlayfs layers: each snapshot holds only its own changes.
    Overlay,
    /// Full copies: each snapshot holds the whole tree.
    Native,
}

/// Errors from snapshotters.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    /// No snapshot has this key.
    #[error("snapshot {0:?} does not exist")]
    NotFound(String),
    /// The key is taken.
    #[error("snapshot {0:?} already exists")]
    AlreadyExists(String),
    /// The snapshot is not in the state the operation needs.
    #[error("snapshot {key:?} is {actual:?}, expected {expected:?}")]
    WrongKind {
        /// The snapshot.
        key: String,
        /// Its kind.
        actual: Kind,
        /// The kind required.
        expected: Kind,
    },
    /// A snapshot other snapshots are based on cannot be removed.
    #[error("snapshot {key:?} has {children} child snapshot(s)")]
    HasChildren {
        /// The snapshot.
        key: String,
        /// How many.
        children: u64,
    },
    /// `commit_with_parent` on an active snapshot that already has another parent.
    #[error("snapshot {key:?} already has parent {parent:?}")]
    ParentConflict {
        /// The active snapshot.
        key: String,
        /// Its current parent.
        parent: String,
    },
    /// The metadata database failed.
    #[error("snapshot metadata {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The database was written by a newer berth.
    #[error("snapshot metadata {path} has schema version {found}, newer than {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A row the database holds cannot be read back (corruption or a foreign writer).
    #[error("snapshot metadata row {id} is corrupt: {what}")]
    Corrupt {
        /// Row id.
        id: i64,
        /// What was wrong.
        what: &'static str,
    },
    /// A filesystem operation failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Probing or mounting failed.
    #[error(transparent)]
    Mount(#[from] berth_mount::MountError),
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(std::io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// A snapshotter: turns keys into directories and mounts. Object-safe, so callers hold
/// a `Box<dyn Snapshotter>` chosen at run time.
pub trait Snapshotter: Send + Sync {
    /// Which implementation this is.
    fn kind(&self) -> SnapshotterKind;
    /// The snapshotter's root directory.
    fn root(&self) -> &Path;
    /// A new active snapshot on top of the committed `parent`; its mounts.
    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// A new read-only view of the committed `parent`; its mounts.
    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError>;
    /// The mounts of an active snapshot or view.
    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError>;
    /// Makes the active `key` an immutable snapshot called `name`.
    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError>;
    /// Commits a parentless active snapshot as a child of the committed `parent`:
    /// overlay layers are unpacked independently (in parallel) and chained afterwards.
    fn commit_with_parent(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError>;
    /// Removes a snapshot that no other snapshot is based on.
    fn remove(&self, key: &str) -> Result<(), SnapshotError>;
    /// Forgets a snapshot that no other snapshot is based on and moves its directory out
    /// of the way at once; returns that directory, for the caller to delete later (gc
    /// decides under a lock and deletes after letting go of it).
    fn remove_detached(&self, key: &str) -> Result<Option<PathBuf>, SnapshotError>;
    /// What is known about `key`.
    fn stat(&self, key: &str) -> Result<Info, SnapshotError>;
    /// Replaces the labels of `key`.
    fn update_labels(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Info, SnapshotError>;
    /// Disk use of the snapshot's own directory.
    fn usage(&self, key: &str) -> Result<Usage, SnapshotError>;
    /// Every snapshot, in creation order.
    fn list(&self) -> Result<Vec<Info>, SnapshotError>;
    /// Calls `f` for every snapshot.
    fn walk(&self, f: &mut dyn FnMut(&Info)) -> Result<(), SnapshotError> {
        for info in self.list()? {
            f(&info);
        }
        Ok(())
    }
    /// Where the snapshot's own content lives: an overlay upper dir (only its changes)
    /// or a native snapshot's full tree. Layers are applied here; diffs read from here.
    fn fs_dir(&self, key: &str) -> Result<PathBuf, SnapshotError>;
    /// The content directories of the parent chain, nearest parent first.
    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>, SnapshotError>;
    /// Whether layers can be applied into parentless snapshots in parallel and chained
    /// with [`commit_with_parent`](Self::commit_with_parent) (overlay), or must be
    /// applied in order on top of a prepared parent (native).
    fn independent_layers(&self) -> bool {
        self.kind() == SnapshotterKind::Overlay
    }
    /// Whether committed layer directories hold only their own files, which can be
    /// shared with the file-object store (hard links) and hashed while applied.
    fn layers_as_objects(&self) -> bool {
        self.kind() == SnapshotterKind::Overlay
    }
    /// With layers stored as stubs over content objects (see `objects::stubs`): the
    /// object directory mounted as their data-only lower layer. Layers must then be
    /// turned into stubs before they are committed.
    fn data_dir(&self) -> Option<&Path> {
        None
    }
    /// Whether an active snapshot can stack on a foreign lower directory given by the
    /// [`LOWER_LABEL`] label (a FUSE view), instead of on committed parents.
    fn supports_lower_label(&self) -> bool {
        self.kind() == SnapshotterKind::Overlay
    }
    /// How `apply_layer` must treat whiteouts for this snapshotter.
    fn whiteout_mode(&self) -> WhiteoutMode {
        match self.kind() {
            SnapshotterKind::Overlay => WhiteoutMode::Overlay,
            SnapshotterKind::Native => WhiteoutMode::Delete,
        }
    }
    /// Removes directories the metadata does not reference (left by interrupted calls).
    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError>;
    /// What is wrong between the metadata and the directories (empty: sound).
    fn check(&self) -> Result<Vec<String>, SnapshotError>;
}

/// Opens the snapshotter of `kind` rooted at `root`.
pub fn open(kind: SnapshotterKind, root: &Path) -> Result<Box<dyn Snapshotter>, SnapshotError> {
    Ok(match kind {
        SnapshotterKind::Overlay => Box::new(OverlaySnapshotter::open(root)?),
        SnapshotterKind::Native => Box::new(NativeSnapshotter::open(root)?),
    })
}

/// overlayfs's `statfs` magic.
const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;

/// Unmounts and removes overlay probe directories under `root` (a store's `snapshots`
/// dir) whose prober died mid-probe; returns them. [`detect_default`] does this too.
pub fn remove_stale_probes(root: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    overlay::remove_stale_probes(root)
}

/// Native when `root` lives on overlayfs (an overlay upper cannot be an overlay) or a
/// probe overlay mount fails there; overlay otherwise.
pub fn detect_default(root: &Path) -> Result<SnapshotterKind, SnapshotError> {
    std::fs::create_dir_all(root).map_err(io_err("creating", root))?;
    let st = nix::sys::statfs::statfs(root).map_err(|e| SnapshotError::Io {
        op: "statfs",
        path: root.into(),
        source: e.into(),
    })?;
    if st.filesystem_type().0 as i64 == OVERLAYFS_SUPER_MAGIC {
        return Ok(SnapshotterKind::Native);
    }
    Ok(if overlay::probe(root) {
        SnapshotterKind::Overlay
    } else {
        SnapshotterKind::Native
    })
}
