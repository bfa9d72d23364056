//! The core's errors: one enum whose variants say what went wrong in the user's terms
//! (which image, which checkout, which container), so a face (the CLI, the CRI service)
//! can choose its message and exit code without reading error text.

use std::path::PathBuf;

/// Result alias for the core.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the core's services can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The content store failed.
    #[error(transparent)]
    Store(#[from] berth_cas::Error),
    /// An image reference does not parse.
    #[error(transparent)]
    Reference(#[from] berth_cas::reference::ReferenceError),
    /// A platform string does not parse.
    #[error(transparent)]
    Platform(#[from] berth_cas::platform::PlatformError),
    /// A registry conversation failed.
    #[error(transparent)]
    Registry(#[from] berth_cas::registry::RegistryError),
    /// A snapshotter failed.
    #[error(transparent)]
    Snapshot(#[from] berth_fs::snapshot::SnapshotError),
    /// The file-object store failed.
    #[error(transparent)]
    Objects(#[from] berth_fs::objects::ObjectError),
    /// A layer tar is bad or could not be applied.
    #[error(transparent)]
    Apply(#[from] berth_fs::ApplyError),
    /// Computing or writing a diff failed.
    #[error(transparent)]
    Diff(#[from] berth_fs::diff::DiffError),
    /// Mounting or unmounting failed.
    #[error(transparent)]
    Mount(#[from] berth_mount::MountError),
    /// The OCI runtime failed.
    #[error(transparent)]
    Runtime(#[from] berth_exec::runtime::RuntimeError),
    /// A container's supervisor failed.
    #[error(transparent)]
    Supervisor(#[from] berth_exec::supervisor::SupervisorError),
    /// A run option or image setting is invalid.
    #[error(transparent)]
    Spec(#[from] berth_exec::spec::SpecError),
    /// Network namespaces or links failed.
    #[error(transparent)]
    Net(#[from] berth_net::NetError),
    /// A filesystem operation of the core's own failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done, with the path.
        what: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A layer could not be unpacked.
    #[error("applying layer {digest}: {source}")]
    Layer {
        /// The layer blob.
        digest: String,
        /// Why.
        source: Box<Error>,
    },
    /// An image a step needs (by name or digest) is not in this namespace.
    #[error("no such image: {0}")]
    ImageNotFound(String),
    /// No container by that id, prefix or name in this namespace.
    #[error("no such container: {0}")]
    ContainerNotFound(String),
    /// An id prefix matches several containers.
    #[error("container id prefix {prefix} is ambiguous ({count} containers match)")]
    AmbiguousContainer {
        /// The prefix.
        prefix: String,
        /// How many match.
        count: usize,
    },
    /// A container name is taken in this namespace.
    #[error("the container name {0:?} is already in use")]
    NameInUse(String),
    /// A name (container, namespace) breaks the naming rules.
    #[error("invalid {what} {name:?}: {rule}")]
    InvalidName {
        /// What kind of name.
        what: &'static str,
        /// The name.
        name: String,
        /// The rule it breaks.
        rule: &'static str,
    },
    /// A namespace still holds images, checkouts or containers.
    #[error("namespace {0:?} is not empty: remove its images, checkouts and containers first")]
    NamespaceNotEmpty(String),
    /// A directory is not a checkout (of this namespace).
    #[error("{0} is not a berth checkout")]
    NotACheckout(PathBuf),
    /// The directory is a checkout already.
    #[error("{0} is already a checkout")]
    AlreadyACheckout(PathBuf),
    /// A directory that must be empty is not.
    #[error("{0} is not empty; a mount would hide its contents")]
    DirNotEmpty(PathBuf),
    /// A directory is a mount point already.
    #[error("{0} is already a mount point")]
    AlreadyMounted(PathBuf),
    /// Running containers use a checkout that an operation would change under them.
    #[error("checkout {dir} is used by running container(s) {containers}: stop them first, or use --force")]
    CheckoutInUse {
        /// The checkout.
        dir: String,
        /// Their names or short ids.
        containers: String,
    },
    /// A read-only checkout has nothing to commit.
    #[error("{0} is a read-only checkout; nothing to commit")]
    ReadOnlyCheckout(String),
    /// An operation that needs a checkout without a FUSE view, or the reverse.
    #[error("{0}")]
    Unsupported(String),
    /// A container is not in the state an operation needs.
    #[error("container {container} is {state}: {need}")]
    WrongState {
        /// Its name or short id.
        container: String,
        /// Its state.
        state: String,
        /// What the operation needs.
        need: &'static str,
    },
    /// The container's command is not in its root filesystem (docker exits 127).
    #[error("{0}: command not found in the container")]
    CommandNotFound(String),
    /// The container's command exists but cannot be executed (docker exits 126).
    #[error("{0}: command cannot be executed in the container")]
    CommandNotExecutable(String),
    /// The OCI runtime binary is missing.
    #[error("OCI runtime {0:?} not found on PATH or not executable")]
    RuntimeNotFound(String),
    /// No snapshotter is registered by that name.
    #[error("unknown snapshotter {name:?} ({known})")]
    UnknownSnapshotter {
        /// The name asked for.
        name: String,
        /// The registered names.
        known: String,
    },
    /// A `commit --change` instruction is invalid.
    #[error("--change {0}")]
    BadChange(String),
    /// An image's documents contradict each other.
    #[error("image {image}: {reason}")]
    BadImage {
        /// The image.
        image: String,
        /// What is wrong.
        reason: String,
    },
    /// A helper process (FUSE server, supervisor) failed to come up.
    #[error("{what} failed: {why}")]
    Helper {
        /// Which helper.
        what: &'static str,
        /// Its last words.
        why: String,
    },
    /// A network mode or namespace name is not usable.
    #[error("{0}")]
    BadNetwork(String),
    /// Waiting took longer than allowed.
    #[error("timed out {0}")]
    Timeout(String),
}

impl Error {
    pub(crate) fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
        let what = what.into();
        move |source| Error::Io { what, source }
    }

    /// The exit code docker gives a container whose process could not start, if this
    /// error is one of those.
    pub fn start_failure_code(&self) -> Option<i32> {
        match self {
            Error::CommandNotFound(_) => Some(127),
            Error::CommandNotExecutable(_) => Some(126),
            _ => None,
        }
    }

    /// Whether this is a "no such thing" error.
    pub fn is_not_found(&self) -> bool {
        match self {
            Error::ImageNotFound(_) | Error::ContainerNotFound(_) | Error::NotACheckout(_) => true,
            Error::Store(e) => e.is_not_found(),
            _ => false,
        }
    }
}
