//! What every command needs: the root (opened on first use), the namespace, how to print.

use std::cell::OnceCell;

use anyhow::{Context as _, Result};
use berth_core::{Ns, Platform, Root, RootOptions};

use crate::cli::Global;

/// Shared settings for a command.
pub struct Context {
    opts: RootOptions,
    /// The namespace names, checkouts and containers live in.
    pub namespace: String,
    /// JSON output wanted.
    pub json: bool,
    root: OnceCell<Root>,
}

impl Context {
    /// From the global flags.
    pub fn new(g: &Global) -> Self {
        let mut opts = RootOptions::new(&g.root, &g.run_root);
        opts.snapshotter = g.snapshotter.clone();
        opts.max_layer_size = g.max_layer_size;
        Context {
            opts,
            namespace: g.namespace.clone(),
            json: g.json,
            root: OnceCell::new(),
        }
    }

    /// The root, opened on first use.
    pub fn root(&self) -> Result<&Root> {
        if let Some(r) = self.root.get() {
            return Ok(r);
        }
        let root = Root::open(&self.opts)
            .with_context(|| format!("opening store at {}", self.opts.root.display()))?;
        Ok(self.root.get_or_init(|| root))
    }

    /// The paths of the root, without opening it.
    pub fn layout(&self) -> berth_core::Layout {
        berth_core::Layout::new(&self.opts.root, &self.opts.run_root)
    }

    /// The root seen from the chosen namespace.
    pub fn ns(&self) -> Result<Ns<'_>> {
        Ok(self.root()?.ns(&self.namespace)?)
    }
}

/// `--platform` or the host's.
pub fn platform(arg: Option<&str>) -> Result<Platform> {
    match arg {
        Some(p) => Ok(p.parse()?),
        None => Ok(Platform::host()),
    }
}
