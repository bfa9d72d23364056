//! Turning a finished layer directory's files into objects, and reading its tree.
//!
//! The layer directory was just built by `apply_layer` and nothing else writes to it, so
//! a plain walk that never follows symlinks sees exactly what the layer holds.

use std::collections::HashMap;
use std::fs::{self, Metadata};
use std::io::{self, ErrorKind};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use super::entry::{Entry, EntryKind};
use super::{io_err, ObjectError, ObjectStore};

/// Hashes a file's content with blake3: (hash, length).
pub(super) fn hash_file(path: &Path) -> Result<(blake3::Hash, u64), ObjectError> {
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err("opening", path))?;
    let mut h = blake3::Hasher::new();
    let n = h
        .update_reader(io::BufReader::with_capacity(1 << 20, f))
        .map_err(io_err("reading", path))?
        .count();
    Ok((h.finalize(), n))
}

/// The part of an object's name that covers what its inode carries besides content, and
/// the path it belongs at (see the module docs of `objects`).
pub(super) fn meta_key(e: &Entry) -> String {
    let mut h = blake3::Hasher::new();
    h.update(b"berth-object-v1\0");
    for n in [e.mode, e.uid, e.gid] {
        h.update(&n.to_le_bytes());
    }
    h.update(&e.mtime.0.to_le_bytes());
    h.update(&e.mtime.1.to_le_bytes());
    h.update(&(e.xattrs.len() as u64).to_le_bytes());
    for (k, v) in &e.xattrs {
        h.update(&(k.len() as u64).to_le_bytes());
        h.update(k);
        h.update(&(v.len() as u64).to_le_bytes());
        h.update(v);
    }
    h.update(&(e.path.len() as u64).to_le_bytes());
    h.update(&e.path);
    h.finalize().to_hex()[..32].to_string()
}

/// One walked node and its inode before any relinking.
pub(super) struct Walked {
    pub entry: Entry,
    pub abs: PathBuf,
    pub ino: u64,
    pub nlink: u64,
}

/// Gives the names of each multiply-linked inode one link group.
pub(super) fn mark_link_groups(walked: &mut [Walked]) {
    let mut links: HashMap<u64, usize> = HashMap::new();
    for w in walked.iter() {
        if w.entry.kind != EntryKind::Dir && w.nlink > 1 {
            *links.entry(w.ino).or_default() += 1;
        }
    }
    for w in walked.iter_mut() {
        if links.get(&w.ino).copied().unwrap_or(0) > 1 {
            w.entry.link_group = Some(w.ino);
        }
    }
}

/// A layer file and the object it is to become a name of.
pub(super) type Link = (PathBuf, String);

/// Walks `root` and names every regular file's object; returns the tree index and the
/// links [`link_all`] makes (inside the index transaction that records the layer).
pub(super) fn ingest(
    root: &Path,
    known: &HashMap<u64, blake3::Hash>,
) -> Result<(Vec<Entry>, Vec<Link>), ObjectError> {
    let mut walked = walk(root)?;
    let mut ids: HashMap<u64, String> = HashMap::new();
    let mut links_to_make = Vec::new();
    mark_link_groups(&mut walked);
    for w in &mut walked {
        if w.entry.kind != EntryKind::File {
            continue;
        }
        // Members of a hardlink group share the first member's object (and inode).
        let id = match ids.get(&w.ino) {
            Some(id) => id.clone(),
            None => {
                let hash = match known.get(&w.ino) {
                    Some(hash) => *hash,
                    None => hash_file(&w.abs)?.0,
                };
                let id = format!("{}-{}", hash.to_hex(), meta_key(&w.entry));
                ids.insert(w.ino, id.clone());
                id
            }
        };
        links_to_make.push((w.abs.clone(), id.clone()));
        w.entry.object = Some(id);
    }
    Ok((walked.into_iter().map(|w| w.entry).collect(), links_to_make))
}

/// Makes every file a name of its object (see [`link_object`]).
pub(super) fn link_all(
    store: &ObjectStore,
    links: &[Link],
    relink: bool,
) -> Result<(), ObjectError> {
    for (file, id) in links {
        link_object(store, file, id, relink)?;
    }
    Ok(())
}

