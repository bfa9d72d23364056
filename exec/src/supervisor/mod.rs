//! The per-container supervisor: the one process that watches a container for its life.
//!
//! Design:
//! - The CLI saves a [`SupervisorConfig`] in the container's state dir. For a detached
//!   container it re-execs itself (`berth <internal verb> <state-dir>`, before any thread
//!   starts) and that process calls [`SupervisorConfig::load`] then [`run`]; `run -d` returns
//!   after [`wait_started`]. In the foreground the CLI process calls [`run`] itself (still
//!   single-threaded): it holds the caller's stdio, so the container inherits it.
//! - [`run`] blocks the signals it handles (read back from a signalfd), becomes a child
//!   subreaper (so the container's init, orphaned when `runtime create` exits, is re-parented
//!   to it), calls setsid when detached, runs `create` + `start`, and writes `status.json`
//!   (`creating` → `running` with the pid → `exited` with code and time, or `failed`).
//!   A foreground container without a terminal runs as one `runtime run` instead (no
//!   console to receive between create and start): the runtime process stays our child,
//!   receives the forwarded signals, and deletes its state itself.
//!   The final status is written after cleanup, so a waiter that sees it finds no runtime
//!   state or mounts left.
//! - While the container runs, SIGINT/SIGTERM/SIGHUP/SIGQUIT/SIGUSR1/SIGUSR2 are forwarded to
//!   its init (`kill(2)` on the pid: it is our unreaped child, so the pid cannot be reused);
//!   SIGCHLD reaps. With a terminal, the pty master comes through the console socket, the
//!   caller's terminal goes raw, bytes are copied both ways and SIGWINCH resizes.
//! - Once init is reaped: `runtime delete --force`, then the bundle's mounts and
//!   directory are removed if asked. Whatever else (`--rm`, metadata) the caller does after
//!   [`run`] returns.

mod io;
mod status;

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::unistd::Pid;
use serde::{Deserialize, Serialize};

use crate::runtime::{Bundle, ConsoleSocket, CreateOptions, Runtime, RuntimeError, StdioSet};
pub use status::{
    process_alive, read_status, wait_for_exit, wait_started, ContainerStatus, Phase, STATUS_FILE,
};

/// Name of the saved config in the state dir.
pub const CONFIG_FILE: &str = "supervisor.json";

/// Errors of the supervisor and of waiting on it.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    /// The runtime failed.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// A state file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A state file holds something else than expected.
    #[error("{path}: {source}")]
    BadStatus {
        /// The file.
        path: PathBuf,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A process-level call (signal mask, subreaper, setsid) failed.
    #[error("supervisor setup ({what}): {source}")]
    Setup {
        /// Which call.
        what: &'static str,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The runtime's pid file holds no pid.
    #[error("pid file {0}: no pid")]
    BadPidFile(PathBuf),
    /// The container could not be created or started.
    #[error("container failed to start: {0}")]
    StartFailed(String),
    /// The supervisor died without writing a final status.
    #[error("supervisor of {0} is gone without recording an exit")]
    SupervisorGone(PathBuf),
    /// Waiting took longer than allowed.
    #[error("timed out waiting on {0}")]
    Timeout(PathBuf),
}

impl SupervisorError {
    /// Whether the container failed because its command cannot start (127/126).
    pub fn start_failure(&self) -> Option<crate::runtime::StartFailure> {
        match self {
            SupervisorError::Runtime(e) => e.start_failure(),
            SupervisorError::StartFailed(msg) => crate::runtime::StartFailure::classify(msg),
            _ => None,
        }
    }
}

/// What the caller of [`run_with`] is told while the container lives.
pub trait Hooks {
    /// The container's init runs as host pid `pid`.
    fn started(&self, _pid: i32) {}
}

/// Hooks that do nothing.
pub struct NoHooks;
impl Hooks for NoHooks {}

/// Everything the supervisor needs, saved as JSON so a re-exec'd process can load it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SupervisorConfig {
    /// Container id.
    pub id: String,
    /// Runtime binary (`runc`, `crun`, a path).
    pub runtime: PathBuf,
    /// Runtime `--root`, if not its default.
    pub runtime_root: Option<PathBuf>,
    /// Bundle dir (config.json written, rootfs mounted).
    pub bundle: PathBuf,
    /// The container's state dir: status.json, pid file, console socket.
    pub state_dir: PathBuf,
    /// Detached: new session, stdio from the files below (default /dev/null).
    pub detached: bool,
    /// The spec asks for a terminal (`process.terminal`).
    pub terminal: bool,
    /// Detached stdin source.
    pub stdin: Option<PathBuf>,
    /// Detached stdout (appended).
    pub stdout: Option<PathBuf>,
    /// Detached stderr (appended; ignored with a terminal).
    pub stderr: Option<PathBuf>,
    /// Unmount and delete the bundle when the container is gone.
    pub remove_bundle: bool,
}

