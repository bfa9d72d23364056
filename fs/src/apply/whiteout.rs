//! Whiteouts and opaque markers, in overlay form or applied as deletions.
//!
//! A whiteout only hides what lower layers had: entries of this same layer survive it
//! whatever the order in the tar. In delete mode that is done by remembering every path
//! the layer touched and pruning only the rest.

use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;
use nix::sys::stat::{mkdirat, mknodat, Mode, SFlag};

use super::entry::{fs_err, Applier};
use super::path::RelPath;
use super::resolve::{self, fd_path, file_type, lstat_at, open_child_dir};
use super::{ApplyError, WhiteoutMode};

/// The xattr overlayfs reads to hide a lower directory's children.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";

impl Applier {
    /// `dir/.wh.name`: hide `dir/name` of lower layers.
    pub(super) fn whiteout(&mut self, dir: &RelPath, name: &[u8]) -> Result<(), ApplyError> {
        let path = dir.child(name);
        match self.mode {
            WhiteoutMode::Overlay => self.whiteout_overlay(dir, name, &path),
            WhiteoutMode::Delete => {
                let Some(pfd) = self.existing_dir(dir, &path)? else {
                    return Ok(());
                };
                self.delete_lower(&pfd, name, &path)
            }
        }
    }

    /// `dir/.wh..wh..opq`: hide every lower child of `dir`.
    pub(super) fn opaque(&mut self, dir: &RelPath) -> Result<(), ApplyError> {
        let Some((parent, name)) = dir.split_last() else {
            // The root has no lower children in overlay form; delete mode prunes it.
            if self.mode == WhiteoutMode::Delete {
                let fd = self.root.open_dir(dir).map_err(fs_err("opening", dir))?;
                return self.prune(&fd, b"", dir);
            }
            return Ok(());
        };
        match self.mode {
            WhiteoutMode::Overlay => {
                let pfd = self.parent(&parent, dir)?;
                match mkdirat(
                    pfd.as_fd(),
                    OsStr::from_bytes(name),
                    Mode::from_bits_truncate(0o755),
                ) {
                    Ok(()) => {
                        self.touched.insert(dir);
                        self.implicit.insert(dir.joined());
                    }
                    Err(Errno::EEXIST) => {}
                    Err(e) => return Err(fs_err("mkdir", dir)(e)),
                }
                let is_dir = lstat_at(&pfd, name).map_err(fs_err("lstat", dir))?;
                if is_dir.is_some_and(|st| file_type(&st) == SFlag::S_IFDIR) {
                    self.set_opaque_xattr(&pfd, name, dir)?;
                }
                Ok(())
            }
            WhiteoutMode::Delete => {
                let Some(pfd) = self.existing_dir(&parent, dir)? else {
                    return Ok(());
                };
                match lstat_at(&pfd, name).map_err(fs_err("lstat", dir))? {
                    Some(st) if file_type(&st) == SFlag::S_IFDIR => self.prune(&pfd, name, dir),
                    _ => Ok(()),
                }
            }
        }
    }

    pub(super) fn set_opaque_xattr(
        &self,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
    ) -> Result<(), ApplyError> {
        xattr::set(fd_path(pfd, name), OPAQUE_XATTR, b"y").map_err(|source| ApplyError::Fs {
            op: "marking opaque",
            path: path.display(),
            source,
        })
    }

    fn whiteout_overlay(
        &mut self,
        dir: &RelPath,
        name: &[u8],
        path: &RelPath,
    ) -> Result<(), ApplyError> {
        let pfd = self.parent(dir, path)?;
        let existing = lstat_at(&pfd, name).map_err(fs_err("lstat", path))?;
        if self.touched.contains(path) {
            // This layer's own entry stays; a directory of it must not merge with the lower one.
            if existing.is_some_and(|st| file_type(&st) == SFlag::S_IFDIR) {
                self.set_opaque_xattr(&pfd, name, path)?;
            }
            return Ok(());
        }
        if existing.is_some() {
            resolve::remove_all_at(&pfd, name).map_err(fs_err("removing", path))?;
        }
        mknodat(
            pfd.as_fd(),
            OsStr::from_bytes(name),
            SFlag::S_IFCHR,
            Mode::empty(),
            0,
        )
        .map_err(fs_err("making whiteout", path))?;
        self.whiteouts.insert(path.joined());
        Ok(())
    }

    /// The directory `dir` if it exists (resolved in the root); `None` if it does not.
    fn existing_dir(&self, dir: &RelPath, entry: &RelPath) -> Result<Option<OwnedFd>, ApplyError> {
        match self.root.open_dir(dir) {
            Ok(fd) => Ok(Some(fd)),
            Err(Errno::ENOENT | Errno::ENOTDIR) => Ok(None),
            Err(e) => Err(fs_err("opening parent of", entry)(e)),
        }
    }

    /// Removes `name` under `pfd` unless this layer put it there; keeps what this layer
    /// put below it.
    fn delete_lower(
        &mut self,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
    ) -> Result<(), ApplyError> {
        if !self.touched.contains(path) {
            return resolve::remove_all_at(pfd, name).map_err(fs_err("removing", path));
        }
        match lstat_at(pfd, name).map_err(fs_err("lstat", path))? {
            Some(st) if file_type(&st) == SFlag::S_IFDIR => self.prune(pfd, name, path),
            _ => Ok(()),
        }
    }

    /// Removes every child of the directory `name` under `pfd` this layer did not touch.
    fn prune(&mut self, pfd: &OwnedFd, name: &[u8], path: &RelPath) -> Result<(), ApplyError> {
        let dfd = if name.is_empty() {
            self.root.open_dir(path).map_err(fs_err("opening", path))?
        } else {
            open_child_dir(pfd, name).map_err(fs_err("opening", path))?
        };
        let children = resolve::list_dir(&dfd, b"").map_err(fs_err("listing", path))?;
        for c in children {
            self.delete_lower(&dfd, &c, &path.child(&c))?;
        }
        Ok(())
    }
}