pub(super) fn walk(root: &Path) -> Result<Vec<Walked>, ObjectError> {
    let mut out = Vec::new();
    let mut stack = vec![Vec::<u8>::new()];
    while let Some(rel) = stack.pop() {
        let abs = if rel.is_empty() {
            root.to_path_buf()
        } else {
            root.join(std::ffi::OsStr::from_bytes(&rel))
        };
        let md = fs::symlink_metadata(&abs).map_err(io_err("stat", &abs))?;
        let entry = entry_of(&abs, rel.clone(), &md)?;
        if entry.kind == EntryKind::Dir {
            for c in fs::read_dir(&abs).map_err(io_err("listing", &abs))? {
                let c = c.map_err(io_err("listing", &abs))?;
                let mut p = rel.clone();
                if !p.is_empty() {
                    p.push(b'/');
                }
                p.extend_from_slice(c.file_name().as_bytes());
                stack.push(p);
            }
        }
        out.push(Walked {
            entry,
            abs,
            ino: md.ino(),
            nlink: md.nlink(),
        });
    }
    out.sort_by(|a, b| a.entry.path.cmp(&b.entry.path));
    Ok(out)
}

fn entry_of(abs: &Path, path: Vec<u8>, md: &Metadata) -> Result<Entry, ObjectError> {
    let kind = EntryKind::from_mode(md.mode()).ok_or_else(|| ObjectError::Io {
        op: "indexing",
        path: abs.to_path_buf(),
        source: io::Error::new(ErrorKind::InvalidData, "unknown file type"),
    })?;
    let mut xattrs = Vec::new();
    for name in xattr::list(abs).map_err(io_err("listing xattrs of", abs))? {
        let n = name.as_bytes();
        // A stub's own xattrs say where its content is, not what the image says.
        if n == super::stubs::METACOPY_XATTR.as_bytes()
            || n == super::stubs::REDIRECT_XATTR.as_bytes()
        {
            continue;
        }
        if let Some(v) = xattr::get(abs, &name).map_err(io_err("reading xattr of", abs))? {
            xattrs.push((name.as_bytes().to_vec(), v));
        }
    }
    xattrs.sort();
    let target = match kind {
        EntryKind::Symlink => Some(
            fs::read_link(abs)
                .map_err(io_err("reading link", abs))?
                .as_os_str()
                .as_bytes()
                .to_vec(),
        ),
        _ => None,
    };
    Ok(Entry {
        path,
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: (md.mtime(), md.mtime_nsec()),
        size: md.size(),
        blocks: if kind == EntryKind::File {
            md.blocks() * 512
        } else {
            0
        },
        object: None,
        target,
        rdev: if matches!(kind, EntryKind::Char | EntryKind::Block) {
            md.rdev()
        } else {
            0
        },
        xattrs,
        link_group: None,
    })
}

/// Makes `file` a name of object `id`: publishes the file as the object if it is new,
/// otherwise swaps the file for a link to the existing object. At the hardlink limit the
/// file stays a copy.
fn link_object(
    store: &ObjectStore,
    file: &Path,
    id: &str,
    relink: bool,
) -> Result<(), ObjectError> {
    let obj = store.path(id);
    match fs::hard_link(file, &obj) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let fan = obj.parent().unwrap_or(store.dir());
            fs::create_dir_all(fan).map_err(io_err("creating", fan))?;
            return link_object(store, file, id, relink);
        }
        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists && !relink => return Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
        Err(e) => return Err(io_err("publishing object", &obj)(e)),
    }
    let (fmd, omd) = (
        fs::symlink_metadata(file).map_err(io_err("stat", file))?,
        fs::symlink_metadata(&obj).map_err(io_err("stat", &obj))?,
    );
    if (fmd.dev(), fmd.ino()) == (omd.dev(), omd.ino()) {
        return Ok(());
    }
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let tmp = file.with_file_name(format!(
        ".berth-object-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    match fs::hard_link(&obj, &tmp) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EMLINK) => return Ok(()),
        Err(e) => return Err(io_err("linking object to", &tmp)(e)),
    }
    if let Err(e) = fs::rename(&tmp, file) {
        let _ = fs::remove_file(&tmp);
        return Err(io_err("replacing with object", file)(e));
    }
    Ok(())
}
