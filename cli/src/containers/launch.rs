//! Running a created container's supervisor: in this process for a foreground run, or
//! as a re-exec'd `berth __supervise ID` in its own session for a detached one. Either way
//! the store is closed while the container runs (its flock must not pin gc), and reopened
//! afterwards to record the exit or remove an `--rm` container. A foreground run keeps
//! the snapshotter (no lock of its own) open to remove the snapshot with.

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Context as _, Result};
use berth_cas::containers as records;
use berth_exec::supervisor::{self, ContainerStatus, SupervisorConfig, SupervisorError};
use berth_fs::snapshot::Snapshotter;

use super::{find, state_dir, Force};
use crate::context::Context;

/// The hidden verb a detached supervisor runs as.
pub const SUPERVISE_VERB: &str = "__supervise";

/// How long `run -d` and `start` wait for the container to be running.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Runs the container in this (single-threaded) process with the caller's stdio; returns
/// its exit code. Without `-i` (and no terminal) the container's stdin is /dev/null.
pub fn foreground(
    ctx: &Context,
    cfg: &SupervisorConfig,
    interactive: bool,
    snap: &dyn Snapshotter,
) -> Result<i32, SupervisorError> {
    if !interactive && !cfg.terminal {
        if let Ok(null) = std::fs::File::open("/dev/null") {
            let _ = nix::unistd::dup2_stdin(&null);
        }
    }
    let result = supervisor::run(cfg);
    finish(ctx, &cfg.id, Some(snap));
    result
}

/// Starts a detached supervisor and returns once the container runs (or has ended).
pub fn detached(ctx: &Context, id: &str) -> Result<ContainerStatus> {
    let dir = state_dir(ctx, id);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("supervisor.log"))
        .with_context(|| format!("opening {}", dir.display()))?;
    let exe = std::env::current_exe().context("finding the berth binary")?;
    // Absolute roots and cwd "/": the supervisor must not pin the caller's directory.
    Command::new(exe)
        .arg("--root")
        .arg(std::path::absolute(&ctx.root)?)
        .arg("--run-root")
        .arg(std::path::absolute(&ctx.run_root)?)
        .arg(SUPERVISE_VERB)
        .arg(id)
        .current_dir("/")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .context("starting the container's supervisor")?;
    Ok(supervisor::wait_started(&dir, START_TIMEOUT)?)
}

/// `berth __supervise ID`: the detached supervisor's whole life.
pub fn supervise(ctx: &Context, id: &str) -> Result<i32> {
    let _ = nix::unistd::setsid();
    let cfg = SupervisorConfig::load(&state_dir(ctx, id))?;
    let result = supervisor::run(&cfg);
    finish(ctx, id, None);
    Ok(result?)
}

/// After the supervisor: mirror the exit into the record, or remove an `--rm` container.
/// Failures here are logged, not fatal: the container itself has already ended.
/// `snap`, if given, is the container's snapshotter, already open.
fn finish(ctx: &Context, id: &str, snap: Option<&dyn Snapshotter>) {
    let done = || -> Result<()> {
        let store = ctx.store()?;
        let rec = find(&store, id)?;
        if rec.auto_remove {
            return super::remove_with(ctx, &store, &rec, Force::No, snap);
        }
        let st = supervisor::read_status(&state_dir(ctx, id))?;
        let finished = st
            .finished_at
            .map_or_else(berth_cas::meta::now, |t| t as i64);
        store
            .meta()
            .write(|tx| records::set_container_exit(tx, id, st.exit_code, finished))?;
        Ok(())
    };
    if let Err(e) = done() {
        tracing::warn!("container {}: after exit: {e:#}", super::short(id));
    }
}
