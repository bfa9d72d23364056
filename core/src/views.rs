//! FUSE views: an image's merged tree, read-only, served by a FUSE server straight
//! from the layers' tree indexes and the file objects.
//!
//! A server is a fresh `berth __fuse-serve` process (so it forks before any thread
//! exists), mounted with fusermount3's auto_unmount: if it dies, the mount goes with it.
//! Its starter reports "mounted" only once the server answered the kernel's INIT. A
//! plain view (`berth mount --fuse`) is kept from gc by a lease the server holds for its
//! whole life; the view under a FUSE-backed checkout is kept by the checkout's record
//! (its snapshot names the layers in [`LAYERS_LABEL`]).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use berth_cas::image::Resolved;
use berth_cas::lease::Lease;
use berth_cas::Platform;
use berth_fs::fuse::{View, ViewFs};
use berth_fs::objects::ObjectError;
use berth_fs::snapshot::{Kind, SnapshotError, Snapshotter, LOWER_LABEL};
use berth_fs::ApplyOptions;
use berth_mount::Mount;

use crate::error::{Error, Result};
use crate::namespace::Ns;
use crate::root::Root;
use crate::unpack::{check_layers, Unpack};

/// The filesystem type berth's FUSE mounts show in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.berth";

/// The verb a FUSE server runs as.
pub const SERVE_VERB: &str = "__fuse-serve";

/// Label on a FUSE-backed checkout's snapshot: the image's layer keys, base first, which
/// the FUSE server behind its lower directory ([`LOWER_LABEL`]) shows.
pub const LAYERS_LABEL: &str = "berth.fuse.layers";

/// Whether `dir` is a berth FUSE mount.
pub fn is_fuse_mount(dir: &Path) -> bool {
    berth_mount::mount_info(dir).is_some_and(|m| m.fstype == FSTYPE)
}

/// A mounted view.
#[derive(Debug, Clone)]
pub struct Mounted {
    /// The image's name.
    pub image: String,
    /// Whether reads go straight from the kernel to the object files.
    pub passthrough: bool,
}

impl Ns<'_> {
    /// `berth mount --fuse REF DIR`: the image's tree at `dir`, read-only.
    pub fn mount_view(&self, reference: &str, dir: &Path) -> Result<Mounted> {
        let root = self.root();
        std::fs::create_dir_all(dir).map_err(Error::io(format!("creating {}", dir.display())))?;
        let dir = crate::checkouts::canonical_dir(dir)?;
        if berth_mount::mount_info(&dir).is_some() {
            return Err(Error::AlreadyMounted(dir));
        }
        crate::checkouts::check_empty(&dir)?;
        let lease = root.lease("view", &dir.display().to_string())?;
        let (img, resolved) = self.images().resolve(reference, &Platform::host())?;
        root.store()
            .claim(resolved.manifest_desc.digest(), Some(lease.id()))?;
        let (_, snap) = overlay(root)?;
        let layers = index_image(root, snap.as_ref(), &resolved, &lease)?;
        let passthrough = start_server(root, &dir, &layers, Some(&lease))?;
        // The server holds the lease now; dropping ours lets it live as long as the view.
        drop(lease);
        Ok(Mounted {
            image: img.name,
            passthrough,
        })
    }
}

impl Root {
    /// Unmounts a FUSE view (its server then ends and lets go of its lease).
    pub fn unmount_view(&self, dir: &Path) -> Result<()> {
        Ok(berth_mount::unmount(dir)?)
    }

    /// `berth __fuse-serve`: the server's whole life. `ready` is told once the kernel's
    /// INIT is answered (with whether reads pass through); it serves until unmounted.
    pub fn serve_view(
        &self,
        dir: &Path,
        layers: &[String],
        lease: Option<&str>,
        ready: Box<dyn FnOnce(bool) + Send>,
    ) -> Result<()> {
        let held = lease.map(|id| self.store().join_lease(id)).transpose()?;
        let objects = self.objects()?;
        let mut indexes = Vec::with_capacity(layers.len());
        for key in layers {
            let entries = objects.index().layer(key)?.ok_or_else(|| Error::Helper {
                what: "FUSE server",
                why: format!("layer {key} has no tree index"),
            })?;
            indexes.push(entries);
        }
        let fs = ViewFs::new(View::build(indexes), objects.dir().to_path_buf(), ready);
        berth_fs::fuse::serve(fs, dir, true)
            .map_err(Error::io(format!("serving {}", dir.display())))?;
        if let Some(lease) = held {
            self.release(lease);
        }
        Ok(())
    }
}

