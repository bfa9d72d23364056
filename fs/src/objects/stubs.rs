//! Exact layers: each regular file of an overlay layer directory becomes a metadata-only
//! *stub* (overlayfs "metacopy": an empty, sparse file of the real size with the file's
//! mode, owner, times and xattrs, and `trusted.overlay.redirect=/<id>`), and its content
//! a plain object in `content/` named by its [`super::content_id`]. Mounted with that
//! directory as a data-only lower layer, every path keeps its own inode and the link
//! count the image gives it, while each content is stored once (the composefs approach).
//!
//! Conversion keeps hard links: the names of one inode become names of one stub. The
//! content objects are staged and appear under their ids inside the index transaction
//! that records the layer, as every object does (see `staging`).

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File, FileTimes};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use super::entry::{Entry, EntryKind};
use super::ingest;
use super::staging::Staging;
use super::{io_err, ObjectError, ObjectStore};

/// The xattr that makes a lower file metadata-only.
pub const METACOPY_XATTR: &str = "trusted.overlay.metacopy";
/// The xattr naming where, in a data-only lower layer, a stub's content is.
pub const REDIRECT_XATTR: &str = "trusted.overlay.redirect";

/// The redirect of a stub whose content is object `id` (a [`super::content_id`]),
/// relative to the data-only layer [`super::CONTENT_DIR`].
pub fn redirect_of(id: &str) -> String {
    format!("/{id}")
}

/// The object id a stub's redirect names, if `path` is a stub.
pub fn stub_object(path: &Path) -> Option<String> {
    let v = xattr::get(path, REDIRECT_XATTR).ok().flatten()?;
    let s = std::str::from_utf8(&v).ok()?;
    let id = s.strip_prefix('/')?;
    super::is_content_id(id).then(|| id.to_string())
}

impl ObjectStore {
    /// Converts the finished overlay layer directory `dir` into stubs over plain content
    /// objects and records its tree index under `key` (see the module docs). `known`
    /// holds blake3 hashes by inode from the apply that wrote the directory; other files
    /// are read and hashed here. Files that are stubs already keep their objects; those
    /// an apply wrote as stubs (`applied`: its staging and content sizes by stub inode)
    /// have theirs published from that staging.
    pub fn ingest_stub_layer(
        &self,
        key: &str,
        dir: &Path,
        known: &HashMap<u64, blake3::Hash>,
        applied: Option<(&Staging, &HashMap<u64, u64>)>,
    ) -> Result<Vec<Entry>, ObjectError> {
        let own;
        let (staging, applied_blocks) = match applied {
            Some((s, blocks)) => (s, Some(blocks)),
            None => {
                own = Staging::new(&self.dir)?;
                (&own, None)
            }
        };
        let mut walked = ingest::walk(dir)?;
        ingest::mark_link_groups(&mut walked);
        let mut done: HashMap<u64, (String, PathBuf)> = HashMap::new();
        let mut converted = false;
        for w in &mut walked {
            if w.entry.kind != EntryKind::File {
                continue;
            }
            let staged = applied_blocks.and_then(|b| Some((b.get(&w.ino)?, known.get(&w.ino)?)));
            if let Some((blocks, hash)) = staged {
                w.entry.blocks = *blocks;
                w.entry.object = Some(super::content_id(hash));
                continue;
            }
            if let Some(id) = stub_object(&w.abs) {
                w.entry.blocks = fs::symlink_metadata(self.path(&id))
                    .map_or(0, |m| std::os::unix::fs::MetadataExt::blocks(&m) * 512);
                w.entry.object = Some(id);
                continue;
            }
            converted = true;
            match done.get(&w.ino) {
                Some((id, stub)) => {
                    // Another name of a converted inode: a name of its stub now.
                    replace_with_link(stub, &w.abs)?;
                    w.entry.object = Some(id.clone());
                }
                None => {
                    let id = match known.get(&w.ino) {
                        Some(h) => super::content_id(h),
                        None => super::content_id(&ingest::hash_file(&w.abs)?.0),
                    };
                    staging.stage_link(&w.abs, &id, self)?;
                    write_stub(&w.abs, &w.entry, &id)?;
                    w.entry.object = Some(id.clone());
                    done.insert(w.ino, (id, w.abs.clone()));
                }
            }
        }
        // Renaming stubs into place touched their directories: give them back their times.
        if converted {
            for w in walked.iter().filter(|w| w.entry.kind == EntryKind::Dir) {
                restore_mtime(&w.abs, w.entry.mtime)?;
            }
        }
        let entries: Vec<Entry> = walked.into_iter().map(|w| w.entry).collect();
        self.index
            .put_layer_with(key, &entries, || staging.publish(self))?;
        Ok(entries)
    }
}

