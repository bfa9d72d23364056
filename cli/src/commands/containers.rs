//! Container verbs: run, create, start, ps, exec, kill, stop, pause, resume, wait, rm,
//! inspect-container, and the hidden supervisor verb.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context as _, Result};
use berth_core::containers::{
    display_name, ContainerInfo, CreateRequest, ExecRequest, Force, Rootfs,
};
use berth_core::exec::spec::{self, MountRequest, RunOptions, TmpfsMount};
use berth_core::ids::short;

use super::code;
use crate::cli::{ContainerArg, CreateArgs, ExecArgs, KillArgs, PsArgs, RmArgs, RunArgs, StopArgs};
use crate::context::{platform, Context};
use crate::output;

/// `berth run`: create, then run in the foreground (or start detached).
pub fn run(ctx: &Context, a: RunArgs, out: &mut dyn Write) -> Result<ExitCode> {
    let ns = ctx.ns()?;
    let containers = ns.containers();
    let created = containers.create(&request(&a.create, a.detach)?)?;
    if a.detach {
        containers.start_detached(&created.record.id, &created.record.command)?;
        writeln!(out, "{}", created.record.id)?;
        return Ok(ExitCode::SUCCESS);
    }
    let n = containers.run_foreground(&created, a.create.interactive)?;
    Ok(code(n))
}

/// `berth create`.
pub fn create(ctx: &Context, a: CreateArgs, out: &mut dyn Write) -> Result<()> {
    let created = ctx.ns()?.containers().create(&request(&a, true)?)?;
    writeln!(out, "{}", created.record.id)?;
    Ok(())
}

/// The flags as the core's request (checked before anything touches the disk).
fn request(a: &CreateArgs, detached: bool) -> Result<CreateRequest> {
    let rootfs = match looks_like_dir(&a.image) {
        true => Rootfs::Checkout(PathBuf::from(&a.image)),
        false => Rootfs::Image(a.image.clone()),
    };
    Ok(CreateRequest {
        rootfs,
        platform: platform(a.platform.as_deref())?,
        name: a.name.clone(),
        auto_remove: a.rm,
        runtime: a.runtime.clone(),
        network: a.net.clone(),
        options: run_options(a)?,
        detached,
        stdout: a.stdout.clone(),
        stderr: a.stderr.clone(),
    })
}

/// A DIR argument looks like a path; anything else is an image name.
fn looks_like_dir(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." || s == ".."
}

fn run_options(a: &CreateArgs) -> Result<RunOptions> {
    let mut env = Vec::new();
    for f in &a.env_file {
        let text =
            std::fs::read_to_string(f).with_context(|| format!("reading {}", f.display()))?;
        env.extend(spec::parse_env_file(&text, f)?);
    }
    env.extend(a.env.iter().cloned());
    let mut mounts: Vec<MountRequest> = Vec::new();
    for m in &a.mounts {
        mounts.push(m.parse()?);
    }
    for t in &a.tmpfs {
        mounts.push(MountRequest::Tmpfs(t.parse::<TmpfsMount>()?));
    }
    Ok(RunOptions {
        id: String::new(),
        args: a.command.clone(),
        entrypoint: a.entrypoint.clone().map(|e| vec![e]),
        env,
        workdir: a.workdir.clone(),
        user: a.user.clone(),
        hostname: a.hostname.clone(),
        read_only: a.read_only,
        mounts,
        memory: a.memory.as_deref().map(spec::parse_bytes).transpose()?,
        cpus: a.cpus,
        pids_limit: a.pids_limit,
        cap_add: a.cap_add.clone(),
        cap_drop: a.cap_drop.clone(),
        privileged: a.privileged,
        terminal: a.tty,
        network: Default::default(),
    })
}

