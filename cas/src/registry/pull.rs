//! Pulling: resolve a tag or digest to a manifest or index, choose platforms, fetch
//! configs, then stream layers straight into resumable ingests on several threads,
//! verifying size and digest before anything reaches `blobs/`.

use std::io::Read;
use std::time::Duration;

use oci_spec::image::Descriptor;
use ureq::http::Response;
use ureq::Body;

use super::client::{Client, Req};
use super::error::{RegistryError, Result};
use crate::digest::sha256_of;
use crate::error::Error;
use crate::image::{self, media_type_of, Resolved};
use crate::media::{self, Kind};
use crate::platform::Platform;
use crate::reference::Reference;
use crate::store::{Publish, Store, MAX_DOCUMENT_SIZE};

/// What berth accepts for manifests, most specific first (as containerd asks).
pub const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, \
application/vnd.docker.distribution.manifest.list.v2+json, \
application/vnd.oci.image.manifest.v1+json, \
application/vnd.docker.distribution.manifest.v2+json, */*";

/// How many times a broken-off blob download is resumed before giving up.
const MAX_RESUMES: u32 = 8;
const COPY_BUFFER: usize = 1 << 20;

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullOptions {
    /// The platform to pull (and to list first in [`Plan::images`]).
    pub platform: Platform,
    /// Pull every platform an index lists.
    pub all_platforms: bool,
    /// Blobs downloaded at once.
    pub max_concurrent: usize,
    /// The lease that keeps what the pull stores until the image is named.
    pub lease: Option<String>,
}

/// Told about each layer blob as a pull goes; called from download threads.
pub trait Observer: Sync {
    /// The blob is scheduled.
    fn queued(&self, _desc: &Descriptor) {}
    /// Downloading starts (at `offset` when resuming).
    fn started(&self, _desc: &Descriptor, _offset: u64) {}
    /// `bytes` of the blob are now on disk.
    fn progress(&self, _desc: &Descriptor, _bytes: u64) {}
    /// The blob is verified and stored (`downloaded` false: it already was).
    fn done(&self, _desc: &Descriptor, _downloaded: bool) {}
}

/// An observer that ignores everything.
pub struct Quiet;
impl Observer for Quiet {}

/// A resolved pull: what the name will point at and what to download.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The reference as given.
    pub reference: Reference,
    /// The manifest or index the tag resolved to (the image's new target).
    pub root: Descriptor,
    /// One image per platform pulled; the first is the requested platform's.
    pub images: Vec<Resolved>,
    /// Layer blobs of all those images, without duplicates.
    pub layers: Vec<Descriptor>,
    /// Which endpoint (mirror or registry) answered.
    pub(crate) endpoint: usize,
    /// The pull's lease.
    pub(crate) lease: Option<String>,
}

impl Client {
    /// Resolves `reference`, stores its index, manifests and configs, and says which
    /// layers to fetch. Mirrors are tried in order, then the registry.
    pub fn resolve(
        &self,
        store: &Store,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<Plan> {
        let last = self.upstream();
        for ep in 0..=last {
            match self.resolve_at(ep, store, reference, opts) {
                Err(e) if ep < last => {
                    tracing::warn!(mirror = %self.inner.endpoints[ep].base, "mirror failed, trying the next: {e}");
                }
                other => return other,
            }
        }
        unreachable!("the registry itself is always the last endpoint")
    }

    fn resolve_at(
        &self,
        ep: usize,
        store: &Store,
        reference: &Reference,
        opts: &PullOptions,
    ) -> Result<Plan> {
        let repo = reference.repository();
        let lease = opts.lease.as_deref();
        let (root, bytes) = match reference.digest() {
            Some(d) => self.manifest(ep, store, repo, d.as_ref(), None, lease)?,
            None => self.manifest(
                ep,
                store,
                repo,
                reference.tag().unwrap_or("latest"),
                None,
                lease,
            )?,
        };
        if let Some(d) = reference.digest() {
            if root.digest() != d {
                return Err(Error::DigestMismatch {
                    expected: d.to_string(),
                    found: root.digest().to_string(),
                }
                .into());
            }
        }
        let what = format!("{} {}", media_type_of(&root), root.digest());
        let manifests = match media::kind(&media_type_of(&root)) {
            Kind::Index => {
                let index = image::parse_index(&bytes, &what)?;
                let name = reference.to_string();
                let first = image::select_manifest(&index, &opts.platform, &name).cloned();
                let mut chosen = Vec::new();
                if opts.all_platforms {
                    chosen.extend(first.ok());
                    for d in index.manifests() {
                        if media::kind(&media_type_of(d)) == Kind::Manifest
                            && !chosen.iter().any(|c: &Descriptor| c.digest() == d.digest())
                        {
                            chosen.push(d.clone());
                        }
                    }
                } else {
                    chosen.push(first?);
                }
                let mut out = Vec::new();
                for d in chosen {
                    let (_, b) =
                        self.manifest(ep, store, repo, d.digest().as_ref(), Some(&d), lease)?;
                    out.push((d, b));
                }
                out
            }
            _ => vec![(root.clone(), bytes)],
        };
        let mut images = Vec::new();
        for (desc, bytes) in manifests {
            images.push(self.image(ep, store, repo, desc, &bytes, lease)?);
        }
        if images.is_empty() {
            return Err(Error::InvalidDocument {
                what: format!("index of {reference}"),
                reason: "it lists no image manifests",
            }
            .into());
        }
        if media::kind(&media_type_of(&root)) == Kind::Manifest && !opts.all_platforms {
            check_platform(&images[0], &opts.platform, reference)?;
        }
        let mut layers: Vec<Descriptor> = Vec::new();
        for img in &images {
            for l in img.manifest.layers() {
                if !layers.iter().any(|x| x.digest() == l.digest()) {
                    layers.push(l.clone());
                }
            }
        }
        Ok(Plan {
            reference: reference.clone(),
            root,
            images,
            layers,
            endpoint: ep,
            lease: opts.lease.clone(),
        })
    }

    /// A manifest and its (stored, verified) config.
    fn image(
        &self,
        ep: usize,
        store: &Store,
        repo: &str,
        desc: Descriptor,
        bytes: &[u8],
        lease: Option<&str>,
    ) -> Result<Resolved> {
        let manifest = image::parse_manifest(bytes, &format!("manifest {}", desc.digest()))?;
        self.fetch_blob(ep, store, repo, manifest.config(), &Quiet, lease)?;
        let config_raw = image::read_verified(store, manifest.config())?;
        let config = image::parse_config(
            &config_raw,
            &format!("config {}", manifest.config().digest()),
        )?;
        Ok(Resolved {
            manifest_desc: desc,
            manifest,
            config,
            config_raw,
        })
    }

    /// Fetches (or reads from the store, when pinned by a digest we hold) a manifest or
    /// index, checks it and stores it. Returns its descriptor and bytes.
    fn manifest(
        &self,
        ep: usize,
        store: &Store,
        repo: &str,
        tag_or_digest: &str,
        want: Option<&Descriptor>,
        lease: Option<&str>,
    ) -> Result<(Descriptor, Vec<u8>)> {
        if let Some(d) = want {
            if store.claim(d.digest(), lease)? {
                let bytes = image::read_verified(store, d)?;
                return Ok((strip(d)?, bytes));
            }
        }
        let url = self.url(ep, repo, &format!("manifests/{tag_or_digest}"));
        let resp = self.send(
            ep,
            &Req {
                method: "GET",
                url: url.clone(),
                headers: vec![("Accept", MANIFEST_ACCEPT.to_string())],
                body: None,
                scope: pull_scope(repo),
                anonymous: false,
            },
        )?;
        let status = resp.status().as_u16();
        if status == 404 {
            let sep = if tag_or_digest.contains(':') {
                "@"
            } else {
                ":"
            };
            return Err(RegistryError::ManifestUnknown {
                registry: self.registry().to_string(),
                reference: format!("{repo}{sep}{tag_or_digest}"),
            });
        }
        if !(200..300).contains(&status) {
            return Err(self.status_error("GET", &url, repo, resp));
        }
        let header_digest = header(&resp, "docker-content-digest");
        let content_type = header(&resp, "content-type").unwrap_or_default();
        let bytes = read_document(resp, self.registry(), &url)?;
        let digest = sha256_of(&bytes);
        let expected = want
            .map(|d| d.digest().to_string())
            .or(header_digest.filter(|d| d.starts_with("sha256:")));
        if let Some(e) = expected {
            if e != digest.to_string() {
                return Err(Error::DigestMismatch {
                    expected: e,
                    found: digest.to_string(),
                }
                .into());
            }
        }
        let media_type = manifest_media_type(&content_type, &bytes, self.registry())?;
        let desc = image::descriptor(&media_type, digest.as_ref(), bytes.len() as u64)?;
        if let Some(w) = want {
            image::verify_bytes(&bytes, w)?;
        }
        store.put_document(&bytes, &media_type, lease)?;
        Ok((desc, bytes))
    }

    /// Downloads every blob in `blobs` (already-stored ones are skipped), up to
    /// `max_concurrent` at once. The first failure stops the rest.
    pub fn fetch_blobs(
        &self,
        store: &Store,
        plan: &Plan,
        max_concurrent: usize,
        observer: &dyn Observer,
    ) -> Result<()> {
        let blobs = &plan.layers;
        for b in blobs {
            observer.queued(b);
        }
        let repo = plan.reference.repository();
        super::for_each_concurrent(blobs, max_concurrent, |b| {
            self.fetch_blob(
                plan.endpoint,
                store,
                repo,
                b,
                observer,
                plan.lease.as_deref(),
            )
            .map(drop)
        })
    }

    /// Streams one blob into the store, resuming a partial ingest with Range.
    /// Returns false when the blob was already there.
    pub(crate) fn fetch_blob(
        &self,
        ep: usize,
        store: &Store,
        repo: &str,
        desc: &Descriptor,
        observer: &dyn Observer,
        lease: Option<&str>,
    ) -> Result<bool> {
        if store.claim(desc.digest(), lease)? {
            observer.done(desc, false);
            return Ok(false);
        }
        let mut ingest = store.ingest(&format!("pull {}", desc.digest()))?;
        if store.claim(desc.digest(), lease)? {
            observer.done(desc, false); // another berth finished it while we waited for the ingest lock
            return Ok(false);
        }
        observer.started(desc, ingest.offset());
        let mut resumes = 0;
        while ingest.offset() != desc.size() {
            if ingest.offset() > desc.size() {
                ingest.truncate()?;
            }
            match self.download(ep, repo, desc, &mut ingest, observer) {
                Err(e @ RegistryError::Transfer { .. }) => {
                    resumes += 1;
                    if resumes > MAX_RESUMES {
                        return Err(e);
                    }
                    tracing::debug!(digest = %desc.digest(), "download broke off, resuming: {e}");
                    std::thread::sleep(Duration::from_millis(100 << resumes.min(4)));
                }
                Err(e) => return Err(e),
                Ok(()) => {}
            }
        }
        let blob = ingest.finish(Some((desc.digest(), desc.size())))?;
        store.publish(
            vec![Publish {
                blob,
                media_type: media_type_of(desc),
            }],
            lease,
        )?;
        observer.done(desc, true);
        Ok(true)
    }

    /// One GET from the ingest's offset on; writes what arrives.
    fn download(
        &self,
        ep: usize,
        repo: &str,
        desc: &Descriptor,
        ingest: &mut crate::ingest::Ingest,
        observer: &dyn Observer,
    ) -> Result<()> {
        let offset = ingest.offset();
        let url = self.url(ep, repo, &format!("blobs/{}", desc.digest()));
        let mut headers = vec![("Accept", format!("{}, */*", media_type_of(desc)))];
        if offset > 0 {
            headers.push(("Range", format!("bytes={offset}-")));
        }
        let resp = self.send(
            ep,
            &Req {
                method: "GET",
                url: url.clone(),
                headers,
                body: None,
                scope: pull_scope(repo),
                anonymous: false,
            },
        )?;
        match resp.status().as_u16() {
            206 if range_start(&resp) == Some(offset) => {}
            200 | 206 => ingest.truncate()?, // Range ignored or answered oddly: start over
            416 => {
                ingest.truncate()?;
                return Ok(());
            }
            404 => {
                return Err(RegistryError::BlobUnknown {
                    registry: self.registry().into(),
                    repository: repo.into(),
                    digest: desc.digest().to_string(),
                })
            }
            _ => return Err(self.status_error("GET", &url, repo, resp)),
        }
        let mut body = resp.into_body().into_reader();
        let mut buf = vec![0u8; COPY_BUFFER];
        let path = || std::path::PathBuf::from(format!("ingest of {}", desc.digest()));
        let transfer = |cause| RegistryError::Transfer {
            registry: self.registry().into(),
            digest: desc.digest().to_string(),
            cause,
        };
        loop {
            let room = (desc.size() - ingest.offset()).min(COPY_BUFFER as u64) as usize;
            if room == 0 {
                break;
            }
            let n = fill(&mut body, &mut buf[..room]).map_err(transfer)?;
            if n == 0 {
                return Err(transfer(std::io::ErrorKind::UnexpectedEof.into()));
            }
            std::io::Write::write_all(ingest, &buf[..n]).map_err(Error::io(path()))?;
            observer.progress(desc, ingest.offset());
        }
        let mut extra = [0u8; 1];
        if matches!(body.read(&mut extra), Ok(1)) {
            let _ = ingest.truncate();
            return Err(Error::SizeMismatch {
                digest: desc.digest().to_string(),
                expected: desc.size(),
                found: desc.size() + 1,
            }
            .into());
        }
        Ok(())
    }
}

