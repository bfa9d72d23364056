//! Garbage collection: mark from image names, containers and leases; sweep blobs and
//! stale ingests. Run on a store opened with [`Store::open_exclusive`] so no other
//! process is between writing content and naming it.

use std::collections::HashSet;
use std::fs;
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::error::{Error, Result};
use crate::image;
use crate::lock::try_lock_file;
use crate::meta::{self, ResourceKind};
use crate::store::Store;

/// What a collection reclaimed.
#[derive(Debug, Default, Clone, Serialize)]
pub struct GcReport {
    /// Blobs deleted.
    pub blobs_removed: usize,
    /// Their bytes.
    pub bytes_freed: u64,
    /// Ingest files removed (abandoned writes).
    pub ingests_removed: usize,
    /// Their bytes.
    pub ingest_bytes_freed: u64,
    /// Leases that had expired.
    pub leases_expired: usize,
}

/// Blob digests reachable from names and leases.
pub fn live_blobs(store: &Store) -> Result<HashSet<String>> {
    let mut live = HashSet::new();
    let images = store.meta().images()?;
    for img in images {
        let desc = image::descriptor(&img.media_type, &img.digest, img.size)?;
        // A damaged image keeps what can still be reached; fsck reports the damage.
        let _ = image::walk(
            store,
            &desc,
            &mut |d| {
                live.insert(d.digest().to_string());
            },
            &mut |_| {},
        );
        live.insert(img.digest.clone());
    }
    live.extend(store.meta().leased(ResourceKind::Blob)?);
    Ok(live)
}

/// Collects garbage. Ingests untouched for `ingest_grace` and not held by a writer go too.
pub fn collect(store: &Store, ingest_grace: Duration) -> Result<GcReport> {
    let mut report = GcReport {
        leases_expired: store.meta().write(meta::expire_leases)?,
        ..Default::default()
    };
    let live = live_blobs(store)?;
    let dir = store.root().join("blobs/sha256");
    let mut dead = Vec::new();
    for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
        let entry = entry.map_err(Error::io(&dir))?;
        let digest = format!("sha256:{}", entry.file_name().to_string_lossy());
        if !live.contains(&digest) {
            let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
            fs::remove_file(entry.path()).map_err(Error::io(entry.path()))?;
            report.blobs_removed += 1;
            report.bytes_freed += size;
            dead.push(digest);
        }
    }
    // Rows for blobs whose files are gone (swept now, or lost) go as well.
    let rows = store.meta().blobs()?;
    dead.extend(
        rows.into_iter()
            .filter(|b| !live.contains(&b.digest))
            .map(|b| b.digest),
    );
    store.meta().write(|tx| {
        for d in &dead {
            tx.execute("DELETE FROM blobs WHERE digest = ?1", [d])?;
        }
        Ok(())
    })?;
    sweep_ingests(store, ingest_grace, &mut report)?;
    Ok(report)
}

fn sweep_ingests(store: &Store, grace: Duration, report: &mut GcReport) -> Result<()> {
    let dir = store.root().join("ingest");
    let now = SystemTime::now();
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
            report.ingests_removed += 1;
            report.ingest_bytes_freed += meta.len();
        }
    }
    Ok(())
}
