//! Glue between the store and the filesystems: choose a snapshotter and unpack an
//! image's layers into it, each committed under its chainID so a layer shared by two
//! images is unpacked once.

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

use anyhow::{anyhow, Context as _, Result};
use berth_cas::image::Resolved;
use berth_cas::Store;
use berth_fs::snapshot::{self, SnapshotError, Snapshotter, SnapshotterKind};
use berth_fs::{apply_layer, ApplyOptions};

/// Name of a snapshotter kind as users type it.
pub fn kind_name(kind: SnapshotterKind) -> &'static str {
    match kind {
        SnapshotterKind::Overlay => "overlay",
        SnapshotterKind::Native => "native",
    }
}

/// Parses a snapshotter name.
pub fn parse_kind(name: &str) -> Result<SnapshotterKind> {
    match name {
        "overlay" | "overlayfs" => Ok(SnapshotterKind::Overlay),
        "native" => Ok(SnapshotterKind::Native),
        other => Err(anyhow!("unknown snapshotter {other:?} (overlay or native)")),
    }
}

/// The default snapshotter for a store: detected once (overlay unless the root cannot
/// host overlay mounts) and remembered in `snapshots/default`.
pub fn default_kind(root: &Path) -> Result<SnapshotterKind> {
    let dir = root.join("snapshots");
    let memo = dir.join("default");
    if let Ok(name) = std::fs::read_to_string(&memo) {
        return parse_kind(name.trim());
    }
    let kind = snapshot::detect_default(&dir)?;
    berth_cas::store::write_atomic(&memo, kind_name(kind).as_bytes())?;
    Ok(kind)
}

/// Opens a snapshotter of `kind` under the store root.
pub fn open(root: &Path, kind: SnapshotterKind) -> Result<Box<dyn Snapshotter>> {
    let dir = root.join("snapshots").join(kind_name(kind));
    snapshot::open(kind, &dir).with_context(|| format!("opening {} snapshotter", kind_name(kind)))
}

/// Unpack limits.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Refuse layers whose uncompressed tar is larger than this.
    pub max_layer_size: Option<u64>,
}

/// Makes sure every layer of `image` is a committed snapshot; returns the top chainID
/// (None for an image without layers).
pub fn unpack(
    store: &Store,
    snap: &dyn Snapshotter,
    image: &Resolved,
    limits: Limits,
) -> Result<Option<String>> {
    let (tx, rx) = std::sync::mpsc::channel();
    for i in 0..image.manifest.layers().len() {
        let _ = tx.send(i);
    }
    drop(tx);
    unpack_streaming(store, snap, image, limits, rx, &|_, _| {})
}

/// Where a layer's unpacking stands, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Being decompressed and applied.
    Unpacking,
    /// A committed snapshot (now or already before).
    Done,
}

/// Unpacks `image` while its layer blobs arrive: `ready` yields indexes (into the
/// manifest's layers) of blobs that are now stored, in any order, and closes when no
/// more will come. With independent layers (overlay) each layer is applied as soon as
/// its blob is there; otherwise layers are applied base first as the order allows.
pub fn unpack_streaming(
    store: &Store,
    snap: &dyn Snapshotter,
    image: &Resolved,
    limits: Limits,
    ready: Receiver<usize>,
    state: &(dyn Fn(usize, LayerState) + Sync),
) -> Result<Option<String>> {
    let chain = image.chain_ids();
    let layers = image.manifest.layers();
    if layers.len() != image.diff_ids().len() {
        return Err(anyhow!(
            "image has {} layers but its config lists {} diff_ids",
            layers.len(),
            image.diff_ids().len()
        ));
    }
    let missing: Vec<usize> = (0..chain.len())
        .filter(|&i| !is_committed(snap, &chain[i]))
        .collect();
    for i in (0..chain.len()).filter(|i| !missing.contains(i)) {
        state(i, LayerState::Done);
    }
    if missing.is_empty() {
        return Ok(chain.last().cloned());
    }
    let job = |i: usize, key: &str| -> Result<()> {
        state(i, LayerState::Unpacking);
        apply_one(store, snap, image, limits, i, key)
    };
    if snap.independent_layers() {
        unpack_parallel(snap, &chain, &missing, ready, &job)?;
    } else {
        unpack_in_order(snap, &chain, &missing, ready, &job)?;
    }
    for &i in &missing {
        state(i, LayerState::Done);
    }
    Ok(chain.last().cloned())
}

