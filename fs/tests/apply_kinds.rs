//! Every entry kind a layer can carry comes out of apply as it went in.

mod common;

use std::ffi::OsStr;
use std::io::{Cursor, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;

use berth_fs::apply::{apply_layer, ApplyError, ApplyOptions, WhiteoutMode};
use berth_fs::tree::{NodeKind, Tree};
use berth_fs::Compression;
use common::{have_root, RawTar};
use tar::{EntryType, Header};

fn header(kind: EntryType, mode: u32, uid: u64, gid: u64) -> Header {
    let mut h = Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_uid(uid);
    h.set_gid(gid);
    h.set_mtime(1_500_000_000);
    h.set_size(0);
    h
}

fn kinds_tar(long: &Path, latin1: &Path) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |h: &mut Header, p: &Path, data: &[u8]| {
        h.set_size(data.len() as u64);
        b.append_data(h, p, data).expect("append");
    };
    add(
        &mut header(EntryType::Directory, 0o1777, 1000, 1000),
        Path::new("tmp"),
        b"",
    );
    add(
        &mut header(EntryType::Regular, 0o4755, 0, 0),
        Path::new("bin/su"),
        b"suid",
    );
    add(
        &mut header(EntryType::Regular, 0o2711, 1234, 5678),
        Path::new("bin/sg"),
        b"sgid",
    );
    let mut null = header(EntryType::Char, 0o666, 0, 0);
    null.set_device_major(1).expect("major");
    null.set_device_minor(3).expect("minor");
    add(&mut null, Path::new("dev/null"), b"");
    let mut loop0 = header(EntryType::Block, 0o660, 0, 6);
    loop0.set_device_major(7).expect("major");
    loop0.set_device_minor(0).expect("minor");
    add(&mut loop0, Path::new("dev/loop0"), b"");
    add(
        &mut header(EntryType::Fifo, 0o600, 0, 0),
        Path::new("run/fifo"),
        b"",
    );
    add(&mut header(EntryType::Regular, 0o644, 0, 0), long, b"long");
    add(
        &mut header(EntryType::Regular, 0o644, 0, 0),
        latin1,
        b"latin1",
    );
    let mut sym = header(EntryType::Symlink, 0o777, 0, 0);
    b.append_link(&mut sym, "bin/sh", "busybox")
        .expect("symlink");
    let mut hl = header(EntryType::Link, 0o4755, 0, 0);
    b.append_link(&mut hl, "bin/su2", "bin/su")
        .expect("hardlink");
    let cap: &[u8] = &[
        1, 0, 0, 2, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    b.append_pax_extensions([
        ("SCHILY.xattr.security.capability", cap),
        ("SCHILY.xattr.user.note", &b"hi"[..]),
    ])
    .expect("pax");
    let mut ping = header(EntryType::Regular, 0o755, 0, 0);
    ping.set_size(4);
    b.append_data(&mut ping, "bin/ping", &b"ping"[..])
        .expect("append");
    b.into_inner().expect("finish")
}

#[test]
fn every_entry_kind_round_trips() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let long = Path::new("deep")
        .join("d".repeat(120))
        .join("f".repeat(200));
    let latin1 = Path::new(OsStr::from_bytes(b"caf\xe9"));
    let data = kinds_tar(&long, latin1);
    let opts = ApplyOptions::default();
    let stats = apply_layer(Cursor::new(&data), tmp.path(), &opts).expect("apply");
    assert_eq!(stats.compression, Compression::None);
    let t = Tree::scan(tmp.path()).expect("scan");
    let n = |p: &str| {
        t.nodes
            .get(Path::new(p))
            .unwrap_or_else(|| panic!("{p} missing"))
    };
    assert_eq!(
        (n("/tmp").mode, n("/tmp").uid, n("/tmp").gid),
        (0o1777, 1000, 1000)
    );
    assert_eq!((n("/bin/su").mode, n("/bin/su").uid), (0o4755, 0));
    assert_eq!(
        (n("/bin/sg").mode, n("/bin/sg").uid, n("/bin/sg").gid),
        (0o2711, 1234, 5678)
    );
    assert_eq!(
        (n("/dev/null").kind, n("/dev/null").rdev),
        (NodeKind::Char, Some((1, 3)))
    );
    assert_eq!(
        (
            n("/dev/loop0").kind,
            n("/dev/loop0").rdev,
            n("/dev/loop0").gid
        ),
        (NodeKind::Block, Some((7, 0)), 6)
    );
    assert_eq!(n("/run/fifo").kind, NodeKind::Fifo);
    assert_eq!(n("/bin/sh").target.as_deref(), Some(Path::new("busybox")));
    assert!(n("/bin/su").hardlink_group.is_some());
    assert_eq!(n("/bin/su").hardlink_group, n("/bin/su2").hardlink_group);
    let ping = n("/bin/ping");
    assert_eq!(
        ping.xattrs.get("user.note").map(Vec::as_slice),
        Some(&b"hi"[..])
    );
    assert!(
        ping.xattrs.contains_key("security.capability"),
        "capability kept after chown: {:?}",
        ping.xattrs
    );
    assert_eq!(ping.mtime.0, 1_500_000_000);
    let long_abs = tmp.path().join(&long);
    assert_eq!(std::fs::read(long_abs).expect("long name"), b"long");
    assert_eq!(
        std::fs::read(tmp.path().join(latin1)).expect("latin1 name"),
        b"latin1"
    );
    assert_eq!(
        n("/tmp").mtime.0,
        1_500_000_000,
        "dir mtimes are set after their contents"
    );
    assert!(stats.entries >= 11);
}