impl SupervisorConfig {
    /// The runtime driver this config names.
    pub fn runtime(&self) -> Runtime {
        let rt = Runtime::new(&self.runtime);
        match &self.runtime_root {
            Some(root) => rt.with_root(root),
            None => rt,
        }
    }

    /// Saves the config as `<state_dir>/supervisor.json`.
    pub fn save(&self) -> Result<(), SupervisorError> {
        let io = |source| SupervisorError::Io {
            path: self.state_dir.clone(),
            source,
        };
        std::fs::create_dir_all(&self.state_dir).map_err(io)?;
        let json = serde_json::to_vec_pretty(self).expect("a config always serializes");
        Ok(crate::runtime::write_atomic(
            &self.state_dir.join(CONFIG_FILE),
            &json,
        )?)
    }

    /// Loads a saved config.
    pub fn load(state_dir: &Path) -> Result<Self, SupervisorError> {
        let path = state_dir.join(CONFIG_FILE);
        let data = std::fs::read(&path).map_err(|source| SupervisorError::Io {
            path: path.clone(),
            source,
        })?;
        serde_json::from_slice(&data).map_err(|source| SupervisorError::BadStatus { path, source })
    }
}

/// Supervises one container from create to cleanup; returns its exit code. Call it in a
/// single-threaded process (see the module docs).
pub fn run(cfg: &SupervisorConfig) -> Result<i32, SupervisorError> {
    run_with(cfg, &NoHooks)
}

