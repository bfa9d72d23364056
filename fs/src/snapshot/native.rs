//! The native snapshotter, for hosts where overlayfs cannot be used (a root on
//! overlayfs, a kernel without it): every snapshot is a full copy of its parent's tree
//! and mounts are binds. Slower and bigger, but it needs nothing from the kernel.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_mount::Mount;

use super::meta::{Record, Store};
use super::{
    copy::copy_tree, io_err, usage, Info, Kind, SnapshotError, Snapshotter, SnapshotterKind, Usage,
};

/// Copy-based snapshots: `<root>/snapshots/<id>/fs` is the complete tree.
pub struct NativeSnapshotter {
    store: Store,
}

impl NativeSnapshotter {
    /// Opens (creating) a native snapshotter rooted at `root`.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Ok(NativeSnapshotter {
            store: Store::open(root)?,
        })
    }

    fn fs_of(&self, rec: &Record) -> PathBuf {
        self.store.dir(rec.id).join("fs")
    }

    /// Builds the new snapshot's tree (a copy of the parent for actives) off to the
    /// side, then records it. Views need no copy: committed trees never change.
    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let tmp = self.store.temp_dir("new");
        let fs = tmp.join("fs");
        let built = (|| {
            std::fs::create_dir_all(&tmp).map_err(io_err("creating", &tmp))?;
            match (kind, parent) {
                (Kind::Active, Some(p)) => {
                    let src = self.fs_of(&self.store.get(p)?);
                    copy_tree(&src, &fs).map_err(io_err("copying parent tree into", &fs))
                }
                _ => std::fs::create_dir(&fs).map_err(io_err("creating", &fs)),
            }
        })();
        let rec = built.and_then(|()| self.store.create(key, parent, kind, &tmp));
        if rec.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        self.mounts_of(&rec?)
    }

    fn mounts_of(&self, rec: &Record) -> Result<Vec<Mount>, SnapshotError> {
        let own = self.fs_of(rec).display().to_string();
        Ok(match (rec.info.kind, &rec.info.parent) {
            (Kind::Committed, _) => {
                return Err(SnapshotError::WrongKind {
                    key: rec.info.key.clone(),
                    actual: Kind::Committed,
                    expected: Kind::Active,
                })
            }
            (Kind::Active, _) => vec![Mount::bind(own, false)],
            (Kind::View, None) => vec![Mount::bind(own, true)],
            (Kind::View, Some(p)) => vec![Mount::bind(
                self.fs_of(&self.store.get(p)?).display().to_string(),
                true,
            )],
        })
    }
}

impl Snapshotter for NativeSnapshotter {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Native
    }

    fn root(&self) -> &Path {
        self.store.root()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        self.mounts_of(&self.store.get(key)?)
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        self.store.commit(name, key, None)
    }

    /// A native tree already contains its parent's files, so it cannot be re-parented:
    /// only the parent it was prepared on is accepted.
    fn commit_with_parent(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError> {
        let rec = self.store.get(key)?;
        if rec.info.parent.as_deref() != parent {
            let parent = rec.info.parent.unwrap_or_else(|| "<none>".into());
            return Err(SnapshotError::ParentConflict {
                key: key.into(),
                parent,
            });
        }
        self.store.commit(name, key, None)
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.store.remove(key)
    }

    fn remove_detached(&self, key: &str) -> Result<Option<PathBuf>, SnapshotError> {
        self.store.remove_detached(key)
    }

    fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        Ok(self.store.get(key)?.info)
    }

    fn update_labels(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Info, SnapshotError> {
        Ok(self.store.set_labels(key, &labels)?.info)
    }

    fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        usage::usage(&self.fs_of(&self.store.get(key)?))
    }

    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        Ok(self.store.list()?.into_iter().map(|r| r.info).collect())
    }

    fn fs_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.fs_of(&self.store.get(key)?))
    }

    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>, SnapshotError> {
        Ok(self.store.chain(key)?[1..]
            .iter()
            .map(|r| self.fs_of(r))
            .collect())
    }

    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        self.store.cleanup()
    }

    fn check(&self) -> Result<Vec<String>, SnapshotError> {
        self.store.check(&["fs"])
    }
}
