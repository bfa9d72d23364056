//! `berth import`: OCI layouts (tar or directory) and docker-save tars.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use oci_spec::image::{Descriptor, ImageIndex};

use super::source::{normalise, Source};
use crate::error::{Error, Result};
use crate::image::{self, media_type_of};
use crate::media::{self, Kind};
use crate::meta;
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Publish, Store};

/// What to import and how to name it.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// Name for the image when the archive holds exactly one (overrides names inside).
    pub name: Option<Reference>,
    /// The platform whose manifest must be complete in a multi-platform index.
    pub platform: Platform,
    /// The namespace the names go into.
    pub namespace: String,
    /// The lease that keeps the stored blobs until they are named.
    pub lease: Option<String>,
}

impl ImportOptions {
    /// Names from the archive, into the default namespace, for this platform, no lease.
    pub fn new(platform: Platform) -> Self {
        ImportOptions {
            name: None,
            platform,
            namespace: meta::DEFAULT_NAMESPACE.to_string(),
            lease: None,
        }
    }
}

/// What an import registered.
#[derive(Debug, Clone)]
pub struct Imported {
    /// Each name and the manifest or index it now points at.
    pub images: Vec<(String, Descriptor)>,
    /// Blobs that were new to the store.
    pub new_blobs: usize,
    /// Their total size in bytes.
    pub new_bytes: u64,
}

/// Called after an import's blobs are stored and before its names are: the place to
/// unpack images into filesystems. An error here leaves the names unchanged.
pub type BeforeNaming<'a> =
    &'a mut dyn FnMut(&[(String, Descriptor)]) -> std::result::Result<(), HookError>;

/// An error from a [`BeforeNaming`] hook.
pub type HookError = Box<dyn std::error::Error + Send + Sync>;

/// Imports the archive or layout directory at `path`. All or nothing.
pub fn import(store: &Store, path: &Path, opts: &ImportOptions) -> Result<Imported> {
    import_with(store, path, opts, &mut |_| Ok(()))
}

/// Imports like [`import`], running `hook` once the content is stored but not yet named.
pub fn import_with(
    store: &Store,
    path: &Path,
    opts: &ImportOptions,
    hook: BeforeNaming<'_>,
) -> Result<Imported> {
    let mut src = if path.is_dir() {
        Source::from_dir(path)?
    } else {
        Source::from_tar(store, path)?
    };
    let (named, publish_names) = if src.documents.contains_key("oci-layout") {
        oci_layout(store, &mut src, path, opts)?
    } else if src.documents.contains_key("manifest.json") {
        docker_save(store, &mut src, opts)?
    } else {
        return Err(Error::UnknownArchive {
            path: path.into(),
            reason: "no oci-layout or manifest.json",
        });
    };
    commit(store, &mut src, named, publish_names, opts, hook)
}

/// Publishes the needed blobs and names the images in one step.
fn commit(
    store: &Store,
    src: &mut Source,
    named: Vec<(String, Descriptor)>,
    blobs: BTreeMap<String, (String, String)>,
    opts: &ImportOptions,
    hook: BeforeNaming<'_>,
) -> Result<Imported> {
    let lease = opts.lease.as_deref();
    let mut publish = Vec::new();
    let mut new_bytes = 0;
    for (file, media_type) in blobs.into_values() {
        let Some(blob) = src.take(&file) else {
            continue;
        };
        if store.claim(&blob.digest, lease)? {
            continue; // already stored (and now leased): the ingest copy is dropped
        }
        new_bytes += blob.size;
        publish.push(Publish { blob, media_type });
    }
    let new_blobs = publish.len();
    store.publish(publish, lease)?;
    hook(&named).map_err(Error::Hook)?;
    store.meta().write(|tx| {
        for (name, desc) in &named {
            meta::put_image(
                tx,
                &opts.namespace,
                name,
                desc.digest().as_ref(),
                &media_type_of(desc),
                desc.size(),
            )?;
        }
        Ok(())
    })?;
    store.sync_index_json()?;
    Ok(Imported {
        images: named,
        new_blobs,
        new_bytes,
    })
}

type Plan = (
    Vec<(String, Descriptor)>,
    BTreeMap<String, (String, String)>,
);

fn oci_layout(store: &Store, src: &mut Source, path: &Path, opts: &ImportOptions) -> Result<Plan> {
    let bytes = src
        .documents
        .get("index.json")
        .cloned()
        .ok_or(Error::MissingEntry("index.json".into()))?;
    let layout: serde_json::Value =
        serde_json::from_slice(&src.documents["oci-layout"]).map_err(Error::json("oci-layout"))?;
    if layout
        .get("imageLayoutVersion")
        .and_then(|v| v.as_str())
        .is_none()
    {
        return Err(Error::UnknownArchive {
            path: path.into(),
            reason: "oci-layout has no imageLayoutVersion",
        });
    }
    let index: ImageIndex = image::parse_index(&bytes, "index.json")?;
    if index.manifests().is_empty() {
        return Err(Error::InvalidDocument {
            what: "index.json".into(),
            reason: "it lists no images",
        });
    }
    let mut needed = BTreeMap::new();
    let mut named = Vec::new();
    for desc in index.manifests() {
        check_graph(store, src, desc, &opts.platform, &mut needed)?;
        let name = name_of(desc, opts, index.manifests().len())?;
        named.push((name, strip(desc)?));
    }
    Ok((named, needed))
}

