//! Named, persistent network namespaces (what `ip netns` does).
//!
//! A namespace is made to outlive its creator by bind-mounting its nsfs file
//! onto an empty file in a directory: `<run>/netns/NAME` for berth, or
//! `/run/netns/NAME` so `ip netns` sees it too. All namespace switching
//! happens on dedicated, short-lived threads: `setns` only moves the calling
//! thread, so the caller's threads never change namespace and nothing has to
//! be restored (the thread that joined simply ends).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};

use crate::error::{NetError, Result};

/// Where `ip netns` keeps its namespaces.
pub const SYSTEM_NETNS_DIR: &str = "/run/netns";

/// A directory of named namespaces (`<run>/netns` or `/run/netns`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetnsDir {
    dir: PathBuf,
}

/// An open network namespace: its name, its file and an fd that keeps it alive
/// (moving links "by fd" and joining it both use that fd).
#[derive(Debug)]
pub struct Netns {
    name: String,
    path: PathBuf,
    fd: OwnedFd,
}

impl NetnsDir {
    /// Namespaces under `<run_dir>/netns` (berth's own run state).
    pub fn new(run_dir: &Path) -> NetnsDir {
        NetnsDir {
            dir: run_dir.join("netns"),
        }
    }

    /// Namespaces in `/run/netns`, shared with `ip netns`.
    pub fn system() -> NetnsDir {
        NetnsDir::at(Path::new(SYSTEM_NETNS_DIR))
    }

    /// Namespaces directly in `dir`.
    pub fn at(dir: &Path) -> NetnsDir {
        NetnsDir {
            dir: dir.to_path_buf(),
        }
    }

    /// The directory holding the namespace files.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file for namespace `name` (validated).
    pub fn path(&self, name: &str) -> Result<PathBuf> {
        validate_name(name)?;
        Ok(self.dir.join(name))
    }

    /// Creates namespace `name` and pins it with a bind mount.
    ///
    /// Fails with [`NetError::NetnsExists`] if the file is already there (a
    /// stale file from an interrupted create is removed by [`NetnsDir::delete`]).
    /// On failure nothing is left behind.
    pub fn create(&self, name: &str) -> Result<Netns> {
        let path = self.path(name)?;
        let io_err = |op, path: &Path, source| NetError::NetnsIo {
            name: name.to_owned(),
            op,
            path: path.to_path_buf(),
            source,
        };
        fs::create_dir_all(&self.dir).map_err(|e| io_err("create directory", &self.dir, e))?;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o444)
            .open(&path);
        match file {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(NetError::NetnsExists {
                    name: name.to_owned(),
                    path,
                })
            }
            Err(e) => return Err(io_err("create", &path, e)),
        }
        if let Err(e) = pin_new_netns(name, &path) {
            let _ = fs::remove_file(&path);
            return Err(e);
        }
        match Netns::open_named(name, &path) {
            Ok(ns) => {
                tracing::debug!(name, path = %path.display(), "created network namespace");
                Ok(ns)
            }
            Err(e) => {
                let _ = umount2(&path, MntFlags::MNT_DETACH);
                let _ = fs::remove_file(&path);
                Err(e)
            }
        }
    }

    /// Opens existing namespace `name`.
    pub fn open(&self, name: &str) -> Result<Netns> {
        let path = self.path(name)?;
        Netns::open_named(name, &path)
    }

    /// Unmounts and removes namespace `name`.
    ///
    /// Refuses with [`NetError::NetnsBusy`] while any process or thread is
    /// inside it; open fds (like a [`Netns`] value) do not count and keep the
    /// namespace alive until dropped, as with `ip netns delete`.
    pub fn delete(&self, name: &str) -> Result<()> {
        let path = self.path(name)?;
        let meta = fs::metadata(&path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => NetError::NetnsNotFound {
                name: name.to_owned(),
                path: path.clone(),
            },
            _ => NetError::NetnsIo {
                name: name.to_owned(),
                op: "stat",
                path: path.clone(),
                source: e,
            },
        })?;
        if is_nsfs(&path) {
            if let Some(pid) = find_user(meta.dev(), meta.ino()) {
                return Err(NetError::NetnsBusy {
                    name: name.to_owned(),
                    pid,
                });
            }
            umount2(&path, MntFlags::MNT_DETACH).map_err(|errno| NetError::NetnsSys {
                name: name.to_owned(),
                op: "umount",
                path: path.clone(),
                errno,
            })?;
        }
        fs::remove_file(&path).map_err(|e| NetError::NetnsIo {
            name: name.to_owned(),
            op: "remove",
            path: path.clone(),
            source: e,
        })?;
        tracing::debug!(name, path = %path.display(), "deleted network namespace");
        Ok(())
    }

    /// Names of the namespaces in this directory (bind-mounted ones only), sorted.
    pub fn list(&self) -> Result<Vec<String>> {
        let entries = match fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => {
                return Err(NetError::NetnsIo {
                    name: "*".to_owned(),
                    op: "list",
                    path: self.dir.clone(),
                    source: e,
                })
            }
        };
        let mut names: Vec<String> = entries
            .filter_map(|entry| entry.ok())
            .filter(|entry| is_nsfs(&entry.path()))
            .filter_map(|entry| entry.file_name().into_string().ok())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Runs `f` on a thread inside namespace `name`; see [`Netns::run`].
    pub fn in_netns<T: Send>(&self, name: &str, f: impl FnOnce() -> T + Send) -> Result<T> {
        self.open(name)?.run(f)
    }
}

