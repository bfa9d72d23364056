//! Import and export against third-party producers and consumers: umoci, skopeo, containerd.

use crate::support::{busybox_layout, need, sh, Containerd, Env};

/// umoci writes a layout; berth imports the directory and a tar of it; skopeo and umoci
/// read berth's store root and its export, and umoci unpacks the export to the same tree.
#[test]
fn umoci_layout_round_trips_through_berth() {
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[("etc/motd", "hello from umoci\n")]);
    let out = env.ok(&[
        "import",
        "--name",
        "localhost/bb:v1",
        layout.to_str().expect("utf8"),
    ]);
    assert!(out.starts_with("localhost/bb:v1 sha256:"), "{out}");

    // The store root itself is an OCI layout skopeo and umoci can read.
    let root = env.root();
    let inspect = sh(&format!(
        "skopeo inspect oci:{}:localhost/bb:v1",
        root.display()
    ));
    assert!(inspect.contains("\"Digest\""), "{inspect}");
    sh(&format!(
        "umoci unpack --rootless --image {}:localhost/bb:v1 {}",
        root.display(),
        env.path("from-root").display()
    ));

    // Export, then umoci unpacks it to the same tree as the original.
    let tar = env.path("export.tar");
    env.ok(&["export", "localhost/bb:v1", tar.to_str().expect("utf8")]);
    sh(&format!(
        "skopeo inspect oci-archive:{}:localhost/bb:v1 >/dev/null",
        tar.display()
    ));
    let extracted = env.path("extracted");
    sh(&format!(
        "mkdir {0} && tar -C {0} -xf {1}",
        extracted.display(),
        tar.display()
    ));
    sh(&format!(
        "umoci unpack --rootless --image {}:localhost/bb:v1 {}",
        extracted.display(),
        env.path("a").display()
    ));
    sh(&format!(
        "umoci unpack --rootless --image {}:bb {}",
        layout.display(),
        env.path("b").display()
    ));
    sh(&format!(
        "diff -r --no-dereference {}/rootfs {}/rootfs",
        env.path("a").display(),
        env.path("b").display()
    ));
    assert_eq!(
        sh(&format!("cat {}/rootfs/etc/motd", env.path("a").display())),
        "hello from umoci\n"
    );
    env.assert_sound();
}

/// skopeo converts one image to oci-archive and docker-archive; both import, and the
/// docker-save one (names from RepoTags) resolves to the same config.
#[test]
fn skopeo_archives_import() {
    need("skopeo");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    let l = layout.display();
    let oci_tar = env.path("bb-oci.tar");
    let docker_tar = env.path("bb-docker.tar");
    sh(&format!(
        "skopeo copy -q oci:{l}:bb oci-archive:{}:example.com/team/bb:1.0",
        oci_tar.display()
    ));
    sh(&format!(
        "skopeo copy -q oci:{l}:bb docker-archive:{}:example.com/team/bb:docker",
        docker_tar.display()
    ));
    env.ok(&["import", oci_tar.to_str().expect("utf8")]);
    env.ok(&["import", docker_tar.to_str().expect("utf8")]);
    let names = env.image_names();
    assert_eq!(
        names,
        vec![
            "example.com/team/bb:1.0".to_string(),
            "example.com/team/bb:docker".to_string()
        ]
    );
    let config = |name: &str| {
        let v: serde_json::Value =
            serde_json::from_str(&env.ok(&["inspect", "--json", name])).expect("json");
        v["config"]["rootfs"]["diff_ids"].clone()
    };
    assert_eq!(
        config("example.com/team/bb:1.0"),
        config("example.com/team/bb:docker")
    );
    env.assert_sound();
}

