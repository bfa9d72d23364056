//! The OCI runtime driver: any binary that speaks the runc command line (runc, crun, youki).
//!
//! Every verb is a method on [`Runtime`]; failures carry the runtime's stderr as one line.
//! Nothing runtime-specific leaks out: callers see [`ContainerState`], not runc's JSON.
//!
//! crun 1.8 refuses hybrid cgroup hosts (v1 controllers plus a cgroup2 tree at
//! /sys/fs/cgroup/unified that holds a controller such as hugetlb): "cgroups in hybrid mode
//! not supported, drop all controllers from cgroupv2". For such a host the driver runs crun
//! in a private mount namespace (`/` made rslave) where /sys/fs/cgroup/unified is detached:
//! crun then sees a cgroup v1 host and works. The state dir and the container's namespaces
//! are unaffected, so every verb (and runc) interoperates as usual.

mod bundle;
mod console;
mod types;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde::Deserialize;

pub(crate) use bundle::write_atomic;
pub use bundle::Bundle;
pub use console::ConsoleSocket;
pub use types::{
    ContainerState, CreateOptions, ExecOptions, RuntimeError, StartFailure, Status, StdioSet,
};

/// The runtime's log of a `run`, in the bundle.
const RUN_LOG: &str = "runtime-run.log";

/// A runc-compatible runtime binary plus its state directory.
#[derive(Debug, Clone)]
pub struct Runtime {
    binary: PathBuf,
    root: Option<PathBuf>,
    hide_unified_cgroup: bool,
}

impl Runtime {
    /// `binary` is a name on PATH (`runc`, `crun`) or a path. For crun on a hybrid cgroup
    /// host the driver hides /sys/fs/cgroup/unified (see the module docs).
    pub fn new(binary: impl Into<PathBuf>) -> Self {
        let binary = binary.into();
        let is_crun = binary
            .file_name()
            .is_some_and(|n| n.to_string_lossy().contains("crun"));
        Runtime {
            hide_unified_cgroup: is_crun && host_is_hybrid(),
            binary,
            root: None,
        }
    }

