//! Hostile layers through the whole import path: confined or refused, never outside.

use std::path::Path;

use crate::support::{need_root, sh, Env};

/// Writes an OCI layout whose single layer is `layer` (an uncompressed or gzip tar).
pub(crate) fn layout_with_layer(layout: &Path, name: &str, layer: &[u8], diff_id_of: &[u8]) {
    use sha2::{Digest, Sha256};
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("write");
        (format!("sha256:{hex}"), bytes.len())
    };
    let (ld, ln) = put(layer);
    let diff_id = format!("sha256:{}", hex::encode(Sha256::digest(diff_id_of)));
    let config = serde_json::json!({"architecture": crate::support::host_arch(), "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [diff_id]}});
    let (cd, cn) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ln}]});
    let (md, mn) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": md, "size": mn, "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
}

/// A tar entry with a raw name (the tar crate's safe setters refuse `..` and `/`).
pub(crate) fn raw_entry(
    tar: &mut tar::Builder<Vec<u8>>,
    kind: tar::EntryType,
    name: &str,
    link: Option<&str>,
    body: &[u8],
) {
    let mut h = tar::Header::new_old();
    h.as_old_mut().name[..name.len()].copy_from_slice(name.as_bytes());
    if let Some(l) = link {
        h.as_old_mut().linkname[..l.len()].copy_from_slice(l.as_bytes());
    }
    h.set_entry_type(kind);
    h.set_mode(0o644);
    h.set_size(body.len() as u64);
    h.set_cksum();
    tar.append(&h, body).expect("append");
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).expect("gzip");
    e.finish().expect("gzip")
}

/// Host files the layers aim at; checked untouched afterwards.
pub(crate) struct Sentinel {
    dir: tempfile::TempDir,
}

impl Sentinel {
    pub(crate) fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("berth-sentinel-")
            .tempdir()
            .expect("tempdir");
        std::fs::write(dir.path().join("victim"), "original").expect("write");
        Sentinel { dir }
    }

    pub(crate) fn path(&self) -> String {
        self.dir.path().display().to_string()
    }

    pub(crate) fn assert_untouched(&self) {
        let names: Vec<_> = std::fs::read_dir(self.dir.path())
            .expect("ls")
            .flatten()
            .map(|e| e.file_name())
            .collect();
        assert_eq!(
            names,
            vec![std::ffi::OsString::from("victim")],
            "something appeared beside the sentinel"
        );
        assert_eq!(
            std::fs::read_to_string(self.dir.path().join("victim")).expect("read"),
            "original"
        );
    }
}

/// `..`, absolute paths and writes through a symlink pointing at the host land inside
/// the snapshot; the host sentinel is untouched.
#[test]
fn escaping_paths_are_confined() {
    need_root();
    let env = Env::new();
    let s = Sentinel::new();
    let mut tar = tar::Builder::new(Vec::new());
    raw_entry(
        &mut tar,
        tar::EntryType::Regular,
        "../../../../../../escape-dotdot",
        None,
        b"x",
    );
    raw_entry(
        &mut tar,
        tar::EntryType::Regular,
        &format!("{}/victim", s.path()),
        None,
        b"pwned-abs",
    );
    raw_entry(
        &mut tar,
        tar::EntryType::Symlink,
        "evil",
        Some(&s.path()),
        b"",
    );
    raw_entry(
        &mut tar,
        tar::EntryType::Regular,
        "evil/victim",
        None,
        b"pwned-symlink",
    );
    raw_entry(
        &mut tar,
        tar::EntryType::Regular,
        "evil/new-file",
        None,
        b"pwned-new",
    );
    let plain = tar.into_inner().expect("tar");
    let layout = env.path("layout");
    layout_with_layer(&layout, "localhost/evil:v1", &gzip(&plain), &plain);
    env.ok(&["import", layout.to_str().expect("utf8")]);
    s.assert_untouched();
    assert!(!Path::new("/escape-dotdot").exists());
    let co = env.path("co");
    env.ok(&[
        "checkout",
        "--readonly",
        "localhost/evil:v1",
        co.to_str().expect("utf8"),
    ]);
    assert_eq!(
        std::fs::read_to_string(co.join("escape-dotdot")).expect("confined"),
        "x"
    );
    assert_eq!(
        std::fs::read_to_string(co.join(format!("{}/victim", s.path()).trim_start_matches('/')))
            .expect("confined"),
        "pwned-symlink"
    );
    env.ok(&["discard", co.to_str().expect("utf8")]);
    s.assert_untouched();
    env.assert_sound();
}

