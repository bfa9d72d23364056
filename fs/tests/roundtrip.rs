//! Apply → change through the mounted snapshot → diff → apply the diff on the parent
//! in a fresh snapshot → the mounted results are the same tree.

mod common;

use std::io::Cursor;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use berth_fs::apply::{apply_layer, ApplyOptions};
use berth_fs::diff::{changes, write_diff, Change, ChangeKind};
use berth_fs::snapshot::{self, Snapshotter, SnapshotterKind};
use berth_fs::tree::Tree;
use berth_fs::Compression;
use common::{have_root, MountGuard, RawTar};

fn base_layer() -> Vec<u8> {
    let mut t = RawTar::new();
    t.dir(b"etc")
        .file(b"etc/hosts", b"127.0.0.1 localhost\n")
        .hardlink(b"etc/hosts.link", b"etc/hosts")
        .dir(b"data")
        .file(b"data/keep", b"keep")
        .file(b"data/del", b"delete me")
        .dir(b"rdir")
        .file(b"rdir/x", b"x")
        .dir(b"opaque")
        .file(b"opaque/a", b"a")
        .file(b"opaque/b", b"b")
        .symlink(b"bin", b"usr/bin");
    t.finish()
}

fn apply_into(sn: &dyn Snapshotter, key: &str, layer: &[u8]) -> String {
    let opts = ApplyOptions {
        whiteouts: sn.whiteout_mode(),
        ..Default::default()
    };
    let dir = sn.fs_dir(key).expect("fs dir");
    apply_layer(Cursor::new(layer), &dir, &opts)
        .expect("apply")
        .diff_id
}

fn make_changes(m: &Path) {
    std::fs::write(m.join("new.txt"), b"new").expect("add");
    std::fs::write(m.join("etc/hosts"), b"10.0.0.1 changed\n").expect("modify");
    std::fs::remove_file(m.join("data/del")).expect("delete");
    std::fs::remove_dir_all(m.join("rdir")).expect("rm dir");
    std::fs::write(m.join("rdir"), b"now a file").expect("dir becomes file");
    std::fs::remove_dir_all(m.join("opaque")).expect("rm -rf");
    std::fs::create_dir(m.join("opaque")).expect("recreate");
    std::fs::write(m.join("opaque/c"), b"c").expect("child");
    std::fs::set_permissions(m.join("data/keep"), std::fs::Permissions::from_mode(0o4750))
        .expect("chmod");
    std::os::unix::fs::symlink("../etc/hosts", m.join("data/link")).expect("symlink");
    std::fs::hard_link(m.join("new.txt"), m.join("new-hl.txt")).expect("hardlink");
    xattr::set(m.join("new.txt"), "user.berth", b"v").expect("xattr");
    let mode = nix::sys::stat::Mode::from_bits_truncate(0o640);
    nix::sys::stat::mknod(
        &m.join("data/fifo"),
        nix::sys::stat::SFlag::S_IFIFO,
        mode,
        0,
    )
    .expect("fifo");
    let dev = nix::sys::stat::makedev(1, 3);
    nix::sys::stat::mknod(
        &m.join("data/null"),
        nix::sys::stat::SFlag::S_IFCHR,
        mode,
        dev,
    )
    .expect("device");
}

fn expected_changes() -> Vec<Change> {
    let c = |kind, p: &str| Change {
        kind,
        path: PathBuf::from(p),
    };
    use ChangeKind::*;
    vec![
        c(Deleted, "/data/del"),
        c(Added, "/data/fifo"),
        c(Modified, "/data/keep"),
        c(Added, "/data/link"),
        c(Added, "/data/null"),
        c(Modified, "/etc/hosts"),
        c(Added, "/new-hl.txt"),
        c(Added, "/new.txt"),
        c(Deleted, "/opaque/a"),
        c(Deleted, "/opaque/b"),
        c(Added, "/opaque/c"),
        c(Modified, "/rdir"),
    ]
}

fn round_trip(kind: SnapshotterKind) {
    let tmp = tempfile::tempdir().expect("tmp");
    let sn = snapshot::open(kind, &tmp.path().join("sn")).expect("open");
    let sn = sn.as_ref();
    sn.prepare("l1", None).expect("prepare");
    apply_into(sn, "l1", &base_layer());
    sn.commit("L1", "l1").expect("commit");

    let work_mounts = sn.prepare("work", Some("L1")).expect("prepare work");
    let m1 = tmp.path().join("m1");
    {
        let _g = MountGuard::mount(&work_mounts, &m1);
        make_changes(&m1);
    }
    let mut got = changes(sn, "work").expect("changes");
    got.retain(|c| !(c.kind == ChangeKind::Modified && c.path == Path::new("/etc/hosts.link")));
    assert_eq!(got, expected_changes(), "{kind:?}");

    let mut blob = Vec::new();
    let stats = write_diff(sn, "work", &mut blob, Compression::Gzip).expect("diff");
    assert_eq!(stats.size, blob.len() as u64);
    assert_eq!(
        stats.digest,
        berth_fs::digest::sha256_of(&mut Cursor::new(&blob)).expect("hash")
    );
    assert_eq!(
        stats.media_type,
        "application/vnd.oci.image.layer.v1.tar+gzip"
    );
    let mut again = Vec::new();
    assert_eq!(
        write_diff(sn, "work", &mut again, Compression::Gzip)
            .expect("diff")
            .diff_id,
        stats.diff_id,
        "deterministic"
    );

    if sn.independent_layers() {
        sn.prepare("l2", None).expect("prepare l2");
        assert_eq!(apply_into(sn, "l2", &blob), stats.diff_id);
        sn.commit_with_parent("L2", "l2", Some("L1"))
            .expect("commit l2");
    } else {
        sn.prepare("l2", Some("L1")).expect("prepare l2");
        assert_eq!(apply_into(sn, "l2", &blob), stats.diff_id);
        sn.commit("L2", "l2").expect("commit l2");
    }
    let view = sn.view("v", Some("L2")).expect("view");
    let (m1, m2) = (tmp.path().join("m1"), tmp.path().join("m2"));
    let _g1 = MountGuard::mount(&work_mounts, &m1);
    let _g2 = MountGuard::mount(&view, &m2);
    let (a, b) = (
        Tree::scan(&m1).expect("scan"),
        Tree::scan(&m2).expect("scan"),
    );
    assert_eq!(a.differences(&b, false), Vec::<String>::new(), "{kind:?}");
    assert!(
        a.nodes.contains_key(Path::new("/opaque/c"))
            && !a.nodes.contains_key(Path::new("/opaque/a"))
    );
}

#[test]
fn overlay_round_trip() {
    if have_root() {
        round_trip(SnapshotterKind::Overlay);
    }
}

#[test]
fn native_round_trip() {
    if have_root() {
        round_trip(SnapshotterKind::Native);
    }
}
