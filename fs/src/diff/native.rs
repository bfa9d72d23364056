//! Native diff: compare a snapshot's full tree with its parent's, path by path, by
//! type, mode, owner, size, mtime, xattrs and (when timestamps cannot tell) content.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{read_err, ChangeKind, DiffError, Visitor};

fn names(dir: &Path) -> Result<BTreeSet<Vec<u8>>, DiffError> {
    let mut out = BTreeSet::new();
    for e in std::fs::read_dir(dir).map_err(read_err("listing", dir))? {
        out.insert(
            e.map_err(read_err("listing", dir))?
                .file_name()
                .as_bytes()
                .to_vec(),
        );
    }
    Ok(out)
}

fn lstat(p: &Path) -> Option<Metadata> {
    std::fs::symlink_metadata(p).ok()
}

/// Walks `new` against `old` (`None`: everything is added), reporting to `v` sorted.
pub(crate) fn walk(new: &Path, old: Option<&Path>, v: &mut dyn Visitor) -> Result<(), DiffError> {
    walk_dir(new, old, Path::new("/"), v)
}

fn walk_dir(
    new: &Path,
    old: Option<&Path>,
    rel: &Path,
    v: &mut dyn Visitor,
) -> Result<(), DiffError> {
    let r = rel.strip_prefix("/").unwrap_or(rel);
    let (ndir, odir) = (new.join(r), old.map(|o| o.join(r)));
    let new_names = names(&ndir)?;
    let old_names = match &odir {
        Some(d) if lstat(d).is_some_and(|md| md.is_dir()) => names(d)?,
        _ => BTreeSet::new(),
    };
    for name in new_names.union(&old_names) {
        let os = OsString::from(std::ffi::OsStr::from_bytes(name));
        let child = rel.join(&os);
        let nabs = ndir.join(&os);
        let Some(nmd) = lstat(&nabs).filter(|_| new_names.contains(name)) else {
            v.deleted(&child)?;
            continue;
        };
        let oabs = odir.as_ref().map(|d| d.join(&os));
        let omd = oabs
            .as_deref()
            .filter(|_| old_names.contains(name))
            .and_then(lstat);
        match omd {
            None => added(new, &child, &nabs, &nmd, v)?,
            Some(omd) => {
                let oabs = oabs.as_deref().unwrap_or(&nabs);
                if differs(&nabs, &nmd, oabs, &omd)? {
                    v.entry(&child, &nabs, &nmd, ChangeKind::Modified)?;
                }
                if nmd.is_dir() {
                    let old_side = if omd.is_dir() { old } else { None };
                    walk_dir(new, old_side, &child, v)?;
                }
            }
        }
    }
    Ok(())
}

fn added(
    new: &Path,
    rel: &Path,
    abs: &Path,
    md: &Metadata,
    v: &mut dyn Visitor,
) -> Result<(), DiffError> {
    v.entry(rel, abs, md, ChangeKind::Added)?;
    if md.is_dir() {
        walk_dir(new, None, rel, v)?;
    }
    Ok(())
}

/// Extended attributes by name, sorted.
type Xattrs = Vec<(OsString, Option<Vec<u8>>)>;

fn xattrs(p: &Path) -> Result<Xattrs, DiffError> {
    let mut out = Vec::new();
    for n in xattr::list(p).map_err(read_err("listing xattrs of", p))? {
        let val = xattr::get(p, &n).map_err(read_err("reading xattr of", p))?;
        out.push((n, val));
    }
    out.sort();
    Ok(out)
}

/// Whether the new node must be written into the layer.
fn differs(na: &Path, n: &Metadata, oa: &Path, o: &Metadata) -> Result<bool, DiffError> {
    let (nt, ot) = (n.file_type(), o.file_type());
    if nt != ot
        || n.mode() != o.mode()
        || n.uid() != o.uid()
        || n.gid() != o.gid()
        || n.rdev() != o.rdev()
    {
        return Ok(true);
    }
    if n.mtime() != o.mtime() || n.mtime_nsec() != o.mtime_nsec() || xattrs(na)? != xattrs(oa)? {
        return Ok(true);
    }
    if nt.is_symlink() {
        let t = |p: &Path| std::fs::read_link(p).map_err(read_err("reading link", p));
        return Ok(t(na)? != t(oa)?);
    }
    if !nt.is_file() {
        return Ok(false);
    }
    if n.size() != o.size() {
        return Ok(true);
    }
    // Equal nanosecond mtimes mean unchanged; whole-second ones may hide a rewrite.
    if n.mtime_nsec() != 0 {
        return Ok(false);
    }
    Ok(!same_content(na, oa)?)
}

fn same_content(a: &Path, b: &Path) -> Result<bool, DiffError> {
    let mut fa = File::open(a).map_err(read_err("opening", a))?;
    let mut fb = File::open(b).map_err(read_err("opening", b))?;
    let (mut ba, mut bb) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let na = read_full(&mut fa, &mut ba).map_err(read_err("reading", a))?;
        let nb = read_full(&mut fb, &mut bb).map_err(read_err("reading", b))?;
        if na != nb || ba[..na] != bb[..nb] {
            return Ok(false);
        }
        if na == 0 {
            return Ok(true);
        }
    }
}

fn read_full(r: &mut impl Read, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match r.read(&mut buf[filled..])? {
            0 => break,
            n => filled += n,
        }
    }
    Ok(filled)
}
