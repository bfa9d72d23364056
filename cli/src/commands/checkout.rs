//! Git-like verbs on root filesystems: checkout, checkouts, status, diff, commit, log,
//! discard, mount, umount.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_cas::image;
use berth_cas::meta::{self, CheckoutRecord};
use berth_cas::Store;
use berth_fs::snapshot::Snapshotter;
use serde::Serialize;

use super::images::{find_image, target};
use crate::cli::{CheckoutArgs, DirArg, LogArgs, MountArgs};
use crate::context::{platform, Context};
use crate::{ids, output, unpack};

/// The name `berth checkout` takes for an empty root filesystem.
pub const SCRATCH: &str = "scratch";

/// An absolute, symlink-free form of a checkout directory (it must exist).
pub fn canonical_dir(dir: &Path) -> Result<PathBuf> {
    dir.canonicalize()
        .with_context(|| format!("{}: no such directory", dir.display()))
}

/// The checkout recorded at `dir` (which must exist), reconciled with what is mounted.
pub fn find_checkout(ctx: &Context, store: &Store, dir: &Path) -> Result<CheckoutRecord> {
    let canon = canonical_dir(dir)?;
    let key = canon.to_string_lossy();
    let rec = store
        .meta()
        .checkout(&key)?
        .with_context(|| format!("{} is not a berth checkout", dir.display()))?;
    reconcile(ctx, store, rec)
}

