//! Containers as the CLI sees them: a SQLite record (what it was made from) plus a state
//! dir under the run root that the supervisor owns (how it is doing).
//!
//! ```text
//! <run_root>/containers/<first 32 hex digits of the id>/
//!     supervisor.json   how to run it (berth-exec SupervisorConfig)
//!     status.json       written by the supervisor: creating → running → exited/failed
//!     bundle/           config.json + rootfs/ (the snapshot or checkout, mounted)
//!     supervisor.log    stderr of a detached supervisor
//! <run_root>/runtime/<runtime name>/   the OCI runtime's --root
//! ```
//!
//! A container with a state dir but no status.json is *created*: its bundle is ready and
//! `start` launches a supervisor. The supervisor unmounts the bundle when the container
//! exits; `rm` removes the snapshot, the state dir and the record.

pub mod create;
pub mod launch;

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use berth_cas::containers::{self as records, ContainerRecord};
use berth_cas::Store;
use berth_exec::runtime::{Bundle, Runtime, Status};
use berth_exec::supervisor::{self, ContainerStatus, Phase};

use crate::context::Context;
use crate::unpack;

/// Where a container's run state lives. Named by the first 32 hex digits (128 bits) of
/// the id: the console socket inside must fit a unix socket path (108 bytes).
pub fn state_dir(ctx: &Context, id: &str) -> PathBuf {
    ctx.run_root
        .join("containers")
        .join(id.get(..32).unwrap_or(id))
}

/// The runtime's `--root` for containers berth runs with `runtime`.
pub fn runtime_root(ctx: &Context, runtime: &str) -> PathBuf {
    let name = Path::new(runtime)
        .file_name()
        .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned());
    ctx.run_root.join("runtime").join(name)
}

/// The runtime driver for a container.
pub fn runtime_of(ctx: &Context, rec: &ContainerRecord) -> Runtime {
    Runtime::new(&rec.runtime).with_root(runtime_root(ctx, &rec.runtime))
}

/// Finds a container by full id, name, or unique id prefix.
pub fn find(store: &Store, query: &str) -> Result<ContainerRecord> {
    let meta = store.meta();
    if let Some(c) = meta.container(query)? {
        return Ok(c);
    }
    if let Some(c) = meta.container_named(query)? {
        return Ok(c);
    }
    let is_hex = !query.is_empty() && query.chars().all(|c| c.is_ascii_hexdigit());
    let mut found: Vec<ContainerRecord> = match is_hex {
        true => meta
            .containers()?
            .into_iter()
            .filter(|c| c.id.starts_with(&query.to_ascii_lowercase()))
            .collect(),
        false => Vec::new(),
    };
    match found.len() {
        0 => bail!("no such container: {query}"),
        1 => Ok(found.remove(0)),
        n => bail!("container id prefix {query} is ambiguous ({n} containers match)"),
    }
}

/// Where a container is in its life, as `ps` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Bundle ready, never started (or being started).
    Created,
    /// Its process runs.
    Running {
        /// Host pid of its init.
        pid: i32,
    },
    /// Frozen.
    Paused {
        /// Host pid of its init.
        pid: i32,
    },
    /// Exited with this code.
    Exited(i32),
    /// Creating or starting failed.
    Failed(String),
    /// Its supervisor vanished without recording an end (killed, or the host rebooted).
    Dead,
}

impl State {
    /// `created`, `running`, `paused`, `exited(3)`, `failed`, `dead`.
    pub fn label(&self) -> String {
        match self {
            State::Created => "created".into(),
            State::Running { .. } => "running".into(),
            State::Paused { .. } => "paused".into(),
            State::Exited(code) => format!("exited({code})"),
            State::Failed(_) => "failed".into(),
            State::Dead => "dead".into(),
        }
    }

    /// Running or paused: a process exists.
    pub fn is_live(&self) -> bool {
        matches!(self, State::Running { .. } | State::Paused { .. })
    }
}

/// The supervisor's status file, if any.
pub fn status_of(ctx: &Context, id: &str) -> Option<ContainerStatus> {
    supervisor::read_status(&state_dir(ctx, id)).ok()
}

/// The container's state: the status file first, the runtime for paused, the record last.
pub fn state_of(ctx: &Context, rec: &ContainerRecord) -> State {
    let Some(st) = status_of(ctx, &rec.id) else {
        return match rec.exit_code {
            Some(code) => State::Exited(code),
            None if state_dir(ctx, &rec.id).join("bundle").exists() => State::Created,
            None => State::Dead,
        };
    };
    let alive = supervisor::process_alive(st.supervisor_pid);
    match st.phase {
        Phase::Exited => State::Exited(st.exit_code.unwrap_or(-1)),
        Phase::Failed => State::Failed(st.error.unwrap_or_default()),
        Phase::Creating if alive => State::Created,
        Phase::Running if alive => {
            let pid = st.pid.unwrap_or(0);
            match runtime_of(ctx, rec).state(&rec.id) {
                Ok(s) if s.status == Status::Paused => State::Paused { pid },
                _ => State::Running { pid },
            }
        }
        Phase::Creating | Phase::Running => State::Dead,
    }
}

