//! Checkouts against third-party unpackers: what berth mounts equals `umoci unpack`,
//! what berth commits umoci unpacks back to the checkout's tree.

use std::path::Path;

use berth_fs::tree::Tree;

use crate::fs_fixtures::{many_layers, rich_layout, umoci_rootfs};
use crate::support::{need_root, sh, Env};

/// Asserts two trees are the same entry by entry (type, mode, owner, size, content,
/// link target, device numbers, xattrs, hardlink groups).
pub fn assert_same_tree(a: &Path, b: &Path) {
    let ta = Tree::scan(a).expect("scan a");
    let tb = Tree::scan(b).expect("scan b");
    let diffs = ta.differences(&tb, false);
    assert!(
        diffs.is_empty(),
        "{} differs from {}:\n{}",
        a.display(),
        b.display(),
        diffs.join("\n")
    );
}

/// A mounted checkout that is discarded even if the test fails.
pub struct Checkout<'a> {
    pub env: &'a Env,
    pub dir: std::path::PathBuf,
    extra: Vec<String>,
}

impl<'a> Checkout<'a> {
    /// `berth <flags> checkout image <env>/name` (flags are global ones, like --snapshotter).
    pub fn new(env: &'a Env, image: &str, name: &str, flags: &[&str]) -> Self {
        Self::with(env, image, name, flags, false)
    }

    /// A read-only checkout.
    pub fn readonly(env: &'a Env, image: &str, name: &str, flags: &[&str]) -> Self {
        Self::with(env, image, name, flags, true)
    }

    fn with(env: &'a Env, image: &str, name: &str, flags: &[&str], readonly: bool) -> Self {
        let dir = env.path(name);
        let mut args: Vec<&str> = flags.to_vec();
        args.push("checkout");
        if readonly {
            args.push("--readonly");
        }
        args.extend([image, dir.to_str().expect("utf8")]);
        env.ok(&args);
        Checkout {
            env,
            dir,
            extra: flags.iter().map(|s| s.to_string()).collect(),
        }
    }

    pub fn path(&self) -> &str {
        self.dir.to_str().expect("utf8")
    }

    /// berth with this checkout's global flags.
    pub fn berth(&self, args: &[&str]) -> String {
        let mut all: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        all.extend_from_slice(args);
        self.env.ok(&all)
    }
}

impl Drop for Checkout<'_> {
    fn drop(&mut self) {
        let mut all: Vec<&str> = self.extra.iter().map(String::as_str).collect();
        all.extend(["discard", self.path()]);
        let _ = self.env.run(&all);
    }
}

fn unpacks_like_umoci(snapshotter: &str) {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    rich_layout(&layout, "rich");
    let flags = ["--snapshotter", snapshotter];
    env.ok(&[
        &flags[..],
        &[
            "import",
            "--name",
            "localhost/rich:v1",
            layout.to_str().expect("utf8"),
        ],
    ]
    .concat());
    let reference = umoci_rootfs(&layout, "rich", &env.path("umoci"));
    let view = Checkout::readonly(&env, "localhost/rich:v1", "view", &flags);
    assert_same_tree(&view.dir, &reference);
    assert!(
        std::fs::write(view.dir.join("x"), "no").is_err(),
        "a read-only checkout refuses writes"
    );
    drop(view);
    let rw = Checkout::new(&env, "localhost/rich:v1", "rw", &flags);
    assert_same_tree(&rw.dir, &reference);
    assert_eq!(
        rw.berth(&["status", rw.path()]),
        "",
        "a fresh checkout is clean"
    );
}

#[test]
fn overlay_checkout_equals_umoci_unpack() {
    unpacks_like_umoci("overlay");
}

#[test]
fn native_checkout_equals_umoci_unpack() {
    unpacks_like_umoci("native");
}