/// Labels on a checkout's snapshot, so an interrupted `commit` can be finished: they say
/// which checkout the snapshot is for and which image it is based on.
pub fn checkout_labels(
    dir: &str,
    image: &str,
    manifest: &str,
) -> std::collections::BTreeMap<String, String> {
    [
        ("berth.checkout", dir),
        ("berth.image", image),
        ("berth.manifest", manifest),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect()
}

/// If a commit was killed after mounting the checkout's new snapshot but before
/// recording it, the mount is the truth: adopt the mounted snapshot.
fn reconcile(ctx: &Context, store: &Store, rec: CheckoutRecord) -> Result<CheckoutRecord> {
    let Some(mounted) = berth_mount::mount_info(Path::new(&rec.dir)) else {
        return Ok(rec);
    };
    let snap = ctx.snapshotter_named(&rec.snapshotter)?;
    if snap
        .fs_dir(&rec.snapshot)
        .is_ok_and(|d| is_mounted_from(&mounted, &d))
    {
        return Ok(rec);
    }
    for info in snap.list()? {
        let for_this = info
            .labels
            .get("berth.checkout")
            .is_some_and(|d| *d == rec.dir);
        if !for_this
            || !snap
                .fs_dir(&info.key)
                .is_ok_and(|d| is_mounted_from(&mounted, &d))
        {
            continue;
        }
        let label = |k: &str| info.labels.get(k).cloned().unwrap_or_default();
        let next = CheckoutRecord {
            snapshot: info.key.clone(),
            image: label("berth.image"),
            manifest: label("berth.manifest"),
            ..rec.clone()
        };
        store.meta().write(|tx| meta::put_checkout(tx, &next))?;
        let _ = super::fuse::release(snap.as_ref(), &rec.snapshot);
        let _ = snap.remove(&rec.snapshot);
        return Ok(next);
    }
    Ok(rec)
}

/// Whether a mount shows the snapshot directory `dir` (as overlay upper or bind source).
fn is_mounted_from(m: &berth_mount::MountInfo, dir: &Path) -> bool {
    let d = dir.to_string_lossy();
    let upper = m
        .super_options
        .split(',')
        .any(|o| o.strip_prefix("upperdir=") == Some(d.as_ref()));
    let root = m.root.trim_start_matches('/');
    upper || (m.fstype != "overlay" && !root.is_empty() && dir.ends_with(root))
}

/// Prepares a snapshot of `image` (or scratch) and returns (manifest digest, parent chainID).
pub fn base_of(
    ctx: &Context,
    store: &Store,
    snap: &dyn Snapshotter,
    image_ref: &str,
    plat: Option<&str>,
) -> Result<(String, String, Option<String>)> {
    if image_ref == SCRATCH {
        return Ok((SCRATCH.to_string(), String::new(), None));
    }
    let img = find_image(store, image_ref)?;
    let resolved = image::resolve(store, &target(&img)?, &platform(plat)?, &img.name)?;
    let top = unpack::unpack(store, snap, &resolved, ctx.limits)?;
    Ok((img.name, resolved.manifest_desc.digest().to_string(), top))
}

pub fn checkout(ctx: &Context, a: CheckoutArgs, out: &mut dyn Write) -> Result<()> {
    if a.readonly && a.image == SCRATCH {
        bail!("a read-only checkout of scratch would be an empty directory; drop --readonly");
    }
    let store = ctx.store()?;
    let snap = ctx.snapshotter()?;
    std::fs::create_dir_all(&a.dir).with_context(|| format!("creating {}", a.dir.display()))?;
    let dir = canonical_dir(&a.dir)?;
    if store.meta().checkout(&dir.to_string_lossy())?.is_some() {
        bail!("{} is already a checkout", a.dir.display());
    }
    if std::fs::read_dir(&dir)?.next().is_some() {
        bail!(
            "{} is not empty; a checkout would hide its contents",
            a.dir.display()
        );
    }
    let key = format!("checkout-{}", ids::random_hex(8)?);
    let (image_name, manifest, mounts) = if a.fuse {
        fuse_base(ctx, &store, snap.as_ref(), &a, &dir, &key)?
    } else {
        let (image_name, manifest, parent) =
            base_of(ctx, &store, snap.as_ref(), &a.image, a.platform.as_deref())?;
        let mounts = if a.readonly {
            snap.view(&key, parent.as_deref())?
        } else {
            snap.prepare(&key, parent.as_deref())?
        };
        snap.update_labels(
            &key,
            checkout_labels(&dir.to_string_lossy(), &image_name, &manifest),
        )?;
        (image_name, manifest, mounts)
    };
    let record = CheckoutRecord {
        dir: dir.to_string_lossy().into_owned(),
        image: image_name,
        manifest,
        snapshotter: unpack::kind_name(snap.kind()).to_string(),
        snapshot: key.clone(),
        readonly: a.readonly,
        created: meta::now(),
    };
    // Record first: a crash after this leaves a checkout `berth mount` or `discard` can handle.
    store.meta().write(|tx| meta::put_checkout(tx, &record))?;
    if let Err(e) = berth_mount::mount_all(&mounts, &dir) {
        let _ = store
            .meta()
            .write(|tx| meta::delete_checkout(tx, &record.dir));
        let _ = super::fuse::release(snap.as_ref(), &key);
        let _ = snap.remove(&key);
        return Err(e).with_context(|| format!("mounting {}", dir.display()));
    }
    writeln!(out, "checked out {} at {}", record.image, dir.display())?;
    Ok(())
}

/// `checkout --fuse`: a snapshot whose lowerdir is a FUSE view of the image.
fn fuse_base(
    ctx: &Context,
    store: &Store,
    snap: &dyn Snapshotter,
    a: &CheckoutArgs,
    dir: &Path,
    key: &str,
) -> Result<(String, String, Vec<berth_mount::Mount>)> {
    if a.image == SCRATCH {
        bail!("--fuse needs an image; scratch has nothing to serve");
    }
    let img = find_image(store, &a.image)?;
    let resolved = image::resolve(
        store,
        &target(&img)?,
        &platform(a.platform.as_deref())?,
        &img.name,
    )?;
    let manifest = resolved.manifest_desc.digest().to_string();
    let labels = checkout_labels(&dir.to_string_lossy(), &img.name, &manifest);
    let mounts = super::fuse::prepare_snapshot(ctx, store, snap, key, &resolved, labels)?;
    Ok((img.name, manifest, mounts))
}

#[derive(Serialize)]
struct CheckoutRow {
    dir: String,
    image: String,
    manifest: String,
    snapshotter: String,
    snapshot: String,
    readonly: bool,
    mounted: bool,
    created: String,
}

pub fn list(ctx: &Context, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let rows: Vec<CheckoutRow> = store
        .meta()
        .checkouts()?
        .into_iter()
        .map(|c| CheckoutRow {
            mounted: berth_mount::is_mount_point(Path::new(&c.dir)),
            created: output::rfc3339(c.created),
            dir: c.dir,
            image: c.image,
            manifest: c.manifest,
            snapshotter: c.snapshotter,
            snapshot: c.snapshot,
            readonly: c.readonly,
        })
        .collect();
    if ctx.json {
        return output::json(out, &rows);
    }
    let mut table = vec![vec![
        "DIR".into(),
        "IMAGE".into(),
        "SNAPSHOT".into(),
        "STATE".into(),
    ]];
    for r in rows {
        let state = match (r.mounted, r.readonly) {
            (false, _) => "unmounted",
            (true, true) => "mounted ro",
            (true, false) => "mounted",
        };
        table.push(vec![
            r.dir,
            r.image,
            format!("{}/{}", r.snapshotter, r.snapshot),
            state.into(),
        ]);
    }
    output::table(out, &table)
}

/// Mounts a recorded checkout if it is not mounted.
pub fn ensure_mounted(ctx: &Context, c: &CheckoutRecord) -> Result<()> {
    let dir = Path::new(&c.dir);
    if berth_mount::is_mount_point(dir) {
        return Ok(());
    }
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mounts = super::fuse::checkout_mounts(ctx, snap.as_ref(), &c.snapshot)?;
    berth_mount::mount_all(&mounts, dir).with_context(|| format!("mounting {}", dir.display()))
}

pub fn mount(ctx: &Context, a: MountArgs, out: &mut dyn Write) -> Result<()> {
    if let Some(reference) = &a.fuse {
        return super::fuse::mount(ctx, reference, &a.dir, out);
    }
    let store = ctx.store()?;
    let c = find_checkout_by_path(ctx, &store, &a.dir)?;
    ensure_mounted(ctx, &c)?;
    writeln!(out, "mounted {}", c.dir)?;
    Ok(())
}

/// Like [`find_checkout`], but also finds a checkout whose directory is gone.
fn find_checkout_by_path(ctx: &Context, store: &Store, dir: &Path) -> Result<CheckoutRecord> {
    if dir.exists() {
        return find_checkout(ctx, store, dir);
    }
    let abs = std::path::absolute(dir)?;
    store
        .meta()
        .checkout(&abs.to_string_lossy())?
        .with_context(|| format!("{} is not a berth checkout", dir.display()))
}

pub fn umount(ctx: &Context, a: DirArg, out: &mut dyn Write) -> Result<()> {
    if super::fuse::is_fuse_mount(&a.dir) {
        return super::fuse::umount(&a.dir, out);
    }
    let store = ctx.store()?;
    let c = find_checkout_by_path(ctx, &store, &a.dir)?;
    berth_mount::unmount_recursive(Path::new(&c.dir))?;
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    super::fuse::release(snap.as_ref(), &c.snapshot)?;
    writeln!(out, "unmounted {}", c.dir)?;
    Ok(())
}

pub fn discard(ctx: &Context, a: DirArg, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let c = find_checkout_by_path(ctx, &store, &a.dir)?;
    let dir = Path::new(&c.dir);
    berth_mount::unmount_recursive(dir)?;
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    super::fuse::release(snap.as_ref(), &c.snapshot)?;
    match snap.remove(&c.snapshot) {
        Ok(()) | Err(berth_fs::snapshot::SnapshotError::NotFound(_)) => {}
        Err(e) => return Err(e.into()),
    }
    store.meta().write(|tx| meta::delete_checkout(tx, &c.dir))?;
    let _ = std::fs::remove_dir(dir); // only if empty: never delete what the user put there
    writeln!(out, "discarded {}", c.dir)?;
    Ok(())
}

#[derive(Serialize)]
struct HistoryRow {
    created: String,
    created_by: String,
    author: String,
    comment: String,
    empty_layer: bool,
}

pub fn log(ctx: &Context, a: LogArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let img = find_image(&store, &a.reference)?;
    let r = image::resolve(&store, &target(&img)?, &platform(None)?, &img.name)?;
    let config: serde_json::Value = serde_json::from_slice(&r.config_raw)?;
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string()
    };
    let mut rows: Vec<HistoryRow> = config
        .get("history")
        .and_then(|h| h.as_array())
        .map(|h| {
            h.iter()
                .map(|e| HistoryRow {
                    created: text(e, "created"),
                    created_by: text(e, "created_by"),
                    author: text(e, "author"),
                    comment: text(e, "comment"),
                    empty_layer: e
                        .get("empty_layer")
                        .and_then(|b| b.as_bool())
                        .unwrap_or(false),
                })
                .collect()
        })
        .unwrap_or_default();
    rows.reverse();
    if ctx.json {
        return output::json(out, &rows);
    }
    for r in rows {
        let what = if r.comment.is_empty() {
            &r.created_by
        } else {
            &r.comment
        };
        let who = if r.author.is_empty() {
            String::new()
        } else {
            format!(" ({})", r.author)
        };
        writeln!(out, "{}  {}{}", r.created, what, who)?;
    }
    Ok(())
}

