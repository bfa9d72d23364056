//! Disk use of a directory tree, counted the way `du` does (allocated blocks, each
//! inode once).

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use super::{io_err, SnapshotError, Usage};

/// Blocks and distinct inodes under `dir` (symlinks are not followed).
pub fn usage(dir: &Path) -> Result<Usage, SnapshotError> {
    let mut seen = HashSet::new();
    let mut u = Usage::default();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).map_err(io_err("stat", &p))?;
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        u.inodes += 1;
        u.size += md.blocks() * 512;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).map_err(io_err("listing", &p))? {
                stack.push(e.map_err(io_err("listing", &p))?.path());
            }
        }
    }
    Ok(u)
}
