//! berth's filesystems: layer apply (tar stream into a directory, hostile-input safe),
//! snapshotters (overlay by default, a native copy fallback) and diff (a snapshot's
//! changes back into a layer tar), file objects (each overlay layer file stored once, by
//! blake3, with a tree index per layer), a read-only FUSE view served from those objects,
//! plus a tree scanner for comparing results.
//!
//! This crate reads layers from any `impl Read` and writes diffs to any `impl Write`:
//! it must not depend on berth's content store, exec or net crates; the only berth
//! crate it uses is `berth-mount`, for the `Mount` value snapshotters hand out.

pub mod apply;
pub mod compression;
pub mod diff;
pub mod digest;
pub mod fuse;
pub mod objects;
pub mod snapshot;
mod sqlite;
pub mod tree;

pub use apply::{apply_layer, ApplyError, ApplyOptions, ApplyStats, WhiteoutMode};
pub use compression::Compression;
