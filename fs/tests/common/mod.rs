//! Helpers shared by the integration tests: raw tar building and privilege checks.
#![allow(dead_code)]

use std::io::Write;
use std::path::{Path, PathBuf};

use tar::{EntryType, Header};

/// Whether the test may run: root is needed for devices, chown and trusted xattrs.
/// Under CI=true a missing privilege fails the test instead of skipping it.
pub fn have_root() -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "CI=true but the tests are not running as root"
    );
    eprintln!("skipping: needs root");
    false
}

/// A tar under construction whose entry names are written raw (no `..` checks).
pub struct RawTar {
    pub b: tar::Builder<Vec<u8>>,
}

impl Default for RawTar {
    fn default() -> Self {
        Self::new()
    }
}

impl RawTar {
    pub fn new() -> Self {
        RawTar {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(name: &[u8], kind: EntryType, size: u64, mode: u32) -> Header {
        let mut h = Header::new_gnu();
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_600_000_000);
        assert!(name.len() <= 100, "raw names must fit the old header");
        h.as_old_mut().name[..name.len()].copy_from_slice(name);
        h
    }

    fn push(&mut self, mut h: Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).expect("append");
        self
    }

    pub fn file(&mut self, name: &[u8], data: &[u8]) -> &mut Self {
        let h = Self::header(name, EntryType::Regular, data.len() as u64, 0o644);
        self.push(h, data)
    }

    pub fn dir(&mut self, name: &[u8]) -> &mut Self {
        let h = Self::header(name, EntryType::Directory, 0, 0o755);
        self.push(h, &[])
    }

    fn link_entry(&mut self, name: &[u8], target: &[u8], kind: EntryType) -> &mut Self {
        let mut h = Self::header(name, kind, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target);
        self.push(h, &[])
    }

    pub fn symlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.link_entry(name, target, EntryType::Symlink)
    }

    pub fn hardlink(&mut self, name: &[u8], target: &[u8]) -> &mut Self {
        self.link_entry(name, target, EntryType::Link)
    }

    pub fn finish(self) -> Vec<u8> {
        self.b.into_inner().expect("finish tar")
    }
}

/// A scratch area with a layer root and a host sentinel directory beside it.
pub struct Scratch {
    pub dir: tempfile::TempDir,
    pub root: PathBuf,
    pub sentinel: PathBuf,
    before: berth_fs::tree::Tree,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().join("a/b/root");
        let sentinel = dir.path().join("sentinel");
        std::fs::create_dir_all(&root).expect("root");
        std::fs::create_dir_all(sentinel.join("sub")).expect("sentinel");
        let mut f = std::fs::File::create(sentinel.join("file")).expect("sentinel file");
        f.write_all(b"host data").expect("write");
        let before = berth_fs::tree::Tree::scan(&sentinel).expect("scan");
        Scratch {
            dir,
            root,
            sentinel,
            before,
        }
    }

    /// The sentinel path as bytes, for hostile absolute symlinks.
    pub fn sentinel_bytes(&self) -> Vec<u8> {
        use std::os::unix::ffi::OsStrExt;
        self.sentinel.as_os_str().as_bytes().to_vec()
    }

    /// Fails unless the host sentinel and everything around the root is untouched.
    pub fn assert_host_untouched(&self) {
        let now = berth_fs::tree::Tree::scan(&self.sentinel).expect("scan");
        assert_eq!(
            self.before.differences(&now, true),
            Vec::<String>::new(),
            "sentinel changed"
        );
        let mut top: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("ls")
            .map(|e| e.expect("e").file_name())
            .collect();
        top.sort();
        assert_eq!(
            top,
            vec!["a", "sentinel"],
            "something appeared beside the root"
        );
        let mid: Vec<_> = std::fs::read_dir(self.dir.path().join("a"))
            .expect("ls")
            .collect();
        assert_eq!(mid.len(), 1, "something appeared beside the root's parent");
        let near: Vec<_> = std::fs::read_dir(self.dir.path().join("a/b"))
            .expect("ls")
            .collect();
        assert_eq!(near.len(), 1, "something appeared beside the root");
    }
}

pub fn path_in(root: &Path, abs: &Path) -> PathBuf {
    root.join(abs.strip_prefix("/").expect("absolute"))
}

/// Unmounts everything at or under its path when dropped (also on test failure).
pub struct MountGuard(pub PathBuf);

impl MountGuard {
    pub fn mount(mounts: &[berth_mount::Mount], target: &Path) -> MountGuard {
        std::fs::create_dir_all(target).expect("mount point");
        berth_mount::mount_all(mounts, target).expect("mount");
        MountGuard(target.to_path_buf())
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(e) = berth_mount::unmount_recursive(&self.0) {
            eprintln!("cleanup: {e}");
        }
    }
}