#[test]
fn gnu_sparse_files_keep_content_and_holes() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    std::fs::create_dir(&src).expect("src");
    let f = std::fs::File::create(src.join("sparse")).expect("create");
    f.set_len(64 << 20).expect("len");
    std::os::unix::fs::FileExt::write_at(&f, b"middle", 32 << 20).expect("write");
    std::os::unix::fs::FileExt::write_at(&f, b"end", (64 << 20) - 3).expect("write");
    let tarball = tmp.path().join("sparse.tar");
    let st = Command::new("tar")
        .args(["--sparse", "--format=gnu", "-cf"])
        .arg(&tarball)
        .arg("-C")
        .arg(&src)
        .arg("sparse")
        .status();
    assert!(st.expect("run tar").success());
    let root = tmp.path().join("root");
    std::fs::create_dir(&root).expect("root");
    apply_layer(
        std::fs::File::open(&tarball).expect("open"),
        &root,
        &ApplyOptions::default(),
    )
    .expect("apply");
    let (a, b) = (
        Tree::scan(&src).expect("scan"),
        Tree::scan(&root).expect("scan"),
    );
    assert_eq!(a.differences(&b, false), Vec::<String>::new());
    let (ma, mb) = (
        &a.nodes[Path::new("/sparse")].mtime,
        &b.nodes[Path::new("/sparse")].mtime,
    );
    assert_eq!(ma.0, mb.0, "GNU tar keeps whole seconds");
    let md = std::fs::metadata(root.join("sparse")).expect("md");
    assert!(
        md.blocks() * 512 < 1 << 20,
        "holes kept: {} blocks",
        md.blocks()
    );
}

#[test]
fn overlay_whiteouts_become_devices_and_opaque_xattrs() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let mut t = RawTar::new();
    t.file(b"a/.wh.gone", b"")
        .dir(b"c")
        .file(b"c/.wh..wh..opq", b"")
        .file(b".wh.x", b"")
        .dir(b"x")
        .file(b"x/new", b"n");
    apply_layer(
        Cursor::new(t.finish()),
        tmp.path(),
        &ApplyOptions::default(),
    )
    .expect("apply");
    let md = std::fs::symlink_metadata(tmp.path().join("a/gone")).expect("whiteout");
    assert!(std::os::unix::fs::FileTypeExt::is_char_device(
        &md.file_type()
    ));
    assert_eq!(md.rdev(), 0);
    assert_eq!(
        xattr::get(tmp.path().join("c"), "trusted.overlay.opaque").expect("get"),
        Some(b"y".to_vec())
    );
    assert_eq!(
        xattr::get(tmp.path().join("x"), "trusted.overlay.opaque").expect("get"),
        Some(b"y".to_vec())
    );
    assert!(!tmp.path().join("a/.wh.gone").exists());
}