pub fn status(ctx: &Context, a: DirArg, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let c = find_checkout_by_path(ctx, &store, &a.dir)?;
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    let changes = berth_fs::diff::changes(snap.as_ref(), &c.snapshot)?;
    if ctx.json {
        let rows: Vec<serde_json::Value> = changes
            .iter()
            .map(|ch| serde_json::json!({"kind": ch.kind.letter().to_string(), "path": ch.path.to_string_lossy()}))
            .collect();
        return output::json(out, &rows);
    }
    for ch in changes {
        writeln!(out, "{} {}", ch.kind.letter(), ch.path.display())?;
    }
    Ok(())
}

pub fn diff(ctx: &Context, a: crate::cli::DiffArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let c = find_checkout_by_path(ctx, &store, &a.dir)?;
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    if !a.stat {
        return status(ctx, DirArg { dir: a.dir }, out);
    }
    let changes = berth_fs::diff::changes(snap.as_ref(), &c.snapshot)?;
    let count = |k: berth_fs::diff::ChangeKind| changes.iter().filter(|ch| ch.kind == k).count();
    let stats = berth_fs::diff::write_diff(
        snap.as_ref(),
        &c.snapshot,
        std::io::sink(),
        berth_fs::Compression::None,
    )?;
    let (added, modified, deleted) = (
        count(berth_fs::diff::ChangeKind::Added),
        count(berth_fs::diff::ChangeKind::Modified),
        count(berth_fs::diff::ChangeKind::Deleted),
    );
    if ctx.json {
        return output::json(
            out,
            &serde_json::json!({"added": added, "modified": modified, "deleted": deleted,
                "content_bytes": stats.content_bytes, "layer_bytes": stats.uncompressed_size}),
        );
    }
    writeln!(
        out,
        "{added} added, {modified} modified, {deleted} deleted; {} of file content, {} as an uncompressed layer",
        output::size(stats.content_bytes),
        output::size(stats.uncompressed_size)
    )?;
    Ok(())
}
