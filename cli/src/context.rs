//! What every command needs: where the store is, how to print, which platform.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use berth_cas::{Platform, Reference, Store};

use crate::cli::Global;

/// Shared settings for a command.
pub struct Context {
    /// Store root.
    pub root: PathBuf,
    /// Runtime state dir.
    #[allow(dead_code)]
    pub run_root: PathBuf,
    /// JSON output wanted.
    pub json: bool,
    /// Snapshotter asked for on the command line.
    snapshotter: Option<String>,
    /// Unpack limits.
    pub limits: crate::unpack::Limits,
}

impl Context {
    /// From the global flags.
    pub fn new(g: &Global) -> Self {
        Context {
            root: g.root.clone(),
            run_root: g.run_root.clone(),
            json: g.json,
            snapshotter: g.snapshotter.clone(),
            limits: crate::unpack::Limits {
                max_layer_size: g.max_layer_size,
            },
        }
    }

    /// Opens the store (shared with other berth processes).
    pub fn store(&self) -> Result<Store> {
        Store::open(&self.root).with_context(|| format!("opening store at {}", self.root.display()))
    }
}

impl Context {
    /// The snapshotter new filesystems go into.
    pub fn snapshotter_kind(&self) -> Result<berth_fs::snapshot::SnapshotterKind> {
        match &self.snapshotter {
            Some(name) => crate::unpack::parse_kind(name),
            None => crate::unpack::default_kind(&self.root),
        }
    }

    /// Opens the snapshotter new filesystems go into.
    pub fn snapshotter(&self) -> Result<Box<dyn berth_fs::snapshot::Snapshotter>> {
        crate::unpack::open(&self.root, self.snapshotter_kind()?)
    }

    /// Opens a snapshotter by its recorded name.
    pub fn snapshotter_named(
        &self,
        name: &str,
    ) -> Result<Box<dyn berth_fs::snapshot::Snapshotter>> {
        crate::unpack::open(&self.root, crate::unpack::parse_kind(name)?)
    }
}

/// `--platform` or the host's.
pub fn platform(arg: Option<&str>) -> Result<Platform> {
    match arg {
        Some(p) => Ok(p.parse()?),
        None => Ok(Platform::host()),
    }
}

/// Normalises a user's image name.
pub fn reference(s: &str) -> Result<Reference> {
    Reference::parse(s).map_err(Into::into)
}
