//! Opening small files' objects ahead of the reader.
//!
//! Every OPEN of a FUSE file is a round trip in which the server opens the object: with
//! a cold cache that is a directory-block and an inode read from disk while the reader
//! waits, and its data is read only after that. Readers that open one file tend to open
//! its next siblings (walks, globs, package managers, `cat dir/*`), so after each OPEN a
//! worker thread opens the next few small siblings' objects and asks the kernel to read
//! their data ahead (`POSIX_FADV_WILLNEED`). The OPEN that follows takes the open file
//! from here and its data is already on the way. Bounded: a few dozen files ahead, a
//! fixed number of open files held, and requests are dropped rather than queued when
//! the worker is behind.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fs::File;
use std::path::PathBuf;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};

/// Siblings opened ahead of the file being opened.
pub(super) const AHEAD: usize = 16;
/// Files at most this big are prefetched (bigger ones gain little: passthrough streams
/// them, and the kernel's own readahead covers them once reading starts).
pub(super) const SMALL: u64 = 256 << 10;
/// Open files held at most.
const CAPACITY: usize = 256;
/// Requests waiting for the worker at most.
const QUEUE: usize = 64;

/// One object to open ahead: its inode in the view and its path.
pub(super) type Job = (u64, PathBuf);

#[derive(Default)]
struct Held {
    files: HashMap<u64, File>,
    /// Inodes requested or held, oldest first: a file is requested once.
    order: VecDeque<u64>,
    known: HashSet<u64>,
}

/// The prefetch worker's shared state and its queue.
pub(super) struct Prefetcher {
    held: Arc<Mutex<Held>>,
    queue: SyncSender<Job>,
}

fn lock(held: &Mutex<Held>) -> MutexGuard<'_, Held> {
    held.lock().unwrap_or_else(|p| p.into_inner())
}

impl Prefetcher {
    /// Starts the worker; it ends when the prefetcher is dropped.
    pub(super) fn start() -> Prefetcher {
        let held = Arc::new(Mutex::new(Held::default()));
        let (queue, jobs) = sync_channel(QUEUE);
        let worker = Arc::clone(&held);
        let _ = std::thread::Builder::new()
            .name("berth-prefetch".into())
            .spawn(move || work(&worker, &jobs));
        Prefetcher { held, queue }
    }

    /// Asks for `job` unless it was asked for already; never blocks.
    pub(super) fn request(&self, job: Job) {
        let mut held = lock(&self.held);
        if !held.known.insert(job.0) {
            return;
        }
        held.order.push_back(job.0);
        while held.order.len() > CAPACITY {
            if let Some(old) = held.order.pop_front() {
                held.known.remove(&old);
                held.files.remove(&old);
            }
        }
        drop(held);
        if self.queue.try_send(job.clone()).is_err() {
            // Forget it entirely: an earlier request's open may have landed meanwhile.
            let mut held = lock(&self.held);
            held.known.remove(&job.0);
            held.files.remove(&job.0);
            held.order.retain(|i| *i != job.0);
        }
    }

    /// The object of `ino` if it was opened ahead (and forgets it).
    pub(super) fn take(&self, ino: u64) -> Option<File> {
        let mut held = lock(&self.held);
        let file = held.files.remove(&ino)?;
        held.known.remove(&ino);
        held.order.retain(|i| *i != ino);
        Some(file)
    }
}

fn work(held: &Mutex<Held>, jobs: &Receiver<Job>) {
    for (ino, path) in jobs {
        // Dropped from the window meanwhile (or taken): not worth the I/O any more.
        if !lock(held).known.contains(&ino) {
            continue;
        }
        let Ok(file) = File::open(&path) else {
            continue; // the OPEN itself will report it
        };
        let _ = nix::fcntl::posix_fadvise(
            &file,
            0,
            0,
            nix::fcntl::PosixFadviseAdvice::POSIX_FADV_WILLNEED,
        );
        let mut held = lock(held);
        if held.known.contains(&ino) {
            held.files.insert(ino, file);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opened_ahead_files_are_taken_once_and_the_window_is_bounded() {
        let dir = tempfile::tempdir().expect("tmp");
        let mut paths = Vec::new();
        for i in 0..(CAPACITY as u64 + 40) {
            let p = dir.path().join(format!("f{i}"));
            std::fs::write(&p, i.to_string()).expect("write");
            paths.push(p);
        }
        let pf = Prefetcher::start();
        for (i, p) in paths.iter().enumerate().take(8) {
            pf.request((i as u64, p.clone()));
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while lock(&pf.held).files.len() < 8 {
            assert!(
                std::time::Instant::now() < deadline,
                "worker never opened them"
            );
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        let mut f = pf.take(3).expect("opened ahead");
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).expect("read");
        assert_eq!(s, "3");
        assert!(pf.take(3).is_none(), "taken once");
        assert!(pf.take(999).is_none());
        // Asking again for what is held is a no-op; far more requests than the window
        // keep at most CAPACITY inodes known.
        pf.request((4, paths[4].clone()));
        for (i, p) in paths.iter().enumerate() {
            pf.request((i as u64, p.clone()));
            std::thread::sleep(std::time::Duration::from_micros(50));
        }
        let held = lock(&pf.held);
        assert!(held.known.len() <= CAPACITY, "{}", held.known.len());
        assert!(held.files.len() <= CAPACITY);
        assert_eq!(held.order.len(), held.known.len());
    }
}
