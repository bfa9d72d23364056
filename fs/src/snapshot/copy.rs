//! A full tree copy that keeps everything a layer can carry: types, modes with special
//! bits, owners, xattrs, devices, symlinks, hardlinks within the tree and mtimes. The
//! native snapshotter builds each snapshot from its parent with it.

use std::collections::HashMap;
use std::fs::{self, File, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::sys::stat::{mknod, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;

/// Copies the tree at `src` to `dst` (created; must not exist, or be an empty dir).
/// Never follows symlinks; directory times are set after their contents.
pub fn copy_tree(src: &Path, dst: &Path) -> io::Result<()> {
    let mut c = Copier {
        links: HashMap::new(),
        dirs: Vec::new(),
    };
    c.copy(src, dst)?;
    for (dir, md) in c.dirs.iter().rev() {
        set_times(dir, md)?;
    }
    Ok(())
}

struct Copier {
    /// First copy of each multiply-linked inode, to link the others to.
    links: HashMap<(u64, u64), PathBuf>,
    dirs: Vec<(PathBuf, Metadata)>,
}

impl Copier {
    fn copy(&mut self, src: &Path, dst: &Path) -> io::Result<()> {
        let md = fs::symlink_metadata(src)?;
        let ft = md.file_type();
        if ft.is_dir() {
            match fs::create_dir(dst) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => return Err(e),
                _ => {}
            }
            let mut names: Vec<_> = fs::read_dir(src)?
                .map(|e| e.map(|e| e.file_name()))
                .collect::<Result<_, _>>()?;
            names.sort();
            for n in names {
                self.copy(&src.join(&n), &dst.join(&n))?;
            }
            set_attrs(src, dst, &md)?;
            self.dirs.push((dst.to_path_buf(), md));
            return Ok(());
        }
        if ft.is_file() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                return fs::hard_link(first, dst);
            }
            self.links.insert((md.dev(), md.ino()), dst.to_path_buf());
        }
        if ft.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(src)?, dst)?;
        } else if ft.is_file() {
            let from = File::open(src)?;
            let to = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(dst)?;
            copy_data(&from, &to, md.len())?;
        } else {
            let kind = if ft.is_char_device() {
                SFlag::S_IFCHR
            } else if ft.is_block_device() {
                SFlag::S_IFBLK
            } else if ft.is_socket() {
                SFlag::S_IFSOCK
            } else {
                SFlag::S_IFIFO
            };
            mknod(
                dst,
                kind,
                Mode::from_bits_truncate(md.mode() & 0o777),
                md.rdev(),
            )?;
        }
        set_attrs(src, dst, &md)?;
        set_times(dst, &md)
    }
}

/// Copies a file's data region by region (SEEK_DATA / SEEK_HOLE), so holes stay holes,
/// then sizes the copy.
fn copy_data(from: &File, to: &File, len: u64) -> io::Result<()> {
    use nix::unistd::{lseek, Whence};
    use std::os::fd::AsFd;
    let mut at: i64 = 0;
    let end = len as i64;
    while at < end {
        let start = match lseek(from.as_fd(), at, Whence::SeekData) {
            Ok(s) => s,
            Err(nix::errno::Errno::ENXIO) => break, // only a hole is left
            Err(e) => return Err(e.into()),
        };
        let stop = lseek(from.as_fd(), start, Whence::SeekHole)?.min(end);
        let (mut src_off, mut dst_off) = (start, start);
        while src_off < stop {
            let want = (stop - src_off) as usize;
            let n = nix::fcntl::copy_file_range(
                from.as_fd(),
                Some(&mut src_off),
                to.as_fd(),
                Some(&mut dst_off),
                want,
            )?;
            if n == 0 {
                break;
            }
        }
        at = stop;
    }
    to.set_len(len)
}

/// Owner, then mode (chown clears setuid), then xattrs (chown clears capabilities).
fn set_attrs(src: &Path, dst: &Path, md: &Metadata) -> io::Result<()> {
    std::os::unix::fs::lchown(dst, Some(md.uid()), Some(md.gid()))?;
    if !md.file_type().is_symlink() {
        fs::set_permissions(dst, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    }
    for name in xattr::list(src)? {
        if let Some(v) = xattr::get(src, &name)? {
            xattr::set(dst, &name, &v)?;
        }
    }
    Ok(())
}

fn set_times(dst: &Path, md: &Metadata) -> io::Result<()> {
    let at = TimeSpec::new(md.atime(), md.atime_nsec());
    let mt = TimeSpec::new(md.mtime(), md.mtime_nsec());
    utimensat(
        nix::fcntl::AT_FDCWD,
        dst,
        &at,
        &mt,
        UtimensatFlags::NoFollowSymlink,
    )?;
    Ok(())
}