/// A hardlink to a host file is refused with one line; no image is named.
#[test]
fn hardlink_out_of_the_root_is_refused() {
    need_root();
    let env = Env::new();
    let s = Sentinel::new();
    let mut tar = tar::Builder::new(Vec::new());
    raw_entry(
        &mut tar,
        tar::EntryType::Link,
        "stolen",
        Some(&format!("{}/victim", s.path())),
        b"",
    );
    raw_entry(
        &mut tar,
        tar::EntryType::Link,
        "stolen2",
        Some("../../../../etc/passwd"),
        b"",
    );
    let plain = tar.into_inner().expect("tar");
    let layout = env.path("layout");
    layout_with_layer(&layout, "localhost/evil:v2", &gzip(&plain), &plain);
    let err = env.fails(&["import", layout.to_str().expect("utf8")]);
    assert!(err.contains("hardlink") || err.contains("link"), "{err}");
    assert!(
        env.image_names().is_empty(),
        "a layer that cannot unpack names no image"
    );
    s.assert_untouched();
    env.assert_sound();
}

/// A layer whose content does not match its config's diff_id is refused.
#[test]
fn diff_id_mismatch_is_refused() {
    let env = Env::new();
    let mut tar = tar::Builder::new(Vec::new());
    raw_entry(&mut tar, tar::EntryType::Regular, "file", None, b"content");
    let plain = tar.into_inner().expect("tar");
    let layout = env.path("layout");
    layout_with_layer(
        &layout,
        "localhost/liar:v1",
        &gzip(&plain),
        b"something else",
    );
    let err = env.fails(&["import", layout.to_str().expect("utf8")]);
    assert!(err.to_lowercase().contains("diff"), "{err}");
    assert!(env.image_names().is_empty());
}

/// A decompression bomb (4 GiB of zeros in a few hundred KiB of zstd, labelled as gzip:
/// compression is found by magic bytes) is stopped by --max-layer-size with a clear
/// error, in bounded time and memory.
#[test]
fn decompression_bomb_stops_at_the_layer_limit() {
    need_root();
    let env = Env::new();
    let layout = env.path("bomb");
    std::fs::create_dir_all(&layout).expect("mkdir");
    // Stream the bomb through zstd without holding it: a tar header then zeros.
    let bomb = env.path("bomb.tar.zst");
    sh(&format!(
        "python3 - <<'PY' | zstd -q -3 > {}
import sys, tarfile, io
h = tarfile.TarInfo('zeros'); h.size = 4 << 30
sys.stdout.buffer.write(h.tobuf(format=tarfile.GNU_FORMAT))
chunk = bytes(1 << 20)
for _ in range(4096): sys.stdout.buffer.write(chunk)
sys.stdout.buffer.write(bytes(1024))
PY",
        bomb.display()
    ));
    let bytes = std::fs::read(&bomb).expect("read bomb");
    assert!(bytes.len() < 4 << 20, "the bomb is small compressed");
    layout_with_layer(&layout, "localhost/bomb:v1", &bytes, b"unknown");
    let err = env.fails(&[
        "--max-layer-size",
        "100000000",
        "import",
        layout.to_str().expect("utf8"),
    ]);
    assert!(
        err.contains("100000000") || err.to_lowercase().contains("limit"),
        "{err}"
    );
    assert!(env.image_names().is_empty());
    env.assert_sound();
}
