//! `berth mount --fuse REF DIR`: an image's merged tree, read-only, served by a FUSE
//! server straight from the layers' tree indexes and the file objects.
//!
//! `berth mount --fuse` starts the server as a fresh process (`berth __fuse-serve`, so it
//! forks before any thread exists and holds no store lock that would block gc), and
//! reports "mounted" only once the server has answered the kernel's INIT. The server
//! mounts with fusermount3's auto_unmount: if it dies, the mount goes with it.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use std::sync::atomic::{AtomicUsize, Ordering};

use anyhow::{anyhow, bail, Context as _, Result};
use berth_cas::image::{self, Resolved};
use berth_cas::Store;
use berth_fs::fuse::{View, ViewFs};
use berth_fs::objects::{ObjectError, ObjectStore};
use berth_fs::snapshot::{Kind, Snapshotter, SnapshotterKind, LOWER_LABEL};
use berth_fs::ApplyOptions;
use berth_mount::Mount;

use super::images::{find_image, target};
use crate::cli::FuseServeArgs;
use crate::context::{platform, Context};
use crate::{objects, unpack};

/// The filesystem type berth's FUSE mounts show in /proc/self/mountinfo.
pub const FSTYPE: &str = "fuse.berth";

/// Whether `dir` is a berth FUSE mount.
pub fn is_fuse_mount(dir: &Path) -> bool {
    berth_mount::mount_info(dir).is_some_and(|m| m.fstype == FSTYPE)
}

/// Makes sure every layer of `reference` has a tree index; returns the image's name and
/// its layers' keys (chainIDs, base first).
pub fn indexed_layers(ctx: &Context, reference: &str) -> Result<(String, Vec<String>)> {
    let store = ctx.store()?;
    let snap = overlay(ctx)?;
    let img = find_image(&store, reference)?;
    let resolved = image::resolve(&store, &target(&img)?, &platform(None)?, &img.name)?;
    let chain = index_image(ctx, &store, snap.as_ref(), &resolved)?;
    Ok((img.name, chain))
}

/// The overlay snapshotter (FUSE views need its file objects).
fn overlay(ctx: &Context) -> Result<Box<dyn Snapshotter>> {
    let snap = ctx.snapshotter()?;
    if snap.kind() != SnapshotterKind::Overlay {
        bail!("FUSE mounts need the overlay snapshotter's file objects (this store uses native)");
    }
    Ok(snap)
}

/// Gives every layer of `image` a tree index: a layer already unpacked publishes its
/// directory's files (without touching the directory: it may be a mounted overlay's
/// lower); any other layer is streamed from its blob straight into objects and an
/// index (no layer directory), several layers at once. A layer the index cannot mirror
/// (an entry below a symlink of its own) falls back to a full unpack.
pub fn index_image(
    ctx: &Context,
    store: &Store,
    snap: &dyn Snapshotter,
    image: &Resolved,
) -> Result<Vec<String>> {
    let objects = objects::open(&ctx.root)?;
    let chain = image.chain_ids();
    if image.manifest.layers().len() != image.diff_ids().len() {
        bail!(
            "image has {} layers but its config lists {} diff_ids",
            image.manifest.layers().len(),
            image.diff_ids().len()
        );
    }
    let mut todo = Vec::new();
    for (i, key) in chain.iter().enumerate() {
        if objects.index().layer(key)?.is_some() {
            continue;
        }
        if snap.stat(key).is_ok_and(|s| s.kind == Kind::Committed) {
            let dir = snap.fs_dir(key)?;
            objects
                .ingest_layer(key, &dir, false, &Default::default())
                .with_context(|| format!("indexing layer {key}"))?;
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
                        stream_layer(ctx, store, &objects, image, i)?;
                    }
                    Ok(())
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| {
                w.join()
                    .unwrap_or_else(|_| Err(anyhow!("indexing thread panicked")))
            })
            .collect()
    });
    for r in results {
        match r {
            Err(e) if needs_unpack(&e) => {
                unpack::unpack(store, snap, image, ctx.limits)?;
                break;
            }
            other => other?,
        }
    }
    Ok(chain)
}

