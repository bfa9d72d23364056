//! A checkout survives `berth commit` being killed at any point.

use std::time::Instant;

use crate::fs_checkout::Checkout;
use crate::support::{busybox_layout, need_root, sh, Env};

fn add_payload(dir: &str, tag: &str) {
    sh(&format!(
        "mkdir -p {dir}/payload-{tag} && head -c 24000000 /dev/urandom > {dir}/payload-{tag}/big && \
         for i in $(seq 1 200); do echo $i > {dir}/payload-{tag}/f$i; done"
    ));
}

#[test]
fn commit_killed_midway_leaves_a_usable_checkout() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);

    // How long one commit takes here, to spread the kill points over it.
    let probe = Checkout::new(&env, "localhost/bb:v1", "probe", &[]);
    add_payload(probe.path(), "probe");
    let start = Instant::now();
    probe.berth(&["commit", probe.path(), "localhost/probe:v1"]);
    let full = start.elapsed();
    drop(probe);

    let co = Checkout::new(&env, "localhost/bb:v1", "work", &[]);
    for (round, fraction) in [0.05, 0.3, 0.6, 0.9, 0.99].into_iter().enumerate() {
        add_payload(co.path(), &round.to_string());
        let mut child = env
            .cmd(&["commit", co.path(), "localhost/crash:v1"])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill();
        let _ = child.wait();
        env.assert_sound();
        // Still mounted and usable: a write shows in status.
        assert!(
            berth_mount::is_mount_point(&co.dir),
            "round {round}: the checkout must stay mounted"
        );
        let marker = format!("marker-{round}");
        std::fs::write(co.dir.join(&marker), "x").expect("write into checkout");
        let status = co.berth(&["status", co.path()]);
        assert!(
            status.lines().any(|l| l == format!("A /{marker}")),
            "round {round}: {status}"
        );
    }
    // The commit can be retried and completes.
    co.berth(&["commit", co.path(), "localhost/crash:v1"]);
    assert_eq!(co.berth(&["status", co.path()]), "");
    assert!(co.dir.join("payload-4/big").exists());
    env.assert_sound();
}

/// Killed at each step of the commit (content published, image named, just before and
/// just after the checkout switches snapshots): the store is sound, the checkout is
/// mounted, `status` and a retried commit give the right result.
#[test]
fn commit_killed_at_each_step_recovers() {
    need_root();
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);
    let co = Checkout::new(&env, "localhost/bb:v1", "work", &[]);
    for (round, point) in [
        "commit-published",
        "commit-named",
        "commit-before-switch",
        "commit-switched",
    ]
    .into_iter()
    .enumerate()
    {
        let file = format!("file-{round}");
        std::fs::write(co.dir.join(&file), point).expect("write");
        let out = env
            .cmd(&["commit", co.path(), "localhost/steps:v1"])
            .env("BERTH_FAULT", point)
            .output()
            .expect("run");
        assert!(
            !out.status.success(),
            "{point}: the fault must kill the commit"
        );
        env.assert_sound();
        assert!(
            berth_mount::is_mount_point(&co.dir),
            "{point}: the checkout must stay mounted"
        );
        assert_eq!(
            std::fs::read_to_string(co.dir.join(&file)).expect("read"),
            point
        );
        let status = co.berth(&["status", co.path()]);
        if point == "commit-switched" {
            assert_eq!(
                status, "",
                "{point}: the switch happened, so the checkout is clean"
            );
            let listed = env.ok(&["checkouts", "--json"]);
            assert!(
                listed.contains("localhost/steps:v1"),
                "{point}: the checkout is on the new image: {listed}"
            );
        } else {
            assert!(status.contains(&format!("A /{file}")), "{point}: {status}");
            co.berth(&["commit", co.path(), "localhost/steps:v1"]);
            assert_eq!(
                co.berth(&["status", co.path()]),
                "",
                "{point}: retry commits"
            );
        }
    }
    // Old snapshots left by the killed switches go at gc; the checkout's chain stays.
    env.ok(&["gc"]);
    assert_eq!(co.berth(&["status", co.path()]), "");
    env.assert_sound();
}

/// A process killed between the overlay probe's mount and unmount (on a store's first
/// use) leaves the probe mounted: the next detection and `berth gc` unmount and remove
/// it. A probe still locked by its prober is left alone.
#[test]
fn a_probe_left_mounted_by_a_dead_process_is_cleaned_up() {
    need_root();
    let env = Env::new();
    env.ok(&["images"]);
    let snapshots = env.root().join("snapshots");
    let make_probe = |name: &str| {
        let dir = snapshots.join(format!("overlay-probe-{name}"));
        let d = dir.display();
        sh(&format!(
            "mkdir -p {d}/lower {d}/upper {d}/work {d}/merged && \
             mount -t overlay overlay -o lowerdir={d}/lower,upperdir={d}/upper,workdir={d}/work {d}/merged"
        ));
        dir
    };
    // Found by the snapshotter detection of a store's first use...
    let stale = make_probe("4000001");
    let _ = std::fs::remove_file(snapshots.join("default"));
    env.ok(&["checkouts"]);
    env.ok(&[
        "checkout",
        "scratch",
        env.path("co").to_str().expect("utf8"),
    ]);
    assert!(!stale.exists(), "detection leaves {}", stale.display());
    // ...and by gc, which spares a probe whose prober holds its lock.
    let stale = make_probe("4000002");
    let busy = make_probe(&std::process::id().to_string());
    let lock = nix::fcntl::Flock::lock(
        std::fs::File::open(&busy).expect("open probe"),
        nix::fcntl::FlockArg::LockExclusive,
    )
    .expect("lock probe");
    let out = env.ok(&["gc"]);
    assert!(!stale.exists(), "gc leaves {}: {out}", stale.display());
    assert!(berth_mount::is_mount_point(&busy.join("merged")));
    drop(lock);
    berth_mount::unmount(&busy.join("merged")).expect("unmount");
    std::fs::remove_dir_all(&busy).expect("remove");
    env.ok(&["discard", env.path("co").to_str().expect("utf8")]);
}
