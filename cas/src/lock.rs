//! Advisory file locks (flock) between berth processes.
//!
//! Every process that changes the store holds the root's lock shared; gc holds it
//! exclusive, so a sweep never races an import that has written blobs but not yet
//! named them. flock locks belong to the open file, so a process that forks a
//! long-lived child must exec (closing the descriptor) rather than keep it.

use std::fs::{File, OpenOptions};
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A held lock; released on drop.
pub struct Lock {
    _held: Flock<File>,
}

/// How to take a lock.
#[derive(Debug, Clone, Copy)]
pub enum Mode {
    /// Many holders at once.
    Shared,
    /// One holder.
    Exclusive,
}

/// Takes a lock on `path` (created if missing), waiting for it.
pub fn lock(path: &Path, mode: Mode) -> Result<Lock> {
    let file = open(path)?;
    let arg = match mode {
        Mode::Shared => FlockArg::LockShared,
        Mode::Exclusive => FlockArg::LockExclusive,
    };
    let held = Flock::lock(file, arg).map_err(|(_, e)| Error::io(path)(e.into()))?;
    Ok(Lock { _held: held })
}

/// Takes an exclusive lock on an existing file if nobody holds it; None when busy.
pub fn try_lock_file(file: File) -> Option<Flock<File>> {
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}

fn open(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(Error::io(path))
}
