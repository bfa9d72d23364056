//! Index-only ingest: a layer tar streamed once into objects and a tree index, with no
//! layer directory. This is the fast path to a FUSE view of an image nothing has
//! unpacked yet.
//!
//! The index records what `apply_layer` would have left in an overlay layer directory:
//! the same path cleaning (`..` stops at the root, a leading `/` is dropped), whiteouts
//! as 0/0 character devices, opaque markers as `trusted.overlay.opaque=y`, a whiteout
//! never hiding this layer's own entries. Entry paths are only keys in a map: nothing
//! is ever resolved on the host filesystem, so a hostile tar cannot reach outside the
//! object directory. The one thing a map cannot mirror is an entry below a symlink of
//! the same layer (apply resolves it inside the layer root); such a layer is refused
//! with [`ObjectError::NeedsUnpack`] and the caller unpacks it the ordinary way.
//!
//! Each regular file becomes a file in the ingest's staging directory, hashed with
//! blake3 as it is written, given its owner, mode, xattrs and mtime (so the object is
//! the same inode an unpacked layer would link to), and named by its id there; once the
//! whole layer checks out, the staged files are linked under their ids in the same
//! index transaction that records the layer (see `ObjectStore::gc`). Like
//! unpacked layer files (and containerd's), objects are not fsynced one by one: a crash
//! can tear the newest ones, which `berth fsck` finds by re-hashing.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, FileTimes};
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tar::EntryType;
use xattr::FileExt;

use super::entry::{Entry, EntryKind};
use super::ingest::meta_key;
use super::staging::Staging;
use super::{io_err, ObjectError};
use crate::apply::meta::{read_meta, Meta};
use crate::apply::path::{marker, Marker, RelPath};
use crate::apply::stream::{check_diff_id, stream_layer};
use crate::apply::{ApplyError, ApplyOptions, ApplyStats};

const OPAQUE: (&[u8], &[u8]) = (b"trusted.overlay.opaque", b"y");

/// The layer's tree as it is built, keyed by joined path.
struct Builder<'a> {
    staging: &'a Staging,
    /// Content-only objects (stub layers), named by their blake3 alone.
    plain: bool,
    tree: BTreeMap<Vec<u8>, Entry>,
    /// Paths this layer created, with their ancestors (whiteouts must spare them).
    touched: HashSet<Vec<u8>>,
    /// Whiteouts this layer made: a directory replacing one becomes opaque.
    whiteouts: HashSet<Vec<u8>>,
    next_group: u64,
    entries: u64,
    now: (i64, i64),
    /// Apparent bytes of the files stored, holes included, and their limit.
    expanded: u64,
    max_size: Option<u64>,
    /// Directories made for entries that no entry declared: where a lower layer holds a
    /// symlink, only an unpack onto the merged tree places their contents right.
    implied: std::collections::BTreeSet<Vec<u8>>,
}

fn bad(_path: &RelPath, e: ApplyError) -> ObjectError {
    ObjectError::Layer(Box::new(e))
}

fn read_err(e: io::Error) -> ObjectError {
    ObjectError::Layer(Box::new(ApplyError::Read(e)))
}