impl Netns {
    /// Opens a namespace by file: a pinned one or `/proc/PID/ns/net`.
    pub fn open_path(path: &Path) -> Result<Netns> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .filter(|n| *n != "net")
            .map_or_else(|| path.display().to_string(), str::to_owned);
        Netns::open_named(&name, path)
    }

    /// Opens the namespace of process `pid`.
    pub fn of_pid(pid: u32) -> Result<Netns> {
        let path = PathBuf::from(format!("/proc/{pid}/ns/net"));
        Netns::open_named(&format!("pid {pid}"), &path)
    }

    fn open_named(name: &str, path: &Path) -> Result<Netns> {
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_CLOEXEC)
            .open(path)
            .map_err(|e| match e.kind() {
                io::ErrorKind::NotFound => NetError::NetnsNotFound {
                    name: name.to_owned(),
                    path: path.to_path_buf(),
                },
                _ => NetError::NetnsIo {
                    name: name.to_owned(),
                    op: "open",
                    path: path.to_path_buf(),
                    source: e,
                },
            })?;
        if !is_nsfs(path) {
            return Err(NetError::NotANetns {
                path: path.to_path_buf(),
            });
        }
        Ok(Netns {
            name: name.to_owned(),
            path: path.to_path_buf(),
            fd: file.into(),
        })
    }

    /// The namespace's name (used in errors).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The file it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `f` on a new thread that joined this namespace and returns its result.
    ///
    /// Only that thread changes namespace, and it ends with `f`, so nothing
    /// leaks into the caller's threads. Sockets opened inside `f` stay bound
    /// to this namespace after it returns. A panic in `f` is re-raised here.
    pub fn run<T: Send>(&self, f: impl FnOnce() -> T + Send) -> Result<T> {
        let joined = std::thread::scope(|scope| {
            scope
                .spawn(|| {
                    setns(&self.fd, CloneFlags::CLONE_NEWNET).map_err(|errno| {
                        NetError::NetnsSys {
                            name: self.name.clone(),
                            op: "setns",
                            path: self.path.clone(),
                            errno,
                        }
                    })?;
                    Ok(f())
                })
                .join()
        });
        match joined {
            Ok(result) => result,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }
}

impl AsFd for Netns {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Runs `f` on a thread inside the namespace pinned at `path` (or `/proc/PID/ns/net`).
pub fn in_netns<T: Send>(path: &Path, f: impl FnOnce() -> T + Send) -> Result<T> {
    Netns::open_path(path)?.run(f)
}

/// Namespace names become file names: no separators, no dot names, not empty.
fn validate_name(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > 255 {
        "longer than 255 bytes"
    } else if name == "." || name == ".." {
        "a dot name"
    } else if name.contains('/') || name.contains('\0') {
        "contains '/' or NUL"
    } else if name.chars().any(char::is_whitespace) {
        "contains whitespace"
    } else {
        return Ok(());
    };
    Err(NetError::InvalidNetnsName {
        name: name.to_owned(),
        reason,
    })
}

/// True when `path` is an nsfs file, i.e. a namespace is mounted there.
fn is_nsfs(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Makes a new namespace on a throwaway thread and bind-mounts it onto `path`.
fn pin_new_netns(name: &str, path: &Path) -> Result<()> {
    let sys_err = |op, errno| NetError::NetnsSys {
        name: name.to_owned(),
        op,
        path: path.to_path_buf(),
        errno,
    };
    let joined = std::thread::scope(|scope| {
        scope
            .spawn(|| {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| sys_err("unshare", e))?;
                mount(
                    Some("/proc/thread-self/ns/net"),
                    path,
                    None::<&str>,
                    MsFlags::MS_BIND,
                    None::<&str>,
                )
                .map_err(|e| sys_err("bind mount", e))
            })
            .join()
    });
    match joined {
        Ok(result) => result,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Whether the task at `/proc/PID/task/TID` is exiting (`PF_EXITING`): it keeps its
/// namespaces for a moment after a thread join returns, but is leaving them.
fn is_exiting(task: &Path) -> bool {
    const PF_EXITING: u64 = 0x4;
    let Ok(stat) = fs::read_to_string(task.join("stat")) else {
        return true; // gone already
    };
    // Fields after the command name (which may hold spaces) in parentheses: the flags
    // are the 9th field of the line, the 7th after the name.
    stat.rsplit_once(')')
        .and_then(|(_, rest)| rest.split_whitespace().nth(6))
        .and_then(|f| f.parse::<u64>().ok())
        .is_some_and(|flags| flags & PF_EXITING != 0)
}

/// The first pid with a thread inside the namespace with inode (`dev`, `ino`).
fn find_user(dev: u64, ino: u64) -> Option<i32> {
    let procs = fs::read_dir("/proc").ok()?;
    for proc_entry in procs.filter_map(|e| e.ok()) {
        let Some(pid) = proc_entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<i32>().ok())
        else {
            continue;
        };
        let Ok(tasks) = fs::read_dir(proc_entry.path().join("task")) else {
            continue; // the process just exited
        };
        for task in tasks.filter_map(|e| e.ok()) {
            let Ok(meta) = fs::metadata(task.path().join("ns/net")) else {
                continue;
            };
            if meta.dev() == dev && meta.ino() == ino && !is_exiting(&task.path()) {
                return Some(pid);
            }
        }
    }
    None
}
