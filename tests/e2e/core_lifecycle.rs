//! The core's guarantees, end to end: nothing in use is ever collected (checkouts, FUSE
//! views, running containers, other platforms, operations in flight), gc runs beside
//! pulls and imports, one writer per checkout, namespaces, and the event journal.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::registry::harness::{Proxy, Registry};
use crate::support::{busybox_layout, need, need_root, raw_layout, sh, Env};

/// A store with `bb:1` imported from a umoci-made busybox layout (with an extra file).
fn lab() -> Env {
    need_root();
    need("runc");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[("etc/motd", "hello from bb\n")]);
    env.ok(&["import", &layout.to_string_lossy(), "--name", "bb:1"]);
    env
}

fn json(s: &str) -> serde_json::Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("bad JSON ({e}): {s}"))
}

/// Snapshot keys, all snapshotters.
fn snapshot_keys(env: &Env) -> Vec<String> {
    json(&env.ok(&["snapshots", "--json"]))
        .as_array()
        .expect("array")
        .iter()
        .map(|s| s["key"].as_str().expect("key").to_string())
        .collect()
}

fn gc(env: &Env) -> serde_json::Value {
    json(&env.ok(&["gc", "--json"]))
}

#[test]
fn a_checkout_survives_rmi_and_gc() {
    let env = lab();
    let w = env.path("w");
    let w_s = w.to_string_lossy().into_owned();
    env.ok(&["checkout", "bb:1", &w_s]);
    std::fs::write(w.join("x"), "x\n").expect("write");
    env.ok(&["rmi", "bb:1"]);
    let report = gc(&env);
    assert_eq!(report["snapshots_removed"], 0, "{report}");
    assert_eq!(report["blobs_removed"], 0, "{report}");
    env.ok(&["commit", &w_s, "new:1"]);
    let out = env.ok(&["run", "--rm", &w_s, "cat", "/x", "/etc/motd"]);
    assert_eq!(out, "x\nhello from bb\n");
    let out = env.ok(&["run", "--rm", "new:1", "cat", "/x"]);
    assert_eq!(out, "x\n");
    env.assert_sound();
    env.ok(&["discard", &w_s]);
    env.ok(&["rmi", "new:1"]);
    gc(&env);
    assert_eq!(env.blob_count(), 0, "everything goes once nothing uses it");
    assert!(snapshot_keys(&env).is_empty());
    env.assert_sound();
}

#[test]
fn a_fuse_view_survives_rmi_and_gc() {
    need("fusermount3");
    let env = lab();
    let v = env.path("v");
    env.ok(&["mount", "--fuse", "bb:1", &v.to_string_lossy()]);
    let before = sh(&format!(
        "cd {} && find . -type f -exec cat {{}} + | sha256sum",
        v.display()
    ));
    env.ok(&["rmi", "bb:1"]);
    let report = gc(&env);
    assert_eq!(report["objects_removed"], 0, "{report}");
    let after = sh(&format!(
        "cd {} && find . -type f -exec cat {{}} + | sha256sum",
        v.display()
    ));
    assert_eq!(before, after, "every read still works after gc");
    assert_eq!(
        std::fs::read_to_string(v.join("etc/motd")).expect("read"),
        "hello from bb\n"
    );
    env.ok(&["umount", &v.to_string_lossy()]);
    // The server's lease ends with it: now the image's content is garbage.
    let t = Instant::now();
    while env.blob_count() > 0 && t.elapsed() < Duration::from_secs(10) {
        gc(&env);
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(env.blob_count(), 0);
    env.assert_sound();
}

#[test]
fn a_killed_fuse_server_lets_its_lease_lapse() {
    need("fusermount3");
    let env = lab();
    let v = env.path("v");
    env.ok(&["mount", "--fuse", "bb:1", &v.to_string_lossy()]);
    env.ok(&["rmi", "bb:1"]);
    sh(&format!("pkill -KILL -f '[_]_fuse-serve {}'", v.display()));
    let t = Instant::now();
    while crate::objects_fuse::is_mounted(&v) && t.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(50));
    }
    let fsck = json(&String::from_utf8_lossy(
        &env.run(&["fsck", "--json"]).stdout,
    ));
    assert_eq!(fsck["lapsed_leases"], 1, "{fsck}");
    let report = gc(&env);
    assert_eq!(report["leases_expired"], 1, "{report}");
    assert_eq!(
        env.blob_count(),
        0,
        "what only the lease protected is collected"
    );
    env.assert_sound();
}

