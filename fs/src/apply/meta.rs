//! An entry's owner, mode, mtime and xattrs, from its header and PAX records.

use std::io::{self, Read};

use nix::sys::time::TimeSpec;

use super::path::RelPath;
use super::ApplyError;

/// Owner, mode, times and xattrs of an entry, from its header and PAX records.
pub(crate) struct Meta {
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub mtime: TimeSpec,
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
}

/// Header fields, overridden by PAX records where present (large ids, fractional mtimes).
pub(crate) fn read_meta<R: Read>(
    e: &mut tar::Entry<'_, R>,
    path: &RelPath,
) -> Result<Meta, ApplyError> {
    let bad = |field| ApplyError::BadHeader {
        path: path.display(),
        field,
    };
    let h = e.header();
    let old = h.as_old();
    let mode = lenient(h.mode(), &old.mode).ok_or_else(|| bad("mode"))?;
    let mut uid = lenient(h.uid(), &old.uid).ok_or_else(|| bad("uid"))?;
    let mut gid = lenient(h.gid(), &old.gid).ok_or_else(|| bad("gid"))?;
    let mtime = lenient(h.mtime(), &old.mtime).ok_or_else(|| bad("mtime"))?;
    let mut mtime = TimeSpec::new(i64::try_from(mtime).map_err(|_| bad("mtime"))?, 0);
    let mut xattrs = Vec::new();
    if let Some(pax) = e.pax_extensions().map_err(ApplyError::Read)? {
        for ext in pax {
            let ext = ext.map_err(ApplyError::Read)?;
            let key = ext.key_bytes();
            let value = ext.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                // overlayfs's own xattrs would steer the mount (hide lower content,
                // redirect reads): never taken from a layer, as containerd does not.
                if !is_overlay_xattr(name) {
                    xattrs.push((name.to_vec(), value.to_vec()));
                }
            } else if key == b"uid" {
                uid = parse_u64(value).ok_or_else(|| bad("PAX uid"))?;
            } else if key == b"gid" {
                gid = parse_u64(value).ok_or_else(|| bad("PAX gid"))?;
            } else if key == b"mtime" {
                mtime = parse_pax_time(value).ok_or_else(|| bad("PAX mtime"))?;
            }
        }
    }
    let uid = u32::try_from(uid).map_err(|_| bad("uid"))?;
    let gid = u32::try_from(gid).map_err(|_| bad("gid"))?;
    Ok(Meta {
        mode,
        uid,
        gid,
        mtime,
        xattrs,
    })
}

/// `trusted.overlay.*`: the xattrs overlayfs acts on in its layers.
pub(crate) fn is_overlay_xattr(name: &[u8]) -> bool {
    name.starts_with(b"trusted.overlay.")
}

/// A numeric header field left empty (all NUL or spaces) reads as 0, as Go's tar does.
fn lenient<T: Default>(parsed: io::Result<T>, raw: &[u8]) -> Option<T> {
    match parsed {
        Ok(v) => Some(v),
        Err(_) if raw.iter().all(|b| *b == 0 || *b == b' ') => Some(T::default()),
        Err(_) => None,
    }
}

fn parse_u64(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v).ok()?.trim().parse().ok()
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.123456789`.
fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?.trim();
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos: i64 = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    let nanos = if secs < 0 && nanos > 0 { -nanos } else { nanos };
    Some(TimeSpec::new(secs, nanos))
}
