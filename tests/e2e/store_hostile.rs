//! Bad archives: each is refused with one clear line, and the store is as it was.

use std::path::Path;

use crate::support::{raw_layout, sh, Env};

/// A store holding one good image, and a broken copy of a second layout to import.
struct Case {
    env: Env,
    layout: std::path::PathBuf,
    blobs_before: usize,
}

impl Case {
    fn new() -> Self {
        let env = Env::new();
        let good = env.path("good");
        raw_layout(&good, "localhost/good:v1", 4096, 1);
        env.ok(&["import", good.to_str().expect("utf8")]);
        let layout = env.path("bad");
        raw_layout(&layout, "localhost/bad:v1", 8192, 2);
        let blobs_before = env.blob_count();
        Case {
            env,
            layout,
            blobs_before,
        }
    }

    fn blob(&self, media_type_part: &str) -> std::path::PathBuf {
        // Find the blob whose descriptor mentions `media_type_part` by walking the JSON.
        let index: serde_json::Value = read_json(&self.layout.join("index.json"));
        let manifest_digest = index["manifests"][0]["digest"]
            .as_str()
            .expect("digest")
            .to_string();
        let manifest_path = blob_path(&self.layout, &manifest_digest);
        if media_type_part == "manifest" {
            return manifest_path;
        }
        let manifest = read_json(&manifest_path);
        let d = match media_type_part {
            "config" => manifest["config"]["digest"].as_str(),
            _ => manifest["layers"][0]["digest"].as_str(),
        };
        blob_path(&self.layout, d.expect("digest"))
    }

    /// Imports the bad layout (as a tar), expects failure mentioning `expect`, and checks
    /// that the store is unchanged and sound.
    fn refused(&self, expect: &str) {
        let tar = self.env.path("bad.tar");
        sh(&format!(
            "tar -C {} -cf {} .",
            self.layout.display(),
            tar.display()
        ));
        self.refused_path(&tar, expect);
        self.refused_path(&self.layout, expect);
    }

    fn refused_path(&self, path: &Path, expect: &str) {
        let err = self.env.fails(&["import", path.to_str().expect("utf8")]);
        assert!(
            err.to_lowercase().contains(&expect.to_lowercase()),
            "expected {expect:?} in: {err}"
        );
        assert_eq!(
            self.env.image_names(),
            vec!["localhost/good:v1".to_string()]
        );
        assert_eq!(
            self.env.blob_count(),
            self.blobs_before,
            "no blob may be added"
        );
        let ingest = std::fs::read_dir(self.env.root().join("ingest"))
            .expect("ingest")
            .count();
        assert_eq!(ingest, 0, "no ingest may be left behind");
        self.env.assert_sound();
    }
}

fn read_json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).expect("read")).expect("json")
}

fn blob_path(layout: &Path, digest: &str) -> std::path::PathBuf {
    layout
        .join("blobs/sha256")
        .join(digest.trim_start_matches("sha256:"))
}

fn rewrite_json(p: &Path, f: impl FnOnce(&mut serde_json::Value)) {
    let mut v = read_json(p);
    f(&mut v);
    std::fs::write(p, v.to_string()).expect("write");
}

#[test]
fn truncated_tar_is_refused() {
    let c = Case::new();
    let tar = c.env.path("bad.tar");
    sh(&format!(
        "tar -C {} -cf {} . && truncate -s 6000 {}",
        c.layout.display(),
        tar.display(),
        tar.display()
    ));
    c.refused_path(&tar, "bad.tar");
}

#[test]
fn blob_not_matching_its_digest_is_refused() {
    let c = Case::new();
    let layer = c.blob("layer");
    let mut bytes = std::fs::read(&layer).expect("read");
    bytes[600] ^= 0xff;
    std::fs::write(&layer, bytes).expect("write");
    c.refused("digest mismatch");
}

#[test]
fn manifest_naming_a_missing_blob_is_refused() {
    let c = Case::new();
    std::fs::remove_file(c.blob("layer")).expect("rm layer");
    c.refused("missing");
}

#[test]
fn unknown_media_type_is_refused() {
    let c = Case::new();
    let index = c.layout.join("index.json");
    rewrite_json(&index, |v| {
        v["manifests"][0]["mediaType"] = "application/x-not-an-image".into()
    });
    c.refused("unsupported media type");
}

#[test]
fn invalid_json_is_refused() {
    let c = Case::new();
    std::fs::write(
        c.layout.join("index.json"),
        b"{\"schemaVersion\": 2, \"manifests\": [",
    )
    .expect("write");
    c.refused("invalid index.json");
    // A manifest blob that is not JSON (its digest made to match, so only parsing fails).
    let c = Case::new();
    let manifest = c.blob("manifest");
    std::fs::remove_file(&manifest).expect("rm");
    let garbage = b"this is not json".to_vec();
    let hex = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&garbage))
    };
    std::fs::write(c.layout.join("blobs/sha256").join(&hex), &garbage).expect("write");
    rewrite_json(&c.layout.join("index.json"), |v| {
        v["manifests"][0]["digest"] = format!("sha256:{hex}").into();
        v["manifests"][0]["size"] = garbage.len().into();
    });
    c.refused("invalid");
}

#[test]
fn index_pointing_nowhere_is_refused() {
    let c = Case::new();
    rewrite_json(&c.layout.join("index.json"), |v| {
        v["manifests"][0]["digest"] = format!("sha256:{}", "ab".repeat(32)).into();
    });
    c.refused("missing");
}

#[test]
fn unsafe_paths_in_archive_are_refused() {
    let c = Case::new();
    let tar = c.env.path("evil.tar");
    sh(&format!(
        "cd {} && tar -cf {} --transform 's,^\\./oci-layout,../../escape,' .",
        c.layout.display(),
        tar.display()
    ));
    c.refused_path(&tar, "unsafe path");
    assert!(!c.env.dir.path().join("escape").exists());
}

#[test]
fn unknown_names_give_clear_errors() {
    let env = Env::new();
    for args in [
        vec!["inspect", "nope"],
        vec!["rmi", "nope"],
        vec!["export", "nope", "/tmp/never-written.tar"],
        vec!["tag", "nope", "other"],
    ] {
        let err = env.fails(&args);
        assert!(err.contains("no such image: nope"), "{args:?}: {err}");
    }
    assert!(!Path::new("/tmp/never-written.tar").exists());
    let err = env.fails(&["inspect", "library/Alpine"]);
    assert!(err.contains("lowercase"), "{err}");
    let err = env.fails(&["import", "/nonexistent/archive.tar"]);
    assert!(err.contains("/nonexistent/archive.tar"), "{err}");
}
