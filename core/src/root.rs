//! The root: one store, its snapshotters, its object store and its run state.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use berth_cas::lease::{Lease, ResourceKind};
use berth_cas::Store;
use berth_fs::objects::ObjectStore;
use berth_fs::snapshot::Snapshotter;

use crate::error::{Error, Result};
use crate::layout::Layout;
use crate::namespace::{self, Ns};
use crate::snapshotters::Snapshotters;

/// How to open a root.
#[derive(Debug, Clone)]
pub struct RootOptions {
    /// Store root (content, metadata, snapshots).
    pub root: PathBuf,
    /// Run state (containers, FUSE mounts, network namespaces).
    pub run_root: PathBuf,
    /// The snapshotter new filesystems go into (default: detected once per root).
    pub snapshotter: Option<String>,
    /// Refuse layers whose uncompressed size exceeds this.
    pub max_layer_size: Option<u64>,
    /// The berth binary that serves as a container supervisor and a FUSE server
    /// (`__supervise`, `__fuse-serve`); default: the running executable.
    pub helper: Option<PathBuf>,
}

impl RootOptions {
    /// A root at `root` with run state at `run_root`, defaults otherwise.
    pub fn new(root: impl Into<PathBuf>, run_root: impl Into<PathBuf>) -> Self {
        RootOptions {
            root: root.into(),
            run_root: run_root.into(),
            snapshotter: None,
            max_layer_size: None,
            helper: None,
        }
    }
}

/// An open root, shared by every service (and every thread of a daemon).
pub struct Root {
    layout: Layout,
    store: Store,
    snapshotters: Snapshotters,
    chosen: Option<String>,
    objects: OnceLock<ObjectStore>,
    pub(crate) max_layer_size: Option<u64>,
    helper: PathBuf,
}

impl Root {
    /// Opens (creating) the root; snapshotters and objects open on first use.
    pub fn open(opts: &RootOptions) -> Result<Root> {
        let layout = Layout::new(&opts.root, &opts.run_root);
        let store = Store::open(&opts.root)?;
        let snapshotters = Snapshotters::default();
        let chosen = opts
            .snapshotter
            .as_deref()
            .map(|n| snapshotters.canonical(n))
            .transpose()?;
        let helper = match &opts.helper {
            Some(p) => p.clone(),
            None => std::env::current_exe().map_err(Error::io("finding the berth binary"))?,
        };
        Ok(Root {
            layout,
            store,
            snapshotters,
            chosen,
            objects: OnceLock::new(),
            max_layer_size: opts.max_layer_size,
            helper,
        })
    }

    /// Every path of the root.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The content store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The berth binary helpers are started from.
    pub fn helper(&self) -> &Path {
        &self.helper
    }

    /// The registered snapshotters.
    pub fn snapshotters(&self) -> &Snapshotters {
        &self.snapshotters
    }

    /// The snapshotter registered as `name`.
    pub fn snapshotter(&self, name: &str) -> Result<Arc<dyn Snapshotter>> {
        let name = self.snapshotters.canonical(name)?;
        self.snapshotters.get(
            &name,
            &self.layout.snapshotter(&name),
            &self.layout.objects(),
        )
    }

    /// The name of the snapshotter new filesystems go into: the one asked for, else the
    /// root's default, detected once (overlay unless the root cannot host overlay
    /// mounts) and remembered in `snapshots/default`.
    pub fn default_snapshotter_name(&self) -> Result<String> {
        if let Some(n) = &self.chosen {
            return Ok(n.clone());
        }
        let memo = self.layout.default_snapshotter_memo();
        if let Ok(name) = std::fs::read_to_string(&memo) {
            return self.snapshotters.canonical(name.trim());
        }
        let name = self.snapshotters.detect(&self.layout.snapshots())?;
        berth_cas::store::write_atomic(&memo, name.as_bytes())?;
        Ok(name)
    }

    /// The snapshotter new filesystems go into, and its name.
    pub fn default_snapshotter(&self) -> Result<(String, Arc<dyn Snapshotter>)> {
        let name = self.default_snapshotter_name()?;
        let snap = self.snapshotter(&name)?;
        Ok((name, snap))
    }

    /// The snapshotters that exist under this root (whose directory was ever made).
    pub fn existing_snapshotters(&self) -> Result<Vec<(String, Arc<dyn Snapshotter>)>> {
        let mut out = Vec::new();
        for name in self.snapshotters.names() {
            if self.layout.snapshotter(&name).exists() {
                out.push((name.clone(), self.snapshotter(&name)?));
            }
        }
        Ok(out)
    }

    /// The file-object store (opened on first use). Its objects are content only when
    /// the root's layers are stubs over them (see `berth_fs::objects::stubs`).
    pub fn objects(&self) -> Result<&ObjectStore> {
        if let Some(o) = self.objects.get() {
            return Ok(o);
        }
        let plain = self.layers_are_stubs()?;
        let opened = ObjectStore::open(&self.layout.objects())?.with_plain_objects(plain);
        Ok(self.objects.get_or_init(|| opened))
    }

    /// Whether the default snapshotter keeps its layers as stubs over the objects.
    pub fn layers_are_stubs(&self) -> Result<bool> {
        let (_, snap) = self.default_snapshotter()?;
        Ok(snap.data_dir().is_some())
    }

    /// Whether the object store was ever made (gc, du and fsck skip it otherwise).
    pub fn has_objects(&self) -> bool {
        self.layout.objects().exists()
    }

    /// Services for namespace `name` (created on first write).
    pub fn ns<'a>(&'a self, name: &'a str) -> Result<Ns<'a>> {
        namespace::check_name(name)?;
        Ok(Ns::new(self, name))
    }

    /// A lease held by this process for operation `op` (see `berth_cas::lease`).
    pub(crate) fn lease(&self, op: &str, subject: &str) -> Result<Lease> {
        let labels = [
            ("berth.op".to_string(), op.to_string()),
            ("berth.subject".to_string(), subject.to_string()),
        ]
        .into();
        Ok(self.store.lease(labels)?)
    }

    /// Adds every layer of `chain_ids` to `lease` at once, then runs `under` in the gate.
    pub(crate) fn lease_layers<T>(
        &self,
        lease: &Lease,
        chain_ids: &[String],
        under: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        self.store
            .lease_add_all(lease.id(), ResourceKind::Layer, chain_ids, under)
    }

    /// Adds snapshot `snapshotter/key` to `lease`, then runs `under` (which makes it).
    pub(crate) fn lease_snapshot<T>(
        &self,
        lease: &Lease,
        snapshotter: &str,
        key: &str,
        under: impl FnOnce() -> Result<T>,
    ) -> Result<T> {
        let resource = format!("{snapshotter}/{key}");
        self.store
            .lease_add(lease.id(), ResourceKind::Snapshot, &resource, under)
    }

    /// Ends a lease, logging (not failing) if that does not work: gc lets it lapse.
    pub(crate) fn release(&self, lease: Lease) {
        if let Err(e) = self.store.release(lease) {
            tracing::warn!("releasing a lease: {e}");
        }
    }

    /// Records an event in the journal (logged, not failed, if the journal is busy).
    pub(crate) fn event(
        &self,
        namespace: &str,
        topic: &str,
        subject: &str,
        attrs: &[(&str, String)],
    ) {
        let attrs = attrs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect();
        let written = self
            .store
            .meta()
            .write(|tx| berth_cas::events::record(tx, namespace, topic, subject, &attrs));
        if let Err(e) = written {
            tracing::warn!("recording event {topic} {subject}: {e}");
        }
    }
}
