//! Containers: `berth run/create/start/ps/exec/kill/stop/pause/resume/wait/rm` with real
//! runc and crun. Every test checks that no mount, runtime state or supervisor is left.

use std::io::Read;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use crate::support::{need, need_root, sh, Env};

const APPLETS: [&str; 19] = [
    "sh", "echo", "cat", "ls", "id", "hostname", "sleep", "true", "false", "pwd", "tty", "kill",
    "head", "tr", "env", "mkdir", "seq", "wc", "grep",
];

/// A store with image `bb` (static busybox, users root and app) and cleanup checks on drop.
struct Lab {
    env: Env,
}

impl Lab {
    fn new() -> Lab {
        need_root();
        need("runc");
        need("umoci");
        need("busybox");
        let env = Env::new();
        let layout = env.path("layout");
        make_layout(&layout);
        env.ok(&["import", &layout.to_string_lossy(), "--name", "bb"]);
        Lab { env }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.env.run(args)
    }

    /// Polls `f` for up to 10 s.
    fn until(&self, what: &str, mut f: impl FnMut() -> bool) {
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(10) {
            if f() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("timed out waiting for {what}");
    }

    fn file(&self, rel: &str) -> String {
        std::fs::read_to_string(self.env.path(rel)).unwrap_or_default()
    }

    /// Nothing left: mounts under the env, runtime state, supervisors, cgroups.
    fn assert_clean(&self) {
        let root = self.env.dir.path().to_string_lossy().into_owned();
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
        let ours: Vec<&str> = mounts
            .lines()
            .filter(|l| l.contains(&root) && l.contains("/run/containers/"))
            .collect();
        assert!(ours.is_empty(), "container mounts left: {ours:?}");
        for rt in ["runc", "crun"] {
            let dir = self.env.path(&format!("run/runtime/{rt}"));
            if dir.exists() {
                let list = sh(&format!("{rt} --root {} list -q", dir.display()));
                assert!(list.trim().is_empty(), "{rt} state left: {list}");
            }
        }
        let procs = sh("ps -eo args");
        let sup: Vec<&str> = procs
            .lines()
            .filter(|l| l.contains("__supervise") && l.contains(&root))
            .collect();
        assert!(sup.is_empty(), "supervisors left: {sup:?}");
    }

    /// The full id of a named container.
    fn id_of(&self, name: &str) -> String {
        let v: serde_json::Value =
            serde_json::from_str(&self.env.ok(&["inspect-container", "--json", name]))
                .expect("json");
        v["id"].as_str().expect("id").to_string()
    }

    /// The container's cgroups are gone.
    fn assert_no_cgroups(&self, id: &str) {
        for c in ["pids", "memory", "cpu", "freezer"] {
            let p = format!("/sys/fs/cgroup/{c}/berth/{id}");
            assert!(!Path::new(&p).exists(), "{p} left");
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.env.run(&["ps", "-aq"]);
        for id in String::from_utf8_lossy(&out.stdout).lines() {
            let _ = self.env.run(&["rm", "-f", id]);
        }
    }
}

fn make_layout(layout: &Path) {
    let l = layout.display();
    let bundle = layout.with_extension("bundle");
    sh(&format!(
        "umoci init --layout {l} && umoci new --image {l}:bb"
    ));
    sh(&format!(
        "umoci unpack --rootless --image {l}:bb {} >/dev/null",
        bundle.display()
    ));
    let rootfs = bundle.join("rootfs");
    for d in ["bin", "etc", "tmp", "data"] {
        std::fs::create_dir_all(rootfs.join(d)).expect("mkdir");
    }
    std::fs::copy("/bin/busybox", rootfs.join("bin/busybox")).expect("busybox");
    for a in APPLETS {
        std::os::unix::fs::symlink("busybox", rootfs.join("bin").join(a)).expect("applet");
    }
    std::fs::write(
        rootfs.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/tmp:/bin/sh\n",
    )
    .expect("passwd");
    std::fs::write(
        rootfs.join("etc/group"),
        "root:x:0:\napp:x:1000:\nstaff:x:50:app\n",
    )
    .expect("group");
    sh(&format!(
        "umoci repack --image {l}:bb {} && umoci config --image {l}:bb --config.cmd sh --config.env PATH=/bin",
        bundle.display()
    ));
    std::fs::remove_dir_all(&bundle).expect("rm bundle");
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exit_codes_and_streams_propagate() {
    let b = Lab::new();
    let out = b.run(&[
        "run",
        "--rm",
        "bb",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3));
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("out\n".into(), "err\n".into())
    );
    let ok = b.run(&["run", "--name", "kept", "bb", "true"]);
    assert_eq!(ok.status.code(), Some(0));
    let ps = b.env.ok(&["ps", "-a"]);
    assert!(ps.contains("kept") && ps.contains("exited(0)"), "{ps}");
    let json: serde_json::Value =
        serde_json::from_str(&b.env.ok(&["ps", "-a", "--json"])).expect("json");
    assert_eq!(json[0]["exit_code"], 0);
    assert_eq!(b.env.ok(&["wait", "kept"]).trim(), "0");
    b.env.ok(&["rm", "kept"]);
    assert!(b.env.ok(&["ps", "-aq"]).is_empty());
    b.assert_clean();
}

#[test]
fn env_workdir_user_hostname_apply() {
    let b = Lab::new();
    std::fs::write(b.env.path("envfile"), "# comment\nFROMFILE=yes\n").expect("envfile");
    let out = b.env.ok(&[
        "run",
        "--rm",
        "-e",
        "FOO=bar",
        "--env-file",
        &b.env.path("envfile").to_string_lossy(),
        "-w",
        "/tmp",
        "-u",
        "app",
        "--hostname",
        "box",
        "bb",
        "sh",
        "-c",
        "echo $FOO:$FROMFILE:$(pwd):$(id -u):$(id -g):$(id -G):$(hostname)",
    ]);
    assert_eq!(out.trim(), "bar:yes:/tmp:1000:1000:1000 50:box");
    b.assert_clean();
}

#[test]
fn bind_mount_is_visible_read_only() {
    let b = Lab::new();
    let host = b.env.path("hostdata");
    std::fs::create_dir(&host).expect("dir");
    std::fs::write(host.join("f"), "from-host\n").expect("file");
    let spec = format!("type=bind,src={},dst=/data,ro", host.display());
    let out = b.env.ok(&[
        "run", "--rm", "--mount", &spec, "--tmpfs", "/scratch", "bb", "sh", "-c",
        "cat /data/f; echo x > /data/g && echo writable || echo readonly; echo y > /scratch/y && echo tmpfs-ok",
    ]);
    assert_eq!(out, "from-host\nreadonly\ntmpfs-ok\n");
    assert!(!host.join("g").exists());
    b.assert_clean();
}

#[test]
fn memory_and_pids_limits_are_enforced() {
    let b = Lab::new();
    // A fork bomb stops at the limit: the loop's forks fail, the shell reports it.
    let bomb = "i=0; while [ $i -lt 40 ]; do sleep 3 & i=$((i+1)); done; echo all-spawned";
    let out = b.run(&["run", "--rm", "--pids-limit", "10", "bb", "sh", "-c", bomb]);
    assert!(
        !text(&out.stdout).contains("all-spawned"),
        "the loop must stop"
    );
    assert!(
        text(&out.stderr).contains("can't fork"),
        "{}",
        text(&out.stderr)
    );
    // Filling 200 MiB of shell memory under a 32 MiB limit gets the container OOM-killed.
    let hog = "a=$(head -c 200000000 /dev/zero | tr '\\000' x); echo survived";
    let out = b.run(&["run", "--rm", "--memory", "32m", "bb", "sh", "-c", hog]);
    assert!(!text(&out.stdout).contains("survived"));
    assert_eq!(out.status.code(), Some(137), "OOM kill is SIGKILL");
    b.assert_clean();
}

#[test]
fn kill_term_reaches_a_shell_trap_and_stop_escalates() {
    let b = Lab::new();
    let log = b.env.path("trap.log");
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    b.env.ok(&[
        "run",
        "-d",
        "--name",
        "t",
        "--stdout",
        &log.to_string_lossy(),
        "bb",
        "sh",
        "-c",
        script,
    ]);
    b.until("ready", || b.file("trap.log").contains("ready"));
    b.env.ok(&["kill", "-s", "TERM", "t"]);
    let out = b.run(&["wait", "t"]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(7), "7\n".into())
    );
    assert!(b.file("trap.log").contains("got-term"));
    // A process ignoring TERM is killed after the grace period.
    let id = b.env.ok(&[
        "run",
        "-d",
        "bb",
        "sh",
        "-c",
        "trap '' TERM; while true; do sleep 0.05; done",
    ]);
    let t = Instant::now();
    b.env.ok(&["stop", "-t", "1", id.trim()]);
    assert!(t.elapsed() < Duration::from_secs(8));
    let out = b.run(&["wait", &id.trim()[..12]]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(137), "137\n".into())
    );
    let t_id = b.id_of("t");
    b.env.ok(&["rm", "t", id.trim()]);
    b.assert_no_cgroups(&t_id);
    b.assert_no_cgroups(id.trim());
    b.assert_clean();
}

