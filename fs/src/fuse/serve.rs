//! The fuser adapter: each callback asks the [`View`] and answers; file reads go to the
//! object files, through the kernel's FUSE passthrough when it offers it (the kernel
//! then reads the object itself), otherwise through `pread` with the page cache kept.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::FileExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{
    BackingId, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation, INodeNo,
    InitFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr, ReplyData,
    ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyOpen, ReplyStatfs, ReplyXattr,
    Request,
};

use super::prefetch::{self, Prefetcher};
use super::view::{Node, View};
use crate::objects::EntryKind;

/// The tree never changes while mounted: let the kernel cache everything.
const TTL: Duration = Duration::from_secs(24 * 3600);

/// Called once INIT is answered, with whether passthrough is on.
pub type OnInit = Box<dyn FnOnce(bool) + Send>;

/// An extended attribute: name, value.
type Xattr = (Vec<u8>, Vec<u8>);

/// An open file: the object, and its passthrough registration while the kernel uses it.
struct Open {
    file: File,
    _backing: Option<BackingId>,
}

/// A read-only FUSE filesystem over a [`View`] and an object directory.
pub struct ViewFs {
    view: View,
    objects: PathBuf,
    passthrough: AtomicBool,
    next_fh: AtomicU64,
    open: Mutex<HashMap<u64, Open>>,
    on_init: Mutex<Option<OnInit>>,
    prefetch: Prefetcher,
}

impl ViewFs {
    /// Serves `view`, reading file content from `objects/<2 hex>/<id>`. `on_init` runs
    /// once the kernel's INIT has been answered, with whether passthrough is on.
    pub fn new(view: View, objects: PathBuf, on_init: OnInit) -> Self {
        ViewFs {
            view,
            objects,
            passthrough: AtomicBool::new(false),
            next_fh: AtomicU64::new(1),
            open: Mutex::new(HashMap::new()),
            on_init: Mutex::new(Some(on_init)),
            prefetch: Prefetcher::start(),
        }
    }

    fn object_path(&self, id: &str) -> PathBuf {
        crate::objects::object_path(&self.objects, id)
    }

    /// Has the next few small files after `ino` in its directory opened ahead.
    fn prefetch_siblings(&self, ino: u64) {
        let Some(n) = self.view.node(ino) else { return };
        let Some(dir) = self.view.node(n.parent) else {
            return;
        };
        let path = &n.entry.path;
        let name = path.rsplit(|b| *b == b'/').next().unwrap_or(path);
        let Ok(at) = dir
            .children
            .binary_search_by(|(child, _)| child.as_slice().cmp(name))
        else {
            return; // a hardlink known by a path in another directory
        };
        for &(_, child) in dir.children[at + 1..].iter().take(prefetch::AHEAD) {
            let Some(c) = self.view.node(child) else {
                continue;
            };
            let small =
                c.entry.kind == EntryKind::File && (1..=prefetch::SMALL).contains(&c.entry.size);
            if let (true, Some(id)) = (small, c.entry.object.as_deref()) {
                self.prefetch.request((child, self.object_path(id)));
            }
        }
    }

    fn node(&self, ino: INodeNo) -> Result<&Node, Errno> {
        self.view.node(ino.0).ok_or(Errno::ENOENT)
    }

    fn attr(&self, ino: u64, n: &Node) -> FileAttr {
        let e = &n.entry;
        let mtime = to_time(e.mtime);
        let kind = file_type(e.kind);
        let (size, blocks) = match e.kind {
            EntryKind::File => (e.size, e.blocks.div_ceil(512)),
            EntryKind::Symlink => (e.target.as_ref().map_or(0, |t| t.len() as u64), 0),
            EntryKind::Dir => (4096, 8),
            _ => (0, 0),
        };
        FileAttr {
            ino: INodeNo(ino),
            size,
            blocks,
            atime: mtime,
            mtime,
            ctime: mtime,
            crtime: mtime,
            kind,
            perm: (e.mode & 0o7777) as u16,
            nlink: n.nlink,
            uid: e.uid,
            gid: e.gid,
            rdev: encode_dev(e.rdev),
            blksize: 4096,
            flags: 0,
        }
    }

