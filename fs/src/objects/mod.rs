//! File objects: every regular file of an unpacked overlay layer stored once, by content.
//!
//! Layout under the object root (`<store>/objects`):
//!
//! ```text
//! <2 hex>/<blake3 hex>-<meta hex>   `links` roots: one inode per (content, metadata, path)
//! content/<content id>              `stubs` roots: content only (see `content_id`)
//! index.db                          SQLite: one tree index per layer (see `index`)
//! ```
//!
//! What follows is about `links` objects; `stubs` layers are described in `stubs`.
//!
//! An object's name holds the blake3 of its content and a hash of the metadata its inode
//! carries (mode, owner, mtime, xattrs) and of the path it was found at. Layer directories
//! hard-link their files to the object with the same key, so identical files in different
//! layers and images cost their blocks once. Metadata is in the key because hardlinks
//! share the inode: one file's mode or owner can never leak into another's. The path is
//! in the key so two different files of one image never become one inode: a checkout
//! shows exactly the hardlink groups the image has (`stat`'s `st_ino`/`st_nlink`, what
//! `tar -H` and `du` see), at the price of not sharing equal content found at different
//! paths.
//!
//! Objects are published atomically with `link(2)` (a finished layer file gains the
//! object's name; "already present" is success and the layer file is swapped for a link to
//! the existing object). At the filesystem's hardlink limit the layer keeps its own copy.
//! Nothing writes into an object afterwards: overlayfs copies a lower file up before any
//! change, and objects are only ever linked into committed, read-only layer dirs.

mod entry;
mod index;
mod ingest;
mod staging;
mod stream;
mod stubs;
pub use blake3::Hash as ContentHash;
pub use staging::Staging;
pub use stubs::{redirect_of, stub_object, METACOPY_XATTR, REDIRECT_XATTR};

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

pub use entry::{Entry, EntryKind};
pub use index::Index;

/// The directory of content-only objects under the object root: a `stubs` root's
/// data-only lower layer, which stubs' redirects are relative to.
pub const CONTENT_DIR: &str = "content";

/// Length of a [`content_id`].
const CONTENT_ID_LEN: usize = 23;

/// The id of a content-only object: the first 17 bytes (136 bits) of its blake3 in
/// unpadded base64url, 23 characters. Short on purpose: a stub's redirect `/<id>` (24
/// bytes) then fits beside the metacopy xattr inside a 256-byte ext4 inode, so a stub
/// costs no xattr block (4 KiB on disk, one more random read on a cold open); a longer
/// name did (measured: +10% disk for one image, 3x slower cold small-file reads).
/// Finding two contents with one id takes about 2^68 hashes.
pub fn content_id(hash: &blake3::Hash) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&hash.as_bytes()[..17])
}

pub(crate) fn is_content_id(id: &str) -> bool {
    id.len() == CONTENT_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The directory of `stubs` roots' content objects under the object root `objects`.
pub fn content_dir(objects: &Path) -> PathBuf {
    objects.join(CONTENT_DIR)
}

/// Where the object `id` lives under the object root `objects`.
pub fn object_path(objects: &Path, id: &str) -> PathBuf {
    match is_content_id(id) {
        true => content_dir(objects).join(id),
        false => objects.join(id.get(..2).unwrap_or("xx")).join(id),
    }
}

/// Errors from the object store.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// A filesystem call failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// The tree index database failed.
    #[error("object index {path}: {source}")]
    Db {
        /// The database file.
        path: PathBuf,
        /// The SQLite error.
        source: rusqlite::Error,
    },
    /// The index database was written by a newer berth.
    #[error("object index {path} has schema version {found}, newer than {supported}")]
    SchemaTooNew {
        /// The database file.
        path: PathBuf,
        /// Its version.
        found: i64,
        /// The newest this build knows.
        supported: i64,
    },
    /// A layer tar could not be indexed (bad entry, digest mismatch, size limit...).
    #[error("{0}")]
    Layer(#[source] Box<crate::apply::ApplyError>),
    /// An entry lies below a non-directory of its own layer: only a real unpack (which
    /// resolves symlinks inside the layer root) can place it.
    #[error("layer entry {path} lies below a non-directory; it needs a full unpack")]
    NeedsUnpack {
        /// The entry's cleaned path.
        path: PathBuf,
    },
    /// A stored row cannot be decoded.
    #[error("object index row {layer}:{path} is corrupt: {what}")]
    Corrupt {
        /// The layer key.
        layer: String,
        /// The entry path.
        path: String,
        /// What was wrong.
        what: &'static str,
    },
}

pub(crate) fn io_err<'a>(
    op: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ObjectError + 'a {
    move |source| ObjectError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// The object directory and its tree index.
pub struct ObjectStore {
    dir: PathBuf,
    index: Index,
    /// Objects are content only, named by blake3 (for stub layers, which carry the
    /// metadata); otherwise each carries its file's metadata and a key of it.
    plain: bool,
}

/// What [`ObjectStore::gc`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcStats {
    /// Objects removed.
    pub removed: u64,
    /// Their bytes (allocated blocks of objects no layer dir still links).
    pub bytes: u64,
}

