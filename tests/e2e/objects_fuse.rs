//! File objects and the FUSE view: identical files cost their blocks once, writes in a
//! checkout never reach an object, and a FUSE mount served from the store shows the same
//! tree as an overlay checkout and as `umoci unpack`.

use std::collections::HashSet;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use berth_fs::tree::Tree;

use crate::fs_checkout::{assert_same_tree, Checkout};
use crate::fs_fixtures::{rich_layout, umoci_rootfs};
use crate::support::{busybox_layout, need, need_root, sh, Env};

/// A `berth mount --fuse` that is unmounted even if the test fails.
pub(crate) struct FuseMount<'a> {
    env: &'a Env,
    pub(crate) dir: PathBuf,
}

impl<'a> FuseMount<'a> {
    pub(crate) fn new(env: &'a Env, image: &str, name: &str) -> Self {
        let dir = env.path(name);
        let out = env.ok(&["mount", "--fuse", image, dir.to_str().expect("utf8")]);
        assert!(out.contains("mounted"), "{out}");
        FuseMount { env, dir }
    }
}

impl Drop for FuseMount<'_> {
    fn drop(&mut self) {
        let _ = self.env.run(&["umount", self.dir.to_str().expect("utf8")]);
        if is_mounted(&self.dir) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

pub fn is_mounted(dir: &Path) -> bool {
    let Ok(canon) = dir.canonicalize() else {
        return false;
    };
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    info.lines()
        .any(|l| l.split(' ').nth(4) == Some(canon.to_str().expect("utf8")))
}

/// An xattr's value, or "" if it is not set.
fn getxattr(path: &Path, name: &str) -> String {
    sh(&format!(
        "python3 -c 'import os,sys\ntry: sys.stdout.write(os.getxattr(\"{}\", \"{name}\").decode())\nexcept OSError: pass'",
        path.display()
    ))
}

fn import(env: &Env, layout: &Path, name: &str) {
    env.ok(&["import", "--name", name, layout.to_str().expect("utf8")]);
}

/// The FUSE view, a read-only overlay checkout and `umoci unpack` agree entry by entry;
/// the two berth trees agree on mtimes too.
fn fuse_equals_checkout_and_umoci(env: &Env, layout: &Path, tag: &str) {
    let name = format!("localhost/{tag}:v1");
    import(env, layout, &name);
    let reference = umoci_rootfs(layout, tag, &env.path(&format!("umoci-{tag}")));
    let fuse = FuseMount::new(env, &name, &format!("fuse-{tag}"));
    let view = Checkout::readonly(env, &name, &format!("view-{tag}"), &[]);
    assert_same_tree(&fuse.dir, &reference);
    assert_same_tree(&view.dir, &reference);
    let (a, b) = (
        Tree::scan(&fuse.dir).expect("scan fuse"),
        Tree::scan(&view.dir).expect("scan view"),
    );
    let diffs = a.differences(&b, true);
    assert!(diffs.is_empty(), "FUSE vs checkout:\n{}", diffs.join("\n"));
    assert!(
        std::fs::write(fuse.dir.join("new-file"), "x").is_err(),
        "the FUSE view is read-only"
    );
}

#[test]
fn fuse_mount_of_rich_image_equals_checkout_and_umoci_unpack() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    rich_layout(&layout, "rich");
    fuse_equals_checkout_and_umoci(&env, &layout, "rich");
    // Reads go through the objects: a whole file, and xattrs.
    let fuse = FuseMount::new(&env, "localhost/rich:v1", "again");
    let data = std::fs::read(fuse.dir.join("data/blob")).expect("read blob");
    assert_eq!(data.len(), 100_000);
    assert_eq!(
        getxattr(&fuse.dir.join("data/a"), "user.berth"),
        "xattr-value"
    );
    let st = std::fs::metadata(fuse.dir.join("data/blob")).expect("stat");
    assert!(st.blocks() * 512 >= 100_000, "st_blocks covers the content");
    assert_eq!(
        std::fs::metadata(fuse.dir.join("data/a"))
            .expect("stat")
            .ino(),
        std::fs::metadata(fuse.dir.join("data/a-hardlink"))
            .expect("stat")
            .ino(),
        "a hardlink group is one inode"
    );
}

