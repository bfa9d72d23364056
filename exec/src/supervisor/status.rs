//! The supervisor's status file: how `run -d`, `ps` and `wait` learn what happened
//! without talking to the supervisor. Written atomically, read by polling.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use super::SupervisorError;

/// Name of the status file in the container's state dir.
pub const STATUS_FILE: &str = "status.json";

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Phase {
    /// The supervisor is creating the container.
    Creating,
    /// The container's process runs.
    Running,
    /// The process exited; `exit_code` is set.
    Exited,
    /// Creating or starting failed; `error` says why.
    Failed,
}

/// The content of `status.json`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerStatus {
    /// Phase.
    pub phase: Phase,
    /// The supervisor's pid.
    pub supervisor_pid: i32,
    /// Host pid of the container's init, once created.
    #[serde(default)]
    pub pid: Option<i32>,
    /// Exit code (128+n when killed by signal n).
    #[serde(default)]
    pub exit_code: Option<i32>,
    /// Start time, seconds since the epoch.
    #[serde(default)]
    pub started_at: Option<u64>,
    /// Exit time, seconds since the epoch.
    #[serde(default)]
    pub finished_at: Option<u64>,
    /// Why creating, starting or cleaning up failed.
    #[serde(default)]
    pub error: Option<String>,
}

impl ContainerStatus {
    /// Whether the container is done, one way or another.
    pub fn is_final(&self) -> bool {
        matches!(self.phase, Phase::Exited | Phase::Failed)
    }
}

/// Seconds since the epoch, now.
pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Writes the status file atomically.
pub fn write_status(state_dir: &Path, status: &ContainerStatus) -> Result<(), SupervisorError> {
    let json = serde_json::to_vec(status).expect("a status always serializes");
    crate::runtime::write_atomic(&state_dir.join(STATUS_FILE), &json).map_err(SupervisorError::from)
}

/// Reads the status file.
pub fn read_status(state_dir: &Path) -> Result<ContainerStatus, SupervisorError> {
    let path = state_dir.join(STATUS_FILE);
    let data = std::fs::read(&path).map_err(|source| SupervisorError::Io {
        path: path.clone(),
        source,
    })?;
    serde_json::from_slice(&data).map_err(|source| SupervisorError::BadStatus { path, source })
}

/// Whether `pid` is a live (non-zombie) process.
pub fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the ")" that closes the command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.trim_start().chars().next())
            .is_some_and(|c| c != 'Z'),
        Err(_) => false,
    }
}

/// Polls the status file until `done` holds, the supervisor dies, or `timeout` passes.
fn poll(
    state_dir: &Path,
    timeout: Option<Duration>,
    done: impl Fn(&ContainerStatus) -> bool,
) -> Result<ContainerStatus, SupervisorError> {
    let deadline = timeout.map(|t| Instant::now() + t);
    loop {
        let status = match read_status(state_dir) {
            Ok(s) => Some(s),
            Err(SupervisorError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(e) => return Err(e),
        };
        if let Some(s) = &status {
            if done(s) {
                return Ok(s.clone());
            }
            if !process_alive(s.supervisor_pid) {
                // It may have written a final status just before dying: read once more.
                let last = read_status(state_dir)?;
                return if done(&last) {
                    Ok(last)
                } else {
                    Err(SupervisorError::SupervisorGone(state_dir.to_path_buf()))
                };
            }
        }
        if deadline.is_some_and(|d| Instant::now() > d) {
            return Err(SupervisorError::Timeout(state_dir.to_path_buf()));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// For `run -d`: returns once the container runs (or already finished, or failed).
pub fn wait_started(
    state_dir: &Path,
    timeout: Duration,
) -> Result<ContainerStatus, SupervisorError> {
    let s = poll(state_dir, Some(timeout), |s| s.phase != Phase::Creating)?;
    match (s.phase, &s.error) {
        (Phase::Failed, Some(e)) => Err(SupervisorError::StartFailed(e.clone())),
        _ => Ok(s),
    }
}

/// For `berth wait`: the exit code once the container has exited.
pub fn wait_for_exit(state_dir: &Path, timeout: Option<Duration>) -> Result<i32, SupervisorError> {
    let s = poll(state_dir, timeout, ContainerStatus::is_final)?;
    match (s.exit_code, s.error) {
        (Some(code), _) => Ok(code),
        (None, e) => Err(SupervisorError::StartFailed(e.unwrap_or_default())),
    }
}