/// `berth start`.
pub fn start(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let rec = ctx.ns()?.containers().start(&a.container)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth ps`.
pub fn ps(ctx: &Context, a: PsArgs, out: &mut dyn Write) -> Result<()> {
    let rows: Vec<ContainerInfo> = ctx
        .ns()?
        .containers()
        .list()?
        .into_iter()
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

/// `berth exec`: exits with the command's code.
pub fn exec(ctx: &Context, a: ExecArgs) -> Result<ExitCode> {
    let req = ExecRequest {
        command: a.command,
        tty: a.tty,
        interactive: a.interactive,
        env: a.env,
        workdir: a.workdir,
        user: a.user,
    };
    Ok(code(ctx.ns()?.containers().exec(&a.container, &req)?))
}

/// `berth kill`.
pub fn kill(ctx: &Context, a: KillArgs, out: &mut dyn Write) -> Result<()> {
    let sig = spec::parse_signal(&a.signal)?;
    let rec = ctx.ns()?.containers().kill(&a.container, sig)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth stop`.
pub fn stop(ctx: &Context, a: StopArgs, out: &mut dyn Write) -> Result<()> {
    let ns = ctx.ns()?;
    for query in &a.containers {
        let rec = ns.containers().stop(query, Duration::from_secs(a.time))?;
        writeln!(out, "{}", display_name(&rec))?;
    }
    Ok(())
}

/// `berth pause`.
pub fn pause(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let rec = ctx.ns()?.containers().pause(&a.container)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth resume`.
pub fn resume(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let rec = ctx.ns()?.containers().resume(&a.container)?;
    writeln!(out, "{}", display_name(&rec))?;
    Ok(())
}

/// `berth wait`: prints the exit code and exits with it.
pub fn wait(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<ExitCode> {
    let n = ctx.ns()?.containers().wait(&a.container)?;
    writeln!(out, "{n}")?;
    Ok(code(n))
}

/// `berth rm`.
pub fn rm(ctx: &Context, a: RmArgs, out: &mut dyn Write) -> Result<()> {
    let ns = ctx.ns()?;
    let containers = ns.containers();
    for query in &a.containers {
        let rec = containers.find(query)?;
        let force = if a.force { Force::Kill } else { Force::No };
        containers
            .remove(&rec, force)
            .with_context(|| format!("removing container {}", display_name(&rec)))?;
        writeln!(out, "{}", display_name(&rec))?;
    }
    Ok(())
}

/// `berth inspect-container`.
pub fn inspect(ctx: &Context, a: ContainerArg, out: &mut dyn Write) -> Result<()> {
    let i = ctx.ns()?.containers().inspect(&a.container)?;
    if ctx.json {
        return output::json(out, &i);
    }
    let opt = |o: Option<String>| o.unwrap_or_else(|| "-".into());
    writeln!(out, "id:        {}", i.id)?;
    writeln!(out, "name:      {}", opt(i.name.clone()))?;
    writeln!(out, "image:     {} ({})", i.image, i.manifest)?;
    let rootfs = match (&i.checkout, &i.snapshot) {
        (Some(d), _) => format!("checkout {d}"),
        (None, Some(s)) => format!("snapshot {s}"),
        (None, None) => "-".into(),
    };
    writeln!(out, "rootfs:    {rootfs}")?;
    writeln!(out, "command:   {}", i.command.join(" "))?;
    writeln!(
        out,
        "network:   {} {}",
        i.network,
        i.netns.clone().unwrap_or_default()
    )?;
    writeln!(out, "runtime:   {}", i.runtime)?;
    writeln!(out, "status:    {}", i.status)?;
    writeln!(out, "pid:       {}", opt(i.pid.map(|p| p.to_string())))?;
    writeln!(out, "created:   {}", output::rfc3339(i.created))?;
    writeln!(
        out,
        "started:   {}",
        opt(i.started.map(|t| output::rfc3339(t as i64)))
    )?;
    writeln!(out, "finished:  {}", opt(i.finished.map(output::rfc3339)))?;
    writeln!(out, "state dir: {}", Path::new(&i.state_dir).display())?;
    if let Some(e) = &i.error {
        writeln!(out, "error:     {e}")?;
    }
    Ok(())
}

/// `berth __supervise ID`: exits with the container's code.
pub fn supervise(ctx: &Context, a: ContainerArg) -> Result<ExitCode> {
    Ok(code(ctx.ns()?.containers().supervise(&a.container)?))
}