/// Streams one (compressed) layer into objects and returns its index and stats.
pub(super) fn ingest_tar(
    staging: &Staging,
    plain: bool,
    reader: impl Read + Send,
    opts: &ApplyOptions,
) -> Result<(Vec<Entry>, ApplyStats), ObjectError> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let mut b = Builder {
        staging,
        plain,
        tree: BTreeMap::new(),
        touched: HashSet::new(),
        whiteouts: HashSet::new(),
        next_group: 1,
        entries: 0,
        now: (now.as_secs() as i64, i64::from(now.subsec_nanos())),
        expanded: 0,
        max_size: opts.max_size,
        implied: Default::default(),
    };
    b.tree.insert(
        Vec::new(),
        Entry::bare(Vec::new(), EntryKind::Dir, 0o755, b.now),
    );
    let ((), stream) = stream_layer(reader, opts.max_size, |chunks| {
        b.all(&mut tar::Archive::new(chunks))
    })?;
    check_diff_id(opts.expected_diff_id.as_ref(), &stream)
        .map_err(|e| bad(&RelPath::default(), e))?;
    if let Some(dir) = b.implied.first() {
        return Err(ObjectError::NeedsUnpack {
            path: std::path::PathBuf::from(std::ffi::OsStr::from_bytes(dir)),
        });
    }
    let stats = ApplyStats {
        diff_id: stream.diff_id,
        size: stream.size,
        entries: b.entries,
        compression: stream.compression,
        file_hashes: Default::default(),
        file_blocks: Default::default(),
        whiteouts: Vec::new(),
        implicit_dirs: Vec::new(),
    };
    Ok((b.tree.into_values().collect(), stats))
}