/// A descriptor as it goes into our index: media type, digest, size only.
fn strip(desc: &Descriptor) -> Result<Descriptor> {
    image::descriptor(&media_type_of(desc), desc.digest().as_ref(), desc.size())
}

fn name_of(desc: &Descriptor, opts: &ImportOptions, count: usize) -> Result<String> {
    if let Some(n) = &opts.name {
        if count != 1 {
            return Err(Error::InvalidDocument {
                what: "archive".into(),
                reason: "--name needs an archive with exactly one image",
            });
        }
        return Ok(n.to_string());
    }
    let annotations = desc.annotations().clone().unwrap_or_default();
    let candidate = annotations
        .get(media::ANNOTATION_CONTAINERD_NAME)
        .or_else(|| annotations.get(media::ANNOTATION_REF_NAME));
    match candidate {
        Some(n) => Ok(Reference::parse(n)?.to_string()),
        None => Err(Error::InvalidDocument {
            what: format!("image {}", desc.digest()),
            reason: "it has no name in the archive; give one with --name",
        }),
    }
}

/// Checks that everything `root` needs is in the archive or the store, verified, and
/// records which archive file provides each blob.
fn check_graph(
    store: &Store,
    src: &mut Source,
    root: &Descriptor,
    platform: &Platform,
    needed: &mut BTreeMap<String, (String, String)>,
) -> Result<()> {
    let mut stack = vec![(root.clone(), true)];
    let mut seen = HashSet::new();
    let mut platform_manifest_found = false;
    while let Some((desc, required)) = stack.pop() {
        if !seen.insert(desc.digest().to_string()) {
            continue;
        }
        let media_type = media_type_of(&desc);
        let kind = media::kind(&media_type);
        if kind == Kind::Unknown {
            return Err(Error::UnknownMediaType {
                media_type,
                digest: desc.digest().to_string(),
            });
        }
        let Some(bytes) = blob_bytes(store, src, &desc, kind, needed)? else {
            if required {
                return Err(Error::MissingEntry(format!(
                    "blob {} ({media_type})",
                    desc.digest()
                )));
            }
            continue;
        };
        match kind {
            Kind::Index => {
                let index = image::parse_index(&bytes, &format!("index {}", desc.digest()))?;
                let chosen = image::select_manifest(&index, platform, desc.digest().as_ref())
                    .ok()
                    .cloned();
                for child in index.manifests() {
                    let is_chosen = chosen
                        .as_ref()
                        .is_some_and(|c| c.digest() == child.digest());
                    platform_manifest_found |= is_chosen;
                    stack.push((child.clone(), is_chosen));
                }
            }
            Kind::Manifest => {
                let m = image::parse_manifest(&bytes, &format!("manifest {}", desc.digest()))?;
                stack.push((m.config().clone(), true));
                stack.extend(m.layers().iter().map(|l| (l.clone(), true)));
                platform_manifest_found = true;
            }
            Kind::Config => {
                image::parse_config(&bytes, &format!("config {}", desc.digest()))?;
            }
            _ => {}
        }
    }
    if !platform_manifest_found {
        return Err(Error::NoMatchingPlatform {
            image: root.digest().to_string(),
            platform: platform.to_string(),
            available: "none in the archive".into(),
        });
    }
    Ok(())
}

/// Finds a descriptor's blob, checks its size, and returns its bytes if it is a document.
fn blob_bytes(
    store: &Store,
    src: &mut Source,
    desc: &Descriptor,
    kind: Kind,
    needed: &mut BTreeMap<String, (String, String)>,
) -> Result<Option<Vec<u8>>> {
    let is_doc = kind != Kind::Layer;
    let digest = desc.digest().to_string();
    let path = match src.blob(store, desc.digest())? {
        Some(v) => {
            if v.size != desc.size() {
                return Err(Error::SizeMismatch {
                    digest,
                    expected: desc.size(),
                    found: v.size,
                });
            }
            let file = format!("blobs/sha256/{}", crate::digest::hex_of(desc.digest())?);
            needed.insert(digest.clone(), (file, media_type_of(desc)));
            v.path.clone()
        }
        None if store.has_blob(desc.digest()) => store.blob_path(desc.digest())?,
        None => return Ok(None),
    };
    if !is_doc {
        return Ok(Some(Vec::new()));
    }
    let bytes = std::fs::read(&path).map_err(Error::io(&path))?;
    image::verify_bytes(&bytes, desc)?;
    Ok(Some(bytes))
}