/// Reads until `buf` is full or the stream ends; returns the bytes read.
fn fill(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) if n > 0 => {
                // Keep what arrived; the error shows up again on the next read.
                tracing::trace!("read error after {n} bytes: {e}");
                break;
            }
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

/// Names `plan`'s image in `namespace` (after unpacking, so a name always has a
/// filesystem); returns the digest the name pointed at before, if any.
pub fn name_image(
    store: &Store,
    namespace: &str,
    name: &str,
    root: &Descriptor,
) -> Result<Option<String>> {
    let before = store.meta().write(|tx| {
        crate::meta::put_image(
            tx,
            namespace,
            name,
            root.digest().as_ref(),
            &media_type_of(root),
            root.size(),
        )
    })?;
    store.sync_index_json()?;
    Ok(before)
}

/// `repository:<name>:pull`.
pub(crate) fn pull_scope(repo: &str) -> String {
    format!("repository:{repo}:pull")
}

fn strip(d: &Descriptor) -> Result<Descriptor> {
    Ok(image::descriptor(
        &media_type_of(d),
        d.digest().as_ref(),
        d.size(),
    )?)
}

pub(crate) fn header(resp: &Response<Body>, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(|s| s.trim().to_string())
}

/// `Content-Range: bytes START-END/TOTAL` → START.
fn range_start(resp: &Response<Body>) -> Option<u64> {
    let v = header(resp, "content-range")?;
    let v = v.strip_prefix("bytes").unwrap_or(&v).trim();
    v.split('-').next()?.trim().parse().ok()
}

