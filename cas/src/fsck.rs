//! The content half of `berth fsck`: re-hash every blob, check every name's graph and
//! `index.json`, and the database's own integrity. With `repair`, corrupt blobs move to
//! `quarantine/`, records of lost blobs go, and `index.json` is rewritten.

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
    /// Blobs whose bytes do not match their name (a repair moves them to `quarantine/`).
    pub corrupt: Vec<String>,
    /// What a repair changed.
    pub repaired: Vec<String>,
    /// Everything else that is wrong.
    pub problems: Vec<Problem>,
    /// Blob files no root reaches (harmless; gc removes them). Filled in by the caller,
    /// which knows every kind of root.
    pub unreferenced: usize,
}

impl FsckReport {
    /// Whether the store is sound.
    pub fn is_sound(&self) -> bool {
        self.corrupt.is_empty() && self.problems.is_empty()
    }
}

/// Checks the whole store; with `repair`, fixes what is safe to fix. Returns the report
/// and the digests of the blobs present and sound.
pub fn fsck(store: &Store, repair: bool) -> Result<(FsckReport, BTreeSet<String>)> {
    let mut report = FsckReport::default();
    for problem in store.meta().integrity_problems()? {
        report.problems.push(Problem {
            subject: "meta.db".into(),
            detail: problem,
        });
    }
    let present = rehash_blobs(store, &mut report, repair)?;
    let _gate = store.gate().shared()?; // no publish half done while rows are compared
    for row in store.meta().blobs()? {
        if !present.contains(&row.digest) && !report.corrupt.contains(&row.digest) {
            if repair {
                store
                    .meta()
                    .write(|tx| crate::meta::delete_blob(tx, &row.digest))?;
                report
                    .repaired
                    .push(format!("{}: forgot the record of a lost blob", row.digest));
            } else {
                report.problems.push(Problem {
                    subject: row.digest,
                    detail: "recorded in meta.db but missing".into(),
                });
            }
        }
    }
    check_images(store, &mut report)?;
    check_index_json(store, &mut report, repair)?;
    Ok((report, present))
}

fn rehash_blobs(store: &Store, report: &mut FsckReport, repair: bool) -> Result<BTreeSet<String>> {
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
            if repair {
                quarantine(store, &entry.path(), &name)?;
                report
                    .repaired
                    .push(format!("{name}: corrupt, moved to quarantine/"));
            } else {
                report.corrupt.push(name);
            }
        }
    }
    Ok(present)
}

fn quarantine(store: &Store, path: &std::path::Path, name: &str) -> Result<()> {
    let dest = store.root().join("quarantine").join(name.replace(':', "-"));
    fs::rename(path, &dest).map_err(Error::io(&dest))?;
    store.meta().write(|tx| crate::meta::delete_blob(tx, name))
}

fn check_images(store: &Store, report: &mut FsckReport) -> Result<()> {
    for img in store.meta().all_images()? {
        let subject = match img.namespace.as_str() {
            crate::meta::DEFAULT_NAMESPACE => img.name.clone(),
            ns => format!("{ns}/{}", img.name),
        };
        let desc = match image::descriptor(&img.media_type, &img.digest, img.size) {
            Ok(d) => d,
            Err(e) => {
                report.problems.push(Problem {
                    subject,
                    detail: e.to_string(),
                });
                continue;
            }
        };
        if let Err(e) = image::walk(store, &desc, &mut |_| {}, &mut |_| {}) {
            report.problems.push(Problem {
                subject,
                detail: e.to_string(),
            });
        }
    }
    Ok(())
}

fn check_index_json(store: &Store, report: &mut FsckReport, repair: bool) -> Result<()> {
    if repair {
        store.sync_index_json()?;
    }
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
        .images(crate::meta::DEFAULT_NAMESPACE)?
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
