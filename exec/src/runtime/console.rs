//! The console socket: where the runtime hands over the pty master of a `-t` container.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use super::RuntimeError;

/// A listening unix socket for `--console-socket`; the file is removed on drop.
#[derive(Debug)]
pub struct ConsoleSocket {
    path: PathBuf,
    listener: UnixListener,
}

impl ConsoleSocket {
    /// Listens on `path` (replacing a stale socket file).
    pub fn bind(path: impl Into<PathBuf>) -> Result<Self, RuntimeError> {
        let path = path.into();
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path).map_err(|source| RuntimeError::Io {
            path: path.clone(),
            source,
        })?;
        listener
            .set_nonblocking(true)
            .map_err(|source| RuntimeError::Io {
                path: path.clone(),
                source,
            })?;
        Ok(ConsoleSocket { path, listener })
    }

    /// The socket path to pass to the runtime.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Waits up to `timeout` for the runtime to connect and send the pty master.
    /// `give_up` is polled meanwhile (e.g. "has the runtime already exited?").
    pub fn receive_master(
        &self,
        timeout: Duration,
        give_up: impl Fn() -> bool,
    ) -> Result<OwnedFd, RuntimeError> {
        let deadline = Instant::now() + timeout;
        let stream = loop {
            match self.listener.accept() {
                Ok((s, _)) => break s,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    if Instant::now() > deadline || give_up() {
                        return Err(RuntimeError::NoConsole(self.path.clone()));
                    }
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(source) => {
                    return Err(RuntimeError::Io {
                        path: self.path.clone(),
                        source,
                    })
                }
            }
        };
        stream
            .set_nonblocking(false)
            .map_err(|source| RuntimeError::Io {
                path: self.path.clone(),
                source,
            })?;
        let mut buf = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut buf)];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let msg = recvmsg::<()>(
            stream.as_fd().as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|source| RuntimeError::Console {
            path: self.path.clone(),
            source,
        })?;
        let mut fds = Vec::new();
        for c in msg.cmsgs().map_err(|source| RuntimeError::Console {
            path: self.path.clone(),
            source,
        })? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                fds.extend(raw.into_iter().map(crate::sys::adopt_received_fd));
            }
        }
        fds.into_iter()
            .next()
            .ok_or_else(|| RuntimeError::NoConsole(self.path.clone()))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}
