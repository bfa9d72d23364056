//! Images of one namespace: find, resolve, list, inspect, history, tag, remove, import,
//! export (this module); pull, push and registry logins (`registry`).

pub mod config;
mod registry;

use std::io::Write;
use std::path::Path;

use berth_cas::archive::{self, ExportFormat};
use berth_cas::image::{self, media_type_of, Resolved};
use berth_cas::meta::{self, ImageRecord};
use berth_cas::{Platform, Reference};
use oci_spec::image::Descriptor;
use serde::Serialize;

pub use registry::{login, logout, PullObserver, PullRequest, PushRequest};

use crate::error::{Error, Result};
use crate::namespace::Ns;
use crate::unpack::Unpack;

/// The image services of a namespace.
pub struct Images<'a> {
    ns: Ns<'a>,
}

impl<'a> Ns<'a> {
    /// The image services of this namespace.
    pub fn images(&self) -> Images<'a> {
        Images { ns: *self }
    }
}

/// A listed image.
#[derive(Debug, Clone, Serialize)]
pub struct ImageInfo {
    /// Its name.
    pub name: String,
    /// The digest of the manifest or index it points at.
    pub digest: String,
    /// That document's media type.
    pub media_type: String,
    /// Bytes of everything it reaches in the store.
    pub size: u64,
    /// Seconds since the epoch.
    pub created: i64,
}

/// One layer as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct LayerInfo {
    /// The blob's digest.
    pub digest: String,
    /// Its media type.
    pub media_type: String,
    /// Its (compressed) size.
    pub size: u64,
    /// The uncompressed digest.
    pub diff_id: String,
}

/// An image resolved to one platform, as `inspect` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Inspection {
    /// Its name.
    pub name: String,
    /// The digest its name points at.
    pub digest: String,
    /// That document's media type.
    pub media_type: String,
    /// `os/arch`.
    pub platform: String,
    /// The platform manifest's digest.
    pub manifest_digest: String,
    /// The manifest as stored.
    pub manifest: serde_json::Value,
    /// The config's digest.
    pub config_digest: String,
    /// The config as stored.
    pub config: serde_json::Value,
    /// Its layers, base first.
    pub layers: Vec<LayerInfo>,
}

/// One entry of an image's history.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryEntry {
    /// When (RFC 3339, as recorded).
    pub created: String,
    /// The step that made it.
    pub created_by: String,
    /// Who.
    pub author: String,
    /// The message.
    pub comment: String,
    /// Whether it added no layer.
    pub empty_layer: bool,
}

/// How to import.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    /// Name for the single image of the archive.
    pub name: Option<String>,
    /// The platform whose manifest must be complete (and is unpacked).
    pub platform: Platform,
    /// Store blobs only; unpack (or index) on first use.
    pub no_unpack: bool,
}

