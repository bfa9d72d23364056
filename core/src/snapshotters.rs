//! Snapshotters registered by name. A root opens each one lazily, once, under
//! `snapshots/<name>/`; callers ask for a snapshotter by the name a record holds and use
//! the trait's capabilities (`independent_layers`, `layers_as_objects`, ...), never a
//! closed list of kinds.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Mutex};

use berth_fs::snapshot::{self, NativeSnapshotter, OverlaySnapshotter, SnapshotError, Snapshotter};

use crate::error::{Error, Result};

/// Opens a snapshotter rooted at a directory, given the root's file-object store (which
/// a snapshotter may use as the data of its layers).
pub type Opener = fn(&Path, &Path) -> Result<Box<dyn Snapshotter>, SnapshotError>;

/// The registry.
pub struct Snapshotters {
    openers: BTreeMap<String, Opener>,
    aliases: BTreeMap<String, String>,
    open: Mutex<HashMap<String, Arc<dyn Snapshotter>>>,
}

fn open_overlay(dir: &Path, objects: &Path) -> Result<Box<dyn Snapshotter>, SnapshotError> {
    Ok(Box::new(OverlaySnapshotter::open_with_objects(
        dir, objects,
    )?))
}

fn open_native(dir: &Path, _objects: &Path) -> Result<Box<dyn Snapshotter>, SnapshotError> {
    Ok(Box::new(NativeSnapshotter::open(dir)?))
}

/// The name of the snapshotter a root uses when none is asked for and the kernel
/// cannot host overlay mounts there.
pub const FALLBACK: &str = "native";

/// The preferred default.
pub const PREFERRED: &str = "overlay";

impl Default for Snapshotters {
    fn default() -> Self {
        let mut s = Snapshotters {
            openers: BTreeMap::new(),
            aliases: BTreeMap::new(),
            open: Mutex::new(HashMap::new()),
        };
        s.register(PREFERRED, open_overlay);
        s.register(FALLBACK, open_native);
        s.aliases.insert("overlayfs".into(), PREFERRED.into());
        s
    }
}

impl Snapshotters {
    /// Adds (or replaces) a snapshotter under `name`.
    pub fn register(&mut self, name: &str, opener: Opener) {
        self.openers.insert(name.to_string(), opener);
    }

    /// Every registered name.
    pub fn names(&self) -> Vec<String> {
        self.openers.keys().cloned().collect()
    }

    /// The registered name `name` stands for (aliases resolved).
    pub fn canonical(&self, name: &str) -> Result<String> {
        let name = self.aliases.get(name).map_or(name, String::as_str);
        if self.openers.contains_key(name) {
            return Ok(name.to_string());
        }
        Err(Error::UnknownSnapshotter {
            name: name.to_string(),
            known: self.names().join(" or "),
        })
    }

    /// The snapshotter `name`, opened under `dir` on first use.
    pub fn get(&self, name: &str, dir: &Path, objects: &Path) -> Result<Arc<dyn Snapshotter>> {
        let name = self.canonical(name)?;
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(s) = open.get(&name) {
            return Ok(s.clone());
        }
        let opener = self.openers[&name];
        let s: Arc<dyn Snapshotter> = Arc::from(opener(dir, objects)?);
        open.insert(name, s.clone());
        Ok(s)
    }

    /// Which registered snapshotter suits a root whose snapshots live under `dir`.
    pub fn detect(&self, dir: &Path) -> Result<String> {
        Ok(match snapshot::detect_default(dir)? {
            snapshot::SnapshotterKind::Overlay => PREFERRED.to_string(),
            snapshot::SnapshotterKind::Native => FALLBACK.to_string(),
        })
    }
}
