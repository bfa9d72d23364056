//! gc marking, lease expiry and fsck on fabricated roots: content and records are
//! written with the store's own API, snapshots with the native snapshotter, so nothing
//! here needs root, a mount or a runtime.

use std::time::Duration;

use berth_cas::containers::{self as records, ContainerRecord};
use berth_cas::digest::sha256_of;
use berth_cas::image::chain_ids;
use berth_cas::media;
use berth_cas::meta::{self, CheckoutRecord, Labels};
use berth_core::{GcOptions, Root, RootOptions};

struct Fixture {
    _dir: tempfile::TempDir,
    root: Root,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut opts = RootOptions::new(dir.path().join("root"), dir.path().join("run"));
    opts.snapshotter = Some("native".into());
    opts.helper = Some("/bin/false".into());
    let root = Root::open(&opts).expect("open root");
    Fixture { _dir: dir, root }
}

/// An image stored (not named): returns the manifest digest, its blobs and chainIDs.
struct Image {
    manifest: String,
    manifest_size: u64,
    config: String,
    layers: Vec<String>,
    chain: Vec<String>,
}

fn store_image(root: &Root, seed: &str, layers: usize) -> Image {
    let store = root.store();
    let mut descs = Vec::new();
    let mut diff_ids = Vec::new();
    let mut digests = Vec::new();
    for i in 0..layers {
        let bytes = format!("layer {seed} {i}").into_bytes();
        let (d, n) = store
            .put_document(&bytes, media::OCI_LAYER, None)
            .expect("layer");
        diff_ids.push(sha256_of(&bytes).to_string());
        descs.push(
            serde_json::json!({"mediaType": media::OCI_LAYER, "digest": d.to_string(), "size": n}),
        );
        digests.push(d.to_string());
    }
    let config = serde_json::json!({"architecture": "amd64", "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cn) = store
        .put_document(config.to_string().as_bytes(), media::OCI_CONFIG, None)
        .expect("config");
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": media::OCI_MANIFEST,
        "config": {"mediaType": media::OCI_CONFIG, "digest": cd.to_string(), "size": cn},
        "layers": descs});
    let (md, mn) = store
        .put_document(manifest.to_string().as_bytes(), media::OCI_MANIFEST, None)
        .expect("manifest");
    Image {
        manifest: md.to_string(),
        manifest_size: mn,
        config: cd.to_string(),
        layers: digests,
        chain: chain_ids(&diff_ids),
    }
}

fn name(root: &Root, ns: &str, name: &str, img: &Image) {
    root.store()
        .meta()
        .write(|tx| {
            meta::put_image(
                tx,
                ns,
                name,
                &img.manifest,
                media::OCI_MANIFEST,
                img.manifest_size,
            )
        })
        .expect("name");
    root.store().sync_index_json().expect("index.json");
}

/// Committed native snapshots for the image's layer chain, as an unpack leaves them.
fn unpack(root: &Root, img: &Image) {
    let snap = root.snapshotter("native").expect("native");
    let mut parent: Option<String> = None;
    for c in &img.chain {
        if snap.stat(c).is_ok() {
            parent = Some(c.clone());
            continue;
        }
        let key = format!("extract-{c}");
        snap.prepare(&key, parent.as_deref()).expect("prepare");
        snap.commit(c, &key).expect("commit");
        parent = Some(c.clone());
    }
}

fn has_blob(root: &Root, digest: &str) -> bool {
    root.store()
        .has_blob(&berth_cas::digest::parse_sha256(digest).expect("digest"))
}

fn keys(root: &Root) -> Vec<String> {
    let mut k: Vec<String> = root
        .snapshotter("native")
        .expect("native")
        .list()
        .expect("list")
        .into_iter()
        .map(|i| i.key)
        .collect();
    k.sort();
    k
}

fn gc(root: &Root) -> berth_core::GcReport {
    root.gc(&GcOptions {
        ingest_grace: Duration::from_secs(3600),
    })
    .expect("gc")
}