impl Images<'_> {
    /// An image by name (docker-style) or by the exact digest a name points at.
    pub fn find(&self, s: &str) -> Result<ImageRecord> {
        let meta = self.ns.root().store().meta();
        if s.starts_with("sha256:") {
            let found = meta
                .images(self.ns.name())?
                .into_iter()
                .find(|i| i.digest == s);
            return found.ok_or_else(|| Error::ImageNotFound(s.to_string()));
        }
        let name = Reference::parse(s)?.to_string();
        meta.image(self.ns.name(), &name)?
            .ok_or_else(|| Error::ImageNotFound(s.to_string()))
    }

    /// An image resolved to `platform`'s manifest and config.
    pub fn resolve(&self, s: &str, platform: &Platform) -> Result<(ImageRecord, Resolved)> {
        let img = self.find(s)?;
        let resolved = image::resolve(self.ns.root().store(), &target(&img)?, platform, &img.name)?;
        Ok((img, resolved))
    }

    /// Every image of the namespace, by name.
    pub fn list(&self) -> Result<Vec<ImageInfo>> {
        let store = self.ns.root().store();
        let images = store.meta().images(self.ns.name())?;
        Ok(images
            .into_iter()
            .map(|i| ImageInfo {
                size: content_size(store, &i),
                name: i.name,
                digest: i.digest,
                media_type: i.media_type,
                created: i.created,
            })
            .collect())
    }

    /// An image's manifest, config and layers for `platform`.
    pub fn inspect(&self, s: &str, platform: &Platform) -> Result<Inspection> {
        let (img, r) = self.resolve(s, platform)?;
        let store = self.ns.root().store();
        let manifest_raw = image::read_verified(store, &r.manifest_desc)?;
        let diff_ids = r.diff_ids();
        let layers = r
            .manifest
            .layers()
            .iter()
            .enumerate()
            .map(|(i, l)| LayerInfo {
                digest: l.digest().to_string(),
                media_type: media_type_of(l),
                size: l.size(),
                diff_id: diff_ids.get(i).cloned().unwrap_or_default(),
            })
            .collect();
        let json = |b: &[u8], what: &str| {
            serde_json::from_slice(b).map_err(berth_cas::Error::json(what.to_string()))
        };
        Ok(Inspection {
            platform: format!("{}/{}", r.config.os(), r.config.architecture()),
            manifest_digest: r.manifest_desc.digest().to_string(),
            manifest: json(&manifest_raw, "manifest")?,
            config_digest: r.manifest.config().digest().to_string(),
            config: json(&r.config_raw, "config")?,
            layers,
            name: img.name,
            digest: img.digest,
            media_type: img.media_type,
        })
    }

    /// An image's history, newest first.
    pub fn history(&self, s: &str) -> Result<Vec<HistoryEntry>> {
        let (_, r) = self.resolve(s, &Platform::host())?;
        let mut rows: Vec<HistoryEntry> = r
            .config
            .history()
            .iter()
            .flatten()
            .map(|h| HistoryEntry {
                created: h.created().clone().unwrap_or_default(),
                created_by: h.created_by().clone().unwrap_or_default(),
                author: h.author().clone().unwrap_or_default(),
                comment: h.comment().clone().unwrap_or_default(),
                empty_layer: h.empty_layer().unwrap_or(false),
            })
            .collect();
        rows.reverse();
        Ok(rows)
    }

    /// Gives `source` the name `target`; returns the full name and the digest.
    pub fn tag(&self, source: &str, target: &str) -> Result<(String, String)> {
        let src = self.find(source)?;
        let dst = Reference::parse(target)?.to_string();
        let store = self.ns.root().store();
        store.meta().write(|tx| {
            meta::put_image(
                tx,
                self.ns.name(),
                &dst,
                &src.digest,
                &src.media_type,
                src.size,
            )
        })?;
        store.sync_index_json()?;
        Ok((dst, src.digest))
    }

    /// Removes image names (all or none); their content goes at the next gc.
    pub fn remove(&self, references: &[String]) -> Result<Vec<String>> {
        let mut names = Vec::new();
        for r in references {
            names.push(self.find(r)?.name);
        }
        let store = self.ns.root().store();
        store.meta().write(|tx| {
            for n in &names {
                meta::delete_image(tx, self.ns.name(), n)?;
            }
            Ok(())
        })?;
        store.sync_index_json()?;
        Ok(names)
    }

    /// Imports an OCI layout (tar or directory) or a docker-save tar; every image is
    /// unpacked (unless asked not to) before it is named, so a name always has a
    /// filesystem. Returns each name and what it points at.
    pub fn import(&self, path: &Path, req: &ImportRequest) -> Result<Vec<(String, Descriptor)>> {
        let root = self.ns.root();
        let lease = root.lease("import", &path.display().to_string())?;
        let opts = archive::ImportOptions {
            name: req.name.as_deref().map(Reference::parse).transpose()?,
            platform: req.platform.clone(),
            namespace: self.ns.name().to_string(),
            lease: Some(lease.id().to_string()),
        };
        let (snap_name, snap) = root.default_snapshotter()?;
        let unpack = Unpack {
            root,
            snap_name: &snap_name,
            snap: snap.as_ref(),
            lease: &lease,
        };
        let store = root.store();
        let mut before_naming =
            |images: &[(String, Descriptor)]| -> Result<(), archive::HookError> {
                crate::faults::point("import-stored");
                for (name, desc) in images.iter().filter(|_| !req.no_unpack) {
                    let unpacked = image::resolve(store, desc, &req.platform, name)
                        .map_err(Error::from)
                        .and_then(|r| unpack.all(&r));
                    unpacked.map_err(|e| format!("unpacking {name}: {e}"))?;
                }
                crate::faults::point("import-unpacked");
                Ok(())
            };
        let imported = archive::import_with(store, path, &opts, &mut before_naming)?;
        root.release(lease);
        Ok(imported.images)
    }

    /// Writes images to `out` as an OCI archive or a docker-archive tar.
    pub fn export(
        &self,
        references: &[String],
        format: ExportFormat,
        platform: &Platform,
        out: impl Write,
    ) -> Result<()> {
        let mut images = Vec::new();
        for r in references {
            let img = self.find(r)?;
            images.push((img.name.clone(), target(&img)?));
        }
        Ok(archive::export(
            self.ns.root().store(),
            &images,
            format,
            platform,
            out,
        )?)
    }

    /// Writes the export to the file `path` atomically (temp, fsync, rename).
    pub fn export_to_file(
        &self,
        references: &[String],
        format: ExportFormat,
        platform: &Platform,
        path: &Path,
    ) -> Result<()> {
        let tmp = path.with_extension("berth-partial");
        let write = || -> Result<()> {
            let f = std::fs::File::create(&tmp)
                .map_err(Error::io(format!("creating {}", tmp.display())))?;
            let mut w = std::io::BufWriter::new(f);
            self.export(references, format, platform, &mut w)?;
            let f = w
                .into_inner()
                .map_err(|e| Error::io(format!("writing {}", tmp.display()))(e.into_error()))?;
            f.sync_all()
                .map_err(Error::io(format!("writing {}", tmp.display())))?;
            std::fs::rename(&tmp, path).map_err(Error::io(format!("writing {}", path.display())))
        };
        write().inspect_err(|_| {
            let _ = std::fs::remove_file(&tmp);
        })
    }
}

