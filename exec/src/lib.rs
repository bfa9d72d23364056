//! berth's execution layer: turns an image's process config and `run` options into an OCI
//! runtime spec ([`spec`]), drives any runc-compatible runtime binary ([`runtime`]), and
//! watches one container for its whole life ([`supervisor`]).
//!
//! It depends on `berth-mount` (the `Mount` value a snapshotter hands over) and nothing
//! else of berth's: never the content store, the snapshotters, FUSE, SQLite or HTTP code,
//! so an orchestrator can use it with its own storage.

pub mod runtime;
pub mod spec;
pub mod supervisor;
mod sys;
