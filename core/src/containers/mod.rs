//! Containers: a SQLite record (what it was made from) plus a state dir under the run
//! root that its supervisor owns (how it is doing).
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
//! exits; `remove` removes the snapshot, the state dir and the record.

mod create;
mod launch;

use std::path::PathBuf;
use std::time::Duration;

use berth_cas::containers::{self as records, ContainerRecord};
use berth_exec::runtime::{Bundle, ExecOptions, Runtime, Status};
use berth_exec::supervisor::{self, ContainerStatus, Phase};
use serde::Serialize;

pub use create::{CreateRequest, Created, Rootfs};
pub use launch::SUPERVISE_VERB;

use crate::error::{Error, Result};
use crate::ids::short;
use crate::namespace::Ns;
use crate::root::Root;

/// The container services of a namespace.
pub struct Containers<'a> {
    ns: Ns<'a>,
}

impl<'a> Ns<'a> {
    /// The container services of this namespace.
    pub fn containers(&self) -> Containers<'a> {
        Containers { ns: *self }
    }
}

/// Where a container is in its life.
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

    /// The init's host pid while it lives.
    pub fn pid(&self) -> Option<i32> {
        match self {
            State::Running { pid } | State::Paused { pid } => Some(*pid),
            _ => None,
        }
    }
}

/// A container as `ps` and `inspect-container` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ContainerInfo {
    /// Its id.
    pub id: String,
    /// Its name.
    pub name: Option<String>,
    /// The image it runs.
    pub image: String,
    /// The platform manifest its rootfs and config come from.
    pub manifest: String,
    /// The process args.
    pub command: Vec<String>,
    /// `running`, `exited(0)`, ...
    pub status: String,
    /// Its init's host pid while it runs.
    pub pid: Option<i32>,
    /// Seconds since the epoch.
    pub created: i64,
    /// When it started (seconds since the epoch).
    pub started: Option<u64>,
    /// When it ended.
    pub finished: Option<i64>,
    /// How it ended.
    pub exit_code: Option<i32>,
    /// The checkout it runs in.
    pub checkout: Option<String>,
    /// Its own snapshot.
    pub snapshot: Option<String>,
    /// The OCI runtime.
    pub runtime: String,
    /// `none`, `host`, `ns:NAME` or `container:ID`, as asked for.
    pub network: String,
    /// The network namespace it is in (`net:[inode]`) while it runs.
    pub netns: Option<String>,
    /// Its state directory.
    pub state_dir: String,
    /// Why it failed to start.
    pub error: Option<String>,
}

/// How [`Containers::remove`] treats a live container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Force {
    /// Refuse.
    No,
    /// Kill it first.
    Kill,
}

/// Another command to run in a running container.
#[derive(Debug, Clone, Default)]
pub struct ExecRequest {
    /// Command and arguments.
    pub command: Vec<String>,
    /// Allocate a terminal.
    pub tty: bool,
    /// Keep stdin open.
    pub interactive: bool,
    /// Extra environment (`K=V`, or `K` to copy the caller's).
    pub env: Vec<String>,
    /// Working directory.
    pub workdir: Option<String>,
    /// User (name or uid[:gid]).
    pub user: Option<String>,
}

/// The name if it has one, else the short id.
pub fn display_name(rec: &ContainerRecord) -> String {
    rec.name
        .clone()
        .unwrap_or_else(|| short(&rec.id).to_string())
}

impl Root {
    /// The runtime driver for a container.
    pub(crate) fn runtime_of(&self, rec: &ContainerRecord) -> Runtime {
        Runtime::new(&rec.runtime).with_root(self.layout().runtime_root(&rec.runtime))
    }

    /// The supervisor's status file of container `id`, if any.
    pub(crate) fn status_of(&self, id: &str) -> Option<ContainerStatus> {
        supervisor::read_status(&self.layout().container(id)).ok()
    }

    /// A container's state: the status file first, the runtime for paused, the record last.
    pub(crate) fn state_of(&self, rec: &ContainerRecord) -> State {
        let Some(st) = self.status_of(&rec.id) else {
            return match rec.exit_code {
                Some(code) => State::Exited(code),
                None if self.layout().container(&rec.id).join("bundle").exists() => State::Created,
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
                match self.runtime_of(rec).state(&rec.id) {
                    Ok(s) if s.status == Status::Paused => State::Paused { pid },
                    _ => State::Running { pid },
                }
            }
            Phase::Creating | Phase::Running => State::Dead,
        }
    }