#[test]
fn fuse_mount_of_busybox_equals_checkout_and_umoci_unpack() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "busybox", &[("etc/motd", "hello\n")]);
    fuse_equals_checkout_and_umoci(&env, &layout, "busybox");
    let fuse = FuseMount::new(&env, "localhost/busybox:v1", "exec");
    let out = sh(&format!(
        "{}/bin/busybox echo from-fuse",
        fuse.dir.display()
    ));
    assert_eq!(
        out.trim(),
        "from-fuse",
        "binaries execute from the FUSE view"
    );
}

#[test]
fn killed_fuse_server_leaves_no_stale_mount() {
    need_root();
    need("fusermount3");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "busybox", &[]);
    import(&env, &layout, "localhost/busybox:v1");
    let fuse = FuseMount::new(&env, "localhost/busybox:v1", "m");
    assert!(is_mounted(&fuse.dir));
    // `[_]`: the pattern must not match the `sh -c` running pgrep, whose PID may sort
    // first once PIDs wrap (then the server would survive and the test would fail).
    let pid = sh(&format!("pgrep -f '[_]_fuse-serve {}'", fuse.dir.display()));
    assert_eq!(pid.trim().lines().count(), 1, "one server: {pid}");
    sh(&format!("kill -9 {}", pid.trim()));
    let deadline = Instant::now() + Duration::from_secs(30);
    while is_mounted(&fuse.dir) {
        assert!(
            Instant::now() < deadline,
            "the mount outlived its server (killed {pid}, now: {state}); its mount: {mount}; \
             fusermount3 processes:\n{procs}",
            pid = pid.trim(),
            state = sh(&format!(
                "grep -h State /proc/{}/status 2>/dev/null || echo gone",
                pid.trim()
            ))
            .trim(),
            mount = sh(&format!(
                "grep ' {} ' /proc/self/mountinfo || true",
                fuse.dir.display()
            ))
            .trim(),
            procs = sh("ps -eo pid,ppid,stat,args | grep '[f]usermount3' || true")
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(fuse);
    // The directory can be mounted again, and `berth umount` ends the server.
    let fuse = FuseMount::new(&env, "localhost/busybox:v1", "m");
    let dir = fuse.dir.clone();
    env.ok(&["umount", dir.to_str().expect("utf8")]);
    assert!(!is_mounted(&dir));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let alive = std::process::Command::new("pgrep")
            .args(["-f", &format!("__fuse-serve {}", dir.display())])
            .output()
            .expect("pgrep");
        if !alive.status.success() {
            break;
        }
        assert!(Instant::now() < deadline, "the server outlived its mount");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `count` files of 256 KiB random data in `src/data`, with fixed mtimes.
fn make_files(src: &Path, count: usize) {
    sh(&format!(
        "set -e; mkdir -p {s}/data; for i in $(seq 0 {n}); do
           head -c 262144 /dev/urandom > {s}/data/f$i; touch -d @1700000000 {s}/data/f$i; done",
        s = src.display(),
        n = count - 1
    ));
}

/// An image holding `src/data/f*` split into layers by `groups` (file numbers per layer).
fn split_image(layout: &Path, tag: &str, src: &Path, groups: &[Vec<usize>]) {
    let l = layout.display();
    if !layout.join("index.json").exists() {
        sh(&format!("umoci init --layout {l}"));
    }
    let bundle = layout.with_extension(format!("bundle-{tag}"));
    let b = bundle.display();
    sh(&format!(
        "set -e; umoci new --image {l}:{tag}; umoci unpack --image {l}:{tag} {b} >/dev/null; mkdir -p {b}/rootfs/data"
    ));
    for g in groups {
        for i in g {
            sh(&format!(
                "cp -a {}/data/f{i} {b}/rootfs/data/",
                src.display()
            ));
        }
        sh(&format!("umoci repack --image {l}:{tag} {b}"));
    }
    sh(&format!("rm -rf {b}"));
}

/// Allocated bytes under `dirs`, each inode once (what `du` counts).
fn physical(dirs: &[PathBuf]) -> u64 {
    let mut seen = HashSet::new();
    let mut total = 0;
    let mut stack: Vec<PathBuf> = dirs.iter().filter(|d| d.exists()).cloned().collect();
    while let Some(p) = stack.pop() {
        let md = std::fs::symlink_metadata(&p).expect("stat");
        if !seen.insert((md.dev(), md.ino())) {
            continue;
        }
        total += md.blocks() * 512;
        if md.is_dir() {
            for e in std::fs::read_dir(&p).expect("list") {
                stack.push(e.expect("entry").path());
            }
        }
    }
    total
}

/// The unpacked file data of a store: objects (without the index) and layer dirs.
fn unpacked(env: &Env) -> u64 {
    let objects = env.root().join("objects");
    let mut dirs = vec![env.root().join("snapshots/overlay/snapshots")];
    if let Ok(rd) = std::fs::read_dir(&objects) {
        dirs.extend(rd.flatten().map(|e| e.path()).filter(|p| p.is_dir()));
    }
    physical(&dirs)
}

#[test]
fn identical_files_in_different_layer_splits_cost_their_blocks_once() {
    need_root();
    need("umoci");
    let env = Env::new();
    let src = env.path("src");
    make_files(&src, 40);
    let all: Vec<usize> = (0..40).collect();
    let splits: [Vec<Vec<usize>>; 4] = [
        vec![all.clone()],
        vec![(0..20).collect(), (20..40).collect()],
        all.chunks(10).map(<[usize]>::to_vec).collect(),
        vec![(30..40).collect(), (0..30).rev().collect()],
    ];
    let layouts: Vec<PathBuf> = (0..4).map(|i| env.path(&format!("layout{i}"))).collect();
    for (i, s) in splits.iter().enumerate() {
        split_image(&layouts[i], "s", &src, s);
    }
    import(&env, &layouts[0], "localhost/split:0");
    let one = unpacked(&env);
    let content = 40 * 262_144;
    assert!(
        one >= content,
        "one image unpacks to at least its content ({one})"
    );
    for (i, l) in layouts.iter().enumerate().skip(1) {
        import(&env, l, &format!("localhost/split:{i}"));
    }
    let four = unpacked(&env);
    assert!(
        four.saturating_sub(one) < one / 10,
        "3 more images with the same files grew unpacked data by {} bytes (one image: {one})",
        four.saturating_sub(one)
    );
    // Every image still reads its own, right content.
    for i in 0..4 {
        let co = Checkout::readonly(
            &env,
            &format!("localhost/split:{i}"),
            &format!("co{i}"),
            &[],
        );
        sh(&format!(
            "diff -r {}/data {}/data",
            src.display(),
            co.path()
        ));
    }
}

#[test]
fn writes_in_a_checkout_never_reach_an_object() {
    need_root();
    need("umoci");
    let env = Env::new();
    let src = env.path("src");
    make_files(&src, 4);
    let (la, lb) = (env.path("layout-a"), env.path("layout-b"));
    split_image(&la, "a", &src, &[vec![0, 1, 2, 3]]);
    split_image(&lb, "b", &src, &[vec![0, 1], vec![2, 3]]);
    import(&env, &la, "localhost/a:v1");
    import(&env, &lb, "localhost/b:v1");
    // The file is deduplicated: both images' layers store it in the same inode (the
    // layer file itself, or the object a stub layer's file redirects to).
    let inodes = sh(&format!(
        "cd {root} && for f in snapshots/overlay/snapshots/*/fs/data/f0; do \
           r=$(python3 -c 'import os,sys; print(os.getxattr(sys.argv[1], \"trusted.overlay.redirect\").decode())' $f 2>/dev/null); \
           if [ -n \"$r\" ]; then stat -c %i objects/content$r; else stat -c %i $f; fi; \
         done | sort -u",
        root = env.root().display()
    ));
    assert_eq!(inodes.lines().count(), 1, "f0 is one object: {inodes}");
    let before = std::fs::read(src.join("data/f0")).expect("read source");
    let a = Checkout::new(&env, "localhost/a:v1", "a", &[]);
    let f = a.dir.join("data/f0");
    sh(&format!("echo appended >> {}", f.display()));
    std::fs::set_permissions(&f, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    std::os::unix::fs::chown(&f, Some(1234), Some(1234)).expect("chown");
    sh(&format!(
        "python3 -c 'import os; os.setxattr(\"{}\", \"user.changed\", b\"yes\")'",
        f.display()
    ));
    let b = Checkout::readonly(&env, "localhost/b:v1", "b", &[]);
    let g = b.dir.join("data/f0");
    assert_eq!(
        std::fs::read(&g).expect("read b"),
        before,
        "content unchanged"
    );
    let md = std::fs::metadata(&g).expect("stat b");
    assert_eq!(md.mode() & 0o7777, 0o644, "mode unchanged");
    assert_eq!((md.uid(), md.gid()), (0, 0), "owner unchanged");
    assert_eq!(getxattr(&g, "user.changed"), "", "xattrs unchanged");
    let out = a.berth(&["status", a.path()]);
    assert!(out.contains("data/f0"), "the change shows in status: {out}");
    env.ok(&["fsck"]);
}

#[test]
fn gc_removes_unused_objects_and_fsck_finds_a_corrupt_one() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "busybox", &[("etc/motd", "hello\n")]);
    import(&env, &layout, "localhost/busybox:v1");
    let du = env.ok(&["du"]);
    assert!(du.contains("file objects"), "{du}");
    let objects = || {
        sh(&format!(
            "find {}/objects -mindepth 2 -type f | sort",
            env.root().display()
        ))
    };
    let listed = objects();
    let motd = listed.lines().last().expect("an object").to_string();
    assert!(!motd.is_empty());
    env.ok(&["fsck"]);
    // A corrupt object (written behind berth's back) is found.
    let victim = sh(&format!(
        "for f in {}; do if [ \"$(cat $f)\" = hello ]; then echo $f; fi; done",
        listed.lines().collect::<Vec<_>>().join(" ")
    ));
    let victim = victim.trim();
    assert!(!victim.is_empty(), "etc/motd is an object");
    std::fs::write(victim, "HELLO\n").expect("corrupt");
    let out = env.run(&["fsck"]);
    assert!(!out.status.success(), "fsck fails on a corrupt object");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("content hashes to"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    env.ok(&["rmi", "localhost/busybox:v1"]);
    let gc = env.ok(&["gc"]);
    assert!(gc.contains("file objects"), "{gc}");
    assert_eq!(objects(), "", "gc removed every object");
    env.ok(&["fsck"]);
}

/// Overlay snapshot directories in the store (layer dirs and checkout uppers).
fn snapshot_dirs(env: &Env) -> usize {
    std::fs::read_dir(env.root().join("snapshots/overlay/snapshots"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// berth's FUSE mounts whose mount point is under this env.
fn fuse_mounts(env: &Env) -> usize {
    let info = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let base = env.dir.path().to_str().expect("utf8").to_string();
    info.lines()
        .filter(|l| {
            l.contains(" - fuse.berth ")
                && l.split(' ').nth(4).is_some_and(|m| m.starts_with(&base))
        })
        .count()
}

/// From blobs only (`import --no-unpack`), `mount --fuse` streams each layer into objects
/// and a tree index without making a layer directory; the view equals `umoci unpack` and
/// an overlay checkout unpacked afterwards (whose files link to the same objects).
#[test]
fn index_only_fuse_mount_of_rich_image_equals_checkout() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    rich_layout(&layout, "rich");
    let name = "localhost/rich:v1";
    env.ok(&[
        "import",
        "--no-unpack",
        "--name",
        name,
        layout.to_str().expect("utf8"),
    ]);
    assert_eq!(snapshot_dirs(&env), 0, "--no-unpack unpacks nothing");
    let fuse = FuseMount::new(&env, name, "fuse");
    assert_eq!(snapshot_dirs(&env), 0, "the FUSE view needs no layer dir");
    let reference = umoci_rootfs(&layout, "rich", &env.path("umoci"));
    assert_same_tree(&fuse.dir, &reference);
    let objects = |env: &Env| -> u64 {
        let du: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--json"])).expect("json");
        du["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .find(|r| r["kind"] == "file objects")
            .and_then(|r| r["count"].as_u64())
            .expect("objects row")
    };
    let objects_before = objects(&env);
    let view = Checkout::readonly(&env, name, "view", &[]);
    assert_same_tree(&view.dir, &reference);
    let (a, b) = (
        Tree::scan(&fuse.dir).expect("scan fuse"),
        Tree::scan(&view.dir).expect("scan view"),
    );
    let diffs = a.differences(&b, false);
    assert!(diffs.is_empty(), "FUSE vs checkout:\n{}", diffs.join("\n"));
    // The unpacked layers store their files in the objects the stream wrote: no new one.
    assert_eq!(objects(&env), objects_before, "one copy of each file");
    drop(view);
    drop(fuse);
    env.assert_sound();
}

/// A hostile layer indexed without unpacking: `..` and absolute names are cleaned into
/// the root (recorded as paths only), nothing is written beside the host sentinel; a
/// write through a symlink of the layer falls back to a confined full unpack.
#[test]
fn index_only_ingest_confines_hostile_paths() {
    use crate::fs_hostile::{gzip, layout_with_layer, raw_entry, Sentinel};
    need_root();
    let env = Env::new();
    let s = Sentinel::new();
    let victim = format!("{}/victim", s.path());
    let build = |with_symlink: bool| {
        let mut tar = tar::Builder::new(Vec::new());
        let reg = tar::EntryType::Regular;
        // Parents declared: a directory no entry declares makes the index decline.
        let mut parent = String::new();
        for part in victim
            .trim_start_matches('/')
            .split('/')
            .rev()
            .skip(1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
        {
            parent = format!("{parent}/{part}");
            raw_entry(
                &mut tar,
                tar::EntryType::Directory,
                &format!("{parent}/"),
                None,
                b"",
            );
        }
        raw_entry(&mut tar, tar::EntryType::Directory, "dir/", None, b"");
        raw_entry(&mut tar, reg, "../../../../../../escape-dotdot", None, b"x");
        raw_entry(&mut tar, reg, &victim, None, b"pwned-abs");
        raw_entry(&mut tar, reg, "dir/.wh.gone", None, b"");
        if with_symlink {
            raw_entry(
                &mut tar,
                tar::EntryType::Symlink,
                "evil",
                Some(&s.path()),
                b"",
            );
            raw_entry(&mut tar, reg, "evil/new-file", None, b"pwned-new");
        }
        tar.into_inner().expect("tar")
    };
    for (tag, with_symlink) in [("plain", false), ("symlink", true)] {
        let plain = build(with_symlink);
        let layout = env.path(&format!("layout-{tag}"));
        let name = format!("localhost/evil-{tag}:v1");
        layout_with_layer(&layout, &name, &gzip(&plain), &plain);
        env.ok(&["import", "--no-unpack", layout.to_str().expect("utf8")]);
        let fuse = FuseMount::new(&env, &name, &format!("fuse-{tag}"));
        s.assert_untouched();
        assert!(!Path::new("/escape-dotdot").exists());
        let read = |p: &str| std::fs::read_to_string(fuse.dir.join(p)).expect("confined");
        assert_eq!(read("escape-dotdot"), "x");
        assert_eq!(read(victim.trim_start_matches('/')), "pwned-abs");
        assert!(fuse.dir.join("dir").is_dir() && !fuse.dir.join("dir/gone").exists());
        if with_symlink {
            let inside = format!("{}/new-file", s.path().trim_start_matches('/'));
            assert_eq!(read(&inside), "pwned-new", "resolved inside the layer");
            assert_eq!(snapshot_dirs(&env), 1, "fell back to unpacking");
        } else {
            assert_eq!(snapshot_dirs(&env), 0, "indexed without a layer dir");
        }
    }
    s.assert_untouched();
    env.assert_sound();
}

/// A `checkout --fuse` that is discarded even if the test fails.
struct FuseCheckout<'a> {
    env: &'a Env,
    dir: PathBuf,
}

impl<'a> FuseCheckout<'a> {
    fn new(env: &'a Env, image: &str, name: &str) -> Self {
        let dir = env.path(name);
        env.ok(&["checkout", "--fuse", image, dir.to_str().expect("utf8")]);
        FuseCheckout { env, dir }
    }

    fn path(&self) -> &str {
        self.dir.to_str().expect("utf8")
    }
}

impl Drop for FuseCheckout<'_> {
    fn drop(&mut self) {
        let _ = self.env.run(&["discard", self.path()]);
    }
}

fn status(env: &Env, dir: &str) -> Vec<String> {
    env.ok(&["status", dir]).lines().map(String::from).collect()
}

/// `checkout --fuse` stacks a writable overlay on a FUSE view: nothing is unpacked, the
/// status tells added from modified from deleted against the view, a container runs from
/// it and its writes show, commit moves it onto a FUSE view of the new image, and
/// umount/mount/discard start and stop its FUSE server.
#[test]
fn fuse_checkout_tracks_changes_runs_a_container_and_commits() {
    need_root();
    need("runc");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(
        &layout,
        "busybox",
        &[("etc/motd", "hello\n"), ("etc/gone", "x\n")],
    );
    let name = "localhost/busybox:v1";
    env.ok(&[
        "import",
        "--no-unpack",
        "--name",
        name,
        layout.to_str().expect("utf8"),
    ]);
    let co = FuseCheckout::new(&env, name, "work");
    assert_eq!(fuse_mounts(&env), 1, "the checkout's lower is a FUSE view");
    assert_eq!(snapshot_dirs(&env), 1, "only the checkout's upper dir");
    assert_eq!(
        std::fs::read_to_string(co.dir.join("etc/motd")).expect("read"),
        "hello\n"
    );
    assert!(status(&env, co.path()).is_empty());
    std::fs::write(co.dir.join("etc/motd"), "changed\n").expect("write");
    std::fs::write(co.dir.join("new-file"), "new\n").expect("write");
    std::fs::remove_file(co.dir.join("etc/gone")).expect("rm");
    env.ok(&[
        "run",
        "--rm",
        co.path(),
        "sh",
        "-c",
        "echo hi > /from-container",
    ]);
    let st = status(&env, co.path());
    for want in [
        "M /etc/motd",
        "D /etc/gone",
        "A /from-container",
        "A /new-file",
    ] {
        assert!(st.iter().any(|l| l == want), "{want} missing from {st:?}");
    }
    assert!(!st.iter().any(|l| l.contains("/bin")), "{st:?}");

    env.ok(&["commit", co.path(), "localhost/busybox:v2", "-m", "on fuse"]);
    assert!(
        status(&env, co.path()).is_empty(),
        "the checkout moved onto v2"
    );
    assert_eq!(
        fuse_mounts(&env),
        1,
        "one FUSE view: the old one was stopped"
    );
    assert_eq!(snapshot_dirs(&env), 1, "still nothing unpacked");
    assert_eq!(
        std::fs::read_to_string(co.dir.join("from-container")).expect("read"),
        "hi\n"
    );
    assert!(!co.dir.join("etc/gone").exists());

    env.ok(&["umount", co.path()]);
    assert_eq!(fuse_mounts(&env), 0, "umount stops the FUSE server");
    assert!(!is_mounted(&co.dir));
    // With no image name left, gc keeps what the checkout's FUSE view serves.
    env.ok(&["rmi", "localhost/busybox:v1", "localhost/busybox:v2"]);
    env.ok(&["gc"]);
    env.ok(&["mount", co.path()]);
    assert_eq!(fuse_mounts(&env), 1);
    assert_eq!(
        std::fs::read_to_string(co.dir.join("new-file")).expect("read"),
        "new\n"
    );
    std::fs::write(co.dir.join("after"), "x").expect("write");
    assert_eq!(status(&env, co.path()), ["A /after"]);

    env.ok(&["discard", co.path()]);
    assert_eq!(fuse_mounts(&env), 0, "discard stops the FUSE server");
    assert!(!co.dir.exists() || !is_mounted(&co.dir));
    drop(co);
    env.ok(&["gc"]);
    env.assert_sound();
}
