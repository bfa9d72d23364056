//! Pushing: every blob an image needs (HEAD first, cross-repository mount when the
//! registry already has it elsewhere, one PUT for small blobs, PATCH chunks for large
//! ones), then the manifests, then the tag. Non-distributable layers are never pushed.

use std::io::Read;

use oci_spec::image::Descriptor;
use url::Url;

use super::client::{Client, Req};
use super::error::{RegistryError, Result};
use super::pull::{header, Observer};
use crate::error::Error;
use crate::image::{self, media_type_of};
use crate::media::{self, Kind};
use crate::reference::Reference;
use crate::store::Store;

/// Blobs up to this size go up in one PUT; larger ones in chunks of this size.
pub const CHUNK_SIZE: u64 = 8 << 20;

/// Where a push goes and where its blobs may be mounted from.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// Destination name (its tag, or digest, names the pushed root).
    pub dest: Reference,
    /// A repository in the same registry that may already hold the blobs.
    pub mount_from: Option<String>,
    /// Blobs uploaded at once.
    pub max_concurrent: usize,
}

impl Client {
    /// Pushes the manifest or index `root` from the store; returns its digest.
    pub fn push(
        &self,
        store: &Store,
        root: &Descriptor,
        opts: &PushOptions,
        observer: &dyn Observer,
    ) -> Result<String> {
        let (manifests, blobs) = collect(store, root)?;
        for b in &blobs {
            observer.queued(b);
        }
        self.push_blobs(store, &blobs, opts, observer)?;
        let repo = opts.dest.repository();
        for m in &manifests {
            self.put_manifest(store, repo, m, m.digest().as_ref())?;
        }
        let tag = match (opts.dest.digest(), opts.dest.tag()) {
            (Some(d), _) => d.to_string(),
            (None, t) => t.unwrap_or("latest").to_string(),
        };
        self.put_manifest(store, repo, root, &tag)?;
        Ok(root.digest().to_string())
    }

    fn push_blobs(
        &self,
        store: &Store,
        blobs: &[Descriptor],
        opts: &PushOptions,
        observer: &dyn Observer,
    ) -> Result<()> {
        super::for_each_concurrent(blobs, opts.max_concurrent, |b| {
            let uploaded = self.push_blob(store, b, opts, observer)?;
            observer.done(b, uploaded);
            Ok(())
        })
    }

