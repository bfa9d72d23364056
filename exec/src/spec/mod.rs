//! The OCI runtime spec (`config.json`) for a container, built from the image's process
//! config and the user's `run` options with containerd's defaults.

mod defaults;
mod error;
mod parse;
mod user;

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder,
    LinuxDeviceCgroupBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    MountBuilder, PosixRlimitBuilder, PosixRlimitType, ProcessBuilder, RootBuilder, Spec,
    SpecBuilder, UserBuilder,
};
use serde::Deserialize;

pub use defaults::{
    host_is_cgroup2_only, ALL_CAPS, DEFAULT_CAPS, DEFAULT_PATH, MASKED_PATHS, READONLY_PATHS,
};
pub use error::SpecError;
pub use parse::{
    cpu_quota, parse_bytes, parse_env_file, parse_signal, MountRequest, TmpfsMount, CPU_PERIOD,
};
pub use user::{confined_path, resolve_user, ResolvedUser};

/// The parts of an OCI image config's `config` object that shape a process. Deserialize it
/// straight from the image config JSON so exec does not need the image model.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ImageProcessConfig {
    /// Prepended to the command.
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    /// Default command (replaced by user args).
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    /// `K=V` entries.
    #[serde(default)]
    pub env: Option<Vec<String>>,
    /// Default working directory.
    #[serde(default)]
    pub working_dir: Option<String>,
    /// Default user spec.
    #[serde(default)]
    pub user: Option<String>,
    /// Signal that asks the process to stop (default SIGTERM).
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// Docker-only: a default hostname.
    #[serde(default)]
    pub hostname: Option<String>,
}

impl ImageProcessConfig {
    /// The signal `berth stop` sends first.
    pub fn stop_signal(&self) -> Result<i32, SpecError> {
        self.stop_signal
            .as_deref()
            .filter(|s| !s.is_empty())
            .map_or(Ok(libc::SIGTERM), parse_signal)
    }
}

/// Which network namespace the container gets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum NetworkMode {
    /// A fresh, empty network namespace (loopback only).
    #[default]
    New,
    /// The host's network namespace (no namespace entry in the spec).
    Host,
    /// Join the namespace at this path (e.g. /run/netns/lab).
    Path(PathBuf),
}

/// What the user asked for on the `run` command line, already parsed.
#[derive(Debug, Clone, Default)]
pub struct RunOptions {
    /// Container id: names the cgroup and the default hostname.
    pub id: String,
    /// Args after the image: replace the image's Cmd.
    pub args: Vec<String>,
    /// `--entrypoint`: replaces Entrypoint and drops Cmd; `Some([""])` or `Some([])` clears it.
    pub entrypoint: Option<Vec<String>>,
    /// `--env-file` lines then `--env` values, in order: `K=V`, or `K` to copy from the caller.
    pub env: Vec<String>,
    /// `--workdir`.
    pub workdir: Option<String>,
    /// `--user`.
    pub user: Option<String>,
    /// `--hostname`.
    pub hostname: Option<String>,
    /// `--read-only` rootfs.
    pub read_only: bool,
    /// `--mount` and `--tmpfs` requests.
    pub mounts: Vec<MountRequest>,
    /// `--memory` in bytes.
    pub memory: Option<i64>,
    /// `--cpus`.
    pub cpus: Option<f64>,
    /// `--pids-limit` (-1 = unlimited).
    pub pids_limit: Option<i64>,
    /// `--cap-add` (names with or without `CAP_`, or `ALL`).
    pub cap_add: Vec<String>,
    /// `--cap-drop`.
    pub cap_drop: Vec<String>,
    /// `--privileged`: all capabilities, no masked paths, all devices, /sys writable.
    pub privileged: bool,
    /// `-t`: allocate a pty.
    pub terminal: bool,
    /// Network namespace choice.
    pub network: NetworkMode,
}

