//! The command line: every verb, its flags and its help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// berth: pull, check out, commit, push and run containers, the git way.
#[derive(Debug, Parser)]
#[command(name = "berth", version, about, long_about = LONG_ABOUT, propagate_version = true)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

const LONG_ABOUT: &str = "\
berth stores images by content, turns them into root filesystems and runs containers
from them through an OCI runtime (runc by default).

Typical flow:
  berth import busybox.tar            # or: berth pull alpine
  berth images                        # what is in the store
  berth inspect busybox               # manifest, config and layers
  berth export busybox out.tar        # an OCI archive skopeo, umoci and ctr read

Image names are docker-style: `busybox` means docker.io/library/busybox:latest.";

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Store root (content, metadata, snapshots).
    #[arg(
        long,
        global = true,
        env = "BERTH_ROOT",
        default_value = "/var/lib/berth",
        value_name = "DIR"
    )]
    pub root: PathBuf,
    /// Runtime state (container bundles, supervisor sockets, netns mounts).
    #[arg(
        long,
        global = true,
        env = "BERTH_RUN",
        default_value = "/run/berth",
        value_name = "DIR"
    )]
    pub run_root: PathBuf,
    /// Namespace for image names, checkouts and containers (content is shared by all).
    #[arg(
        long,
        short = 'n',
        global = true,
        env = "BERTH_NAMESPACE",
        default_value = "default",
        value_name = "NAME"
    )]
    pub namespace: String,
    /// Print machine-readable JSON (listings, inspect, gc, fsck, events).
    #[arg(long, global = true)]
    pub json: bool,
    /// More log output on stderr (-v info, -vv debug; or BERTH_LOG=filter).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Snapshotter for new filesystems: overlay (default where the kernel allows) or native (copies).
    #[arg(long, global = true, env = "BERTH_SNAPSHOTTER", value_name = "NAME")]
    pub snapshotter: Option<String>,
    /// Refuse image layers whose uncompressed size exceeds this many bytes.
    #[arg(long, global = true, value_name = "BYTES")]
    pub max_layer_size: Option<u64>,
}

