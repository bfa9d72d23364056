//! Opening directories inside the layer root the way `openat2(RESOLVE_IN_ROOT)` does.
//!
//! Every directory an entry lands in is opened by the kernel with the root fd treated
//! as `/`: absolute symlinks, `..` and symlinked parents all resolve inside the root,
//! and magic links (`/proc/self/...`) are refused. Entries are then created relative to
//! that directory fd with `*at` calls that never follow the last component.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat, openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, mkdirat, FileStat, Mode, SFlag};
use nix::unistd::{unlinkat, UnlinkatFlags};

use super::path::RelPath;

/// Symlinks followed while creating missing parents before giving up (as `SYMLOOP_MAX`).
const MAX_LINK_HOPS: usize = 40;

/// Why a directory inside the root could not be opened or created.
#[derive(Debug)]
pub enum ResolveError {
    /// The kernel refused (ENOTDIR when a component is a file, ELOOP, ...).
    Sys(Errno),
    /// Too many dangling symlinks were met while creating parents.
    TooManyLinks,
}

impl From<Errno> for ResolveError {
    fn from(e: Errno) -> Self {
        ResolveError::Sys(e)
    }
}

/// The layer root, held open so every lookup starts from the same directory.
pub struct Root {
    fd: OwnedFd,
}

impl Root {
    /// Opens `root` (which must be a directory).
    pub fn open(root: &Path) -> nix::Result<Root> {
        let fd = nix::fcntl::open(
            root,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )?;
        Ok(Root { fd })
    }

    /// Opens an existing directory inside the root (`O_PATH`), resolving in the root.
    pub fn open_dir(&self, rel: &RelPath) -> nix::Result<OwnedFd> {
        let how = OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS);
        openat2(self.fd.as_fd(), OsStr::from_bytes(&rel.for_open()), how)
    }

    /// Opens the directory `rel`, creating missing components as 0755 directories.
    ///
    /// A dangling symlink on the way is followed the way the kernel would (inside the
    /// root) and its target created; `created` receives every directory made.
    pub fn ensure_dir(
        &self,
        rel: &RelPath,
        created: &mut Vec<RelPath>,
    ) -> Result<OwnedFd, ResolveError> {
        self.ensure_dir_hops(rel, created, 0)
    }

    fn ensure_dir_hops(
        &self,
        rel: &RelPath,
        created: &mut Vec<RelPath>,
        hops: usize,
    ) -> Result<OwnedFd, ResolveError> {
        match self.open_dir(rel) {
            Ok(fd) => return Ok(fd),
            Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        let Some((parent, name)) = rel.split_last() else {
            return Err(ResolveError::Sys(Errno::ENOENT));
        };
        let pfd = self.ensure_dir_hops(&parent, created, hops)?;
        match mkdirat(
            pfd.as_fd(),
            OsStr::from_bytes(name),
            Mode::from_bits_truncate(0o755),
        ) {
            Ok(()) => {
                created.push(rel.clone());
                Ok(open_child_dir(&pfd, name)?)
            }
            Err(Errno::EEXIST) => {
                // Something is there but did not open as a directory: a dangling symlink
                // (a file would have given ENOTDIR above). Follow it inside the root.
                if hops >= MAX_LINK_HOPS {
                    return Err(ResolveError::TooManyLinks);
                }
                let target = nix::fcntl::readlinkat(pfd.as_fd(), OsStr::from_bytes(name))?;
                let next = RelPath::join_link(&parent, target.as_bytes());
                self.ensure_dir_hops(&next, created, hops + 1)
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// Opens `name` under `dir` as a directory without following a symlink there.
pub fn open_child_dir(dir: &OwnedFd, name: &[u8]) -> nix::Result<OwnedFd> {
    openat(
        dir.as_fd(),
        OsStr::from_bytes(name),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// `lstat` of `name` under `dir`; `None` if it does not exist.
pub fn lstat_at(dir: &OwnedFd, name: &[u8]) -> nix::Result<Option<FileStat>> {
    match fstatat(
        dir.as_fd(),
        OsStr::from_bytes(name),
        AtFlags::AT_SYMLINK_NOFOLLOW,
    ) {
        Ok(st) => Ok(Some(st)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The file type bits of a stat result.
pub fn file_type(st: &FileStat) -> SFlag {
    SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits())
}

/// A path naming `name` under the open directory `dir`, for calls that only take paths
/// (xattrs, chmod). The kernel follows the `/proc/self/fd` magic link to our own fd;
/// calls made on it must not follow the final component unless told.
pub fn fd_path(dir: &OwnedFd, name: &[u8]) -> PathBuf {
    let mut p = PathBuf::from(format!("/proc/self/fd/{}", dir.as_raw_fd()));
    p.push(OsStr::from_bytes(if name.is_empty() { b"." } else { name }));
    p
}

/// Names in a directory (without `.` and `..`), read through a fresh fd.
pub fn list_dir(dir: &OwnedFd, name: &[u8]) -> nix::Result<Vec<Vec<u8>>> {
    let fd = openat(
        dir.as_fd(),
        OsStr::from_bytes(if name.is_empty() { b"." } else { name }),
        OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    let mut d = nix::dir::Dir::from_fd(fd)?;
    let mut out = Vec::new();
    for e in d.iter() {
        let n = e?.file_name().to_bytes().to_vec();
        if n != b"." && n != b".." {
            out.push(n);
        }
    }
    Ok(out)
}

/// Removes `name` under `dir` and, for a directory, everything below it, never
/// following symlinks.
pub fn remove_all_at(dir: &OwnedFd, name: &[u8]) -> nix::Result<()> {
    let Some(st) = lstat_at(dir, name)? else {
        return Ok(());
    };
    let os = OsStr::from_bytes(name);
    if file_type(&st) != SFlag::S_IFDIR {
        return unlinkat(dir.as_fd(), os, UnlinkatFlags::NoRemoveDir);
    }
    let child = open_child_dir(dir, name)?;
    for n in list_dir(&child, b"")? {
        remove_all_at(&child, &n)?;
    }
    unlinkat(dir.as_fd(), os, UnlinkatFlags::RemoveDir)
}