/// Builds the spec for `opts` over `image`. `rootfs` is where the container's root is
/// mounted now: its /etc/passwd and /etc/group resolve the user.
pub fn build_spec(
    image: &ImageProcessConfig,
    opts: &RunOptions,
    rootfs: &Path,
) -> Result<Spec, SpecError> {
    let args = process_args(image, opts)?;
    let user_spec = opts
        .user
        .clone()
        .or_else(|| image.user.clone())
        .unwrap_or_default();
    let user = resolve_user(rootfs, &user_spec)?;
    let mut env = merge_env(image.env.as_deref().unwrap_or(&[]), &opts.env, |k| {
        std::env::var(k).ok()
    });
    if opts.terminal && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".into());
    }
    let caps: Capabilities = capabilities(opts)?.into_iter().collect();
    let oci_user = UserBuilder::default().uid(user.uid).gid(user.gid);
    let oci_user = if user.additional_gids.is_empty() {
        oci_user
    } else {
        oci_user.additional_gids(user.additional_gids)
    };
    let process = ProcessBuilder::default()
        .terminal(opts.terminal)
        .user(oci_user.build().expect("user is valid"))
        .args(args)
        .env(env)
        .cwd(workdir(image, opts)?)
        .capabilities(
            LinuxCapabilitiesBuilder::default()
                .inheritable(Capabilities::new())
                .ambient(Capabilities::new())
                .bounding(caps.clone())
                .permitted(caps.clone())
                .effective(caps)
                .build()
                .expect("capabilities are valid"),
        )
        .rlimits(vec![PosixRlimitBuilder::default()
            .typ(PosixRlimitType::RlimitNofile)
            .hard(1024u64)
            .soft(1024u64)
            .build()
            .expect("rlimit is valid")])
        .no_new_privileges(true)
        .build()
        .expect("process is valid");
    let hostname = opts
        .hostname
        .clone()
        .or_else(|| image.hostname.clone().filter(|h| !h.is_empty()));
    let hostname = hostname.unwrap_or_else(|| opts.id.chars().take(12).collect());
    let mut mounts = defaults::default_mounts(!opts.privileged);
    mounts.extend(opts.mounts.iter().map(user_mount));
    let linux = LinuxBuilder::default()
        .namespaces(defaults::namespaces(&opts.network, host_is_cgroup2_only()))
        .cgroups_path(PathBuf::from(format!("/berth/{}", opts.id)))
        .resources(resources(opts)?);
    // The builder's defaults are oci-spec's own masks: set both lists either way.
    let linux = if opts.privileged {
        linux
            .masked_paths(Vec::<String>::new())
            .readonly_paths(Vec::<String>::new())
    } else {
        linux
            .masked_paths(
                MASKED_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
            .readonly_paths(
                READONLY_PATHS
                    .iter()
                    .map(|s| s.to_string())
                    .collect::<Vec<_>>(),
            )
    };
    Ok(SpecBuilder::default()
        .version("1.0.2")
        .root(
            RootBuilder::default()
                .path("rootfs")
                .readonly(opts.read_only)
                .build()
                .expect("root is valid"),
        )
        .process(process)
        .hostname(hostname)
        .mounts(mounts)
        .linux(linux.build().expect("linux is valid"))
        .build()
        .expect("spec is valid"))
}

/// args = Entrypoint ++ Cmd with docker's overrides: user args replace Cmd; a user
/// entrypoint replaces Entrypoint and drops the image's Cmd.
pub fn process_args(
    image: &ImageProcessConfig,
    opts: &RunOptions,
) -> Result<Vec<String>, SpecError> {
    let (entrypoint, cmd) = match &opts.entrypoint {
        Some(ep) => {
            let ep = if ep.len() == 1 && ep[0].is_empty() {
                vec![]
            } else {
                ep.clone()
            };
            (ep, opts.args.clone())
        }
        None => {
            let cmd = if opts.args.is_empty() {
                image.cmd.clone().unwrap_or_default()
            } else {
                opts.args.clone()
            };
            (image.entrypoint.clone().unwrap_or_default(), cmd)
        }
    };
    let args: Vec<String> = entrypoint.into_iter().chain(cmd).collect();
    if args.is_empty() {
        return Err(SpecError::NoCommand);
    }
    Ok(args)
}