/// The verbs. Each verb's arguments are defined only when it is the one invoked
/// (`defer`): building all of them cost every short command over a millisecond.
#[derive(Debug, Subcommand)]
#[command(defer = true)]
pub enum Command {
    /// Download an image from a registry and unpack it.
    #[command(
        after_help = "Examples:\n  berth pull alpine\n  berth pull --platform linux/arm64 127.0.0.1:5000/tools:v1\n  berth pull --all-platforms --quiet registry.example/app@sha256:...\n  berth pull --no-unpack alpine && berth checkout --fuse alpine ./work   # no unpacking at all"
    )]
    Pull(PullArgs),
    /// Upload an image to a registry (under its own name, or DEST).
    #[command(
        after_help = "Examples:\n  berth push 127.0.0.1:5000/tools:v1\n  berth push tools:v1 registry.example/team/tools:v1"
    )]
    Push(PushArgs),
    /// Save credentials for a registry in the docker config file.
    #[command(
        after_help = "Examples:\n  berth login registry.example -u alice\n  echo \"$TOKEN\" | berth login registry.example -u alice --password-stdin"
    )]
    Login(LoginArgs),
    /// Remove a registry's credentials from the docker config file.
    Logout(LogoutArgs),
    /// Import images from an OCI layout (tar or directory) or a `docker save` tar.
    #[command(
        after_help = "Examples:\n  berth import busybox-oci.tar\n  skopeo copy docker-archive:x.tar oci:dir:x && berth import dir\n  berth import --name localhost/tools:v1 tools.tar"
    )]
    Import(ImportArgs),
    /// Write images to an OCI archive (default) or a docker-archive tar.
    #[command(
        after_help = "Examples:\n  berth export busybox busybox.tar\n  berth export --format docker busybox alpine both.tar\n  skopeo inspect oci-archive:busybox.tar"
    )]
    Export(ExportArgs),
    /// List images.
    #[command(visible_alias = "ls")]
    Images(ImagesArgs),
    /// Show an image's manifest, config and layers.
    Inspect(InspectArgs),
    /// Give an image another name.
    Tag(TagArgs),
    /// Remove image names; their content goes at the next `berth gc`.
    Rmi(RmiArgs),
    /// Check out an image (or `scratch`) as a writable root filesystem mounted at DIR.
    #[command(
        after_help = "Examples:\n  berth checkout busybox ./work\n  berth checkout scratch ./rootfs\n  berth checkout --readonly alpine /mnt/alpine\n  berth checkout --fuse alpine ./work   # overlay on a FUSE view, nothing unpacked"
    )]
    Checkout(CheckoutArgs),
    /// List checkouts.
    Checkouts,
    /// Changes in a checkout against its base image, like `git status --short` (A/M/D).
    Status(DirArg),
    /// Summarise a checkout's changes (`--stat`: counts and bytes).
    Diff(DiffArgs),
    /// Turn a checkout's changes into a new layer and image; the checkout moves onto it.
    #[command(
        after_help = "Examples:\n  berth commit ./work localhost/tools:v1 -m \"add tools\"\n  berth commit ./work app:v2 --change 'CMD [\"/bin/app\"]' --change 'ENV MODE=prod'"
    )]
    Commit(CommitArgs),
    /// An image's history, newest first.
    Log(LogArgs),
    /// Unmount and delete a checkout and its changes.
    Discard(DiscardArgs),
    /// Mount a checkout again (after a reboot or `berth umount`), or with `--fuse REF`
    /// an image's tree read-only, served from the store without unpacking.
    #[command(
        after_help = "Examples:\n  berth mount ./work\n  berth mount --fuse busybox /mnt/busybox   # berth umount /mnt/busybox"
    )]
    Mount(MountArgs),
    /// Unmount a checkout without deleting it.
    Umount(DirArg),
    /// List snapshots, or remove one.
    Snapshots(SnapshotsArgs),
    /// Remove content, snapshots and abandoned writes nothing refers to (safe beside
    /// running pulls, imports and containers).
    #[command(
        after_help = "gc keeps what any namespace's images, checkouts, containers, FUSE views and\noperations in flight (leases) use.\n\nExample:\n  berth rmi old:v1 && berth gc"
    )]
    Gc(GcArgs),
    /// Disk use of the store, by kind.
    Du,
    /// Where the store is, its snapshotter, and how it keeps layers.
    Info,
    /// Check the whole store (blobs, objects, snapshots, records); exit status 1 on any problem.
    #[command(
        after_help = "Examples:\n  berth fsck\n  berth fsck --repair   # quarantine corrupt blobs, drop records of lost ones, remove orphans\n  berth fsck --json | jq .problems"
    )]
    Fsck(FsckArgs),
    /// Follow what happens in the store (images, checkouts, containers, snapshots).
    #[command(
        after_help = "Examples:\n  berth events                      # new events, until interrupted\n  berth events --since 10m --json   # the last ten minutes, then new ones\n  berth events --since 2026-12-01T00:00:00Z --no-follow"
    )]
    Events(EventsArgs),
    /// List namespaces, or create and remove them.
    #[command(
        after_help = "Examples:\n  berth namespaces\n  berth -n k8s.io ps -a\n  BERTH_NAMESPACE=ci berth images"
    )]
    Namespaces(NamespacesArgs),
    /// Write berth's man pages (berth.1 and one per verb) into DIR.
    #[command(after_help = "Example:\n  berth manpages /usr/local/share/man/man1 && man berth")]
    Manpages {
        /// The directory (created if missing).
        dir: PathBuf,
    },
    /// Run a command in a new container (from an image or a checkout DIR).
    #[command(
        after_help = "Examples:\n  berth run --rm busybox echo hi\n  berth run -d --name web --stdout /tmp/web.log busybox httpd -f\n  berth run -it ./work sh      # changes land in the checkout: berth status ./work"
    )]
    Run(RunArgs),
    /// Create a container without starting it; prints its id.
    Create(CreateArgs),
    /// Start a created container in the background.
    Start(ContainerArg),
    /// List containers.
    Ps(PsArgs),
    /// Run another command in a running container.
    Exec(ExecArgs),
    /// Send a signal to a container (default KILL).
    Kill(KillArgs),
    /// Stop containers: the stop signal, then KILL after a grace period.
    Stop(StopArgs),
    /// Freeze every process of a container.
    Pause(ContainerArg),
    /// Thaw a paused container.
    Resume(ContainerArg),
    /// Wait for a container to exit; print and exit with its code.
    Wait(ContainerArg),
    /// Remove containers.
    Rm(RmArgs),
    /// Show a container's record, state and command.
    InspectContainer(ContainerArg),
    /// Internal: the FUSE server behind `berth mount --fuse`.
    #[command(name = "__fuse-serve", hide = true)]
    FuseServe(FuseServeArgs),
    /// Internal: a detached container's supervisor.
    #[command(name = "__supervise", hide = true)]
    Supervise(ContainerArg),
    /// Network namespaces, links, addresses and routes (iproute2's words).
    #[command(after_help = NET_HELP)]
    Net(NetArgs),
    /// Print a shell completion script.
    #[command(after_help = "Example:\n  berth completion bash > /etc/bash_completion.d/berth")]
    Completion {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

/// `berth import`.
#[derive(Debug, Args)]
pub struct ImportArgs {
    /// OCI layout tar or directory, or `docker save` tar (may be gzip- or zstd-compressed).
    pub path: PathBuf,
    /// Name for the image (the archive must hold exactly one).
    #[arg(long, value_name = "REF")]
    pub name: Option<String>,
    /// Platform whose manifest must be complete, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Store the blobs only; layers are unpacked (or indexed, for `--fuse`) on first use.
    #[arg(long)]
    pub no_unpack: bool,
}

/// Archive formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Format {
    /// OCI image layout tar.
    Oci,
    /// docker-archive (`docker save`) tar.
    Docker,
}

