//! berth-core: the one owner of a berth root's state, and the whole lifecycle as
//! services that return data and never print.
//!
//! A [`Root`] owns every path ([`Layout`]), the snapshotters registered by name, the
//! file objects, leases, per-checkout locks, gc roots, namespaces and the event
//! journal. Namespaced services hang off [`Ns`]: images (resolve, pull, import,
//! export, push, tag, remove), checkouts (create, mount, commit, repair, discard,
//! status, diff), containers (create, start, stop, kill, pause, resume, exec, wait,
//! remove); root-wide ones off [`Root`]: FUSE views, gc, fsck, du, events. The CLI is
//! clap and formatting over this crate; a daemon shares the same root with it.
//!
//! What keeps things alive: names, records and leases (see `berth_cas::lease`). Every
//! multi-step operation holds a lease on what it wrote or relies on until a name or
//! record references the result; gc marks from all of them under a brief exclusive
//! hold of the gc gate (`berth_cas::lock::Gate`), so it runs beside pulls, imports and
//! containers. Errors are [`Error`]: variants a face maps to messages and exit codes.
//!
//! Depends on berth-cas, berth-fs, berth-mount, berth-exec and berth-net; nothing
//! depends on it but the faces (`berth`, and the CRI service).

pub mod checkouts;
pub mod containers;
mod du;
mod error;
pub mod events;
pub mod faults;
mod fsck;
mod gc;
pub mod ids;
pub mod images;
mod info;
mod layout;
mod namespace;
mod netns;
mod root;
pub mod snapshotters;
mod unpack;
pub mod views;

pub use du::{DedupUsage, DiskUsage, Usage};
pub use error::{Error, Result};
pub use fsck::{FsckReport, Problem};
pub use gc::{GcOptions, GcReport};
pub use info::Info;
pub use layout::Layout;
pub use namespace::{check_name as check_namespace, Ns, DEFAULT as DEFAULT_NAMESPACE};
pub use root::{Root, RootOptions};
pub use unpack::LayerState;

pub use berth_cas::{Platform, Reference};

/// The crates the core stands on, for faces that need their plain types (run options,
/// network links, diff entries) without depending on each one.
pub use {
    berth_cas as cas, berth_exec as exec, berth_fs as fs, berth_mount as mount, berth_net as net,
};