fn needs_unpack(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        matches!(
            c.downcast_ref::<ObjectError>(),
            Some(ObjectError::NeedsUnpack { .. })
        )
    })
}

/// Index-only ingest of layer `i` from its blob.
fn stream_layer(
    ctx: &Context,
    store: &Store,
    objects: &ObjectStore,
    image: &Resolved,
    i: usize,
) -> Result<()> {
    let layer = &image.manifest.layers()[i];
    let blob = store.open_blob(layer.digest())?;
    let opts = ApplyOptions {
        max_size: ctx.limits.max_layer_size,
        expected_diff_id: Some(image.diff_ids()[i].clone()),
        ..ApplyOptions::default()
    };
    objects
        .ingest_tar(
            &image.chain_ids()[i],
            std::io::BufReader::with_capacity(1 << 20, blob),
            &opts,
        )
        .with_context(|| format!("indexing layer {}", layer.digest()))?;
    Ok(())
}

/// Starts a FUSE server showing `layers` at `dir`; returns once it is mounted.
pub fn start_server(ctx: &Context, dir: &Path, layers: &[String]) -> Result<bool> {
    let log_dir = ctx.run_root.join("fuse");
    std::fs::create_dir_all(&log_dir).with_context(|| format!("creating {}", log_dir.display()))?;
    let log_path = log_dir.join(format!("{}.log", crate::ids::random_hex(8)?));
    let log = std::fs::File::create(&log_path)
        .with_context(|| format!("creating {}", log_path.display()))?;
    let exe = std::env::current_exe().context("finding the berth binary")?;
    let mut cmd = Command::new(exe);
    cmd.arg("--root")
        .arg(&ctx.root)
        .arg("--run-root")
        .arg(&ctx.run_root)
        .arg("__fuse-serve")
        .arg(dir)
        .args(layers)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .process_group(0);
    let mut child = cmd.spawn().context("starting the FUSE server")?;
    let stdout = child.stdout.take().context("FUSE server stdout")?;
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line)?;
    if let Some(rest) = line.trim().strip_prefix("ready ") {
        let _ = std::fs::remove_file(&log_path);
        return Ok(rest == "passthrough");
    }
    let _ = child.wait();
    let why = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    let why = why
        .lines()
        .last()
        .unwrap_or("it exited before mounting")
        .to_string();
    Err(anyhow!("FUSE server failed: {why}"))
}

/// `berth mount --fuse REF DIR`.
pub fn mount(ctx: &Context, reference: &str, dir: &Path, out: &mut dyn Write) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let dir = super::checkout::canonical_dir(dir)?;
    if berth_mount::mount_info(&dir).is_some() {
        bail!("{} is already a mount point", dir.display());
    }
    if std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; a mount would hide its contents",
            dir.display()
        );
    }
    let (name, layers) = indexed_layers(ctx, reference)?;
    let passthrough = start_server(ctx, &dir, &layers)?;
    let how = if passthrough {
        "passthrough reads"
    } else {
        "cached reads"
    };
    writeln!(out, "mounted {name} at {} (FUSE, {how})", dir.display())?;
    Ok(())
}

/// `berth umount DIR` of a FUSE mount.
pub fn umount(dir: &Path, out: &mut dyn Write) -> Result<()> {
    berth_mount::unmount(dir).with_context(|| format!("unmounting {}", dir.display()))?;
    writeln!(out, "unmounted {}", dir.display())?;
    Ok(())
}

/// `berth __fuse-serve DIR LAYER...`: the server process. Prints `ready <mode>` on
/// stdout once the kernel's INIT is answered, then serves until unmounted.
pub fn serve(ctx: &Context, a: FuseServeArgs) -> Result<()> {
    let objects = objects::open(&ctx.root)?;
    let mut layers = Vec::with_capacity(a.layers.len());
    for key in &a.layers {
        let entries = objects
            .index()
            .layer(key)?
            .with_context(|| format!("layer {key} has no tree index"))?;
        layers.push(entries);
    }
    let view = View::build(layers);
    let objects_dir: PathBuf = objects.dir().to_path_buf();
    drop(objects);
    let fs = ViewFs::new(
        view,
        objects_dir,
        Box::new(|passthrough| {
            let mode = if passthrough { "passthrough" } else { "cached" };
            let mut stdout = std::io::stdout();
            let _ = writeln!(stdout, "ready {mode}");
            let _ = stdout.flush();
        }),
    );
    berth_fs::fuse::serve(fs, &a.dir, true).with_context(|| format!("serving {}", a.dir.display()))
}

