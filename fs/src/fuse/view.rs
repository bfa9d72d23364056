//! The merged tree of an image, built in memory from its layers' tree indexes with
//! overlayfs's rules: upper entries replace lower ones, 0/0 character devices delete,
//! an opaque directory hides what lower layers hold under it.

use std::collections::{BTreeMap, HashMap};

use crate::objects::{Entry, EntryKind};

/// The root's inode number.
pub const ROOT: u64 = 1;

/// One inode of the view.
#[derive(Debug, Clone)]
pub struct Node {
    /// What the index says about it (for a hardlink group: its first path's entry).
    pub entry: Entry,
    /// Link count: names in the view, or 2 + subdirectories for a directory.
    pub nlink: u32,
    /// The parent directory's inode (the root is its own parent).
    pub parent: u64,
    /// A directory's children, sorted by name.
    pub children: Vec<(Vec<u8>, u64)>,
}

/// The merged tree, inode `n` at `nodes[n - 1]`. Inode numbers follow sorted path order,
/// so the same image always gets the same numbers.
#[derive(Debug, Clone, Default)]
pub struct View {
    /// Every inode.
    pub nodes: Vec<Node>,
}

fn subtree_end(path: &[u8]) -> Vec<u8> {
    let mut end = path.to_vec();
    end.push(b'/' + 1);
    end
}

fn remove_below(tree: &mut BTreeMap<Vec<u8>, (Entry, usize)>, path: &[u8]) {
    let mut start = path.to_vec();
    start.push(b'/');
    if path.is_empty() {
        start.clear();
    }
    let end = subtree_end(path);
    let doomed: Vec<Vec<u8>> = tree
        .range(start..end)
        .map(|(k, _)| k.clone())
        .filter(|k| !k.is_empty())
        .collect();
    for k in doomed {
        tree.remove(&k);
    }
}

fn split(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|b| *b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (&[], path),
    }
}

/// Merges layer indexes (base first) with overlayfs's rules: path → (entry, layer).
/// Orphans (entries whose parent was replaced by a non-directory) may remain; callers
/// that walk from the root never reach them.
pub(crate) fn merge(layers: Vec<Vec<Entry>>) -> BTreeMap<Vec<u8>, (Entry, usize)> {
    let mut tree: BTreeMap<Vec<u8>, (Entry, usize)> = BTreeMap::new();
    for (li, layer) in layers.into_iter().enumerate() {
        for e in layer {
            let existing_dir = tree
                .get(&e.path)
                .is_some_and(|(x, _)| x.kind == EntryKind::Dir);
            if e.is_whiteout() {
                tree.remove(&e.path);
                remove_below(&mut tree, &e.path);
                continue;
            }
            if existing_dir && (e.kind != EntryKind::Dir || e.is_opaque()) {
                remove_below(&mut tree, &e.path);
            }
            tree.insert(e.path.clone(), (e, li));
        }
    }
    tree
}

/// Whether every ancestor of `path` in `tree` is a directory (the path is reachable).
pub(crate) fn reachable(tree: &BTreeMap<Vec<u8>, (Entry, usize)>, path: &[u8]) -> bool {
    let mut at = 0;
    while let Some(i) = path[at..].iter().position(|b| *b == b'/') {
        let dir = &path[..at + i];
        if !tree.get(dir).is_some_and(|(e, _)| e.kind == EntryKind::Dir) {
            return false;
        }
        at += i + 1;
    }
    true
}

impl View {
    /// Merges `layers` (base first).
    pub fn build(layers: Vec<Vec<Entry>>) -> View {
        let mut tree = merge(layers);
        tree.entry(Vec::new()).or_insert_with(|| (root_entry(), 0));
        Self::number(tree)
    }

