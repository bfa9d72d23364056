//! The tests: each makes its own fixture (unique id, runtime root, bundle) and checks
//! that nothing is left behind.

use std::path::Path;
use std::time::Duration;

use berth_exec::runtime::{ExecOptions, Runtime, Status, StdioSet};
use berth_exec::spec::{build_spec, ImageProcessConfig};
use berth_exec::supervisor::{self, Phase};

use crate::fixture::{cgroup_file, wait_until, Fixture};

pub fn exit_code_and_stdout(rt: &str) {
    let fx = Fixture::new(rt, "exit");
    let (code, out, err) = fx.run(&fx.opts(&["sh", "-c", "echo hi; echo oops >&2; exit 3"]));
    assert_eq!((code, out.as_str(), err.as_str()), (3, "hi\n", "oops\n"));
    let st = supervisor::read_status(&fx.state).expect("status");
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(3)));
    assert!(st.finished_at >= st.started_at);
    fx.assert_clean();
}

pub fn env_workdir_user_hostname(rt: &str) {
    let fx = Fixture::new(rt, "env");
    let mut o = fx.opts(&[
        "sh",
        "-c",
        "echo $FOO:$(pwd):$(id -u):$(id -g):$(id -G):$(hostname)",
    ]);
    o.env = vec!["FOO=bar".into()];
    o.workdir = Some("/tmp".into());
    o.user = Some("app".into());
    o.hostname = Some("box".into());
    let (code, out, err) = fx.run(&o);
    assert_eq!(
        (code, out.trim()),
        (0, "bar:/tmp:1000:1000:1000 50:box"),
        "stderr: {err}"
    );
    fx.assert_clean();
}

pub fn bind_mount_readonly(rt: &str) {
    let fx = Fixture::new(rt, "bind");
    let host = fx.dir.path().join("hostdata");
    std::fs::create_dir(&host).expect("host dir");
    std::fs::write(host.join("f"), "from-host\n").expect("file");
    let mut o = fx.opts(&[
        "sh",
        "-c",
        "cat /data/f; echo x > /data/g && echo writable || echo readonly",
    ]);
    o.mounts = vec![format!("type=bind,src={},dst=/data,ro", host.display())
        .parse()
        .expect("mount")];
    let (code, out, _) = fx.run(&o);
    assert_eq!((code, out.as_str()), (0, "from-host\nreadonly\n"));
    assert!(!host.join("g").exists());
    fx.assert_clean();
}

pub fn limits_land_in_cgroups(rt: &str) {
    let fx = Fixture::new(rt, "limits");
    // The inner shell dies when fork fails; the outer one reports and stays (exec, no fork).
    let inner = "n=0; while [ $n -lt 30 ]; do sleep 30 & n=$((n+1)); done; echo all-spawned";
    let script = format!("sh -c '{inner}'; echo loop-ended; exec sleep 30");
    let mut o = fx.opts(&["sh", "-c", &script]);
    o.pids_limit = Some(8);
    o.memory = Some(berth_exec::spec::parse_bytes("64m").expect("size"));
    o.cpus = Some(0.5);
    fx.start_detached(&o);
    wait_until("the spawn loop", || fx.output().contains("loop-ended"));
    assert!(
        !fx.output().contains("all-spawned"),
        "the loop must stop at the limit"
    );
    assert_eq!(cgroup_file("pids", &fx.id, "pids.max"), "8");
    let current: u32 = cgroup_file("pids", &fx.id, "pids.current")
        .parse()
        .expect("number");
    assert!((2..=8).contains(&current), "pids.current {current}");
    assert_ne!(
        cgroup_file("pids", &fx.id, "pids.events"),
        "max 0",
        "forks were refused"
    );
    assert_eq!(
        cgroup_file("memory", &fx.id, "memory.limit_in_bytes"),
        (64u64 << 20).to_string()
    );
    assert_eq!(cgroup_file("cpu", &fx.id, "cpu.cfs_quota_us"), "50000");
    fx.runtime.kill(&fx.id, libc::SIGKILL, false).expect("kill");
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        137
    );
    fx.assert_clean();
}