#[test]
fn a_running_container_survives_rmi_and_gc() {
    let env = lab();
    env.ok(&[
        "run",
        "-d",
        "--name",
        "c",
        "bb:1",
        "sh",
        "-c",
        "sleep 2; cat /etc/motd >/dev/null",
    ]);
    env.ok(&["rmi", "bb:1"]);
    let report = gc(&env);
    assert_eq!(report["snapshots_removed"], 0, "{report}");
    assert_eq!(env.ok(&["wait", "c"]).trim(), "0");
    env.ok(&["rm", "c"]);
    gc(&env);
    assert_eq!(env.blob_count(), 0);
    env.assert_sound();
}

#[test]
fn another_platforms_unpacked_layers_survive_gc() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    crate::fs_fixtures::many_layers_for(&layout, "foreign", 2, "s390x");
    let l = layout.to_string_lossy().into_owned();
    env.ok(&[
        "import",
        "--platform",
        "linux/s390x",
        &l,
        "--name",
        "foreign:1",
    ]);
    let snapshots = snapshot_keys(&env);
    assert_eq!(snapshots.len(), 2, "{snapshots:?}");
    let blobs = env.blob_count();
    let report = gc(&env);
    assert_eq!(report["snapshots_removed"], 0, "{report}");
    assert_eq!(report["blobs_removed"], 0, "{report}");
    assert_eq!(snapshot_keys(&env), snapshots);
    assert_eq!(env.blob_count(), blobs);
    let w = env.path("w").to_string_lossy().into_owned();
    env.ok(&[
        "checkout",
        "--readonly",
        "--platform",
        "linux/s390x",
        "foreign:1",
        &w,
    ]);
    assert_eq!(
        std::fs::read_to_string(env.path("w/layers/file-1")).expect("read"),
        "layer 1\n"
    );
    env.ok(&["discard", &w]);
    env.assert_sound();
}

#[test]
fn a_missing_blob_does_not_sweep_the_rest_of_its_image() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    crate::fs_fixtures::many_layers(&layout, "three", 3);
    env.ok(&["import", &layout.to_string_lossy(), "--name", "three:1"]);
    let info = json(&env.ok(&["inspect", "--json", "three:1"]));
    let layers: Vec<String> = info["layers"]
        .as_array()
        .expect("layers")
        .iter()
        .map(|l| l["digest"].as_str().expect("digest").to_string())
        .collect();
    assert_eq!(layers.len(), 3);
    let hex = |d: &str| d.trim_start_matches("sha256:").to_string();
    std::fs::remove_file(env.root().join("blobs/sha256").join(hex(&layers[1]))).expect("rm blob");
    let snapshots = snapshot_keys(&env);
    let report = gc(&env);
    assert_eq!(report["blobs_removed"], 0, "{report}");
    let missing = report["missing"].as_array().expect("missing");
    assert_eq!(missing.len(), 1, "{report}");
    assert_eq!(missing[0]["digest"], layers[1]);
    for l in [&layers[0], &layers[2]] {
        assert!(
            env.root().join("blobs/sha256").join(hex(l)).exists(),
            "{l} was swept"
        );
    }
    assert_eq!(
        snapshot_keys(&env),
        snapshots,
        "no snapshot of the image is swept"
    );
    let fsck = env.run(&["fsck"]);
    assert!(!fsck.status.success());
    let text = String::from_utf8_lossy(&fsck.stdout);
    assert!(text.contains(&layers[1]), "{text}");
}

