//! The OCI image model over the store: parse indexes, manifests and configs (OCI and
//! Docker schema2), pick a platform, walk an image's content graph, compute chainIDs.

use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::digest::{parse_sha256, sha256_of};
use crate::error::{Error, Result};
use crate::media::{self, Kind};
use crate::platform::Platform;
use crate::store::Store;

/// An image resolved to one platform: its manifest and config.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// Descriptor of the platform manifest.
    pub manifest_desc: Descriptor,
    /// The manifest.
    pub manifest: ImageManifest,
    /// The parsed config.
    pub config: ImageConfiguration,
    /// The config's bytes as stored (never re-serialised: that would change its digest).
    pub config_raw: Vec<u8>,
}

impl Resolved {
    /// The uncompressed digests of the layers, base first.
    pub fn diff_ids(&self) -> Vec<String> {
        self.config.rootfs().diff_ids().clone()
    }

    /// ChainIDs of the layer stack, base first.
    pub fn chain_ids(&self) -> Vec<String> {
        chain_ids(&self.diff_ids())
    }
}

/// The media type string of a descriptor.
pub fn media_type_of(desc: &Descriptor) -> String {
    desc.media_type().to_string()
}

/// An OCI index listing `images` (name, target), each annotated with its name the way
/// OCI layouts and containerd name them: what `index.json` and exported archives hold.
pub fn named_index(images: &[(String, Descriptor)]) -> Result<ImageIndex> {
    let manifests = images
        .iter()
        .map(|(name, d)| {
            let annotations = [
                (media::ANNOTATION_REF_NAME.to_string(), name.clone()),
                (media::ANNOTATION_CONTAINERD_NAME.to_string(), name.clone()),
            ]
            .into();
            let mut d = descriptor(&media_type_of(d), d.digest().as_ref(), d.size())?;
            d.set_annotations(Some(annotations));
            Ok(d)
        })
        .collect::<Result<Vec<_>>>()?;
    oci_spec::image::ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(manifests)
        .build()
        .map_err(|_| Error::InvalidDocument {
            what: "index".into(),
            reason: "it could not be built",
        })
}

/// Builds a descriptor from parts.
pub fn descriptor(media_type: &str, digest: &str, size: u64) -> Result<Descriptor> {
    Ok(Descriptor::new(
        MediaType::from(media_type),
        size,
        parse_sha256(digest)?,
    ))
}

/// ChainID(L0) = DiffID(L0); ChainID(L0..n) = sha256(ChainID(L0..n-1) + " " + DiffID(Ln)).
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_of(format!("{prev} {d}").as_bytes()).to_string(),
        };
        out.push(next);
    }
    out
}

/// Parses an index (OCI or Docker manifest list), checking its own mediaType field.
pub fn parse_index(bytes: &[u8], what: &str) -> Result<ImageIndex> {
    check_embedded_media_type(bytes, what, Kind::Index)?;
    let index: ImageIndex = serde_json::from_slice(bytes).map_err(Error::json(what))?;
    if index.schema_version() != 2 {
        return Err(Error::InvalidDocument {
            what: what.into(),
            reason: "schemaVersion must be 2",
        });
    }
    Ok(index)
}

/// Parses a manifest (OCI or Docker schema2), checking its own mediaType field.
pub fn parse_manifest(bytes: &[u8], what: &str) -> Result<ImageManifest> {
    check_embedded_media_type(bytes, what, Kind::Manifest)?;
    let manifest: ImageManifest = serde_json::from_slice(bytes).map_err(Error::json(what))?;
    if manifest.schema_version() != 2 {
        return Err(Error::InvalidDocument {
            what: what.into(),
            reason: "schemaVersion must be 2",
        });
    }
    let config_type = media_type_of(manifest.config());
    if media::kind(&config_type) != Kind::Config {
        return Err(Error::UnknownMediaType {
            media_type: config_type,
            digest: manifest.config().digest().to_string(),
        });
    }
    for layer in manifest.layers() {
        let t = media_type_of(layer);
        if media::kind(&t) != Kind::Layer {
            return Err(Error::UnknownMediaType {
                media_type: t,
                digest: layer.digest().to_string(),
            });
        }
        parse_sha256(layer.digest().as_ref())?;
    }
    Ok(manifest)
}