    /// Keep runtime state under `root` (`--root`) instead of the runtime's default.
    pub fn with_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.root = Some(root.into());
        self
    }

    /// Forces (or disables) the hybrid-cgroup workaround for runtimes not named crun.
    pub fn with_hidden_unified_cgroup(mut self, hide: bool) -> Self {
        self.hide_unified_cgroup = hide;
        self
    }

    /// The runtime binary.
    pub fn binary(&self) -> &Path {
        &self.binary
    }

    fn command(&self, verb: &str) -> Command {
        self.command_logging(verb, None)
    }

    /// Global flags (`--root`, `--log`) go before the verb.
    fn command_logging(&self, verb: &str, log: Option<&Path>) -> Command {
        let mut cmd = Command::new(&self.binary);
        if let Some(root) = &self.root {
            cmd.arg("--root").arg(root);
        }
        if let Some(log) = log {
            cmd.args(["--log-format", "json", "--log"]).arg(log);
        }
        if self.hide_unified_cgroup {
            crate::sys::run_without_unified_cgroup(&mut cmd);
        }
        cmd.arg(verb);
        cmd
    }

    /// Runs `cmd` with stdout/stderr captured; fails with the stderr line on non-zero exit.
    fn run(&self, verb: &'static str, id: &str, mut cmd: Command) -> Result<Vec<u8>, RuntimeError> {
        cmd.stdin(Stdio::null());
        let out = cmd
            .output()
            .map_err(|source| self.spawn_err(verb, source))?;
        if out.status.success() {
            return Ok(out.stdout);
        }
        Err(self.failed(
            verb,
            id,
            out.status.code(),
            &String::from_utf8_lossy(&out.stderr),
        ))
    }

    fn spawn_err(&self, verb: &'static str, source: std::io::Error) -> RuntimeError {
        RuntimeError::Spawn {
            binary: self.binary.clone(),
            verb,
            source,
        }
    }

    fn failed(
        &self,
        verb: &'static str,
        id: &str,
        code: Option<i32>,
        stderr: &str,
    ) -> RuntimeError {
        RuntimeError::Failed {
            binary: self.binary.clone(),
            verb,
            id: id.into(),
            code,
            stderr: one_line(stderr),
        }
    }

    /// Creates container `id` from a bundle; its init waits for [`Runtime::start`]. The
    /// runtime's own stderr is the container's, so errors are read from a log file in
    /// the bundle instead.
    pub fn create(&self, id: &str, opts: CreateOptions) -> Result<(), RuntimeError> {
        let log = opts.bundle.join("runtime-create.log");
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command_logging("create", Some(&log));
        cmd.arg("--bundle").arg(&opts.bundle);
        if let Some(p) = &opts.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        if let Some(s) = &opts.console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id)
            .stdin(opts.stdio.stdin)
            .stdout(opts.stdio.stdout)
            .stderr(opts.stdio.stderr);
        let status = cmd
            .status()
            .map_err(|source| self.spawn_err("create", source))?;
        if status.success() {
            return Ok(());
        }
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        Err(self.failed("create", id, status.code(), &last_log_error(&text)))
    }

    /// Creates and starts container `id` in one runtime process (`run`, not detached),
    /// the cheapest way to run a container that needs no terminal hand-over: the runtime
    /// stays as the parent of the container's init, passes signals sent to it on, exits
    /// with the init's code (128+n for signal n) and deletes the container itself. Reap
    /// the returned child with `waitpid`, then ask [`Runtime::run_error`] whether a
    /// non-zero code was the runtime failing rather than the container.
    pub fn spawn_run(&self, id: &str, opts: CreateOptions) -> Result<Child, RuntimeError> {
        let log = opts.bundle.join(RUN_LOG);
        let _ = std::fs::remove_file(&log);
        let mut cmd = self.command_logging("run", Some(&log));
        cmd.arg("--bundle").arg(&opts.bundle);
        if let Some(p) = &opts.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        cmd.arg(id)
            .stdin(opts.stdio.stdin)
            .stdout(opts.stdio.stdout)
            .stderr(opts.stdio.stderr);
        cmd.spawn().map_err(|source| self.spawn_err("run", source))
    }

    /// The error a finished [`Runtime::spawn_run`] logged, if it failed itself (a
    /// container exiting non-zero logs no error).
    pub fn run_error(&self, id: &str, bundle: &Path, code: i32) -> Option<RuntimeError> {
        let text = std::fs::read_to_string(bundle.join(RUN_LOG)).unwrap_or_default();
        let msg = logged_error(&text)?;
        Some(self.failed("run", id, Some(code), &msg))
    }

    /// Whether the runtime may still hold state for `id`: false only when its state
    /// directory (`<root>/<id>`, the layout runc and crun share) is known to be absent,
    /// so a clean `run` needs no `delete` round trip.
    pub fn may_have_state(&self, id: &str) -> bool {
        match &self.root {
            Some(root) => root.join(id).symlink_metadata().is_ok(),
            None => true,
        }
    }

    /// Starts the user process of a created container.
    pub fn start(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("start");
        cmd.arg(id);
        self.run("start", id, cmd).map(drop)
    }

    /// The runtime's state of `id`.
    pub fn state(&self, id: &str) -> Result<ContainerState, RuntimeError> {
        let mut cmd = self.command("state");
        cmd.arg(id);
        let out = self.run("state", id, cmd)?;
        serde_json::from_slice(&out).map_err(|source| RuntimeError::BadOutput {
            verb: "state",
            id: id.into(),
            source,
        })
    }

    /// Sends signal number `signal` to the init process (or every process with `all`).
    pub fn kill(&self, id: &str, signal: i32, all: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command("kill");
        if all {
            cmd.arg("--all");
        }
        cmd.arg(id).arg(signal.to_string());
        self.run("kill", id, cmd).map(drop)
    }

    /// Deletes the container's runtime state; `force` kills a running one first.
    pub fn delete(&self, id: &str, force: bool) -> Result<(), RuntimeError> {
        let mut cmd = self.command("delete");
        if force {
            cmd.arg("--force");
        }
        cmd.arg(id);
        self.run("delete", id, cmd).map(drop)
    }

    /// Freezes every process of the container.
    pub fn pause(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("pause");
        cmd.arg(id);
        self.run("pause", id, cmd).map(drop)
    }

    /// Thaws a paused container.
    pub fn resume(&self, id: &str) -> Result<(), RuntimeError> {
        let mut cmd = self.command("resume");
        cmd.arg(id);
        self.run("resume", id, cmd).map(drop)
    }

    /// Every container in the state dir.
    pub fn list(&self) -> Result<Vec<ContainerState>, RuntimeError> {
        let mut cmd = self.command("list");
        cmd.args(["--format", "json"]);
        let out = self.run("list", "", cmd)?;
        let list: Option<Vec<ContainerState>> =
            serde_json::from_slice(&out).map_err(|source| RuntimeError::BadOutput {
                verb: "list",
                id: String::new(),
                source,
            })?;
        Ok(list.unwrap_or_default())
    }

    /// Runs another process in a running container. Without `detach`, waits and returns
    /// the process's exit code (128+n if killed by signal n); with it, returns 0 once started.
    pub fn exec(&self, id: &str, opts: ExecOptions) -> Result<i32, RuntimeError> {
        let file = std::env::temp_dir().join(format!(
            "berth-exec-{id}-{}-{}.json",
            std::process::id(),
            unique()
        ));
        let json = serde_json::to_vec(&opts.process).expect("a Process always serializes");
        std::fs::write(&file, json).map_err(|source| RuntimeError::Io {
            path: file.clone(),
            source,
        })?;
        let mut cmd = self.command("exec");
        cmd.arg("--process").arg(&file);
        if opts.detach {
            cmd.arg("--detach");
        }
        if let Some(p) = &opts.pid_file {
            cmd.arg("--pid-file").arg(p);
        }
        if let Some(s) = &opts.console_socket {
            cmd.arg("--console-socket").arg(s);
        }
        cmd.arg(id)
            .stdin(opts.stdio.stdin)
            .stdout(opts.stdio.stdout)
            .stderr(opts.stdio.stderr);
        let status = cmd.status();
        let _ = std::fs::remove_file(&file);
        let status = status.map_err(|source| self.spawn_err("exec", source))?;
        use std::os::unix::process::ExitStatusExt;
        Ok(status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0)))
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// A hybrid host: /sys/fs/cgroup is not cgroup2 but a cgroup2 tree is mounted below it.
fn host_is_hybrid() -> bool {
    use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};
    let is_v2 = |p: &str| statfs(p).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC);
    !is_v2("/sys/fs/cgroup") && is_v2(crate::sys::UNIFIED_CGROUP)
}