impl ObjectStore {
    /// Keeps link counts exact across layers: when layer `key` (at `dir`) replaces or
    /// hides some names of a multiply-linked file of a lower layer, the names still
    /// visible would show the lower file's count. They are given their own inode in this
    /// layer (stubs over the same object, the lower file's metadata), as a sequential
    /// unpack leaves them. `lowers`: the keys of the layers below, base first; each must
    /// have a tree index. Returns whether the layer changed (then index it again).
    pub fn split_link_groups(
        &self,
        key: &str,
        dir: &Path,
        lowers: &[String],
    ) -> Result<bool, ObjectError> {
        let mut layers = Vec::with_capacity(lowers.len() + 1);
        for k in lowers.iter().map(String::as_str).chain([key]) {
            layers.push(self.index.layer(k)?.ok_or_else(|| ObjectError::Corrupt {
                layer: k.to_string(),
                path: String::new(),
                what: "the layer has no tree index",
            })?);
        }
        let top = layers.len() - 1;
        let mut totals: HashMap<(usize, u64), usize> = HashMap::new();
        for (li, layer) in layers[..top].iter().enumerate() {
            for e in layer.iter().filter(|e| e.kind == EntryKind::File) {
                if let Some(g) = e.link_group {
                    *totals.entry((li, g)).or_default() += 1;
                }
            }
        }
        if totals.is_empty() {
            return Ok(false);
        }
        let tree = crate::fuse::view::merge(layers);
        let mut visible: HashMap<(usize, u64), Vec<&Entry>> = HashMap::new();
        for (path, (e, li)) in &tree {
            if let (Some(g), true) = (e.link_group, *li < top && e.kind == EntryKind::File) {
                if crate::fuse::view::reachable(&tree, path) {
                    visible.entry((*li, g)).or_default().push(e);
                }
            }
        }
        let mut touched_dirs: Vec<(PathBuf, (i64, i64))> = Vec::new();
        let mut changed = false;
        for (group, names) in visible {
            if names.len() >= totals.get(&group).copied().unwrap_or(0) {
                continue;
            }
            let Some(object) = names[0].object.clone() else {
                continue;
            };
            let mut first: Option<PathBuf> = None;
            for e in names {
                let abs = dir.join(OsStr::from_bytes(&e.path));
                ensure_parents(dir, &e.path, &tree, &mut touched_dirs)?;
                match &first {
                    None => {
                        write_stub(&abs, e, &object)?;
                        first = Some(abs);
                    }
                    Some(f) => fs::hard_link(f, &abs).map_err(io_err("linking", &abs))?,
                }
            }
            changed = true;
        }
        for (d, mtime) in touched_dirs.into_iter().rev() {
            restore_mtime(&d, mtime)?;
        }
        Ok(changed)
    }
}

/// Makes the parents of `path` exist in the layer `dir`, each a copy of the merged
/// tree's directory (owner, mode, xattrs), so the new names change nothing else.
fn ensure_parents(
    dir: &Path,
    path: &[u8],
    tree: &std::collections::BTreeMap<Vec<u8>, (Entry, usize)>,
    touched: &mut Vec<(PathBuf, (i64, i64))>,
) -> Result<(), ObjectError> {
    let mut at = 0;
    while let Some(i) = path[at..].iter().position(|b| *b == b'/') {
        let rel = &path[..at + i];
        at += i + 1;
        let abs = dir.join(OsStr::from_bytes(rel));
        let Some((e, _)) = tree.get(rel) else {
            continue;
        };
        match fs::symlink_metadata(&abs) {
            Ok(_) => {}
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                fs::create_dir(&abs).map_err(io_err("creating", &abs))?;
                std::os::unix::fs::lchown(&abs, Some(e.uid), Some(e.gid))
                    .map_err(io_err("chown", &abs))?;
                fs::set_permissions(&abs, fs::Permissions::from_mode(e.mode))
                    .map_err(io_err("chmod", &abs))?;
                for (k, v) in &e.xattrs {
                    xattr::set(&abs, OsStr::from_bytes(k), v)
                        .map_err(io_err("setting xattrs of", &abs))?;
                }
            }
            Err(err) => return Err(io_err("stat", &abs)(err)),
        }
        touched.push((abs, e.mtime));
    }
    Ok(())
}

fn temp_beside(path: &Path) -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    path.with_file_name(format!(
        ".berth-stub-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

/// Replaces the file at `path` with a stub carrying `e`'s metadata and content `id`
/// (a new stub when nothing is there).
fn write_stub(path: &Path, e: &Entry, id: &str) -> Result<(), ObjectError> {
    let tmp = temp_beside(path);
    let made = (|| -> std::io::Result<()> {
        let f = File::create_new(&tmp)?;
        f.set_len(e.size)?;
        set_xattr(&f, METACOPY_XATTR, b"")?;
        set_xattr(&f, REDIRECT_XATTR, redirect_of(id).as_bytes())?;
        for (k, v) in &e.xattrs {
            set_xattr(&f, OsStr::from_bytes(k), v)?;
        }
        std::os::unix::fs::fchown(&f, Some(e.uid), Some(e.gid))?;
        f.set_permissions(fs::Permissions::from_mode(e.mode))?;
        let t = UNIX_EPOCH
            + Duration::new(
                e.mtime.0.max(0) as u64,
                e.mtime.1.clamp(0, 999_999_999) as u32,
            );
        f.set_times(FileTimes::new().set_accessed(t).set_modified(t))?;
        fs::rename(&tmp, path)
    })();
    if made.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    made.map_err(io_err("replacing with a stub", path))
}

fn restore_mtime(dir: &Path, (secs, nanos): (i64, i64)) -> Result<(), ObjectError> {
    use nix::sys::stat::{utimensat, UtimensatFlags};
    use nix::sys::time::TimeSpec;
    let t = TimeSpec::new(secs, nanos);
    utimensat(
        nix::fcntl::AT_FDCWD,
        dir,
        &t,
        &t,
        UtimensatFlags::NoFollowSymlink,
    )
    .map_err(|e| io_err("restoring the times of", dir)(e.into()))
}

fn set_xattr(f: &File, name: impl AsRef<OsStr>, value: &[u8]) -> std::io::Result<()> {
    use xattr::FileExt;
    f.set_xattr(name, value)
}

/// Makes `path` another name of `stub`.
fn replace_with_link(stub: &Path, path: &Path) -> Result<(), ObjectError> {
    let tmp = temp_beside(path);
    fs::hard_link(stub, &tmp).map_err(io_err("linking a stub to", &tmp))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        io_err("replacing with a stub", path)(e)
    })
}