pub fn signals_reach_a_shell_trap(rt: &str) {
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    // Through the runtime's kill verb.
    let fx = Fixture::new(rt, "trap");
    fx.start_detached(&fx.opts(&["sh", "-c", script]));
    wait_until("ready", || fx.output().contains("ready"));
    fx.runtime.kill(&fx.id, libc::SIGTERM, false).expect("kill");
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        7
    );
    assert!(fx.output().contains("got-term"));
    fx.assert_clean();
    // Forwarded by the supervisor.
    let fx = Fixture::new(rt, "fwd");
    let st = fx.start_detached(&fx.opts(&["sh", "-c", script]));
    wait_until("ready", || fx.output().contains("ready"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(st.supervisor_pid),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        7
    );
    fx.assert_clean();
}

pub fn pause_resume_and_exec(rt: &str) {
    let fx = Fixture::new(rt, "pause");
    let o = fx.opts(&["sh", "-c", "while true; do sleep 0.05; done"]);
    fx.start_detached(&o);
    fx.runtime.pause(&fx.id).expect("pause");
    assert_eq!(
        fx.runtime.state(&fx.id).expect("state").status,
        Status::Paused
    );
    assert_eq!(cgroup_file("freezer", &fx.id, "freezer.state"), "FROZEN");
    fx.runtime.resume(&fx.id).expect("resume");
    assert_eq!(
        fx.runtime.state(&fx.id).expect("state").status,
        Status::Running
    );
    assert_eq!(cgroup_file("freezer", &fx.id, "freezer.state"), "THAWED");
    let spec = oci_spec::runtime::Spec::load(fx.bundle.dir().join("config.json")).expect("spec");
    let mut process = spec.process().clone().expect("process");
    process.set_args(Some(vec![
        "sh".into(),
        "-c".into(),
        "echo inside-$(hostname); exit 4".into(),
    ]));
    let out = fx.dir.path().join("exec.out");
    let stdio = StdioSet {
        stdout: std::fs::File::create(&out).expect("out").into(),
        ..StdioSet::null()
    };
    let code = fx.runtime.exec(
        &fx.id,
        ExecOptions {
            process,
            detach: false,
            pid_file: None,
            console_socket: None,
            stdio,
        },
    );
    assert_eq!(code.expect("exec"), 4);
    let expected = format!("inside-{}\n", &fx.id[..12]);
    assert_eq!(
        std::fs::read_to_string(&out).expect("exec output"),
        expected
    );
    fx.runtime.kill(&fx.id, libc::SIGKILL, false).expect("kill");
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        137
    );
    fx.assert_clean();
}

pub fn detached_survives_and_records_exit(rt: &str) {
    let fx = Fixture::new(rt, "detach");
    let st = fx.start_detached(&fx.opts(&["sh", "-c", "echo out; sleep 0.3; exit 5"]));
    assert_eq!(st.phase, Phase::Running);
    let pid = st.pid.expect("pid");
    assert_eq!(fx.runtime.state(&fx.id).expect("state").pid, pid);
    let parent = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    let ppid = parent
        .rsplit_once(')')
        .expect("stat")
        .1
        .split_whitespace()
        .nth(1)
        .expect("ppid");
    assert_eq!(
        ppid,
        st.supervisor_pid.to_string(),
        "the supervisor adopted the init"
    );
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        5
    );
    assert_eq!(fx.output(), "out\n");
    assert!(
        !supervisor::process_alive(st.supervisor_pid) || {
            std::thread::sleep(Duration::from_millis(300));
            !supervisor::process_alive(st.supervisor_pid)
        }
    );
    fx.assert_clean();
}

pub fn terminal_through_console_socket(rt: &str) {
    let fx = Fixture::new(rt, "tty");
    let mut o = fx.opts(&["sh", "-c", "tty; echo term=$TERM; exit 2"]);
    o.terminal = true;
    fx.start_detached(&o);
    assert_eq!(
        supervisor::wait_for_exit(&fx.state, Some(Duration::from_secs(10))).expect("exit"),
        2
    );
    let out = fx.output();
    assert!(
        out.contains("/dev/pts/0\r\n") && out.contains("term=xterm\r\n"),
        "{out:?}"
    );
    fx.assert_clean();
}

