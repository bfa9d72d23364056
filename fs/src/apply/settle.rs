//! Settling a layer that was applied alone (overlay layers are applied in parallel, each
//! into an empty directory) once its lower layers are known.
//!
//! Applied alone, a layer cannot tell two things a sequential apply onto the merged
//! tree would see:
//! - a whiteout of a path no lower layer has: it must be a no-op, but alone it became a
//!   whiteout device (in a directory overlayfs does not merge, a phantom name that lists
//!   and cannot be opened). Such markers are removed here.
//! - a directory the layer had to create for its entries (no entry declared it) where the
//!   merged tree has a non-directory, a symlink above all: a sequential apply resolves
//!   the entries through that symlink inside the root (or fails on a file), while the
//!   parallel one shadowed it with a new directory. Such a layer is reported, and the
//!   caller applies it again on top of its mounted lower layers.
//!
//! Lower layers are read with overlayfs's own rules, nearest first: a 0/0 character
//! device hides a name, `trusted.overlay.opaque=y` hides what lies below a directory, a
//! non-directory hides everything below it.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::{ApplyError, ApplyStats};

/// What the merged lower layers hold at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Found {
    /// A directory.
    Dir,
    /// Something else.
    Other,
    /// Nothing: the path cannot exist, because an ancestor is a non-directory.
    Blocked,
}

/// What [`settle`] concluded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Settled {
    /// The layer is right as applied; `dropped` whiteouts of nothing were removed.
    Done {
        /// Whiteout markers removed.
        dropped: usize,
    },
    /// The layer must be applied again onto its mounted lower layers: it created the
    /// directory `path` where they hold a non-directory.
    Ordered {
        /// The directory, as the layer names it.
        path: PathBuf,
    },
}

/// Settles the layer at `layer` against `lowers` (its lower layers' directories,
/// nearest first); see the module docs.
pub fn settle(layer: &Path, lowers: &[PathBuf], stats: &ApplyStats) -> Result<Settled, ApplyError> {
    for dir in &stats.implicit_dirs {
        if matches!(visible(lowers, dir)?, Some(Found::Other | Found::Blocked)) {
            return Ok(Settled::Ordered {
                path: PathBuf::from(OsStr::from_bytes(dir)),
            });
        }
    }
    let mut dropped = 0;
    for w in &stats.whiteouts {
        if matches!(visible(lowers, w)?, Some(Found::Dir | Found::Other)) {
            continue;
        }
        let p = layer.join(OsStr::from_bytes(w));
        let is_marker = std::fs::symlink_metadata(&p)
            .is_ok_and(|m| m.file_type().is_char_device() && m.rdev() == 0);
        if is_marker {
            std::fs::remove_file(&p).map_err(|source| ApplyError::Fs {
                op: "removing the whiteout of nothing",
                path: PathBuf::from(OsStr::from_bytes(w)),
                source,
            })?;
            dropped += 1;
        }
    }
    Ok(Settled::Done { dropped })
}

/// What the merged view of `lowers` holds at `path` (`/`-joined, relative).
fn visible(lowers: &[PathBuf], path: &[u8]) -> Result<Option<Found>, ApplyError> {
    let parts: Vec<&[u8]> = path
        .split(|b| *b == b'/')
        .filter(|c| !c.is_empty())
        .collect();
    if parts.is_empty() {
        return Ok(Some(Found::Dir));
    }
    let mut layers: Vec<&PathBuf> = lowers.iter().collect();
    let mut prefix = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        prefix.push(OsStr::from_bytes(part));
        let mut found = None;
        let mut below = Vec::new();
        for l in layers {
            let p = l.join(&prefix);
            let md = match std::fs::symlink_metadata(&p) {
                Ok(md) => md,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => continue,
                Err(source) => {
                    return Err(ApplyError::Fs {
                        op: "looking up in a lower layer",
                        path: p,
                        source,
                    })
                }
            };
            if md.file_type().is_char_device() && md.rdev() == 0 {
                break; // a whiteout: nothing further down shows
            }
            if !md.is_dir() {
                if found.is_none() {
                    found = Some(Found::Other);
                }
                break; // a non-directory hides the rest; below a directory it is hidden
            }
            found = Some(Found::Dir);
            below.push(l);
            let opaque = xattr::get(&p, "trusted.overlay.opaque")
                .ok()
                .flatten()
                .is_some_and(|v| v == b"y");
            if opaque {
                break;
            }
        }
        if i + 1 == parts.len() {
            return Ok(found);
        }
        match found {
            Some(Found::Dir) => {}
            Some(_) => return Ok(Some(Found::Blocked)),
            None => return Ok(None),
        }
        layers = below;
    }
    Ok(None)
}

