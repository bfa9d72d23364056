//! Advisory file locks (flock) between berth processes, and the gc gate.
//!
//! No process holds a lock on the whole store for its life. Content is kept alive by
//! references (names, records, leases), and the one moment a reference and the thing it
//! names must appear together (publishing a blob under a lease, preparing a snapshot
//! under one) is a short *shared* hold of the [`Gate`]; gc holds it *exclusive* only
//! while it marks and decides. A turnstile in front of it keeps a stream of short
//! shared holds from starving gc.
//!
//! flock locks belong to the open file description: every acquisition here opens its
//! own descriptor, so two threads of one process exclude each other as two processes
//! do, and descriptors are close-on-exec, so a child never inherits a lock.

use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::error::{Error, Result};

/// A held lock; released on drop.
pub struct Lock {
    _held: Flock<File>,
}

/// How to take a lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
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

/// Takes a lock on `path` (created if missing) if nobody holds a conflicting one.
pub fn try_lock(path: &Path, mode: Mode) -> Result<Option<Lock>> {
    let file = open(path)?;
    let arg = match mode {
        Mode::Shared => FlockArg::LockSharedNonblock,
        Mode::Exclusive => FlockArg::LockExclusiveNonblock,
    };
    match Flock::lock(file, arg) {
        Ok(held) => Ok(Some(Lock { _held: held })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(Error::io(path)(e.into())),
    }
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

/// The gc gate of a store root: `gc.lock` behind the turnstile `gc.turnstile`.
#[derive(Debug, Clone)]
pub struct Gate {
    lock: PathBuf,
    turnstile: PathBuf,
}

/// A shared hold of the gate: gc cannot mark or sweep while it lives.
pub struct Shared {
    _held: Lock,
}

/// The exclusive hold gc marks and decides under.
pub struct Exclusive {
    _turnstile: Lock,
    _held: Lock,
}

impl Gate {
    /// The gate of the store rooted at `root`.
    pub fn new(root: &Path) -> Gate {
        Gate {
            lock: root.join("gc.lock"),
            turnstile: root.join("gc.turnstile"),
        }
    }

    /// Waits until gc is not marking, then keeps it out until the guard drops. Hold it
    /// only around short steps; never take [`Gate::exclusive`] while holding it.
    pub fn shared(&self) -> Result<Shared> {
        let pass = lock(&self.turnstile, Mode::Shared)?;
        let held = lock(&self.lock, Mode::Shared)?;
        drop(pass);
        Ok(Shared { _held: held })
    }

    /// Closes the turnstile to new shared holders, then waits for the current ones.
    pub fn exclusive(&self) -> Result<Exclusive> {
        let turnstile = lock(&self.turnstile, Mode::Exclusive)?;
        let held = lock(&self.lock, Mode::Exclusive)?;
        Ok(Exclusive {
            _turnstile: turnstile,
            _held: held,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    #[test]
    fn exclusive_waits_for_shared_and_blocks_new_shared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let gate = Gate::new(dir.path());
        let first = gate.shared().expect("shared");
        let gc_in = Arc::new(AtomicBool::new(false));
        let gc = {
            let (gate, gc_in) = (gate.clone(), gc_in.clone());
            std::thread::spawn(move || {
                let held = gate.exclusive().expect("exclusive");
                gc_in.store(true, Ordering::SeqCst);
                std::thread::sleep(Duration::from_millis(100));
                gc_in.store(false, Ordering::SeqCst);
                drop(held);
            })
        };
        std::thread::sleep(Duration::from_millis(100));
        assert!(!gc_in.load(Ordering::SeqCst), "gc ran under a shared hold");
        // A newcomer now queues behind gc (the turnstile) instead of starving it.
        let newcomer = {
            let (gate, gc_in) = (gate.clone(), gc_in.clone());
            std::thread::spawn(move || {
                let _s = gate.shared().expect("shared");
                assert!(!gc_in.load(Ordering::SeqCst), "shared hold while gc held");
            })
        };
        std::thread::sleep(Duration::from_millis(50));
        drop(first);
        gc.join().expect("gc thread");
        newcomer.join().expect("newcomer thread");
    }

    #[test]
    fn try_lock_sees_a_holder_in_the_same_process() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("l");
        let held = lock(&p, Mode::Shared).expect("lock");
        assert!(try_lock(&p, Mode::Exclusive).expect("try").is_none());
        assert!(try_lock(&p, Mode::Shared).expect("try").is_some());
        drop(held);
        assert!(try_lock(&p, Mode::Exclusive).expect("try").is_some());
    }
}
