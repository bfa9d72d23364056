//! Diff: an active snapshot's changes as an OCI layer tar, and as a `git status`-style
//! list of changes.
//!
//! Overlay snapshots are diffed by walking only the upper directory (cost proportional
//! to the change; lower layers are consulted only to tell added from modified). Native
//! snapshots are compared against their parent's tree. Both feed the same visitor, so
//! the layer tar and the change list always agree. Output order is sorted, so the same
//! changes give the same bytes.

mod native;
mod overlay;
mod tarout;

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use crate::compression::Compression;
use crate::snapshot::{SnapshotError, Snapshotter, SnapshotterKind};

/// How a path changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ChangeKind {
    /// New in this snapshot.
    Added,
    /// Present below, changed here.
    Modified,
    /// Removed here.
    Deleted,
}

impl ChangeKind {
    /// The `git status --short` letter.
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Modified => 'M',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path (`/`-rooted). Directories appear only when added or deleted.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Change {
    /// What happened.
    pub kind: ChangeKind,
    /// The path, e.g. `/etc/hosts`.
    pub path: PathBuf,
}

/// What `write_diff` produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffStats {
    /// `sha256:<hex>` of the bytes written (the blob digest).
    pub digest: String,
    /// Bytes written (the blob size).
    pub size: u64,
    /// `sha256:<hex>` of the uncompressed tar (the DiffID).
    pub diff_id: String,
    /// Bytes of uncompressed tar.
    pub uncompressed_size: u64,
    /// OCI media type of the layer.
    pub media_type: &'static str,
    /// Tar entries for added or modified paths.
    pub changed: u64,
    /// Whiteout entries (deleted paths and opaque markers).
    pub whiteouts: u64,
    /// File content bytes in the layer.
    pub content_bytes: u64,
}

/// Errors from diffing.
#[derive(Debug, thiserror::Error)]
pub enum DiffError {
    /// The snapshotter could not say where the snapshot lives.
    #[error(transparent)]
    Snapshot(#[from] SnapshotError),
    /// Reading the snapshot's files failed.
    #[error("{op} {path}: {source}")]
    Read {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// Writing the layer failed.
    #[error("writing layer: {0}")]
    Write(#[source] io::Error),
}

pub(crate) fn read_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> DiffError + 'a {
    move |source| DiffError::Read {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// What a diff walk reports, in output order.
pub(crate) trait Visitor {
    /// `rel` (`/`-rooted) was added or modified; `abs` is where its content is.
    fn entry(
        &mut self,
        rel: &Path,
        abs: &Path,
        md: &std::fs::Metadata,
        kind: ChangeKind,
    ) -> Result<(), DiffError>;
    /// `rel` was deleted.
    fn deleted(&mut self, rel: &Path) -> Result<(), DiffError>;
    /// The directory `rel` hides all lower content; `hidden` are the lower children gone.
    fn opaque(&mut self, rel: &Path, hidden: &[PathBuf]) -> Result<(), DiffError>;
}

/// The snapshot's own dir and its parents' dirs, and how to compare them.
fn walk(sn: &dyn Snapshotter, key: &str, v: &mut dyn Visitor) -> Result<(), DiffError> {
    let own = sn.fs_dir(key)?;
    let parents = sn.parent_dirs(key)?;
    match sn.kind() {
        SnapshotterKind::Overlay => overlay::walk(&own, &parents, v),
        SnapshotterKind::Native => native::walk(&own, parents.first().map(PathBuf::as_path), v),
    }
}

/// Writes the changes of the active snapshot `key` as a layer tar to `out`.
pub fn write_diff(
    sn: &dyn Snapshotter,
    key: &str,
    out: impl Write,
    compression: Compression,
) -> Result<DiffStats, DiffError> {
    let mut t = tarout::TarOut::new(out, compression).map_err(DiffError::Write)?;
    walk(sn, key, &mut t)?;
    t.finish()
}

/// The changes of `key` against its parent, sorted by path.
pub fn changes(sn: &dyn Snapshotter, key: &str) -> Result<Vec<Change>, DiffError> {
    let mut c = tarout::Collector::default();
    walk(sn, key, &mut c)?;
    let mut out = c.changes;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

/// Diffs two plain directories the native way (`old` = `None` means empty).
pub fn write_tree_diff(
    new: &Path,
    old: Option<&Path>,
    out: impl Write,
    compression: Compression,
) -> Result<DiffStats, DiffError> {
    let mut t = tarout::TarOut::new(out, compression).map_err(DiffError::Write)?;
    native::walk(new, old, &mut t)?;
    t.finish()
}
