//! Making a container: parse the run options, find the rootfs (an image's fresh snapshot
//! or an existing checkout), record it, mount the bundle, write the spec and the
//! supervisor config. Anything made is undone if a later step fails.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _, Result};
use berth_cas::containers::{self as records, ContainerRecord};
use berth_cas::{image, meta, Digest, Store};
use berth_exec::runtime::Bundle;
use berth_exec::spec::{
    self, ImageProcessConfig, MountRequest, NetworkMode, RunOptions, TmpfsMount,
};
use berth_exec::supervisor::SupervisorConfig;
use berth_mount::Mount;

use super::{runtime_root, state_dir, Force};
use crate::cli::CreateArgs;
use crate::commands::checkout::{ensure_mounted, find_checkout};
use crate::commands::images::{find_image, target};
use crate::context::{platform, Context};
use crate::{ids, unpack};

/// A container ready to start.
pub struct Created {
    /// Its record.
    pub rec: ContainerRecord,
    /// Its saved supervisor config.
    pub cfg: SupervisorConfig,
    /// The snapshotter it was made with, still open: a foreground `--rm` run removes its
    /// snapshot with it afterwards instead of opening the database again.
    pub snapshotter: Box<dyn berth_fs::snapshot::Snapshotter>,
}

/// Where the rootfs comes from.
enum Rootfs {
    /// A fresh active snapshot on the image's top layer.
    Image { parent: Option<String> },
    /// An existing checkout directory, bind-mounted.
    Checkout { dir: PathBuf, readonly: bool },
}

/// What the container is made from.
struct Source {
    image: String,
    manifest: String,
    config: ImageProcessConfig,
    rootfs: Rootfs,
}

/// Creates the container `args` describe; `detached` selects the supervisor's stdio.
pub fn create(ctx: &Context, args: &CreateArgs, detached: bool) -> Result<Created> {
    let mut opts = run_options(args)?;
    let runtime = find_runtime(&args.runtime)?;
    if let Some(n) = &args.name {
        check_name(n)?;
    }
    let store = ctx.store()?;
    if let Some(n) = &args.name {
        if store.meta().container_named(n)?.is_some() {
            bail!("the container name {n:?} is already in use");
        }
    }
    let snap = ctx.snapshotter()?;
    let source = source(ctx, &store, snap.as_ref(), args)?;
    opts.network = network_mode(ctx, &store, &args.net)?;
    let id = ids::random_hex(32)?;
    opts.id = id.clone();
    let image_snapshot = matches!(source.rootfs, Rootfs::Image { .. });
    let rec = ContainerRecord {
        id: id.clone(),
        name: args.name.clone(),
        image: source.image.clone(),
        manifest: source.manifest.clone(),
        snapshotter: image_snapshot.then(|| unpack::kind_name(snap.kind()).to_string()),
        snapshot: image_snapshot.then(|| format!("container-{id}")),
        checkout: match &source.rootfs {
            Rootfs::Checkout { dir, .. } => Some(dir.to_string_lossy().into_owned()),
            Rootfs::Image { .. } => None,
        },
        runtime: runtime.to_string_lossy().into_owned(),
        command: spec::process_args(&source.config, &opts)?,
        auto_remove: args.rm,
        stop_signal: source.config.stop_signal()?,
        created: meta::now(),
        finished: None,
        exit_code: None,
        network: args.net.clone(),
    };
    // Record first: a crash after this leaves a container `berth rm` can clean up.
    store
        .meta()
        .write(|tx| records::insert_container(tx, &rec))
        .map_err(|e| match e {
            berth_cas::Error::Db(_) if args.name.is_some() => anyhow::anyhow!(
                "the container name {:?} is already in use",
                args.name.clone().unwrap_or_default()
            ),
            e => e.into(),
        })?;
    match prepare(ctx, args, &rec, &source, &opts, snap.as_ref(), detached) {
        Ok(cfg) => Ok(Created {
            rec,
            cfg,
            snapshotter: snap,
        }),
        Err(e) => {
            let undo = super::remove(ctx, &store, &rec, Force::Kill);
            Err(match undo {
                Ok(()) => e,
                Err(u) => e.context(format!("cleanup failed too: {u:#}")),
            })
        }
    }
}

