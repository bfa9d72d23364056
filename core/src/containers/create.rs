//! Making a container: find the rootfs (an image's fresh snapshot or an existing
//! checkout), record it, mount the bundle, write the spec and the supervisor config.
//! Anything made is undone if a later step fails.

use std::path::{Path, PathBuf};

use berth_cas::containers::{self as records, ContainerRecord};
use berth_cas::{meta, Platform};
use berth_exec::runtime::Bundle;
use berth_exec::spec::{self, ImageProcessConfig, MountRequest, NetworkMode, RunOptions};
use berth_exec::supervisor::SupervisorConfig;
use berth_mount::Mount;

use super::{display_name, Containers, Force, State};
use crate::error::{Error, Result};
use crate::unpack::Unpack;

/// Where a container's root filesystem comes from.
#[derive(Debug, Clone)]
pub enum Rootfs {
    /// A fresh snapshot on an image (name or digest).
    Image(String),
    /// An existing checkout directory, bind-mounted: writes land in the checkout.
    Checkout(PathBuf),
}

/// What to create.
#[derive(Debug, Clone)]
pub struct CreateRequest {
    /// The root filesystem.
    pub rootfs: Rootfs,
    /// The platform to resolve a multi-platform image to.
    pub platform: Platform,
    /// A unique name in the namespace.
    pub name: Option<String>,
    /// Remove the container once it exits.
    pub auto_remove: bool,
    /// The OCI runtime: `runc`, `crun`, or a path.
    pub runtime: String,
    /// `none`, `host`, `ns:NAME` or `container:ID`.
    pub network: String,
    /// The process and its limits (`id` and `network` are filled in here).
    pub options: RunOptions,
    /// Detached: the supervisor runs in its own session with the files below as stdio.
    pub detached: bool,
    /// Detached containers' stdout (default /dev/null).
    pub stdout: Option<PathBuf>,
    /// Detached containers' stderr (default /dev/null).
    pub stderr: Option<PathBuf>,
}

/// A container ready to start.
#[derive(Debug, Clone)]
pub struct Created {
    /// Its record.
    pub record: ContainerRecord,
    /// Its saved supervisor config.
    pub config: SupervisorConfig,
}

/// What the container is made from.
struct Source {
    image: String,
    manifest: String,
    config: ImageProcessConfig,
    rootfs: Resolved,
    /// A checkout's writer lock, held until the container is recorded and its bundle
    /// mounted, so no commit switches the checkout in between.
    _lock: Option<crate::checkouts::CheckoutLock>,
}

enum Resolved {
    Image {
        parent: Option<String>,
        snapshotter: String,
    },
    Checkout {
        dir: PathBuf,
        readonly: bool,
    },
}

