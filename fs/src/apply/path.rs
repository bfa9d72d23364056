//! Lexical cleaning of the paths a layer names, so nothing is taken at face value.
//!
//! Every entry path is made relative to the layer root: a leading `/` is dropped, `.`
//! components vanish and `..` climbs at most to the root (never above it), the way
//! containerd cleans `filepath.Join("/", name)`. The cleaned path is then resolved by
//! the kernel with `RESOLVE_IN_ROOT`, which confines symlinks met on the way as well.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::PathBuf;

/// A cleaned path inside the root: its components, none of them empty, `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct RelPath(pub Vec<Vec<u8>>);

impl RelPath {
    /// Cleans raw tar path bytes.
    pub fn clean(raw: &[u8]) -> RelPath {
        let mut out: Vec<Vec<u8>> = Vec::new();
        for c in raw.split(|b| *b == b'/') {
            match c {
                b"" | b"." => {}
                b".." => {
                    out.pop();
                }
                c => out.push(c.to_vec()),
            }
        }
        RelPath(out)
    }

    /// Cleans `target` as seen from the directory `base` (absolute targets start at the root).
    pub fn join_link(base: &RelPath, target: &[u8]) -> RelPath {
        if target.starts_with(b"/") {
            return RelPath::clean(target);
        }
        let mut raw = base.joined();
        raw.push(b'/');
        raw.extend_from_slice(target);
        RelPath::clean(&raw)
    }

    /// The root itself.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The path's components joined by `/` (empty for the root).
    pub fn joined(&self) -> Vec<u8> {
        self.0.join(&b'/')
    }

    /// The same path as a `.`-relative byte string fit for `openat2` (`.` for the root).
    pub fn for_open(&self) -> Vec<u8> {
        if self.0.is_empty() {
            b".".to_vec()
        } else {
            self.joined()
        }
    }

    /// Parent and last component; `None` for the root.
    pub fn split_last(&self) -> Option<(RelPath, &[u8])> {
        let (last, parent) = self.0.split_last()?;
        Some((RelPath(parent.to_vec()), last.as_slice()))
    }

    /// A child of this path.
    pub fn child(&self, name: &[u8]) -> RelPath {
        let mut v = self.0.clone();
        v.push(name.to_vec());
        RelPath(v)
    }

    /// For error messages.
    pub fn display(&self) -> PathBuf {
        PathBuf::from(OsStr::from_bytes(&self.for_open()))
    }
}

/// What an entry's last component says about whiteouts.
#[derive(Debug, PartialEq, Eq)]
pub enum Marker<'a> {
    /// An ordinary name.
    None,
    /// `.wh.NAME`: NAME is deleted from the lower layers.
    Whiteout(&'a [u8]),
    /// `.wh..wh..opq`: the directory hides everything below it in lower layers.
    Opaque,
    /// Other `.wh..wh.` names are aufs bookkeeping and carry nothing.
    AufsMeta,
    /// A bare `.wh.` or `.wh..`-style name that cannot name anything.
    Invalid,
}

/// Classifies a last path component.
pub fn marker(name: &[u8]) -> Marker<'_> {
    const WH: &[u8] = b".wh.";
    if name == b".wh..wh..opq" {
        return Marker::Opaque;
    }
    if name.starts_with(b".wh..wh.") {
        return Marker::AufsMeta;
    }
    match name.strip_prefix(WH) {
        None => Marker::None,
        Some(b"" | b"." | b"..") => Marker::Invalid,
        Some(rest) if rest.contains(&b'/') => Marker::Invalid,
        Some(rest) => Marker::Whiteout(rest),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(p: &RelPath) -> String {
        String::from_utf8_lossy(&p.for_open()).into_owned()
    }

    #[test]
    fn dotdot_and_absolute_paths_stay_in_the_root() {
        assert_eq!(s(&RelPath::clean(b"../../escape")), "escape");
        assert_eq!(s(&RelPath::clean(b"/abs/path")), "abs/path");
        assert_eq!(s(&RelPath::clean(b"a/./b/../../../c")), "c");
        assert_eq!(s(&RelPath::clean(b"./")), ".");
        assert!(RelPath::clean(b"..").is_root());
    }

    #[test]
    fn link_targets_resolve_from_their_directory() {
        let base = RelPath::clean(b"usr/lib");
        assert_eq!(s(&RelPath::join_link(&base, b"../share")), "usr/share");
        assert_eq!(s(&RelPath::join_link(&base, b"/etc")), "etc");
        assert_eq!(s(&RelPath::join_link(&base, b"../../../../x")), "x");
    }

    #[test]
    fn whiteout_names_are_classified() {
        assert_eq!(marker(b".wh.foo"), Marker::Whiteout(b"foo"));
        assert_eq!(marker(b".wh..wh..opq"), Marker::Opaque);
        assert_eq!(marker(b".wh..wh.plnk"), Marker::AufsMeta);
        assert_eq!(marker(b".wh."), Marker::Invalid);
        assert_eq!(marker(b".wh.."), Marker::Invalid);
        assert_eq!(marker(b"plain"), Marker::None);
    }
}
