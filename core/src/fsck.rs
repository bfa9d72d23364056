//! fsck: proves the root's invariants. Content (every blob re-hashed, every name's
//! graph, `index.json`, `meta.db`'s integrity), file objects (re-hashed) and their
//! indexes, each snapshotter's database against its directories, checkout and
//! container records against what exists, leases, and what is unreferenced. With
//! `repair`, what is safe to repair is: corrupt blobs are quarantined, records of lost
//! blobs dropped, `index.json` rewritten, lapsed leases ended, orphaned snapshot
//! directories removed, and records whose snapshot is gone (so they can never be
//! mounted or run again) forgotten.

use std::path::Path;

use berth_cas::meta;
use serde::Serialize;

use crate::error::Result;
use crate::root::Root;

/// One problem found.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Problem {
    /// Which part: `content`, `objects`, `snapshots/<name>`, `checkouts`, `containers`, `leases`.
    pub area: String,
    /// What is affected.
    pub subject: String,
    /// What is wrong.
    pub detail: String,
}

/// Everything fsck saw.
#[derive(Debug, Default, Clone, Serialize)]
pub struct FsckReport {
    /// Blobs re-hashed.
    pub blobs_checked: usize,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Blobs whose bytes do not match their digest.
    pub corrupt_blobs: Vec<String>,
    /// File objects re-hashed.
    pub objects_checked: u64,
    /// Their bytes.
    pub object_bytes: u64,
    /// Tree index entries checked.
    pub index_entries: u64,
    /// Snapshots checked, over every snapshotter.
    pub snapshots_checked: usize,
    /// Checkout records checked.
    pub checkouts_checked: usize,
    /// Container records checked.
    pub containers_checked: usize,
    /// Everything that is wrong.
    pub problems: Vec<Problem>,
    /// What a repair changed.
    pub repaired: Vec<String>,
    /// Blobs no root reaches (harmless: gc removes them).
    pub unreferenced_blobs: usize,
    /// Leases whose holders are gone (harmless: gc ends them).
    pub lapsed_leases: usize,
}

impl FsckReport {
    /// Whether the root is sound.
    pub fn is_sound(&self) -> bool {
        self.problems.is_empty() && self.corrupt_blobs.is_empty()
    }

    fn problem(&mut self, area: &str, subject: impl Into<String>, detail: impl Into<String>) {
        self.problems.push(Problem {
            area: area.into(),
            subject: subject.into(),
            detail: detail.into(),
        });
    }
}

impl Root {
    /// Checks the whole root; with `repair`, fixes what is safe (see the module docs).
    pub fn fsck(&self, repair: bool) -> Result<FsckReport> {
        let mut r = FsckReport::default();
        self.check_content(&mut r, repair)?;
        self.check_objects(&mut r)?;
        self.check_snapshots(&mut r, repair)?;
        self.check_checkouts(&mut r, repair)?;
        self.check_containers(&mut r, repair)?;
        self.check_leases(&mut r, repair)?;
        Ok(r)
    }

    fn check_content(&self, r: &mut FsckReport, repair: bool) -> Result<()> {
        let (content, present) = berth_cas::fsck::fsck(self.store(), repair)?;
        r.blobs_checked = content.blobs_checked;
        r.blob_bytes = content.bytes_checked;
        r.corrupt_blobs = content.corrupt;
        r.repaired.extend(content.repaired);
        for p in content.problems {
            r.problem("content", p.subject, p.detail);
        }
        let live = self.mark()?;
        r.unreferenced_blobs = present
            .iter()
            .filter(|d| !live.content.blobs.contains(*d))
            .count();
        Ok(())
    }

    fn check_objects(&self, r: &mut FsckReport) -> Result<()> {
        if !self.has_objects() {
            return Ok(());
        }
        let objects = self.objects()?.fsck()?;
        r.objects_checked = objects.objects;
        r.object_bytes = objects.bytes;
        r.index_entries = objects.entries;
        for p in objects.problems {
            r.problem("objects", p.subject, p.detail);
        }
        Ok(())
    }

    fn check_snapshots(&self, r: &mut FsckReport, repair: bool) -> Result<()> {
        for (name, snap) in self.existing_snapshotters()? {
            if repair {
                for p in snap.cleanup()? {
                    r.repaired.push(format!(
                        "{}: removed an orphaned snapshot directory",
                        p.display()
                    ));
                }
            }
            r.snapshots_checked += snap.list()?.len();
            for p in snap.check()? {
                r.problem(&format!("snapshots/{name}"), name.clone(), p);
            }
        }
        Ok(())
    }

    fn snapshot_exists(&self, snapshotter: &str, key: &str) -> Result<bool> {
        let snap = match self.snapshotter(snapshotter) {
            Ok(s) => s,
            Err(crate::Error::UnknownSnapshotter { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        Ok(snap.stat(key).is_ok())
    }

    fn check_checkouts(&self, r: &mut FsckReport, repair: bool) -> Result<()> {
        let records = self.store().meta().all_checkouts()?;
        r.checkouts_checked = records.len();
        for c in records {
            if !self.snapshot_exists(&c.snapshotter, &c.snapshot)? {
                if repair && !berth_mount::is_mount_point(Path::new(&c.dir)) {
                    self.store()
                        .meta()
                        .write(|tx| meta::delete_checkout(tx, &c.dir))?;
                    r.repaired.push(format!(
                        "checkout {}: forgot it (its snapshot is gone)",
                        c.dir
                    ));
                    continue;
                }
                r.problem(
                    "checkouts",
                    &c.dir,
                    format!(
                        "its snapshot {}/{} does not exist",
                        c.snapshotter, c.snapshot
                    ),
                );
            }
        }
        Ok(())
    }

    fn check_containers(&self, r: &mut FsckReport, repair: bool) -> Result<()> {
        let records = self.store().meta().all_containers()?;
        let checkouts = self.store().meta().all_checkouts()?;
        r.containers_checked = records.len();
        for c in records {
            let subject = format!("{} ({})", crate::ids::short(&c.id), c.namespace);
            let state = self.state_of(&c);
            let snapshot_gone = match (&c.snapshotter, &c.snapshot) {
                (Some(name), Some(key)) => !self.snapshot_exists(name, key)?,
                _ => false,
            };
            // A container that ran and was cleaned up has no bundle but keeps its snapshot.
            if snapshot_gone && !state.is_live() {
                if repair {
                    self.store()
                        .meta()
                        .write(|tx| berth_cas::containers::delete_container(tx, &c.id))?;
                    r.repaired.push(format!(
                        "container {subject}: forgot it (its snapshot is gone)"
                    ));
                    continue;
                }
                r.problem("containers", &subject, "its snapshot does not exist");
            }
            if let Some(dir) = &c.checkout {
                if !checkouts.iter().any(|k| &k.dir == dir) {
                    r.problem(
                        "containers",
                        &subject,
                        format!("its checkout {dir} is not recorded"),
                    );
                }
            }
        }
        Ok(())
    }

    fn check_leases(&self, r: &mut FsckReport, repair: bool) -> Result<()> {
        let leases = self.store().meta().leases()?;
        for l in leases {
            let lapsed = l.expires <= meta::now() || (l.held && !self.store().is_held(&l.id)?);
            if !lapsed {
                continue;
            }
            if repair {
                self.store().release_id(&l.id)?;
                r.repaired
                    .push(format!("lease {}: ended (its holder is gone)", l.id));
            } else {
                r.lapsed_leases += 1;
            }
        }
        Ok(())
    }
}
