//! Hostile layers: nothing a layer contains may create, change or read outside the root.

mod common;

use std::io::Cursor;

use berth_fs::apply::{apply_layer, ApplyError, ApplyOptions, WhiteoutMode};
use common::{have_root, path_in, RawTar, Scratch};

fn apply(
    s: &Scratch,
    tar: Vec<u8>,
    mode: WhiteoutMode,
) -> Result<berth_fs::ApplyStats, ApplyError> {
    let opts = ApplyOptions {
        whiteouts: mode,
        ..Default::default()
    };
    apply_layer(Cursor::new(tar), &s.root, &opts)
}

#[test]
fn dotdot_paths_are_confined_to_the_root() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.file(b"../../escape", b"x")
        .file(b"../../../sentinel/file", b"pwned")
        .file(b"a/../../b", b"y");
    apply(&s, t.finish(), WhiteoutMode::Overlay).expect("apply");
    assert_eq!(
        std::fs::read(s.root.join("escape")).expect("confined"),
        b"x"
    );
    assert_eq!(
        std::fs::read(s.root.join("sentinel/file")).expect("confined"),
        b"pwned"
    );
    assert_eq!(std::fs::read(s.root.join("b")).expect("confined"), b"y");
    s.assert_host_untouched();
}

#[test]
fn absolute_paths_are_confined_to_the_root() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut abs = s.sentinel_bytes();
    abs.extend_from_slice(b"/file");
    let mut t = RawTar::new();
    t.file(b"/abs/path", b"x").file(&abs, b"pwned");
    apply(&s, t.finish(), WhiteoutMode::Delete).expect("apply");
    assert_eq!(
        std::fs::read(s.root.join("abs/path")).expect("confined"),
        b"x"
    );
    assert_eq!(
        std::fs::read(path_in(&s.root, &s.sentinel.join("file"))).expect("confined"),
        b"pwned"
    );
    s.assert_host_untouched();
}

#[test]
fn files_through_an_absolute_symlinked_dir_land_inside() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.symlink(b"evil", &s.sentinel_bytes())
        .file(b"evil/x", b"pwned")
        .file(b"evil/file", b"pwned");
    apply(&s, t.finish(), WhiteoutMode::Overlay).expect("apply");
    let inside = path_in(&s.root, &s.sentinel);
    assert_eq!(
        std::fs::read(inside.join("x")).expect("created inside"),
        b"pwned"
    );
    assert!(std::fs::symlink_metadata(s.root.join("evil"))
        .expect("link")
        .file_type()
        .is_symlink());
    s.assert_host_untouched();
}

#[test]
fn relative_symlinks_climbing_out_resolve_inside() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.symlink(b"up", b"../../../../../..")
        .file(b"up/sentinel/file", b"pwned")
        .file(b"up/sentinel/new", b"n");
    apply(&s, t.finish(), WhiteoutMode::Delete).expect("apply");
    assert_eq!(
        std::fs::read(s.root.join("sentinel/new")).expect("inside"),
        b"n"
    );
    s.assert_host_untouched();
}

#[test]
fn a_file_entry_replaces_a_symlink_instead_of_writing_through_it() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut target = s.sentinel_bytes();
    target.extend_from_slice(b"/file");
    let mut t = RawTar::new();
    t.symlink(b"link", &target)
        .file(b"link", b"pwned")
        .symlink(b"rel", b"../../../sentinel/file")
        .file(b"rel", b"p2");
    apply(&s, t.finish(), WhiteoutMode::Overlay).expect("apply");
    assert_eq!(
        std::fs::read(s.root.join("link")).expect("replaced"),
        b"pwned"
    );
    assert_eq!(std::fs::read(s.root.join("rel")).expect("replaced"), b"p2");
    s.assert_host_untouched();
}

#[test]
fn hardlinks_to_outside_targets_are_refused() {
    if !have_root() {
        return;
    }
    for target in [b"../../../sentinel/file".to_vec(), b"evil/file".to_vec()] {
        let s = Scratch::new();
        let mut t = RawTar::new();
        t.symlink(b"evil", &s.sentinel_bytes())
            .hardlink(b"hl", &target);
        let err = apply(&s, t.finish(), WhiteoutMode::Overlay).expect_err("must refuse");
        assert!(
            matches!(
                err,
                ApplyError::Hardlink {
                    reason: "target does not exist",
                    ..
                }
            ),
            "{err}"
        );
        s.assert_host_untouched();
        let nlink = std::os::unix::fs::MetadataExt::nlink(
            &std::fs::metadata(s.sentinel.join("file")).expect("md"),
        );
        assert_eq!(nlink, 1);
    }
}

#[test]
fn hardlinks_to_directories_are_refused() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.dir(b"d").hardlink(b"hl", b"d");
    let err = apply(&s, t.finish(), WhiteoutMode::Overlay).expect_err("must refuse");
    assert!(
        matches!(
            err,
            ApplyError::Hardlink {
                reason: "target is a directory",
                ..
            }
        ),
        "{err}"
    );
    s.assert_host_untouched();
}

#[test]
fn whiteouts_through_symlinked_dirs_stay_inside() {
    if !have_root() {
        return;
    }
    for mode in [WhiteoutMode::Delete, WhiteoutMode::Overlay] {
        let s = Scratch::new();
        let mut t = RawTar::new();
        t.symlink(b"d", &s.sentinel_bytes())
            .symlink(b"up", b"../../..")
            .file(b"d/.wh.file", b"")
            .file(b"d/.wh.sub", b"")
            .file(b"up/sentinel/.wh.file", b"")
            .file(b"d/sub/.wh..wh..opq", b"")
            .file(b"up/sentinel/.wh..wh..opq", b"");
        apply(&s, t.finish(), mode).expect("apply");
        s.assert_host_untouched();
    }
}

#[test]
fn bare_whiteout_names_are_errors() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.file(b"dir/.wh.", b"");
    let err = apply(&s, t.finish(), WhiteoutMode::Delete).expect_err("bare .wh.");
    assert!(matches!(err, ApplyError::InvalidPath { .. }), "{err}");
}

#[test]
fn a_file_at_the_root_path_is_refused() {
    if !have_root() {
        return;
    }
    let s = Scratch::new();
    let mut t = RawTar::new();
    t.file(b"../..", b"x");
    let err = apply(&s, t.finish(), WhiteoutMode::Delete).expect_err("file at root");
    assert!(matches!(err, ApplyError::InvalidPath { .. }), "{err}");
    s.assert_host_untouched();
}
