//! Glue between unpacking and the file-object store (`<root>/objects`): overlay layers
//! become hardlinks to objects and get a tree index, which the FUSE view serves from.

use std::path::Path;

use anyhow::{Context as _, Result};
use berth_fs::objects::ObjectStore;

/// Opens the object store of the store at `root`.
pub fn open(root: &Path) -> Result<ObjectStore> {
    let dir = root.join("objects");
    ObjectStore::open(&dir).with_context(|| format!("opening object store {}", dir.display()))
}

/// Deduplicates the finished overlay layer directory `dir` into objects and records its
/// tree index under the layer's chainID. `known`: blake3 hashes by inode from the apply.
pub fn ingest_layer(
    root: &Path,
    chain_id: &str,
    dir: &Path,
    known: &std::collections::HashMap<u64, String>,
) -> Result<()> {
    open(root)?
        .ingest_layer(chain_id, dir, true, known)
        .with_context(|| format!("indexing layer {chain_id}"))?;
    Ok(())
}

/// What deduplication costs and saves, in allocated bytes.
#[derive(Debug, Clone, Copy, Default, serde::Serialize)]
pub struct DedupUsage {
    /// Objects on disk.
    pub objects: u64,
    /// Their allocated bytes, each inode once.
    pub physical: u64,
    /// Allocated bytes of every indexed layer's files, as if each layer kept its own copy.
    pub logical: u64,
}

impl DedupUsage {
    /// Bytes deduplication saved.
    pub fn saved(&self) -> u64 {
        self.logical.saturating_sub(self.physical)
    }
}

/// Logical and physical size of the file objects (zero when the store has none).
pub fn usage(root: &Path) -> Result<DedupUsage> {
    if !root.join("objects").exists() {
        return Ok(DedupUsage::default());
    }
    let store = open(root)?;
    let (_, logical) = store.index().logical_bytes()?;
    let mut u = DedupUsage {
        logical,
        ..DedupUsage::default()
    };
    for id in store.list()? {
        let p = store.path(&id);
        let md = std::fs::symlink_metadata(&p).with_context(|| format!("stat {}", p.display()))?;
        u.objects += 1;
        u.physical += std::os::unix::fs::MetadataExt::blocks(&md) * 512;
    }
    Ok(u)
}

/// Label on a FUSE-backed checkout's snapshot: the image's layer keys, base first, which
/// the FUSE server behind its lower directory (`berth_fs::snapshot::LOWER_LABEL`) shows.
pub const LAYERS_LABEL: &str = "berth.fuse.layers";

/// gc for objects: drops the tree indexes of layers that are neither overlay snapshots,
/// nor layers of a named image, nor shown by a FUSE-backed checkout, then every object
/// no index names. Runs under the exclusive store lock, after snapshot gc.
pub fn collect(root: &Path, store: &berth_cas::Store) -> Result<berth_fs::objects::GcStats> {
    if !root.join("objects").exists() {
        return Ok(Default::default());
    }
    let objects = open(root)?;
    let snap = crate::unpack::open(root, berth_fs::snapshot::SnapshotterKind::Overlay)?;
    let mut live = std::collections::HashSet::new();
    for info in snap.list()? {
        if let Some(layers) = info.labels.get(LAYERS_LABEL) {
            live.extend(layers.split(',').map(String::from));
        }
        live.insert(info.key);
    }
    let host = berth_cas::Platform::host();
    for img in store.meta().images()? {
        let Ok(desc) = berth_cas::image::descriptor(&img.media_type, &img.digest, img.size) else {
            continue;
        };
        if let Ok(r) = berth_cas::image::resolve(store, &desc, &host, &img.name) {
            live.extend(r.chain_ids());
        }
    }
    for key in objects.index().layers()? {
        if !live.contains(&key) {
            objects.index().remove_layer(&key)?;
        }
    }
    Ok(objects.gc()?)
}

/// fsck for objects: re-hashes each object, checks each index entry's object exists.
pub fn fsck(root: &Path) -> Result<berth_fs::objects::FsckReport> {
    if !root.join("objects").exists() {
        return Ok(Default::default());
    }
    Ok(open(root)?.fsck()?)
}
