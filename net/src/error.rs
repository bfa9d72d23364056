//! The crate's one error type: every variant names the link, address or
//! namespace involved, and kernel errnos carry advice on what to do about them.

use std::io;
use std::path::PathBuf;

use nix::errno::Errno;

/// Result alias for this crate.
pub type Result<T, E = NetError> = std::result::Result<T, E>;

/// Everything that can go wrong in `berth-net`.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// An interface name the kernel would refuse (length, '/', whitespace).
    #[error("invalid interface name {name:?}: {reason}")]
    InvalidLinkName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A namespace name that cannot be a file name in the netns directory.
    #[error("invalid network namespace name {name:?}: {reason}")]
    InvalidNetnsName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// An address or prefix that does not parse as `ADDR/PREFIX`.
    #[error("invalid CIDR {input:?}: {reason}")]
    InvalidCidr {
        /// The text given.
        input: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// A MAC address that does not parse as six hex octets.
    #[error("invalid MAC address {input:?}: expected six hex octets like 02:00:00:00:00:01")]
    InvalidMac {
        /// The text given.
        input: String,
    },
    /// A route whose parts do not fit together (mixed families, nothing to route by).
    #[error("invalid route {route}: {reason}")]
    InvalidRoute {
        /// The route as displayed.
        route: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// The namespace file does not exist.
    #[error("network namespace {name:?} not found ({path})")]
    NetnsNotFound {
        /// Namespace name (or the path when opened by path).
        name: String,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// A namespace of that name is already there.
    #[error("network namespace {name:?} already exists ({path})")]
    NetnsExists {
        /// Namespace name.
        name: String,
        /// Its file.
        path: PathBuf,
    },
    /// The file exists but is not a bind-mounted network namespace.
    #[error("{path} is not a network namespace (not an nsfs mount)")]
    NotANetns {
        /// The file.
        path: PathBuf,
    },
    /// Deleting a namespace that a process or thread still lives in.
    #[error("network namespace {name:?} is in use by pid {pid}: stop it first")]
    NetnsBusy {
        /// Namespace name.
        name: String,
        /// One process (or thread id) inside it.
        pid: i32,
    },
    /// A system call on a namespace (unshare, mount, setns...) failed.
    #[error("network namespace {name:?}: {op} {path}: {errno}{}", advice(*errno))]
    NetnsSys {
        /// Namespace name.
        name: String,
        /// The call that failed.
        op: &'static str,
        /// The file involved.
        path: PathBuf,
        /// What the kernel said.
        errno: Errno,
    },
    /// Reading or writing a namespace file or directory failed.
    #[error("network namespace {name:?}: {op} {path}: {source}")]
    NetnsIo {
        /// Namespace name.
        name: String,
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// No link of that name in the namespace.
    #[error("link {name:?} not found in {netns}")]
    LinkNotFound {
        /// Link name.
        name: String,
        /// Namespace label ("host" for the caller's own).
        netns: String,
    },
    /// A link of that name is already there.
    #[error("link {name:?} already exists in {netns}")]
    LinkExists {
        /// Link name.
        name: String,
        /// Namespace label.
        netns: String,
    },
    /// Moving a link to (or creating a peer in) the namespace of a pid that does not exist.
    #[error("no process with pid {pid} to take its network namespace")]
    NoSuchProcess {
        /// The pid given.
        pid: u32,
    },
    /// The kernel refused an operation for lack of privilege.
    #[error("{op} {target} in {netns}: permission denied: need root / CAP_NET_ADMIN")]
    PermissionDenied {
        /// The verb.
        op: &'static str,
        /// The link, address or route.
        target: String,
        /// Namespace label.
        netns: String,
    },
    /// Any other kernel refusal, with advice where the errno has a usual cause.
    #[error("{op} {target} in {netns}: {errno}{}", advice(*errno))]
    Kernel {
        /// The verb.
        op: &'static str,
        /// The link, address or route.
        target: String,
        /// Namespace label.
        netns: String,
        /// What the kernel said.
        errno: Errno,
    },
    /// Opening, sending on or receiving from the netlink socket failed.
    #[error("netlink socket ({netns}): {op}: {source}")]
    Socket {
        /// Namespace label.
        netns: String,
        /// What was being done.
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
    /// The kernel sent something we could not decode.
    #[error("netlink reply for {op} in {netns} could not be decoded: {detail}")]
    Decode {
        /// The verb.
        op: &'static str,
        /// Namespace label.
        netns: String,
        /// The decoder's message.
        detail: String,
    },
}

impl NetError {
    /// The kernel errno behind this error, if there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            NetError::Kernel { errno, .. } | NetError::NetnsSys { errno, .. } => Some(*errno),
            NetError::PermissionDenied { .. } => Some(Errno::EPERM),
            NetError::LinkExists { .. } | NetError::NetnsExists { .. } => Some(Errno::EEXIST),
            NetError::LinkNotFound { .. } => Some(Errno::ENODEV),
            NetError::NetnsNotFound { .. } => Some(Errno::ENOENT),
            NetError::NetnsBusy { .. } => Some(Errno::EBUSY),
            NetError::NoSuchProcess { .. } => Some(Errno::ESRCH),
            _ => None,
        }
    }
}

/// A short hint for errnos whose usual cause is known; empty otherwise.
pub(crate) fn advice(errno: Errno) -> &'static str {
    match errno {
        Errno::EEXIST => " (already exists)",
        Errno::ENODEV => " (no such device)",
        Errno::EPERM | Errno::EACCES => " (need root / CAP_NET_ADMIN)",
        Errno::EADDRNOTAVAIL => " (no such address on that link)",
        Errno::ENETUNREACH => {
            " (gateway not reachable: add an address on its subnet and set the link up first)"
        }
        Errno::ESRCH => " (no such route or process)",
        Errno::EAFNOSUPPORT | Errno::EOPNOTSUPP => {
            " (is IPv6 enabled? is the link kind supported by this kernel?)"
        }
        Errno::EBUSY => " (in use)",
        Errno::ERANGE => " (value out of range, e.g. MTU too small or too large for the link)",
        _ => "",
    }
}

/// Maps a kernel errno for `op` on `target` to the typed error a caller can match on.
pub(crate) fn kernel(op: &'static str, target: &str, netns: &str, errno: Errno) -> NetError {
    match errno {
        Errno::EPERM | Errno::EACCES => NetError::PermissionDenied {
            op,
            target: target.to_owned(),
            netns: netns.to_owned(),
        },
        _ => NetError::Kernel {
            op,
            target: target.to_owned(),
            netns: netns.to_owned(),
            errno,
        },
    }
}
