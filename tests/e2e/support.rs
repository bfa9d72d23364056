//! Test harness: a private store per test, fixture images made by third-party tools,
//! and helpers that run commands and check their results.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tempfile::TempDir;

/// The berth binary Cargo built for this test run.
pub fn berth_bin() -> &'static str {
    env!("CARGO_BIN_EXE_berth")
}

/// Fails the test unless `tool` is on PATH. Tests never skip: CI installs every tool.
pub fn need(tool: &str) {
    let found = Command::new("sh")
        .arg("-c")
        .arg(format!("command -v {tool}"))
        .output();
    assert!(
        found.map(|o| o.status.success()).unwrap_or(false),
        "{tool} is required for this test (run scripts/setup-debian.sh)"
    );
}

/// Fails the test unless running as root.
pub fn need_root() {
    assert!(
        nix::unistd::geteuid().is_root(),
        "this test needs root (CI runs as root)"
    );
}

/// Runs a shell command; panics with its output if it fails.
pub fn sh(cmd: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(cmd)
        .output()
        .expect("spawn bash");
    assert!(
        out.status.success(),
        "command failed: {cmd}\nstdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A scratch area with its own berth store.
pub struct Env {
    pub dir: TempDir,
}

/// Whatever a test left behind (it failed, or it ends with a checkout or a view still
/// mounted): FUSE servers of this env are ended and every mount under it is detached, so
/// the directory can go and the next tests see a clean machine.
impl Drop for Env {
    fn drop(&mut self) {
        let dir = self.dir.path().to_string_lossy().into_owned();
        let _ = Command::new("pkill")
            .args(["-f", &format!("__fuse-serve {dir}/")])
            .status();
        unmount_under(self.dir.path());
    }
}

/// Detaches every mount at or under `dir`, innermost first.
pub fn unmount_under(dir: &Path) {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let root = dir.to_string_lossy().into_owned();
    for line in info.lines().rev() {
        if let Some(p) = line.split(' ').nth(4).filter(|p| p.starts_with(&root)) {
            let _ = Command::new("umount").arg("-l").arg(p).status();
        }
    }
}

impl Env {
    pub fn new() -> Self {
        Env {
            dir: tempfile::Builder::new()
                .prefix("berth-e2e-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    pub fn root(&self) -> PathBuf {
        self.path("root")
    }

    /// A `berth` command against this env's store.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new(berth_bin());
        c.args(args)
            .env("BERTH_ROOT", self.root())
            .env("BERTH_RUN", self.path("run"))
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd(args).output().expect("spawn berth")
    }

    /// Runs berth and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "berth {args:?} failed ({}):\nstdout: {}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs berth and expects failure with exactly one line on stderr; returns it.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            !out.status.success(),
            "berth {args:?} should have failed; stdout: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "expected one error line, got:\n{stderr}"
        );
        assert!(
            stderr.starts_with("berth: "),
            "error line should start with 'berth: ': {stderr}"
        );
        stderr.trim_end().to_string()
    }

    /// Image names in the store.
    pub fn image_names(&self) -> Vec<String> {
        self.ok(&["images", "-q"])
            .lines()
            .map(str::to_string)
            .collect()
    }

    /// Blob files in the store.
    pub fn blob_count(&self) -> usize {
        std::fs::read_dir(self.root().join("blobs/sha256"))
            .map(|d| d.count())
            .unwrap_or(0)
    }

    /// Asserts `berth fsck` calls the store sound.
    pub fn assert_sound(&self) {
        let out = self.ok(&["fsck"]);
        assert!(out.contains("store is sound"), "fsck: {out}");
    }
}

/// Makes an OCI layout at `layout` with image `tag` holding the host's static busybox
/// and `extra` files (path, contents), using umoci as the producer.
pub fn busybox_layout(layout: &Path, tag: &str, extra: &[(&str, &str)]) {
    need("umoci");
    need("busybox");
    let bundle = layout.with_extension(format!("bundle-{tag}"));
    let l = layout.display();
    if !layout.join("index.json").exists() {
        sh(&format!("umoci init --layout {l}"));
    }
    sh(&format!("umoci new --image {l}:{tag}"));
    sh(&format!(
        "umoci unpack --rootless --image {l}:{tag} {} >/dev/null",
        bundle.display()
    ));
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(rootfs.join("bin")).expect("mkdir bin");
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("copy busybox");
    for app in ["sh", "echo", "cat", "ls"] {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(app)).expect("symlink");
    }
    for (path, contents) in extra {
        let p = rootfs.join(path);
        std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        std::fs::write(p, contents).expect("write extra");
    }
    sh(&format!(
        "umoci repack --image {l}:{tag} {}",
        bundle.display()
    ));
    sh(&format!(
        "umoci config --image {l}:{tag} --config.cmd sh --config.env PATH=/bin"
    ));
    std::fs::remove_dir_all(&bundle).expect("rm bundle");
}

