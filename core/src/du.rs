//! Disk use of a root, by kind: content blobs, ingests, quarantine, file objects (with
//! what deduplication saves), each snapshotter's snapshots, and metadata.

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use serde::Serialize;

use crate::error::Result;
use crate::root::Root;

/// One row of `du`.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Usage {
    /// What it counts: `layers`, `file objects`, `snapshots (overlay)`, ...
    pub kind: String,
    /// How many.
    pub count: u64,
    /// Bytes on disk.
    pub bytes: u64,
}

/// What file-level deduplication costs and saves, in allocated bytes.
#[derive(Debug, Clone, Copy, Default, Serialize, PartialEq, Eq)]
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

/// The whole picture.
#[derive(Debug, Clone, Serialize)]
pub struct DiskUsage {
    /// By kind.
    pub rows: Vec<Usage>,
    /// Deduplication of unpacked file data.
    pub dedup: DedupUsage,
}

impl DiskUsage {
    /// Bytes of every row.
    pub fn total(&self) -> u64 {
        self.rows.iter().map(|r| r.bytes).sum()
    }
}

impl Root {
    /// Disk use by kind. Each inode is counted once: a file an overlay layer shares
    /// with the object store counts as an object, one shared by snapshots once.
    pub fn du(&self) -> Result<DiskUsage> {
        let mut seen = HashSet::new();
        let mut rows: Vec<Usage> = Vec::new();
        let mut by_kind = std::collections::BTreeMap::<&str, Usage>::new();
        for b in self.store().meta().blobs()? {
            let kind = match berth_cas::media::kind(&b.media_type) {
                berth_cas::media::Kind::Index => "indexes",
                berth_cas::media::Kind::Manifest => "manifests",
                berth_cas::media::Kind::Config => "configs",
                berth_cas::media::Kind::Layer => "layers",
                berth_cas::media::Kind::Unknown => "other blobs",
            };
            let u = by_kind.entry(kind).or_insert_with(|| Usage {
                kind: kind.into(),
                count: 0,
                bytes: 0,
            });
            u.count += 1;
            u.bytes += b.size;
        }
        rows.extend(by_kind.into_values());
        for (kind, dir) in [("ingest", "ingest"), ("quarantine", "quarantine")] {
            let (count, bytes) = dir_usage(&self.layout().root().join(dir));
            rows.push(Usage {
                kind: kind.into(),
                count,
                bytes,
            });
        }
        let dedup = self.dedup_usage(&mut seen)?;
        rows.push(Usage {
            kind: "file objects".into(),
            count: dedup.objects,
            bytes: dedup.physical,
        });
        for (name, snap) in self.existing_snapshotters()? {
            let mut u = Usage {
                kind: format!("snapshots ({name})"),
                count: 0,
                bytes: 0,
            };
            for info in snap.list()? {
                u.count += 1;
                if let Ok(dir) = snap.fs_dir(&info.key) {
                    u.bytes += tree_bytes(dir.parent().unwrap_or(&dir), &mut seen);
                }
            }
            rows.push(u);
        }
        let root = self.layout().root();
        let mut db = ["meta.db", "meta.db-wal", "meta.db-shm"]
            .iter()
            .map(|f| file_len(&root.join(f)))
            .sum::<u64>();
        for f in ["index.db", "index.db-wal", "index.db-shm"] {
            db += file_len(&self.layout().objects().join(f));
        }
        for (name, _) in self.existing_snapshotters()? {
            for f in ["metadata.db", "metadata.db-wal", "metadata.db-shm"] {
                db += file_len(&self.layout().snapshotter(&name).join(f));
            }
        }
        rows.push(Usage {
            kind: "metadata".into(),
            count: 1,
            bytes: db,
        });
        Ok(DiskUsage { rows, dedup })
    }

    /// Logical and physical size of the file objects (zero when the root has none).
    fn dedup_usage(&self, seen: &mut HashSet<(u64, u64)>) -> Result<DedupUsage> {
        if !self.has_objects() {
            return Ok(DedupUsage::default());
        }
        let store = self.objects()?;
        let (_, logical) = store.index().logical_bytes()?;
        let mut u = DedupUsage {
            logical,
            ..DedupUsage::default()
        };
        for id in store.list()? {
            let p = store.path(&id);
            let Ok(md) = std::fs::symlink_metadata(&p) else {
                continue; // removed by a concurrent gc
            };
            u.objects += 1;
            if seen.insert((md.dev(), md.ino())) {
                u.physical += md.blocks() * 512;
            }
        }
        Ok(u)
    }
}

/// Allocated bytes of the inodes under `dir` not counted yet (symlinks not followed).
fn tree_bytes(dir: &Path, seen: &mut HashSet<(u64, u64)>) -> u64 {
    let mut bytes = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let Ok(md) = std::fs::symlink_metadata(&p) else {
            continue;
        };
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        bytes += md.blocks() * 512;
        if md.is_dir() {
            if let Ok(rd) = std::fs::read_dir(&p) {
                stack.extend(rd.flatten().map(|e| e.path()));
            }
        }
    }
    bytes
}

fn file_len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

fn dir_usage(dir: &Path) -> (u64, u64) {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return (0, 0);
    };
    rd.flatten()
        .filter_map(|e| e.metadata().ok())
        .fold((0, 0), |(c, b), m| (c + 1, b + m.len()))
}
