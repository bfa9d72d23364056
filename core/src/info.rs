//! What `berth info` tells: where things are, and how this root keeps layers.

use serde::Serialize;

use crate::error::Result;
use crate::root::Root;

/// A root's setup.
#[derive(Debug, Clone, Serialize)]
pub struct Info {
    /// The store root.
    pub root: String,
    /// The run root.
    pub run_root: String,
    /// The snapshotter new filesystems go into.
    pub snapshotter: String,
    /// How that snapshotter keeps layers: `stubs`, `links` or `copies`.
    pub layers: &'static str,
    /// What that means for checkouts and containers.
    pub layers_note: &'static str,
    /// The running kernel.
    pub kernel: String,
    /// Namespaces in the root.
    pub namespaces: Vec<String>,
}

impl Root {
    /// This root's setup.
    pub fn info(&self) -> Result<Info> {
        let (snapshotter, snap) = self.default_snapshotter()?;
        let (layers, layers_note) = match (snap.data_dir(), snap.layers_as_objects()) {
            (Some(_), _) => (
                "stubs",
                "exact link counts: each layer file is an overlayfs metacopy stub over its content, stored once in the object store, mounted as a data-only lower layer (Linux >= 6.5)",
            ),
            (None, true) => (
                "links",
                "layer files are hard links to their content objects: content is stored once, but a file shows one more link per layer sharing it (this kernel or root has no data-only overlay layers)",
            ),
            (None, false) => (
                "copies",
                "each snapshot is a full copy of its tree: exact link counts, no sharing",
            ),
        };
        Ok(Info {
            root: self.layout().root().display().to_string(),
            run_root: self.layout().run().display().to_string(),
            snapshotter,
            layers,
            layers_note,
            kernel: nix::sys::utsname::uname()
                .map(|u| u.release().to_string_lossy().into_owned())
                .unwrap_or_default(),
            namespaces: self.namespaces()?,
        })
    }
}