/// Waits for a live container's supervisor to record its end; returns the exit code.
pub fn wait_exit(ctx: &Context, id: &str, timeout: Option<Duration>) -> Result<i32> {
    supervisor::wait_for_exit(&state_dir(ctx, id), timeout)
        .with_context(|| format!("waiting for container {}", short(id)))
}

/// The first 12 hex digits, as `ps` shows ids.
pub fn short(id: &str) -> &str {
    id.get(..12).unwrap_or(id)
}

/// How `rm` treats a live container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Refuse.
    No,
    /// Kill it first.
    Kill,
}

/// Removes a container: kills it if asked, then its runtime state, mounts, snapshot,
/// state dir and record. Keeps going after a failed step and reports the first failure.
pub fn remove(ctx: &Context, store: &Store, rec: &ContainerRecord, force: Force) -> Result<()> {
    remove_with(ctx, store, rec, force, None)
}

/// [`remove`], with the container's snapshotter if the caller has it open (it must be
/// the one the record names).
pub fn remove_with(
    ctx: &Context,
    store: &Store,
    rec: &ContainerRecord,
    force: Force,
    snap: Option<&dyn berth_fs::snapshot::Snapshotter>,
) -> Result<()> {
    let state = state_of(ctx, rec);
    if state.is_live() || state == State::Created && has_live_supervisor(ctx, &rec.id) {
        if force == Force::No {
            bail!(
                "container {} is {}: stop it first or use rm -f",
                display_name(rec),
                state.label()
            );
        }
        kill_now(ctx, rec, &state)?;
    }
    let dir = state_dir(ctx, &rec.id);
    let clean_exit =
        matches!(status_of(ctx, &rec.id), Some(s) if s.is_final() && s.error.is_none());
    let mut errors: Vec<anyhow::Error> = Vec::new();
    if !clean_exit && dir.exists() {
        // A created, failed or dead container may still have runtime state.
        let rt = runtime_of(ctx, rec);
        if rt.state(&rec.id).is_ok() {
            if let Err(e) = rt.delete(&rec.id, true) {
                errors.push(e.into());
            }
        }
    }
    // The supervisor removes the bundle of a container that ran; no mount table to read.
    if dir.join("bundle").exists() {
        if let Err(e) = Bundle::open(dir.join("bundle")).remove() {
            errors.push(e.into());
        }
    }
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        if e.kind() != std::io::ErrorKind::NotFound {
            errors.push(anyhow::Error::new(e).context(format!("removing {}", dir.display())));
        }
    }
    if let (Some(kind), Some(key)) = (&rec.snapshotter, &rec.snapshot) {
        let removed = match snap {
            Some(s) if unpack::kind_name(s.kind()) == kind.as_str() => Ok(s.remove(key)),
            _ => ctx.snapshotter_named(kind).map(|s| s.remove(key)),
        };
        match removed {
            Ok(Ok(())) | Ok(Err(berth_fs::snapshot::SnapshotError::NotFound(_))) => {}
            Ok(Err(e)) => errors.push(e.into()),
            Err(e) => errors.push(e),
        }
    }
    if errors.is_empty() {
        store
            .meta()
            .write(|tx| records::delete_container(tx, &rec.id))?;
        return Ok(());
    }
    Err(errors.remove(0)).with_context(|| format!("removing container {}", display_name(rec)))
}

fn has_live_supervisor(ctx: &Context, id: &str) -> bool {
    status_of(ctx, id).is_some_and(|s| !s.is_final() && supervisor::process_alive(s.supervisor_pid))
}

/// SIGKILL to every process of the container (thawing it first), then waits for the
/// supervisor to clean up.
pub fn kill_now(ctx: &Context, rec: &ContainerRecord, state: &State) -> Result<()> {
    let rt = runtime_of(ctx, rec);
    if matches!(state, State::Paused { .. }) {
        rt.resume(&rec.id)?;
    }
    // Between create and start the init may not be killable yet: retry until it ends.
    for _ in 0..100 {
        let _ = rt.kill(&rec.id, libc::SIGKILL, true);
        if supervisor::wait_for_exit(&state_dir(ctx, &rec.id), Some(Duration::from_millis(100)))
            .is_ok()
            || !has_live_supervisor(ctx, &rec.id)
        {
            return Ok(());
        }
    }
    bail!("container {} did not die", display_name(rec))
}

/// The name if it has one, else the short id.
pub fn display_name(rec: &ContainerRecord) -> String {
    rec.name
        .clone()
        .unwrap_or_else(|| short(&rec.id).to_string())
}