impl Builder<'_> {
    fn all<R: Read>(&mut self, archive: &mut tar::Archive<R>) -> Result<(), ObjectError> {
        for e in archive.entries().map_err(read_err)? {
            let mut e = e.map_err(read_err)?;
            self.entry(&mut e)?;
        }
        Ok(())
    }

    fn entry<R: Read>(&mut self, e: &mut tar::Entry<'_, R>) -> Result<(), ObjectError> {
        let kind = e.header().entry_type();
        if crate::apply::is_meta_header(kind) {
            return Ok(());
        }
        self.entries += 1;
        let mut raw = e.path_bytes().into_owned();
        let sparse = match kind {
            EntryType::Regular | EntryType::Continuous => {
                let p = RelPath::clean(&raw);
                crate::apply::sparse::pax_sparse(e, &p).map_err(|x| bad(&p, x))?
            }
            _ => None,
        };
        if let Some(s) = &sparse {
            raw = s.name.clone();
        }
        let path = RelPath::clean(&raw);
        let invalid = || {
            bad(
                &path,
                ApplyError::InvalidPath {
                    path: std::ffi::OsStr::from_bytes(&raw).into(),
                },
            )
        };
        let Some((dir, name)) = path.split_last() else {
            if kind != EntryType::Directory {
                return Err(invalid());
            }
            let meta = read_meta(e, &path).map_err(|x| bad(&path, x))?;
            let root = self
                .tree
                .get_mut(&Vec::new())
                .expect("the root is always in the tree");
            set_attrs(root, &meta);
            return Ok(());
        };
        match marker(name) {
            Marker::None => {}
            Marker::AufsMeta => return Ok(()),
            Marker::Invalid => return Err(invalid()),
            Marker::Whiteout(target) => {
                let target = target.to_vec();
                return self.whiteout(&dir, &target);
            }
            Marker::Opaque => return self.opaque(&dir),
        }
        let meta = read_meta(e, &path).map_err(|x| bad(&path, x))?;
        self.parents(&dir, &path)?;
        self.touch(&path);
        let key = path.joined();
        if kind == EntryType::Directory {
            self.implied.remove(&key);
        }
        let existing = self.tree.get(&key).map(|x| x.kind);
        if kind == EntryType::Directory && existing == Some(EntryKind::Dir) {
            let d = self.tree.get_mut(&key).expect("just looked up");
            set_attrs(d, &meta);
            return Ok(());
        }
        let was_whiteout = existing.is_some() && self.whiteouts.remove(&key);
        if existing.is_some() {
            self.remove_all(&key);
        }
        let mut node = self.node(e, kind, &path, &meta, sparse.as_ref())?;
        if was_whiteout && node.kind == EntryKind::Dir {
            add_xattr(&mut node, OPAQUE);
        }
        self.tree.insert(key, node);
        Ok(())
    }

    /// The index entry for a new node (a file's object is written here).
    fn node<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        kind: EntryType,
        path: &RelPath,
        meta: &Meta,
        sparse: Option<&crate::apply::sparse::Sparse>,
    ) -> Result<Entry, ObjectError> {
        let key = path.joined();
        let ekind = match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => EntryKind::File,
            EntryType::Directory => EntryKind::Dir,
            EntryType::Symlink => EntryKind::Symlink,
            EntryType::Char => EntryKind::Char,
            EntryType::Block => EntryKind::Block,
            EntryType::Fifo => EntryKind::Fifo,
            EntryType::Link => return self.hardlink(e, path),
            other => {
                return Err(bad(
                    path,
                    ApplyError::Unsupported {
                        path: path.display(),
                        kind: other.as_byte() as char,
                    },
                ))
            }
        };
        let mut n = Entry::bare(key, ekind, 0, self.now);
        set_attrs(&mut n, meta);
        match ekind {
            EntryKind::Symlink => {
                let target = e.link_name_bytes().unwrap_or_default().into_owned();
                n.mode = 0o777;
                n.size = target.len() as u64;
                n.target = Some(target);
            }
            EntryKind::Char | EntryKind::Block => {
                let h = e.header();
                let major = h.device_major().ok().flatten().unwrap_or(0);
                let minor = h.device_minor().ok().flatten().unwrap_or(0);
                n.rdev = libc::makedev(major, minor);
                if ekind == EntryKind::Char && n.rdev == 0 {
                    let path = path.display();
                    return Err(bad(
                        &RelPath::default(),
                        ApplyError::WhiteoutDevice { path },
                    ));
                }
            }
            EntryKind::File => self.write_object(e, &mut n, path, sparse)?,
            _ => {}
        }
        Ok(n)
    }

    /// A tar hardlink: another name of the target's inode (same object, same group).
    fn hardlink<R: Read>(
        &mut self,
        e: &tar::Entry<'_, R>,
        path: &RelPath,
    ) -> Result<Entry, ObjectError> {
        let raw = e.link_name_bytes().unwrap_or_default().into_owned();
        let target = RelPath::clean(&raw);
        let refuse = |reason| {
            bad(
                path,
                ApplyError::Hardlink {
                    path: path.display(),
                    target: target.display(),
                    reason,
                },
            )
        };
        if target.is_root() {
            return Err(refuse("target is the root"));
        }
        if target == *path {
            return Err(refuse("target is the link itself"));
        }
        let tkey = target.joined();
        let group = match self.tree.get(&tkey) {
            None => return Err(refuse("target does not exist")),
            Some(t) if t.kind == EntryKind::Dir => return Err(refuse("target is a directory")),
            Some(t) => t.link_group,
        };
        let group = group.unwrap_or_else(|| {
            self.next_group += 1;
            self.next_group
        });
        let t = self.tree.get_mut(&tkey).expect("just looked up");
        t.link_group = Some(group);
        let mut n = t.clone();
        n.path = path.joined();
        Ok(n)
    }

    /// Copies a file's content into a new object carrying the entry's metadata.
    fn write_object<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        n: &mut Entry,
        path: &RelPath,
        sparse: Option<&crate::apply::sparse::Sparse>,
    ) -> Result<(), ObjectError> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let tmp = self
            .staging
            .dir()
            .join(format!(".tmp-{}", NEXT.fetch_add(1, Ordering::Relaxed)));
        let result = self.fill(e, n, path, &tmp, sparse);
        let _ = fs::remove_file(&tmp);
        result
    }

    fn fill<R: Read>(
        &mut self,
        e: &mut tar::Entry<'_, R>,
        n: &mut Entry,
        path: &RelPath,
        tmp: &std::path::Path,
        sparse: Option<&crate::apply::sparse::Sparse>,
    ) -> Result<(), ObjectError> {
        let apparent = sparse.map_or(e.size(), |s| s.realsize);
        self.expanded = self.expanded.saturating_add(apparent);
        if let Some(limit) = self.max_size.filter(|l| self.expanded > *l) {
            return Err(bad(path, ApplyError::SizeLimit { limit }));
        }
        let mut f = File::create_new(tmp).map_err(io_err("creating", tmp))?;
        let mut h = blake3::Hasher::new();
        let size = match sparse {
            Some(s) => crate::apply::sparse::write_sparse(e, &mut f, s, path, Some(&mut h))
                .map_err(|x| bad(path, x))?,
            None => {
                let mut buf = vec![0u8; 1 << 20];
                let mut size = 0u64;
                loop {
                    let k = match e.read(&mut buf) {
                        Ok(0) => break,
                        Ok(k) => k,
                        Err(x) if x.kind() == io::ErrorKind::Interrupted => continue,
                        Err(x) => return Err(read_err(x)),
                    };
                    h.update(&buf[..k]);
                    f.write_all(&buf[..k]).map_err(io_err("writing", tmp))?;
                    size += k as u64;
                }
                size
            }
        };
        if !self.plain {
            // The same inode a `links` layer would link to: its metadata is the file's.
            std::os::unix::fs::fchown(&f, Some(n.uid), Some(n.gid))
                .map_err(io_err("chown", tmp))?;
            f.set_permissions(fs::Permissions::from_mode(n.mode))
                .map_err(io_err("chmod", tmp))?;
            for (k, v) in &n.xattrs {
                f.set_xattr(std::ffi::OsStr::from_bytes(k), v)
                    .map_err(|x| bad(path, set_xattr_err(path, x)))?;
            }
            let t = to_system_time(n.mtime);
            f.set_times(FileTimes::new().set_accessed(t).set_modified(t))
                .map_err(io_err("setting times of", tmp))?;
        }
        let md = f.metadata().map_err(io_err("stat", tmp))?;
        n.size = size;
        n.blocks = md.blocks() * 512;
        let hash = h.finalize();
        let id = match self.plain {
            true => super::content_id(&hash),
            false => format!("{}-{}", hash.to_hex(), meta_key(n)),
        };
        self.staging.stage(tmp, &id)?;
        n.object = Some(id);
        Ok(())
    }

    /// Makes every ancestor of `path` a directory (created as apply creates them).
    fn parents(&mut self, dir: &RelPath, path: &RelPath) -> Result<(), ObjectError> {
        let mut cur: Vec<Vec<u8>> = Vec::new();
        for c in &dir.0 {
            cur.push(c.clone());
            let key = cur.join(&b'/');
            match self.tree.get(&key).map(|x| x.kind) {
                Some(EntryKind::Dir) => {}
                Some(_) => {
                    return Err(ObjectError::NeedsUnpack {
                        path: path.display(),
                    })
                }
                None => {
                    self.touched.insert(key.clone());
                    self.implied.insert(key.clone());
                    let d = Entry::bare(key.clone(), EntryKind::Dir, 0o755, self.now);
                    self.tree.insert(key, d);
                }
            }
        }
        Ok(())
    }

    fn touch(&mut self, path: &RelPath) {
        for i in 1..=path.0.len() {
            self.touched.insert(path.0[..i].join(&b'/'));
        }
    }

    /// Removes `key` and everything below it.
    fn remove_all(&mut self, key: &[u8]) {
        self.tree.remove(key);
        let mut start = key.to_vec();
        start.push(b'/');
        let mut end = key.to_vec();
        end.push(b'/' + 1);
        let doomed: Vec<Vec<u8>> = self
            .tree
            .range(start..end)
            .map(|(k, _)| k.clone())
            .collect();
        for k in doomed {
            self.tree.remove(&k);
        }
    }

    /// `dir/.wh.name`: a 0/0 character device, unless this layer made `dir/name` itself.
    fn whiteout(&mut self, dir: &RelPath, name: &[u8]) -> Result<(), ObjectError> {
        let path = dir.child(name);
        self.parents(dir, &path)?;
        let key = path.joined();
        if self.touched.contains(&key) {
            if let Some(d) = self.tree.get_mut(&key).filter(|d| d.kind == EntryKind::Dir) {
                add_xattr(d, OPAQUE);
            }
            return Ok(());
        }
        self.remove_all(&key);
        self.tree.insert(
            key.clone(),
            Entry::bare(key.clone(), EntryKind::Char, 0, self.now),
        );
        self.whiteouts.insert(key);
        Ok(())
    }

    /// `dir/.wh..wh..opq`: the directory (made if missing) hides lower children.
    fn opaque(&mut self, dir: &RelPath) -> Result<(), ObjectError> {
        let Some((parent, _)) = dir.split_last() else {
            return Ok(());
        };
        self.parents(&parent, dir)?;
        let key = dir.joined();
        if !self.tree.contains_key(&key) {
            self.touched.insert(key.clone());
            self.implied.insert(key.clone());
            let d = Entry::bare(key.clone(), EntryKind::Dir, 0o755, self.now);
            self.tree.insert(key.clone(), d);
        }
        if let Some(d) = self.tree.get_mut(&key).filter(|d| d.kind == EntryKind::Dir) {
            add_xattr(d, OPAQUE);
        }
        Ok(())
    }
}

