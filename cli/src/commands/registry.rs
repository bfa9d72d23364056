//! Registry verbs: pull, push, login, logout.

use std::collections::HashMap;
use std::io::{IsTerminal, Read, Write};
use std::sync::mpsc::Sender;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{bail, Context as _, Result};
use berth_cas::registry::{self, Client, ClientOptions, DockerConfig, Observer, PullOptions};
use berth_cas::Reference;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use oci_spec::image::Descriptor;

use crate::cli::{LoginArgs, LogoutArgs, PullArgs, PushArgs};
use crate::context::{platform, reference, Context};
use crate::unpack::{self, LayerState};

/// A client for `registry` with hosts.toml, docker-config credentials and `--plain-http`.
fn client(registry: &str, plain_http: bool) -> Result<Client> {
    let dir = registry::config_dir();
    let hosts = registry::HostsConfig::load(&dir)?;
    let docker_config = DockerConfig::load(&registry::credentials::default_path())?;
    let opts = ClientOptions {
        hosts,
        plain_http,
        docker_config: Some(docker_config),
        credentials: None,
    };
    Ok(Client::new(registry, &opts)?)
}

pub fn pull(ctx: &Context, a: PullArgs, out: &mut dyn Write) -> Result<()> {
    let r = reference(&a.reference)?;
    pull_ref(ctx, &r, &a).with_context(|| format!("pulling {r}"))?;
    let store = ctx.store()?;
    let img = store
        .meta()
        .image(&r.to_string())?
        .context("pulled image has no name")?;
    writeln!(out, "{} {}", r, img.digest)?;
    Ok(())
}

fn pull_ref(ctx: &Context, r: &Reference, a: &PullArgs) -> Result<()> {
    let store = ctx.store()?;
    let client = client(r.registry(), a.plain_http)?;
    let opts = PullOptions {
        platform: platform(a.platform.as_deref())?,
        all_platforms: a.all_platforms,
        max_concurrent: a.max_concurrent.max(1),
    };
    let plan = client.resolve(&store, r, &opts)?;
    let image = &plan.images[0];
    let snap = match a.no_unpack {
        true => None,
        false => Some(ctx.snapshotter()?),
    };
    let bars = Progress::new(a.quiet, &plan.layers);
    let (tx, rx) = std::sync::mpsc::channel();
    let observer = PullObserver {
        bars: &bars,
        tx: Mutex::new(Some(tx)),
        // Without an unpacker no layer waits for one: each blob is done when stored.
        layer_index: match snap {
            None => HashMap::new(),
            Some(_) => image
                .manifest
                .layers()
                .iter()
                .enumerate()
                .map(|(i, l)| (l.digest().to_string(), i))
                .fold(
                    HashMap::new(),
                    |mut m: HashMap<String, Vec<usize>>, (d, i)| {
                        m.entry(d).or_default().push(i);
                        m
                    },
                ),
        },
    };
    let layers = image.manifest.layers();
    let state = |i: usize, s: LayerState| {
        let d = layers[i].digest().to_string();
        bars.set(
            &d,
            if s == LayerState::Done {
                State::Done
            } else {
                State::Unpacking
            },
        );
    };
    let (fetched, unpacked) = std::thread::scope(|s| {
        let unpacker = snap.as_ref().map(|snap| {
            s.spawn(|| {
                unpack::unpack_streaming(&store, snap.as_ref(), image, ctx.limits, rx, &state)
            })
        });
        let fetched = client.fetch_blobs(&store, &plan, opts.max_concurrent, &observer);
        observer.close();
        let unpacked = match unpacker {
            Some(u) => u
                .join()
                .unwrap_or_else(|_| Err(anyhow::anyhow!("unpack thread panicked"))),
            None => Ok(None),
        };
        (fetched, unpacked)
    });
    bars.finish();
    fetched?;
    unpacked.context("unpacking")?;
    registry::name_image(&store, &r.to_string(), &plan.root)?;
    Ok(())
}

