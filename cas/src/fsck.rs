//! `berth fsck`: re-hash every blob, check every reference, quarantine what is corrupt.

use std::collections::BTreeSet;
use std::fs::{self, File};
use std::io;

use serde::Serialize;

use crate::digest::{parse_sha256, HashingReader};
use crate::error::{Error, Result};
use crate::image;
use crate::media;
use crate::store::Store;

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// What is affected: a blob digest, an image name, `index.json`.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

/// The outcome of a check.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Bytes re-hashed.
    pub bytes_checked: u64,
    /// Blobs whose bytes did not match their name: moved to `quarantine/`.
    pub quarantined: Vec<String>,
    /// Everything else that is wrong.
    pub problems: Vec<Problem>,
    /// Blob files no name reaches (harmless; gc removes them).
    pub unreferenced: usize,
}

impl FsckReport {
    /// Whether the store is sound.
    pub fn is_sound(&self) -> bool {
        self.quarantined.is_empty() && self.problems.is_empty()
    }
}

/// Checks the whole store.
pub fn fsck(store: &Store) -> Result<FsckReport> {
    let mut report = FsckReport::default();
    let present = rehash_blobs(store, &mut report)?;
    for row in store.meta().blobs()? {
        if !present.contains(&row.digest) {
            report.problems.push(Problem {
                subject: row.digest,
                detail: "recorded in meta.db but missing".into(),
            });
        }
    }
    check_images(store, &mut report)?;
    check_index_json(store, &mut report)?;
    let live = crate::gc::live_blobs(store)?;
    report.unreferenced = present.iter().filter(|d| !live.contains(*d)).count();
    Ok(report)
}

fn rehash_blobs(store: &Store, report: &mut FsckReport) -> Result<BTreeSet<String>> {
    let dir = store.root().join("blobs/sha256");
    let mut present = BTreeSet::new();
    for entry in fs::read_dir(&dir).map_err(Error::io(&dir))? {
        let entry = entry.map_err(Error::io(&dir))?;
        let name = format!("sha256:{}", entry.file_name().to_string_lossy());
        let ok = match parse_sha256(&name) {
            Ok(d) => {
                let mut r =
                    HashingReader::new(File::open(entry.path()).map_err(Error::io(entry.path()))?);
                io::copy(&mut r, &mut io::sink()).map_err(Error::io(entry.path()))?;
                let (found, n) = r.finish();
                report.blobs_checked += 1;
                report.bytes_checked += n;
                found == d
            }
            Err(_) => false,
        };
        if ok {
            present.insert(name);
        } else {
            quarantine(store, &entry.path(), &name)?;
            report.quarantined.push(name);
        }
    }
    Ok(present)
}

fn quarantine(store: &Store, path: &std::path::Path, name: &str) -> Result<()> {
    let dest = store.root().join("quarantine").join(name.replace(':', "-"));
    fs::rename(path, &dest).map_err(Error::io(&dest))?;
    store.meta().write(|tx| {
        tx.execute("DELETE FROM blobs WHERE digest = ?1", [name])?;
        Ok(())
    })
}

fn check_images(store: &Store, report: &mut FsckReport) -> Result<()> {
    for img in store.meta().images()? {
        let desc = match image::descriptor(&img.media_type, &img.digest, img.size) {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(Problem {
                    subject: img.name,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        if let Err(e) = image::walk(store, &desc, &mut |_| {}, &mut |_| {}) {
            report.problems.push(Problem {
                subject: img.name,
                detail: e.to_string(),
            });
        }
    }
    Ok(())
}

fn check_index_json(store: &Store, report: &mut FsckReport) -> Result<()> {
    let path = store.root().join("index.json");
    let problem = |detail: String| Problem {
        subject: "index.json".into(),
        detail,
    };
    let bytes = match fs::read(&path) {
        Ok(b) => b,
        Err(e) => {
            report.problems.push(problem(e.to_string()));
            return Ok(());
        }
    };
    let index = match image::parse_index(&bytes, "index.json") {
        Ok(i) => i,
        Err(e) => {
            report.problems.push(problem(e.to_string()));
            return Ok(());
        }
    };
    let listed: BTreeSet<(String, String)> = index
        .manifests()
        .iter()
        .filter_map(|d| {
            let name = d
                .annotations()
                .as_ref()?
                .get(media::ANNOTATION_REF_NAME)?
                .clone();
            Some((name, d.digest().to_string()))
        })
        .collect();
    let named: BTreeSet<(String, String)> = store
        .meta()
        .images()?
        .into_iter()
        .map(|i| (i.name, i.digest))
        .collect();
    if listed != named {
        report
            .problems
            .push(problem("does not match the image names in meta.db".into()));
    }
    Ok(())
}
