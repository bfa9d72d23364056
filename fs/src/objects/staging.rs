//! Where an index-only ingest keeps the objects it makes until its layer is recorded.
//!
//! `objects/.staging-<pid>-<n>/` holds the files by id; its owner keeps the lock file
//! `objects/.staging-<pid>-<n>.lock` flock'ed (locked before the directory exists), and
//! gc removes staging directories whose lock nobody holds (their ingest was killed). Objects become visible under their ids only inside the index transaction
//! that records the layer naming them, so gc, which sweeps inside such a transaction
//! too, never sees an object that nothing names yet and is still wanted.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::fcntl::{Flock, FlockArg};

use super::{io_err, ObjectError, ObjectStore};

/// Prefix of staging directories in the object root.
pub(super) const PREFIX: &str = ".staging-";

/// One ingest's staging directory; removed on drop. Files in it are named by their
/// object id; anything else (names starting with `.`) is work in progress.
pub struct Staging {
    dir: PathBuf,
    _lock: Flock<File>,
}

impl Staging {
    /// Makes a fresh staging directory under `root` and locks it.
    pub(super) fn new(root: &Path) -> Result<Staging, ObjectError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        loop {
            let dir = root.join(format!(
                "{PREFIX}{}-{}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ));
            let lock_path = lock_of(&dir);
            let file = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(io_err("creating", &lock_path))?;
            let lock = Flock::lock(file, FlockArg::LockExclusive)
                .map_err(|(_, e)| io_err("locking", &lock_path)(e.into()))?;
            // gc may have taken the lock file for a dead maker's before we locked it.
            let ours = fs::metadata(&lock_path)
                .and_then(|on_disk| Ok(on_disk.ino() == lock.metadata()?.ino()))
                .unwrap_or(false);
            if !ours {
                continue;
            }
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            return Ok(Staging { dir, _lock: lock });
        }
    }

    /// The directory new files are written in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Names the finished file `tmp` as object `id` (an object staged twice is kept once).
    pub(super) fn stage(&self, tmp: &Path, id: &str) -> Result<(), ObjectError> {
        let dest = self.dir.join(id);
        if dest.exists() {
            return Ok(());
        }
        fs::rename(tmp, &dest).map_err(io_err("staging", tmp))
    }

    /// Stages the existing file `file` as object `id` (a new name of its inode), unless
    /// the store or this staging has it already.
    pub(super) fn stage_link(
        &self,
        file: &Path,
        id: &str,
        store: &ObjectStore,
    ) -> Result<(), ObjectError> {
        let dest = self.dir.join(id);
        if store.path(id).exists() || dest.exists() {
            return Ok(());
        }
        fs::hard_link(file, &dest).map_err(io_err("staging", file))
    }

    /// Moves every staged object under its id into `store` (present already: the same
    /// content, stored once; the staged copy goes on drop). Call it inside the index
    /// transaction.
    pub(super) fn publish(&self, store: &ObjectStore) -> Result<(), ObjectError> {
        use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};
        for e in fs::read_dir(&self.dir).map_err(io_err("listing", &self.dir))? {
            let e = e.map_err(io_err("listing", &self.dir))?;
            let Some(id) = e.file_name().to_str().map(str::to_string) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            let obj = store.path(&id);
            let fan = obj.parent().unwrap_or(store.dir());
            let moved = |src: &Path| {
                renameat2(AT_FDCWD, src, AT_FDCWD, &obj, RenameFlags::RENAME_NOREPLACE)
            };
            let src = e.path();
            let r = match moved(&src) {
                Err(nix::errno::Errno::ENOENT) => {
                    fs::create_dir_all(fan).map_err(io_err("creating", fan))?;
                    moved(&src)
                }
                r => r,
            };
            match r {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(io_err("publishing object", &obj)(e.into())),
            }
        }
        Ok(())
    }
}

impl Drop for Staging {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
        let _ = fs::remove_file(lock_of(&self.dir));
    }
}

fn lock_of(dir: &Path) -> PathBuf {
    let mut name = dir.file_name().unwrap_or_default().to_os_string();
    name.push(".lock");
    dir.with_file_name(name)
}

/// Removes staging directories (and temporary files of older berths) under `root` that
/// no live ingest holds; returns how many.
pub(super) fn remove_abandoned(root: &Path) -> Result<usize, ObjectError> {
    let mut removed = 0;
    for e in fs::read_dir(root).map_err(io_err("listing", root))? {
        let e = e.map_err(io_err("listing", root))?;
        let name = e.file_name();
        let name = name.as_encoded_bytes();
        let p = e.path();
        if name.starts_with(b".ingest-") {
            fs::remove_file(&p).map_err(io_err("removing", &p))?;
            removed += 1;
        } else if name.starts_with(PREFIX.as_bytes()) && !name.ends_with(b".lock") {
            let lock = lock_of(&p);
            if is_held(&lock) {
                continue;
            }
            fs::remove_dir_all(&p).map_err(io_err("removing", &p))?;
            let _ = fs::remove_file(&lock);
            removed += 1;
        } else if name.starts_with(PREFIX.as_bytes()) && !is_held(&p) && !lock_dir(&p).exists() {
            let _ = fs::remove_file(&p); // a lock whose maker died before making its dir
        }
    }
    Ok(removed)
}

fn lock_dir(lock: &Path) -> PathBuf {
    lock.with_extension("")
}

fn is_held(lock: &Path) -> bool {
    let Ok(file) = File::open(lock) else {
        return false;
    };
    Flock::lock(file, FlockArg::LockExclusiveNonblock).is_err()
}
