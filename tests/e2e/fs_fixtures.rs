//! Fixture images for the filesystem tests, made by umoci (a third-party producer) as
//! root, so owners, devices, xattrs, hardlinks and whiteouts are real.

use std::path::Path;

use crate::support::{need, need_root, sh};

/// A two-layer image with every kind of entry, and a second layer that deletes a file,
/// replaces a directory (umoci writes an opaque whiteout or per-file whiteouts) and
/// modifies files.
pub fn rich_layout(layout: &Path, tag: &str) {
    need("umoci");
    need("busybox");
    need_root();
    let l = layout.display();
    let b = layout.with_extension(format!("rich-{tag}"));
    let r = b.join("rootfs");
    let r = r.display();
    if !layout.join("index.json").exists() {
        sh(&format!("umoci init --layout {l}"));
    }
    sh(&format!(
        "umoci new --image {l}:{tag} && umoci unpack --image {l}:{tag} {} >/dev/null",
        b.display()
    ));
    sh(&format!(
        "set -e; cd {r}
         mkdir -p bin etc data/sub data/gone dev srv/keep
         cp /bin/busybox bin/busybox; for a in sh ls cat echo; do ln -s busybox bin/$a; done
         printf 'root:x:0:0:root:/root:/bin/sh\\napp:x:1000:1000::/home/app:/bin/sh\\n' > etc/passwd
         printf 'root:x:0:\\napp:x:1000:\\n' > etc/group
         echo alpha > data/a; ln data/a data/a-hardlink; ln -s a data/link; ln -s /etc/passwd data/abs-link
         echo beta > data/b; echo gamma > data/sub/c; echo delta > data/gone/d
         echo owned > data/owned; chown 1000:1000 data/owned
         echo suid > data/suid; chmod 4755 data/suid; chmod 1777 srv
         mknod dev/null-dev c 1 3; mknod dev/loop-dev b 7 0; mkfifo dev/fifo
         python3 -c 'import os; os.setxattr(\"data/a\", \"user.berth\", b\"xattr-value\")'
         echo keep > srv/keep/file
         head -c 100000 /dev/urandom > data/blob"
    ));
    sh(&format!("umoci repack --image {l}:{tag} {}", b.display()));
    sh(&format!(
        "set -e; cd {r}
         rm data/b; rm -rf data/gone; mkdir data/gone; echo new > data/gone/e
         echo modified > data/sub/c; chmod 600 data/sub/c; echo added > data/added
         rm -rf srv/keep; echo replaced > srv/keep"
    ));
    sh(&format!("umoci repack --image {l}:{tag} {}", b.display()));
    sh(&format!(
        "umoci config --image {l}:{tag} --config.cmd sh --config.env PATH=/bin"
    ));
    sh(&format!("rm -rf {}", b.display()));
}

/// `umoci unpack` of `layout:tag` into `dest`; returns the rootfs path.
pub fn umoci_rootfs(layout: &Path, tag: &str, dest: &Path) -> std::path::PathBuf {
    sh(&format!(
        "umoci unpack --image {}:{tag} {} >/dev/null",
        layout.display(),
        dest.display()
    ));
    dest.join("rootfs")
}

/// An OCI layout with `n` uncompressed layers, layer i adding `/layers/file-i`.
pub fn many_layers(layout: &Path, name: &str, n: usize) {
    many_layers_for(layout, name, n, crate::support::host_arch());
}

/// [`many_layers`] for the architecture `arch`.
pub fn many_layers_for(layout: &Path, name: &str, n: usize, arch: &str) {
    use sha2::{Digest, Sha256};
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let mut layers = Vec::new();
    let mut diff_ids = Vec::new();
    for i in 0..n {
        let mut tar = tar::Builder::new(Vec::new());
        let body = format!("layer {i}\n");
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_entry_type(tar::EntryType::Regular);
        tar.append_data(&mut h, format!("layers/file-{i}"), body.as_bytes())
            .expect("tar");
        let bytes = tar.into_inner().expect("tar");
        let (d, size) = put(&bytes);
        diff_ids.push(d.clone());
        layers.push(serde_json::json!({"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": d, "size": size}));
    }
    let config = serde_json::json!({"architecture": arch, "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": diff_ids}});
    let (cd, cn) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cn}, "layers": layers});
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
