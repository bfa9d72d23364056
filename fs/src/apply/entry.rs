//! One tar entry at a time: resolve its parent inside the root, clear what is in the
//! way, create the node relative to the parent fd, then set owner, mode, xattrs, times.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};

use nix::errno::Errno;
use nix::fcntl::{openat, AtFlags, OFlag};
use nix::sys::stat::{makedev, mkdirat, mknodat, utimensat, Mode, SFlag, UtimensatFlags};
use nix::sys::time::TimeSpec;
use nix::unistd::{fchownat, linkat, symlinkat, Gid, Uid};
use tar::EntryType;

use super::meta::{read_meta, Meta};
use super::path::{marker, Marker, RelPath};
use super::resolve::{self, fd_path, file_type, lstat_at, ResolveError, Root};
use super::{ApplyError, Touched, WhiteoutMode};

/// Copy chunk; all-zero chunks become holes, which keeps sparse files sparse.
const CHUNK: usize = 64 * 1024;
static ZEROS: [u8; CHUNK] = [0; CHUNK];

/// The state of one layer apply.
pub(super) struct Applier {
    pub root: Root,
    pub mode: WhiteoutMode,
    pub touched: Touched,
    /// Whiteout devices this layer made (overlay mode), so a later directory of the
    /// same name is made opaque instead of merging with the lower one.
    pub whiteouts: HashSet<Vec<u8>>,
    dir_times: Vec<(RelPath, TimeSpec)>,
    pub entries: u64,
    /// blake3 of each regular file written, by inode (when asked for).
    pub file_hashes: Option<HashMap<u64, blake3::Hash>>,
    /// With stubs: where content goes; and each content's allocated bytes by stub inode.
    stubs: Option<super::stubs::StubWriter>,
    pub file_blocks: HashMap<u64, u64>,
    /// Directories created for entries that no entry declared (yet).
    pub implicit: std::collections::BTreeSet<Vec<u8>>,
    /// Apparent bytes of the files written, holes included, and their limit.
    expanded: u64,
    max_size: Option<u64>,
}

pub(super) fn fs_err<'a>(
    op: &'static str,
    p: &'a RelPath,
) -> impl FnOnce(Errno) -> ApplyError + 'a {
    move |e| ApplyError::Fs {
        op,
        path: p.display(),
        source: io::Error::from(e),
    }
}

pub(super) fn io_err<'a>(
    op: &'static str,
    p: &'a RelPath,
) -> impl FnOnce(io::Error) -> ApplyError + 'a {
    move |source| ApplyError::Fs {
        op,
        path: p.display(),
        source,
    }
}

impl Applier {
    pub fn new(root: Root, mode: WhiteoutMode, hash_files: bool, max_size: Option<u64>) -> Self {
        Applier {
            root,
            mode,
            touched: Touched::default(),
            whiteouts: HashSet::new(),
            dir_times: Vec::new(),
            entries: 0,
            file_hashes: hash_files.then(HashMap::new),
            implicit: Default::default(),
            stubs: None,
            file_blocks: HashMap::new(),
            expanded: 0,
            max_size,
        }
    }

    /// Writes regular files as stubs, their content into the directory `dir`.
    pub fn stubs_into(&mut self, dir: &std::path::Path) -> nix::Result<()> {
        self.stubs = Some(super::stubs::StubWriter::open(dir)?);
        Ok(())
    }

    /// Counts a file's apparent size against the layer's limit.
    fn expand(&mut self, bytes: u64) -> Result<(), ApplyError> {
        self.expanded = self.expanded.saturating_add(bytes);
        match self.max_size {
            Some(limit) if self.expanded > limit => Err(ApplyError::SizeLimit { limit }),
            _ => Ok(()),
        }
    }

    /// Opens (creating as needed) the directory `dir`, recording what was created.
    pub fn parent(&mut self, dir: &RelPath, entry: &RelPath) -> Result<OwnedFd, ApplyError> {
        let mut created = Vec::new();
        let fd = self
            .root
            .ensure_dir(dir, &mut created)
            .map_err(|e| match e {
                ResolveError::Sys(errno) => fs_err("opening parent of", entry)(errno),
                ResolveError::TooManyLinks => ApplyError::TooManyLinks {
                    path: entry.display(),
                },
            });
        for c in &created {
            self.touched.insert(c);
            self.implicit.insert(c.joined());
        }
        fd
    }

