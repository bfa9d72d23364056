//! Overlay diff: walk the upper directory only. A 0/0 char device is a whiteout, a
//! directory with `trusted.overlay.opaque=y` hides its lower contents; lower layers are
//! looked up only to tell added from modified and to list what an opaque dir hides.

use std::collections::BTreeSet;
use std::ffi::{OsStr, OsString};
use std::fs::Metadata;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, AtFlags, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

use super::{read_err, ChangeKind, DiffError, Visitor};

const OPAQUE: &str = "trusted.overlay.opaque";

fn is_whiteout(md: &Metadata) -> bool {
    md.file_type().is_char_device() && md.rdev() == 0
}

fn sorted_names(dir: &Path) -> Result<Vec<OsString>, DiffError> {
    let mut names: Vec<OsString> = std::fs::read_dir(dir)
        .map_err(read_err("listing", dir))?
        .map(|e| e.map(|e| e.file_name()))
        .collect::<Result<_, _>>()
        .map_err(read_err("listing", dir))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(names)
}

/// Walks `upper` (relative paths `/`-rooted), reporting to `v` in sorted order.
pub(crate) fn walk(upper: &Path, lowers: &[PathBuf], v: &mut dyn Visitor) -> Result<(), DiffError> {
    walk_dir(upper, Path::new("/"), lowers, v)
}

fn walk_dir(
    upper: &Path,
    rel: &Path,
    lowers: &[PathBuf],
    v: &mut dyn Visitor,
) -> Result<(), DiffError> {
    let dir = upper.join(rel.strip_prefix("/").unwrap_or(rel));
    for name in sorted_names(&dir)? {
        let abs = dir.join(&name);
        let child = rel.join(&name);
        let md = std::fs::symlink_metadata(&abs).map_err(read_err("stat", &abs))?;
        if is_whiteout(&md) {
            v.deleted(&child)?;
            continue;
        }
        let kind = if in_lowers(lowers, &child) {
            ChangeKind::Modified
        } else {
            ChangeKind::Added
        };
        v.entry(&child, &abs, &md, kind)?;
        if md.is_dir() {
            let opaque = xattr::get(&abs, OPAQUE).map_err(read_err("reading xattr of", &abs))?;
            if opaque.as_deref() == Some(b"y") {
                let hidden = hidden_children(lowers, &child, &abs)?;
                v.opaque(&child, &hidden)?;
            }
            walk_dir(upper, &child, lowers, v)?;
        }
    }
    Ok(())
}

/// Opens `rel`'s parent inside `lower` without following any symlink (a lower's
/// symlinks are data, not directions).
fn open_beneath(lower: &Path, rel: &Path) -> Option<OwnedFd> {
    let root = nix::fcntl::open(
        lower,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
    .ok()?;
    let r = rel.strip_prefix("/").unwrap_or(rel);
    let p = if r.as_os_str().is_empty() {
        Path::new(".")
    } else {
        r
    };
    let how = OpenHow::new()
        .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS);
    openat2(&root, p, how).ok()
}

enum Found {
    Present,
    WhitedOut,
    Absent,
    /// Absent, and the lower's directory is opaque or missing: deeper lowers are hidden.
    Hidden,
}

fn lookup(lower: &Path, rel: &Path) -> Found {
    let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
        return Found::Absent;
    };
    let Some(dir) = open_beneath(lower, parent) else {
        return match parent_exists_somehow(lower, parent) {
            true => Found::Hidden,
            false => Found::Absent,
        };
    };
    match fstatat(&dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
        Ok(st)
            if SFlag::from_bits_truncate(st.st_mode & SFlag::S_IFMT.bits()) == SFlag::S_IFCHR
                && st.st_rdev == 0 =>
        {
            Found::WhitedOut
        }
        Ok(_) => Found::Present,
        Err(Errno::ENOENT) => match xattr::get(dir_path(&dir), OPAQUE).ok().flatten().as_deref() {
            Some(b"y") => Found::Hidden,
            _ => Found::Absent,
        },
        Err(_) => Found::Absent,
    }
}

/// A parent that failed to open beneath the lower because it is a file, a symlink or a
/// whiteout hides everything below it in deeper lowers.
fn parent_exists_somehow(lower: &Path, parent: &Path) -> bool {
    let mut p = lower.to_path_buf();
    for c in parent.components().skip(1) {
        p.push(c);
        match std::fs::symlink_metadata(&p) {
            Ok(md) if md.is_dir() => {}
            Ok(_) => return true,
            Err(_) => return false,
        }
    }
    false
}

fn dir_path(fd: &OwnedFd) -> PathBuf {
    use std::os::fd::AsRawFd;
    PathBuf::from(format!("/proc/self/fd/{}/.", fd.as_raw_fd()))
}

/// Whether `rel` exists in the stack of `lowers` (nearest first).
fn in_lowers(lowers: &[PathBuf], rel: &Path) -> bool {
    for l in lowers {
        match lookup(l, rel) {
            Found::Present => return true,
            Found::WhitedOut | Found::Hidden => return false,
            Found::Absent => {}
        }
    }
    false
}

/// Children the lowers had under the opaque directory `rel` that the upper lacks.
fn hidden_children(
    lowers: &[PathBuf],
    rel: &Path,
    upper_dir: &Path,
) -> Result<Vec<PathBuf>, DiffError> {
    let own: BTreeSet<OsString> = sorted_names(upper_dir)?.into_iter().collect();
    let mut hidden = BTreeSet::new();
    for l in lowers {
        let Some(fd) = open_beneath(l, rel) else {
            break;
        };
        let dir = dir_path(&fd);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            break;
        };
        for e in entries.flatten() {
            let name = e.file_name();
            let whiteout = e.metadata().map(|md| is_whiteout(&md)).unwrap_or(false);
            if !whiteout && !own.contains(&name) {
                hidden.insert(name);
            }
        }
        if xattr::get(&dir, OPAQUE).ok().flatten().as_deref() == Some(b"y") {
            break;
        }
    }
    Ok(hidden
        .into_iter()
        .map(|n| rel.join(OsStr::from_bytes(n.as_bytes())))
        .collect())
}