/// Label on a FUSE-backed checkout's snapshot: the image's layer keys, base first, which
/// the FUSE server behind its lower directory ([`LOWER_LABEL`]) shows.
pub const LAYERS_LABEL: &str = "berth.fuse.layers";

/// Prepares a FUSE-backed checkout snapshot `key` of `image`: a parentless active
/// overlay snapshot (upper and work dirs) whose lowerdir is a FUSE view of the image,
/// served at `<run root>/fuse/<key>`. Returns its mounts, the FUSE server running.
pub fn prepare_snapshot(
    ctx: &Context,
    store: &Store,
    snap: &dyn Snapshotter,
    key: &str,
    image: &Resolved,
    mut labels: std::collections::BTreeMap<String, String>,
) -> Result<Vec<Mount>> {
    if snap.kind() != SnapshotterKind::Overlay {
        bail!("FUSE checkouts need the overlay snapshotter (this store uses native)");
    }
    let chain = index_image(ctx, store, snap, image)?;
    let lower = ctx.run_root.join("fuse").join(key);
    labels.insert(LAYERS_LABEL.into(), chain.join(","));
    labels.insert(LOWER_LABEL.into(), lower.display().to_string());
    snap.prepare(key, None)?;
    let mounts = snap
        .update_labels(key, labels)
        .map_err(anyhow::Error::from)
        .and_then(|_| checkout_mounts(ctx, snap, key));
    if mounts.is_err() {
        let _ = release(snap, key);
        let _ = snap.remove(key);
    }
    mounts
}

/// The mounts of checkout snapshot `key`; for a FUSE-backed one, starts its FUSE server
/// first unless it is running (after `berth umount` or a reboot).
pub fn checkout_mounts(ctx: &Context, snap: &dyn Snapshotter, key: &str) -> Result<Vec<Mount>> {
    let info = snap.stat(key)?;
    if let (Some(layers), Some(lower)) =
        (info.labels.get(LAYERS_LABEL), info.labels.get(LOWER_LABEL))
    {
        let lower = Path::new(lower);
        if !is_fuse_mount(lower) {
            std::fs::create_dir_all(lower)
                .with_context(|| format!("creating {}", lower.display()))?;
            let layers: Vec<String> = layers
                .split(',')
                .filter(|l| !l.is_empty())
                .map(String::from)
                .collect();
            start_server(ctx, lower, &layers)?;
        }
    }
    Ok(snap.mounts(key)?)
}

/// Whether checkout snapshot `key` is FUSE-backed.
pub fn is_fuse_backed(snap: &dyn Snapshotter, key: &str) -> Result<bool> {
    Ok(snap.stat(key)?.labels.contains_key(LAYERS_LABEL))
}

/// Stops the FUSE server under a FUSE-backed checkout snapshot (unmounting its view ends
/// it). Callers unmount the checkout's overlay first. A no-op for other snapshots.
pub fn release(snap: &dyn Snapshotter, key: &str) -> Result<()> {
    let info = match snap.stat(key) {
        Ok(i) => i,
        Err(berth_fs::snapshot::SnapshotError::NotFound(_)) => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    let (Some(_), Some(lower)) = (info.labels.get(LAYERS_LABEL), info.labels.get(LOWER_LABEL))
    else {
        return Ok(());
    };
    let lower = Path::new(lower);
    if is_fuse_mount(lower) {
        berth_mount::unmount(lower)
            .with_context(|| format!("unmounting the FUSE view {}", lower.display()))?;
    }
    let _ = std::fs::remove_dir(lower);
    Ok(())
}