    pub fn apply_entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), ApplyError> {
        let kind = e.header().entry_type();
        if is_meta_header(kind) {
            return Ok(());
        }
        self.entries += 1;
        let mut raw = e.path_bytes().into_owned();
        let sparse = match kind {
            EntryType::Regular | EntryType::Continuous => {
                super::sparse::pax_sparse(e, &RelPath::clean(&raw))?
            }
            _ => None,
        };
        if let Some(s) = &sparse {
            raw = s.name.clone(); // the real name; the header's is GNUSparseFile.N/NAME
        }
        let path = RelPath::clean(&raw);
        let Some((dir, name)) = path.split_last() else {
            return self.apply_root(e, kind, &raw);
        };
        let name = name.to_vec();
        match marker(&name) {
            Marker::None => {}
            Marker::AufsMeta => return Ok(()),
            Marker::Invalid => {
                return Err(ApplyError::InvalidPath {
                    path: OsStr::from_bytes(&raw).into(),
                })
            }
            Marker::Whiteout(target) => return self.whiteout(&dir, target),
            Marker::Opaque => return self.opaque(&dir),
        }
        let meta = read_meta(e, &path)?;
        let pfd = self.parent(&dir, &path)?;
        self.touched.insert(&path);
        if kind == EntryType::Directory {
            self.implicit.remove(&path.joined()); // declared after all
        }
        let existing = lstat_at(&pfd, &name).map_err(fs_err("lstat", &path))?;
        let existing_dir = existing
            .as_ref()
            .is_some_and(|st| file_type(st) == SFlag::S_IFDIR);
        if kind == EntryType::Directory && existing_dir {
            return self.set_attrs(&pfd, &name, &path, &meta, true);
        }
        let was_whiteout = existing.is_some() && self.whiteouts.remove(&path.joined());
        if existing.is_some() {
            resolve::remove_all_at(&pfd, &name).map_err(fs_err("removing", &path))?;
        }
        let file = self.create(e, kind, &pfd, &name, &path, &meta, sparse.as_ref())?;
        if let Some(file) = file {
            return set_file_attrs(&file, &path, &meta);
        }
        if kind == EntryType::Link {
            return Ok(());
        }
        if was_whiteout && kind == EntryType::Directory {
            self.set_opaque_xattr(&pfd, &name, &path)?;
        }
        self.set_attrs(&pfd, &name, &path, &meta, kind == EntryType::Directory)
    }

    /// A `./` entry: the root's own attributes; anything else cannot live at the root.
    fn apply_root<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        kind: EntryType,
        raw: &[u8],
    ) -> Result<(), ApplyError> {
        if kind != EntryType::Directory {
            return Err(ApplyError::InvalidPath {
                path: OsStr::from_bytes(raw).into(),
            });
        }
        let root = RelPath::default();
        let meta = read_meta(e, &root)?;
        let fd = self
            .root
            .open_dir(&root)
            .map_err(fs_err("opening", &root))?;
        self.set_attrs(&fd, b"", &root, &meta, true)
    }

    #[allow(clippy::too_many_arguments)]
    fn create<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        kind: EntryType,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
        meta: &Meta,
        sparse: Option<&super::sparse::Sparse>,
    ) -> Result<Option<File>, ApplyError> {
        let os = OsStr::from_bytes(name);
        let perm = Mode::from_bits_truncate(meta.mode & 0o777);
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                let apparent = match sparse {
                    Some(s) => s.realsize,
                    None => e.size(),
                };
                self.expand(apparent)?;
                if let Some(stubs) = self.stubs.as_mut() {
                    let stub = stubs.write(e, pfd, name, path, sparse, apparent)?;
                    self.file_blocks.insert(stub.ino, stub.blocks);
                    if let Some(hashes) = self.file_hashes.as_mut() {
                        hashes.insert(stub.ino, stub.hash);
                    }
                    return Ok(Some(stub.file));
                }
                let mut hasher = self.file_hashes.as_ref().map(|_| blake3::Hasher::new());
                let mut file = create_file(pfd, name, path)?;
                match sparse {
                    Some(s) => {
                        super::sparse::write_sparse(e, &mut file, s, path, hasher.as_mut())?;
                    }
                    None => {
                        write_data(e, &mut file, path, hasher.as_mut())?;
                    }
                }
                if let (Some(hashes), Some(h)) = (self.file_hashes.as_mut(), hasher) {
                    let ino = file.metadata().map_err(io_err("stat", path))?.ino();
                    hashes.insert(ino, h.finalize());
                }
                Ok(Some(file))
            }
            EntryType::Directory => mkdirat(pfd.as_fd(), os, perm)
                .map(|()| None)
                .map_err(fs_err("mkdir", path)),
            EntryType::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                symlinkat(OsStr::from_bytes(&target), pfd.as_fd(), os)
                    .map(|()| None)
                    .map_err(fs_err("symlink", path))
            }
            EntryType::Link => self.hardlink(e, pfd, name, path).map(|()| None),
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                if kind == EntryType::Char
                    && (major, minor) == (0, 0)
                    && self.mode == WhiteoutMode::Overlay
                {
                    return Err(ApplyError::WhiteoutDevice {
                        path: path.display(),
                    });
                }
                let sflag = match kind {
                    EntryType::Char => SFlag::S_IFCHR,
                    EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                let dev = makedev(major.into(), minor.into());
                mknodat(pfd.as_fd(), os, sflag, perm, dev)
                    .map(|()| None)
                    .map_err(fs_err("mknod", path))
            }
            other => Err(ApplyError::Unsupported {
                path: path.display(),
                kind: other.as_byte() as char,
            }),
        }
    }

    fn hardlink<R: Read>(
        &mut self,
        e: &tar::Entry<'_, R>,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
    ) -> Result<(), ApplyError> {
        let raw = e.link_name_bytes().unwrap_or_default().into_owned();
        let target = RelPath::clean(&raw);
        let refuse = |reason| ApplyError::Hardlink {
            path: path.display(),
            target: target.display(),
            reason,
        };
        let Some((tdir, tname)) = target.split_last() else {
            return Err(refuse("target is the root"));
        };
        if target == *path {
            return Err(refuse("target is the link itself"));
        }
        let tfd = match self.root.open_dir(&tdir) {
            Ok(fd) => fd,
            Err(Errno::ENOENT | Errno::ENOTDIR) => return Err(refuse("target does not exist")),
            Err(e) => return Err(fs_err("opening hardlink target dir of", path)(e)),
        };
        match lstat_at(&tfd, tname).map_err(fs_err("lstat hardlink target of", path))? {
            None => return Err(refuse("target does not exist")),
            Some(st) if file_type(&st) == SFlag::S_IFDIR => {
                return Err(refuse("target is a directory"))
            }
            Some(_) => {}
        }
        linkat(
            tfd.as_fd(),
            OsStr::from_bytes(tname),
            pfd.as_fd(),
            OsStr::from_bytes(name),
            AtFlags::empty(),
        )
        .map_err(fs_err("link", path))
    }

    /// Owner first (chown clears setuid bits and capabilities), then mode, xattrs, times.
    pub fn set_attrs(
        &mut self,
        pfd: &OwnedFd,
        name: &[u8],
        path: &RelPath,
        meta: &Meta,
        is_dir: bool,
    ) -> Result<(), ApplyError> {
        let os = OsStr::from_bytes(if name.is_empty() { b"." } else { name });
        let (uid, gid) = (Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)));
        let nofollow = if name.is_empty() {
            AtFlags::empty()
        } else {
            AtFlags::AT_SYMLINK_NOFOLLOW
        };
        fchownat(pfd.as_fd(), os, uid, gid, nofollow).map_err(fs_err("chown", path))?;
        let st = lstat_at(pfd, if name.is_empty() { b"." } else { name })
            .map_err(fs_err("lstat", path))?;
        let is_link = st.is_some_and(|st| file_type(&st) == SFlag::S_IFLNK);
        if !is_link {
            chmod_nofollow(pfd, name, meta.mode).map_err(io_err("chmod", path))?;
        }
        for (k, v) in &meta.xattrs {
            xattr::set(fd_path(pfd, name), OsStr::from_bytes(k), v)
                .map_err(io_err("setting xattr on", path))?;
        }
        if is_dir {
            self.dir_times.push((path.clone(), meta.mtime));
            return Ok(());
        }
        utimensat(
            pfd.as_fd(),
            os,
            &meta.mtime,
            &meta.mtime,
            UtimensatFlags::NoFollowSymlink,
        )
        .map_err(fs_err("utimes", path))
    }

    /// Directory times last: creating their children changed them.
    pub fn finish(&mut self) -> Result<(), ApplyError> {
        for (path, t) in std::mem::take(&mut self.dir_times).into_iter().rev() {
            let (fd, name) = match path.split_last() {
                None => (self.root.open_dir(&path), b".".to_vec()),
                Some((dir, name)) => (self.root.open_dir(&dir), name.to_vec()),
            };
            let fd = fd.map_err(fs_err("opening", &path))?;
            utimensat(
                fd.as_fd(),
                OsStr::from_bytes(&name),
                &t,
                &t,
                UtimensatFlags::NoFollowSymlink,
            )
            .map_err(fs_err("utimes", &path))?;
        }
        Ok(())
    }
}