/// The overlay-like snapshotter FUSE views need (its layers are file objects).
pub(crate) fn overlay(root: &Root) -> Result<(String, std::sync::Arc<dyn Snapshotter>)> {
    let (name, snap) = root.default_snapshotter()?;
    if !snap.layers_as_objects() || !snap.supports_lower_label() {
        return Err(Error::Unsupported(format!(
            "FUSE views need the overlay snapshotter's file objects (this store uses {name})"
        )));
    }
    Ok((name, snap))
}

/// Gives every layer of `image` a tree index (each layer leased first): a layer already
/// unpacked publishes its directory's files (without touching the directory: it may be
/// a mounted overlay's lower); any other layer is streamed from its blob straight into
/// objects and an index, several layers at once. An image the index cannot mirror (an
/// entry below a symlink of its own layer) falls back to a full unpack.
pub(crate) fn index_image(
    root: &Root,
    snap: &dyn Snapshotter,
    image: &Resolved,
    lease: &Lease,
) -> Result<Vec<String>> {
    check_layers(image)?;
    let chain = image.chain_ids();
    let objects = root.objects()?;
    let mut todo = Vec::new();
    root.lease_layers(lease, &chain, || Ok(()))?;
    for (i, key) in chain.iter().enumerate() {
        if objects.index().layer(key)?.is_some() {
            continue;
        }
        if snap.stat(key).is_ok_and(|s| s.kind == Kind::Committed) {
            let dir = snap.fs_dir(key)?;
            match snap.data_dir() {
                Some(_) => objects.ingest_stub_layer(key, &dir, &Default::default(), None)?,
                None => objects.ingest_layer(key, &dir, false, &Default::default())?,
            };
        } else {
            todo.push(i);
        }
    }
    let next = AtomicUsize::new(0);
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .min(todo.len());
    let results: Vec<Result<()>> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| -> Result<()> {
                    while let Some(&i) = todo.get(next.fetch_add(1, Ordering::Relaxed)) {
                        stream_layer(root, image, i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join().unwrap_or_else(|_| {
                    Err(Error::Unsupported("an indexing thread panicked".into()))
                })
            })
            .collect()
    });
    for r in results {
        match r {
            Err(e) if needs_unpack(&e) => {
                let (name, snap) = root.default_snapshotter()?;
                Unpack {
                    root,
                    snap_name: &name,
                    snap: snap.as_ref(),
                    lease,
                }
                .all(image)?;
                break;
            }
            other => other?,
        }
    }
    Ok(chain)
}

fn needs_unpack(e: &Error) -> bool {
    match e {
        Error::Objects(ObjectError::NeedsUnpack { .. }) => true,
        Error::Layer { source, .. } => needs_unpack(source),
        _ => false,
    }
}

/// Index-only ingest of layer `i` from its blob.
fn stream_layer(root: &Root, image: &Resolved, i: usize) -> Result<()> {
    let layer = &image.manifest.layers()[i];
    let blob = root.store().open_blob(layer.digest())?;
    let opts = ApplyOptions {
        max_size: root.max_layer_size,
        expected_diff_id: Some(image.diff_ids()[i].clone()),
        ..ApplyOptions::default()
    };
    root.objects()?
        .ingest_tar(
            &image.chain_ids()[i],
            std::io::BufReader::with_capacity(1 << 20, blob),
            &opts,
        )
        .map_err(|e| Error::Layer {
            digest: layer.digest().to_string(),
            source: Box::new(e.into()),
        })?;
    Ok(())
}