/// One problem [`ObjectStore::fsck`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The object or `layer:path` concerned.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

/// What [`ObjectStore::fsck`] saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FsckReport {
    /// Objects re-hashed.
    pub objects: u64,
    /// Bytes re-hashed.
    pub bytes: u64,
    /// Index entries checked.
    pub entries: u64,
    /// What is wrong.
    pub problems: Vec<Problem>,
}

impl From<crate::apply::ApplyError> for ObjectError {
    fn from(e: crate::apply::ApplyError) -> Self {
        ObjectError::Layer(Box::new(e))
    }
}

impl ObjectStore {
    /// Opens (creating) the object store at `dir`.
    pub fn open(dir: &Path) -> Result<ObjectStore, ObjectError> {
        fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
        Ok(ObjectStore {
            dir: dir.to_path_buf(),
            index: Index::open(&dir.join("index.db"))?,
            plain: false,
        })
    }

    /// Makes new objects of index-only ingests content-only (see [`ObjectStore::plain`]).
    pub fn with_plain_objects(mut self, plain: bool) -> Self {
        self.plain = plain;
        self
    }

    /// The object root.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The tree indexes.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Where the object `id` (`<blake3>-<meta>`, or a [`content_id`]) lives.
    pub fn path(&self, id: &str) -> PathBuf {
        object_path(&self.dir, id)
    }

    /// Hashes every regular file of the finished layer directory `layer_dir`, turns it
    /// into a hardlink to its object (publishing the file as the object when it is new)
    /// and records the layer's tree index under `key`.
    ///
    /// With `relink` false, files are only published (linked under their object's name
    /// when it is new) and never replaced: for layers already in use as overlay lowers,
    /// whose directories must not change under a mounted overlay. `known` holds blake3
    /// hashes by inode that the caller already computed (`ApplyStats::file_hashes` of the
    /// apply that built the directory); other files are read and hashed here.
    pub fn ingest_layer(
        &self,
        key: &str,
        layer_dir: &Path,
        relink: bool,
        known: &HashMap<u64, blake3::Hash>,
    ) -> Result<Vec<Entry>, ObjectError> {
        let (entries, links) = ingest::ingest(layer_dir, known)?;
        self.index
            .put_layer_with(key, &entries, || ingest::link_all(self, &links, relink))?;
        Ok(entries)
    }

    /// Streams the (compressed) layer tar `reader` once, storing its regular files as
    /// objects and its tree index under `key`, without any layer directory (see
    /// `stream`). `opts.expected_diff_id` and `opts.max_size` are checked as
    /// `apply_layer` checks them; the index is written only if they hold.
    pub fn ingest_tar(
        &self,
        key: &str,
        reader: impl io::Read + Send,
        opts: &crate::apply::ApplyOptions,
    ) -> Result<crate::apply::ApplyStats, ObjectError> {
        let staging = staging::Staging::new(&self.dir)?;
        let (entries, stats) = stream::ingest_tar(&staging, self.plain, reader, opts)?;
        self.index
            .put_layer_with(key, &entries, || staging.publish(self))?;
        Ok(stats)
    }