    fn has_live_supervisor(&self, id: &str) -> bool {
        self.status_of(id)
            .is_some_and(|s| !s.is_final() && supervisor::process_alive(s.supervisor_pid))
    }
}

impl Containers<'_> {
    fn root(&self) -> &Root {
        self.ns.root()
    }

    /// Finds a container by full id, name, or unique id prefix.
    pub fn find(&self, query: &str) -> Result<ContainerRecord> {
        let meta = self.root().store().meta();
        let ns = self.ns.name();
        if let Some(c) = meta.container(ns, query)? {
            return Ok(c);
        }
        if let Some(c) = meta.container_named(ns, query)? {
            return Ok(c);
        }
        let is_hex = !query.is_empty() && query.chars().all(|c| c.is_ascii_hexdigit());
        let mut found: Vec<ContainerRecord> = match is_hex {
            true => meta
                .containers(ns)?
                .into_iter()
                .filter(|c| c.id.starts_with(&query.to_ascii_lowercase()))
                .collect(),
            false => Vec::new(),
        };
        match found.len() {
            0 => Err(Error::ContainerNotFound(query.to_string())),
            1 => Ok(found.remove(0)),
            count => Err(Error::AmbiguousContainer {
                prefix: query.to_string(),
                count,
            }),
        }
    }

    /// A container's state.
    pub fn state(&self, rec: &ContainerRecord) -> State {
        self.root().state_of(rec)
    }

    /// Every container of the namespace with its state, oldest first.
    pub fn list(&self) -> Result<Vec<ContainerInfo>> {
        let records = self.root().store().meta().containers(self.ns.name())?;
        Ok(records.into_iter().map(|r| self.info(r)).collect())
    }

    /// One container as `inspect` shows it.
    pub fn inspect(&self, query: &str) -> Result<ContainerInfo> {
        Ok(self.info(self.find(query)?))
    }

    fn info(&self, rec: ContainerRecord) -> ContainerInfo {
        let root = self.root();
        let state = root.state_of(&rec);
        let st = root.status_of(&rec.id);
        let netns = state
            .pid()
            .and_then(|pid| std::fs::read_link(format!("/proc/{pid}/ns/net")).ok())
            .map(|l| l.to_string_lossy().into_owned());
        ContainerInfo {
            status: state.label(),
            pid: state.pid(),
            exit_code: match state {
                State::Exited(n) => Some(n),
                _ => rec.exit_code,
            },
            error: match &state {
                State::Failed(e) => Some(e.clone()),
                _ => None,
            },
            started: st.as_ref().and_then(|s| s.started_at),
            finished: st
                .as_ref()
                .and_then(|s| s.finished_at.map(|t| t as i64))
                .or(rec.finished),
            state_dir: root.layout().container(&rec.id).display().to_string(),
            netns,
            id: rec.id,
            name: rec.name,
            image: rec.image,
            manifest: rec.manifest,
            command: rec.command,
            created: rec.created,
            checkout: rec.checkout,
            snapshot: rec.snapshot,
            runtime: rec.runtime,
            network: rec.network,
        }
    }

    /// The container, which must be running or paused.
    fn live(&self, query: &str) -> Result<(ContainerRecord, State)> {
        let rec = self.find(query)?;
        let state = self.state(&rec);
        if !state.is_live() {
            return Err(Error::WrongState {
                container: display_name(&rec),
                state: state.label(),
                need: "it is not running",
            });
        }
        Ok((rec, state))
    }

    /// Sends a signal to a running container's init.
    pub fn kill(&self, query: &str, signal: i32) -> Result<ContainerRecord> {
        let (rec, _) = self.live(query)?;
        self.root().runtime_of(&rec).kill(&rec.id, signal, false)?;
        Ok(rec)
    }

    /// The stop signal, `grace` to exit, then SIGKILL to every process. A paused
    /// container is thawed after the signal so it is delivered.
    pub fn stop(&self, query: &str, grace: Duration) -> Result<ContainerRecord> {
        let (rec, state) = self.live(query)?;
        self.stop_record(&rec, &state, grace)?;
        Ok(rec)
    }

    fn stop_record(&self, rec: &ContainerRecord, state: &State, grace: Duration) -> Result<()> {
        let rt = self.root().runtime_of(rec);
        rt.kill(&rec.id, rec.stop_signal, false)?;
        if matches!(state, State::Paused { .. }) {
            rt.resume(&rec.id)?;
        }
        if self.wait_exit(&rec.id, Some(grace)).is_err() {
            self.kill_now(rec, &State::Running { pid: 0 })?;
        }
        Ok(())
    }

    /// Freezes every process of a running container.
    pub fn pause(&self, query: &str) -> Result<ContainerRecord> {
        let (rec, state) = self.live(query)?;
        if matches!(state, State::Paused { .. }) {
            return Err(Error::WrongState {
                container: display_name(&rec),
                state: state.label(),
                need: "it is paused already",
            });
        }
        self.root().runtime_of(&rec).pause(&rec.id)?;
        Ok(rec)
    }

    /// Thaws a paused container.
    pub fn resume(&self, query: &str) -> Result<ContainerRecord> {
        let (rec, state) = self.live(query)?;
        if !matches!(state, State::Paused { .. }) {
            return Err(Error::WrongState {
                container: display_name(&rec),
                state: state.label(),
                need: "it is not paused",
            });
        }
        self.root().runtime_of(&rec).resume(&rec.id)?;
        Ok(rec)
    }

    /// Waits for a container to exit; returns its code.
    pub fn wait(&self, query: &str) -> Result<i32> {
        let rec = self.find(query)?;
        match self.state(&rec) {
            State::Exited(n) => Ok(n),
            State::Created if self.root().status_of(&rec.id).is_none() => Err(Error::WrongState {
                container: display_name(&rec),
                state: "created".into(),
                need: "it has not been started",
            }),
            State::Failed(e) => Err(Error::WrongState {
                container: display_name(&rec),
                state: format!("failed ({e})"),
                need: "it never ran",
            }),
            State::Dead => Err(Error::WrongState {
                container: display_name(&rec),
                state: "dead".into(),
                need: "its supervisor is gone without recording an exit",
            }),
            State::Created | State::Running { .. } | State::Paused { .. } => {
                self.wait_exit(&rec.id, None)
            }
        }
    }

    /// Waits for a live container's supervisor to record its end; returns the code.
    pub(crate) fn wait_exit(&self, id: &str, timeout: Option<Duration>) -> Result<i32> {
        Ok(supervisor::wait_for_exit(
            &self.root().layout().container(id),
            timeout,
        )?)
    }

    /// Runs another command in a running container, with the caller's stdio; returns
    /// its exit code.
    pub fn exec(&self, query: &str, req: &ExecRequest) -> Result<i32> {
        use berth_exec::runtime::StdioSet;
        use berth_exec::spec;
        let rec = self.find(query)?;
        let state = self.state(&rec);
        if !matches!(state, State::Running { .. }) {
            return Err(Error::WrongState {
                container: display_name(&rec),
                state: state.label(),
                need: "it is not running",
            });
        }
        let bundle = self.root().layout().container(&rec.id).join("bundle");
        let spec = oci_spec::runtime::Spec::load(bundle.join("config.json")).map_err(|e| {
            Error::Unsupported(format!("reading the spec of {}: {e}", display_name(&rec)))
        })?;
        let mut process = spec
            .process()
            .clone()
            .ok_or_else(|| Error::Unsupported("the container's spec has no process".into()))?;
        process.set_args(Some(req.command.clone()));
        process.set_terminal(Some(req.tty));
        let base_env = process.env().clone().unwrap_or_default();
        process.set_env(Some(spec::merge_env(&base_env, &req.env, |k| {
            std::env::var(k).ok()
        })));
        if let Some(w) = &req.workdir {
            process.set_cwd(w.into());
        }
        if let Some(u) = &req.user {
            let r = spec::resolve_user(&bundle.join("rootfs"), u)?;
            let mut user = process.user().clone();
            user.set_uid(r.uid);
            user.set_gid(r.gid);
            user.set_additional_gids((!r.additional_gids.is_empty()).then_some(r.additional_gids));
            process.set_user(user);
        }
        let mut stdio = StdioSet::inherit();
        if !req.interactive && !req.tty {
            stdio.stdin = std::process::Stdio::null();
        }
        let opts = ExecOptions {
            process,
            detach: false,
            pid_file: None,
            console_socket: None,
            stdio,
        };
        let rt = self.root().runtime_of(&rec);
        match rt.exec(&rec.id, opts) {
            Err(e) => match e.start_failure() {
                Some(f) => Err(start_failure(f, &req.command)),
                None => Err(e.into()),
            },
            Ok(code) => Ok(code),
        }
    }

    /// Removes a container: kills it if asked, then its runtime state, mounts,
    /// snapshot, state dir and record. Keeps going after a failed step and reports the
    /// first failure.
    pub fn remove(&self, rec: &ContainerRecord, force: Force) -> Result<()> {
        let root = self.root();
        let state = root.state_of(rec);
        if state.is_live() || state == State::Created && root.has_live_supervisor(&rec.id) {
            if force == Force::No {
                return Err(Error::WrongState {
                    container: display_name(rec),
                    state: state.label(),
                    need: "stop it first or use rm -f",
                });
            }
            self.kill_now(rec, &state)?;
        }
        let dir = root.layout().container(&rec.id);
        let clean_exit =
            matches!(root.status_of(&rec.id), Some(s) if s.is_final() && s.error.is_none());
        let mut errors: Vec<Error> = Vec::new();
        if !clean_exit && dir.exists() {
            // A created, failed or dead container may still have runtime state.
            let rt = root.runtime_of(rec);
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
                errors.push(Error::io(format!("removing {}", dir.display()))(e));
            }
        }
        if let (Some(name), Some(key)) = (&rec.snapshotter, &rec.snapshot) {
            let removed = root
                .snapshotter(name)
                .and_then(|s| root.remove_snapshot(name, s.as_ref(), key));
            match removed {
                Ok(()) | Err(Error::Snapshot(berth_fs::snapshot::SnapshotError::NotFound(_))) => {}
                Err(e) => errors.push(e),
            }
        }
        if errors.is_empty() {
            root.store()
                .meta()
                .write(|tx| records::delete_container(tx, &rec.id))?;
            return Ok(());
        }
        Err(errors.remove(0))
    }

    /// SIGKILL to every process of the container (thawing it first), then waits for
    /// the supervisor to clean up.
    pub(crate) fn kill_now(&self, rec: &ContainerRecord, state: &State) -> Result<()> {
        let root = self.root();
        let rt = root.runtime_of(rec);
        if matches!(state, State::Paused { .. }) {
            rt.resume(&rec.id)?;
        }
        // Between create and start the init may not be killable yet: retry until it ends.
        for _ in 0..100 {
            let _ = rt.kill(&rec.id, libc::SIGKILL, true);
            if self
                .wait_exit(&rec.id, Some(Duration::from_millis(100)))
                .is_ok()
                || !root.has_live_supervisor(&rec.id)
            {
                return Ok(());
            }
        }
        Err(Error::Timeout(format!(
            "waiting for container {} to die",
            display_name(rec)
        )))
    }

    /// Running containers of this namespace that use checkout `dir`: refused (an error
    /// naming them) unless `force`, which stops them first.
    pub(crate) fn stop_users_of(&self, dir: &str, force: bool) -> Result<()> {
        let records = self.root().store().meta().containers(self.ns.name())?;
        let users: Vec<(ContainerRecord, State)> = records
            .into_iter()
            .filter(|c| c.checkout.as_deref() == Some(dir))
            .map(|c| {
                let s = self.state(&c);
                (c, s)
            })
            .filter(|(_, s)| s.is_live())
            .collect();
        if users.is_empty() {
            return Ok(());
        }
        if !force {
            return Err(Error::CheckoutInUse {
                dir: dir.to_string(),
                containers: users
                    .iter()
                    .map(|(c, _)| display_name(c))
                    .collect::<Vec<_>>()
                    .join(", "),
            });
        }
        for (c, s) in users {
            self.stop_record(&c, &s, Duration::from_secs(10))?;
        }
        Ok(())
    }

    /// The state dir of a container.
    pub fn state_dir(&self, rec: &ContainerRecord) -> PathBuf {
        self.root().layout().container(&rec.id)
    }
}

/// The typed error for a command that cannot start.
pub(crate) fn start_failure(f: berth_exec::runtime::StartFailure, command: &[String]) -> Error {
    let cmd = command.first().cloned().unwrap_or_default();
    match f {
        berth_exec::runtime::StartFailure::NotFound => Error::CommandNotFound(cmd),
        berth_exec::runtime::StartFailure::NotExecutable => Error::CommandNotExecutable(cmd),
    }
}