    /// Uploads one blob unless the registry has it; false when nothing was sent.
    fn push_blob(
        &self,
        store: &Store,
        desc: &Descriptor,
        opts: &PushOptions,
        observer: &dyn Observer,
    ) -> Result<bool> {
        let ep = self.upstream();
        let repo = opts.dest.repository();
        let scope = push_scope(repo, opts.mount_from.as_deref());
        let digest = desc.digest().to_string();
        let url = self.url(ep, repo, &format!("blobs/{digest}"));
        let head = self.send(ep, &req("HEAD", url.clone(), vec![], None, &scope))?;
        match head.status().as_u16() {
            200 => return Ok(false),
            404 => {}
            _ => return Err(self.status_error("HEAD", &url, repo, head)),
        }
        observer.started(desc, 0);
        let mut start = self.url(ep, repo, "blobs/uploads/");
        if let Some(from) = &opts.mount_from {
            start = format!("{start}?mount={digest}&from={from}");
        }
        let resp = self.send(
            ep,
            &req(
                "POST",
                start.clone(),
                vec![("Content-Length", "0".into())],
                Some(&[]),
                &scope,
            ),
        )?;
        let status = resp.status().as_u16();
        if status == 201 {
            return Ok(false); // mounted from another repository
        }
        if status != 202 {
            return Err(self.status_error("POST", &start, repo, resp));
        }
        let mut location = self.location(&start, &resp)?;
        let mut file = store.open_blob(desc.digest())?;
        let path = store.blob_path(desc.digest())?;
        let read = |file: &mut std::fs::File, n: u64| -> Result<Vec<u8>> {
            let mut buf = Vec::with_capacity(n as usize);
            file.by_ref()
                .take(n)
                .read_to_end(&mut buf)
                .map_err(Error::io(&path))?;
            Ok(buf)
        };
        let mut sent = 0;
        if desc.size() > CHUNK_SIZE {
            while sent < desc.size() {
                let chunk = read(&mut file, CHUNK_SIZE)?;
                if chunk.is_empty() {
                    return Err(Error::SizeMismatch {
                        digest,
                        expected: desc.size(),
                        found: sent,
                    }
                    .into());
                }
                let range = format!("{}-{}", sent, sent + chunk.len() as u64 - 1);
                let headers = vec![
                    ("Content-Type", "application/octet-stream".to_string()),
                    ("Content-Range", range),
                ];
                let resp = self.send(
                    ep,
                    &self.upload_req("PATCH", &location, headers, &chunk, &scope)?,
                )?;
                if resp.status().as_u16() != 202 {
                    return Err(self.status_error("PATCH", &location, repo, resp));
                }
                location = self.location(&location, &resp)?;
                sent += chunk.len() as u64;
                observer.progress(desc, sent);
            }
        }
        let rest = read(&mut file, desc.size() - sent)?;
        let mut url = Url::parse(&location).map_err(|source| RegistryError::Url {
            url: location.clone(),
            source,
        })?;
        url.query_pairs_mut().append_pair("digest", &digest);
        let headers = vec![("Content-Type", "application/octet-stream".to_string())];
        let resp = self.send(
            ep,
            &self.upload_req("PUT", url.as_str(), headers, &rest, &scope)?,
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("PUT", url.as_str(), repo, resp));
        }
        observer.progress(desc, desc.size());
        Ok(true)
    }

    /// An upload request; no credentials when the Location points at another host.
    fn upload_req<'a>(
        &self,
        method: &'static str,
        url: &str,
        headers: Vec<(&'static str, String)>,
        body: &'a [u8],
        scope: &str,
    ) -> Result<Req<'a>> {
        let mut r = req(method, url.to_string(), headers, Some(body), scope);
        let base = &self.inner.endpoints[self.upstream()].base;
        let same = |a: &str| {
            Url::parse(a)
                .ok()
                .map(|u| (u.host_str().map(str::to_string), u.port_or_known_default()))
        };
        if same(url) != same(base) {
            r.anonymous = true;
        }
        Ok(r)
    }

    fn location(&self, base: &str, resp: &ureq::http::Response<ureq::Body>) -> Result<String> {
        let loc = header(resp, "location").ok_or_else(|| RegistryError::Protocol {
            registry: self.registry().into(),
            reason: format!("upload answer to {base} has no Location header"),
        })?;
        self.join(base, &loc)
    }

    fn put_manifest(
        &self,
        store: &Store,
        repo: &str,
        desc: &Descriptor,
        reference: &str,
    ) -> Result<()> {
        let ep = self.upstream();
        let bytes = image::read_verified(store, desc)?;
        let url = self.url(ep, repo, &format!("manifests/{reference}"));
        let headers = vec![("Content-Type", media_type_of(desc))];
        let resp = self.send(
            ep,
            &req(
                "PUT",
                url.clone(),
                headers,
                Some(&bytes),
                &push_scope(repo, None),
            ),
        )?;
        if resp.status().as_u16() != 201 {
            return Err(self.status_error("PUT", &url, repo, resp));
        }
        if let Some(d) = header(&resp, "docker-content-digest") {
            if d != desc.digest().to_string() {
                return Err(Error::DigestMismatch {
                    expected: desc.digest().to_string(),
                    found: d,
                }
                .into());
            }
        }
        Ok(())
    }
}

fn req<'a>(
    method: &'static str,
    url: String,
    headers: Vec<(&'static str, String)>,
    body: Option<&'a [u8]>,
    scope: &str,
) -> Req<'a> {
    Req {
        method,
        url,
        headers,
        body,
        scope: scope.to_string(),
        anonymous: false,
    }
}

/// `repository:<dest>:pull,push` plus pull on the mount source.
fn push_scope(repo: &str, from: Option<&str>) -> String {
    match from {
        Some(f) if f != repo => format!("repository:{repo}:pull,push repository:{f}:pull"),
        _ => format!("repository:{repo}:pull,push"),
    }
}

/// The manifests under `root` (children of an index, not `root` itself) and the
/// distributable blobs they need, configs first.
fn collect(store: &Store, root: &Descriptor) -> Result<(Vec<Descriptor>, Vec<Descriptor>)> {
    let bytes = image::read_verified(store, root)?;
    let mut manifests = Vec::new();
    let mut stack = vec![];
    match media::kind(&media_type_of(root)) {
        Kind::Index => stack.extend(image::children(root, &bytes)?),
        _ => stack.push(root.clone()),
    }
    let mut blobs: Vec<Descriptor> = Vec::new();
    for m in stack {
        if media::kind(&media_type_of(&m)) != Kind::Manifest {
            continue;
        }
        let mb = image::read_verified(store, &m)?;
        for child in image::children(&m, &mb)? {
            if media::is_non_distributable(&media_type_of(&child))
                || blobs.iter().any(|b| b.digest() == child.digest())
            {
                continue;
            }
            if !store.has_blob(child.digest()) {
                return Err(Error::BlobNotFound(child.digest().to_string()).into());
            }
            blobs.push(child);
        }
        if m.digest() != root.digest() {
            manifests.push(m);
        }
    }
    Ok((manifests, blobs))
}
