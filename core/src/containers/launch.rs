//! Running a created container's supervisor: in this process for a foreground run, or
//! as a re-exec'd `berth __supervise ID` in its own session for a detached one. Either
//! way, afterwards the exit is recorded (and journaled), or an `--rm` container removed.

use std::fs::OpenOptions;
use std::process::{Command, Stdio};
use std::time::Duration;

use berth_cas::containers as records;
use berth_exec::supervisor::{self, ContainerStatus, Hooks, SupervisorConfig, SupervisorError};

use super::{display_name, start_failure, Containers, Force, State};
use crate::error::{Error, Result};

/// The hidden verb a detached supervisor runs as.
pub const SUPERVISE_VERB: &str = "__supervise";

/// How long `run -d` and `start` wait for the container to be running.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Journals the start.
struct Journal<'a> {
    containers: &'a Containers<'a>,
    id: &'a str,
}

impl Hooks for Journal<'_> {
    fn started(&self, pid: i32) {
        self.containers
            .ns
            .event("/containers/start", self.id, &[("pid", pid.to_string())]);
    }
}

impl Containers<'_> {
    /// Runs a created container in this (single-threaded) process with the caller's
    /// stdio; returns its exit code. Without `interactive` (and no terminal) the
    /// container's stdin is /dev/null.
    pub fn run_foreground(&self, created: &super::Created, interactive: bool) -> Result<i32> {
        let cfg = &created.config;
        if !interactive && !cfg.terminal {
            if let Ok(null) = std::fs::File::open("/dev/null") {
                let _ = nix::unistd::dup2_stdin(&null);
            }
        }
        let result = supervisor::run_with(
            cfg,
            &Journal {
                containers: self,
                id: &cfg.id,
            },
        );
        self.finish(&cfg.id);
        self.outcome(&created.record.id, &created.record.command, result)
    }

    /// Starts a created container in the background; returns once it runs.
    pub fn start(&self, query: &str) -> Result<berth_cas::containers::ContainerRecord> {
        let rec = self.find(query)?;
        let state = self.state(&rec);
        if state != State::Created || self.root().status_of(&rec.id).is_some() {
            return Err(Error::WrongState {
                container: display_name(&rec),
                state: state.label(),
                need: "only a created container can start",
            });
        }
        self.start_detached(&rec.id, &rec.command)?;
        Ok(rec)
    }

    /// Starts a detached supervisor and returns once the container runs (or has ended).
    pub fn start_detached(&self, id: &str, command: &[String]) -> Result<ContainerStatus> {
        let root = self.root();
        let dir = root.layout().container(id);
        let log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("supervisor.log"))
            .map_err(Error::io(format!("opening {}", dir.display())))?;
        let abs = |p: &std::path::Path| {
            std::path::absolute(p).map_err(Error::io(format!("{}: bad path", p.display())))
        };
        // Absolute roots and cwd "/": the supervisor must not pin the caller's directory.
        Command::new(root.helper())
            .arg("--root")
            .arg(abs(root.layout().root())?)
            .arg("--run-root")
            .arg(abs(root.layout().run())?)
            .arg("--namespace")
            .arg(self.ns.name())
            .arg(SUPERVISE_VERB)
            .arg(id)
            .current_dir("/")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(Error::io("starting the container's supervisor"))?;
        match supervisor::wait_started(&dir, START_TIMEOUT) {
            Ok(st) => Ok(st),
            Err(e) => match self.outcome(id, command, Err(e)) {
                Err(e) => Err(e),
                Ok(_) => Err(Error::Unsupported("the container did not start".into())),
            },
        }
    }

    /// `berth __supervise ID`: the detached supervisor's whole life.
    pub fn supervise(&self, id: &str) -> Result<i32> {
        let _ = nix::unistd::setsid();
        let cfg = SupervisorConfig::load(&self.root().layout().container(id))?;
        let result = supervisor::run_with(
            &cfg,
            &Journal {
                containers: self,
                id,
            },
        );
        self.finish(id);
        Ok(result?)
    }

    /// A supervisor's result as the caller sees it: a command that cannot start is
    /// typed (docker's 127 and 126), and a container that never ran is removed.
    fn outcome(
        &self,
        id: &str,
        command: &[String],
        result: Result<i32, SupervisorError>,
    ) -> Result<i32> {
        match result {
            Ok(code) => Ok(code),
            Err(e) => {
                self.discard_failed(id);
                match e.start_failure() {
                    Some(f) => Err(start_failure(f, command)),
                    None => Err(e.into()),
                }
            }
        }
    }

    /// A container that never ran is removed, once its supervisor is gone.
    fn discard_failed(&self, id: &str) {
        if let Some(st) = self.root().status_of(id) {
            for _ in 0..500 {
                if !supervisor::process_alive(st.supervisor_pid) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        let removed = match self.find(id) {
            Ok(rec) => self.remove(&rec, Force::Kill),
            Err(_) => Ok(()), // --rm already removed it
        };
        if let Err(e) = removed {
            tracing::warn!("container {}: {e}", crate::ids::short(id));
        }
    }

    /// After the supervisor: journal and record the exit, or remove an `--rm` container.
    /// Failures are logged, not fatal: the container itself has already ended.
    fn finish(&self, id: &str) {
        let done = || -> Result<()> {
            let rec = self.find(id)?;
            let st = supervisor::read_status(&self.root().layout().container(id))?;
            if let Some(code) = st.exit_code {
                self.ns
                    .event("/containers/exit", id, &[("exit_code", code.to_string())]);
            }
            if rec.auto_remove {
                return self.remove(&rec, Force::No);
            }
            let finished = st
                .finished_at
                .map_or_else(berth_cas::meta::now, |t| t as i64);
            self.root()
                .store()
                .meta()
                .write(|tx| records::set_container_exit(tx, id, st.exit_code, finished))?;
            Ok(())
        };
        if let Err(e) = done() {
            tracing::warn!("container {}: after exit: {e}", crate::ids::short(id));
        }
    }
}
