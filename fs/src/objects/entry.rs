//! One node of a layer's tree index.

/// The type of an indexed node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EntryKind {
    /// Regular file (its content is an object).
    File,
    /// Directory.
    Dir,
    /// Symbolic link.
    Symlink,
    /// Character device (0/0 is an overlay whiteout).
    Char,
    /// Block device.
    Block,
    /// Named pipe.
    Fifo,
    /// Unix socket.
    Socket,
}

impl EntryKind {
    pub(super) fn code(self) -> i64 {
        match self {
            EntryKind::File => 0,
            EntryKind::Dir => 1,
            EntryKind::Symlink => 2,
            EntryKind::Char => 3,
            EntryKind::Block => 4,
            EntryKind::Fifo => 5,
            EntryKind::Socket => 6,
        }
    }

    pub(super) fn from_code(c: i64) -> Option<EntryKind> {
        Some(match c {
            0 => EntryKind::File,
            1 => EntryKind::Dir,
            2 => EntryKind::Symlink,
            3 => EntryKind::Char,
            4 => EntryKind::Block,
            5 => EntryKind::Fifo,
            6 => EntryKind::Socket,
            _ => return None,
        })
    }

    /// From `st_mode`'s type bits.
    pub fn from_mode(mode: u32) -> Option<EntryKind> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFREG => EntryKind::File,
            libc::S_IFDIR => EntryKind::Dir,
            libc::S_IFLNK => EntryKind::Symlink,
            libc::S_IFCHR => EntryKind::Char,
            libc::S_IFBLK => EntryKind::Block,
            libc::S_IFIFO => EntryKind::Fifo,
            libc::S_IFSOCK => EntryKind::Socket,
            _ => return None,
        })
    }

    /// The `st_mode` type bits.
    pub fn mode_bits(self) -> u32 {
        match self {
            EntryKind::File => libc::S_IFREG,
            EntryKind::Dir => libc::S_IFDIR,
            EntryKind::Symlink => libc::S_IFLNK,
            EntryKind::Char => libc::S_IFCHR,
            EntryKind::Block => libc::S_IFBLK,
            EntryKind::Fifo => libc::S_IFIFO,
            EntryKind::Socket => libc::S_IFSOCK,
        }
    }
}

/// What a layer directory holds at one path, as overlayfs would see it: whiteouts are
/// 0/0 character devices, opaque directories carry `trusted.overlay.opaque=y`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Path inside the layer, components joined by `/`, no leading `/`; empty for the root.
    pub path: Vec<u8>,
    /// Node type.
    pub kind: EntryKind,
    /// Permission bits with setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time (seconds, nanoseconds).
    pub mtime: (i64, i64),
    /// Size in bytes (files: content length; symlinks: target length).
    pub size: u64,
    /// Allocated bytes of a file's content (sparse files hold less than `size`).
    pub blocks: u64,
    /// A regular file's object id (`<blake3>-<meta>`).
    pub object: Option<String>,
    /// A symlink's target.
    pub target: Option<Vec<u8>>,
    /// Device number of char and block devices.
    pub rdev: u64,
    /// Extended attributes, sorted by name (overlay's own included).
    pub xattrs: Vec<(Vec<u8>, Vec<u8>)>,
    /// Nodes of this layer that share an inode (tar hardlinks) share this number.
    pub link_group: Option<u64>,
}

impl Entry {
    /// A node with nothing but a type, mode and mtime, owned by root: the root of a
    /// tree, or a directory a layer implies without listing it.
    pub fn bare(path: Vec<u8>, kind: EntryKind, mode: u32, mtime: (i64, i64)) -> Entry {
        Entry {
            path,
            kind,
            mode,
            uid: 0,
            gid: 0,
            mtime,
            size: 0,
            blocks: 0,
            object: None,
            target: None,
            rdev: 0,
            xattrs: Vec::new(),
            link_group: None,
        }
    }

    /// Whether this is an overlay whiteout (a 0/0 character device).
    pub fn is_whiteout(&self) -> bool {
        self.kind == EntryKind::Char && self.rdev == 0
    }

    /// Whether this directory hides what lower layers have under it.
    pub fn is_opaque(&self) -> bool {
        self.kind == EntryKind::Dir
            && self
                .xattrs
                .iter()
                .any(|(k, v)| k == b"trusted.overlay.opaque" && v == b"y")
    }

    /// Its blake3 content hash (hex), for files.
    pub fn content_hash(&self) -> Option<&str> {
        self.object.as_deref().and_then(|o| o.split('-').next())
    }
}

/// Length-prefixed `name, value` pairs.
pub(super) fn encode_xattrs(x: &[(Vec<u8>, Vec<u8>)]) -> Vec<u8> {
    let mut out = Vec::new();
    for (k, v) in x {
        for part in [k, v] {
            out.extend_from_slice(&(part.len() as u32).to_le_bytes());
            out.extend_from_slice(part);
        }
    }
    out
}

pub(super) fn decode_xattrs(mut b: &[u8]) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    let take = |b: &mut &[u8]| -> Option<Vec<u8>> {
        let len = u32::from_le_bytes(b.get(..4)?.try_into().ok()?) as usize;
        let v = b.get(4..4 + len)?.to_vec();
        *b = &b[4 + len..];
        Some(v)
    };
    let mut out = Vec::new();
    while !b.is_empty() {
        let k = take(&mut b)?;
        let v = take(&mut b)?;
        out.push((k, v));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xattrs_round_trip() {
        let x = vec![
            (b"user.a".to_vec(), b"".to_vec()),
            (b"trusted.overlay.opaque".to_vec(), b"y".to_vec()),
        ];
        assert_eq!(decode_xattrs(&encode_xattrs(&x)), Some(x));
        assert_eq!(decode_xattrs(&[1, 0, 0]), None);
        assert_eq!(decode_xattrs(&[9, 0, 0, 0, b'x']), None);
    }
}