fn lower_tree(root: &Path) {
    for d in ["d/sub", "x/y", "keep"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    for f in ["d/old", "d/sub/old", "x/y/z", "keep/f", "file"] {
        std::fs::write(root.join(f), b"lower").expect("write");
    }
}

#[test]
fn delete_mode_whiteouts_remove_only_lower_content_in_any_order() {
    if !have_root() {
        return;
    }
    for opaque_first in [true, false] {
        let tmp = tempfile::tempdir().expect("tmp");
        lower_tree(tmp.path());
        let mut t = RawTar::new();
        if opaque_first {
            t.file(b"d/.wh..wh..opq", b"");
        }
        t.file(b"d/new", b"n").file(b"d/sub/mine", b"m");
        if !opaque_first {
            t.file(b"d/.wh..wh..opq", b"");
        }
        t.file(b".wh.x", b"")
            .file(b".wh.file", b"")
            .file(b"keep/.wh.absent", b"");
        let opts = ApplyOptions {
            whiteouts: WhiteoutMode::Delete,
            ..Default::default()
        };
        apply_layer(Cursor::new(t.finish()), tmp.path(), &opts).expect("apply");
        let tree = Tree::scan(tmp.path()).expect("scan");
        let paths: Vec<_> = tree.nodes.keys().map(|p| p.display().to_string()).collect();
        assert_eq!(
            paths,
            [
                "/",
                "/d",
                "/d/new",
                "/d/sub",
                "/d/sub/mine",
                "/keep",
                "/keep/f"
            ],
            "opaque first: {opaque_first}"
        );
    }
}

#[test]
fn existing_paths_are_replaced_except_dir_on_dir() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    lower_tree(tmp.path());
    let mut t = RawTar::new();
    t.file(b"x", b"now a file").dir(b"file").dir(b"keep");
    let opts = ApplyOptions {
        whiteouts: WhiteoutMode::Delete,
        ..Default::default()
    };
    apply_layer(Cursor::new(t.finish()), tmp.path(), &opts).expect("apply");
    assert_eq!(
        std::fs::read(tmp.path().join("x")).expect("file"),
        b"now a file"
    );
    assert!(tmp.path().join("file").is_dir());
    assert_eq!(
        std::fs::read(tmp.path().join("keep/f")).expect("dir on dir keeps children"),
        b"lower"
    );
}

#[test]
fn diff_id_covers_the_whole_stream_and_is_checked() {
    if !have_root() {
        return;
    }
    let mut t = RawTar::new();
    t.file(b"f", b"data");
    let mut raw = t.finish();
    raw.extend_from_slice(&[0u8; 10240]);
    let want = berth_fs::digest::sha256_of(&mut Cursor::new(&raw)).expect("hash");
    for kind in [Compression::None, Compression::Gzip, Compression::Zstd] {
        let mut enc = kind.compressor(Vec::new()).expect("enc");
        enc.write_all(&raw).expect("write");
        let packed = enc.finish().expect("finish");
        let tmp = tempfile::tempdir().expect("tmp");
        let opts = ApplyOptions {
            expected_diff_id: Some(want.clone()),
            ..Default::default()
        };
        let stats = apply_layer(Cursor::new(&packed), tmp.path(), &opts).expect("apply");
        assert_eq!(
            (stats.diff_id.as_str(), stats.size, stats.compression),
            (want.as_str(), raw.len() as u64, kind)
        );
        let opts = ApplyOptions {
            expected_diff_id: Some(format!("sha256:{}", "0".repeat(64))),
            ..Default::default()
        };
        let tmp = tempfile::tempdir().expect("tmp");
        let err = apply_layer(Cursor::new(&packed), tmp.path(), &opts).expect_err("mismatch");
        assert!(
            matches!(err, ApplyError::DiffIdMismatch { ref found, .. } if *found == want),
            "{err}"
        );
    }
}
