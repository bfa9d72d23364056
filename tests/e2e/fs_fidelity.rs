//! Layer fidelity: unusual and hostile layers a registry can serve unpack to exactly the
//! tree the image describes, or are refused with one line. Each class is built raw,
//! imported, and checked through an overlay checkout, a native checkout and the FUSE
//! view, against what GNU tar or umoci make of the same layers where they get it right,
//! and against the tree the test expects where they do not.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_fs::tree::Tree;

use crate::fs_checkout::Checkout;
use crate::support::{need, need_root, sh, Env};

/// A layer tar built entry by entry, with raw names and PAX records.
#[derive(Default)]
pub struct Layer {
    b: Vec<u8>,
}

impl Layer {
    fn header(name: &str, kind: tar::EntryType, size: u64, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_ustar();
        assert!(name.len() <= 100, "{name}: keep names short");
        h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_size(size);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.extend_from_slice(h.as_bytes());
        self.b.extend_from_slice(data);
        self.b.resize(self.b.len().div_ceil(512) * 512, 0);
        self
    }

    /// PAX records for the next entry.
    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Self {
        let mut body = Vec::new();
        for (k, v) in records {
            let rest = k.len() + v.len() + 3; // ' ', '=', '\n'
            let mut len = rest + 1;
            while len != rest + len.to_string().len() {
                len = rest + len.to_string().len();
            }
            body.extend_from_slice(format!("{len} {k}=").as_bytes());
            body.extend_from_slice(v);
            body.push(b'\n');
        }
        let h = Self::header(
            "PaxHeaders/x",
            tar::EntryType::XHeader,
            body.len() as u64,
            0o644,
        );
        self.push(h, &body)
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Self {
        let h = Self::header(name, tar::EntryType::Regular, data.len() as u64, 0o644);
        self.push(h, data)
    }

    pub fn dir(&mut self, name: &str) -> &mut Self {
        self.push(Self::header(name, tar::EntryType::Directory, 0, 0o755), b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Symlink, 0, 0o777);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Link, 0, 0o644);
        h.as_old_mut().linkname[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, b"")
    }

    pub fn chardev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(name, tar::EntryType::Char, 0, 0o666);
        h.set_device_major(major).expect("major");
        h.set_device_minor(minor).expect("minor");
        self.push(h, b"")
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut b = self.b.clone();
        b.extend_from_slice(&[0u8; 1024]);
        b
    }
}