/// Passes finished layer blobs to the unpacker and drives the progress display.
struct PullObserver<'a> {
    bars: &'a Progress,
    tx: Mutex<Option<Sender<usize>>>,
    layer_index: HashMap<String, Vec<usize>>,
}

impl PullObserver<'_> {
    /// No more blobs will come: lets the unpacker finish.
    fn close(&self) {
        self.tx.lock().unwrap_or_else(|p| p.into_inner()).take();
    }
}

impl Observer for PullObserver<'_> {
    fn started(&self, desc: &Descriptor, offset: u64) {
        self.bars.set(desc.digest().as_ref(), State::Downloading);
        self.bars.bytes(desc.digest().as_ref(), offset);
    }
    fn progress(&self, desc: &Descriptor, bytes: u64) {
        self.bars.bytes(desc.digest().as_ref(), bytes);
    }
    fn done(&self, desc: &Descriptor, downloaded: bool) {
        let d = desc.digest().to_string();
        self.bars.bytes(&d, desc.size());
        self.bars.set(
            &d,
            if downloaded {
                State::Downloaded
            } else {
                State::Present
            },
        );
        let tx = self.tx.lock().unwrap_or_else(|p| p.into_inner());
        for &i in self.layer_index.get(&d).into_iter().flatten() {
            if let Some(tx) = tx.as_ref() {
                let _ = tx.send(i);
            }
        }
        if !self.layer_index.contains_key(&d) {
            self.bars.set(&d, State::Done); // another platform's layer: nothing to unpack
        }
    }
}

/// A layer's state as shown to the user; it only moves forward.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum State {
    Waiting,
    Downloading,
    Downloaded,
    Present,
    Unpacking,
    Done,
}

impl State {
    fn word(self) -> &'static str {
        match self {
            State::Waiting => "waiting",
            State::Downloading => "downloading",
            State::Downloaded => "downloaded",
            State::Present => "exists",
            State::Unpacking => "unpacking",
            State::Done => "done",
        }
    }
}

/// Per-layer progress: bars on a terminal, one line per state change otherwise.
struct Progress {
    quiet: bool,
    multi: Option<MultiProgress>,
    layers: HashMap<String, (ProgressBar, Mutex<State>)>,
}