impl Containers<'_> {
    /// Creates the container `req` describes.
    pub fn create(&self, req: &CreateRequest) -> Result<Created> {
        let mut opts = req.options.clone();
        spec::capabilities(&opts)?;
        if let Some(c) = opts.cpus {
            spec::cpu_quota(c)?;
        }
        let runtime = find_runtime(&req.runtime)?;
        if let Some(n) = &req.name {
            check_name(n)?;
            if self
                .root()
                .store()
                .meta()
                .container_named(self.ns.name(), n)?
                .is_some()
            {
                return Err(Error::NameInUse(n.clone()));
            }
        }
        let root = self.root();
        let lease = root.lease("create", req.name.as_deref().unwrap_or("container"))?;
        let source = self.source(req, &lease)?;
        opts.network = self.network_mode(&req.network)?;
        let id = crate::ids::random_hex(32)?;
        opts.id = id.clone();
        let (snapshotter, snapshot, checkout) = match &source.rootfs {
            Resolved::Image { snapshotter, .. } => (
                Some(snapshotter.clone()),
                Some(format!("container-{id}")),
                None,
            ),
            Resolved::Checkout { dir, .. } => {
                (None, None, Some(dir.to_string_lossy().into_owned()))
            }
        };
        let rec = ContainerRecord {
            id: id.clone(),
            namespace: self.ns.name().to_string(),
            name: req.name.clone(),
            image: source.image.clone(),
            manifest: source.manifest.clone(),
            snapshotter,
            snapshot,
            checkout,
            runtime: runtime.to_string_lossy().into_owned(),
            command: spec::process_args(&source.config, &opts)?,
            auto_remove: req.auto_remove,
            stop_signal: source.config.stop_signal()?,
            created: meta::now(),
            finished: None,
            exit_code: None,
            network: req.network.clone(),
        };
        // Record first (it keeps the snapshot from gc): a crash after this leaves a
        // container `rm` can clean up.
        root.store()
            .meta()
            .write(|tx| records::insert_container(tx, &rec))
            .map_err(|e| match (meta::is_unique_violation(&e), &req.name) {
                (true, Some(n)) => Error::NameInUse(n.clone()),
                _ => e.into(),
            })?;
        root.release(lease);
        match self.prepare(req, &rec, &source, &opts) {
            Ok(config) => Ok(Created {
                record: rec,
                config,
            }),
            Err(e) => {
                if let Err(u) = self.remove(&rec, Force::Kill) {
                    tracing::warn!("cleaning up container {}: {u}", display_name(&rec));
                }
                Err(e)
            }
        }
    }

    /// Mounts the bundle, writes the spec and the supervisor config.
    fn prepare(
        &self,
        req: &CreateRequest,
        rec: &ContainerRecord,
        source: &Source,
        opts: &RunOptions,
    ) -> Result<SupervisorConfig> {
        let root = self.root();
        let mounts = match (&source.rootfs, &rec.snapshot) {
            (
                Resolved::Image {
                    parent,
                    snapshotter,
                },
                Some(key),
            ) => {
                // Inside the gate: gc has either seen the record naming it or not begun.
                let _gate = root.store().gate().shared()?;
                root.snapshotter(snapshotter)?
                    .prepare(key, parent.as_deref())?
            }
            (Resolved::Checkout { dir, readonly }, _) => {
                vec![Mount::bind(dir.to_string_lossy(), *readonly)]
            }
            (Resolved::Image { .. }, None) => {
                return Err(Error::Unsupported(
                    "an image container without a snapshot".into(),
                ))
            }
        };
        let dir = root.layout().container(&rec.id);
        let bundle = mount_bundle(&dir.join("bundle"), mounts, rec.auto_remove)?;
        let spec = spec::build_spec(&source.config, opts, &bundle.rootfs())?;
        check_command(&spec, &bundle.rootfs(), &opts.mounts)?;
        bundle.write_spec(&spec)?;
        let cfg = SupervisorConfig {
            id: rec.id.clone(),
            runtime: PathBuf::from(&rec.runtime),
            runtime_root: Some(root.layout().runtime_root(&rec.runtime)),
            bundle: bundle.dir().to_path_buf(),
            state_dir: dir,
            detached: req.detached,
            terminal: opts.terminal,
            stdin: None,
            stdout: req.stdout.as_deref().map(absolute).transpose()?,
            stderr: req.stderr.as_deref().map(absolute).transpose()?,
            remove_bundle: true,
        };
        cfg.save()?;
        Ok(cfg)
    }

    fn source(&self, req: &CreateRequest, lease: &berth_cas::lease::Lease) -> Result<Source> {
        let root = self.root();
        match &req.rootfs {
            Rootfs::Checkout(dir) => {
                let checkouts = self.ns.checkouts();
                let (c, lock) = checkouts.open(dir)?;
                checkouts.ensure_mounted(&c)?;
                let config = match c.manifest.is_empty() {
                    true => ImageProcessConfig::default(),
                    false => {
                        let image = crate::images::manifest_image(root.store(), &c.manifest)?;
                        crate::images::process_config(&image.config_raw)?
                    }
                };
                Ok(Source {
                    image: c.image,
                    manifest: c.manifest,
                    config,
                    rootfs: Resolved::Checkout {
                        dir: PathBuf::from(c.dir),
                        readonly: c.readonly,
                    },
                    _lock: Some(lock),
                })
            }
            Rootfs::Image(reference) => {
                let (img, resolved) = self.ns.images().resolve(reference, &req.platform)?;
                root.store()
                    .claim(resolved.manifest_desc.digest(), Some(lease.id()))?;
                let (snap_name, snap) = root.default_snapshotter()?;
                let parent = Unpack {
                    root,
                    snap_name: &snap_name,
                    snap: snap.as_ref(),
                    lease,
                }
                .all(&resolved)?;
                Ok(Source {
                    image: img.name,
                    manifest: resolved.manifest_desc.digest().to_string(),
                    config: crate::images::process_config(&resolved.config_raw)?,
                    rootfs: Resolved::Image {
                        parent,
                        snapshotter: snap_name,
                    },
                    _lock: None,
                })
            }
        }
    }

    /// `none` (a fresh namespace with loopback up), `host`, `ns:NAME` (a namespace made
    /// with `berth net ns add`, or one in /run/netns), `container:ID` (share a running
    /// container's).
    fn network_mode(&self, net: &str) -> Result<NetworkMode> {
        match net.split_once(':') {
            None if net == "none" => Ok(NetworkMode::New),
            None if net == "host" => Ok(NetworkMode::Host),
            Some(("ns", name)) => {
                let ns = self.root().find_netns(name)?;
                Ok(NetworkMode::Path(ns.path().to_path_buf()))
            }
            Some(("container", query)) => {
                let other = self.find(query)?;
                match self.state(&other) {
                    State::Running { pid } | State::Paused { pid } => Ok(NetworkMode::Path(
                        PathBuf::from(format!("/proc/{pid}/ns/net")),
                    )),
                    s => Err(Error::WrongState {
                        container: display_name(&other),
                        state: s.label(),
                        need: "its network cannot be joined",
                    }),
                }
            }
            _ => Err(Error::BadNetwork(format!(
                "unknown --net {net:?} (none, host, ns:NAME, container:ID)"
            ))),
        }
    }
}

/// Mounts the rootfs. An `--rm` container's overlay is mounted `volatile`: its upper
/// dir is thrown away with it, so the writeback of the whole upper filesystem that
/// overlayfs does on sync and unmount (10–40 ms here) buys nothing. Kernels without the
/// option (before 5.10) get the plain mount.
fn mount_bundle(dir: &Path, mut mounts: Vec<Mount>, throwaway: bool) -> Result<Bundle> {
    let mut volatile = false;
    if throwaway {
        for m in mounts.iter_mut().filter(|m| m.kind == "overlay") {
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
        false => Err(Error::CommandNotFound(cmd.clone())),
    }
}

fn absolute(p: &Path) -> Result<PathBuf> {
    std::path::absolute(p).map_err(Error::io(format!("{}: bad path", p.display())))
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
            false => Err(Error::RuntimeNotFound(name.to_string())),
        };
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| usable(p))
        .ok_or_else(|| Error::RuntimeNotFound(name.to_string()))
}

/// Docker's rule for names: `[a-zA-Z0-9][a-zA-Z0-9_.-]*`.
fn check_name(n: &str) -> Result<()> {
    let ok = n.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
        && n.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c));
    match ok {
        true => Ok(()),
        false => Err(Error::InvalidName {
            what: "container name",
            name: n.to_string(),
            rule: "use letters, digits, '_', '.' and '-'",
        }),
    }
}