#[test]
fn names_of_every_namespace_keep_their_images_and_nothing_else_stays() {
    let f = fixture();
    let kept = store_image(&f.root, "kept", 2);
    let other_ns = store_image(&f.root, "other", 1);
    let dropped = store_image(&f.root, "dropped", 2);
    name(&f.root, "default", "docker.io/library/kept:1", &kept);
    name(&f.root, "k8s.io", "docker.io/library/other:1", &other_ns);
    for img in [&kept, &other_ns, &dropped] {
        unpack(&f.root, img);
    }
    let report = gc(&f.root);
    assert_eq!(report.blobs_removed, 4, "{report:?}");
    assert_eq!(report.snapshots_removed, 2, "{report:?}");
    for d in kept.layers.iter().chain(&other_ns.layers) {
        assert!(has_blob(&f.root, d));
    }
    assert!(!has_blob(&f.root, &dropped.manifest));
    let mut want: Vec<String> = kept.chain.iter().chain(&other_ns.chain).cloned().collect();
    want.sort();
    assert_eq!(keys(&f.root), want);
    let fsck = f.root.fsck(false).expect("fsck");
    assert!(fsck.is_sound(), "{:?}", fsck.problems);
}

#[test]
fn a_lease_keeps_what_it_holds_until_it_lapses() {
    let f = fixture();
    let img = store_image(&f.root, "leased", 1);
    unpack(&f.root, &img);
    let lease = f.root.store().lease(Labels::new()).expect("lease");
    f.root
        .store()
        .claim(
            &berth_cas::digest::parse_sha256(&img.manifest).expect("d"),
            Some(lease.id()),
        )
        .expect("claim");
    let report = gc(&f.root);
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert_eq!(
        keys(&f.root),
        img.chain,
        "the manifest's layers stay with it"
    );
    let fsck = f.root.fsck(false).expect("fsck");
    assert_eq!(fsck.lapsed_leases, 0);
    drop(lease); // its holder is gone, as after a SIGKILL
    let fsck = f.root.fsck(false).expect("fsck");
    assert_eq!(fsck.lapsed_leases, 1);
    let report = gc(&f.root);
    assert_eq!(report.leases_expired, 1);
    assert_eq!(report.blobs_removed, 3);
    assert!(keys(&f.root).is_empty());
    // A lease nobody holds ends at its expiry.
    let img = store_image(&f.root, "ttl", 1);
    let id = f
        .root
        .store()
        .lease_for(Duration::ZERO, Labels::new())
        .expect("lease");
    f.root
        .store()
        .claim(
            &berth_cas::digest::parse_sha256(&img.manifest).expect("d"),
            Some(&id),
        )
        .expect("claim");
    assert_eq!(gc(&f.root).leases_expired, 1);
    assert!(!has_blob(&f.root, &img.manifest));
}

#[test]
fn checkouts_and_containers_keep_their_images_and_snapshots() {
    let f = fixture();
    let base = store_image(&f.root, "base", 2);
    unpack(&f.root, &base);
    let snap = f.root.snapshotter("native").expect("native");
    let top = base.chain.last().expect("top").clone();
    snap.prepare("checkout-1", Some(&top))
        .expect("checkout snapshot");
    snap.prepare("container-1", Some(&top))
        .expect("container snapshot");
    snap.prepare("stray", Some(&top)).expect("stray snapshot");
    f.root
        .store()
        .meta()
        .write(|tx| {
            meta::put_checkout(
                tx,
                &CheckoutRecord {
                    namespace: "default".into(),
                    dir: "/nowhere/w".into(),
                    image: "gone".into(),
                    manifest: base.manifest.clone(),
                    snapshotter: "native".into(),
                    snapshot: "checkout-1".into(),
                    readonly: false,
                    created: 1,
                },
            )?;
            records::insert_container(tx, &container("c1", "ci", &base.manifest, "container-1"))
        })
        .expect("records");
    let report = gc(&f.root);
    assert_eq!(report.blobs_removed, 0, "{report:?}");
    assert_eq!(
        report.snapshots_removed, 1,
        "only the stray one: {report:?}"
    );
    assert!(keys(&f.root).contains(&"checkout-1".to_string()));
    assert!(keys(&f.root).contains(&"container-1".to_string()));
    assert!(has_blob(&f.root, &base.config));
}

