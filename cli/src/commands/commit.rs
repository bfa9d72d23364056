//! `berth commit`: a checkout's changes become a layer, a config and a manifest named
//! REF; then the checkout moves onto the new image, as `git commit` moves HEAD.
//!
//! Order matters for crash safety: content is published and named first, the new
//! image is unpacked, and only then is the checkout switched (record, unmount, mount).
//! A kill before the switch leaves the checkout mounted with its changes, and the commit
//! can simply be run again.

use std::io::Write;
use std::path::Path;

use anyhow::{bail, Context as _, Result};
use berth_cas::image::{self, media_type_of};
use berth_cas::meta::{self, CheckoutRecord};
use berth_cas::store::Publish;
use berth_cas::{media, Store};
use berth_fs::snapshot::Snapshotter;
use serde_json::{json, Value};

use super::checkout::{checkout_labels, find_checkout};
use crate::cli::{CommitArgs, LayerCompression};
use crate::context::{reference, Context};
use crate::{changes, faults, ids, output, unpack};

pub fn commit(ctx: &Context, a: CommitArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let c = find_checkout(ctx, &store, &a.dir)?;
    if c.readonly {
        bail!("{} is a read-only checkout; nothing to commit", c.dir);
    }
    let name = reference(&a.reference)?.to_string();
    let snap = ctx.snapshotter_named(&c.snapshotter)?;
    let (mut config, mut layers) = base(&store, &c)?;

    let compression = match a.compression {
        LayerCompression::Gzip => berth_fs::Compression::Gzip,
        LayerCompression::Zstd => berth_fs::Compression::Zstd,
        LayerCompression::None => berth_fs::Compression::None,
    };
    let mut ingest = store.ingest_temp()?;
    let stats = berth_fs::diff::write_diff(snap.as_ref(), &c.snapshot, &mut ingest, compression)
        .with_context(|| format!("computing the changes in {}", c.dir))?;
    let layer = ingest.finish(None)?;
    if layer.digest.to_string() != stats.digest {
        bail!(
            "layer digest changed while writing ({} vs {})",
            layer.digest,
            stats.digest
        );
    }
    layers.push(json!({"mediaType": stats.media_type, "digest": stats.digest, "size": stats.size}));
    record_config(&mut config, &a, &stats.diff_id)?;

    let config_bytes = serde_json::to_vec(&config)?;
    let (config_file, config_digest, config_size) = document(&store, &config_bytes)?;
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": config_digest, "size": config_size},
        "layers": layers,
    });
    let manifest_bytes = serde_json::to_vec(&manifest)?;
    let (manifest_file, manifest_digest, manifest_size) = document(&store, &manifest_bytes)?;
    store.publish(vec![
        Publish {
            blob: layer,
            media_type: stats.media_type.to_string(),
        },
        Publish {
            blob: config_file,
            media_type: media::OCI_CONFIG.into(),
        },
        Publish {
            blob: manifest_file,
            media_type: media::OCI_MANIFEST.into(),
        },
    ])?;
    faults::point("commit-published");
    store.meta().write(|tx| {
        meta::put_image(
            tx,
            &name,
            &manifest_digest,
            media::OCI_MANIFEST,
            manifest_size,
        )
    })?;
    store.sync_index_json()?;
    faults::point("commit-named");

    let desc = image::descriptor(media::OCI_MANIFEST, &manifest_digest, manifest_size)?;
    let resolved = image::resolve(&store, &desc, &berth_cas::Platform::host(), &name)?;
    // A FUSE-backed checkout moves onto a FUSE view of the new image (its layers are
    // indexed, not unpacked); any other onto the new image's unpacked top layer.
    let next = if super::fuse::is_fuse_backed(snap.as_ref(), &c.snapshot)? {
        Base::Fuse(ctx, &resolved)
    } else {
        Base::Layer(unpack::unpack(
            &store,
            snap.as_ref(),
            &resolved,
            ctx.limits,
        )?)
    };
    switch(&store, snap.as_ref(), &c, &name, &manifest_digest, next)?;
    writeln!(
        out,
        "{name} {manifest_digest} ({} changes, layer {})",
        stats.changed + stats.whiteouts,
        output::size(stats.size)
    )?;
    Ok(())
}