    fn number(tree: BTreeMap<Vec<u8>, (Entry, usize)>) -> View {
        let mut nodes: Vec<Node> = Vec::with_capacity(tree.len());
        let mut ino_of: HashMap<Vec<u8>, u64> = HashMap::with_capacity(tree.len());
        let mut groups: HashMap<(usize, u64), u64> = HashMap::new();
        for (path, (entry, layer)) in tree {
            let (dir, name) = split(&path);
            let parent = if path.is_empty() {
                ROOT
            } else {
                match ino_of.get(dir) {
                    Some(p) => *p,
                    None => continue, // an orphan (its parent was replaced): not visible
                }
            };
            let linked = entry
                .link_group
                .filter(|_| entry.kind != EntryKind::Dir)
                .and_then(|g| groups.get(&(layer, g)).copied());
            let ino = match linked {
                Some(ino) => {
                    nodes[(ino - 1) as usize].nlink += 1;
                    ino
                }
                None => {
                    let ino = nodes.len() as u64 + 1;
                    if let Some(g) = entry.link_group {
                        groups.insert((layer, g), ino);
                    }
                    let is_dir = entry.kind == EntryKind::Dir;
                    nodes.push(Node {
                        entry,
                        nlink: if is_dir { 2 } else { 1 },
                        parent,
                        children: Vec::new(),
                    });
                    ino
                }
            };
            if !path.is_empty() {
                let p = &mut nodes[(parent - 1) as usize];
                p.children.push((name.to_vec(), ino));
                if nodes[(ino - 1) as usize].entry.kind == EntryKind::Dir {
                    nodes[(parent - 1) as usize].nlink += 1;
                }
            }
            if nodes[(ino - 1) as usize].entry.kind == EntryKind::Dir {
                ino_of.insert(path, ino);
            }
        }
        // Paths sort with '/' inside names ("a-b" < "a/c"), so sort children by name.
        for n in &mut nodes {
            n.children.sort();
        }
        View { nodes }
    }

    /// The inode `ino`.
    pub fn node(&self, ino: u64) -> Option<&Node> {
        ino.checked_sub(1).and_then(|i| self.nodes.get(i as usize))
    }

    /// The child `name` of directory `parent`.
    pub fn lookup(&self, parent: u64, name: &[u8]) -> Option<u64> {
        let p = self.node(parent)?;
        p.children
            .binary_search_by(|(n, _)| n.as_slice().cmp(name))
            .ok()
            .map(|i| p.children[i].1)
    }
}

fn root_entry() -> Entry {
    Entry::bare(Vec::new(), EntryKind::Dir, 0o755, (0, 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(path: &str, kind: EntryKind) -> Entry {
        Entry {
            path: path.as_bytes().to_vec(),
            kind,
            ..root_entry()
        }
    }

    fn names(v: &View, ino: u64) -> Vec<String> {
        v.node(ino)
            .map(|n| {
                n.children
                    .iter()
                    .map(|(n, _)| String::from_utf8_lossy(n).into_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_lower_entries() {
        let mut opaque = e("d", EntryKind::Dir);
        opaque.xattrs = vec![(b"trusted.overlay.opaque".to_vec(), b"y".to_vec())];
        let base = vec![
            e("", EntryKind::Dir),
            e("a", EntryKind::File),
            e("b", EntryKind::File),
            e("d", EntryKind::Dir),
            e("d/old", EntryKind::File),
        ];
        let top = vec![
            e("", EntryKind::Dir),
            e("a", EntryKind::Char), // whiteout
            opaque,
            e("d/new", EntryKind::File),
        ];
        let v = View::build(vec![base, top]);
        assert_eq!(names(&v, ROOT), ["b", "d"]);
        let d = v.lookup(ROOT, b"d").expect("d");
        assert_eq!(names(&v, d), ["new"]);
        assert_eq!(v.node(ROOT).map(|n| n.nlink), Some(3));
    }

    #[test]
    fn hardlink_groups_share_an_inode() {
        let mut a = e("a", EntryKind::File);
        a.link_group = Some(7);
        let mut b = e("b", EntryKind::File);
        b.link_group = Some(7);
        let v = View::build(vec![vec![e("", EntryKind::Dir), a, b]]);
        let (ia, ib) = (v.lookup(ROOT, b"a"), v.lookup(ROOT, b"b"));
        assert_eq!(ia, ib);
        assert_eq!(v.node(ia.expect("a")).map(|n| n.nlink), Some(2));
    }
}
