//! What can be wrong with the inputs of a spec.

use std::path::PathBuf;

/// Errors building a spec: each names the input at fault.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    /// Neither the image nor the user gave a command.
    #[error("no command specified")]
    NoCommand,
    /// The user is not in the rootfs' /etc/passwd.
    #[error("unable to find user {0}: no matching entries in passwd file")]
    UnknownUser(String),
    /// The group is not in the rootfs' /etc/group.
    #[error("unable to find group {0}: no matching entries in group file")]
    UnknownGroup(String),
    /// A file of the rootfs could not be read.
    #[error("read {path}: {source}")]
    ReadRootfs {
        /// The file, on the host.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// Resolving a rootfs path followed too many symlinks.
    #[error("too many levels of symbolic links resolving {0} in the rootfs")]
    SymlinkLoop(String),
    /// A `--mount` value that does not parse.
    #[error("invalid --mount {spec:?}: {why}")]
    BadMount {
        /// The flag value.
        spec: String,
        /// What is wrong.
        why: String,
    },
    /// A container path (mount destination, workdir) that is not absolute.
    #[error("container path {0:?} is not absolute")]
    RelativeContainerPath(String),
    /// A byte size that does not parse.
    #[error("invalid size {0:?}: want a positive number with an optional k, m, g or t suffix")]
    BadSize(String),
    /// A `--cpus` value out of range.
    #[error("invalid --cpus {0}: want a positive number")]
    BadCpus(String),
    /// A `--pids-limit` of zero or less than -1.
    #[error("invalid --pids-limit {0}: want a positive number, or -1 for no limit")]
    BadPidsLimit(i64),
    /// A malformed line in an env file.
    #[error("{path}:{line}: invalid environment variable line")]
    BadEnvFile {
        /// The env file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
    },
    /// A signal name or number that does not exist.
    #[error("invalid signal {0:?}")]
    BadSignal(String),
    /// A capability name that does not exist.
    #[error("unknown capability {0:?}")]
    UnknownCapability(String),
}