/// Changes made in a checkout: status lists them, commit makes an image whose export
/// umoci unpacks to exactly the checkout's tree, and the checkout is clean afterwards.
fn commit_round_trips(snapshotter: &str) {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    rich_layout(&layout, "rich");
    let flags = ["--snapshotter", snapshotter];
    env.ok(&[
        &flags[..],
        &[
            "import",
            "--name",
            "localhost/rich:v1",
            layout.to_str().expect("utf8"),
        ],
    ]
    .concat());
    let co = Checkout::new(&env, "localhost/rich:v1", "work", &flags);
    let d = co.path();
    sh(&format!(
        "set -e; cd {d}
         echo hello > data/new-file; echo changed >> data/a
         rm data/link; rm -rf data/sub; echo now-a-file > data/sub
         rm -rf srv; mkdir -p srv/fresh; echo x > srv/fresh/y
         mkdir -p opt/tool; echo bin > opt/tool/run; chmod 755 opt/tool/run; ln opt/tool/run opt/tool/run2
         chown 1000:1000 data/new-file"
    ));
    let status = co.berth(&["status", d]);
    for line in [
        "A /data/new-file",
        "M /data/a",
        "D /data/link",
        "M /data/sub",
        "A /opt/tool/run",
    ] {
        assert!(
            status.lines().any(|l| l == line),
            "status lacks {line:?}:\n{status}"
        );
    }
    let out = co.berth(&[
        "commit",
        d,
        "localhost/rich:v2",
        "-m",
        "round trip",
        "--author",
        "tester",
    ]);
    assert!(
        out.starts_with("docker.io/library/rich:v2") || out.starts_with("localhost/rich:v2"),
        "{out}"
    );
    assert_eq!(
        co.berth(&["status", d]),
        "",
        "commit leaves the checkout clean"
    );
    let log = co.berth(&["log", "localhost/rich:v2"]);
    assert!(
        log.lines()
            .next()
            .expect("history")
            .contains("round trip (tester)"),
        "{log}"
    );

    let tar = env.path("v2.tar");
    env.ok(&["export", "localhost/rich:v2", tar.to_str().expect("utf8")]);
    let x = env.path("x");
    sh(&format!(
        "mkdir {0} && tar -C {0} -xf {1}",
        x.display(),
        tar.display()
    ));
    let rootfs = umoci_rootfs(&x, "localhost/rich:v2", &env.path("u"));
    assert_same_tree(&co.dir, &rootfs);
    // The checkout keeps working on top of the new image, and a second commit stacks.
    sh(&format!("echo again > {d}/data/again"));
    co.berth(&["commit", d, "localhost/rich:v3"]);
    env.assert_sound();
}

#[test]
fn overlay_commit_round_trips_through_umoci() {
    commit_round_trips("overlay");
}

#[test]
fn native_commit_round_trips_through_umoci() {
    commit_round_trips("native");
}

/// An image with 120 layers (more lowerdirs than one mount option page holds) checks out.
#[test]
fn image_with_120_layers_checks_out() {
    need_root();
    let env = Env::new();
    let layout = env.path("many");
    many_layers(&layout, "localhost/many:v1", 120);
    env.ok(&["import", layout.to_str().expect("utf8")]);
    let co = Checkout::new(&env, "localhost/many:v1", "many-co", &[]);
    for i in [0, 59, 119] {
        assert_eq!(
            std::fs::read_to_string(co.dir.join(format!("layers/file-{i}"))).expect("read"),
            format!("layer {i}\n")
        );
    }
    assert_eq!(
        std::fs::read_dir(co.dir.join("layers"))
            .expect("ls")
            .count(),
        120
    );
    std::fs::write(co.dir.join("written"), "ok").expect("write into checkout");
    assert_eq!(co.berth(&["status", co.path()]), "A /written\n");
}

/// Building from scratch: an empty checkout, files copied in, committed, checked out again.
#[test]
fn scratch_checkout_builds_an_image() {
    need_root();
    let env = Env::new();
    let co = Checkout::new(&env, "scratch", "scratch", &[]);
    sh(&format!(
        "mkdir -p {0}/bin && cp /bin/busybox {0}/bin/ && ln -s busybox {0}/bin/sh",
        co.path()
    ));
    co.berth(&[
        "commit",
        co.path(),
        "localhost/scratch-built:v1",
        "--change",
        "CMD [\"sh\"]",
        "--change",
        "ENV PATH=/bin",
    ]);
    let again = Checkout::readonly(&env, "localhost/scratch-built:v1", "again", &[]);
    assert_same_tree(&co.dir, &again.dir);
    let inspect: serde_json::Value =
        serde_json::from_str(&env.ok(&["inspect", "--json", "localhost/scratch-built:v1"]))
            .expect("json");
    assert_eq!(
        inspect["config"]["config"]["Cmd"],
        serde_json::json!(["sh"])
    );
    assert_eq!(
        inspect["config"]["config"]["Env"],
        serde_json::json!(["PATH=/bin"])
    );
}