/// Parses an image config.
pub fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfiguration> {
    let config: ImageConfiguration = serde_json::from_slice(bytes).map_err(Error::json(what))?;
    if config.rootfs().typ() != "layers" {
        return Err(Error::InvalidDocument {
            what: what.into(),
            reason: "rootfs.type must be \"layers\"",
        });
    }
    Ok(config)
}

/// A document's `mediaType` field, when present, must say what the descriptor says.
fn check_embedded_media_type(bytes: &[u8], what: &str, want: Kind) -> Result<()> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(Error::json(what))?;
    match probe.media_type {
        Some(m) if media::kind(&m) != want => Err(Error::InvalidDocument {
            what: what.into(),
            reason: "its mediaType field does not match the descriptor",
        }),
        _ => Ok(()),
    }
}

/// The platform an index entry declares, normalised.
pub fn platform_of(desc: &Descriptor) -> Option<Platform> {
    desc.platform().as_ref().map(|p| {
        Platform::new(
            &p.os().to_string(),
            &p.architecture().to_string(),
            p.variant().as_deref().unwrap_or(""),
        )
    })
}

/// Picks the best manifest for `platform` from an index (first of the best rank wins).
pub fn select_manifest<'a>(
    index: &'a ImageIndex,
    platform: &Platform,
    image: &str,
) -> Result<&'a Descriptor> {
    let candidates = index
        .manifests()
        .iter()
        .filter(|d| media::kind(&media_type_of(d)) == Kind::Manifest);
    let best = candidates
        .filter_map(|d| match platform_of(d) {
            Some(p) => p.rank_on(platform).map(|r| (r, d)),
            None => Some((usize::MAX, d)), // platform-less entries last, as containerd does
        })
        .min_by_key(|(r, _)| *r);
    best.map(|(_, d)| d)
        .ok_or_else(|| Error::NoMatchingPlatform {
            image: image.to_string(),
            platform: platform.to_string(),
            available: index
                .manifests()
                .iter()
                .filter_map(platform_of)
                .map(|p| p.to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
}

/// Resolves `target` (a manifest or index in the store) to the manifest and config for `platform`.
pub fn resolve(
    store: &Store,
    target: &Descriptor,
    platform: &Platform,
    image: &str,
) -> Result<Resolved> {
    let mut desc = target.clone();
    for _ in 0..4 {
        let bytes = read_verified(store, &desc)?;
        let what = format!("{} {}", media_type_of(&desc), desc.digest());
        match media::kind(&media_type_of(&desc)) {
            Kind::Index => {
                let index = parse_index(&bytes, &what)?;
                desc = select_manifest(&index, platform, image)?.clone();
            }
            Kind::Manifest => {
                let manifest = parse_manifest(&bytes, &what)?;
                let config_raw = read_verified(store, manifest.config())?;
                let config = parse_config(
                    &config_raw,
                    &format!("config {}", manifest.config().digest()),
                )?;
                check_platform(&config, platform, image)?;
                return Ok(Resolved {
                    manifest_desc: desc,
                    manifest,
                    config,
                    config_raw,
                });
            }
            _ => {
                return Err(Error::UnknownMediaType {
                    media_type: media_type_of(&desc),
                    digest: desc.digest().to_string(),
                })
            }
        }
    }
    Err(Error::InvalidDocument {
        what: image.into(),
        reason: "indexes nest too deeply",
    })
}

/// A manifest reached without a platform (a plain manifest) must still suit the host.
fn check_platform(config: &ImageConfiguration, platform: &Platform, image: &str) -> Result<()> {
    let have = Platform::new(
        &config.os().to_string(),
        &config.architecture().to_string(),
        config.variant().as_deref().unwrap_or(""),
    );
    match have.rank_on(platform) {
        Some(_) => Ok(()),
        None => Err(Error::NoMatchingPlatform {
            image: image.into(),
            platform: platform.to_string(),
            available: have.to_string(),
        }),
    }
}

/// Reads a small blob and checks it against its descriptor.
pub fn read_verified(store: &Store, desc: &Descriptor) -> Result<Vec<u8>> {
    let bytes = store.read_document(desc.digest())?;
    verify_bytes(&bytes, desc)?;
    Ok(bytes)
}

/// Checks bytes against a descriptor's size and digest.
pub fn verify_bytes(bytes: &[u8], desc: &Descriptor) -> Result<()> {
    if bytes.len() as u64 != desc.size() {
        return Err(Error::SizeMismatch {
            digest: desc.digest().to_string(),
            expected: desc.size(),
            found: bytes.len() as u64,
        });
    }
    let found = sha256_of(bytes);
    if found != *desc.digest() {
        return Err(Error::DigestMismatch {
            expected: desc.digest().to_string(),
            found: found.to_string(),
        });
    }
    Ok(())
}

/// The descriptors a manifest or index refers to directly (empty for other blobs).
pub fn children(desc: &Descriptor, bytes: &[u8]) -> Result<Vec<Descriptor>> {
    let what = format!("{} {}", media_type_of(desc), desc.digest());
    match media::kind(&media_type_of(desc)) {
        Kind::Index => Ok(parse_index(bytes, &what)?.manifests().clone()),
        Kind::Manifest => {
            let m = parse_manifest(bytes, &what)?;
            let mut out = vec![m.config().clone()];
            out.extend(m.layers().iter().cloned());
            Ok(out)
        }
        _ => Ok(Vec::new()),
    }
}

/// Visits every descriptor reachable from `root` whose blob is in the store, root
/// included. Index children absent from the store (other platforms) are reported to
/// `missing` instead; a manifest's config and layers must all be present.
pub fn walk(
    store: &Store,
    root: &Descriptor,
    visit: &mut dyn FnMut(&Descriptor),
    missing: &mut dyn FnMut(&Descriptor),
) -> Result<()> {
    let mut stack = vec![(root.clone(), true)];
    while let Some((desc, required)) = stack.pop() {
        if !store.has_blob(desc.digest()) {
            if required {
                return Err(Error::BlobNotFound(desc.digest().to_string()));
            }
            missing(&desc);
            continue;
        }
        visit(&desc);
        let kind = media::kind(&media_type_of(&desc));
        if matches!(kind, Kind::Index | Kind::Manifest) {
            let bytes = read_verified(store, &desc)?;
            let from_index = kind == Kind::Index;
            for child in children(&desc, &bytes)? {
                stack.push((child, !from_index));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_spec() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_of(format!("{a} {b}").as_bytes()).to_string());
    }

    #[test]
    fn index_picks_host_platform() {
        let digest = |c: char| format!("sha256:{}", c.to_string().repeat(64));
        let json = serde_json::json!({
            "schemaVersion": 2,
            "manifests": [
                {"mediaType": media::OCI_MANIFEST, "digest": digest('a'), "size": 1,
                 "platform": {"os": "linux", "architecture": "arm64"}},
                {"mediaType": media::OCI_MANIFEST, "digest": digest('b'), "size": 1,
                 "platform": {"os": "linux", "architecture": "amd64"}},
            ]
        });
        let index = parse_index(json.to_string().as_bytes(), "index").expect("index");
        let amd: Platform = "linux/amd64".parse().expect("p");
        let arm: Platform = "linux/arm64".parse().expect("p");
        assert_eq!(
            select_manifest(&index, &amd, "x")
                .expect("amd")
                .digest()
                .to_string(),
            digest('b')
        );
        assert_eq!(
            select_manifest(&index, &arm, "x")
                .expect("arm")
                .digest()
                .to_string(),
            digest('a')
        );
        let s390: Platform = "linux/s390x".parse().expect("p");
        assert!(matches!(
            select_manifest(&index, &s390, "x"),
            Err(Error::NoMatchingPlatform { .. })
        ));
    }

    #[test]
    fn manifest_with_unknown_layer_type_is_refused() {
        let digest = format!("sha256:{}", "c".repeat(64));
        let json = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": digest, "size": 2},
            "layers": [{"mediaType": "application/x-mystery", "digest": digest, "size": 2}]
        });
        let err = parse_manifest(json.to_string().as_bytes(), "m").expect_err("unknown");
        assert!(matches!(err, Error::UnknownMediaType { .. }));
    }

    #[test]
    fn embedded_media_type_must_agree() {
        let json =
            serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_INDEX, "manifests": []});
        assert!(parse_manifest(json.to_string().as_bytes(), "m").is_err());
    }
}