/// Owner, mode, xattrs and times of a regular file just written, through its open fd
/// (in the order `set_attrs` keeps: chown clears set-id bits and capabilities).
fn set_file_attrs(file: &File, path: &RelPath, meta: &Meta) -> Result<(), ApplyError> {
    use xattr::FileExt;
    std::os::unix::fs::fchown(file, Some(meta.uid), Some(meta.gid))
        .map_err(io_err("chown", path))?;
    file.set_permissions(std::fs::Permissions::from_mode(meta.mode & 0o7777))
        .map_err(io_err("chmod", path))?;
    for (k, v) in &meta.xattrs {
        file.set_xattr(OsStr::from_bytes(k), v)
            .map_err(io_err("setting xattr on", path))?;
    }
    nix::sys::stat::futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(fs_err("utimes", path))
}

/// chmod through an `O_PATH` fd of the node itself, so a symlink is never followed.
fn chmod_nofollow(pfd: &OwnedFd, name: &[u8], mode: u32) -> io::Result<()> {
    let flags = OFlag::O_PATH | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        pfd.as_fd(),
        OsStr::from_bytes(if name.is_empty() { b"." } else { name }),
        flags,
        Mode::empty(),
    )?;
    let proc_path = format!("/proc/self/fd/{}", fd.as_raw_fd());
    std::fs::set_permissions(proc_path, std::fs::Permissions::from_mode(mode & 0o7777))
}

