//! Garbage collection across the whole root: mark from every root, sweep the rest.
//!
//! Roots: image names of every namespace (every platform present), checkouts (base
//! image, snapshot, the layers of a FUSE-backed one's view), containers (image,
//! snapshot), and leases (what pulls, imports, commits, checkouts, runs and FUSE views
//! in flight wrote or rely on). The mark and the decisions run under the exclusive gc
//! gate, which waits for the short shared holds around publishing and leasing and
//! nothing else; deleting directories happens after it is let go. A missing blob is
//! reported and does not stop the mark; a manifest whose config cannot be read makes
//! the mark of layers incomplete, and then no snapshot or tree index is swept.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::Duration;

use berth_cas::gc::{self as content, Marked, Missing};
use berth_cas::lease::ResourceKind;
use berth_fs::snapshot::Snapshotter;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::root::Root;
use crate::views;

/// How to collect.
#[derive(Debug, Clone, Copy)]
pub struct GcOptions {
    /// Abandoned ingests younger than this stay (a writer may come back to them).
    pub ingest_grace: Duration,
}

/// What a collection did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Leases that had expired or whose holders were gone.
    pub leases_expired: usize,
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Snapshots removed.
    pub snapshots_removed: usize,
    /// Directories no snapshotter knew (left by killed processes), removed.
    pub orphan_dirs_removed: usize,
    /// Tree indexes of layers nothing uses, dropped.
    pub layer_indexes_removed: usize,
    /// File objects no index names, removed.
    pub objects_removed: u64,
    /// Their bytes (of objects no layer directory still links).
    pub object_bytes_freed: u64,
    /// Abandoned ingests removed.
    pub ingests_removed: usize,
    /// Their bytes.
    pub ingest_bytes_freed: u64,
    /// Blobs that roots need and the store lacks (`berth fsck` says more).
    pub missing: Vec<Missing>,
    /// Snapshots and indexes were kept because a config could not be read.
    pub layers_kept: bool,
}

/// What every root reaches.
pub(crate) struct Live {
    /// Blobs, chainIDs of reached manifests, what is missing.
    pub content: Marked,
    /// Snapshot keys to keep, per snapshotter name (before adding ancestors).
    pub snapshots: HashMap<String, BTreeSet<String>>,
    /// Layer keys (chainIDs) whose snapshots (any snapshotter) and tree index stay.
    pub layers: HashSet<String>,
}

impl Root {
    /// Collects garbage; see the module docs.
    pub fn gc(&self, opts: &GcOptions) -> Result<GcReport> {
        let store = self.store();
        let mut report = GcReport::default();
        let mut doomed: Vec<PathBuf> = Vec::new();
        let mut removed_snapshots: Vec<String> = Vec::new();
        {
            let _gate = store.gate().exclusive()?;
            report.leases_expired = store.expire_leases()?.len();
            let live = self.mark()?;
            let swept = content::sweep_blobs(store, &live.content)?;
            report.blobs_removed = swept.blobs_removed;
            report.bytes_freed = swept.bytes_freed;
            report.missing = live.content.missing.iter().cloned().collect();
            report.layers_kept = live.content.incomplete;
            if !live.content.incomplete {
                for (name, snap) in self.existing_snapshotters()? {
                    let mut keep: BTreeSet<String> =
                        live.snapshots.get(&name).cloned().unwrap_or_default();
                    keep.extend(live.layers.iter().cloned());
                    for (key, dir) in sweep(snap.as_ref(), &keep)? {
                        removed_snapshots.push(format!("{name}/{key}"));
                        doomed.extend(dir);
                    }
                }
                if self.has_objects() {
                    let index = self.objects()?.index();
                    let mut keep = live.layers.clone();
                    for (_, snap) in self.existing_snapshotters()? {
                        keep.extend(snap.list()?.into_iter().map(|i| i.key));
                    }
                    for key in index.layers()? {
                        if !keep.contains(&key) {
                            index.remove_layer(&key)?;
                            report.layer_indexes_removed += 1;
                        }
                    }
                }
            }
        }
        report.snapshots_removed = removed_snapshots.len();
        for s in &removed_snapshots {
            self.event("", "/snapshots/remove", s, &[]);
        }
        if self.has_objects() {
            let objects = self.objects()?.gc()?;
            report.objects_removed = objects.removed;
            report.object_bytes_freed = objects.bytes;
        }
        for d in doomed {
            std::fs::remove_dir_all(&d).map_err(Error::io(format!("removing {}", d.display())))?;
        }
        report.orphan_dirs_removed +=
            berth_fs::snapshot::remove_stale_probes(&self.layout().snapshots())?.len();
        for (_, snap) in self.existing_snapshotters()? {
            report.orphan_dirs_removed += snap.cleanup()?.len();
        }
        let (n, bytes) = content::sweep_ingests(store, opts.ingest_grace)?;
        report.ingests_removed = n;
        report.ingest_bytes_freed = bytes;
        Ok(report)
    }

