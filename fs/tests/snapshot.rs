//! Snapshotter semantics on the real kernel: lifecycle, metadata, mounts, 120 layers.

mod common;

use std::collections::BTreeMap;

use berth_fs::snapshot::{self, Kind, SnapshotError, SnapshotterKind};
use common::{have_root, MountGuard};

fn lifecycle(kind: SnapshotterKind) {
    let tmp = tempfile::tempdir().expect("tmp");
    let root = tmp.path().join("sn");
    let sn = snapshot::open(kind, &root).expect("open");
    let m = sn.prepare("base-active", None).expect("prepare");
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, "bind");
    assert!(!m[0].is_readonly());
    std::fs::write(sn.fs_dir("base-active").expect("dir").join("f"), b"base").expect("write");
    assert_eq!(sn.stat("base-active").expect("stat").kind, Kind::Active);
    sn.commit("base", "base-active").expect("commit");
    assert!(matches!(
        sn.stat("base-active"),
        Err(SnapshotError::NotFound(_))
    ));
    let base = sn.stat("base").expect("stat");
    assert_eq!((base.kind, base.parent.as_deref()), (Kind::Committed, None));
    assert!(matches!(
        sn.mounts("base"),
        Err(SnapshotError::WrongKind { .. })
    ));
    assert!(matches!(
        sn.commit("x", "base"),
        Err(SnapshotError::WrongKind { .. })
    ));

    sn.prepare("child", Some("base")).expect("prepare child");
    assert!(matches!(
        sn.prepare("child", Some("base")),
        Err(SnapshotError::AlreadyExists(_))
    ));
    assert!(matches!(
        sn.prepare("c2", Some("child")),
        Err(SnapshotError::WrongKind {
            expected: Kind::Committed,
            ..
        })
    ));
    assert!(matches!(
        sn.prepare("c3", Some("nope")),
        Err(SnapshotError::NotFound(_))
    ));
    assert_eq!(
        sn.parent_dirs("child").expect("parents"),
        vec![sn.fs_dir("base").expect("dir")]
    );
    let view = sn.view("v", Some("base")).expect("view");
    assert!(view.iter().all(|m| m.is_readonly()), "{view:?}");
    assert!(matches!(
        sn.remove("base"),
        Err(SnapshotError::HasChildren { children: 2, .. })
    ));

    let mut labels = BTreeMap::new();
    labels.insert("berth/x".to_string(), "1".to_string());
    assert_eq!(
        sn.update_labels("child", labels.clone())
            .expect("labels")
            .labels,
        labels
    );
    let u = sn.usage("base").expect("usage");
    assert!(u.inodes >= 2 && u.size > 0, "{u:?}");
    let mut seen = Vec::new();
    sn.walk(&mut |i| seen.push(i.key.clone())).expect("walk");
    assert_eq!(seen, ["base", "child", "v"]);

    // A second handle (another process would do the same) sees the same metadata.
    let again = snapshot::open(kind, &root).expect("reopen");
    assert_eq!(again.stat("child").expect("stat").labels, labels);
    let version: i64 = rusqlite::Connection::open(root.join("metadata.db"))
        .expect("db")
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .expect("version");
    assert_eq!(version, 1);

    // Leftovers of interrupted calls (dead pid 0 never exists) are cleaned up.
    std::fs::create_dir_all(root.join("snapshots/new-0-123/fs")).expect("stray");
    std::fs::create_dir_all(root.join("snapshots/999")).expect("stray");
    let removed = sn.cleanup().expect("cleanup");
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert!(sn.fs_dir("base").expect("dir").join("f").exists());

    sn.remove("v").expect("remove view");
    sn.remove("child").expect("remove child");
    let base_dir = sn.fs_dir("base").expect("dir");
    sn.remove("base").expect("remove base");
    assert!(!base_dir.exists());
    assert!(sn.list().expect("list").is_empty());
}