    /// A fresh staging directory for objects written elsewhere (an apply writing stubs,
    /// see [`crate::ApplyOptions::stubs`]), published by the ingest given it.
    pub fn staging(&self) -> Result<Staging, ObjectError> {
        Staging::new(&self.dir)
    }

    /// Every object id on disk.
    pub fn list(&self) -> Result<Vec<String>, ObjectError> {
        let mut out = Vec::new();
        for fan in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let fan = fan.map_err(io_err("listing", &self.dir))?;
            let name = fan.file_name();
            let contents = name == CONTENT_DIR;
            if !(name.len() == 2 || contents) || !fan.path().is_dir() {
                continue;
            }
            let p = fan.path();
            for o in fs::read_dir(&p).map_err(io_err("listing", &p))? {
                let o = o.map_err(io_err("listing", &p))?;
                if let Some(n) = o.file_name().to_str() {
                    if !n.starts_with('.') && (!contents || is_content_id(n)) {
                        out.push(n.to_string());
                    }
                }
            }
        }
        out.sort();
        Ok(out)
    }

    /// Removes objects no index entry names, and what killed ingests left. The sweep
    /// runs inside an index write transaction, and objects only appear inside the one
    /// that records the layer naming them (see `staging`), so it can run beside ingests.
    /// Callers drop the indexes of removed layers first.
    pub fn gc(&self) -> Result<GcStats, ObjectError> {
        let mut stats = GcStats::default();
        staging::remove_abandoned(&self.dir)?;
        self.index.sweep_with(|live| {
            for id in self.list()? {
                if live.contains(&id) {
                    continue;
                }
                let p = self.path(&id);
                let md = fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
                fs::remove_file(&p).map_err(io_err("removing", &p))?;
                stats.removed += 1;
                if std::os::unix::fs::MetadataExt::nlink(&md) == 1 {
                    stats.bytes += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
                }
            }
            Ok(())
        })?;
        Ok(stats)
    }

    /// Re-hashes every object against its name and checks that every index entry's
    /// object exists.
    pub fn fsck(&self) -> Result<FsckReport, ObjectError> {
        let mut r = FsckReport::default();
        for problem in self.index.integrity_problems()? {
            r.problems.push(Problem {
                subject: "objects/index.db".into(),
                detail: problem,
            });
        }
        let on_disk: HashSet<String> = self.list()?.into_iter().collect();
        for id in &on_disk {
            let p = self.path(id);
            let (hash, size) = ingest::hash_file(&p)?;
            r.objects += 1;
            r.bytes += size;
            let matches = match is_content_id(id) {
                true => *id == content_id(&hash),
                false => id.starts_with(hash.to_hex().as_str()),
            };
            if !matches {
                r.problems.push(Problem {
                    subject: format!("object {id}"),
                    detail: format!("content hashes to {}", hash.to_hex()),
                });
            }
        }
        for (layer, path, object) in self.index.object_refs()? {
            r.entries += 1;
            if !on_disk.contains(&object) {
                r.problems.push(Problem {
                    subject: format!("layer {layer}: /{path}"),
                    detail: format!("object {object} is missing"),
                });
            }
        }
        Ok(r)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_ids_are_short_and_live_in_the_content_dir() {
        let id = content_id(&blake3::hash(b"hello\n"));
        assert_eq!(id.len(), CONTENT_ID_LEN);
        assert!(is_content_id(&id), "{id}");
        // `/<id>` and the metacopy xattr fit in a 256-byte ext4 inode (24 bytes at most).
        assert!(redirect_of(&id).len() <= 24, "{}", redirect_of(&id));
        let root = Path::new("/r/objects");
        assert_eq!(object_path(root, &id), root.join(CONTENT_DIR).join(&id));
        let links = format!("{}-{}", blake3::hash(b"x").to_hex(), "0".repeat(32));
        assert!(!is_content_id(&links));
        assert_eq!(
            object_path(root, &links),
            root.join(&links[..2]).join(&links)
        );
        assert!(!is_content_id("index.db") && !is_content_id(".staging-1-2xxxxxxxxxxxx"));
    }
}