/// Reads a manifest body, refusing more than [`MAX_DOCUMENT_SIZE`].
fn read_document(resp: Response<Body>, registry: &str, url: &str) -> Result<Vec<u8>> {
    let too_large = || Error::TooLarge {
        what: format!("manifest at {url}"),
        limit: MAX_DOCUMENT_SIZE,
    };
    if header(&resp, "content-length")
        .and_then(|l| l.parse::<u64>().ok())
        .is_some_and(|l| l > MAX_DOCUMENT_SIZE)
    {
        return Err(too_large().into());
    }
    let mut bytes = Vec::new();
    resp.into_body()
        .into_reader()
        .take(MAX_DOCUMENT_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|cause| RegistryError::Transfer {
            registry: registry.into(),
            digest: url.into(),
            cause,
        })?;
    if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
        return Err(too_large().into());
    }
    Ok(bytes)
}

/// The manifest's media type: Content-Type, else its own `mediaType`; they must agree.
fn manifest_media_type(content_type: &str, bytes: &[u8], registry: &str) -> Result<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
        manifests: Option<serde_json::Value>,
    }
    let probe: Probe = serde_json::from_slice(bytes).map_err(Error::json("manifest"))?;
    let header = content_type.split(';').next().unwrap_or("").trim();
    let known = |m: &str| matches!(media::kind(m), Kind::Index | Kind::Manifest);
    let from_body = probe.media_type.filter(|m| known(m));
    match (known(header), from_body) {
        (true, Some(b)) if b != header => Err(RegistryError::Protocol {
            registry: registry.into(),
            reason: format!("manifest Content-Type {header} does not match its mediaType {b}"),
        }),
        (true, _) => Ok(header.to_string()),
        (false, Some(b)) => Ok(b),
        (false, None) if probe.manifests.is_some() => Ok(media::OCI_INDEX.to_string()),
        (false, None) => Ok(media::OCI_MANIFEST.to_string()),
    }
}

fn check_platform(img: &Resolved, platform: &Platform, reference: &Reference) -> Result<()> {
    let c = &img.config;
    let have = Platform::new(
        &c.os().to_string(),
        &c.architecture().to_string(),
        c.variant().as_deref().unwrap_or(""),
    );
    match have.rank_on(platform) {
        Some(_) => Ok(()),
        None => Err(Error::NoMatchingPlatform {
            image: reference.to_string(),
            platform: platform.to_string(),
            available: have.to_string(),
        }
        .into()),
    }
}