impl Progress {
    fn new(quiet: bool, layers: &[Descriptor]) -> Self {
        let tty = std::io::stderr().is_terminal();
        let multi =
            (!quiet && tty).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        let style = ProgressStyle::with_template(
            "{prefix} {msg:11} [{bar:30}] {bytes:>10}/{total_bytes:10} {bytes_per_sec:>12}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
        let mut map = HashMap::new();
        for l in layers {
            let bar = ProgressBar::with_draw_target(Some(l.size()), ProgressDrawTarget::hidden());
            let bar = match &multi {
                Some(m) => m.add(bar),
                None => bar,
            };
            bar.set_style(style.clone());
            bar.set_prefix(short(l.digest().as_ref()).to_string());
            bar.set_message(State::Waiting.word());
            if multi.is_some() {
                bar.enable_steady_tick(Duration::from_millis(200));
            }
            map.insert(l.digest().to_string(), (bar, Mutex::new(State::Waiting)));
        }
        Progress {
            quiet,
            multi,
            layers: map,
        }
    }

    fn set(&self, digest: &str, state: State) {
        let Some((bar, current)) = self.layers.get(digest) else {
            return;
        };
        let mut cur = current.lock().unwrap_or_else(|p| p.into_inner());
        if state <= *cur {
            return;
        }
        *cur = state;
        bar.set_message(state.word());
        if self.multi.is_none() && !self.quiet {
            eprintln!("{}: {}", short(digest), state.word());
        }
    }

    fn bytes(&self, digest: &str, n: u64) {
        if let Some((bar, _)) = self.layers.get(digest) {
            bar.set_position(n);
        }
    }

    fn finish(&self) {
        for (bar, _) in self.layers.values() {
            bar.disable_steady_tick();
            bar.tick();
            bar.abandon();
        }
    }
}

fn short(digest: &str) -> &str {
    let hex = digest.trim_start_matches("sha256:");
    hex.get(..12).unwrap_or(hex)
}

pub fn push(ctx: &Context, a: PushArgs, out: &mut dyn Write) -> Result<()> {
    let store = ctx.store()?;
    let img = super::images::find_image(&store, &a.reference)?;
    let root = super::images::target(&img)?;
    let dest = reference(a.dest.as_deref().unwrap_or(&a.reference))?;
    let source = Reference::parse(&img.name).ok();
    let mount_from = source
        .filter(|s| s.registry() == dest.registry() && s.repository() != dest.repository())
        .map(|s| s.repository().to_string());
    let client = client(dest.registry(), a.plain_http)?;
    let opts = registry::PushOptions {
        dest: dest.clone(),
        mount_from,
        max_concurrent: a.max_concurrent.max(1),
    };
    let observer = PushObserver { quiet: a.quiet };
    let digest = client
        .push(&store, &root, &opts, &observer)
        .with_context(|| format!("pushing {} to {dest}", img.name))?;
    writeln!(out, "{dest} {digest}")?;
    Ok(())
}

/// One line per blob on stderr (unless quiet).
struct PushObserver {
    quiet: bool,
}

impl Observer for PushObserver {
    fn done(&self, desc: &Descriptor, uploaded: bool) {
        if !self.quiet {
            let what = if uploaded { "pushed" } else { "exists" };
            eprintln!("{}: {what}", short(desc.digest().as_ref()));
        }
    }
}

pub fn login(_ctx: &Context, a: LoginArgs, out: &mut dyn Write) -> Result<()> {
    let host = registry_host(&a.registry);
    let username = match a.username {
        Some(u) => u,
        None => prompt("Username: ")?,
    };
    let password = if a.password_stdin {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .context("reading the password from stdin")?;
        s.trim_end_matches(['\n', '\r']).to_string()
    } else {
        prompt("Password: ")?
    };
    if username.is_empty() || password.is_empty() {
        bail!("login to {host} needs a username and a password");
    }
    let mut config = DockerConfig::load(&registry::credentials::default_path())?;
    let creds = registry::Credentials::Basic {
        username: username.clone(),
        password: password.clone(),
    };
    let opts = ClientOptions {
        hosts: registry::HostsConfig::load(&registry::config_dir())?,
        plain_http: a.plain_http,
        docker_config: None,
        credentials: Some(creds),
    };
    Client::new(&host, &opts)?
        .check()
        .with_context(|| format!("logging in to {host}"))?;
    config.store(&host, &username, &password)?;
    writeln!(
        out,
        "Login succeeded for {host} (credentials in {})",
        config.path().display()
    )?;
    Ok(())
}

pub fn logout(_ctx: &Context, a: LogoutArgs, out: &mut dyn Write) -> Result<()> {
    let host = registry_host(&a.registry);
    let mut config = DockerConfig::load(&registry::credentials::default_path())?;
    if config.erase(&host)? {
        writeln!(out, "Removed credentials for {host}")?;
    } else {
        writeln!(out, "Not logged in to {host}")?;
    }
    Ok(())
}

/// `https://reg.example/` → `reg.example`; `index.docker.io` → `docker.io`.
fn registry_host(s: &str) -> String {
    let s = s
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = s.split('/').next().unwrap_or(s);
    match host {
        "index.docker.io" | "registry-1.docker.io" => "docker.io".into(),
        h => h.to_string(),
    }
}

fn prompt(label: &str) -> Result<String> {
    if !std::io::stdin().is_terminal() {
        bail!(
            "no terminal to ask for the {}; use -u and --password-stdin",
            label.trim_end_matches(": ").to_lowercase()
        );
    }
    eprint!("{label}");
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    Ok(line.trim_end_matches(['\n', '\r']).to_string())
}