/// What `set_attrs` in apply does to a node: owner, mode, xattrs (added), mtime.
fn set_attrs(n: &mut Entry, meta: &Meta) {
    n.uid = meta.uid;
    n.gid = meta.gid;
    n.mode = meta.mode & 0o7777;
    n.mtime = (meta.mtime.tv_sec(), meta.mtime.tv_nsec());
    for (k, v) in &meta.xattrs {
        add_xattr(n, (k, v));
    }
}

fn add_xattr(n: &mut Entry, (k, v): (&[u8], &[u8])) {
    match n.xattrs.binary_search_by(|(x, _)| x.as_slice().cmp(k)) {
        Ok(i) => n.xattrs[i].1 = v.to_vec(),
        Err(i) => n.xattrs.insert(i, (k.to_vec(), v.to_vec())),
    }
}

fn set_xattr_err(path: &RelPath, source: io::Error) -> ApplyError {
    ApplyError::Fs {
        op: "setting xattr on",
        path: path.display(),
        source,
    }
}

fn to_system_time((s, ns): (i64, i64)) -> SystemTime {
    let d = Duration::new(s.unsigned_abs(), ns.unsigned_abs() as u32);
    if s >= 0 && ns >= 0 {
        UNIX_EPOCH + d
    } else {
        UNIX_EPOCH - d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apply::{apply_layer, WhiteoutMode};
    use crate::objects::ObjectStore;

    fn add(t: &mut tar::Builder<Vec<u8>>, kind: EntryType, name: &str, link: &str, body: &[u8]) {
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.as_old_mut().linkname[..link.len()].copy_from_slice(link.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(if kind == EntryType::Directory {
            0o750
        } else {
            0o640
        });
        h.set_uid(1000);
        h.set_gid(100);
        h.set_mtime(1_600_000_000);
        h.set_size(body.len() as u64);
        h.set_cksum();
        t.append(&h, body).expect("append");
    }

    /// What both ingests must agree on; times of nodes the tar gives none, directory
    /// sizes and group numbers are the filesystem's.
    fn normalize(mut v: Vec<Entry>) -> Vec<Entry> {
        for e in &mut v {
            if e.kind == EntryKind::Dir || e.is_whiteout() {
                e.size = 0;
                if e.mtime.0 != 1_600_000_000 {
                    e.mtime = (0, 0);
                }
            }
            e.link_group = e.link_group.map(|_| 0);
        }
        v
    }

    /// A directory no entry declares may shadow a lower layer's symlink: only an unpack
    /// onto the merged tree places what is under it, so the index-only ingest declines.
    #[test]
    fn an_undeclared_parent_needs_an_unpack() {
        let mut t = tar::Builder::new(Vec::new());
        add(&mut t, EntryType::Regular, "sl/file", "", b"x");
        let tar = t.into_inner().expect("tar");
        let tmp = tempfile::tempdir().expect("tempdir");
        let store = ObjectStore::open(tmp.path()).expect("open");
        let err = store
            .ingest_tar("l", &tar[..], &ApplyOptions::default())
            .expect_err("needs an unpack");
        assert!(matches!(err, ObjectError::NeedsUnpack { .. }), "{err}");
        assert!(store.index().layer("l").expect("read").is_none());
    }

    /// The index-only ingest records what apply + a walk of the layer dir record.
    #[test]
    fn stream_index_equals_unpacked_layer_index() {
        let mut t = tar::Builder::new(Vec::new());
        let (reg, dir) = (EntryType::Regular, EntryType::Directory);
        add(&mut t, dir, "etc/", "", b"");
        add(&mut t, reg, "etc/passwd", "", b"root\n");
        add(
            &mut t,
            EntryType::Link,
            "etc/passwd-link",
            "etc/passwd",
            b"",
        );
        add(&mut t, EntryType::Symlink, "etc/sym", "/etc/passwd", b"");
        add(&mut t, EntryType::Fifo, "etc/fifo", "", b"");
        add(&mut t, dir, "implicit/", "", b"");
        add(&mut t, dir, "implicit/deep/", "", b"");
        add(&mut t, reg, "implicit/deep/file", "", b"deep");
        add(&mut t, reg, "../../escape", "", b"confined");
        add(&mut t, reg, "/abs", "", b"confined too");
        add(&mut t, reg, "twice", "", b"first");
        add(&mut t, reg, "twice", "", b"second");
        add(&mut t, reg, ".wh.gone", "", b"");
        add(&mut t, dir, "opq/", "", b"");
        add(&mut t, reg, "opq/.wh..wh..opq", "", b"");
        add(&mut t, reg, "opq/kept", "", b"k");
        add(&mut t, reg, "etc/.wh.passwd-old", "", b"");
        let tar = t.into_inner().expect("tar");

        let tmp = tempfile::tempdir().expect("tempdir");
        let layer = tmp.path().join("layer");
        fs::create_dir(&layer).expect("mkdir");
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Overlay,
            ..ApplyOptions::default()
        };
        let applied = apply_layer(&tar[..], &layer, &opts).expect("apply");
        let walked = ObjectStore::open(&tmp.path().join("a"))
            .expect("open a")
            .ingest_layer("l", &layer, true, &Default::default())
            .expect("walk ingest");
        let streamed = ObjectStore::open(&tmp.path().join("b")).expect("open b");
        let stats = streamed
            .ingest_tar("l", &tar[..], &opts)
            .expect("stream ingest");
        assert_eq!(stats.diff_id, applied.diff_id);
        let indexed = streamed.index().layer("l").expect("read").expect("indexed");
        assert_eq!(normalize(indexed), normalize(walked.clone()));
        // Hashes taken while applying name the same objects as reading the files back.
        let hashed_layer = tmp.path().join("hashed");
        fs::create_dir(&hashed_layer).expect("mkdir");
        let hashing = ApplyOptions {
            hash_files: true,
            ..opts.clone()
        };
        let hashed = apply_layer(&tar[..], &hashed_layer, &hashing).expect("apply");
        assert!(hashed.file_hashes.len() >= 4, "{:?}", hashed.file_hashes);
        let from_apply = ObjectStore::open(&tmp.path().join("c"))
            .expect("open c")
            .ingest_layer("l", &hashed_layer, true, &hashed.file_hashes)
            .expect("ingest with hashes");
        assert_eq!(normalize(from_apply), normalize(walked));
        // Objects carry their entry's metadata, like the unpacked file they replace.
        let entries = streamed.index().layer("l").expect("read").expect("indexed");
        let passwd = entries.iter().find(|e| e.path == b"etc/passwd");
        let id = passwd
            .and_then(|e| e.object.clone())
            .expect("etc/passwd is a file");
        let md = fs::metadata(streamed.path(&id)).expect("object");
        assert_eq!((md.uid(), md.gid(), md.mode() & 0o7777), (1000, 100, 0o640));
    }
}