fn container(id: &str, ns: &str, manifest: &str, snapshot: &str) -> ContainerRecord {
    ContainerRecord {
        id: id.into(),
        namespace: ns.into(),
        name: None,
        image: "x".into(),
        manifest: manifest.into(),
        snapshotter: Some("native".into()),
        snapshot: Some(snapshot.into()),
        checkout: None,
        runtime: "runc".into(),
        command: vec![],
        auto_remove: false,
        stop_signal: 15,
        created: 1,
        finished: Some(2),
        exit_code: Some(0),
        network: "none".into(),
    }
}

#[test]
fn an_unreadable_config_keeps_every_snapshot() {
    let f = fixture();
    let img = store_image(&f.root, "broken", 2);
    let stray = store_image(&f.root, "stray", 1);
    unpack(&f.root, &img);
    unpack(&f.root, &stray);
    name(&f.root, "default", "docker.io/library/broken:1", &img);
    let path = f
        .root
        .store()
        .blob_path(&berth_cas::digest::parse_sha256(&img.config).expect("d"))
        .expect("path");
    std::fs::remove_file(path).expect("rm config");
    let report = gc(&f.root);
    assert!(report.layers_kept, "{report:?}");
    assert_eq!(report.snapshots_removed, 0);
    assert_eq!(report.missing.len(), 1);
    assert_eq!(report.missing[0].digest, img.config);
    assert!(
        img.layers.iter().all(|l| has_blob(&f.root, l)),
        "the rest of the image stays"
    );
    assert_eq!(keys(&f.root).len(), 3);
}

#[test]
fn fsck_finds_and_repairs_what_is_safe_to_repair() {
    let f = fixture();
    let img = store_image(&f.root, "x", 1);
    name(&f.root, "default", "docker.io/library/x:1", &img);
    unpack(&f.root, &img);
    let fsck = f.root.fsck(false).expect("fsck");
    assert!(fsck.is_sound(), "{:?}", fsck.problems);
    // A checkout whose snapshot is gone, a container likewise, an orphaned directory,
    // a corrupt blob and a lapsed lease.
    f.root
        .store()
        .meta()
        .write(|tx| {
            meta::put_checkout(
                tx,
                &CheckoutRecord {
                    namespace: "default".into(),
                    dir: "/nowhere/gone".into(),
                    image: "x".into(),
                    manifest: img.manifest.clone(),
                    snapshotter: "native".into(),
                    snapshot: "checkout-missing".into(),
                    readonly: false,
                    created: 1,
                },
            )?;
            records::insert_container(
                tx,
                &container("c2", "default", &img.manifest, "container-missing"),
            )
        })
        .expect("records");
    let orphan = f.root.layout().snapshotter("native").join("snapshots/999");
    std::fs::create_dir_all(&orphan).expect("orphan");
    let stray = store_image(&f.root, "stray", 1);
    let stray_path = f
        .root
        .store()
        .blob_path(&berth_cas::digest::parse_sha256(&stray.layers[0]).expect("d"))
        .expect("path");
    std::fs::write(&stray_path, b"not what it was").expect("corrupt");
    drop(f.root.store().lease(Labels::new()).expect("lease"));

    let found = f.root.fsck(false).expect("fsck");
    assert!(!found.is_sound());
    let areas: Vec<&str> = found.problems.iter().map(|p| p.area.as_str()).collect();
    for area in ["checkouts", "containers", "snapshots/native"] {
        assert!(
            areas.contains(&area),
            "{area} not reported: {:?}",
            found.problems
        );
    }
    assert_eq!(found.corrupt_blobs, vec![stray.layers[0].clone()]);
    assert_eq!(found.lapsed_leases, 1);
    assert!(found.unreferenced_blobs >= 2, "the stray image: {found:?}");
    assert!(orphan.exists(), "a plain fsck changes nothing");

    let repaired = f.root.fsck(true).expect("repair");
    assert!(repaired.repaired.len() >= 5, "{:?}", repaired.repaired);
    assert!(!orphan.exists());
    let after = f.root.fsck(false).expect("fsck");
    assert!(after.is_sound(), "{:?}", after.problems);
    assert_eq!(after.lapsed_leases, 0);
}
