//! The store root: an OCI image layout plus metadata.
//!
//! ```text
//! <root>/
//!   oci-layout            {"imageLayoutVersion":"1.0.0"}
//!   index.json            every named image, annotated with its name (kept in step with meta.db)
//!   blobs/sha256/<hex>    content, immutable, verified on the way in
//!   ingest/               writes in flight (flock'ed by their writer)
//!   quarantine/           blobs fsck found corrupt
//!   meta.db               SQLite (WAL): the source of truth for names and references
//!   leases/<id>           lock files of leases held by live processes (see `lease`)
//!   gc.lock, gc.turnstile the gc gate (see `lock::Gate`)
//! ```
//!
//! No process locks the whole store for its life: content stays because names,
//! records and leases reference it, and gc marks from those (see `lock` and `lease`).

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use oci_spec::image::Digest;

use crate::digest::{hex_of, sha256_of};
use crate::error::{Error, Result};
use crate::ingest::{Ingest, Verified};
use crate::lease::ResourceKind;
use crate::lock::{self, Gate, Mode};
use crate::meta::{self, Meta};

/// Largest manifest, index or config berth reads into memory (containerd's cap is about 4 MiB).
pub const MAX_DOCUMENT_SIZE: u64 = 4 * 1024 * 1024;

/// An open store.
pub struct Store {
    root: PathBuf,
    meta: Mutex<Meta>,
    gate: Gate,
}

/// A blob to publish, with the media type it is known by.
pub struct Publish {
    /// Verified content waiting in ingest.
    pub blob: Verified,
    /// Its media type (first one recorded wins).
    pub media_type: String,
}

impl Store {
    /// Opens the store at `root`, creating its layout if needed.
    pub fn open(root: &Path) -> Result<Self> {
        for dir in ["blobs/sha256", "ingest", "quarantine"] {
            let p = root.join(dir);
            fs::create_dir_all(&p).map_err(Error::io(&p))?;
        }
        let layout = root.join("oci-layout");
        if !layout.exists() {
            write_atomic(&layout, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        let meta = Meta::open(&root.join("meta.db"))?;
        let store = Store {
            root: root.to_path_buf(),
            meta: Mutex::new(meta),
            gate: Gate::new(root),
        };
        if !root.join("index.json").exists() {
            store.sync_index_json()?;
        }
        Ok(store)
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The gc gate (see [`Gate`]).
    pub fn gate(&self) -> &Gate {
        &self.gate
    }

    /// The metadata database (one connection per store, serialised).
    pub fn meta(&self) -> MutexGuard<'_, Meta> {
        self.meta.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Where a blob lives (whether or not it is there).
    pub fn blob_path(&self, digest: &Digest) -> Result<PathBuf> {
        Ok(self.root.join("blobs/sha256").join(hex_of(digest)?))
    }

    /// Whether the blob's file is present.
    pub fn has_blob(&self, digest: &Digest) -> bool {
        self.blob_path(digest).map(|p| p.exists()).unwrap_or(false)
    }

    /// Opens a blob for reading.
    pub fn open_blob(&self, digest: &Digest) -> Result<File> {
        let path = self.blob_path(digest)?;
        File::open(&path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Error::BlobNotFound(digest.to_string()),
            _ => Error::io(&path)(e),
        })
    }

    /// Reads a small blob (a manifest, index or config) whole, refusing large ones.
    pub fn read_document(&self, digest: &Digest) -> Result<Vec<u8>> {
        let file = self.open_blob(digest)?;
        let mut bytes = Vec::new();
        file.take(MAX_DOCUMENT_SIZE + 1)
            .read_to_end(&mut bytes)
            .map_err(Error::io(self.blob_path(digest)?))?;
        if bytes.len() as u64 > MAX_DOCUMENT_SIZE {
            return Err(Error::TooLarge {
                what: digest.to_string(),
                limit: MAX_DOCUMENT_SIZE,
            });
        }
        Ok(bytes)
    }

    /// A resumable ingest named by `reference` (e.g. the digest being downloaded).
    pub fn ingest(&self, reference: &str) -> Result<Ingest> {
        Ingest::open(self.ingest_path(reference), true)
    }

    /// A throw-away ingest, deleted unless finished and published.
    pub fn ingest_temp(&self) -> Result<Ingest> {
        use std::sync::atomic::{AtomicU64, Ordering};
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let name = format!("tmp-{}-{}-{n}", std::process::id(), meta::now());
        Ingest::open(self.root.join("ingest").join(name), false)
    }

    fn ingest_path(&self, reference: &str) -> PathBuf {
        let key = sha256_of(reference.as_bytes());
        let hex = hex_of(&key).unwrap_or("invalid");
        self.root.join("ingest").join(&hex[..40])
    }

    /// Moves verified blobs into `blobs/` and records them, all in one transaction, with
    /// each added to `lease` (which keeps them until something names them). Without a
    /// lease the caller must name them before gc runs.
    pub fn publish(&self, blobs: Vec<Publish>, lease: Option<&str>) -> Result<()> {
        let _gate = self.gate.shared()?;
        let dir = self.root.join("blobs/sha256");
        for p in &blobs {
            let dest = self.blob_path(&p.blob.digest)?;
            fs::rename(&p.blob.path, &dest).map_err(Error::io(&dest))?;
        }
        fsync_dir(&dir)?;
        self.meta().write(|tx| {
            for p in &blobs {
                meta::insert_blob(tx, p.blob.digest.as_ref(), p.blob.size, &p.media_type)?;
                if let Some(l) = lease {
                    crate::lease::lease_add(tx, l, ResourceKind::Blob, p.blob.digest.as_ref())?;
                }
            }
            Ok(())
        })
    }

    /// Whether the blob is stored (file and record); if it is and `lease` is given, the
    /// lease now keeps it, so it cannot go between this answer and its use.
    pub fn claim(&self, digest: &Digest, lease: Option<&str>) -> Result<bool> {
        let Some(lease) = lease else {
            return Ok(self.has_blob(digest) && self.meta().blob(digest.as_ref())?.is_some());
        };
        let _gate = self.gate.shared()?;
        if !self.has_blob(digest) {
            return Ok(false);
        }
        self.meta().write(|tx| {
            let known: bool = tx.query_row(
                "SELECT EXISTS (SELECT 1 FROM blobs WHERE digest = ?1)",
                [digest.as_ref()],
                |r| r.get(0),
            )?;
            if known {
                crate::lease::lease_add(tx, lease, ResourceKind::Blob, digest.as_ref())?;
            }
            Ok(known)
        })
    }

    /// Stores a small document (manifest, config) under `lease`; returns its digest and size.
    pub fn put_document(
        &self,
        bytes: &[u8],
        media_type: &str,
        lease: Option<&str>,
    ) -> Result<(Digest, u64)> {
        let mut ingest = self.ingest_temp()?;
        ingest.write_all(bytes).map_err(Error::io(&ingest.path))?;
        let blob = ingest.finish(None)?;
        let out = (blob.digest.clone(), blob.size);
        self.publish(
            vec![Publish {
                blob,
                media_type: media_type.to_string(),
            }],
            lease,
        )?;
        Ok(out)
    }

    /// Rewrites `index.json` from the default namespace's images (what skopeo and umoci
    /// see of the store). Serialised by a lock so the last writer always reads the latest
    /// committed names.
    pub fn sync_index_json(&self) -> Result<()> {
        let _guard = lock::lock(&self.root.join("index.lock"), Mode::Exclusive)?;
        let images = self.meta().images(meta::DEFAULT_NAMESPACE)?;
        let named = images
            .iter()
            .map(|i| {
                Ok((
                    i.name.clone(),
                    crate::image::descriptor(&i.media_type, &i.digest, i.size)?,
                ))
            })
            .collect::<Result<Vec<_>>>()?;
        let index = crate::image::named_index(&named)?;
        let bytes = serde_json::to_vec_pretty(&index).map_err(Error::json("index.json"))?;
        write_atomic(&self.root.join("index.json"), &bytes)
    }
}

/// Writes `path` atomically: temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(path)(e)
    })?;
    fsync_dir(dir)
}

