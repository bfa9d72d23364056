//! Container verbs: run, create, start, ps, exec, kill, stop, pause, resume, wait, rm,
//! inspect-container, and the hidden supervisor verb. The machinery is in
//! `crate::containers`; these handlers check states and print.
//!
//! `stop` of a paused container sends the stop signal, then thaws it so the signal is
//! delivered (and, after the grace period, SIGKILL as usual).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use berth_exec::runtime::{ExecOptions, StdioSet};
use berth_exec::spec;
use berth_exec::supervisor;
use serde::Serialize;

use crate::cli::{ContainerArg, CreateArgs, ExecArgs, KillArgs, PsArgs, RmArgs, RunArgs, StopArgs};
use crate::containers::create::CommandNotFound;
use crate::containers::{
    self as c, create::create as make, display_name, find, launch, runtime_of, short, state_dir,
    state_of, Force, State,
};
use crate::context::Context;
use crate::output;

fn code(n: i32) -> ExitCode {
    ExitCode::from((n & 0xff) as u8)
}

/// `berth run`.
pub fn run(ctx: &Context, a: RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let created = match make(ctx, &a.create, a.detach) {
        Ok(c) => c,
        Err(e) if e.downcast_ref::<CommandNotFound>().is_some() => {
            eprintln!("berth: {e:#}");
            return Ok(code(127));
        }
        Err(e) => return Err(e),
    };
    let id = created.rec.id.clone();
    let result = match a.detach {
        true => launch::detached(ctx, &id).map(|_| 0),
        false => launch::foreground(
            ctx,
            &created.cfg,
            a.create.interactive,
            created.snapshotter.as_ref(),
        )
        .map_err(Into::into),
    };
    match result {
        Ok(n) if a.detach => {
            writeln!(out, "{id}")?;
            Ok(code(n))
        }
        Ok(n) => Ok(code(n)),
        Err(e) => {
            discard_failed(ctx, &id);
            start_failure(e, &created.rec.command)
        }
    }
}