/// An OCI layout holding image `name` made of `layers` (uncompressed tars, base first).
pub fn layout(dir: &Path, name: &str, layers: &[Vec<u8>]) {
    use sha2::{Digest, Sha256};
    let blobs = dir.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    for l in layers {
        let (d, n) = put(l);
        diff_ids.push(d.clone());
        descs.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": n}));
    }
    let config = serde_json::json!({"architecture": crate::support::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cn) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": descs});
    let (md, mn) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(dir.join("index.json"), index.to_string()).expect("index");
    std::fs::write(dir.join("oci-layout"), r#"{"imageLayoutVersion":"1.0.0"}"#).expect("layout");
}

/// Every name under `dir` must stat: a whiteout overlayfs lists but cannot open shows
/// up here as an error.
fn assert_no_phantoms(dir: &Path) {
    for line in sh(&format!(
        "find {} -mindepth 1 -print0 | xargs -0 -r stat -c '%n' 2>&1 || true",
        dir.display()
    ))
    .lines()
    {
        assert!(!line.contains("No such file"), "phantom entry: {line}");
    }
}

/// Checks an imported image's tree three ways: overlay checkout, native checkout, FUSE.
fn check_tree(env: &Env, image: &str, check: &dyn Fn(&Path, &str)) {
    for snapshotter in ["overlay", "native"] {
        let root = env.path(&format!("root-{snapshotter}"));
        let flags = [
            "--root",
            root.to_str().expect("utf8"),
            "--snapshotter",
            snapshotter,
        ];
        let l = env.path("layout").to_string_lossy().into_owned();
        let mut args = flags.to_vec();
        args.extend(["import", &l]);
        env.ok(&args);
        let co = Checkout::new(env, image, &format!("co-{snapshotter}"), &flags);
        assert_no_phantoms(&co.dir);
        check(&co.dir, snapshotter);
        if snapshotter == "overlay" {
            need("fusermount3");
            let v = env.path("fuse-view");
            let mut args = flags.to_vec();
            let vs = v.to_string_lossy().into_owned();
            args.extend(["mount", "--fuse", image, &vs]);
            env.ok(&args);
            check(&v, "fuse");
            let mut args = flags.to_vec();
            args.extend(["umount", &vs]);
            env.ok(&args);
        }
        drop(co);
        let mut args = flags.to_vec();
        args.push("fsck");
        let fsck = env.ok(&args);
        assert!(fsck.contains("store is sound"), "{fsck}");
    }
}

/// What umoci makes of the image (its rootfs).
fn umoci_tree(env: &Env, image: &str) -> PathBuf {
    need("umoci");
    let bundle = env.path("umoci-bundle");
    sh(&format!(
        "umoci unpack --image {}:{image} {} >/dev/null",
        env.path("layout").display(),
        bundle.display()
    ));
    bundle.join("rootfs")
}

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn whiteouts_of_nothing_leave_no_phantoms() {
    need_root();
    let env = Env::new();
    let mut base = Layer::default();
    base.dir("base/").file("base/keep", b"keep\n");
    let mut top = Layer::default();
    top.dir("sub/")
        .file("sub/.wh.ghost", b"")
        .file("sub/real", b"r\n")
        .file(".wh.nothing", b"")
        .file("../../.wh.escape", b"")
        .file("base/.wh.never-was", b"");
    layout(&env.path("layout"), "ghosts", &[base.bytes(), top.bytes()]);
    let umoci = umoci_tree(&env, "ghosts");
    check_tree(&env, "ghosts", &|dir, how| {
        assert_eq!(names(dir), ["base", "sub"], "{how}");
        assert_eq!(names(&dir.join("sub")), ["real"], "{how}");
        assert_eq!(names(&dir.join("base")), ["keep"], "{how}");
        let diffs = Tree::scan(dir)
            .expect("scan")
            .differences(&Tree::scan(&umoci).expect("scan"), false);
        let unexpected: Vec<&String> = diffs.iter().filter(|d| !d.contains("mtime")).collect();
        assert!(
            unexpected.is_empty(),
            "{how} differs from umoci: {unexpected:?}"
        );
    });
}

#[test]
fn whiteouts_and_files_under_a_symlinked_parent_resolve_inside_the_root() {
    need_root();
    let env = Env::new();
    let mut base = Layer::default();
    base.dir("somewhere/")
        .file("somewhere/x", b"x\n")
        .file("somewhere/y", b"y\n")
        .symlink("sl", "/somewhere");
    let mut top = Layer::default();
    top.file("sl/.wh.x", b"").file("sl/new", b"new\n");
    layout(&env.path("layout"), "linked", &[base.bytes(), top.bytes()]);
    check_tree(&env, "linked", &|dir, how| {
        let sl = std::fs::symlink_metadata(dir.join("sl")).expect("sl");
        assert!(sl.file_type().is_symlink(), "{how}: the symlink must stay");
        assert_eq!(names(&dir.join("somewhere")), ["new", "y"], "{how}");
        assert_eq!(
            std::fs::read_to_string(dir.join("somewhere/new")).expect("new"),
            "new\n"
        );
    });
}

#[test]
fn overlay_xattrs_in_a_layer_are_never_applied() {
    need_root();
    let env = Env::new();
    let mut base = Layer::default();
    base.dir("d/").file("d/lower", b"lower\n");
    let mut top = Layer::default();
    top.pax(&[
        ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
        ("SCHILY.xattr.user.keep", b"1"),
    ])
    .dir("d/")
    .pax(&[
        ("SCHILY.xattr.trusted.overlay.redirect", b"/d/lower"),
        ("SCHILY.xattr.trusted.overlay.metacopy", b""),
        ("SCHILY.xattr.user.also", b"2"),
    ])
    .file("d/upper", b"upper\n");
    layout(&env.path("layout"), "xattrs", &[base.bytes(), top.bytes()]);
    check_tree(&env, "xattrs", &|dir, how| {
        assert_eq!(
            names(&dir.join("d")),
            ["lower", "upper"],
            "{how}: nothing hidden"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("d/upper")).expect("upper"),
            "upper\n",
            "{how}: no redirect"
        );
        let x = |p: &str, n: &str| xattr::get(dir.join(p), n).ok().flatten();
        assert_eq!(
            x("d", "user.keep").as_deref(),
            Some(&b"1"[..]),
            "{how}: other xattrs stay"
        );
        assert_eq!(
            x("d/upper", "user.also").as_deref(),
            Some(&b"2"[..]),
            "{how}"
        );
    });
}

#[test]
fn a_zero_character_device_is_kept_on_native_and_refused_on_overlay() {
    need_root();
    let env = Env::new();
    let mut l = Layer::default();
    l.dir("dev/")
        .chardev("dev/zero0", 0, 0)
        .chardev("dev/null", 1, 3);
    layout(&env.path("layout"), "devs", &[l.bytes()]);
    let layout_dir = env.path("layout").to_string_lossy().into_owned();
    let err = env.fails(&["--snapshotter", "overlay", "import", &layout_dir]);
    assert!(
        err.contains("character device 0:0") && err.contains("native"),
        "{err}"
    );
    assert!(env.image_names().is_empty());
    env.assert_sound();
    let native = env.path("native-root").to_string_lossy().into_owned();
    env.ok(&[
        "--root",
        &native,
        "--snapshotter",
        "native",
        "import",
        &layout_dir,
    ]);
    let co = Checkout::new(
        &env,
        "devs",
        "co",
        &["--root", &native, "--snapshotter", "native"],
    );
    let md = std::fs::symlink_metadata(co.dir.join("dev/zero0")).expect("zero0");
    assert!(md.file_type().is_char_device() && md.rdev() == 0);
    let md = std::fs::symlink_metadata(co.dir.join("dev/null")).expect("null");
    assert_eq!(md.rdev(), nix::sys::stat::makedev(1, 3));
}

#[test]
fn pax_sparse_files_unpack_under_their_names_with_holes() {
    need_root();
    need("tar");
    let env = Env::new();
    let src = env.path("src");
    std::fs::create_dir_all(src.join("big")).expect("mkdir");
    let f = std::fs::File::create(src.join("big/sparse")).expect("create");
    f.set_len(64 << 20).expect("len");
    std::os::unix::fs::FileExt::write_at(&f, b"middle", 32 << 20).expect("write");
    std::os::unix::fs::FileExt::write_at(&f, &[7u8; 8192], 40 << 20).expect("write");
    std::os::unix::fs::FileExt::write_at(&f, b"end", (64 << 20) - 3).expect("write");
    drop(f);
    let tarball = env.path("sparse.tar");
    sh(&format!(
        "tar --sparse --posix --sparse-version=1.0 --numeric-owner -C {} -cf {} big",
        src.display(),
        tarball.display()
    ));
    let raw = std::fs::read(&tarball).expect("read");
    assert!(
        raw.windows(16).any(|w| w == b"GNU.sparse.major"),
        "GNU tar wrote PAX sparse 1.0"
    );
    layout(&env.path("layout"), "sparse", &[raw]);
    let want = sh(&format!("sha256sum < {}", src.join("big/sparse").display()));
    check_tree(&env, "sparse", &|dir, how| {
        assert_eq!(names(&dir.join("big")), ["sparse"], "{how}: the real name");
        let p = dir.join("big/sparse");
        assert_eq!(sh(&format!("sha256sum < {}", p.display())), want, "{how}");
        // Read first: overlayfs estimates a stub's blocks until its content is opened.
        let md = std::fs::metadata(&p).expect("md");
        assert_eq!(md.len(), 64 << 20, "{how}");
        if how != "fuse" {
            assert!(
                md.blocks() * 512 < 1 << 20,
                "{how}: holes kept ({} blocks)",
                md.blocks()
            );
        }
    });
}

#[test]
fn a_pax_sparse_bomb_stops_at_the_layer_limit() {
    need_root();
    let env = Env::new();
    // 10 GiB of apparent size from one byte of data.
    let map = b"1\n10737418239\n1\n";
    let mut data = map.to_vec();
    data.resize(512, 0);
    data.push(b'!');
    let mut l = Layer::default();
    l.pax(&[
        ("GNU.sparse.major", b"1"),
        ("GNU.sparse.minor", b"0"),
        ("GNU.sparse.name", b"bomb"),
        ("GNU.sparse.realsize", b"10737418240"),
    ])
    .file("GNUSparseFile.0/bomb", &data);
    layout(&env.path("layout"), "bomb", &[l.bytes()]);
    let l = env.path("layout").to_string_lossy().into_owned();
    let err = env.fails(&["--max-layer-size", "100000000", "import", &l]);
    assert!(err.contains("100000000"), "{err}");
    env.ok(&["import", "--no-unpack", &l]);
    let v = env.path("v").to_string_lossy().into_owned();
    let err = env.fails(&[
        "--max-layer-size",
        "100000000",
        "mount",
        "--fuse",
        "bomb",
        &v,
    ]);
    assert!(err.contains("100000000"), "{err}");
    env.assert_sound();
}

/// A layer whose hard links and look-alike files tell whether inodes are exact.
fn links_layer() -> Layer {
    let mut l = Layer::default();
    l.dir("links/")
        .file("links/a", b"five names\n")
        .hardlink("links/b", "links/a")
        .hardlink("links/c", "links/a")
        .hardlink("links/d", "links/a")
        .hardlink("links/e", "links/a")
        .file("links/lone", b"alone\n")
        .file("links/same1", b"look-alike\n")
        .file("links/same2", b"look-alike\n");
    l
}

#[test]
fn link_counts_are_the_images_own() {
    need_root();
    let env = Env::new();
    let mut second = Layer::default();
    second.file("links/lone2", b"alone\n");
    layout(
        &env.path("layout"),
        "links",
        &[links_layer().bytes(), second.bytes()],
    );
    // Another image holding the same contents stored once more would add links.
    let other = env.path("other");
    layout(&other, "other", &[links_layer().bytes()]);
    let umoci = umoci_tree(&env, "links");
    check_tree(&env, "links", &|dir, how| {
        // The same contents once more in the store, through another image.
        let nlink = |p: &str| std::fs::symlink_metadata(dir.join(p)).expect(p).nlink();
        for p in ["links/a", "links/b", "links/e"] {
            assert_eq!(nlink(p), 5, "{how}: {p}");
        }
        for p in ["links/lone", "links/same1", "links/same2", "links/lone2"] {
            assert_eq!(nlink(p), 1, "{how}: {p}");
        }
        let ino = |p: &str| std::fs::symlink_metadata(dir.join(p)).expect(p).ino();
        assert_ne!(
            ino("links/same1"),
            ino("links/same2"),
            "{how}: look-alikes are two files"
        );
        assert_eq!(
            ino("links/a"),
            ino("links/d"),
            "{how}: one inode, five names"
        );
        let diffs = Tree::scan(dir)
            .expect("scan")
            .differences(&Tree::scan(&umoci).expect("scan"), false);
        assert!(diffs.is_empty(), "{how} differs from umoci: {diffs:?}");
    });
    // With the other image imported too, the counts stay the image's.
    let root = env.path("root-overlay").to_string_lossy().into_owned();
    env.ok(&["--root", &root, "import", &other.to_string_lossy()]);
    let co = Checkout::new(&env, "links", "co-again", &["--root", &root]);
    let md = std::fs::symlink_metadata(co.dir.join("links/a")).expect("a");
    assert_eq!(md.nlink(), 5);
    let info = env.ok(&["--root", &root, "info"]);
    assert!(info.contains("exact link counts"), "{info}");
    // A stub's xattrs fit in its inode: no xattr block on disk for a file without xattrs
    // of its own (as measured in BENCHMARKS.md; true on ext4 with 256-byte inodes, XFS,
    // btrfs and tmpfs).
    let stubs = sh(&format!(
        "find {root}/snapshots/overlay/snapshots -path '*/fs/links/lone2' -type f"
    ));
    let stub = stubs.lines().next().expect("the layer file of links/lone2");
    let md = std::fs::symlink_metadata(stub).expect("stat stub");
    assert_eq!(
        (md.len(), md.blocks()),
        (6, 0),
        "{stub}: a stub, nothing allocated"
    );
}

/// The 3-layer Debian image of the benchmarks (debootstrap's minbase split in three by
/// umoci), built once per machine.
fn debian_image() -> PathBuf {
    need("debootstrap");
    let out = sh(&format!(
        "cd {} && bash -c 'source bench/lib/common.sh >/dev/null; debian_image'",
        concat!(env!("CARGO_MANIFEST_DIR"), "/..")
    ));
    PathBuf::from(out.trim().lines().last().expect("image path"))
}

#[test]
fn the_debian_image_checks_out_as_umoci_unpacks_it() {
    need_root();
    need("umoci");
    let env = Env::new();
    let tarball = debian_image();
    let lay = env.path("layout");
    std::fs::create_dir_all(&lay).expect("mkdir");
    sh(&format!(
        "tar -C {} -xf {}",
        lay.display(),
        tarball.display()
    ));
    let umoci = umoci_tree(&env, "debian");
    env.ok(&["import", &tarball.to_string_lossy()]);
    let co = Checkout::readonly(&env, "docker.io/library/debian-bench:3layers", "co", &[]);
    let diffs = Tree::scan(&co.dir)
        .expect("scan")
        .differences(&Tree::scan(&umoci).expect("scan"), false);
    assert!(
        diffs.is_empty(),
        "differs from umoci:\n{}",
        diffs.join("\n")
    );
    let rw = Checkout::new(&env, "docker.io/library/debian-bench:3layers", "rw", &[]);
    let diffs = Tree::scan(&rw.dir)
        .expect("scan")
        .differences(&Tree::scan(&umoci).expect("scan"), false);
    assert!(
        diffs.is_empty(),
        "writable checkout differs from umoci:\n{}",
        diffs.join("\n")
    );
}