/// The descriptor a name points at.
pub fn target(img: &ImageRecord) -> Result<Descriptor> {
    Ok(image::descriptor(&img.media_type, &img.digest, img.size)?)
}

/// Bytes of everything an image reaches in the store.
fn content_size(store: &berth_cas::Store, img: &ImageRecord) -> u64 {
    let mut total = 0;
    if let Ok(desc) = target(img) {
        let _ = image::walk(store, &desc, &mut |d| total += d.size(), &mut |_| {});
    }
    total
}

/// The process config of an image config blob.
pub(crate) fn process_config(raw: &[u8]) -> Result<berth_exec::spec::ImageProcessConfig> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        #[serde(default)]
        config: Option<berth_exec::spec::ImageProcessConfig>,
    }
    let w: Wrapper =
        serde_json::from_slice(raw).map_err(berth_cas::Error::json("the image config"))?;
    Ok(w.config.unwrap_or_default())
}

/// The manifest and config of the platform manifest `digest` (a checkout's base).
pub(crate) fn manifest_image(store: &berth_cas::Store, digest: &str) -> Result<Resolved> {
    let d = berth_cas::digest::parse_sha256(digest)?;
    let bytes = store.read_document(&d)?;
    let manifest = image::parse_manifest(&bytes, &format!("manifest {digest}"))?;
    let config_raw = image::read_verified(store, manifest.config())?;
    let config = image::parse_config(
        &config_raw,
        &format!("config {}", manifest.config().digest()),
    )?;
    let desc = image::descriptor(berth_cas::media::OCI_MANIFEST, digest, bytes.len() as u64)?;
    Ok(Resolved {
        manifest_desc: desc,
        manifest,
        config,
        config_raw,
    })
}