/// Makes a directory's entries (renames, creations) durable.
pub fn fsync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(Error::io(dir))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_of;
    use crate::media;

    #[test]
    fn ingest_verifies_and_publishes() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let data = b"hello blob";
        let want = sha256_of(data);
        let mut ing = store.ingest_temp().expect("ingest");
        ing.write_all(data).expect("write");
        let blob = ing
            .finish(Some((&want, data.len() as u64)))
            .expect("verified");
        store
            .publish(
                vec![Publish {
                    blob,
                    media_type: "x".into(),
                }],
                None,
            )
            .expect("publish");
        assert!(store.has_blob(&want));
        assert_eq!(
            store
                .meta()
                .blob(want.as_ref())
                .expect("q")
                .expect("row")
                .size,
            10
        );
        assert_eq!(
            fs::read_dir(dir.path().join("ingest")).expect("ls").count(),
            0
        );
    }

    #[test]
    fn mismatch_stores_nothing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let want = sha256_of(b"other");
        let mut ing = store.ingest_temp().expect("ingest");
        ing.write_all(b"hello").expect("write");
        assert!(matches!(
            ing.finish(Some((&want, 5))),
            Err(Error::DigestMismatch { .. })
        ));
        let mut ing = store.ingest_temp().expect("ingest");
        ing.write_all(b"hello").expect("write");
        assert!(matches!(
            ing.finish(Some((&want, 6))),
            Err(Error::SizeMismatch { .. })
        ));
        assert!(!store.has_blob(&want));
        assert_eq!(
            fs::read_dir(dir.path().join("ingest")).expect("ls").count(),
            0
        );
        assert!(store.meta().blobs().expect("q").is_empty());
    }

    #[test]
    fn resumable_ingest_continues_where_it_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let data = b"0123456789abcdef";
        {
            let mut ing = store.ingest("layer-x").expect("ingest");
            ing.write_all(&data[..7]).expect("write");
        } // dropped: like a killed download
        let mut ing = store.ingest("layer-x").expect("resume");
        assert_eq!(ing.offset(), 7);
        ing.write_all(&data[7..]).expect("write");
        let want = sha256_of(data);
        let blob = ing
            .finish(Some((&want, data.len() as u64)))
            .expect("verified");
        assert_eq!(blob.digest, want);
    }

    #[test]
    fn index_json_lists_names() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (d, n) = store
            .put_document(b"{}", media::OCI_MANIFEST, None)
            .expect("put");
        store
            .meta()
            .write(|tx| {
                meta::put_image(
                    tx,
                    meta::DEFAULT_NAMESPACE,
                    "docker.io/library/a:latest",
                    d.as_ref(),
                    media::OCI_MANIFEST,
                    n,
                )
            })
            .expect("name");
        store.sync_index_json().expect("sync");
        let idx: serde_json::Value =
            serde_json::from_slice(&fs::read(dir.path().join("index.json")).expect("read"))
                .expect("json");
        assert_eq!(
            idx["manifests"][0]["annotations"][media::ANNOTATION_REF_NAME],
            "docker.io/library/a:latest"
        );
    }
}