#[test]
fn overlay_lifecycle() {
    if have_root() {
        lifecycle(SnapshotterKind::Overlay);
    }
}

#[test]
fn native_lifecycle() {
    if have_root() {
        lifecycle(SnapshotterKind::Native);
    }
}

#[test]
fn native_prepare_copies_the_parent_and_views_share_it() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let sn = snapshot::open(SnapshotterKind::Native, tmp.path()).expect("open");
    sn.prepare("a", None).expect("prepare");
    let a = sn.fs_dir("a").expect("dir");
    std::fs::create_dir(a.join("d")).expect("mkdir");
    std::fs::write(a.join("d/f"), b"x").expect("write");
    std::fs::hard_link(a.join("d/f"), a.join("hl")).expect("link");
    sn.commit("A", "a").expect("commit");
    sn.prepare("b", Some("A")).expect("prepare");
    let (ta, tb) = (
        berth_fs::tree::Tree::scan(&a).expect("scan"),
        berth_fs::tree::Tree::scan(&sn.fs_dir("b").expect("dir")).expect("scan"),
    );
    assert_eq!(ta.differences(&tb, true), Vec::<String>::new());
    assert!(!sn.independent_layers());
    assert!(matches!(
        sn.commit_with_parent("B", "b", None),
        Err(SnapshotError::ParentConflict { .. })
    ));
}

#[test]
fn a_120_layer_overlay_mounts_and_writes() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    let sn = snapshot::open(
        SnapshotterKind::Overlay,
        &tmp.path().join("a-long-enough-root-directory-name"),
    )
    .expect("open");
    assert!(sn.independent_layers());
    let mut parent: Option<String> = None;
    for i in 0..120 {
        let key = format!("extract-{i}");
        sn.prepare(&key, None).expect("prepare");
        std::fs::write(
            sn.fs_dir(&key).expect("dir").join(format!("f{i}")),
            i.to_string(),
        )
        .expect("write");
        let name = format!("layer-{i}");
        sn.commit_with_parent(&name, &key, parent.as_deref())
            .expect("commit");
        parent = Some(name);
    }
    let mounts = sn.prepare("top", parent.as_deref()).expect("prepare top");
    let data_len: usize = mounts[0].options.iter().map(|o| o.len() + 1).sum();
    assert!(
        data_len > berth_mount::MAX_MOUNT_DATA,
        "the test must exceed one page: {data_len}"
    );
    let target = tmp.path().join("mnt");
    {
        let _g = MountGuard::mount(&mounts, &target);
        for i in 0..120 {
            assert_eq!(
                std::fs::read_to_string(target.join(format!("f{i}"))).expect("visible"),
                i.to_string()
            );
        }
        std::fs::write(target.join("new"), b"w").expect("write through the mount");
    }
    assert!(!berth_mount::is_mount_point(&target));
    assert_eq!(
        std::fs::read(sn.fs_dir("top").expect("upper").join("new")).expect("in upper"),
        b"w"
    );
    assert_eq!(sn.parent_dirs("top").expect("chain").len(), 120);
}

#[test]
fn detect_default_prefers_overlay_but_not_on_overlayfs() {
    if !have_root() {
        return;
    }
    let tmp = tempfile::tempdir().expect("tmp");
    assert_eq!(
        snapshot::detect_default(&tmp.path().join("r")).expect("detect"),
        SnapshotterKind::Overlay
    );
    let sn = snapshot::open(SnapshotterKind::Overlay, &tmp.path().join("o")).expect("open");
    sn.prepare("l", None).expect("prepare");
    sn.commit("L", "l").expect("commit");
    let mounts = sn.prepare("top", Some("L")).expect("prepare");
    let target = tmp.path().join("mnt");
    let _g = MountGuard::mount(&mounts, &target);
    assert_eq!(
        snapshot::detect_default(&target.join("nested")).expect("detect"),
        SnapshotterKind::Native
    );
}