#[test]
fn pause_freezes_resume_continues_exec_enters() {
    let b = Lab::new();
    let host = b.env.path("count");
    std::fs::create_dir(&host).expect("dir");
    let spec = format!("type=bind,src={},dst=/data", host.display());
    let counter = "i=0; while true; do i=$((i+1)); echo $i > /data/c; sleep 0.02; done";
    b.env.ok(&[
        "run", "-d", "--name", "p", "--mount", &spec, "bb", "sh", "-c", counter,
    ]);
    let read = || std::fs::read_to_string(host.join("c")).unwrap_or_default();
    b.until("counting", || {
        read().trim().parse::<u32>().is_ok_and(|n| n > 2)
    });
    let out = b.run(&[
        "exec",
        "p",
        "sh",
        "-c",
        "cat /data/c >/dev/null && hostname && exit 4",
    ]);
    assert_eq!(out.status.code(), Some(4));
    b.env.ok(&["pause", "p"]);
    assert!(b.env.ok(&["ps"]).contains("paused"));
    std::thread::sleep(Duration::from_millis(100));
    let frozen = read();
    std::thread::sleep(Duration::from_millis(400));
    assert_eq!(read(), frozen, "the counter must not advance while paused");
    b.env.fails(&["exec", "p", "true"]);
    b.env.ok(&["resume", "p"]);
    b.until("counting again", || read() != frozen);
    // stop of a paused container: signal, thaw, and it ends.
    b.env.ok(&["pause", "p"]);
    b.env.ok(&["stop", "-t", "1", "p"]);
    // sh is the container's init: TERM without a trap is ignored, so KILL follows.
    assert!(b.env.ok(&["ps", "-a"]).contains("exited(137)"));
    let id = b.id_of("p");
    b.env.ok(&["rm", "p"]);
    b.assert_no_cgroups(&id);
    b.assert_clean();
}

