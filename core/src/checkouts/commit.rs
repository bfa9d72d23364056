//! `commit`: a checkout's changes become a layer, a config and a manifest named REF;
//! then the checkout moves onto the new image, as `git commit` moves HEAD.
//!
//! Order matters for crash safety: content is published (under the commit's lease)
//! and named first, the new layer is unpacked, and only then is the checkout switched
//! (prepare, unmount, mount, record). A kill before the switch leaves the checkout
//! mounted with its changes, and the commit can simply be run again; a kill after the
//! mount is finished by the next operation on the checkout (`reconcile`).

use std::io::Write;
use std::path::{Path, PathBuf};

use berth_cas::image::{self, media_type_of, Resolved};
use berth_cas::lease::Lease;
use berth_cas::meta::{self, CheckoutRecord};
use berth_cas::store::Publish;
use berth_cas::{media, Platform, Reference};
use berth_fs::snapshot::Snapshotter;
use oci_spec::image::{
    Descriptor, DescriptorBuilder, ImageConfiguration, ImageManifestBuilder, MediaType,
};
use serde::Serialize;

use super::{labels, Checkouts};
use crate::error::{Error, Result};
use crate::images::config::{self, CommitMessage};
use crate::unpack::Unpack;
use crate::views;

/// Layer compression.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayerCompression {
    /// gzip (the most widely readable).
    Gzip,
    /// zstd.
    Zstd,
    /// None.
    None,
}

/// What to commit.
#[derive(Debug, Clone)]
pub struct CommitRequest {
    /// The checkout's directory.
    pub dir: PathBuf,
    /// The new image's name.
    pub reference: String,
    /// History message, author, `--change` instructions.
    pub message: CommitMessage,
    /// The new layer's compression.
    pub compression: LayerCompression,
    /// Stop running containers that use the checkout instead of refusing.
    pub force: bool,
}

/// What a commit made.
#[derive(Debug, Clone, Serialize)]
pub struct Committed {
    /// The new image's name.
    pub name: String,
    /// Its manifest's digest.
    pub manifest: String,
    /// Paths changed (whiteouts included).
    pub changes: u64,
    /// The new layer's (compressed) size.
    pub layer_size: u64,
}

