//! Streaming layer apply: a (compressed) OCI layer tar becomes files under a root.
//!
//! The stream is decompressed by magic bytes and hashed as it is read, so the DiffID
//! comes out of the same single pass; file data is copied in fixed-size chunks, so
//! memory stays bounded whatever the layer expands to.
//!
//! Safety is the first concern: a layer is untrusted input. Entry paths are cleaned
//! lexically (`..` stops at the root, a leading `/` is dropped: both are *confined*,
//! not rejected) and every parent directory is opened by the kernel with
//! `openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS)`, so symlinks in the tree resolve
//! inside the root too. Entries are then created with `*at` calls relative to that
//! directory, never following the last component. Hardlink targets resolve the same
//! way and may not be directories.

mod entry;
pub(crate) use entry::is_meta_header;
pub(crate) mod meta;
pub(crate) mod path;
mod resolve;
mod settle;
pub(crate) mod sparse;
pub(crate) mod stream;
mod stubs;
mod whiteout;

use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::compression::{Compression, CompressionError};
pub use path::RelPath;
pub use settle::{scrub_overlay_xattrs, settle, Settled};

/// How whiteouts in a layer are applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WhiteoutMode {
    /// Into an overlay layer directory: `.wh.NAME` becomes a 0/0 char device, an opaque
    /// marker becomes `trusted.overlay.opaque=y` on its directory.
    #[default]
    Overlay,
    /// Onto a full copy of the parent tree (native snapshotter): whited-out paths are
    /// removed; an opaque directory loses the children it had before this layer.
    Delete,
}

/// What `apply_layer` should do beyond unpacking.
#[derive(Debug, Clone, Default)]
pub struct ApplyOptions {
    /// How whiteouts are represented.
    pub whiteouts: WhiteoutMode,
    /// Refuse layers whose uncompressed tar is larger than this.
    pub max_size: Option<u64>,
    /// Fail with [`ApplyError::DiffIdMismatch`] unless the uncompressed stream hashes to this.
    pub expected_diff_id: Option<String>,
    /// Hash each regular file's content with blake3 while writing it (see
    /// [`ApplyStats::file_hashes`]), so deduplicating the layer afterwards need not read
    /// every file again.
    pub hash_files: bool,
    /// Write regular files as overlay metacopy stubs, their content into this staging
    /// directory named by blake3 (see `objects::stubs`; implies `hash_files`).
    pub stubs: Option<PathBuf>,
}

/// What a finished apply saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplyStats {
    /// `sha256:<hex>` of the uncompressed tar stream, trailing padding included.
    pub diff_id: String,
    /// Bytes in the uncompressed tar stream.
    pub size: u64,
    /// Tar entries processed (whiteouts included, PAX/GNU meta headers not).
    pub entries: u64,
    /// The compression found by magic bytes.
    pub compression: Compression,
    /// With [`ApplyOptions::hash_files`]: the blake3 (hex) of each regular file written,
    /// by inode number. Every file is created once and never written again, so the
    /// hash holds for that inode until something else changes the directory.
    pub file_hashes: HashMap<u64, blake3::Hash>,
    /// With [`ApplyOptions::stubs`]: the allocated bytes of each content, by stub inode.
    pub file_blocks: HashMap<u64, u64>,
    /// Overlay mode: the whiteout devices made, as `/`-joined relative paths. Alone, a
    /// layer cannot tell whether its lower layers have the names; see [`settle`].
    pub whiteouts: Vec<Vec<u8>>,
    /// Directories the layer had to create for its entries that no entry declared
    /// (`/`-joined, relative); see [`settle`].
    pub implicit_dirs: Vec<Vec<u8>>,
}