/// Two images sharing a base layer unpack it once; gc keeps what images and checkouts
/// use and removes the rest.
#[test]
fn shared_layers_unpack_once_and_gc_keeps_what_is_used() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    crate::support::busybox_layout(&layout, "one", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/one:v1",
        layout.to_str().expect("utf8"),
    ]);
    let co = Checkout::new(&env, "localhost/one:v1", "co", &[]);
    sh(&format!("echo 2 > {}/two", co.path()));
    co.berth(&["commit", co.path(), "localhost/two:v1"]);
    let snapshots = |env: &Env| -> Vec<serde_json::Value> {
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("json")
    };
    let committed = |env: &Env| {
        snapshots(env)
            .into_iter()
            .filter(|s| s["kind"] == "committed")
            .count()
    };
    assert_eq!(committed(&env), 2, "base layer once, commit layer once");
    // Importing the same image again under another name unpacks nothing new.
    env.ok(&[
        "import",
        "--name",
        "localhost/one:again",
        layout.to_str().expect("utf8"),
    ]);
    assert_eq!(committed(&env), 2);
    // Without names, only the checkout keeps its chain.
    env.ok(&[
        "rmi",
        "localhost/one:v1",
        "localhost/one:again",
        "localhost/two:v1",
    ]);
    env.ok(&["gc"]);
    assert_eq!(committed(&env), 2, "the checkout's chain stays");
    drop(co);
    let out = env.ok(&["gc"]);
    assert!(out.contains(", 2 snapshots,"), "{out}");
    assert!(snapshots(&env).is_empty());
    env.assert_sound();
}

/// `umount` keeps the checkout and its changes; `mount` brings it back (as after a reboot).
/// A parent snapshot with children cannot be removed.
#[test]
fn umount_and_mount_keep_changes() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    crate::support::busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);
    let co = Checkout::new(&env, "localhost/bb:v1", "co", &[]);
    std::fs::write(co.dir.join("kept"), "yes").expect("write");
    co.berth(&["umount", co.path()]);
    assert!(!berth_mount::is_mount_point(&co.dir));
    assert!(!co.dir.join("kept").exists());
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["checkouts", "--json"])).expect("json");
    assert_eq!(listed[0]["mounted"], false);
    co.berth(&["mount", co.path()]);
    assert_eq!(
        std::fs::read_to_string(co.dir.join("kept")).expect("read"),
        "yes"
    );
    assert_eq!(co.berth(&["status", co.path()]), "A /kept\n");
    let snaps: Vec<serde_json::Value> =
        serde_json::from_str(&env.ok(&["snapshots", "--json"])).expect("json");
    let base = snaps
        .iter()
        .find(|s| s["kind"] == "committed")
        .expect("base layer")["key"]
        .as_str()
        .expect("key")
        .to_string();
    let err = env.fails(&["snapshots", "rm", &base]);
    assert!(err.contains("child"), "{err}");
}

/// zstd and uncompressed layers: commit writes them, a fresh store imports the export
/// and checks out the same tree.
#[test]
fn commit_with_zstd_and_no_compression() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    crate::support::busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);
    let co = Checkout::new(&env, "localhost/bb:v1", "co", &[]);
    for (i, compression) in ["zstd", "none"].iter().enumerate() {
        std::fs::write(
            co.dir.join(format!("file-{compression}")),
            "x".repeat(10_000),
        )
        .expect("write");
        let name = format!("localhost/bb:{compression}");
        co.berth(&["commit", co.path(), &name, "--compression", compression]);
        let inspect: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "--json", &name])).expect("json");
        let want = [
            "application/vnd.oci.image.layer.v1.tar+zstd",
            "application/vnd.oci.image.layer.v1.tar",
        ][i];
        assert_eq!(inspect["layers"][i + 1]["media_type"], want);
        let tar = env.path(&format!("{compression}.tar"));
        env.ok(&["export", &name, tar.to_str().expect("utf8")]);
        let fresh = Env::new();
        fresh.ok(&["import", tar.to_str().expect("utf8")]);
        let other = Checkout::readonly(&fresh, &name, "other", &[]);
        assert_same_tree(&co.dir, &other.dir);
    }
}