/// Collapses multi-line stderr into one trimmed line.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// The last error message of a runc/crun JSON log (`{"level":"error","msg":...}`), or
/// the last line as is.
fn last_log_error(log: &str) -> String {
    logged_error(log)
        .or_else(|| log.lines().last().map(one_line))
        .unwrap_or_else(|| "failed (no log)".to_string())
}

/// The last error-level message of a runc/crun JSON log, as one line.
fn logged_error(log: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Line {
        level: Option<String>,
        msg: Option<String>,
    }
    log.lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<Line>(l).ok())
        .filter(|l| l.level.as_deref() == Some("error"))
        .find_map(|l| l.msg)
        .map(|m| one_line(&m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_json_parses() {
        let j = r#"{"ociVersion":"1.0.2","id":"c1","pid":42,"status":"paused","bundle":"/b","rootfs":"/b/rootfs"}"#;
        let s: ContainerState = serde_json::from_str(j).expect("parses");
        assert_eq!(
            (s.pid, s.status, s.bundle),
            (42, Status::Paused, PathBuf::from("/b"))
        );
        let s: ContainerState =
            serde_json::from_str(r#"{"id":"c","status":"weird"}"#).expect("parses");
        assert_eq!(s.status, Status::Unknown);
    }

    #[test]
    fn log_errors_become_one_line() {
        let log = "{\"level\":\"warning\",\"msg\":\"w\"}\n{\"level\":\"error\",\"msg\":\"bad\\nthing\"}\n{\"level\":\"info\",\"msg\":\"x\"}\n";
        assert_eq!(last_log_error(log), "bad thing");
        assert_eq!(last_log_error("plain text\n  last  line \n"), "last line");
        assert_eq!(one_line("a\n  b\n"), "a b");
    }
}