/// Starts a FUSE server showing `layers` at `dir`; returns once it is mounted (with
/// whether reads pass through). With a lease, the server holds it too.
pub(crate) fn start_server(
    root: &Root,
    dir: &Path,
    layers: &[String],
    lease: Option<&Lease>,
) -> Result<bool> {
    let log_dir = root.layout().fuse();
    std::fs::create_dir_all(&log_dir)
        .map_err(Error::io(format!("creating {}", log_dir.display())))?;
    let log_path = log_dir.join(format!("{}.log", crate::ids::random_hex(8)?));
    let log = std::fs::File::create(&log_path)
        .map_err(Error::io(format!("creating {}", log_path.display())))?;
    let mut cmd = Command::new(root.helper());
    cmd.arg("--root")
        .arg(root.layout().root())
        .arg("--run-root")
        .arg(root.layout().run())
        .arg(SERVE_VERB)
        .arg(dir);
    if let Some(l) = lease {
        cmd.arg("--lease").arg(l.id());
    }
    cmd.args(layers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().map_err(Error::io("starting the FUSE server"))?;
    let stdout = child.stdout.take();
    let mut line = String::new();
    if let Some(out) = stdout {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if let Some(rest) = line.trim().strip_prefix("ready ") {
        let _ = std::fs::remove_file(&log_path);
        return Ok(rest == "passthrough");
    }
    let _ = child.wait();
    let why = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    Err(Error::Helper {
        what: "FUSE server",
        why: why
            .lines()
            .last()
            .unwrap_or("it exited before mounting")
            .trim_start_matches("berth: ")
            .to_string(),
    })
}

/// What a FUSE server prints once mounted: `ready passthrough` or `ready cached`.
pub fn ready_line(passthrough: bool) -> String {
    format!(
        "ready {}",
        if passthrough { "passthrough" } else { "cached" }
    )
}

/// Prepares a FUSE-backed checkout snapshot `key` of `image`: a parentless active
/// snapshot (upper and work dirs) whose lowerdir is a FUSE view of the image, served
/// at `<run root>/fuse/<key>`. Returns its mounts, the FUSE server running.
pub(crate) fn prepare_checkout_snapshot(
    root: &Root,
    snap_name: &str,
    snap: &dyn Snapshotter,
    key: &str,
    image: &Resolved,
    mut labels: BTreeMap<String, String>,
    lease: &Lease,
) -> Result<Vec<Mount>> {
    if !snap.supports_lower_label() || !snap.layers_as_objects() {
        return Err(Error::Unsupported(format!(
            "FUSE checkouts need the overlay snapshotter (this store uses {snap_name})"
        )));
    }
    let chain = index_image(root, snap, image, lease)?;
    let lower = root.layout().fuse_lower(key);
    labels.insert(LAYERS_LABEL.into(), chain.join(","));
    labels.insert(LOWER_LABEL.into(), lower.display().to_string());
    root.lease_snapshot(lease, snap_name, key, || {
        Ok(snap.prepare(key, None).map(drop)?)
    })?;
    let mounts = snap
        .update_labels(key, labels)
        .map_err(Error::from)
        .and_then(|_| checkout_mounts(root, snap, key));
    if mounts.is_err() {
        let _ = release(snap, key);
        let _ = snap.remove(key);
    }
    mounts
}

/// The mounts of checkout snapshot `key`; for a FUSE-backed one, starts its FUSE server
/// first unless it is running (after `berth umount` or a reboot).
pub(crate) fn checkout_mounts(
    root: &Root,
    snap: &dyn Snapshotter,
    key: &str,
) -> Result<Vec<Mount>> {
    let info = snap.stat(key)?;
    if let (Some(layers), Some(lower)) =
        (info.labels.get(LAYERS_LABEL), info.labels.get(LOWER_LABEL))
    {
        let lower = Path::new(lower);
        if !is_fuse_mount(lower) {
            std::fs::create_dir_all(lower)
                .map_err(Error::io(format!("creating {}", lower.display())))?;
            let layers: Vec<String> = layers
                .split(',')
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            start_server(root, lower, &layers, None)?;
        }
    }
    Ok(snap.mounts(key)?)
}

/// Whether checkout snapshot `key` is FUSE-backed.
pub(crate) fn is_fuse_backed(snap: &dyn Snapshotter, key: &str) -> Result<bool> {
    Ok(snap.stat(key)?.labels.contains_key(LAYERS_LABEL))
}

/// The layers a FUSE-backed snapshot shows (gc keeps their indexes).
pub(crate) fn fuse_layers(labels: &BTreeMap<String, String>) -> Vec<String> {
    labels
        .get(LAYERS_LABEL)
        .map(|l| {
            l.split(',')
                .filter(|x| !x.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default()
}

/// Stops the FUSE server under a FUSE-backed checkout snapshot (unmounting its view ends
/// it). Callers unmount the checkout's overlay first. A no-op for other snapshots.
pub(crate) fn release(snap: &dyn Snapshotter, key: &str) -> Result<()> {
    let info = match snap.stat(key) {
        Ok(i) => i,
        Err(SnapshotError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (Some(_), Some(lower)) = (info.labels.get(LAYERS_LABEL), info.labels.get(LOWER_LABEL))
    else {
        return Ok(());
    };
    let lower = Path::new(lower);
    if is_fuse_mount(lower) {
        berth_mount::unmount(lower)?;
    }
    let _ = std::fs::remove_dir(lower);
    Ok(())
}