    /// Marks from every root (see the module docs). Read-only; gc calls it under the
    /// exclusive gate, fsck to count what is unreferenced.
    pub(crate) fn mark(&self) -> Result<Live> {
        let store = self.store();
        let mut live = Live {
            content: Marked::default(),
            snapshots: HashMap::new(),
            layers: HashSet::new(),
        };
        // One read transaction: a name written and a lease released meanwhile are seen
        // together (the name) or not at all (the lease), never neither.
        let (images, checkouts, containers, leases) = store.meta().read(|m| {
            Ok((
                m.all_images()?,
                m.all_checkouts()?,
                m.all_containers()?,
                m.leases()?,
            ))
        })?;
        for img in images {
            let subject = format!("image {}/{}", img.namespace, img.name);
            match crate::images::target(&img) {
                Ok(desc) => live.content.mark(store, &desc, &subject),
                Err(_) => live.content.mark_digest(store, &img.digest, &subject),
            }
        }
        for l in leases {
            let subject = format!("lease {}", l.id);
            for (kind, resource) in l.resources {
                match kind {
                    ResourceKind::Blob => live.content.mark_digest(store, &resource, &subject),
                    ResourceKind::Layer => {
                        live.layers.insert(resource);
                    }
                    ResourceKind::Snapshot => {
                        if let Some((name, key)) = resource.split_once('/') {
                            live.keep_snapshot(name, key);
                        }
                    }
                }
            }
        }
        for c in checkouts {
            if !c.manifest.is_empty() {
                live.content
                    .mark_digest(store, &c.manifest, &format!("checkout {}", c.dir));
            }
            live.keep_snapshot(&c.snapshotter, &c.snapshot);
            if let Ok(info) = self
                .snapshotter(&c.snapshotter)
                .and_then(|s| Ok(s.stat(&c.snapshot)?))
            {
                live.layers.extend(views::fuse_layers(&info.labels));
            }
        }
        for c in containers {
            if !c.manifest.is_empty() {
                let subject = format!("container {}", crate::ids::short(&c.id));
                live.content.mark_digest(store, &c.manifest, &subject);
            }
            if let (Some(name), Some(key)) = (&c.snapshotter, &c.snapshot) {
                live.keep_snapshot(name, key);
            }
        }
        live.layers.extend(live.content.chain_ids.iter().cloned());
        Ok(live)
    }
}

impl Live {
    fn keep_snapshot(&mut self, snapshotter: &str, key: &str) {
        self.snapshots
            .entry(snapshotter.to_string())
            .or_default()
            .insert(key.to_string());
    }
}

/// Removes every snapshot not in `keep` and not an ancestor of one that is, leaves
/// first; returns each removed key and the directory left to delete.
fn sweep(
    snap: &dyn Snapshotter,
    keep: &BTreeSet<String>,
) -> Result<Vec<(String, Option<PathBuf>)>> {
    let infos = snap.list()?;
    let parent: HashMap<String, Option<String>> = infos
        .iter()
        .map(|i| (i.key.clone(), i.parent.clone()))
        .collect();
    let mut live = BTreeSet::new();
    for k in keep {
        let mut cur = Some(k.clone());
        while let Some(key) = cur {
            if !parent.contains_key(&key) || !live.insert(key.clone()) {
                break;
            }
            cur = parent.get(&key).cloned().flatten();
        }
    }
    let mut removed = Vec::new();
    loop {
        let infos = snap.list()?;
        let parents: BTreeSet<String> = infos.iter().filter_map(|i| i.parent.clone()).collect();
        let leaves: Vec<String> = infos
            .into_iter()
            .filter(|i| !live.contains(&i.key) && !parents.contains(&i.key))
            .map(|i| i.key)
            .collect();
        if leaves.is_empty() {
            return Ok(removed);
        }
        for k in leaves {
            let dir = snap.remove_detached(&k)?;
            removed.push((k, dir));
        }
    }
}