/// Several images go into one archive and come back out of it, in both formats;
/// skopeo reads the docker-archive and umoci the OCI one.
#[test]
fn multi_image_archives_in_both_formats() {
    need("skopeo");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "one", &[("one", "1")]);
    busybox_layout(&layout, "two", &[("two", "2")]);
    let l = layout.to_str().expect("utf8");
    // Two images in the archive: --name would be ambiguous, and import says so.
    let err = env.fails(&["import", "--name", "localhost/x", l]);
    assert!(err.contains("exactly one image"), "{err}");
    assert!(env.image_names().is_empty());
    env.ok(&["import", l]);
    let both = vec![
        "docker.io/library/one:latest".to_string(),
        "docker.io/library/two:latest".to_string(),
    ];
    assert_eq!(env.image_names(), both);
    for format in ["oci", "docker"] {
        let tar = env.path(&format!("both-{format}.tar"));
        env.ok(&[
            "export",
            "--format",
            format,
            "one",
            "two",
            tar.to_str().expect("utf8"),
        ]);
        let fresh = Env::new();
        fresh.ok(&["import", tar.to_str().expect("utf8")]);
        assert_eq!(fresh.image_names(), both, "{format}");
        fresh.assert_sound();
    }
    let docker = env.path("both-docker.tar");
    sh(&format!(
        "skopeo inspect docker-archive:{}:docker.io/library/two:latest >/dev/null",
        docker.display()
    ));
    let x = env.path("x");
    sh(&format!(
        "mkdir {0} && tar -C {0} -xf {1}",
        x.display(),
        env.path("both-oci.tar").display()
    ));
    sh(&format!(
        "umoci unpack --rootless --image {}:docker.io/library/two:latest {}",
        x.display(),
        env.path("u").display()
    ));
    assert_eq!(
        sh(&format!("cat {}/rootfs/two", env.path("u").display())),
        "2"
    );
}

/// What berth exports is accepted by containerd's `ctr images import` under its name.
#[test]
fn containerd_imports_berth_export() {
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    env.ok(&[
        "import",
        "--name",
        "localhost/bb:ctr",
        layout.to_str().expect("utf8"),
    ]);
    let tar = env.path("bb.tar");
    env.ok(&["export", "localhost/bb:ctr", tar.to_str().expect("utf8")]);
    let ctrd = Containerd::start();
    let out = ctrd.ctr(&["images", "import", tar.to_str().expect("utf8")]);
    assert!(
        out.status.success(),
        "ctr import: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let list = ctrd.ctr(&["images", "ls", "-q"]);
    let names = String::from_utf8_lossy(&list.stdout);
    assert!(
        names.lines().any(|l| l == "localhost/bb:ctr"),
        "ctr images: {names}"
    );
    let check = ctrd.ctr(&["images", "check"]);
    assert!(
        String::from_utf8_lossy(&check.stdout).contains("complete"),
        "{}",
        String::from_utf8_lossy(&check.stdout)
    );
}

/// export --format docker writes a docker-archive that skopeo reads, with uncompressed
/// layers whose digests are the config's diff_ids; tag and rmi manage names.
#[test]
fn docker_archive_export_tag_and_rmi() {
    need("skopeo");
    let env = Env::new();
    let layout = env.path("layout");
    busybox_layout(&layout, "bb", &[]);
    env.ok(&["import", "--name", "bb", layout.to_str().expect("utf8")]);
    env.ok(&["tag", "bb", "localhost:5000/tools/bb:v2"]);
    assert_eq!(
        env.image_names(),
        vec!["docker.io/library/bb:latest", "localhost:5000/tools/bb:v2"]
    );
    let tar = env.path("docker.tar");
    env.ok(&[
        "export",
        "--format",
        "docker",
        "bb",
        "localhost:5000/tools/bb:v2",
        tar.to_str().expect("utf8"),
    ]);
    let inspect = sh(&format!(
        "skopeo inspect docker-archive:{}:localhost:5000/tools/bb:v2",
        tar.display()
    ));
    assert!(inspect.contains("\"Layers\""), "{inspect}");
    let listing = sh(&format!("tar -tf {}", tar.display()));
    assert!(listing.lines().any(|l| l == "manifest.json"), "{listing}");

    // A fresh store imports the docker archive with both names.
    let env2 = Env::new();
    env2.ok(&["import", tar.to_str().expect("utf8")]);
    assert_eq!(
        env2.image_names(),
        vec!["docker.io/library/bb:latest", "localhost:5000/tools/bb:v2"]
    );

    env.ok(&["rmi", "localhost:5000/tools/bb:v2"]);
    assert_eq!(env.image_names(), vec!["docker.io/library/bb:latest"]);
    let listed: serde_json::Value =
        serde_json::from_str(&env.ok(&["images", "--json"])).expect("json");
    assert_eq!(listed[0]["name"], "docker.io/library/bb:latest");
    assert!(listed[0]["size"].as_u64().expect("size") > 500_000);
    env.assert_sound();
}
