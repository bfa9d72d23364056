//! A scanner that records everything a filesystem tree carries, for tests and tools that
//! compare two unpacks (berth against `umoci unpack`, a round trip against its source).

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// The type of a node: the same kinds a layer's tree index records.
pub use crate::objects::EntryKind as NodeKind;

/// What a tree records for one path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Node type.
    pub kind: NodeKind,
    /// Permission bits including setuid, setgid and sticky.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Size in bytes (files only; 0 otherwise).
    pub size: u64,
    /// `sha256:<hex>` of a file's content.
    pub sha256: Option<String>,
    /// A symlink's target, raw.
    pub target: Option<PathBuf>,
    /// Device major/minor for char and block devices.
    pub rdev: Option<(u64, u64)>,
    /// Extended attributes (without `trusted.overlay.*` and `security.selinux`).
    pub xattrs: BTreeMap<String, Vec<u8>>,
    /// Link count of a non-directory (what `stat` says: tar's hardlink detection, `du`
    /// and `find -links` read it); 0 for directories, whose counts are the filesystem's.
    pub nlink: u64,
    /// Files sharing an inode get the same group number (the index of the group's first
    /// path in sorted order); `None` for files alone on their inode.
    pub hardlink_group: Option<usize>,
    /// Modification time as (seconds, nanoseconds).
    pub mtime: (i64, i64),
}

/// Errors from scanning a tree.
#[derive(Debug, thiserror::Error)]
#[error("scanning {path}: {source}")]
pub struct TreeError {
    /// Where it failed.
    pub path: PathBuf,
    /// Why.
    pub source: io::Error,
}

/// Every path under a root (keys are `/`-rooted: `/`, `/etc`, `/etc/passwd`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Nodes by path.
    pub nodes: BTreeMap<PathBuf, Node>,
}

fn skip_xattr(name: &str) -> bool {
    name.starts_with("trusted.overlay.") || name == "security.selinux"
}

impl Tree {
    /// Records every node under `root`, never following symlinks.
    pub fn scan(root: &Path) -> Result<Tree, TreeError> {
        let mut tree = Tree::default();
        let mut inodes: HashMap<(u64, u64), Vec<PathBuf>> = HashMap::new();
        let mut stack = vec![PathBuf::from("/")];
        while let Some(rel) = stack.pop() {
            let abs = root.join(rel.strip_prefix("/").unwrap_or(&rel));
            let err = |source| TreeError {
                path: abs.clone(),
                source,
            };
            let md = fs::symlink_metadata(&abs).map_err(err)?;
            let node = scan_node(&abs, &md).map_err(err)?;
            if node.kind == NodeKind::Dir {
                for e in fs::read_dir(&abs).map_err(err)? {
                    stack.push(rel.join(e.map_err(err)?.file_name()));
                }
            } else if node.kind == NodeKind::File && md.nlink() > 1 {
                inodes
                    .entry((md.dev(), md.ino()))
                    .or_default()
                    .push(rel.clone());
            }
            tree.nodes.insert(rel, node);
        }
        let mut groups: Vec<Vec<PathBuf>> = inodes.into_values().filter(|g| g.len() > 1).collect();
        for g in &mut groups {
            g.sort();
        }
        groups.sort();
        for (i, g) in groups.iter().enumerate() {
            for p in g {
                if let Some(n) = tree.nodes.get_mut(p) {
                    n.hardlink_group = Some(i);
                }
            }
        }
        Ok(tree)
    }

    /// The paths sharing `path`'s inode (itself included), or empty.
    fn link_peers(&self, path: &Path) -> Vec<&Path> {
        let Some(g) = self.nodes.get(path).and_then(|n| n.hardlink_group) else {
            return Vec::new();
        };
        self.nodes
            .iter()
            .filter(|(_, n)| n.hardlink_group == Some(g))
            .map(|(p, _)| p.as_path())
            .collect()
    }