/// Removes the xattrs overlayfs leaves in an upper directory for its own bookkeeping
/// (`trusted.overlay.impure`, `.origin`, ...) from every entry under `dir`, keeping
/// `trusted.overlay.opaque`: an upper that becomes a layer must say only what a layer
/// says. Symlinks are not followed.
pub fn scrub_overlay_xattrs(dir: &Path) -> Result<(), ApplyError> {
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let fs_err = |op| {
            let p = p.clone();
            move |source| ApplyError::Fs {
                op,
                path: p,
                source,
            }
        };
        let md = std::fs::symlink_metadata(&p).map_err(fs_err("stat"))?;
        if md.file_type().is_symlink() {
            continue;
        }
        for name in xattr::list(&p).map_err(fs_err("listing xattrs of"))? {
            let n = name.as_bytes();
            if n.starts_with(b"trusted.overlay.") && n != b"trusted.overlay.opaque" {
                xattr::remove(&p, &name).map_err(fs_err("removing an overlay xattr from"))?;
            }
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p).map_err(fs_err("listing"))? {
                stack.push(e.map_err(fs_err("listing"))?.path());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(implicit: &[&str], whiteouts: &[&str]) -> ApplyStats {
        ApplyStats {
            diff_id: String::new(),
            size: 0,
            entries: 0,
            compression: crate::Compression::None,
            file_hashes: Default::default(),
            file_blocks: Default::default(),
            whiteouts: whiteouts.iter().map(|s| s.as_bytes().to_vec()).collect(),
            implicit_dirs: implicit.iter().map(|s| s.as_bytes().to_vec()).collect(),
        }
    }

    #[test]
    fn lower_lookups_follow_overlay_rules() {
        let t = tempfile::tempdir().expect("tmp");
        let (l1, l2) = (t.path().join("l1"), t.path().join("l2"));
        std::fs::create_dir_all(l2.join("d/sub")).expect("mkdir");
        std::fs::write(l2.join("d/sub/f"), "x").expect("write");
        std::fs::write(l2.join("file"), "x").expect("write");
        std::fs::create_dir_all(l1.join("d")).expect("mkdir");
        std::os::unix::fs::symlink("/elsewhere", l2.join("link")).expect("symlink");
        let lowers = vec![l1.clone(), l2.clone()];
        assert_eq!(visible(&lowers, b"d/sub/f").expect("v"), Some(Found::Other));
        assert_eq!(visible(&lowers, b"link").expect("v"), Some(Found::Other));
        assert_eq!(
            visible(&lowers, b"link/x").expect("v"),
            Some(Found::Blocked)
        );
        assert_eq!(
            visible(&lowers, b"file/x").expect("v"),
            Some(Found::Blocked)
        );
        assert_eq!(visible(&lowers, b"nothing").expect("v"), None);
        // An opaque directory in l1 hides l2's children.
        xattr::set(l1.join("d"), "trusted.overlay.opaque", b"y").expect("opaque");
        assert_eq!(visible(&lowers, b"d/sub").expect("v"), None);
        // A whiteout in l1 hides l2's file.
        nix::sys::stat::mknod(
            &l1.join("file"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        assert_eq!(visible(&lowers, b"file").expect("v"), None);
    }

    #[test]
    fn settling_drops_whiteouts_of_nothing_and_flags_dirs_over_symlinks() {
        let t = tempfile::tempdir().expect("tmp");
        let (layer, lower) = (t.path().join("layer"), t.path().join("lower"));
        std::fs::create_dir_all(layer.join("sub")).expect("mkdir");
        std::fs::create_dir_all(lower.join("real")).expect("mkdir");
        std::fs::write(lower.join("real/x"), "x").expect("write");
        std::os::unix::fs::symlink("real", lower.join("sl")).expect("symlink");
        for w in ["sub/ghost", "real/x"] {
            nix::sys::stat::mknod(
                &layer.join(w.replace("real/", "")),
                nix::sys::stat::SFlag::S_IFCHR,
                nix::sys::stat::Mode::empty(),
                0,
            )
            .ok();
        }
        std::fs::create_dir_all(layer.join("real")).expect("mkdir");
        nix::sys::stat::mknod(
            &layer.join("real/x"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .expect("whiteout");
        let lowers = vec![lower];
        let s = stats(&["sub", "real"], &["sub/ghost", "real/x"]);
        assert_eq!(
            settle(&layer, &lowers, &s).expect("settle"),
            Settled::Done { dropped: 1 }
        );
        assert!(!layer.join("sub/ghost").exists());
        assert!(
            std::fs::symlink_metadata(layer.join("real/x")).is_ok(),
            "a real whiteout stays"
        );
        let s = stats(&["sl"], &["sl/x"]);
        assert_eq!(
            settle(&layer, &lowers, &s).expect("settle"),
            Settled::Ordered {
                path: PathBuf::from("sl")
            }
        );
    }
}