/// `berth export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Images to export, then the output file (`-` for stdout).
    #[arg(required = true, num_args = 2.., value_name = "REF... FILE")]
    pub args: Vec<String>,
    /// Archive format.
    #[arg(long, value_enum, default_value = "oci")]
    pub format: Format,
    /// Platform for docker archives, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `berth images`.
#[derive(Debug, Args)]
pub struct ImagesArgs {
    /// Only print names.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `berth inspect`.
#[derive(Debug, Args)]
pub struct InspectArgs {
    /// Image name or digest.
    pub reference: String,
    /// Platform to resolve an index to, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `berth tag`.
#[derive(Debug, Args)]
pub struct TagArgs {
    /// Existing image.
    pub source: String,
    /// New name.
    pub target: String,
}

/// `berth rmi`.
#[derive(Debug, Args)]
pub struct RmiArgs {
    /// Image names.
    #[arg(required = true)]
    pub references: Vec<String>,
}

/// `berth gc`.
#[derive(Debug, Args)]
pub struct GcArgs {
    /// Keep abandoned ingests younger than this many seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub ingest_grace: u64,
}

/// `berth fsck`.
#[derive(Debug, Args)]
pub struct FsckArgs {
    /// Repair what is safe to repair.
    #[arg(long)]
    pub repair: bool,
}

/// `berth events`.
#[derive(Debug, Args)]
pub struct EventsArgs {
    /// Start with events since this time: RFC 3339, seconds since the epoch, or an age
    /// such as 10m or 2h.
    #[arg(long, value_name = "TIME")]
    pub since: Option<String>,
    /// Print what is recorded and exit instead of following.
    #[arg(long)]
    pub no_follow: bool,
    /// Events of every namespace.
    #[arg(short, long)]
    pub all_namespaces: bool,
}

/// `berth namespaces`.
#[derive(Debug, Args)]
pub struct NamespacesArgs {
    #[command(subcommand)]
    pub command: Option<NamespacesCommand>,
}

/// `berth namespaces create|rm`.
#[derive(Debug, Subcommand)]
pub enum NamespacesCommand {
    /// Create a namespace (one also comes into being with its first image or container).
    Create {
        /// Name.
        name: String,
    },
    /// Remove empty namespaces.
    Rm {
        /// Names.
        #[arg(required = true)]
        names: Vec<String>,
    },
}

/// `berth checkout`.
#[derive(Debug, Args)]
pub struct CheckoutArgs {
    /// Image to check out, or `scratch` for an empty root filesystem.
    pub image: String,
    /// Where to mount it (created if missing; must be empty).
    pub dir: PathBuf,
    /// Mount read-only.
    #[arg(long)]
    pub readonly: bool,
    /// Stack the writable overlay on a FUSE view of the image served from the file
    /// objects, instead of on unpacked layer directories.
    #[arg(long, conflicts_with = "readonly")]
    pub fuse: bool,
    /// Platform to resolve a multi-platform image to, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `berth mount`.
#[derive(Debug, Args)]
pub struct MountArgs {
    /// Mount this image read-only over FUSE instead of remounting a checkout.
    #[arg(long, value_name = "REF")]
    pub fuse: Option<String>,
    /// The checkout's directory (or, with --fuse, where to mount the image).
    pub dir: PathBuf,
}

/// `berth __fuse-serve`.
#[derive(Debug, Args)]
pub struct FuseServeArgs {
    /// Mount point.
    pub dir: PathBuf,
    /// A lease to hold while serving (its starter's).
    #[arg(long)]
    pub lease: Option<String>,
    /// Layer keys (chainIDs), base first.
    pub layers: Vec<String>,
}

/// A verb on one checkout directory.
#[derive(Debug, Args)]
pub struct DirArg {
    /// The checkout's directory.
    pub dir: PathBuf,
}

/// `berth discard`.
#[derive(Debug, Args)]
pub struct DiscardArgs {
    /// The checkout's directory.
    pub dir: PathBuf,
    /// Stop running containers that use the checkout first.
    #[arg(short, long)]
    pub force: bool,
}

/// `berth diff`.
#[derive(Debug, Args)]
pub struct DiffArgs {
    /// The checkout's directory.
    pub dir: PathBuf,
    /// Counts and bytes instead of the list of paths.
    #[arg(long)]
    pub stat: bool,
}

/// Layer compression.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LayerCompression {
    /// gzip (the most widely readable).
    Gzip,
    /// zstd (faster, smaller; needs OCI-aware readers).
    Zstd,
    /// none.
    None,
}

/// `berth commit`.
#[derive(Debug, Args)]
pub struct CommitArgs {
    /// The checkout's directory.
    pub dir: PathBuf,
    /// Name for the new image.
    pub reference: String,
    /// Message recorded in the image history.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Author recorded in the image config and history.
    #[arg(long)]
    pub author: Option<String>,
    /// Dockerfile-style config change: CMD, ENTRYPOINT, ENV, WORKDIR, USER, LABEL, EXPOSE.
    #[arg(long = "change", short = 'c', value_name = "INSTRUCTION")]
    pub changes: Vec<String>,
    /// Compression of the new layer.
    #[arg(long, value_enum, default_value = "gzip")]
    pub compression: LayerCompression,
    /// Stop running containers that use the checkout first (a commit switches it).
    #[arg(short, long)]
    pub force: bool,
}

/// `berth log`.
#[derive(Debug, Args)]
pub struct LogArgs {
    /// Image name.
    pub reference: String,
}

/// `berth snapshots`.
#[derive(Debug, Args)]
pub struct SnapshotsArgs {
    #[command(subcommand)]
    pub command: Option<SnapshotsCommand>,
}

/// `berth snapshots rm`.
#[derive(Debug, Subcommand)]
pub enum SnapshotsCommand {
    /// Remove snapshots (refused while others are based on them).
    Rm {
        /// Snapshot keys.
        #[arg(required = true)]
        keys: Vec<String>,
    },
}

/// `berth pull`.
#[derive(Debug, Args)]
pub struct PullArgs {
    /// Image reference, e.g. alpine or 127.0.0.1:5000/tools:v1.
    pub reference: String,
    /// Platform to pull (and unpack), as os/arch[/variant]; default: this machine's.
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
    /// Download every platform of a multi-platform image (this machine's is unpacked).
    #[arg(long)]
    pub all_platforms: bool,
    /// Blobs downloaded at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_concurrent: usize,
    /// Talk plain HTTP to the registry (loopback registries always do).
    #[arg(long)]
    pub plain_http: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
    /// Store the blobs only; layers are unpacked (or indexed, for `--fuse`) on first use.
    #[arg(long)]
    pub no_unpack: bool,
}

/// `berth push`.
#[derive(Debug, Args)]
pub struct PushArgs {
    /// Image in the store.
    pub reference: String,
    /// Where to push it (default: the image's own name).
    pub dest: Option<String>,
    /// Blobs uploaded at once.
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub max_concurrent: usize,
    /// Talk plain HTTP to the registry (loopback registries always do).
    #[arg(long)]
    pub plain_http: bool,
    /// No progress output.
    #[arg(short, long)]
    pub quiet: bool,
}

/// `berth login`.
#[derive(Debug, Args)]
pub struct LoginArgs {
    /// Registry host, e.g. registry.example or 127.0.0.1:5000.
    pub registry: String,
    /// User name (asked for on a terminal when missing).
    #[arg(short, long)]
    pub username: Option<String>,
    /// Read the password from standard input (otherwise it is asked for, without echo).
    #[arg(long)]
    pub password_stdin: bool,
    /// Talk plain HTTP to the registry.
    #[arg(long)]
    pub plain_http: bool,
}

/// `berth logout`.
#[derive(Debug, Args)]
pub struct LogoutArgs {
    /// Registry host.
    pub registry: String,
}

/// `berth create` (and the options `berth run` shares).
#[derive(Debug, Args)]
pub struct CreateArgs {
    /// Image name, or a checkout directory written as a path (./work, /srv/work).
    pub image: String,
    /// Command and arguments (default: the image's entrypoint and cmd).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
    /// Container name (unique).
    #[arg(long)]
    pub name: Option<String>,
    /// Remove the container (snapshot, state, record) once it exits.
    #[arg(long)]
    pub rm: bool,
    /// Keep stdin open (foreground runs; without it stdin is /dev/null).
    #[arg(short, long)]
    pub interactive: bool,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Environment variable K=V (or K to copy the caller's).
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// File of K=V lines.
    #[arg(long, value_name = "FILE")]
    pub env_file: Vec<PathBuf>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User: name, uid, name:group or uid:gid (resolved in the rootfs' /etc/passwd).
    #[arg(short, long)]
    pub user: Option<String>,
    /// Hostname (default: the short id).
    #[arg(long)]
    pub hostname: Option<String>,
    /// Replace the image's entrypoint ("" clears it).
    #[arg(long)]
    pub entrypoint: Option<String>,
    /// Mount the rootfs read-only.
    #[arg(long)]
    pub read_only: bool,
    /// type=bind,src=HOST,dst=PATH[,ro] or type=tmpfs,dst=PATH.
    #[arg(long = "mount", value_name = "SPEC")]
    pub mounts: Vec<String>,
    /// A tmpfs at PATH[:opts].
    #[arg(long, value_name = "PATH")]
    pub tmpfs: Vec<String>,
    /// Memory limit (e.g. 64m).
    #[arg(short, long, value_name = "BYTES")]
    pub memory: Option<String>,
    /// CPU limit, in cores (e.g. 0.5).
    #[arg(long)]
    pub cpus: Option<f64>,
    /// Process limit (-1: none).
    #[arg(long, allow_negative_numbers = true)]
    pub pids_limit: Option<i64>,
    /// Add a capability (or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_add: Vec<String>,
    /// Drop a capability (or ALL).
    #[arg(long, value_name = "CAP")]
    pub cap_drop: Vec<String>,
    /// All capabilities and devices, no masked paths.
    #[arg(long)]
    pub privileged: bool,
    /// OCI runtime: runc, crun, or a path to any runc-compatible binary.
    #[arg(long, default_value = "runc", value_name = "RUNTIME")]
    pub runtime: String,
    /// Network: none (own namespace, loopback only), host, ns:NAME (a `berth net ns`
    /// namespace), container:ID (share another container's).
    #[arg(
        long,
        visible_alias = "network",
        default_value = "none",
        value_name = "MODE"
    )]
    pub net: String,
    /// Detached containers' stdout goes to this file or FIFO (default /dev/null).
    #[arg(long, value_name = "PATH")]
    pub stdout: Option<PathBuf>,
    /// Detached containers' stderr goes to this file or FIFO (default /dev/null).
    #[arg(long, value_name = "PATH")]
    pub stderr: Option<PathBuf>,
    /// Platform to resolve a multi-platform image to, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// `berth run`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Run in the background; print the id once it runs.
    #[arg(short, long)]
    pub detach: bool,
    #[command(flatten)]
    pub create: CreateArgs,
}

/// `berth ps`.
#[derive(Debug, Args)]
pub struct PsArgs {
    /// Also list containers that are not running.
    #[arg(short, long)]
    pub all: bool,
    /// Only print ids.
    #[arg(short, long)]
    pub quiet: bool,
}

/// A verb on one container.
#[derive(Debug, Args)]
pub struct ContainerArg {
    /// Container id (or unique prefix) or name.
    pub container: String,
}

/// `berth exec`.
#[derive(Debug, Args)]
pub struct ExecArgs {
    /// Container id (or unique prefix) or name.
    pub container: String,
    /// Command and arguments.
    #[arg(
        required = true,
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "CMD"
    )]
    pub command: Vec<String>,
    /// Allocate a terminal.
    #[arg(short, long)]
    pub tty: bool,
    /// Keep stdin open.
    #[arg(short, long)]
    pub interactive: bool,
    /// Extra environment variable K=V.
    #[arg(short, long, value_name = "K=V")]
    pub env: Vec<String>,
    /// Working directory inside the container.
    #[arg(short, long, value_name = "DIR")]
    pub workdir: Option<String>,
    /// User (name or uid[:gid]).
    #[arg(short, long)]
    pub user: Option<String>,
}

