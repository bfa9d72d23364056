//! End-to-end tests: the real `berth` binary against real peers (skopeo, umoci,
//! containerd, runc, the kernel). One test binary, one module per area.
//!
//! Where a tool or privilege is missing these tests fail, never skip: CI installs
//! everything with scripts/setup-debian.sh and runs as root.

mod support;

mod containers;
mod core_lifecycle;
mod fs_checkout;
mod fs_crash;
mod fs_fidelity;
mod fs_fixtures;
mod fs_hostile;
mod network;
mod objects_fuse;
mod registry;
mod store_archives;
mod store_hostile;
mod store_robustness;