/// Decompresses and applies layer `i` into the prepared snapshot `key`.
fn apply_one(
    store: &Store,
    snap: &dyn Snapshotter,
    image: &Resolved,
    limits: Limits,
    i: usize,
    key: &str,
) -> Result<()> {
    let layer = &image.manifest.layers()[i];
    let blob = store.open_blob(layer.digest())?;
    let dir = snap.fs_dir(key)?;
    let opts = ApplyOptions {
        whiteouts: snap.whiteout_mode(),
        max_size: limits.max_layer_size,
        expected_diff_id: Some(image.diff_ids()[i].clone()),
        hash_files: snap.kind() == SnapshotterKind::Overlay,
    };
    let started = std::time::Instant::now();
    let stats = apply_layer(
        std::io::BufReader::with_capacity(1 << 20, blob),
        &dir,
        &opts,
    )
    .with_context(|| format!("applying layer {}", layer.digest()))?;
    let applied = started.elapsed();
    if snap.kind() == SnapshotterKind::Overlay {
        crate::objects::ingest_layer(
            store.root(),
            &image.chain_ids()[i],
            &dir,
            &stats.file_hashes,
        )?;
    }
    tracing::debug!(
        layer = %layer.digest(),
        bytes = stats.size,
        entries = stats.entries,
        apply_ms = applied.as_millis() as u64,
        objects_ms = (started.elapsed() - applied).as_millis() as u64,
        "layer unpacked"
    );
    Ok(())
}

/// Layers that need their parent applied first: apply base first as blobs arrive.
fn unpack_in_order(
    snap: &dyn Snapshotter,
    chain: &[String],
    missing: &[usize],
    ready: Receiver<usize>,
    job: &(dyn Fn(usize, &str) -> Result<()> + Sync),
) -> Result<()> {
    let mut arrived = vec![false; chain.len()];
    let mut next = 0;
    while next < missing.len() {
        let i = missing[next];
        if !arrived[i] {
            match ready.recv() {
                Ok(r) => arrived.get_mut(r).map(|a| *a = true).unwrap_or(()),
                Err(_) => return Err(anyhow!("layer {} of the image never arrived", i + 1)),
            }
            continue;
        }
        let parent = i.checked_sub(1).map(|p| chain[p].as_str());
        let key = extract_key(&chain[i]);
        snap.prepare(&key, parent)?;
        finish(snap, &key, &chain[i], None, job(i, &key))?;
        next += 1;
    }
    Ok(())
}

fn is_committed(snap: &dyn Snapshotter, key: &str) -> bool {
    matches!(snap.stat(key), Ok(info) if info.kind == snapshot::Kind::Committed)
}

fn extract_key(chain_id: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let short = chain_id
        .trim_start_matches("sha256:")
        .get(..16)
        .unwrap_or(chain_id);
    format!(
        "extract-{}-{}-{short}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Overlay layers do not depend on each other's contents: apply each on any free core
/// as soon as its blob is there, then chain them base first.
fn unpack_parallel(
    snap: &dyn Snapshotter,
    chain: &[String],
    missing: &[usize],
    ready: Receiver<usize>,
    job: &(dyn Fn(usize, &str) -> Result<()> + Sync),
) -> Result<()> {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(missing.len());
    let ready = Mutex::new(ready);
    let failed = std::sync::atomic::AtomicBool::new(false);
    let done: Mutex<Vec<(usize, String, Result<()>)>> = Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| loop {
                let next = ready.lock().unwrap_or_else(|p| p.into_inner()).recv();
                let Ok(i) = next else { break };
                let taken = done
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .iter()
                    .any(|(j, _, _)| *j == i);
                if !missing.contains(&i) || taken || failed.load(Ordering::Relaxed) {
                    continue; // keep draining so senders never block
                }
                let key = extract_key(&chain[i]);
                let result = snap
                    .prepare(&key, None)
                    .map_err(anyhow::Error::from)
                    .and_then(|_| job(i, &key));
                if result.is_err() {
                    failed.store(true, Ordering::Relaxed);
                }
                done.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push((i, key, result));
            });
        }
    });
    let mut results = done.into_inner().unwrap_or_else(|p| p.into_inner());
    results.sort_by_key(|(i, _, _)| *i);
    // A layer that failed explains itself below; one that never came (its download
    // failed) leaves nothing to commit.
    let failed_layer = results.iter().any(|(_, _, r)| r.is_err());
    let mut first_error = missing
        .iter()
        .find(|i| !failed_layer && !results.iter().any(|(j, _, _)| j == *i))
        .map(|i| anyhow!("layer {} of the image never arrived", i + 1));
    for (i, key, result) in results {
        let parent = i.checked_sub(1).map(|p| chain[p].as_str());
        if first_error.is_some() {
            let _ = snap.remove(&key);
            continue;
        }
        if let Err(e) = finish(snap, &key, &chain[i], Some(parent), result) {
            first_error = Some(e);
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// Commits an applied extraction under its chainID, or cleans it up. Losing a race
/// to another process unpacking the same layer is success.
fn finish(
    snap: &dyn Snapshotter,
    key: &str,
    chain_id: &str,
    parent: Option<Option<&str>>,
    applied: Result<()>,
) -> Result<()> {
    if let Err(e) = applied {
        let _ = snap.remove(key);
        return Err(e);
    }
    let committed = match parent {
        Some(p) => snap.commit_with_parent(chain_id, key, p),
        None => snap.commit(chain_id, key),
    };
    match committed {
        Ok(()) => Ok(()),
        Err(SnapshotError::AlreadyExists(_)) => {
            let _ = snap.remove(key);
            Ok(())
        }
        Err(e) => {
            let _ = snap.remove(key);
            Err(e.into())
        }
    }
}