/// `berth kill`.
#[derive(Debug, Args)]
pub struct KillArgs {
    /// Container id (or unique prefix) or name.
    pub container: String,
    /// Signal name or number.
    #[arg(short, long, default_value = "KILL")]
    pub signal: String,
}

/// `berth stop`.
#[derive(Debug, Args)]
pub struct StopArgs {
    /// Containers (id, unique prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Seconds to wait after the stop signal before SIGKILL.
    #[arg(short = 't', long = "time", default_value_t = 10, value_name = "SECS")]
    pub time: u64,
}

/// `berth rm`.
#[derive(Debug, Args)]
pub struct RmArgs {
    /// Containers (id, unique prefix or name).
    #[arg(required = true)]
    pub containers: Vec<String>,
    /// Kill running containers first.
    #[arg(short, long)]
    pub force: bool,
}

const NET_HELP: &str = "\
Examples:
  berth net ns add lab                           # a named network namespace (loopback up)
  berth net link add veth-a type veth peer veth-b netns lab
  berth net link set veth-a up mtu 1400
  berth net --netns lab addr add 10.0.0.2/24 dev veth-b
  berth net --netns lab route add default via 10.0.0.1
  berth net link add br0 type bridge && berth net link set veth-a master br0
  berth net --json link ls
Namespaces live under the run root (/run/berth/netns); `ns add --ip-netns` puts one in
/run/netns so `ip netns` sees it too.";