/// Runs berth on a fresh pty; returns what the terminal showed and the exit code.
fn on_pty(b: &Lab, args: &[&str]) -> (String, Option<i32>) {
    let pty = nix::pty::openpty(None, None).expect("openpty");
    let slave = std::fs::File::from(pty.slave);
    let mut child = b
        .env
        .cmd(args)
        .stdin(slave.try_clone().expect("dup"))
        .stdout(slave.try_clone().expect("dup"))
        .stderr(slave)
        .spawn()
        .expect("spawn");
    let mut master = std::fs::File::from(pty.master);
    let mut out = Vec::new();
    let mut buf = [0u8; 1024];
    // EIO once every slave fd is closed, i.e. berth exited.
    while let Ok(n) = master.read(&mut buf) {
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    let status = child.wait().expect("wait");
    (text(&out), status.code())
}

#[test]
fn tty_gives_a_terminal() {
    let b = Lab::new();
    let (out, code) = on_pty(&b, &["run", "--rm", "-t", "bb", "tty"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.trim().starts_with("/dev/pts/"), "{out:?}");
    let (out, _) = on_pty(&b, &["run", "--rm", "bb", "sh", "-c", "tty || true"]);
    assert!(out.contains("not a tty"), "no -t, no terminal: {out:?}");
    b.env.ok(&["run", "-d", "--name", "x", "bb", "sleep", "30"]);
    let (out, code) = on_pty(&b, &["exec", "-t", "x", "tty"]);
    assert_eq!(code, Some(0));
    assert!(out.contains("/dev/pts/"), "{out:?}");
    b.env.ok(&["rm", "-f", "x"]);
    b.assert_clean();
}

#[test]
fn detached_container_survives_a_killed_cli() {
    let b = Lab::new();
    let flag = b.env.path("go");
    std::fs::create_dir(&flag).expect("dir");
    let spec = format!("type=bind,src={},dst=/data", flag.display());
    let script = "while [ ! -e /data/go ]; do sleep 0.02; done; exit 5";
    let id = b
        .env
        .ok(&["run", "-d", "--mount", &spec, "bb", "sh", "-c", script]);
    let id = id.trim();
    assert_eq!(id.len(), 64);
    // A waiting CLI killed by SIGKILL changes nothing.
    let mut waiter = b
        .env
        .cmd(&["wait", id])
        .stdout(Stdio::null())
        .spawn()
        .expect("wait");
    std::thread::sleep(Duration::from_millis(200));
    waiter.kill().expect("SIGKILL");
    let _ = waiter.wait();
    assert!(b.env.ok(&["ps"]).contains(&id[..12]), "still running");
    std::fs::write(flag.join("go"), "").expect("go");
    let out = b.run(&["wait", &id[..8]]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(5), "5\n".into())
    );
    b.env.ok(&["rm", id]);
    b.assert_clean();
}

#[test]
fn twenty_containers_run_concurrently() {
    let b = Lab::new();
    let codes: Vec<Option<i32>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..20)
            .map(|i| {
                let b = &b;
                s.spawn(move || {
                    let script = format!("sleep 0.2; echo $((1+{i})); exit {i}");
                    let out = b.run(&["run", "--rm", "bb", "sh", "-c", &script]);
                    assert_eq!(
                        text(&out.stdout).trim(),
                        (i + 1).to_string(),
                        "{}",
                        text(&out.stderr)
                    );
                    out.status.code()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("thread"))
            .collect()
    });
    assert_eq!(codes, (0..20).map(Some).collect::<Vec<_>>());
    assert!(b.env.ok(&["ps", "-aq"]).is_empty());
    b.assert_clean();
}

#[test]
fn container_runs_in_a_checkout_and_writes_land_there() {
    let b = Lab::new();
    let work = b.env.path("work");
    let w = work.to_string_lossy().into_owned();
    b.env.ok(&["checkout", "bb", &w]);
    b.env
        .ok(&["run", "--rm", &w, "sh", "-c", "echo built > /tmp/artifact"]);
    let status = b.env.ok(&["status", &w]);
    assert!(status.contains("A /tmp/artifact"), "{status}");
    assert_eq!(
        std::fs::read_to_string(work.join("tmp/artifact")).expect("file"),
        "built\n"
    );
    // A created container's snapshot survives gc; it runs afterwards.
    let id = b.env.ok(&["create", "bb", "sh", "-c", "exit 9"]);
    b.env.ok(&["gc"]);
    b.env.ok(&["start", id.trim()]);
    assert_eq!(b.run(&["wait", id.trim()]).status.code(), Some(9));
    b.env.ok(&["rm", id.trim()]);
    b.env.ok(&["discard", &w]);
    b.assert_clean();
}

#[test]
fn crun_runs_containers() {
    let b = Lab::new();
    need("crun");
    let out = b.run(&[
        "run",
        "--rm",
        "--runtime",
        "crun",
        "bb",
        "sh",
        "-c",
        "echo via-crun; exit 6",
    ]);
    assert_eq!(
        (out.status.code(), text(&out.stdout)),
        (Some(6), "via-crun\n".into())
    );
    b.env.ok(&[
        "run",
        "-d",
        "--runtime",
        "crun",
        "--name",
        "c",
        "bb",
        "sleep",
        "30",
    ]);
    b.env.ok(&["pause", "c"]);
    b.env.ok(&["resume", "c"]);
    assert_eq!(b.env.ok(&["exec", "c", "echo", "in"]), "in\n");
    b.env.ok(&["kill", "c"]);
    assert_eq!(b.run(&["wait", "c"]).status.code(), Some(137));
    b.env.ok(&["rm", "c"]);
    b.assert_clean();
}

#[test]
fn bad_input_is_one_line_and_leaves_nothing() {
    let b = Lab::new();
    assert!(b
        .env
        .fails(&["run", "nosuchimage"])
        .contains("no such image"));
    let out = b.run(&["run", "bb", "nosuchcmd"]);
    assert_eq!(out.status.code(), Some(127));
    let err = text(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("nosuchcmd: command not found"), "{err}");
    assert!(b
        .env
        .fails(&["run", "-u", "nobody", "bb", "true"])
        .contains("nobody"));
    assert!(b
        .env
        .fails(&["run", "--runtime", "nosuchruntime", "bb", "true"])
        .contains("nosuchruntime"));
    assert!(b
        .env
        .fails(&["run", "--runtime", "/no/such/runc", "bb", "true"])
        .contains("/no/such/runc"));
    b.env
        .ok(&["run", "-d", "--name", "dup", "bb", "sleep", "30"]);
    assert!(b
        .env
        .fails(&["run", "--name", "dup", "bb", "true"])
        .contains("already in use"));
    assert!(b.env.fails(&["rm", "dup"]).contains("rm -f"));
    b.env.ok(&["rm", "-f", "dup"]);
    for verb in [
        "kill",
        "stop",
        "pause",
        "resume",
        "wait",
        "rm",
        "exec",
        "start",
        "inspect-container",
    ] {
        let mut args = vec![verb, "nosuch"];
        if verb == "exec" {
            args.push("true");
        }
        assert!(b.env.fails(&args).contains("no such container"), "{verb}");
    }
    b.env.ok(&["run", "--name", "done", "bb", "true"]);
    for verb in ["kill", "stop", "pause", "resume", "start"] {
        assert!(b.env.fails(&[verb, "done"]).contains("exited(0)"), "{verb}");
    }
    assert!(b
        .env
        .fails(&["exec", "done", "true"])
        .contains("not running"));
    b.env
        .fails(&["run", "--mount", "type=bind,dst=/x", "bb", "true"]);
    b.env.fails(&["run", "--memory", "lots", "bb", "true"]);
    b.env.fails(&["run", "--cap-add", "NOPE", "bb", "true"]);
    b.env.ok(&["rm", "done"]);
    assert!(
        b.env.ok(&["ps", "-aq"]).is_empty(),
        "failed runs are removed"
    );
    b.assert_clean();
    assert!(
        !b.env.path("run/containers").exists()
            || std::fs::read_dir(b.env.path("run/containers"))
                .expect("dir")
                .next()
                .is_none()
    );
}