/// `docker save`: manifest.json lists config and layer files; berth writes a Docker
/// schema2 manifest for each image, as containerd does on import.
fn docker_save(store: &Store, src: &mut Source, opts: &ImportOptions) -> Result<Plan> {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Entry {
        config: String,
        #[serde(default)]
        repo_tags: Option<Vec<String>>,
        layers: Vec<String>,
    }
    let entries: Vec<Entry> = serde_json::from_slice(&src.documents["manifest.json"])
        .map_err(Error::json("manifest.json"))?;
    if entries.is_empty() {
        return Err(Error::InvalidDocument {
            what: "manifest.json".into(),
            reason: "it lists no images",
        });
    }
    let mut needed = BTreeMap::new();
    let mut named = Vec::new();
    for e in &entries {
        let config = file_descriptor(store, src, &e.config, media::DOCKER_CONFIG, &mut needed)?;
        let config_path = src
            .file(store, &normalise(&e.config)?)?
            .map(|v| v.path.clone());
        let config_path = config_path.ok_or_else(|| Error::MissingEntry(e.config.clone()))?;
        let config_bytes = std::fs::read(&config_path).map_err(Error::io(&config_path))?;
        let parsed = image::parse_config(&config_bytes, &format!("config {}", e.config))?;
        let mut layers = Vec::new();
        for l in &e.layers {
            layers.push(file_descriptor(
                store,
                src,
                l,
                media::DOCKER_LAYER,
                &mut needed,
            )?);
        }
        let diff_ids = parsed.rootfs().diff_ids();
        let matches = diff_ids.len() == layers.len()
            && diff_ids
                .iter()
                .zip(&layers)
                .all(|(d, l)| d.as_str() == l.digest().as_ref());
        if !matches {
            return Err(Error::InvalidDocument {
                what: format!("config {}", e.config),
                reason: "its rootfs.diff_ids do not match the archive's layer files",
            });
        }
        let manifest = oci_spec::image::ImageManifestBuilder::default()
            .schema_version(2u32)
            .media_type(oci_spec::image::MediaType::from(media::DOCKER_MANIFEST))
            .config(image::descriptor(
                media::DOCKER_CONFIG,
                config.digest().as_ref(),
                config.size(),
            )?)
            .layers(
                layers
                    .iter()
                    .map(|l| image::descriptor(media::DOCKER_LAYER, l.digest().as_ref(), l.size()))
                    .collect::<Result<Vec<_>>>()?,
            )
            .build()
            .map_err(|_| Error::InvalidDocument {
                what: format!("manifest of {}", e.config),
                reason: "it could not be built",
            })?;
        let bytes = serde_json::to_vec(&manifest).map_err(Error::json("manifest"))?;
        let (file, digest, size) = src.add_generated(store, &bytes)?;
        let desc = image::descriptor(media::DOCKER_MANIFEST, digest.as_ref(), size)?;
        needed.insert(
            digest.to_string(),
            (file, media::DOCKER_MANIFEST.to_string()),
        );
        let tags = e.repo_tags.clone().unwrap_or_default();
        match (&opts.name, tags.is_empty()) {
            (Some(n), _) if entries.len() == 1 => named.push((n.to_string(), desc.clone())),
            (Some(_), _) => {
                return Err(Error::InvalidDocument {
                    what: "archive".into(),
                    reason: "--name needs an archive with exactly one image",
                })
            }
            (None, true) => {
                return Err(Error::InvalidDocument {
                    what: format!("image {}", e.config),
                    reason: "it has no RepoTags in the archive; give a name with --name",
                })
            }
            (None, false) => {
                for t in tags {
                    named.push((Reference::parse(&t)?.to_string(), desc.clone()));
                }
            }
        }
    }
    Ok((named, needed))
}

/// Describes an archive file by the digest it hashed to.
fn file_descriptor(
    store: &Store,
    src: &mut Source,
    name: &str,
    media_type: &str,
    needed: &mut BTreeMap<String, (String, String)>,
) -> Result<Descriptor> {
    let name = normalise(name)?;
    let mut canonical = name.clone();
    let v = src
        .file(store, &name)?
        .ok_or_else(|| Error::MissingEntry(name.clone()))?;
    let desc = image::descriptor(media_type, v.digest.as_ref(), v.size)?;
    // Symlinked duplicates resolve to one file; record the file that holds the bytes.
    if let Some(real) = src.resolve_name(&name) {
        canonical = real;
    }
    needed
        .entry(desc.digest().to_string())
        .or_insert((canonical, media_type.to_string()));
    Ok(desc)
}