/// Errors from applying a layer. Paths are as named in the layer (after cleaning).
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// The stream's compression could not be handled.
    #[error(transparent)]
    Compression(#[from] CompressionError),
    /// The root could not be opened.
    #[error("opening layer root {path}: {errno}")]
    Root {
        /// The root given.
        path: PathBuf,
        /// The kernel's answer.
        errno: nix::Error,
    },
    /// Reading or decoding the tar stream failed.
    #[error("reading layer tar: {0}")]
    Read(#[source] io::Error),
    /// A filesystem call for an entry failed.
    #[error("{op} {path}: {source}")]
    Fs {
        /// What was being done.
        op: &'static str,
        /// The entry's path inside the root.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// An entry's path cannot name anything (a non-directory at the root, a bare `.wh.`).
    #[error("layer entry {path:?} has an invalid path")]
    InvalidPath {
        /// The raw entry name.
        path: PathBuf,
    },
    /// A parent directory could not be resolved (too many dangling symlinks).
    #[error("too many symlinks resolving the parent of {path}")]
    TooManyLinks {
        /// The entry's path.
        path: PathBuf,
    },
    /// A hardlink's target is missing, a directory, or not something it may name.
    #[error("hardlink {path} -> {target}: {reason}")]
    Hardlink {
        /// The link's path.
        path: PathBuf,
        /// Its target, cleaned.
        target: PathBuf,
        /// Why it was refused.
        reason: &'static str,
    },
    /// An entry kind a layer may not contain (or berth does not know).
    #[error("layer entry {path} has unsupported type {kind:?}")]
    Unsupported {
        /// The entry's path.
        path: PathBuf,
        /// The tar type flag.
        kind: char,
    },
    /// A header field that does not fit (uid beyond 32 bits, bad PAX number).
    #[error("layer entry {path} has a bad {field}")]
    BadHeader {
        /// The entry's path.
        path: PathBuf,
        /// Which field.
        field: &'static str,
    },
    /// The uncompressed stream, or the files' apparent sizes (sparse files included),
    /// exceeded `max_size`.
    #[error("layer expands beyond the {limit}-byte limit")]
    SizeLimit {
        /// The limit set.
        limit: u64,
    },
    /// A character device 0:0 that is not a whiteout: overlayfs would read it as one.
    #[error("layer entry {path} is a character device 0:0, which overlayfs reads as a whiteout; use the native snapshotter (--snapshotter native) for this image")]
    WhiteoutDevice {
        /// The entry's path.
        path: PathBuf,
    },
    /// The uncompressed stream's digest is not the one expected.
    #[error("layer diff_id mismatch: expected {expected}, found {found}")]
    DiffIdMismatch {
        /// What the caller expected.
        expected: String,
        /// What the stream hashed to.
        found: String,
    },
}

/// Unpacks one layer stream (gzip, zstd or plain tar) into `root`.
///
/// On error the root is left partly written: callers apply into a fresh snapshot and
/// discard it on failure. The DiffID check happens after the whole stream is read.
pub fn apply_layer(
    reader: impl Read + Send,
    root: &Path,
    opts: &ApplyOptions,
) -> Result<ApplyStats, ApplyError> {
    let root_fd = resolve::Root::open(root).map_err(|errno| ApplyError::Root {
        path: root.to_path_buf(),
        errno,
    })?;
    let mut state = entry::Applier::new(
        root_fd,
        opts.whiteouts,
        opts.hash_files || opts.stubs.is_some(),
        opts.max_size,
    );
    if let Some(dir) = &opts.stubs {
        state.stubs_into(dir).map_err(|errno| ApplyError::Root {
            path: dir.clone(),
            errno,
        })?;
    }
    let ((), stream) = stream::stream_layer(reader, opts.max_size, |chunks| {
        unpack_all(&mut tar::Archive::new(chunks), &mut state)
    })?;
    stream::check_diff_id(opts.expected_diff_id.as_ref(), &stream)?;
    Ok(ApplyStats {
        diff_id: stream.diff_id,
        size: stream.size,
        entries: state.entries,
        compression: stream.compression,
        whiteouts: state.whiteouts.iter().cloned().collect(),
        implicit_dirs: state.implicit.into_iter().collect(),
        file_blocks: std::mem::take(&mut state.file_blocks),
        file_hashes: state.file_hashes.unwrap_or_default(),
    })
}

fn unpack_all<R: Read>(
    archive: &mut tar::Archive<R>,
    state: &mut entry::Applier,
) -> Result<(), ApplyError> {
    for e in archive.entries().map_err(ApplyError::Read)? {
        let mut e = e.map_err(ApplyError::Read)?;
        state.apply_entry(&mut e)?;
    }
    state.finish()
}

/// Paths of everything an applier touched, with all their ancestors: the content of
/// this layer, which its own whiteouts must not remove.
#[derive(Default)]
pub(crate) struct Touched(HashSet<Vec<u8>>);

impl Touched {
    fn insert(&mut self, p: &RelPath) {
        for i in 1..=p.0.len() {
            self.0.insert(RelPath(p.0[..i].to_vec()).joined());
        }
    }

    fn contains(&self, p: &RelPath) -> bool {
        self.0.contains(&p.joined())
    }
}