/// Image env then user env, the user winning per key in the image's position; a bare
/// `KEY` takes the caller's value (dropped if unset); PATH is added when missing.
pub fn merge_env(
    image: &[String],
    user: &[String],
    lookup: impl Fn(&str) -> Option<String>,
) -> Vec<String> {
    let key = |e: &str| e.split_once('=').map_or(e, |(k, _)| k).to_string();
    let mut out: Vec<String> = Vec::new();
    let user = user.iter().filter_map(|e| match e.contains('=') {
        true => Some(e.clone()),
        false => lookup(e).map(|v| format!("{e}={v}")),
    });
    for e in image
        .iter()
        .filter(|e| e.contains('='))
        .cloned()
        .chain(user)
    {
        let k = key(&e);
        match out.iter_mut().find(|o| key(o) == k) {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    if !out.iter().any(|e| key(e) == "PATH") {
        out.insert(0, DEFAULT_PATH.to_string());
    }
    out
}

fn workdir(image: &ImageProcessConfig, opts: &RunOptions) -> Result<PathBuf, SpecError> {
    if let Some(w) = &opts.workdir {
        if !Path::new(w).is_absolute() {
            return Err(SpecError::RelativeContainerPath(w.clone()));
        }
        return Ok(PathBuf::from(w));
    }
    let w = image.working_dir.as_deref().unwrap_or("").trim();
    Ok(Path::new("/").join(w))
}

/// Docker's capability rules (moby oci/caps TweakCapabilities): `--cap-add ALL` gives all
/// but the dropped; `--cap-drop ALL` gives exactly the added; otherwise base - drop + add.
pub fn capabilities(opts: &RunOptions) -> Result<Vec<oci_spec::runtime::Capability>, SpecError> {
    let add: Vec<String> = opts
        .cap_add
        .iter()
        .map(|c| defaults::normalize_cap(c))
        .collect();
    let drop: Vec<String> = opts
        .cap_drop
        .iter()
        .map(|c| defaults::normalize_cap(c))
        .collect();
    for c in add.iter().chain(&drop).filter(|c| *c != "ALL") {
        defaults::capability(c)?;
    }
    let has = |list: &[String], c: &str| list.iter().any(|x| x == c);
    let names: Vec<String> = if opts.privileged || has(&add, "ALL") {
        ALL_CAPS
            .iter()
            .filter(|c| opts.privileged || !has(&drop, c))
            .map(|c| c.to_string())
            .collect()
    } else if has(&drop, "ALL") {
        add
    } else {
        let base = DEFAULT_CAPS
            .iter()
            .filter(|c| !has(&drop, c))
            .map(|c| c.to_string());
        base.chain(add).collect()
    };
    let mut seen = HashSet::new();
    names
        .iter()
        .filter(|n| seen.insert(n.as_str()))
        .map(|n| defaults::capability(n))
        .collect()
}

fn resources(opts: &RunOptions) -> Result<oci_spec::runtime::LinuxResources, SpecError> {
    let device = LinuxDeviceCgroupBuilder::default()
        .allow(opts.privileged)
        .access("rwm")
        .build()
        .expect("device rule");
    let mut r = LinuxResourcesBuilder::default().devices(vec![device]);
    if let Some(m) = opts.memory {
        if m <= 0 {
            return Err(SpecError::BadSize(m.to_string()));
        }
        r = r.memory(
            LinuxMemoryBuilder::default()
                .limit(m)
                .build()
                .expect("memory is valid"),
        );
    }
    if let Some(c) = opts.cpus {
        let cpu = LinuxCpuBuilder::default()
            .quota(cpu_quota(c)?)
            .period(CPU_PERIOD);
        r = r.cpu(cpu.build().expect("cpu is valid"));
    }
    if let Some(p) = opts.pids_limit {
        if p == 0 || p < -1 {
            return Err(SpecError::BadPidsLimit(p));
        }
        r = r.pids(
            LinuxPidsBuilder::default()
                .limit(p)
                .build()
                .expect("pids is valid"),
        );
    }
    Ok(r.build().expect("resources are valid"))
}

fn user_mount(m: &MountRequest) -> oci_spec::runtime::Mount {
    let b = match m {
        MountRequest::Bind {
            source,
            destination,
            readonly,
            propagation,
        } => MountBuilder::default()
            .destination(destination)
            .typ("bind")
            .source(source)
            .options(vec![
                "rbind".to_string(),
                if *readonly { "ro" } else { "rw" }.to_string(),
                propagation.clone(),
            ]),
        MountRequest::Tmpfs(t) => {
            let mut o: Vec<String> = ["nosuid", "nodev", "noexec"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            o.extend(t.options.iter().cloned());
            MountBuilder::default()
                .destination(&t.destination)
                .typ("tmpfs")
                .source("tmpfs")
                .options(o)
        }
    };
    b.build().expect("mount destination was checked absolute")
}

#[cfg(test)]
mod tests;