/// Mounts the bundle, writes the spec and the supervisor config.
fn prepare(
    ctx: &Context,
    args: &CreateArgs,
    rec: &ContainerRecord,
    source: &Source,
    opts: &RunOptions,
    snap: &dyn berth_fs::snapshot::Snapshotter,
    detached: bool,
) -> Result<SupervisorConfig> {
    let mounts = match &source.rootfs {
        Rootfs::Image { parent } => snap.prepare(
            rec.snapshot
                .as_deref()
                .expect("image containers have a snapshot"),
            parent.as_deref(),
        )?,
        Rootfs::Checkout { dir, readonly } => {
            vec![Mount::bind(dir.to_string_lossy(), *readonly)]
        }
    };
    let dir = state_dir(ctx, &rec.id);
    let bundle = mount_bundle(&dir.join("bundle"), mounts, rec.auto_remove)?;
    let spec = spec::build_spec(&source.config, opts, &bundle.rootfs())?;
    check_command(&spec, &bundle.rootfs(), &opts.mounts)?;
    bundle.write_spec(&spec)?;
    let cfg = SupervisorConfig {
        id: rec.id.clone(),
        runtime: PathBuf::from(&rec.runtime),
        runtime_root: Some(runtime_root(ctx, &rec.runtime)),
        bundle: bundle.dir().to_path_buf(),
        state_dir: dir,
        detached,
        terminal: args.tty,
        stdin: None,
        stdout: args.stdout.as_deref().map(absolute).transpose()?,
        stderr: args.stderr.as_deref().map(absolute).transpose()?,
        remove_bundle: true,
    };
    cfg.save()?;
    Ok(cfg)
}

/// Mounts the rootfs. An `--rm` container's overlay is mounted `volatile`: its upper
/// dir is thrown away with it, so the writeback of the whole upper filesystem that
/// overlayfs does on sync and unmount (10–40 ms here) buys nothing. Kernels without the
/// option (before 5.10) get the plain mount.
fn mount_bundle(dir: &Path, mut mounts: Vec<Mount>, throwaway: bool) -> Result<Bundle> {
    let overlays = mounts.iter_mut().filter(|m| m.kind == "overlay");
    let mut volatile = false;
    if throwaway {
        for m in overlays {
            m.options.push("volatile".into());
            volatile = true;
        }
    }
    match Bundle::create(dir, &mounts) {
        Err(_) if volatile => {
            for m in &mut mounts {
                m.options.retain(|o| o != "volatile");
            }
            Ok(Bundle::create(dir, &mounts)?)
        }
        made => Ok(made?),
    }
}

/// The process's command is not in the container: `run` exits 127 like docker.
#[derive(Debug)]
pub struct CommandNotFound(pub String);

impl std::fmt::Display for CommandNotFound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: command not found in the container", self.0)
    }
}

impl std::error::Error for CommandNotFound {}

/// Looks the command up in the rootfs (PATH from the spec's env) so a typo fails with a
/// clear message before the runtime starts. Paths under a user mount are not checked.
fn check_command(
    spec: &oci_spec::runtime::Spec,
    rootfs: &Path,
    mounts: &[MountRequest],
) -> Result<()> {
    let Some(process) = spec.process() else {
        return Ok(());
    };
    let Some(cmd) = process.args().as_ref().and_then(|a| a.first()) else {
        return Ok(());
    };
    let under_mount = |p: &Path| {
        mounts.iter().any(|m| {
            let dst = match m {
                MountRequest::Bind { destination, .. } => destination,
                MountRequest::Tmpfs(t) => &t.destination,
            };
            p.starts_with(dst)
        })
    };
    let candidates: Vec<PathBuf> = if cmd.contains('/') {
        vec![process.cwd().join(cmd)]
    } else {
        let env = process.env().clone().unwrap_or_default();
        let path = env
            .iter()
            .find_map(|e| e.strip_prefix("PATH="))
            .unwrap_or(spec::DEFAULT_PATH.trim_start_matches("PATH="));
        path.split(':').map(|d| Path::new(d).join(cmd)).collect()
    };
    let found = candidates.iter().any(|c| {
        under_mount(c)
            || spec::confined_path(rootfs, &c.to_string_lossy())
                .is_ok_and(|p| p.metadata().is_ok_and(|m| m.is_file()))
    });
    match found {
        true => Ok(()),
        false => Err(CommandNotFound(cmd.clone()).into()),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).with_context(|| format!("{}: bad path", p.display()))
}