/// A container that never ran is removed, once its supervisor is gone.
fn discard_failed(ctx: &Context, id: &str) {
    if let Some(st) = c::status_of(ctx, id) {
        for _ in 0..500 {
            if !supervisor::process_alive(st.supervisor_pid) {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    let removed = ctx.store().and_then(|store| match find(&store, id) {
        Ok(rec) => c::remove(ctx, &store, &rec, Force::Kill),
        Err(_) => Ok(()), // --rm already removed it
    });
    if let Err(e) = removed {
        tracing::warn!("container {}: {e:#}", short(id));
    }
}

/// Docker's codes for a process that could not start: 127 not found, 126 not executable.
fn start_failure(e: anyhow::Error, command: &[String]) -> Result<ExitCode> {
    let text = format!("{e:#}");
    let cmd = command.first().map_or("", String::as_str);
    let (n, why) = if text.contains("not found") || text.contains("no such file or directory") {
        (127, "command not found in the container")
    } else if text.contains("permission denied") {
        (126, "command cannot be executed in the container")
    } else {
        return Err(e);
    };
    eprintln!("berth: {cmd}: {why} ({text})");
    Ok(code(n))
}

/// `berth create`.
pub fn create(ctx: &Context, a: CreateArgs, out: &mut dyn Write) -> Result<()> {
    let created = make(ctx, &a, true)?;
    writeln!(out, "{}", created.rec.id)?;
    Ok(())
}

/// `berth start`.
pub fn start(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let rec = find(&store, &a.container)?;
    let state = state_of(ctx, &rec);
    if state != State::Created || c::status_of(ctx, &rec.id).is_some() {
        bail!(
            "container {} is {}: only a created container can start",
            display_name(&rec),
            state.label()
        );
    }
    drop(store);
    launch::detached(ctx, &rec.id)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

#[derive(Serialize)]
struct PsRow {
    id: String,
    name: Option<String>,
    image: String,
    command: Vec<String>,
    status: String,
    pid: Option<i32>,
    created: i64,
    started: Option<u64>,
    finished: Option<i64>,
    exit_code: Option<i32>,
    checkout: Option<String>,
    runtime: String,
    /// `none`, `host`, `ns:NAME` or `container:ID`, as asked for.
    network: String,
    /// The network namespace it is in (`net:[inode]`) while it runs.
    netns: Option<String>,
}

/// `net:[4026531840]` for a live process.
fn netns_of(pid: Option<i32>) -> Option<String> {
    let link = std::fs::read_link(format!("/proc/{}/ns/net", pid?)).ok()?;
    Some(link.to_string_lossy().into_owned())
}

fn ps_row(ctx: &Context, rec: berth_cas::containers::ContainerRecord) -> PsRow {
    let state = state_of(ctx, &rec);
    let st = c::status_of(ctx, &rec.id);
    PsRow {
        status: state.label(),
        pid: match state {
            State::Running { pid } | State::Paused { pid } => Some(pid),
            _ => None,
        },
        exit_code: match state {
            State::Exited(n) => Some(n),
            _ => rec.exit_code,
        },
        started: st.as_ref().and_then(|s| s.started_at),
        finished: st
            .as_ref()
            .and_then(|s| s.finished_at.map(|t| t as i64))
            .or(rec.finished),
        id: rec.id,
        name: rec.name,
        image: rec.image,
        command: rec.command,
        created: rec.created,
        checkout: rec.checkout,
        runtime: rec.runtime,
        netns: netns_of(match state {
            State::Running { pid } | State::Paused { pid } => Some(pid),
            _ => None,
        }),
        network: rec.network,
    }
}

/// `berth ps`.
pub fn ps(ctx: &Context, a: PsArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let rows: Vec<PsRow> = store
        .meta()
        .containers()?
        .into_iter()
        .map(|rec| ps_row(ctx, rec))
        .filter(|r| a.all || r.status == "running" || r.status == "paused")
        .collect();
    if ctx.json {
        return output::json(out, &rows);
    }
    if a.quiet {
        for r in rows {
            writeln!(out, "{}", r.id)?;
        }
        return Ok(());
    }
    let mut table = vec![
        ["ID", "NAME", "IMAGE", "COMMAND", "STATUS", "STARTED", "NET"]
            .map(String::from)
            .to_vec(),
    ];
    for r in rows {
        let mut cmd = r.command.join(" ");
        if cmd.chars().count() > 30 {
            cmd = cmd.chars().take(29).chain(['…']).collect();
        }
        table.push(vec![
            short(&r.id).to_string(),
            r.name.unwrap_or_default(),
            r.checkout.unwrap_or(r.image),
            cmd,
            r.status,
            r.started.map_or("-".into(), |t| output::age(t as i64)),
            r.network,
        ]);
    }
    output::table(out, &table)
}

/// `berth exec`: the container's own process settings with another command.
pub fn exec(ctx: &Context, a: ExecArgs, _out: &mut dyn Write) -> Result<ExitCode> {
    let store = ctx.store()?;
    let rec = find(&store, &a.container)?;
    drop(store);
    match state_of(ctx, &rec) {
        State::Running { .. } => {}
        s => bail!(
            "container {} is {}, not running",
            display_name(&rec),
            s.label()
        ),
    }
    let bundle = state_dir(ctx, &rec.id).join("bundle");
    let spec = oci_spec::runtime::Spec::load(bundle.join("config.json"))
        .with_context(|| format!("reading the spec of {}", display_name(&rec)))?;
    let mut process = spec.process().clone().context("the spec has no process")?;
    process.set_args(Some(a.command.clone()));
    process.set_terminal(Some(a.tty));
    let base_env = process.env().clone().unwrap_or_default();
    process.set_env(Some(spec::merge_env(&base_env, &a.env, |k| {
        std::env::var(k).ok()
    })));
    if let Some(w) = &a.workdir {
        process.set_cwd(w.into());
    }
    if let Some(u) = &a.user {
        let r = spec::resolve_user(&bundle.join("rootfs"), u)?;
        let mut user = process.user().clone();
        user.set_uid(r.uid);
        user.set_gid(r.gid);
        user.set_additional_gids((!r.additional_gids.is_empty()).then_some(r.additional_gids));
        process.set_user(user);
    }
    let mut stdio = StdioSet::inherit();
    if !a.interactive && !a.tty {
        stdio.stdin = std::process::Stdio::null();
    }
    let opts = ExecOptions {
        process,
        detach: false,
        pid_file: None,
        console_socket: None,
        stdio,
    };
    Ok(code(runtime_of(ctx, &rec).exec(&rec.id, opts)?))
}

/// The container, which must be running or paused.
fn live(ctx: &Context, query: &str) -> Result<(berth_cas::containers::ContainerRecord, State)> {
    let store = ctx.store()?;
    let rec = find(&store, query)?;
    let state = state_of(ctx, &rec);
    if !state.is_live() {
        bail!(
            "container {} is {}, not running",
            display_name(&rec),
            state.label()
        );
    }
    Ok((rec, state))
}

/// `berth kill`.
pub fn kill(ctx: &Context, a: KillArgs, out: &mut dyn Write) -> Result<()> {
    let sig = spec::parse_signal(&a.signal)?;
    let (rec, _) = live(ctx, &a.container)?;
    runtime_of(ctx, &rec).kill(&rec.id, sig, false)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth stop`: the stop signal, `-t` seconds of grace, then SIGKILL to every process.
pub fn stop(ctx: &Context, a: StopArgs, out: &mut dyn Write) -> Result<()> {
    for query in &a.containers {
        let (rec, state) = live(ctx, query)?;
        let rt = runtime_of(ctx, &rec);
        rt.kill(&rec.id, rec.stop_signal, false)?;
        if matches!(state, State::Paused { .. }) {
            rt.resume(&rec.id)?;
        }
        let graceful = c::wait_exit(ctx, &rec.id, Some(Duration::from_secs(a.time)));
        if graceful.is_err() {
            c::kill_now(ctx, &rec, &State::Running { pid: 0 })?;
        }
        writeln!(out, "{}", display_name(&rec))?;
    }
    Ok(())
}

/// `berth pause`.
pub fn pause(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let (rec, state) = live(ctx, &a.container)?;
    if matches!(state, State::Paused { .. }) {
        bail!("container {} is already paused", display_name(&rec));
    }
    runtime_of(ctx, &rec).pause(&rec.id)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth resume`.
pub fn resume(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let (rec, state) = live(ctx, &a.container)?;
    if !matches!(state, State::Paused { .. }) {
        bail!("container {} is not paused", display_name(&rec));
    }
    runtime_of(ctx, &rec).resume(&rec.id)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth wait`: prints the exit code and exits with it.
pub fn wait(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<ExitCode> {
    let store = ctx.store()?;
    let rec = find(&store, &a.container)?;
    drop(store); // a long wait must not hold the store's lock
    let n = match state_of(ctx, &rec) {
        State::Exited(n) => n,
        State::Created if c::status_of(ctx, &rec.id).is_none() => {
            bail!("container {} has not been started", display_name(&rec))
        }
        State::Failed(e) => bail!("container {} failed to start: {e}", display_name(&rec)),
        State::Dead => bail!(
            "container {}: its supervisor is gone without recording an exit",
            display_name(&rec)
        ),
        State::Created | State::Running { .. } | State::Paused { .. } => {
            c::wait_exit(ctx, &rec.id, None)?
        }
    };
    writeln!(out, "{n}")?;
    Ok(code(n))
}

/// `berth rm`.
pub fn rm(ctx: &Context, a: RmArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    for query in &a.containers {
        let rec = find(&store, query)?;
        let force = if a.force { Force::Kill } else { Force::No };
        c::remove(ctx, &store, &rec, force)?;
        writeln!(out, "{}", display_name(&rec))?;
    }
    Ok(())
}

/// `berth inspect-container`.
pub fn inspect(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let rec = find(&store, &a.container)?;
    let state = state_of(ctx, &rec);
    let row = ps_row(ctx, rec.clone());
    let dir = state_dir(ctx, &rec.id);
    if ctx.json {
        let mut v = serde_json::to_value(&row)?;
        v["manifest"] = rec.manifest.clone().into();
        v["snapshot"] = rec.snapshot.clone().into();
        v["state_dir"] = dir.to_string_lossy().into_owned().into();
        v["error"] = match &state {
            State::Failed(e) => e.clone().into(),
            _ => serde_json::Value::Null,
        };
        return output::json(out, &v);
    }
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    writeln!(out, "id:        {}", rec.id)?;
    writeln!(out, "name:      {}", opt(rec.name.clone()))?;
    writeln!(out, "image:     {} ({})", rec.image, rec.manifest)?;
    writeln!(
        out,
        "rootfs:    {}",
        match (&rec.checkout, &rec.snapshot) {
            (Some(d), _) => format!("checkout {d}"),
            (None, Some(s)) => format!("snapshot {}/{s}", opt(rec.snapshotter.clone())),
            (None, None) => "-".into(),
        }
    )?;
    writeln!(out, "command:   {}", rec.command.join(" "))?;
    writeln!(
        out,
        "network:   {} {}",
        row.network,
        row.netns.clone().unwrap_or_default()
    )?;
    writeln!(out, "runtime:   {}", rec.runtime)?;
    writeln!(out, "status:    {}", state.label())?;
    writeln!(out, "pid:       {}", opt(row.pid.map(|p| p.to_string())))?;
    writeln!(out, "created:   {}", output::rfc3339(rec.created))?;
    writeln!(
        out,
        "started:   {}",
        opt(row.started.map(|t| output::rfc3339(t as i64)))
    )?;
    writeln!(out, "finished:  {}", opt(row.finished.map(output::rfc3339)))?;
    writeln!(out, "state dir: {}", dir.display())?;
    if let State::Failed(e) = state {
        writeln!(out, "error:     {e}")?;
    }
    Ok(())
}

/// `berth __supervise ID`: exits with the container's code.
pub fn supervise(ctx: &Context, a: ContainerArg) -> Result<ExitCode> {
    launch::supervise(ctx, &a.container).map(code)
}
