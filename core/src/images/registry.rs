//! Registries: pull (unpacking while downloading), push, and the credentials `login`
//! checks and saves.

use std::collections::HashMap;
use std::sync::mpsc::Sender;
use std::sync::Mutex;

use berth_cas::registry::{self, Client, ClientOptions, DockerConfig, Observer, PullOptions};
use berth_cas::{Platform, Reference};
use oci_spec::image::Descriptor;

use super::{target, Images};
use crate::error::{Error, Result};
use crate::unpack::{LayerState, Unpack};

/// What to pull.
#[derive(Debug, Clone)]
pub struct PullRequest {
    /// The reference, docker-style.
    pub reference: String,
    /// The platform to pull and unpack.
    pub platform: Platform,
    /// Download every platform of an index (the requested one is unpacked).
    pub all_platforms: bool,
    /// Blobs downloaded at once.
    pub max_concurrent: usize,
    /// Talk plain HTTP to the registry.
    pub plain_http: bool,
    /// Store blobs only; unpack (or index for FUSE) on first use.
    pub no_unpack: bool,
}

/// Told how a pull goes, layer by layer; called from download and unpack threads.
pub trait PullObserver: Sync {
    /// The layers the pull will fetch (known once the manifests are in).
    fn layers(&self, _layers: &[Descriptor]) {}
    /// A layer blob starts downloading (at `offset` when resuming).
    fn downloading(&self, _layer: &Descriptor, _offset: u64) {}
    /// `bytes` of the blob are on disk.
    fn progress(&self, _layer: &Descriptor, _bytes: u64) {}
    /// The blob is stored (`downloaded` false: it already was).
    fn stored(&self, _layer: &Descriptor, _downloaded: bool) {}
    /// The layer is being unpacked.
    fn unpacking(&self, _layer: &Descriptor) {}
    /// The layer is a committed snapshot, or needs none (another platform's, no unpack).
    fn done(&self, _layer: &Descriptor) {}
}

/// What to push.
#[derive(Debug, Clone)]
pub struct PushRequest {
    /// The image in the store.
    pub reference: String,
    /// Where to push it (default: its own name).
    pub dest: Option<String>,
    /// Blobs uploaded at once.
    pub max_concurrent: usize,
    /// Talk plain HTTP to the registry.
    pub plain_http: bool,
}

/// A client for `registry` with hosts.toml, docker-config credentials and `plain_http`.
pub fn client(registry: &str, plain_http: bool) -> Result<Client> {
    let hosts = registry::HostsConfig::load(&registry::config_dir())?;
    let docker_config = DockerConfig::load(&registry::credentials::default_path())?;
    let opts = ClientOptions {
        hosts,
        plain_http,
        docker_config: Some(docker_config),
        credentials: None,
    };
    Ok(Client::new(registry, &opts)?)
}

