//! Crash safety, concurrent use of one store, and gc.

use std::time::Instant;

use crate::support::{busybox_layout, raw_layout, sh, Env};

/// `berth import` of a large image killed with SIGKILL at several points leaves a sound
/// store, and the same import then succeeds.
#[test]
fn import_survives_sigkill_at_any_point() {
    let env = Env::new();
    let layout = env.path("big");
    raw_layout(&layout, "localhost/big:v1", 96 << 20, 7);
    let tar = env.path("big.tar");
    sh(&format!(
        "tar -C {} -cf {} .",
        layout.display(),
        tar.display()
    ));
    let tar = tar.to_str().expect("utf8");

    // How long a full import takes here, to spread the kill points over it.
    let probe = Env::new();
    let start = Instant::now();
    probe.ok(&["import", tar]);
    let full = start.elapsed();

    for fraction in [0.05, 0.2, 0.4, 0.6, 0.8, 0.95] {
        let mut child = env
            .cmd(&["import", tar])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn");
        std::thread::sleep(full.mul_f64(fraction));
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        env.assert_sound();
    }
    env.ok(&["import", tar]);
    assert_eq!(env.image_names(), vec!["localhost/big:v1".to_string()]);
    env.assert_sound();
    // Whatever the killed imports left in ingest/ is garbage gc can take.
    env.ok(&["gc", "--ingest-grace", "0"]);
    assert_eq!(
        std::fs::read_dir(env.root().join("ingest"))
            .expect("ingest")
            .count(),
        0
    );
    env.assert_sound();
}

/// 8 imports of different images and 8 of one image, all at once, on one store.
#[test]
fn concurrent_imports_share_one_store() {
    let env = Env::new();
    let mut tars = Vec::new();
    for i in 0..8 {
        let layout = env.path(&format!("img{i}"));
        raw_layout(&layout, &format!("localhost/img{i}:v1"), 2 << 20, 100 + i);
        let tar = env.path(&format!("img{i}.tar"));
        sh(&format!(
            "tar -C {} -cf {} .",
            layout.display(),
            tar.display()
        ));
        tars.push(tar);
    }
    let same = env.path("same");
    busybox_layout(&same, "same", &[]);
    let mut children = Vec::new();
    for tar in &tars {
        children.push(
            env.cmd(&["import", tar.to_str().expect("utf8")])
                .stdout(std::process::Stdio::null())
                .spawn()
                .expect("spawn"),
        );
        children.push(
            env.cmd(&[
                "import",
                "--name",
                "localhost/same:v1",
                same.to_str().expect("utf8"),
            ])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("spawn"),
        );
    }
    for mut c in children {
        assert!(
            c.wait().expect("wait").success(),
            "a concurrent import failed"
        );
    }
    let names = env.image_names();
    assert_eq!(names.len(), 9, "{names:?}");
    env.assert_sound();
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(env.root().join("index.json")).expect("index"))
            .expect("json");
    assert_eq!(index["manifests"].as_array().expect("array").len(), 9);
}

/// gc keeps what names reach, sweeps the rest, and removes stale ingests; du reports.
#[test]
fn gc_sweeps_unreferenced_content() {
    let env = Env::new();
    for (i, name) in ["localhost/keep:v1", "localhost/drop:v1"]
        .iter()
        .enumerate()
    {
        let layout = env.path(&format!("l{i}"));
        raw_layout(&layout, name, 1 << 20, 50 + i as u64);
        env.ok(&["import", layout.to_str().expect("utf8")]);
    }
    assert_eq!(env.blob_count(), 6);
    // An abandoned ingest from a "crashed" process, an hour old.
    let stale = env.root().join("ingest/abandoned");
    std::fs::write(&stale, vec![0u8; 4096]).expect("write");
    sh(&format!("touch -d '2 hours ago' {}", stale.display()));
    env.ok(&["rmi", "localhost/drop:v1"]);
    let out = env.ok(&["gc"]);
    assert!(out.contains("removed 3 blobs"), "{out}");
    assert!(out.contains("1 abandoned ingests"), "{out}");
    assert_eq!(env.blob_count(), 3);
    assert!(!stale.exists());
    env.assert_sound();
    let du: serde_json::Value = serde_json::from_str(&env.ok(&["du", "--json"])).expect("json");
    let layers = du["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .find(|r| r["kind"] == "layers")
        .expect("layers row");
    assert_eq!(layers["count"], 1);
    // The kept image still exports.
    env.ok(&[
        "export",
        "localhost/keep:v1",
        env.path("k.tar").to_str().expect("utf8"),
    ]);
}

/// fsck finds a blob corrupted on disk and fails; a repair quarantines it, and the image
/// that needs it is reported.
#[test]
fn fsck_quarantines_corruption() {
    let env = Env::new();
    let layout = env.path("l");
    raw_layout(&layout, "localhost/x:v1", 1 << 16, 9);
    env.ok(&["import", layout.to_str().expect("utf8")]);
    let blobs = env.root().join("blobs/sha256");
    let biggest = std::fs::read_dir(&blobs)
        .expect("ls")
        .flatten()
        .max_by_key(|e| e.metadata().map(|m| m.len()).unwrap_or(0))
        .expect("a blob");
    let mut bytes = std::fs::read(biggest.path()).expect("read");
    bytes[1000] ^= 1;
    std::fs::write(biggest.path(), bytes).expect("write");
    let out = env.run(&["fsck"]);
    assert!(!out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("corrupt blob"), "{text}");
    let quarantined = || {
        std::fs::read_dir(env.root().join("quarantine"))
            .expect("q")
            .count()
    };
    assert_eq!(quarantined(), 0, "a plain fsck changes nothing");
    let out = env.run(&["fsck", "--repair"]);
    assert!(!out.status.success(), "the image still lacks the blob");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("moved to quarantine"), "{text}");
    assert!(text.contains("localhost/x:v1"), "{text}");
    assert_eq!(
        std::fs::read_dir(env.root().join("quarantine"))
            .expect("q")
            .count(),
        1
    );
}