/// [`run`], telling `hooks` what happens.
pub fn run_with(cfg: &SupervisorConfig, hooks: &dyn Hooks) -> Result<i32, SupervisorError> {
    let setup = |what| move |source| SupervisorError::Setup { what, source };
    if cfg.detached {
        // Already a group leader (e.g. spawned with setsid) is fine.
        let _ = nix::unistd::setsid();
    }
    let signals = io::Signals::block().map_err(setup("block signals"))?;
    nix::sys::prctl::set_child_subreaper(true).map_err(setup("child subreaper"))?;
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| SupervisorError::Io {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let mut status = ContainerStatus {
        phase: Phase::Creating,
        supervisor_pid: std::process::id() as i32,
        pid: None,
        exit_code: None,
        started_at: None,
        finished_at: None,
        error: None,
    };
    status::write_status(&cfg.state_dir, &status)?;
    let runtime = cfg.runtime();
    if !cfg.terminal && !cfg.detached {
        return run_oneshot(cfg, &runtime, &signals, status, hooks);
    }
    let started = create_and_start(cfg, &runtime);
    let (pid, pty, _raw) = match started {
        Ok(s) => s,
        Err(e) => {
            let cleaned = cleanup(cfg, &runtime);
            status.phase = Phase::Failed;
            status.error = Some(match cleaned {
                Ok(()) => e.to_string(),
                Err(c) => format!("{e}; cleanup: {c}"),
            });
            status.finished_at = Some(status::now());
            let _ = status::write_status(&cfg.state_dir, &status);
            return Err(e);
        }
    };
    status.phase = Phase::Running;
    status.pid = Some(pid.as_raw());
    status.started_at = Some(status::now());
    status::write_status(&cfg.state_dir, &status)?;
    hooks.started(pid.as_raw());
    let code = io::event_loop(&signals, pid, pty);
    status.finished_at = Some(status::now());
    // Cleanup first, so whoever sees the final status finds no runtime state or mounts left.
    let cleaned = cleanup(cfg, &runtime);
    status.phase = Phase::Exited;
    status.exit_code = Some(code);
    status.error = cleaned.as_ref().err().map(|e| format!("cleanup: {e}"));
    status::write_status(&cfg.state_dir, &status)?;
    cleaned.map(|()| code)
}

/// A foreground container without a terminal: one `runtime run` (see
/// [`Runtime::spawn_run`]) instead of create + start + delete, which costs two runtime
/// processes more. `running` is recorded once the runtime writes the pid file.
fn run_oneshot(
    cfg: &SupervisorConfig,
    runtime: &Runtime,
    signals: &io::Signals,
    mut status: ContainerStatus,
    hooks: &dyn Hooks,
) -> Result<i32, SupervisorError> {
    let pid_file = cfg.state_dir.join("init.pid");
    let opts = CreateOptions {
        bundle: cfg.bundle.clone(),
        pid_file: Some(pid_file.clone()),
        console_socket: None,
        stdio: StdioSet::inherit(),
    };
    let outcome = runtime.spawn_run(&cfg.id, opts).map(|child| {
        let runner = Pid::from_raw(child.id() as i32);
        io::runner_loop(signals, runner, || {
            let Ok(pid) = read_pid(&pid_file) else {
                return false;
            };
            status.phase = Phase::Running;
            status.pid = Some(pid.as_raw());
            status.started_at = Some(status::now());
            if let Err(e) = status::write_status(&cfg.state_dir, &status) {
                tracing::warn!("container {}: {e}", cfg.id);
            }
            hooks.started(pid.as_raw());
            true
        })
    });
    let started = status.pid.is_some() || read_pid(&pid_file).is_ok();
    let (code, failure): (i32, Option<SupervisorError>) = match outcome {
        Err(e) => (-1, Some(e.into())),
        Ok(0) => (0, None),
        Ok(code) => match runtime.run_error(&cfg.id, &cfg.bundle, code) {
            Some(e) => (code, Some(e.into())),
            None if !started => (
                code,
                Some(SupervisorError::StartFailed(format!(
                    "the runtime exited with code {code} before the container started"
                ))),
            ),
            None => (code, None),
        },
    };
    status.finished_at = Some(status::now());
    let cleaned = cleanup(cfg, runtime);
    let result = match failure {
        Some(e) => {
            status.phase = Phase::Failed;
            status.error = Some(match &cleaned {
                Ok(()) => e.to_string(),
                Err(c) => format!("{e}; cleanup: {c}"),
            });
            Err(e)
        }
        None => {
            status.phase = Phase::Exited;
            status.exit_code = Some(code);
            status.error = cleaned.as_ref().err().map(|e| format!("cleanup: {e}"));
            cleaned.map(|()| code)
        }
    };
    status::write_status(&cfg.state_dir, &status)?;
    result
}

type Started = (Pid, Option<io::Pty>, Option<io::RawMode>);

fn create_and_start(cfg: &SupervisorConfig, runtime: &Runtime) -> Result<Started, SupervisorError> {
    let pid_file = cfg.state_dir.join("init.pid");
    let console = match cfg.terminal {
        true => Some(ConsoleSocket::bind(cfg.state_dir.join("console.sock"))?),
        false => None,
    };
    let stdio = match (cfg.detached, cfg.terminal) {
        (_, true) => StdioSet::null(),
        (false, false) => StdioSet::inherit(),
        (true, false) => StdioSet {
            stdin: open_in(cfg.stdin.as_deref())?.into(),
            stdout: open_out(cfg.stdout.as_deref())?.into(),
            stderr: open_out(cfg.stderr.as_deref())?.into(),
        },
    };
    let opts = CreateOptions {
        bundle: cfg.bundle.clone(),
        pid_file: Some(pid_file.clone()),
        console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
        stdio,
    };
    runtime.create(&cfg.id, opts)?;
    let pid = read_pid(&pid_file)?;
    let (pty, raw) = match &console {
        Some(c) => {
            let master = File::from(c.receive_master(Duration::from_secs(10), || false)?);
            let (pty, raw) = attach_pty(cfg, master)?;
            pty.sync_window_size();
            (Some(pty), raw)
        }
        None => (None, None),
    };
    runtime.start(&cfg.id)?;
    Ok((pid, pty, raw))
}

/// Wires the pty master to the caller's terminal (foreground) or to the stdio files.
fn attach_pty(
    cfg: &SupervisorConfig,
    master: File,
) -> Result<(io::Pty, Option<io::RawMode>), SupervisorError> {
    if cfg.detached {
        let input = cfg.stdin.as_deref().map(|p| open_in(Some(p))).transpose()?;
        return Ok((
            io::Pty {
                master,
                input,
                output: open_out(cfg.stdout.as_deref())?,
                winsize_from: None,
            },
            None,
        ));
    }
    let dup = |fd: std::os::fd::BorrowedFd<'_>| {
        fd.try_clone_to_owned()
            .map(File::from)
            .map_err(|source| SupervisorError::Io {
                path: "stdio".into(),
                source,
            })
    };
    let stdin = dup(std::io::stdin().as_fd())?;
    let raw = io::RawMode::enter(stdin.as_fd());
    let winsize_from = raw
        .as_ref()
        .map(|_| dup(std::io::stdin().as_fd()))
        .transpose()?;
    let output = dup(std::io::stdout().as_fd())?;
    Ok((
        io::Pty {
            master,
            input: Some(stdin),
            output,
            winsize_from,
        },
        raw,
    ))
}

fn open_in(path: Option<&Path>) -> Result<File, SupervisorError> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    File::open(path).map_err(|source| SupervisorError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn open_out(path: Option<&Path>) -> Result<File, SupervisorError> {
    let path = path.unwrap_or(Path::new("/dev/null"));
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|source| SupervisorError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn read_pid(path: &Path) -> Result<Pid, SupervisorError> {
    let text = std::fs::read_to_string(path).map_err(|source| SupervisorError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let pid: i32 = text
        .trim()
        .parse()
        .map_err(|_| SupervisorError::BadPidFile(path.to_path_buf()))?;
    Ok(Pid::from_raw(pid))
}

/// Deletes the runtime state (if any is left: `run` deletes its own) and, if asked,
/// the bundle; reports the first failure.
fn cleanup(cfg: &SupervisorConfig, runtime: &Runtime) -> Result<(), SupervisorError> {
    let deleted = match runtime.may_have_state(&cfg.id) {
        true => runtime.delete(&cfg.id, true),
        false => Ok(()),
    };
    let removed = if cfg.remove_bundle {
        Bundle::open(&cfg.bundle).remove()
    } else {
        Ok(())
    };
    deleted?;
    removed?;
    Ok(())
}