/// Writes an OCI layout by hand: one uncompressed layer of `layer_bytes` pseudo-random
/// bytes in a single file. Used where size, not provenance, matters.
pub fn raw_layout(layout: &Path, name: &str, layer_bytes: usize, seed: u64) {
    use sha2::{Digest, Sha256};
    let blobs = layout.join("blobs/sha256");
    std::fs::create_dir_all(&blobs).expect("mkdir blobs");
    let mut data = vec![0u8; layer_bytes];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    for chunk in data.chunks_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        chunk.copy_from_slice(&x.to_le_bytes()[..chunk.len()]);
    }
    let mut tar = tar::Builder::new(Vec::new());
    let mut h = tar::Header::new_gnu();
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_entry_type(tar::EntryType::Regular);
    tar.append_data(&mut h, "data.bin", &data[..]).expect("tar");
    let layer = tar.into_inner().expect("tar");
    let put = |bytes: &[u8]| -> (String, usize) {
        let hex = hex::encode(Sha256::digest(bytes));
        std::fs::write(blobs.join(&hex), bytes).expect("write blob");
        (format!("sha256:{hex}"), bytes.len())
    };
    let (layer_d, layer_n) = put(&layer);
    let config = serde_json::json!({
        "architecture": host_arch(), "os": "linux",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": [layer_d]},
    });
    let (config_d, config_n) = put(config.to_string().as_bytes());
    let manifest = serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config_d, "size": config_n},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": layer_d, "size": layer_n}],
    });
    let (man_d, man_n) = put(manifest.to_string().as_bytes());
    let index = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": man_d, "size": man_n,
        "annotations": {"org.opencontainers.image.ref.name": name}}]});
    std::fs::write(layout.join("index.json"), index.to_string()).expect("index");
    std::fs::write(
        layout.join("oci-layout"),
        r#"{"imageLayoutVersion":"1.0.0"}"#,
    )
    .expect("layout");
}

/// GOARCH of this machine.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        other => other,
    }
}

/// A private containerd daemon on its own root and socket, stopped on drop.
pub struct Containerd {
    child: std::process::Child,
    pub socket: PathBuf,
    _dir: TempDir,
}

impl Containerd {
    pub fn start() -> Self {
        need("containerd");
        need("ctr");
        need_root();
        let dir = tempfile::Builder::new()
            .prefix("berth-ctrd-")
            .tempdir()
            .expect("tempdir");
        let socket = dir.path().join("c.sock");
        let config = dir.path().join("config.toml");
        std::fs::write(&config, "version = 2\n").expect("config");
        let child = Command::new("containerd")
            .arg("--config")
            .arg(&config)
            .arg("--root")
            .arg(dir.path().join("root"))
            .arg("--state")
            .arg(dir.path().join("state"))
            .arg("--address")
            .arg(&socket)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start containerd");
        let d = Containerd {
            child,
            socket,
            _dir: dir,
        };
        for _ in 0..100 {
            if d.ctr(&["version"]).status.success() {
                return d;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        panic!("containerd did not come up");
    }

    pub fn ctr(&self, args: &[&str]) -> Output {
        Command::new("ctr")
            .arg("-a")
            .arg(&self.socket)
            .arg("-n")
            .arg("berth-test")
            .args(args)
            .output()
            .expect("spawn ctr")
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let _ = nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        );
        let _ = self.child.wait();
        // containerd may leave snapshot mounts under its root.
        unmount_under(self._dir.path());
    }
}