/// A new file `name` under `pfd` (never following a symlink, never an existing file).
fn create_file(pfd: &OwnedFd, name: &[u8], path: &RelPath) -> Result<File, ApplyError> {
    create_new(pfd, name).map_err(fs_err("creating", path))
}

/// A new file `name` under `dir`, mode 0600 until its attributes are set, never
/// following a symlink nor replacing anything.
pub(super) fn create_new(dir: &OwnedFd, name: &[u8]) -> nix::Result<File> {
    let flags =
        OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
    let fd = openat(
        dir.as_fd(),
        OsStr::from_bytes(name),
        flags,
        Mode::from_bits_truncate(0o600),
    )?;
    Ok(File::from(fd))
}

/// Streams an entry's data into `file`, leaving holes where the data is zero, and feeds
/// it to `hasher` if given.
pub(super) fn write_data<R: Read>(
    e: &mut tar::Entry<'_, R>,
    file: &mut File,
    path: &RelPath,
    mut hasher: Option<&mut blake3::Hasher>,
) -> Result<(), ApplyError> {
    let mut buf = vec![0u8; CHUNK];
    let mut len = 0u64;
    loop {
        let n = read_full(e, &mut buf).map_err(ApplyError::Read)?;
        if n == 0 {
            break;
        }
        if let Some(h) = hasher.as_mut() {
            h.update(&buf[..n]);
        }
        // Slice equality is a memcmp: fast even in unoptimized builds.
        if buf[..n] == ZEROS[..n] {
            file.seek(SeekFrom::Current(n as i64))
                .map_err(io_err("seeking in", path))?;
        } else {
            file.write_all(&buf[..n]).map_err(io_err("writing", path))?;
        }
        len += n as u64;
    }
    file.set_len(len).map_err(io_err("sizing", path))?;
    Ok(())
}

/// Fills `buf` as far as the reader goes: short only at the end of the stream.
pub(super) fn read_full(r: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// PAX and GNU long-name headers describe the next entry; the tar crate folds them in.
pub(crate) fn is_meta_header(kind: EntryType) -> bool {
    matches!(
        kind,
        EntryType::XGlobalHeader
            | EntryType::XHeader
            | EntryType::GNULongName
            | EntryType::GNULongLink
    )
}
