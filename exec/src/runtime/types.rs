//! The driver's public values: errors, the runtime's view of a container, verb options.

use std::path::PathBuf;
use std::process::Stdio;

use serde::Deserialize;

/// Errors from the runtime binary or the files around it.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The runtime binary could not be started.
    #[error("run {binary} {verb}: {source}")]
    Spawn {
        /// The runtime binary.
        binary: PathBuf,
        /// The verb.
        verb: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
    /// The runtime ran and failed.
    #[error("{binary} {verb} {id}: {stderr}")]
    Failed {
        /// The runtime binary.
        binary: PathBuf,
        /// The verb.
        verb: &'static str,
        /// The container id ("" for list).
        id: String,
        /// Its exit code, if it exited.
        code: Option<i32>,
        /// Its error output, on one line.
        stderr: String,
    },
    /// The runtime printed JSON we cannot read.
    #[error("{verb} {id}: unreadable runtime output: {source}")]
    BadOutput {
        /// The verb.
        verb: &'static str,
        /// The container id.
        id: String,
        /// The parse error.
        source: serde_json::Error,
    },
    /// A bundle or state file could not be written or read.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Mounting or unmounting the rootfs failed.
    #[error(transparent)]
    Mount(#[from] berth_mount::MountError),
    /// The console socket failed.
    #[error("console socket {path}: {source}")]
    Console {
        /// The socket path.
        path: PathBuf,
        /// The kernel's answer.
        source: nix::Error,
    },
    /// The runtime never sent the pty master.
    #[error("console socket {0}: the runtime sent no terminal")]
    NoConsole(PathBuf),
}

/// Why a container's process could not start, as docker's exit codes tell it apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartFailure {
    /// The command is not in the container (docker exits 127).
    NotFound,
    /// The command exists but cannot be executed (docker exits 126).
    NotExecutable,
}

impl StartFailure {
    /// Reads runc's and crun's one-line reasons for a failed exec.
    pub fn classify(message: &str) -> Option<StartFailure> {
        let m = message.to_ascii_lowercase();
        if m.contains("executable file not found")
            || m.contains("no such file or directory")
            || m.contains("not found")
        {
            Some(StartFailure::NotFound)
        } else if m.contains("permission denied") || m.contains("exec format error") {
            Some(StartFailure::NotExecutable)
        } else {
            None
        }
    }

    /// docker's exit code for it.
    pub fn exit_code(self) -> i32 {
        match self {
            StartFailure::NotFound => 127,
            StartFailure::NotExecutable => 126,
        }
    }
}

impl RuntimeError {
    /// Whether the runtime failed because the container's command cannot start.
    pub fn start_failure(&self) -> Option<StartFailure> {
        match self {
            RuntimeError::Failed { verb, stderr, .. }
                if matches!(*verb, "create" | "run" | "start" | "exec") =>
            {
                StartFailure::classify(stderr)
            }
            _ => None,
        }
    }
}

/// Container status as the runtime reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Being created.
    Creating,
    /// Created, process not yet started.
    Created,
    /// Process running.
    Running,
    /// Frozen by `pause`.
    Paused,
    /// Process gone.
    Stopped,
    /// Anything else a runtime may report.
    #[serde(other)]
    Unknown,
}

/// The runtime's view of one container.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ContainerState {
    /// Container id.
    pub id: String,
    /// Host pid of the container's init (0 once stopped).
    #[serde(default)]
    pub pid: i32,
    /// Status.
    pub status: Status,
    /// Bundle directory.
    #[serde(default)]
    pub bundle: PathBuf,
}

/// What `create` needs beyond the id.
#[derive(Debug)]
pub struct CreateOptions {
    /// Bundle directory (config.json + rootfs).
    pub bundle: PathBuf,
    /// Where the runtime writes the init pid.
    pub pid_file: Option<PathBuf>,
    /// Where the runtime sends the pty master (needed when `process.terminal`).
    pub console_socket: Option<PathBuf>,
    /// The container's stdin/stdout/stderr: the runtime hands its own to the container.
    pub stdio: StdioSet,
}

/// Three standard streams for a process the runtime starts.
#[derive(Debug)]
pub struct StdioSet {
    /// Standard input.
    pub stdin: Stdio,
    /// Standard output.
    pub stdout: Stdio,
    /// Standard error.
    pub stderr: Stdio,
}

impl StdioSet {
    /// The caller's own streams.
    pub fn inherit() -> Self {
        StdioSet {
            stdin: Stdio::inherit(),
            stdout: Stdio::inherit(),
            stderr: Stdio::inherit(),
        }
    }
    /// /dev/null for all three.
    pub fn null() -> Self {
        StdioSet {
            stdin: Stdio::null(),
            stdout: Stdio::null(),
            stderr: Stdio::null(),
        }
    }
}

/// What `exec` needs: the process (as in config.json's `process`) and how to run it.
#[derive(Debug)]
pub struct ExecOptions {
    /// The process to start inside the container.
    pub process: oci_spec::runtime::Process,
    /// Return once started instead of waiting for the exit code.
    pub detach: bool,
    /// Where the runtime writes the process pid.
    pub pid_file: Option<PathBuf>,
    /// Where the runtime sends the pty master when `process.terminal`.
    pub console_socket: Option<PathBuf>,
    /// The process's streams.
    pub stdio: StdioSet,
}
