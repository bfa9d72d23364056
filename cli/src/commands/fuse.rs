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

use anyhow::{anyhow, bail, Context as _, Result};
use berth_cas::image;
use berth_fs::fuse::{View, ViewFs};
use berth_fs::snapshot::SnapshotterKind;

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

/// Unpacks `reference` if needed and returns its layers' keys (chainIDs, base first),
/// each with a tree index.
pub fn indexed_layers(ctx: &Context, reference: &str) -> Result<(String, Vec<String>)> {
    let store = ctx.store()?;
    let snap = ctx.snapshotter()?;
    if snap.kind() != SnapshotterKind::Overlay {
        bail!("FUSE mounts need the overlay snapshotter's file objects (this store uses native)");
    }
    let img = find_image(&store, reference)?;
    let resolved = image::resolve(&store, &target(&img)?, &platform(None)?, &img.name)?;
    unpack::unpack(&store, snap.as_ref(), &resolved, ctx.limits)?;
    let objects = objects::open(&ctx.root)?;
    let chain = resolved.chain_ids();
    for key in &chain {
        if objects.index().layer(key)?.is_none() {
            // Unpacked before berth kept objects: publish its files without touching
            // the layer directory (it may be a mounted overlay's lower).
            let dir = snap.fs_dir(key)?;
            objects
                .ingest_layer(key, &dir, false)
                .with_context(|| format!("indexing layer {key}"))?;
        }
    }
    Ok((img.name, chain))
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