    fn xattrs(&self, ino: INodeNo) -> Result<Vec<&Xattr>, Errno> {
        Ok(self
            .node(ino)?
            .entry
            .xattrs
            .iter()
            .filter(|(k, _)| !k.starts_with(b"trusted.overlay."))
            .collect())
    }

    fn open_file(
        &self,
        ino: INodeNo,
        flags: OpenFlags,
        reply: &ReplyOpen,
    ) -> Result<(u64, bool, Open), Errno> {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return Err(Errno::EROFS);
        }
        let n = self.node(ino)?;
        let id = n.entry.object.as_deref().ok_or(Errno::EIO)?;
        let path = self.object_path(id);
        let file = match self.prefetch.take(ino.0) {
            Some(file) => file,
            None => File::open(&path).map_err(|e| {
                tracing::warn!("opening object {}: {e}", path.display());
                Errno::EIO
            })?,
        };
        let backing = match self.passthrough.load(Ordering::Relaxed) {
            true => reply.open_backing(&file).ok(),
            false => None,
        };
        let fh = self.next_fh.fetch_add(1, Ordering::Relaxed);
        let pass = backing.is_some();
        Ok((
            fh,
            pass,
            Open {
                file,
                _backing: backing,
            },
        ))
    }
}

fn to_time((s, ns): (i64, i64)) -> SystemTime {
    let nanos = Duration::from_nanos(ns.clamp(0, 999_999_999) as u64);
    if s >= 0 {
        UNIX_EPOCH + Duration::from_secs(s as u64) + nanos
    } else {
        UNIX_EPOCH - Duration::from_secs(s.unsigned_abs()) + nanos
    }
}

/// The kernel's FUSE `rdev` is `new_encode_dev` of major/minor.
fn encode_dev(rdev: u64) -> u32 {
    let (major, minor) = (
        nix::sys::stat::major(rdev) as u32,
        nix::sys::stat::minor(rdev) as u32,
    );
    (minor & 0xff) | (major << 8) | ((minor & !0xff) << 12)
}

fn file_type(k: EntryKind) -> FileType {
    match k {
        EntryKind::File => FileType::RegularFile,
        EntryKind::Dir => FileType::Directory,
        EntryKind::Symlink => FileType::Symlink,
        EntryKind::Char => FileType::CharDevice,
        EntryKind::Block => FileType::BlockDevice,
        EntryKind::Fifo => FileType::NamedPipe,
        EntryKind::Socket => FileType::Socket,
    }
}

fn xattr_reply(reply: ReplyXattr, size: u32, data: &[u8]) {
    if size == 0 {
        reply.size(data.len() as u32);
    } else if data.len() > size as usize {
        reply.error(Errno::ERANGE);
    } else {
        reply.data(data);
    }
}

