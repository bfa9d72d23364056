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
    /// Print machine-readable JSON (listings and inspect).
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

/// The verbs.
#[derive(Debug, Subcommand)]
pub enum Command {
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
        after_help = "Examples:\n  berth checkout busybox ./work\n  berth checkout scratch ./rootfs\n  berth checkout --readonly alpine /mnt/alpine"
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
    Discard(DirArg),
    /// Mount a checkout again (after a reboot or `berth umount`).
    Mount(DirArg),
    /// Unmount a checkout without deleting it.
    Umount(DirArg),
    /// List snapshots, or remove one.
    Snapshots(SnapshotsArgs),
    /// Remove content, snapshots and abandoned writes nothing refers to.
    Gc(GcArgs),
    /// Disk use of the store, by kind.
    Du,
    /// Re-hash every blob and check every reference; exit status 1 if anything is wrong.
    Fsck,
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
    /// Also remove abandoned ingests younger than this many seconds.
    #[arg(long, default_value_t = 3600, value_name = "SECS")]
    pub ingest_grace: u64,
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
    /// Platform to resolve a multi-platform image to, as os/arch[/variant].
    #[arg(long, value_name = "PLATFORM")]
    pub platform: Option<String>,
}

/// A verb on one checkout directory.
#[derive(Debug, Args)]
pub struct DirArg {
    /// The checkout's directory.
    pub dir: PathBuf,
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
