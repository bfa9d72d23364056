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