impl Filesystem for ViewFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> std::io::Result<()> {
        // Each is optional; the kernel simply does without what it lacks.
        // READDIRPLUS always: a listing brings every child's attributes, so opening the
        // files found costs no LOOKUP round trip each. The tree never changes, so
        // directory operations may run in parallel and symlink targets stay cached.
        for flag in [
            InitFlags::FUSE_DO_READDIRPLUS,
            InitFlags::FUSE_PARALLEL_DIROPS,
            InitFlags::FUSE_CACHE_SYMLINKS,
        ] {
            let _ = config.add_capabilities(flag);
        }
        let on = config.add_capabilities(InitFlags::FUSE_PASSTHROUGH).is_ok()
            && config.set_max_stack_depth(1).is_ok();
        self.passthrough.store(on, Ordering::Relaxed);
        if let Some(f) = self
            .on_init
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            f(on);
        }
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        match self.view.lookup(parent.0, name.as_bytes()) {
            Some(ino) => match self.view.node(ino) {
                Some(n) => reply.entry(&TTL, &self.attr(ino, n), Generation(0)),
                None => reply.error(Errno::ENOENT),
            },
            None => reply.error(Errno::ENOENT),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self.node(ino) {
            Ok(n) => reply.attr(&TTL, &self.attr(ino.0, n)),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        match self.node(ino).map(|n| n.entry.target.as_deref()) {
            Ok(Some(t)) => reply.data(t),
            Ok(None) => reply.error(Errno::EINVAL),
            Err(e) => reply.error(e),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        match self.open_file(ino, flags, &reply) {
            Ok((fh, pass, open)) => {
                let mut table = self.open.lock().unwrap_or_else(|p| p.into_inner());
                // Read-only: a close has nothing to flush, so skip its round trip.
                match (&open._backing, pass) {
                    (Some(id), true) => {
                        reply.opened_passthrough(FileHandle(fh), FopenFlags::FOPEN_NOFLUSH, id)
                    }
                    _ => reply.opened(
                        FileHandle(fh),
                        FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_NOFLUSH,
                    ),
                }
                table.insert(fh, open);
                drop(table);
                self.prefetch_siblings(ino.0);
            }
            Err(e) => reply.error(e),
        }
    }

    fn opendir(&self, _req: &Request, _ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        // The tree never changes: the kernel may keep listings in its cache.
        reply.opened(
            FileHandle(0),
            FopenFlags::FOPEN_CACHE_DIR | FopenFlags::FOPEN_KEEP_CACHE,
        );
    }

    fn read(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let table = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let Some(open) = table.get(&fh.0) else {
            return reply.error(Errno::EBADF);
        };
        let mut buf = vec![0u8; size as usize];
        let mut filled = 0;
        while filled < buf.len() {
            match open
                .file
                .read_at(&mut buf[filled..], offset + filled as u64)
            {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(_) => return reply.error(Errno::EIO),
            }
        }
        reply.data(&buf[..filled]);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        fh: FileHandle,
        _flags: OpenFlags,
        _lock: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        self.open
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&fh.0);
        reply.ok();
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let n = match self.node(ino) {
            Ok(n) if n.entry.kind == EntryKind::Dir => n,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        for (i, (name, child, kind)) in dir_entries(&self.view, ino.0, n)
            .enumerate()
            .skip(offset as usize)
        {
            if reply.add(INodeNo(child), i as u64 + 1, kind, OsStr::from_bytes(name)) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let n = match self.node(ino) {
            Ok(n) if n.entry.kind == EntryKind::Dir => n,
            Ok(_) => return reply.error(Errno::ENOTDIR),
            Err(e) => return reply.error(e),
        };
        for (i, (name, child, _)) in dir_entries(&self.view, ino.0, n)
            .enumerate()
            .skip(offset as usize)
        {
            let Some(cn) = self.view.node(child) else {
                continue;
            };
            let attr = self.attr(child, cn);
            let name = OsStr::from_bytes(name);
            if reply.add(
                INodeNo(child),
                i as u64 + 1,
                name,
                &TTL,
                &attr,
                Generation(0),
            ) {
                break;
            }
        }
        reply.ok();
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let files = self.view.nodes.len() as u64;
        let blocks: u64 = self.view.nodes.iter().map(|n| n.entry.blocks / 4096).sum();
        reply.statfs(blocks, 0, 0, files, 0, 4096, 255, 4096);
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino) {
            Ok(x) => match x.iter().find(|(k, _)| k.as_slice() == name.as_bytes()) {
                Some((_, v)) => xattr_reply(reply, size, v),
                None => reply.error(Errno::NO_XATTR),
            },
            Err(e) => reply.error(e),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        match self.xattrs(ino) {
            Ok(x) => {
                let mut list = Vec::new();
                for (k, _) in x {
                    list.extend_from_slice(k);
                    list.push(0);
                }
                xattr_reply(reply, size, &list);
            }
            Err(e) => reply.error(e),
        }
    }
}

/// `.`, `..` and the children of directory `ino`.
fn dir_entries<'a>(
    view: &'a View,
    ino: u64,
    n: &'a Node,
) -> impl Iterator<Item = (&'a [u8], u64, FileType)> + 'a {
    [(&b"."[..], ino), (&b".."[..], n.parent)]
        .into_iter()
        .chain(n.children.iter().map(|(name, c)| (name.as_slice(), *c)))
        .map(move |(name, c)| {
            let kind = view
                .node(c)
                .map_or(FileType::RegularFile, |n| file_type(n.entry.kind));
            (name, c, kind)
        })
}
