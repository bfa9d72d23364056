//! Garbage collection of content: mark what roots reach, sweep the rest.
//!
//! The caller (berth-core, which knows every kind of root: names of every namespace,
//! checkouts, containers, leases) marks each root with [`Marked::mark`] and sweeps with
//! [`sweep_blobs`], all under the exclusive gc gate ([`crate::lock::Gate`]). Marking
//! walks every platform of an index that is present and keeps going past a missing blob:
//! what is missing is reported, and what can still be reached stays.

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::time::{Duration, SystemTime};

use oci_spec::image::Descriptor;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::image::{self, chain_ids, media_type_of};
use crate::lock::try_lock_file;
use crate::media::{self, Kind};
use crate::meta;
use crate::store::Store;

/// A blob a root needs that is not in the store.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Missing {
    /// The root that needs it: `image NAME`, `checkout DIR`, `lease ID`, ...
    pub root: String,
    /// The blob.
    pub digest: String,
}

/// What the roots reach.
#[derive(Debug, Default, Clone)]
pub struct Marked {
    /// Blob digests.
    pub blobs: HashSet<String>,
    /// Layer chainIDs of every manifest reached (snapshots and tree indexes to keep).
    pub chain_ids: HashSet<String>,
    /// Blobs roots need that are gone.
    pub missing: BTreeSet<Missing>,
    /// A manifest was reached whose config is unreadable: its layers' chainIDs are
    /// unknown, so nothing keyed by chainID may be swept.
    pub incomplete: bool,
}

impl Marked {
    /// Marks everything `root` reaches. `subject` names the root in reports.
    pub fn mark(&mut self, store: &Store, root: &Descriptor, subject: &str) {
        let mut stack = vec![(root.clone(), true)];
        while let Some((desc, required)) = stack.pop() {
            let digest = desc.digest().to_string();
            if !store.has_blob(desc.digest()) {
                // An index may list platforms that were never pulled; anything else counts.
                if required {
                    self.missing.insert(Missing {
                        root: subject.to_string(),
                        digest,
                    });
                    if media::kind(&media_type_of(&desc)) == Kind::Config {
                        self.incomplete = true;
                    }
                }
                continue;
            }
            if !self.blobs.insert(digest) {
                continue; // reached before: its children are marked already
            }
            match media::kind(&media_type_of(&desc)) {
                Kind::Index => match image::read_verified(store, &desc)
                    .and_then(|b| image::children(&desc, &b))
                {
                    Ok(children) => stack.extend(children.into_iter().map(|c| (c, false))),
                    Err(e) => self.unreadable(subject, &desc, &e),
                },
                Kind::Manifest => self.mark_manifest(store, &desc, subject, &mut stack),
                _ => {}
            }
        }
    }

    /// Marks a blob known only by digest (a lease's, a record's manifest), walking it
    /// when its recorded media type says it is a manifest or index.
    pub fn mark_digest(&mut self, store: &Store, digest: &str, subject: &str) {
        let record = store.meta().blob(digest).ok().flatten();
        let present = crate::digest::parse_sha256(digest).is_ok_and(|d| store.has_blob(&d));
        let Some(record) = record.filter(|_| present) else {
            self.missing.insert(Missing {
                root: subject.to_string(),
                digest: digest.to_string(),
            });
            return;
        };
        match image::descriptor(&record.media_type, digest, record.size) {
            Ok(desc)
                if matches!(
                    media::kind(&record.media_type),
                    Kind::Index | Kind::Manifest
                ) =>
            {
                self.mark(store, &desc, subject)
            }
            _ => {
                self.blobs.insert(digest.to_string());
            }
        }
    }

    fn mark_manifest(
        &mut self,
        store: &Store,
        desc: &Descriptor,
        subject: &str,
        stack: &mut Vec<(Descriptor, bool)>,
    ) {
        let bytes = match image::read_verified(store, desc) {
            Ok(b) => b,
            Err(e) => return self.unreadable(subject, desc, &e),
        };
        let what = format!("manifest {}", desc.digest());
        let manifest = match image::parse_manifest(&bytes, &what) {
            Ok(m) => m,
            Err(e) => return self.unreadable(subject, desc, &e),
        };
        stack.push((manifest.config().clone(), true));
        stack.extend(manifest.layers().iter().cloned().map(|l| (l, true)));
        let config = image::read_verified(store, manifest.config()).and_then(|raw| {
            image::parse_config(&raw, &format!("config {}", manifest.config().digest()))
        });
        match config {
            Ok(c) => self.chain_ids.extend(chain_ids(c.rootfs().diff_ids())),
            Err(_) => self.incomplete = true,
        }
    }

    fn unreadable(&mut self, subject: &str, desc: &Descriptor, e: &Error) {
        tracing::warn!("gc: {subject}: {} unreadable: {e}", desc.digest());
        self.incomplete = true;
    }
}

