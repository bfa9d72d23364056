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
    /// Remove content, snapshots and abandoned writes nothing refers to.
    Gc(GcArgs),
    /// Disk use of the store, by kind.
    Du,
    /// Re-hash every blob and check every reference; exit status 1 if anything is wrong.
    Fsck,
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