pub fn runtime_errors_carry_stderr(rt: &str) {
    let fx = Fixture::new(rt, "err");
    match fx.runtime.start("no-such-container") {
        Err(berth_exec::runtime::RuntimeError::Failed {
            stderr,
            verb: "start",
            ..
        }) => {
            assert!(!stderr.is_empty() && !stderr.contains('\n'), "{stderr:?}")
        }
        other => panic!("start of a missing container: {other:?}"),
    }
    // Create failures come from the runtime's log, since its stderr is the container's.
    std::fs::write(fx.bundle.dir().join("config.json"), "{}").expect("broken spec");
    let opts = berth_exec::runtime::CreateOptions {
        bundle: fx.bundle.dir().to_path_buf(),
        pid_file: None,
        console_socket: None,
        stdio: StdioSet::null(),
    };
    match fx.runtime.create(&fx.id, opts) {
        Err(berth_exec::runtime::RuntimeError::Failed {
            stderr,
            verb: "create",
            ..
        }) => {
            assert!(!stderr.is_empty() && !stderr.contains('\n'), "{stderr:?}")
        }
        other => panic!("create from a broken spec: {other:?}"),
    }
    // crun refuses this hybrid cgroup host unless the driver hides the cgroup2 tree.
    if rt == "crun" && Path::new("/sys/fs/cgroup/unified/cgroup.controllers").exists() {
        let bare = Runtime::new(rt)
            .with_root(fx.dir.path().join("rtroot"))
            .with_hidden_unified_cgroup(false);
        let spec = build_spec(
            &ImageProcessConfig::default(),
            &fx.opts(&["true"]),
            &fx.bundle.rootfs(),
        )
        .expect("spec");
        fx.bundle.write_spec(&spec).expect("write");
        let opts = berth_exec::runtime::CreateOptions {
            bundle: fx.bundle.dir().to_path_buf(),
            pid_file: None,
            console_socket: None,
            stdio: StdioSet::null(),
        };
        match bare.create(&fx.id, opts) {
            Err(e) => assert!(e.to_string().contains("hybrid"), "{e}"),
            Ok(()) => eprintln!("note: this crun accepts the hybrid layout without help"),
        }
    }
    fx.bundle.remove().expect("remove");
    fx.assert_clean();
}

/// A foreground run without a terminal is one `runtime run`: signals sent to the
/// supervisor reach the container through it, `running` is recorded with the pid, and a
/// runtime that fails (no such command) is reported as a failure, not as an exit code.
pub fn foreground_runs_as_one_runtime_process(rt: &str) {
    let script = "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done";
    let fx = Fixture::new(rt, "fg");
    let child = fx.spawn_foreground(&fx.opts(&["sh", "-c", script]));
    wait_until("ready", || fx.output().contains("ready"));
    // The runtime writes the pid file after starting init; the supervisor notices it soon.
    wait_until("running", || {
        supervisor::read_status(&fx.state).is_ok_and(|s| s.phase == Phase::Running)
    });
    let st = supervisor::read_status(&fx.state).expect("status");
    let pid = st.pid.expect("pid recorded");
    assert!(supervisor::process_alive(pid), "init {pid} is not alive");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(child.id() as i32),
        nix::sys::signal::Signal::SIGTERM,
    )
    .expect("signal");
    let out = child.wait_with_output().expect("supervisor");
    assert_eq!(out.status.code(), Some(7), "{out:?}");
    assert!(fx.output().contains("got-term"));
    let st = supervisor::read_status(&fx.state).expect("status");
    assert_eq!((st.phase, st.exit_code), (Phase::Exited, Some(7)));
    fx.assert_clean();

    let fx = Fixture::new(rt, "fgerr");
    let (code, _, err) = fx.run(&fx.opts(&["/no/such/command"]));
    assert_eq!(code, 125, "{err}");
    // The runtime's own stderr is the container's, so its message may show there too;
    // the supervisor's error carries it from the runtime's log.
    let last = err.trim().lines().last().unwrap_or_default();
    assert!(
        last.starts_with("supervisor: ") && last.contains("/no/such/command"),
        "{err:?}"
    );
    let st = supervisor::read_status(&fx.state).expect("status");
    assert_eq!(st.phase, Phase::Failed, "{st:?}");
    assert!(st.error.is_some_and(|e| !e.is_empty()));
    fx.assert_clean();
}