/// A registry holding `big:v1` (one layer of `mib` MiB) and a proxy in front of it that
/// serves `rate` bytes a second, so a pull takes a while.
fn slow_registry(env: &Env, mib: usize, rate: usize) -> (Registry, Proxy) {
    let reg = Registry::start("");
    let layout = env.path("big-layout");
    raw_layout(&layout, "big", mib << 20, 11);
    reg.seed(&layout, "big", "big:v1", None);
    let proxy = Proxy::start(reg.port, rate);
    (reg, proxy)
}

#[test]
fn gc_runs_while_a_pull_and_an_import_run() {
    need_root();
    let env = Env::new();
    let (_reg, proxy) = slow_registry(&env, 48, 12 << 20);
    let imp = env.path("imp-layout");
    raw_layout(&imp, "imp", 160 << 20, 12);
    let pull = env
        .cmd(&["pull", "-q", &format!("127.0.0.1:{}/big:v1", proxy.port)])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("pull");
    let import = env
        .cmd(&["import", &imp.to_string_lossy()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("import");
    let (mut pull, mut import) = (pull, import);
    let mut gcs = 0;
    let mut done = (None, None);
    while done.0.is_none() || done.1.is_none() {
        let t = Instant::now();
        gc(&env);
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "gc waited behind a long operation"
        );
        gcs += 1;
        done.0 = done.0.or(pull.try_wait().expect("wait"));
        done.1 = done.1.or(import.try_wait().expect("wait"));
    }
    let err = |c: &mut Child| {
        let mut s = String::new();
        let _ = std::io::Read::read_to_string(c.stderr.as_mut().expect("stderr"), &mut s);
        s
    };
    assert!(done.0.expect("pull").success(), "pull: {}", err(&mut pull));
    assert!(
        done.1.expect("import").success(),
        "import: {}",
        err(&mut import)
    );
    assert!(gcs >= 3, "gc ran only {gcs} times during the pull");
    gc(&env);
    env.assert_sound();
    let names = env.image_names();
    assert!(names.iter().any(|n| n.ends_with("/big:v1")), "{names:?}");
    assert!(
        names
            .iter()
            .any(|n| n.ends_with("/imp:latest") || n == "imp"),
        "{names:?}"
    );
    env.ok(&[
        "checkout",
        "--readonly",
        &format!("127.0.0.1:{}/big:v1", proxy.port),
        &env.path("c1").to_string_lossy(),
    ]);
    assert_eq!(
        std::fs::metadata(env.path("c1/data.bin"))
            .expect("data")
            .len(),
        48 << 20
    );
    env.ok(&["discard", &env.path("c1").to_string_lossy()]);
}

#[test]
fn two_commits_of_one_checkout_take_turns() {
    let env = lab();
    let w = env.path("w");
    let w_s = w.to_string_lossy().into_owned();
    env.ok(&["checkout", "bb:1", &w_s]);
    std::fs::write(w.join("a"), "a\n").expect("write");
    let spawn = |name: &str| {
        env.cmd(&["commit", &w_s, name])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("commit")
    };
    let (one, two) = (spawn("one:1"), spawn("two:1"));
    let (one, two) = (
        one.wait_with_output().expect("one"),
        two.wait_with_output().expect("two"),
    );
    for o in [&one, &two] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    // The first commit took the change; the second found a clean checkout.
    let first_has_it = env
        .run(&["run", "--rm", "one:1", "cat", "/a"])
        .status
        .success();
    let second_has_it = env
        .run(&["run", "--rm", "two:1", "cat", "/a"])
        .status
        .success();
    assert!(first_has_it || second_has_it, "the write was lost");
    assert!(env.ok(&["status", &w_s]).is_empty());
    let checkouts: Vec<String> = snapshot_keys(&env)
        .into_iter()
        .filter(|k| k.starts_with("checkout-"))
        .collect();
    assert_eq!(checkouts.len(), 1, "a snapshot leaked: {checkouts:?}");
    assert_eq!(env.ok(&["run", "--rm", &w_s, "cat", "/a"]), "a\n");
    env.assert_sound();
}

#[test]
fn a_checkout_in_use_by_a_running_container_is_not_switched() {
    let env = lab();
    let w = env.path("w");
    let w_s = w.to_string_lossy().into_owned();
    env.ok(&["checkout", "bb:1", &w_s]);
    env.ok(&["run", "-d", "--name", "c", &w_s, "sh", "-c", "sleep 30"]);
    let err = env.fails(&["commit", &w_s, "x:1"]);
    assert!(
        err.contains("used by running container") && err.contains('c'),
        "{err}"
    );
    let err = env.fails(&["discard", &w_s]);
    assert!(err.contains("used by running container"), "{err}");
    assert!(
        env.image_names().iter().all(|n| !n.contains("x:1")),
        "nothing was committed"
    );
    std::fs::write(w.join("b"), "b\n").expect("write");
    env.ok(&["commit", "--force", &w_s, "x:1"]);
    assert!(
        env.ok(&["ps", "-a"]).contains("exited"),
        "--force stopped it"
    );
    assert_eq!(env.ok(&["run", "--rm", "x:1", "cat", "/b"]), "b\n");
    env.ok(&["rm", "c"]);
    env.ok(&["discard", &w_s]);
    env.assert_sound();
}

/// Runs `args` with `BERTH_FAULT=point` and expects it to die of SIGKILL there.
fn killed_at(env: &Env, point: &str, args: &[&str]) {
    use std::os::unix::process::ExitStatusExt;
    let out = env
        .cmd(args)
        .env("BERTH_FAULT", point)
        .output()
        .expect("spawn");
    assert_eq!(
        out.status.signal(),
        Some(9),
        "{args:?} did not reach {point}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After a kill: fsck reports at most lapsed leases (`lapsed`: the killed operation held
/// one), gc ends them, fsck is clean.
fn recovers(env: &Env, lapsed: bool) {
    let out = env.run(&["fsck"]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "fsck after a kill: {text}");
    let report = gc(env);
    let ended = report["leases_expired"].as_u64().unwrap_or(0);
    assert_eq!(ended >= 1, lapsed, "leases ended: {report}");
    let fsck = json(&env.ok(&["fsck", "--json"]));
    assert_eq!(fsck["lapsed_leases"], 0, "{fsck}");
    assert_eq!(fsck["unreferenced_blobs"], 0, "{fsck}");
    env.assert_sound();
}

#[test]
fn killed_imports_and_checkouts_leave_only_garbage() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    let l = layout.to_string_lossy().into_owned();
    for point in ["import-stored", "unpack-layer-applied", "import-unpacked"] {
        killed_at(&env, point, &["import", &l, "--name", "bb:1"]);
        assert!(
            env.image_names().is_empty(),
            "{point}: a name without its content"
        );
        recovers(&env, true);
        assert_eq!(
            env.blob_count(),
            0,
            "{point}: the killed import's blobs are collected"
        );
    }
    env.ok(&["import", &l, "--name", "bb:1"]);
    let w = env.path("w").to_string_lossy().into_owned();
    env.ok(&["rmi", "bb:1"]);
    gc(&env); // its layers go too: the checkout below must unpack them
    env.ok(&["import", &l, "--name", "bb:1", "--no-unpack"]);
    for point in ["unpack-layer-applied", "checkout-recorded"] {
        killed_at(&env, point, &["checkout", "bb:1", &w]);
        let recorded = point == "checkout-recorded";
        if recorded {
            // Recorded but never mounted: `discard` takes it back.
            env.ok(&["discard", &w]);
        }
        recovers(&env, !recorded);
    }
    env.ok(&["checkout", "bb:1", &w]);
    env.ok(&["run", "--rm", &w, "sh", "-c", "true"]);
    env.ok(&["discard", &w]);
    env.assert_sound();
}

#[test]
fn killed_pulls_leave_only_garbage_and_retry() {
    need_root();
    let env = Env::new();
    let reg = Registry::start("");
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[("f", "1")]);
    reg.seed(&layout, "bb", "bb:v1", None);
    let image = format!("{}/bb:v1", reg.addr());
    for point in ["pull-resolved", "unpack-layer-applied", "pull-unpacked"] {
        killed_at(&env, point, &["pull", "-q", &image]);
        assert!(
            env.image_names().is_empty(),
            "{point}: a name without its content"
        );
        recovers(&env, true);
        assert_eq!(env.blob_count(), 0, "{point}");
        assert!(snapshot_keys(&env).is_empty(), "{point}");
    }
    env.ok(&["pull", "-q", &image]);
    env.ok(&["run", "--rm", &image, "cat", "/f"]);
    env.assert_sound();
}

#[test]
fn namespaces_keep_names_apart_and_share_content() {
    let env = lab();
    let layout = env.path("layout").to_string_lossy().into_owned();
    let blobs = env.blob_count();
    env.ok(&["-n", "k8s.io", "import", &layout, "--name", "bb:1"]);
    assert_eq!(env.blob_count(), blobs, "content is stored once");
    let du = json(&env.ok(&["du", "--json"]));
    let layers = du["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["kind"] == "layers")
        .cloned();
    assert_eq!(layers.expect("layers row")["count"], 1);
    env.ok(&["-n", "k8s.io", "tag", "bb:1", "only-here:1"]);
    assert!(!env.image_names().iter().any(|n| n.contains("only-here")));
    let other = env.ok(&["-n", "k8s.io", "images", "-q"]);
    assert!(other.contains("only-here"), "{other}");
    let ns = env.ok(&["namespaces"]);
    assert_eq!(ns.lines().collect::<Vec<_>>(), ["default", "k8s.io"]);
    env.ok(&[
        "-n", "k8s.io", "run", "-d", "--name", "same", "bb:1", "sh", "-c", "sleep 30",
    ]);
    env.ok(&[
        "run", "-d", "--name", "same", "bb:1", "sh", "-c", "sleep 30",
    ]);
    assert_eq!(
        env.ok(&["ps", "-q"]).lines().count(),
        1,
        "ps shows its own namespace"
    );
    env.ok(&["-n", "k8s.io", "rm", "-f", "same"]);
    env.ok(&["rm", "-f", "same"]);
    env.ok(&["rmi", "bb:1"]);
    gc(&env);
    assert_eq!(env.blob_count(), blobs, "k8s.io still uses the content");
    env.ok(&["-n", "k8s.io", "run", "--rm", "bb:1", "cat", "/etc/motd"]);
    let err = env.fails(&["namespaces", "rm", "k8s.io"]);
    assert!(err.contains("not empty"), "{err}");
    env.ok(&["-n", "k8s.io", "rmi", "bb:1", "only-here:1"]);
    gc(&env);
    assert_eq!(env.blob_count(), 0);
    env.ok(&["namespaces", "rm", "k8s.io"]);
    let err = env.fails(&["-n", "bad/name", "images"]);
    assert!(err.contains("invalid namespace"), "{err}");
    env.assert_sound();
}

#[test]
fn a_second_process_follows_container_events_in_order() {
    let env = lab();
    let mut follower = env
        .cmd(&["events", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .expect("events");
    std::thread::sleep(Duration::from_millis(300)); // it starts at the journal's end
    let out = env.run(&[
        "run", "--rm", "--name", "three", "bb:1", "sh", "-c", "exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    let lines = BufReader::new(follower.stdout.take().expect("stdout")).lines();
    let mut seen = Vec::new();
    for line in lines {
        let e = json(&line.expect("line"));
        let topic = e["topic"].as_str().expect("topic").to_string();
        if topic == "/containers/exit" {
            assert_eq!(e["attrs"]["exit_code"], "3", "{e}");
        }
        seen.push(topic.clone());
        if topic == "/containers/delete" {
            break;
        }
    }
    let _ = follower.kill();
    let _ = follower.wait();
    let containers: Vec<&str> = seen
        .iter()
        .map(String::as_str)
        .filter(|t| t.starts_with("/containers/"))
        .collect();
    assert_eq!(
        containers,
        [
            "/containers/create",
            "/containers/start",
            "/containers/exit",
            "/containers/delete"
        ]
    );
    // The journal keeps them for later readers too.
    let past = env.ok(&["events", "--since", "1h", "--no-follow"]);
    assert!(
        past.contains("/images/create") && past.contains("/containers/exit"),
        "{past}"
    );
}

#[test]
fn store_fixes_give_one_clear_line() {
    let env = lab();
    // A file that is no archive.
    let junk = env.path("junk");
    std::fs::write(&junk, b"\x00\x01 this is not a tar \xff\xfe".repeat(64)).expect("write");
    let err = env.fails(&["import", &junk.to_string_lossy()]);
    assert!(err.contains("not a tar archive"), "{err}");
    // A container name taken is named as such.
    env.ok(&["create", "--name", "n1", "bb:1", "sh"]);
    let err = env.fails(&["create", "--name", "n1", "bb:1", "sh"]);
    assert!(err.contains("already in use"), "{err}");
    env.ok(&["rm", "n1"]);
    // du counts snapshots.
    let du = env.ok(&["du"]);
    assert!(du.contains("snapshots (overlay)"), "{du}");
    // man pages.
    let man = env.path("man");
    env.ok(&["manpages", &man.to_string_lossy()]);
    for page in [
        "berth.1",
        "berth-checkout.1",
        "berth-net-link.1",
        "berth-namespaces.1",
    ] {
        assert!(man.join(page).exists(), "{page}");
    }
    need("man");
    let rendered = sh(&format!(
        "MANWIDTH=80 man -P cat -l {}",
        man.join("berth-commit.1").display()
    ));
    assert!(
        rendered.contains("berth commit") && rendered.contains("--change"),
        "{rendered}"
    );
}

#[test]
fn net_takes_netns_after_the_object() {
    need_root();
    let env = Env::new();
    env.ok(&["net", "ns", "add", "lab1"]);
    env.ok(&[
        "net", "link", "add", "dummy-b", "type", "bridge", "--netns", "lab1",
    ]);
    let ls = env.ok(&["net", "link", "ls", "--netns", "lab1"]);
    assert!(ls.contains("dummy-b"), "{ls}");
    let ls = env.ok(&["net", "--netns=lab1", "link", "ls"]);
    assert!(ls.contains("dummy-b"), "{ls}");
    assert!(
        !env.ok(&["net", "link", "ls"]).contains("dummy-b"),
        "it went into lab1"
    );
    env.ok(&["net", "ns", "del", "lab1"]);
}

#[test]
fn gc_keeps_a_lease_until_it_is_released() {
    // The commit's lease protects its blobs between publishing and naming.
    let env = lab();
    let w = env.path("w").to_string_lossy().into_owned();
    env.ok(&["checkout", "bb:1", &w]);
    std::fs::write(Path::new(&w).join("z"), "z").expect("write");
    killed_at(&env, "commit-published", &["commit", &w, "z:1"]);
    let fsck = json(&String::from_utf8_lossy(
        &env.run(&["fsck", "--json"]).stdout,
    ));
    assert_eq!(fsck["lapsed_leases"], 1, "{fsck}");
    let before = env.blob_count();
    gc(&env);
    assert!(
        env.blob_count() < before,
        "the killed commit's layer, config and manifest went"
    );
    env.ok(&["commit", &w, "z:1"]);
    assert_eq!(env.ok(&["run", "--rm", "z:1", "cat", "/z"]), "z");
    env.assert_sound();
}
