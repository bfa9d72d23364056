//! berth-cas: berth's content-addressed store.
//!
//! Blobs are kept by sha256 in an OCI image layout (so skopeo and umoci can read the
//! store directly), names and references live in SQLite (`meta.db`), and content
//! arrives through verified, resumable ingests. This crate also holds the OCI image
//! model (index, manifest, config, platform matching), Docker-style references,
//! archive import/export, garbage collection and fsck.
//!
//! It depends on no other berth crate: tools that only move images around can use it
//! alone. See [`store`] for the on-disk layout.

pub mod archive;
pub mod containers;
pub mod digest;
pub mod error;
pub mod events;
pub mod fsck;
pub mod gc;
pub mod image;
pub mod ingest;
pub mod lease;
pub mod lock;
pub mod media;
pub mod meta;
pub mod platform;
pub mod reference;
pub mod registry;
pub mod store;

pub use error::{Error, Result};
pub use oci_spec::image::Digest;
pub use platform::Platform;
pub use reference::Reference;
pub use store::Store;
