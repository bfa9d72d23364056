//! The content store's errors. Variants carry the path, digest or name involved so a
//! caller can tell "not found" from "corrupt" from "permission denied".

use std::path::PathBuf;

use crate::platform::PlatformError;
use crate::reference::ReferenceError;

/// Result alias for the store.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the content store.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A filesystem operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Reading a stream (an archive, a network body) failed.
    #[error("reading {what}: {source}")]
    Read {
        /// What was being read.
        what: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The metadata database failed.
    #[error("metadata database: {0}")]
    Db(#[from] rusqlite::Error),
    /// The database schema is newer than this binary understands.
    #[error("metadata database has schema version {found}, newer than this berth's {supported}; upgrade berth")]
    SchemaTooNew {
        /// Version on disk.
        found: i64,
        /// Version this binary writes.
        supported: i64,
    },
    /// Content did not hash to the digest it claimed.
    #[error("digest mismatch: expected {expected}, got {found}")]
    DigestMismatch {
        /// What the descriptor said.
        expected: String,
        /// What the bytes hash to.
        found: String,
    },
    /// Content was not as long as its descriptor said.
    #[error("size mismatch for {digest}: expected {expected} bytes, got {found}")]
    SizeMismatch {
        /// The blob.
        digest: String,
        /// What the descriptor said.
        expected: u64,
        /// What arrived.
        found: u64,
    },
    /// A digest that is malformed or uses an algorithm the store does not keep.
    #[error("unsupported digest {0:?} (berth stores sha256 blobs)")]
    UnsupportedDigest(String),
    /// A blob the metadata or a manifest names is not in the store.
    #[error("blob {0} not found")]
    BlobNotFound(String),
    /// No image by that name.
    #[error("image {0:?} not found")]
    ImageNotFound(String),
    /// A JSON document (manifest, index, config, layout file) did not parse.
    #[error("invalid {what}: {source}")]
    InvalidJson {
        /// Which document.
        what: String,
        /// The parser's complaint.
        source: serde_json::Error,
    },
    /// A document is well-formed JSON but breaks the spec.
    #[error("invalid {what}: {reason}")]
    InvalidDocument {
        /// Which document.
        what: String,
        /// What rule it breaks.
        reason: &'static str,
    },
    /// A descriptor with a media type berth does not handle.
    #[error("unsupported media type {media_type:?} for {digest}")]
    UnknownMediaType {
        /// The descriptor's media type.
        media_type: String,
        /// The descriptor's digest.
        digest: String,
    },
    /// A document or stream exceeds the size berth accepts for it.
    #[error("{what} is larger than the {limit}-byte limit")]
    TooLarge {
        /// What was too large.
        what: String,
        /// The limit in bytes.
        limit: u64,
    },
    /// No manifest in an index runs on the requested platform.
    #[error("image {image} has no manifest for platform {platform} (available: {available})")]
    NoMatchingPlatform {
        /// The image.
        image: String,
        /// The platform asked for.
        platform: String,
        /// What the index offers.
        available: String,
    },
    /// A bad image reference.
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    /// A bad platform string.
    #[error(transparent)]
    Platform(#[from] PlatformError),
    /// An archive is not in a format berth can import.
    #[error("{path}: not an OCI image layout or docker-save archive ({reason})")]
    UnknownArchive {
        /// The archive.
        path: PathBuf,
        /// What is missing.
        reason: &'static str,
    },
    /// An archive entry has a name that could escape or confuse the layout.
    #[error("archive entry {0:?} has an unsafe path")]
    UnsafeEntry(String),
    /// An archive or layout refers to a file it does not contain.
    #[error("archive is missing {0}")]
    MissingEntry(String),
    /// A step the caller plugged in (such as unpacking) failed.
    #[error("{0}")]
    Hook(Box<dyn std::error::Error + Send + Sync>),
    /// No lease by that id.
    #[error("lease {0:?} not found")]
    LeaseNotFound(String),
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { path, source }
    }

    /// Wraps a JSON error with the document it concerns.
    pub fn json(what: impl Into<String>) -> impl FnOnce(serde_json::Error) -> Error {
        let what = what.into();
        move |source| Error::InvalidJson { what, source }
    }

    /// Whether this error means "the thing asked for does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::ImageNotFound(_) | Error::BlobNotFound(_) | Error::LeaseNotFound(_)
        )
    }
}