impl Checkouts<'_> {
    /// Commits a checkout's changes as a new image and moves the checkout onto it.
    pub fn commit(&self, req: &CommitRequest) -> Result<Committed> {
        let (c, _lock) = self.open(&req.dir)?;
        if c.readonly {
            return Err(Error::ReadOnlyCheckout(c.dir));
        }
        self.ns.containers().stop_users_of(&c.dir, req.force)?;
        let root = self.root();
        let store = root.store();
        let name = Reference::parse(&req.reference)?.to_string();
        let snap = root.snapshotter(&c.snapshotter)?;
        let lease = root.lease("commit", &c.dir)?;
        let (base_config, mut layers) = self.base(&c, &lease)?;

        let compression = match req.compression {
            LayerCompression::Gzip => berth_fs::Compression::Gzip,
            LayerCompression::Zstd => berth_fs::Compression::Zstd,
            LayerCompression::None => berth_fs::Compression::None,
        };
        let mut ingest = store.ingest_temp()?;
        let stats =
            berth_fs::diff::write_diff(snap.as_ref(), &c.snapshot, &mut ingest, compression)?;
        let layer = ingest.finish(None)?;
        if layer.digest.to_string() != stats.digest {
            return Err(Error::Unsupported(format!(
                "the layer changed while it was written ({} vs {})",
                layer.digest, stats.digest
            )));
        }
        layers.push(descriptor(
            stats.media_type,
            layer.digest.as_ref(),
            layer.size,
        )?);
        let now = humantime::format_rfc3339_seconds(std::time::SystemTime::now()).to_string();
        let config = config::committed(base_config, &stats.diff_id, &req.message, &now)?;
        let config_bytes =
            serde_json::to_vec(&config).map_err(berth_cas::Error::json("the new image config"))?;
        let (config_file, config_desc) = document(store, &config_bytes, media::OCI_CONFIG)?;
        let manifest = ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(MediaType::ImageManifest)
            .config(config_desc)
            .layers(layers)
            .build()
            .map_err(|e| Error::Unsupported(format!("building the manifest: {e}")))?;
        let manifest_bytes =
            serde_json::to_vec(&manifest).map_err(berth_cas::Error::json("the new manifest"))?;
        let (manifest_file, manifest_desc) = document(store, &manifest_bytes, media::OCI_MANIFEST)?;
        store.publish(
            vec![
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
            ],
            Some(lease.id()),
        )?;
        crate::faults::point("commit-published");
        let manifest_digest = manifest_desc.digest().to_string();
        store.meta().write(|tx| {
            meta::put_image(
                tx,
                self.ns.name(),
                &name,
                &manifest_digest,
                media::OCI_MANIFEST,
                manifest_desc.size(),
            )
        })?;
        store.sync_index_json()?;
        crate::faults::point("commit-named");

        let resolved = image::resolve(store, &manifest_desc, &Platform::host(), &name)?;
        self.switch(&c, snap.as_ref(), &name, &resolved, &lease)?;
        root.release(lease);
        self.ns.event(
            "/checkouts/commit",
            &c.dir,
            &[
                ("image", name.clone()),
                ("manifest", manifest_digest.clone()),
            ],
        );
        Ok(Committed {
            name,
            manifest: manifest_digest,
            changes: stats.changed + stats.whiteouts,
            layer_size: stats.size,
        })
    }

    /// The base image's config and its layer descriptors in OCI media types; an empty
    /// config for scratch. The base manifest goes on the lease.
    fn base(
        &self,
        c: &CheckoutRecord,
        lease: &Lease,
    ) -> Result<(ImageConfiguration, Vec<Descriptor>)> {
        if c.manifest.is_empty() {
            return Ok((config::scratch_config(), Vec::new()));
        }
        let store = self.root().store();
        let digest = berth_cas::digest::parse_sha256(&c.manifest)?;
        store.claim(&digest, Some(lease.id()))?;
        let base = crate::images::manifest_image(store, &c.manifest)?;
        let layers = base
            .manifest
            .layers()
            .iter()
            .map(|l| {
                descriptor(
                    &oci_layer_type(&media_type_of(l)),
                    l.digest().as_ref(),
                    l.size(),
                )
            })
            .collect::<Result<_>>()?;
        Ok((base.config, layers))
    }

    /// Moves the checkout onto the new image: a fresh snapshot on it (a FUSE-backed
    /// checkout onto a FUSE view of it, whose new layer is indexed, not unpacked).
    fn switch(
        &self,
        c: &CheckoutRecord,
        snap: &dyn Snapshotter,
        name: &str,
        image: &Resolved,
        lease: &Lease,
    ) -> Result<()> {
        let root = self.root();
        let key = format!("checkout-{}", crate::ids::random_hex(8)?);
        let manifest = image.manifest_desc.digest().to_string();
        let labels = labels(&c.dir, name, &manifest);
        let mounts = if views::is_fuse_backed(snap, &c.snapshot)? {
            views::prepare_checkout_snapshot(
                root,
                &c.snapshotter,
                snap,
                &key,
                image,
                labels,
                lease,
            )?
        } else {
            let top = Unpack {
                root,
                snap_name: &c.snapshotter,
                snap,
                lease,
            }
            .all(image)?;
            let mounts = root.lease_snapshot(lease, &c.snapshotter, &key, || {
                Ok(snap.prepare(&key, top.as_deref())?)
            })?;
            snap.update_labels(&key, labels)?;
            mounts
        };
        // Killed from here on, `reconcile` finishes the job from what is mounted.
        let dir = Path::new(&c.dir);
        crate::faults::point("commit-before-switch");
        berth_mount::unmount_recursive(dir)?;
        berth_mount::mount_all(&mounts, dir)?;
        crate::faults::point("commit-switched");
        let next = CheckoutRecord {
            image: name.into(),
            manifest,
            snapshot: key,
            ..c.clone()
        };
        root.store()
            .meta()
            .write(|tx| meta::put_checkout(tx, &next))?;
        views::release(snap, &c.snapshot)?;
        root.remove_snapshot(&c.snapshotter, snap, &c.snapshot)
    }
}

fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor> {
    DescriptorBuilder::default()
        .media_type(MediaType::from(media_type))
        .digest(berth_cas::digest::parse_sha256(digest)?)
        .size(size)
        .build()
        .map_err(|e| Error::Unsupported(format!("building a descriptor: {e}")))
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

/// Hashes a small document into ingest; returns it and its descriptor.
fn document(
    store: &berth_cas::Store,
    bytes: &[u8],
    media_type: &str,
) -> Result<(berth_cas::ingest::Verified, Descriptor)> {
    let mut ingest = store.ingest_temp()?;
    ingest
        .write_all(bytes)
        .map_err(Error::io("writing a document into ingest"))?;
    let v = ingest.finish(None)?;
    let desc = descriptor(media_type, v.digest.as_ref(), v.size)?;
    Ok((v, desc))
}
