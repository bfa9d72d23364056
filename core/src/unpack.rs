//! Unpacking an image's layers into a snapshotter, each committed under its chainID so
//! a layer shared by two images is unpacked once. Every layer the unpack relies on or
//! makes is on the caller's lease until the caller references the result.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Mutex;

use berth_cas::image::Resolved;
use berth_cas::lease::Lease;
use berth_fs::apply::{settle, Settled};
use berth_fs::objects::Staging;
use berth_fs::snapshot::{self, SnapshotError, Snapshotter};
use berth_fs::{apply_layer, ApplyOptions, ApplyStats, WhiteoutMode};

use crate::error::{Error, Result};
use crate::root::Root;

/// Where a layer's unpacking stands, for progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerState {
    /// Being decompressed and applied.
    Unpacking,
    /// A committed snapshot (now or already before).
    Done,
}

/// One unpack: into which snapshotter, under which lease.
pub(crate) struct Unpack<'a> {
    pub root: &'a Root,
    pub snap_name: &'a str,
    pub snap: &'a dyn Snapshotter,
    pub lease: &'a Lease,
}

impl Unpack<'_> {
    /// Makes sure every layer of `image` is a committed snapshot; returns the top
    /// chainID (None for an image without layers).
    pub fn all(&self, image: &Resolved) -> Result<Option<String>> {
        let (tx, rx) = std::sync::mpsc::channel();
        for i in 0..image.manifest.layers().len() {
            let _ = tx.send(i);
        }
        drop(tx);
        self.streaming(image, rx, &|_, _| {})
    }

    /// Unpacks `image` while its layer blobs arrive: `ready` yields indexes (into the
    /// manifest's layers) of blobs that are now stored, in any order, and closes when no
    /// more will come. With independent layers (overlay) each layer is applied as soon
    /// as its blob is there; otherwise layers are applied base first as the order allows.
    pub fn streaming(
        &self,
        image: &Resolved,
        ready: Receiver<usize>,
        state: &(dyn Fn(usize, LayerState) + Sync),
    ) -> Result<Option<String>> {
        let chain = image.chain_ids();
        check_layers(image)?;
        // Leased before looking: a layer seen committed now stays until we are done.
        let missing: Vec<usize> = self.root.lease_layers(self.lease, &chain, || {
            Ok((0..chain.len())
                .filter(|&i| !is_committed(self.snap, &chain[i]))
                .collect())
        })?;
        for i in (0..chain.len()).filter(|i| !missing.contains(i)) {
            state(i, LayerState::Done);
        }
        if missing.is_empty() {
            return Ok(chain.last().cloned());
        }
        let job = |i: usize, key: &str| -> Result<ApplyStats> {
            state(i, LayerState::Unpacking);
            self.apply_one(image, i, key)
        };
        if self.snap.independent_layers() {
            self.parallel(image, &chain, &missing, ready, &job)?;
        } else {
            self.in_order(&chain, &missing, ready, &job)?;
        }
        for &i in &missing {
            state(i, LayerState::Done);
        }
        Ok(chain.last().cloned())
    }

    /// A fresh active snapshot for applying a layer, on the lease.
    fn prepare_extract(&self, chain_id: &str, parent: Option<&str>) -> Result<String> {
        let key = extract_key(chain_id);
        self.root
            .lease_snapshot(self.lease, self.snap_name, &key, || {
                Ok(self.snap.prepare(&key, parent).map(drop)?)
            })?;
        Ok(key)
    }

    /// Decompresses and applies layer `i` into the prepared snapshot `key`.
    fn apply_one(&self, image: &Resolved, i: usize, key: &str) -> Result<ApplyStats> {
        let layer = &image.manifest.layers()[i];
        let wrap = |e: Error| Error::Layer {
            digest: layer.digest().to_string(),
            source: Box::new(e),
        };
        let blob = self.root.store().open_blob(layer.digest())?;
        let dir = self.snap.fs_dir(key)?;
        let objects = self.snap.layers_as_objects();
        // Stub layers: the apply writes stubs itself, content straight into a staging
        // directory, so the layer is not written twice.
        let staging = match self.snap.data_dir() {
            Some(_) => Some(self.root.objects()?.staging()?),
            None => None,
        };
        let opts = ApplyOptions {
            whiteouts: self.snap.whiteout_mode(),
            max_size: self.root.max_layer_size,
            expected_diff_id: Some(image.diff_ids()[i].clone()),
            hash_files: objects,
            stubs: staging.as_ref().map(|s| s.dir().to_path_buf()),
        };
        let started = std::time::Instant::now();
        let stats = apply_layer(
            std::io::BufReader::with_capacity(1 << 20, blob),
            &dir,
            &opts,
        )
        .map_err(|e| wrap(Error::Apply(e)))?;
        let applied = started.elapsed();
        if objects {
            let applied = staging.as_ref().map(|s| (s, &stats.file_blocks));
            self.index_layer(&image.chain_ids()[i], &dir, &stats.file_hashes, applied)
                .map_err(wrap)?;
        }
        crate::faults::point("unpack-layer-applied");
        tracing::debug!(
            layer = %layer.digest(),
            bytes = stats.size,
            entries = stats.entries,
            apply_ms = applied.as_millis() as u64,
            objects_ms = (started.elapsed() - applied).as_millis() as u64,
            "layer unpacked"
        );
        Ok(stats)
    }

    /// Turns a finished layer directory into objects (stubs over them, or hard links to
    /// them, as the snapshotter keeps its layers) and records its tree index.
    fn index_layer(
        &self,
        chain_id: &str,
        dir: &std::path::Path,
        known: &std::collections::HashMap<u64, berth_fs::objects::ContentHash>,
        applied: Option<(&Staging, &std::collections::HashMap<u64, u64>)>,
    ) -> Result<()> {
        let objects = self.root.objects()?;
        match self.snap.data_dir() {
            Some(_) => objects.ingest_stub_layer(chain_id, dir, known, applied)?,
            None => objects.ingest_layer(chain_id, dir, true, known)?,
        };
        Ok(())
    }

    /// Settles layer `i`, applied alone into `key`, against its committed lower layers
    /// (see `berth_fs::apply::settle`). Returns the key to commit: `key`, or a new
    /// extraction on the parent when the layer had to be applied again onto its mounted
    /// lower layers (then committed as the parent's child already).
    fn settle_layer(
        &self,
        image: &Resolved,
        chain: &[String],
        i: usize,
        key: &str,
        stats: &ApplyStats,
    ) -> Result<(String, bool)> {
        let lowers = match i.checked_sub(1) {
            Some(p) => {
                let mut dirs = vec![self.snap.fs_dir(&chain[p])?];
                dirs.extend(self.snap.parent_dirs(&chain[p])?);
                dirs
            }
            None => Vec::new(),
        };
        let dir = self.snap.fs_dir(key)?;
        match settle(&dir, &lowers, stats)? {
            Settled::Done { dropped } => {
                if dropped > 0 {
                    tracing::debug!(layer = i, dropped, "whiteouts of nothing dropped");
                }
                let split = self.split_link_groups(chain, i, &dir)?;
                if (dropped > 0 || split) && self.snap.layers_as_objects() {
                    self.index_layer(&chain[i], &dir, &stats.file_hashes, None)?;
                }
                Ok((key.to_string(), false))
            }
            Settled::Ordered { path } => {
                tracing::info!(
                    layer = i,
                    path = %path.display(),
                    "a directory of the layer shadows a lower non-directory: applying it onto its lower layers"
                );
                let _ = self.snap.remove(key);
                Ok((self.reapply(image, chain, i)?, true))
            }
        }
    }

    /// Stub layers: gives names of a lower hard-link group that layer `i` partly hides
    /// their own inode (see `ObjectStore::split_link_groups`). Returns whether it did.
    fn split_link_groups(&self, chain: &[String], i: usize, dir: &std::path::Path) -> Result<bool> {
        if self.snap.data_dir().is_none() || i == 0 {
            return Ok(false);
        }
        Ok(self
            .root
            .objects()?
            .split_link_groups(&chain[i], dir, &chain[..i])?)
    }

    /// Applies layer `i` onto its mounted lower layers, as a sequential unpack does: the
    /// mount resolves its paths through the merged tree (symlinks inside the root), and
    /// its deletions become the overlay's own whiteouts and opaque directories.
    fn reapply(&self, image: &Resolved, chain: &[String], i: usize) -> Result<String> {
        let layer = &image.manifest.layers()[i];
        let parent = i.checked_sub(1).map(|p| chain[p].as_str());
        let key = self.prepare_extract(&chain[i], parent)?;
        let target = self.root.layout().apply_mount(&key);
        std::fs::create_dir_all(&target)
            .map_err(Error::io(format!("creating {}", target.display())))?;
        let mounted = self
            .snap
            .mounts(&key)
            .map_err(Error::from)
            .and_then(|m| Ok(berth_mount::mount_all(&m, &target)?));
        let applied = mounted.and_then(|()| {
            let blob = self.root.store().open_blob(layer.digest())?;
            let opts = ApplyOptions {
                whiteouts: WhiteoutMode::Delete,
                max_size: self.root.max_layer_size,
                expected_diff_id: Some(image.diff_ids()[i].clone()),
                hash_files: false,
                stubs: None,
            };
            Ok(apply_layer(
                std::io::BufReader::with_capacity(1 << 20, blob),
                &target,
                &opts,
            )?)
        });
        let unmounted = berth_mount::unmount_recursive(&target);
        let _ = std::fs::remove_dir(&target);
        let result = applied.and_then(|_| Ok(unmounted?)).and_then(|()| {
            let dir = self.snap.fs_dir(&key)?;
            berth_fs::apply::scrub_overlay_xattrs(&dir)?;
            if self.snap.layers_as_objects() {
                self.index_layer(&chain[i], &dir, &Default::default(), None)?;
                if self.split_link_groups(chain, i, &dir)? {
                    self.index_layer(&chain[i], &dir, &Default::default(), None)?;
                }
            }
            Ok(())
        });
        match result {
            Ok(()) => Ok(key),
            Err(e) => {
                let _ = self.snap.remove(&key);
                Err(Error::Layer {
                    digest: layer.digest().to_string(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// Layers that need their parent applied first: apply base first as blobs arrive.
    fn in_order(
        &self,
        chain: &[String],
        missing: &[usize],
        ready: Receiver<usize>,
        job: &(dyn Fn(usize, &str) -> Result<ApplyStats> + Sync),
    ) -> Result<()> {
        let mut arrived = vec![false; chain.len()];
        let mut next = 0;
        while next < missing.len() {
            let i = missing[next];
            if !arrived[i] {
                match ready.recv() {
                    Ok(r) => {
                        if let Some(a) = arrived.get_mut(r) {
                            *a = true;
                        }
                    }
                    Err(_) => return Err(never_arrived(i)),
                }
                continue;
            }
            let parent = i.checked_sub(1).map(|p| chain[p].as_str());
            let key = self.prepare_extract(&chain[i], parent)?;
            self.finish(&key, &chain[i], None, job(i, &key).map(drop))?;
            next += 1;
        }
        Ok(())
    }

    /// Overlay layers do not depend on each other's contents: apply each on any free
    /// core as soon as its blob is there, then chain them base first.
    fn parallel(
        &self,
        image: &Resolved,
        chain: &[String],
        missing: &[usize],
        ready: Receiver<usize>,
        job: &(dyn Fn(usize, &str) -> Result<ApplyStats> + Sync),
    ) -> Result<()> {
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(missing.len());
        let ready = Mutex::new(ready);
        let failed = AtomicBool::new(false);
        let done: Mutex<Vec<Applied>> = Mutex::new(Vec::new());
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
                    let (key, result) = match self.prepare_extract(&chain[i], None) {
                        Ok(key) => {
                            let r = job(i, &key);
                            (Some(key), r)
                        }
                        Err(e) => (None, Err(e)),
                    };
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
            .map(|&i| never_arrived(i));
        for (i, key, result) in results {
            let parent = i.checked_sub(1).map(|p| chain[p].as_str());
            let Some(key) = key else {
                first_error.get_or_insert(result.err().unwrap_or_else(|| never_arrived(i)));
                continue;
            };
            if first_error.is_some() {
                let _ = self.snap.remove(&key);
                continue;
            }
            let settled = result.and_then(|stats| self.settle_layer(image, chain, i, &key, &stats));
            let committed = match settled {
                Ok((key, true)) => self.finish(&key, &chain[i], None, Ok(())),
                Ok((key, false)) => self.finish(&key, &chain[i], Some(parent), Ok(())),
                Err(e) => self.finish(&key, &chain[i], Some(parent), Err(e)),
            };
            if let Err(e) = committed {
                first_error = Some(e);
            }
        }
        first_error.map_or(Ok(()), Err)
    }

    /// Commits an applied extraction under its chainID, or cleans it up. Losing a race
    /// to another process unpacking the same layer is success.
    fn finish(
        &self,
        key: &str,
        chain_id: &str,
        parent: Option<Option<&str>>,
        applied: Result<()>,
    ) -> Result<()> {
        if let Err(e) = applied {
            let _ = self.snap.remove(key);
            return Err(e);
        }
        let committed = match parent {
            Some(p) => self.snap.commit_with_parent(chain_id, key, p),
            None => self.snap.commit(chain_id, key),
        };
        match committed {
            Ok(()) => Ok(()),
            Err(SnapshotError::AlreadyExists(_)) => {
                let _ = self.snap.remove(key);
                Ok(())
            }
            Err(e) => {
                let _ = self.snap.remove(key);
                Err(e.into())
            }
        }
    }
}

/// A layer's index, the extraction snapshot it went into (if one was made), and how it went.
type Applied = (usize, Option<String>, Result<ApplyStats>);

fn never_arrived(i: usize) -> Error {
    Error::Unsupported(format!("layer {} of the image never arrived", i + 1))
}

/// An image whose manifest and config disagree on the number of layers is refused.
pub(crate) fn check_layers(image: &Resolved) -> Result<()> {
    let (layers, diff_ids) = (image.manifest.layers().len(), image.diff_ids().len());
    if layers != diff_ids {
        return Err(Error::BadImage {
            image: image.manifest_desc.digest().to_string(),
            reason: format!("it has {layers} layers but its config lists {diff_ids} diff_ids"),
        });
    }
    Ok(())
}

pub(crate) fn is_committed(snap: &dyn Snapshotter, key: &str) -> bool {
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