/// `berth net`.
#[derive(Debug, Args)]
pub struct NetArgs {
    /// Act inside this network namespace.
    #[arg(long, global = true, value_name = "NS")]
    pub netns: Option<String>,
    #[command(subcommand)]
    pub command: NetCommand,
}

/// `berth net` objects.
#[derive(Debug, Subcommand)]
pub enum NetCommand {
    /// Network namespaces: add, del, ls.
    Ns {
        #[command(subcommand)]
        action: NsAction,
    },
    /// Links: `add NAME type veth peer PEER [netns NS]`, `add NAME type bridge`,
    /// `set NAME [up|down] [mtu N] [address MAC] [master BR|nomaster] [name NEW] [netns NS|PID]`,
    /// `del NAME`, `ls`.
    Link {
        /// iproute2-style words.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Addresses: `add|del CIDR dev NAME`, `ls [dev NAME]`.
    Addr {
        /// iproute2-style words.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
    /// Routes: `add|del default|CIDR [via IP] [dev NAME] [metric N]`, `ls`.
    Route {
        /// iproute2-style words.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        words: Vec<String>,
    },
}

/// `berth net ns`.
#[derive(Debug, Subcommand)]
pub enum NsAction {
    /// Create a persistent namespace.
    Add {
        /// Name.
        name: String,
        /// Put it in /run/netns so `ip netns` sees it.
        #[arg(long)]
        ip_netns: bool,
    },
    /// Delete a namespace (refused while a process is in it).
    Del {
        /// Name.
        name: String,
    },
    /// List namespaces.
    Ls,
}