    /// Human-readable differences from `other`; empty when the trees match. Hardlinks are
    /// compared as partitions (which paths share an inode); mtimes only if asked.
    pub fn differences(&self, other: &Tree, mtimes: bool) -> Vec<String> {
        let mut out = Vec::new();
        for (p, a) in &self.nodes {
            let Some(b) = other.nodes.get(p) else {
                out.push(format!("{}: only on the left ({:?})", p.display(), a.kind));
                continue;
            };
            out.extend(node_differences(p, a, b, mtimes));
            let (la, lb) = (self.link_peers(p), other.link_peers(p));
            if la != lb {
                out.push(format!("{}: hardlinked with {la:?} != {lb:?}", p.display()));
            }
        }
        for (p, b) in &other.nodes {
            if !self.nodes.contains_key(p) {
                out.push(format!("{}: only on the right ({:?})", p.display(), b.kind));
            }
        }
        out
    }
}

fn node_differences(p: &Path, a: &Node, b: &Node, mtimes: bool) -> Vec<String> {
    let mut out = Vec::new();
    let mut check = |what: &str, l: String, r: String| {
        if l != r {
            out.push(format!("{}: {what} {l} != {r}", p.display()));
        }
    };
    check("type", format!("{:?}", a.kind), format!("{:?}", b.kind));
    check("mode", format!("{:o}", a.mode), format!("{:o}", b.mode));
    check(
        "owner",
        format!("{}:{}", a.uid, a.gid),
        format!("{}:{}", b.uid, b.gid),
    );
    if a.kind == NodeKind::File && b.kind == NodeKind::File {
        check("size", a.size.to_string(), b.size.to_string());
        check(
            "content",
            format!("{:?}", a.sha256),
            format!("{:?}", b.sha256),
        );
    }
    check(
        "symlink target",
        format!("{:?}", a.target),
        format!("{:?}", b.target),
    );
    check("device", format!("{:?}", a.rdev), format!("{:?}", b.rdev));
    check("nlink", a.nlink.to_string(), b.nlink.to_string());
    check(
        "xattrs",
        format!("{:?}", a.xattrs),
        format!("{:?}", b.xattrs),
    );
    if mtimes && a.kind != NodeKind::Symlink {
        check("mtime", format!("{:?}", a.mtime), format!("{:?}", b.mtime));
    }
    out
}

fn scan_node(abs: &Path, md: &fs::Metadata) -> io::Result<Node> {
    let kind = NodeKind::from_mode(md.mode()).unwrap_or(NodeKind::File);
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(abs)? {
        let key = String::from_utf8_lossy(name.as_bytes()).into_owned();
        if skip_xattr(&key) {
            continue;
        }
        if let Some(v) = xattr::get(abs, &name)? {
            xattrs.insert(key, v);
        }
    }
    let is_dev = matches!(kind, NodeKind::Char | NodeKind::Block);
    Ok(Node {
        kind,
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        size: if kind == NodeKind::File { md.size() } else { 0 },
        sha256: if kind == NodeKind::File {
            Some(hash_file(abs)?)
        } else {
            None
        },
        target: if kind == NodeKind::Symlink {
            Some(fs::read_link(abs)?)
        } else {
            None
        },
        rdev: is_dev.then(|| {
            (
                nix::sys::stat::major(md.rdev()),
                nix::sys::stat::minor(md.rdev()),
            )
        }),
        xattrs,
        hardlink_group: None,
        nlink: if kind == NodeKind::Dir { 0 } else { md.nlink() },
        mtime: (md.mtime(), md.mtime_nsec()),
    })
}

fn hash_file(p: &Path) -> io::Result<String> {
    crate::digest::sha256_of(&mut File::open(p)?)
}

/// A path as raw bytes (for callers that print or compare non-UTF-8 names).
pub fn path_bytes(p: &Path) -> &[u8] {
    p.as_os_str().as_bytes()
}