/// The base image's config (as JSON, unknown fields kept) and its layer descriptors
/// in OCI media types; an empty config for scratch.
fn base(store: &Store, c: &CheckoutRecord) -> Result<(Value, Vec<Value>)> {
    if c.manifest.is_empty() {
        let plat = berth_cas::Platform::host();
        let config = json!({
            "architecture": plat.architecture, "os": plat.os,
            "config": {}, "rootfs": {"type": "layers", "diff_ids": []}, "history": [],
        });
        return Ok((config, Vec::new()));
    }
    let digest = berth_cas::digest::parse_sha256(&c.manifest)?;
    let bytes = store.read_document(&digest)?;
    let manifest = image::parse_manifest(&bytes, &format!("manifest {digest}"))?;
    let config_raw = image::read_verified(store, manifest.config())?;
    let config: Value = serde_json::from_slice(&config_raw)?;
    let layers = manifest
        .layers()
        .iter()
        .map(|l| json!({"mediaType": oci_layer_type(&media_type_of(l)), "digest": l.digest().to_string(), "size": l.size()}))
        .collect();
    Ok((config, layers))
}

/// Docker layer media types in their OCI spelling (an OCI manifest must not mix them).
fn oci_layer_type(m: &str) -> String {
    match m {
        media::DOCKER_LAYER_GZIP => media::OCI_LAYER_GZIP.into(),
        media::DOCKER_LAYER => media::OCI_LAYER.into(),
        media::DOCKER_FOREIGN_LAYER => {
            "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip".into()
        }
        other => other.into(),
    }
}

/// Adds the layer's diff_id, a history entry and the `--change`s to the config.
fn record_config(config: &mut Value, a: &CommitArgs, diff_id: &str) -> Result<()> {
    let now = output::rfc3339(meta::now());
    if !config["rootfs"]["diff_ids"].is_array() {
        config["rootfs"] = json!({"type": "layers", "diff_ids": []});
    }
    config["rootfs"]["diff_ids"]
        .as_array_mut()
        .context("rootfs.diff_ids")?
        .push(json!(diff_id));
    let mut entry = json!({"created": now, "created_by": "berth commit"});
    if let Some(m) = &a.message {
        entry["comment"] = json!(m);
    }
    if let Some(author) = &a.author {
        entry["author"] = json!(author);
        config["author"] = json!(author);
    }
    if !config["history"].is_array() {
        config["history"] = json!([]);
    }
    config["history"]
        .as_array_mut()
        .context("history")?
        .push(entry);
    config["created"] = json!(now);
    for ch in &a.changes {
        changes::apply(config, ch)?;
    }
    Ok(())
}

/// Hashes a small document into ingest.
fn document(store: &Store, bytes: &[u8]) -> Result<(berth_cas::ingest::Verified, String, u64)> {
    let mut ingest = store.ingest_temp()?;
    ingest.write_all(bytes)?;
    let v = ingest.finish(None)?;
    let (d, n) = (v.digest.to_string(), v.size);
    Ok((v, d, n))
}

/// What the checkout's next snapshot stacks on.
enum Base<'a> {
    /// The new image's top layer (None: no layers).
    Layer(Option<String>),
    /// A FUSE view of the new image.
    Fuse(&'a Context, &'a image::Resolved),
}

/// Moves the checkout onto the new image: a fresh snapshot on it.
fn switch(
    store: &Store,
    snap: &dyn Snapshotter,
    c: &CheckoutRecord,
    name: &str,
    manifest: &str,
    base: Base<'_>,
) -> Result<()> {
    let key = format!("checkout-{}", ids::random_hex(8)?);
    let labels = checkout_labels(&c.dir, name, manifest);
    let mounts = match base {
        Base::Layer(top) => {
            let mounts = snap.prepare(&key, top.as_deref())?;
            snap.update_labels(&key, labels)?;
            mounts
        }
        Base::Fuse(ctx, image) => {
            super::fuse::prepare_snapshot(ctx, store, snap, &key, image, labels)?
        }
    };
    // Killed from here on, `find_checkout` finishes the job from what is mounted.
    let dir = Path::new(&c.dir);
    faults::point("commit-before-switch");
    berth_mount::unmount_recursive(dir)?;
    berth_mount::mount_all(&mounts, dir)
        .with_context(|| format!("mounting {} (run `berth mount {}`)", c.dir, c.dir))?;
    faults::point("commit-switched");
    let next = CheckoutRecord {
        image: name.into(),
        manifest: manifest.into(),
        snapshot: key.clone(),
        ..c.clone()
    };
    store.meta().write(|tx| meta::put_checkout(tx, &next))?;
    super::fuse::release(snap, &c.snapshot)?;
    snap.remove(&c.snapshot)
        .with_context(|| format!("removing the old snapshot {}", c.snapshot))?;
    Ok(())
}