/// What a blob sweep removed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct BlobSweep {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Their bytes.
    pub bytes_freed: u64,
}

/// Deletes every blob file and record `marked` does not hold. Call it under the
/// exclusive gate, after marking every root.
pub fn sweep_blobs(store: &Store, marked: &Marked) -> Result<BlobSweep> {
    let mut report = BlobSweep::default();
    let dir = store.root().join("blobs/sha256");
    let mut dead = Vec::new();
    for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
        let entry = entry.map_err(Error::io(&dir))?;
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if !marked.blobs.contains(&digest) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
            dead.push(digest);
        }
    }
    // Rows for blobs whose files are gone (swept now, or lost) go as well.
    dead.extend(
        store
            .meta()
            .blobs()?
            .into_iter()
            .filter(|b| !marked.blobs.contains(&b.digest))
            .map(|b| b.digest),
    );
    store.meta().write(|tx| {
        for d in &dead {
            meta::delete_blob(tx, d)?;
        }
        Ok(())
    })?;
    Ok(report)
}

/// Removes ingests untouched for `grace` that no writer holds; returns (count, bytes).
pub fn sweep_ingests(store: &Store, grace: Duration) -> Result<(usize, u64)> {
    let dir = store.root().join("ingest");
    let now = SystemTime::now();
    let (mut count, mut bytes) = (0, 0);
    for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
        let entry = entry.map_err(Error::io(&dir))?;
        let Ok(meta) = entry.metadata() else { continue };
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or_default();
        if age < grace {
            continue;
        }
        let Ok(file) = fs::File::open(entry.path()) else {
            continue;
        };
        if try_lock_file(file).is_some() {
            fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
            count += 1;
            bytes += meta.len();
        }
    }
    Ok((count, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::sha256_of;

    fn put(store: &Store, bytes: &[u8], media_type: &str) -> Descriptor {
        let (d, n) = store.put_document(bytes, media_type, None).expect("put");
        image::descriptor(media_type, d.as_ref(), n).expect("desc")
    }

    /// A manifest with two layers and a config naming their diff_ids.
    fn image(store: &Store) -> (Descriptor, Vec<Descriptor>, Descriptor) {
        let l1 = put(store, b"layer one", media::OCI_LAYER);
        let l2 = put(store, b"layer two", media::OCI_LAYER);
        let diff = |b: &[u8]| sha256_of(b).to_string();
        let config = serde_json::json!({
            "architecture": "amd64", "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [diff(b"layer one"), diff(b"layer two")]},
        });
        let config = put(store, config.to_string().as_bytes(), media::OCI_CONFIG);
        let manifest = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
            "config": {"mediaType": media::OCI_CONFIG, "digest": config.digest().to_string(), "size": config.size()},
            "layers": [
                {"mediaType": media::OCI_LAYER, "digest": l1.digest().to_string(), "size": l1.size()},
                {"mediaType": media::OCI_LAYER, "digest": l2.digest().to_string(), "size": l2.size()},
            ],
        });
        let m = put(store, manifest.to_string().as_bytes(), media::OCI_MANIFEST);
        (m, vec![l1, l2], config)
    }

    #[test]
    fn a_missing_layer_does_not_stop_the_mark() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (m, layers, config) = image(&store);
        let stray = put(&store, b"unreferenced", media::OCI_LAYER);
        fs::remove_file(store.blob_path(layers[0].digest()).expect("path")).expect("rm");
        let mut marked = Marked::default();
        marked.mark(&store, &m, "image a");
        assert!(marked.blobs.contains(&layers[1].digest().to_string()));
        assert!(marked.blobs.contains(&config.digest().to_string()));
        assert_eq!(marked.chain_ids.len(), 2);
        assert!(!marked.incomplete);
        assert_eq!(
            marked
                .missing
                .iter()
                .map(|m| m.digest.clone())
                .collect::<Vec<_>>(),
            vec![layers[0].digest().to_string()]
        );
        let swept = sweep_blobs(&store, &marked).expect("sweep");
        assert_eq!(swept.blobs_removed, 1);
        assert!(!store.has_blob(stray.digest()));
        assert!(store.has_blob(layers[1].digest()));
        assert!(store
            .meta()
            .blob(layers[0].digest().as_ref())
            .expect("q")
            .is_none());
    }

    #[test]
    fn a_missing_config_makes_the_mark_incomplete() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Store::open(dir.path()).expect("open");
        let (m, layers, config) = image(&store);
        fs::remove_file(store.blob_path(config.digest()).expect("path")).expect("rm");
        let mut marked = Marked::default();
        marked.mark_digest(&store, m.digest().as_ref(), "lease x");
        assert!(marked.incomplete, "chainIDs unknown: keep every snapshot");
        assert!(layers
            .iter()
            .all(|l| marked.blobs.contains(&l.digest().to_string())));
    }
}
