//! The fixture (a busybox rootfs in a bundle, a private runtime root) and the tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use berth_exec::runtime::{Bundle, Runtime};
use berth_exec::spec::{build_spec, ImageProcessConfig, RunOptions};
use berth_exec::supervisor::{self, SupervisorConfig};
use berth_mount::Mount;

/// Whether `runtime` can run here; with CI=true a missing runtime or root is a failure.
pub fn available(runtime: &str) -> bool {
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    let found = Command::new(runtime)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    let root = nix::unistd::geteuid().is_root();
    if found && root {
        return true;
    }
    assert!(
        !ci,
        "CI=true: {runtime} found={found}, root={root}: these tests must run"
    );
    eprintln!("skipping {runtime} tests: found={found}, root={root}");
    false
}

static COUNTER: AtomicUsize = AtomicUsize::new(0);

const APPLETS: [&str; 12] = [
    "sh", "echo", "cat", "id", "hostname", "sleep", "true", "false", "pwd", "tty", "ls", "kill",
];

/// One container's world; everything it made is removed on drop, even after a panic.
pub struct Fixture {
    pub runtime: Runtime,
    pub id: String,
    pub dir: tempfile::TempDir,
    pub bundle: Bundle,
    pub state: PathBuf,
}

impl Fixture {
    pub fn new(runtime: &str, tag: &str) -> Fixture {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let id = format!("bt-{tag}-{}-{n}", std::process::id());
        let dir = tempfile::tempdir().expect("tempdir");
        let src = dir.path().join("src");
        make_rootfs(&src);
        let runtime = Runtime::new(runtime).with_root(dir.path().join("rtroot"));
        let bundle = Bundle::create(
            dir.path().join("bundle"),
            &[Mount::bind(src.to_string_lossy(), false)],
        )
        .expect("bundle");
        let state = dir.path().join("state");
        Fixture {
            runtime,
            id,
            dir,
            bundle,
            state,
        }
    }

    pub fn opts(&self, args: &[&str]) -> RunOptions {
        RunOptions {
            id: self.id.clone(),
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    fn config(&self, opts: &RunOptions, detached: bool) -> SupervisorConfig {
        let spec =
            build_spec(&ImageProcessConfig::default(), opts, &self.bundle.rootfs()).expect("spec");
        self.bundle.write_spec(&spec).expect("write spec");
        let cfg = SupervisorConfig {
            id: self.id.clone(),
            runtime: self.runtime.binary().to_path_buf(),
            runtime_root: Some(self.dir.path().join("rtroot")),
            bundle: self.bundle.dir().to_path_buf(),
            state_dir: self.state.clone(),
            detached,
            terminal: opts.terminal,
            stdin: None,
            stdout: detached.then(|| self.out_path()),
            stderr: detached.then(|| self.dir.path().join("err")),
            remove_bundle: true,
        };
        cfg.save().expect("save config");
        cfg
    }

    pub fn out_path(&self) -> PathBuf {
        self.dir.path().join("out")
    }

    fn supervisor_command(&self) -> Command {
        let mut cmd = Command::new(std::env::current_exe().expect("test binary"));
        cmd.env(crate::SUPERVISE_ENV, &self.state);
        cmd
    }

    /// Foreground run: the supervisor inherits our pipes, the container inherits them.
    pub fn run(&self, opts: &RunOptions) -> (i32, String, String) {
        self.config(opts, false);
        let out = self
            .supervisor_command()
            .stdin(Stdio::null())
            .output()
            .expect("supervisor");
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        (
            out.status.code().unwrap_or(-1),
            text(&out.stdout),
            text(&out.stderr),
        )
    }

    /// Foreground run in the background: the container's stdout goes to `out_path`.
    pub fn spawn_foreground(&self, opts: &RunOptions) -> std::process::Child {
        self.config(opts, false);
        let out = std::fs::File::create(self.out_path()).expect("out file");
        self.supervisor_command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .spawn()
            .expect("supervisor")
    }

    /// Detached run; returns once the container runs.
    pub fn start_detached(&self, opts: &RunOptions) -> supervisor::ContainerStatus {
        self.config(opts, true);
        let err = std::fs::File::create(self.dir.path().join("supervisor.err")).expect("err file");
        let mut cmd = Command::new("setsid");
        cmd.arg("-f")
            .arg(std::env::current_exe().expect("test binary"));
        cmd.env(crate::SUPERVISE_ENV, &self.state)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err);
        let status = cmd.status().expect("setsid -f");
        assert!(status.success(), "setsid -f failed");
        supervisor::wait_started(&self.state, Duration::from_secs(20)).expect("started")
    }

    pub fn output(&self) -> String {
        std::fs::read_to_string(self.out_path()).unwrap_or_default()
    }

    /// After the container is gone: no runtime state, no mounts, a final status.
    pub fn assert_clean(&self) {
        let listed = self.runtime.list().expect("list");
        assert!(
            listed.iter().all(|c| c.id != self.id),
            "{} still listed: {listed:?}",
            self.id
        );
        let mounts = berth_mount::mount_points_under(self.dir.path());
        assert!(mounts.is_empty(), "mounts left: {mounts:?}");
        assert!(!self.bundle.dir().exists(), "bundle dir left");
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        if let Ok(s) = supervisor::read_status(&self.state) {
            if !s.is_final() && supervisor::process_alive(s.supervisor_pid) {
                let _ = self.runtime.kill(&self.id, libc::SIGKILL, true);
                let _ = supervisor::wait_for_exit(&self.state, Some(Duration::from_secs(10)));
            }
        }
        let _ = self.runtime.delete(&self.id, true);
        let _ = self.bundle.remove();
    }
}

fn make_rootfs(root: &Path) {
    for d in ["bin", "etc", "tmp", "data", "proc", "sys", "dev"] {
        std::fs::create_dir_all(root.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", root.join("bin/busybox")).expect("busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", root.join("bin").join(a)).expect("applet");
    }
    std::fs::write(
        root.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        root.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .expect("group");
}

pub fn cgroup_file(controller: &str, id: &str, file: &str) -> String {
    let p = format!("/sys/fs/cgroup/{controller}/berth/{id}/{file}");
    std::fs::read_to_string(&p)
        .unwrap_or_else(|e| panic!("{p}: {e}"))
        .trim()
        .to_string()
}

pub fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    for _ in 0..500 {
        if f() {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("timed out waiting for {what}");
}