impl Images<'_> {
    /// Pulls an image: resolves it, downloads its blobs (several at once) and unpacks
    /// each layer as soon as its blob is stored, then names it. Returns the name and the
    /// digest it now points at.
    pub fn pull(&self, req: &PullRequest, observer: &dyn PullObserver) -> Result<(String, String)> {
        let r = Reference::parse(&req.reference)?;
        let root = self.ns.root();
        let store = root.store();
        let lease = root.lease("pull", &r.to_string())?;
        let client = client(r.registry(), req.plain_http)?;
        let opts = PullOptions {
            platform: req.platform.clone(),
            all_platforms: req.all_platforms,
            max_concurrent: req.max_concurrent.max(1),
            lease: Some(lease.id().to_string()),
        };
        let plan = client.resolve(store, &r, &opts)?;
        crate::faults::point("pull-resolved");
        let image = plan.images.first().ok_or_else(|| Error::BadImage {
            image: r.to_string(),
            reason: "it resolved to no image manifest".into(),
        })?;
        observer.layers(&plan.layers);
        let snap = match req.no_unpack {
            true => None,
            false => Some(root.default_snapshotter()?),
        };
        let (tx, rx) = std::sync::mpsc::channel();
        let layers = image.manifest.layers();
        let mut by_digest: HashMap<String, Vec<usize>> = HashMap::new();
        if snap.is_some() {
            for (i, l) in layers.iter().enumerate() {
                by_digest.entry(l.digest().to_string()).or_default().push(i);
            }
        }
        let relay = Relay {
            observer,
            tx: Mutex::new(Some(tx)),
            by_digest,
        };
        let state = |i: usize, s: LayerState| match s {
            LayerState::Unpacking => observer.unpacking(&layers[i]),
            LayerState::Done => observer.done(&layers[i]),
        };
        let (fetched, unpacked) = std::thread::scope(|s| {
            let unpacker = snap.as_ref().map(|(name, snap)| {
                let (lease, rx, state) = (&lease, rx, &state);
                s.spawn(move || {
                    Unpack {
                        root,
                        snap_name: name,
                        snap: snap.as_ref(),
                        lease,
                    }
                    .streaming(image, rx, state)
                })
            });
            let fetched = client.fetch_blobs(store, &plan, opts.max_concurrent, &relay);
            relay.close();
            let unpacked = match unpacker {
                Some(u) => u.join().unwrap_or_else(|_| {
                    Err(Error::Unsupported("the unpack thread panicked".into()))
                }),
                None => Ok(None),
            };
            (fetched, unpacked)
        });
        fetched?;
        unpacked?;
        crate::faults::point("pull-unpacked");
        let name = r.to_string();
        registry::name_image(store, self.ns.name(), &name, &plan.root)?;
        root.release(lease);
        Ok((name, plan.root.digest().to_string()))
    }

    /// Pushes an image to a registry; returns where it went and its digest.
    pub fn push(&self, req: &PushRequest, observer: &dyn Observer) -> Result<(String, String)> {
        let img = self.find(&req.reference)?;
        let root = target(&img)?;
        let dest = Reference::parse(req.dest.as_deref().unwrap_or(&req.reference))?;
        let source = Reference::parse(&img.name).ok();
        let mount_from = source
            .filter(|s| s.registry() == dest.registry() && s.repository() != dest.repository())
            .map(|s| s.repository().to_string());
        let client = client(dest.registry(), req.plain_http)?;
        let opts = registry::PushOptions {
            dest: dest.clone(),
            mount_from,
            max_concurrent: req.max_concurrent.max(1),
        };
        let digest = client.push(self.ns.root().store(), &root, &opts, observer)?;
        Ok((dest.to_string(), digest))
    }
}

/// Passes stored layer blobs to the unpacker and the rest to the observer.
struct Relay<'a> {
    observer: &'a dyn PullObserver,
    tx: Mutex<Option<Sender<usize>>>,
    /// Layer indexes of the unpacked image by blob digest (empty: no unpack).
    by_digest: HashMap<String, Vec<usize>>,
}

impl Relay<'_> {
    /// No more blobs will come: lets the unpacker finish.
    fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Observer for Relay<'_> {
    fn started(&self, desc: &Descriptor, offset: u64) {
        self.observer.downloading(desc, offset);
    }
    fn progress(&self, desc: &Descriptor, bytes: u64) {
        self.observer.progress(desc, bytes);
    }
    fn done(&self, desc: &Descriptor, downloaded: bool) {
        self.observer.stored(desc, downloaded);
        let d = desc.digest().to_string();
        match self.by_digest.get(&d) {
            Some(indexes) => {
                let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
                for &i in indexes {
                    if let Some(tx) = tx.as_ref() {
                        let _ = tx.send(i);
                    }
                }
            }
            None => self.observer.done(desc), // nothing to unpack for it
        }
    }
}

/// `https://reg.example/` → `reg.example`; `index.docker.io` → `docker.io`.
pub fn registry_host(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

/// Checks the credentials against the registry and saves them in the docker config;
/// returns the registry host and the config file's path.
pub fn login(
    registry: &str,
    username: &str,
    password: &str,
    plain_http: bool,
) -> Result<(String, std::path::PathBuf)> {
    let host = registry_host(registry);
    let mut config = DockerConfig::load(&registry::credentials::default_path())?;
    let opts = ClientOptions {
        hosts: registry::HostsConfig::load(&registry::config_dir())?,
        plain_http,
        docker_config: None,
        credentials: Some(registry::Credentials::Basic {
            username: username.to_string(),
            password: password.to_string(),
        }),
    };
    Client::new(&host, &opts)?.check()?;
    config.store(&host, username, password)?;
    Ok((host, config.path().to_path_buf()))
}

/// Forgets a registry's saved credentials; returns the host and whether there were any.
pub fn logout(registry: &str) -> Result<(String, bool)> {
    let host = registry_host(registry);
    let mut config = DockerConfig::load(&registry::credentials::default_path())?;
    let erased = config.erase(&host)?;
    Ok((host, erased))
}