/// `--net`: `none` (a fresh namespace with loopback up), `host`, `ns:NAME` (a namespace
/// made with `berth net ns add`, or one in /run/netns), `container:ID` (share a running
/// container's).
fn network_mode(ctx: &Context, store: &Store, net: &str) -> Result<NetworkMode> {
    match net.split_once(':') {
        None if net == "none" => Ok(NetworkMode::New),
        None if net == "host" => Ok(NetworkMode::Host),
        Some(("ns", name)) => {
            let ns = crate::commands::net::find_netns(ctx, name)?;
            Ok(NetworkMode::Path(ns.path().to_path_buf()))
        }
        Some(("container", query)) => {
            let other = super::find(store, query)?;
            match super::state_of(ctx, &other) {
                super::State::Running { pid } | super::State::Paused { pid } => Ok(
                    NetworkMode::Path(PathBuf::from(format!("/proc/{pid}/ns/net"))),
                ),
                s => bail!(
                    "container {} is {}: its network cannot be joined",
                    super::display_name(&other),
                    s.label()
                ),
            }
        }
        _ => bail!("unknown --net {net:?} (none, host, ns:NAME, container:ID)"),
    }
}

/// The flags as berth-exec's options (checked before anything touches the disk).
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
    let opts = RunOptions {
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
    };
    spec::capabilities(&opts)?;
    if let Some(c) = opts.cpus {
        spec::cpu_quota(c)?;
    }
    Ok(opts)
}

/// The runtime binary: a path, or a name found on PATH.
fn find_runtime(name: &str) -> Result<PathBuf> {
    let usable = |p: &Path| {
        use std::os::unix::fs::PermissionsExt;
        p.metadata()
            .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
    };
    if name.contains('/') {
        let p = absolute(Path::new(name))?;
        return match usable(&p) {
            true => Ok(p),
            false => bail!("OCI runtime {name:?} not found or not executable"),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| usable(p))
        .with_context(|| format!("OCI runtime {name:?} not found on PATH"))
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`; hex-only names could shadow ids.
fn check_name(n: &str) -> Result<()> {
    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    if !ok {
        bail!("invalid container name {n:?}: use letters, digits, '_', '.' and '-'");
    }
    Ok(())
}

/// A DIR argument looks like a path; anything else is an image name.
fn looks_like_dir(s: &str) -> bool {
    s.starts_with('/') || s.starts_with("./") || s.starts_with("../") || s == "." || s == ".."
}

fn source(
    ctx: &Context,
    store: &Store,
    snap: &dyn berth_fs::snapshot::Snapshotter,
    args: &CreateArgs,
) -> Result<Source> {
    if looks_like_dir(&args.image) {
        return checkout_source(ctx, store, Path::new(&args.image));
    }
    let img = find_image(store, &args.image)?;
    let plat = platform(args.platform.as_deref())?;
    let resolved = image::resolve(store, &target(&img)?, &plat, &img.name)?;
    let parent = unpack::unpack(store, snap, &resolved, ctx.limits)?;
    Ok(Source {
        image: img.name,
        manifest: resolved.manifest_desc.digest().to_string(),
        config: process_config(&resolved.config_raw)?,
        rootfs: Rootfs::Image { parent },
    })
}

fn checkout_source(ctx: &Context, store: &Store, dir: &Path) -> Result<Source> {
    let c = find_checkout(ctx, store, dir)?;
    ensure_mounted(ctx, &c)?;
    let config = match c.manifest.is_empty() {
        true => ImageProcessConfig::default(),
        false => manifest_config(store, &c.manifest)
            .with_context(|| format!("reading the image config of {}", c.dir))?,
    };
    Ok(Source {
        image: c.image,
        manifest: c.manifest,
        config,
        rootfs: Rootfs::Checkout {
            dir: PathBuf::from(c.dir),
            readonly: c.readonly,
        },
    })
}

/// The process config of the image a platform manifest describes.
fn manifest_config(store: &Store, manifest: &str) -> Result<ImageProcessConfig> {
    let digest: Digest = manifest.parse()?;
    let mut bytes = Vec::new();
    std::io::Read::read_to_end(&mut store.open_blob(&digest)?, &mut bytes)?;
    let m = image::parse_manifest(&bytes, manifest)?;
    process_config(&image::read_verified(store, m.config())?)
}

/// The `config` object of an image config blob.
fn process_config(raw: &[u8]) -> Result<ImageProcessConfig> {
    #[derive(serde::Deserialize)]
    struct Wrapper {
        #[serde(default)]
        config: Option<ImageProcessConfig>,
    }
    let w: Wrapper = serde_json::from_slice(raw).context("parsing the image config")?;
    Ok(w.config.unwrap_or_default())
}
