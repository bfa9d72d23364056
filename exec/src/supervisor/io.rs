//! The supervisor's single-threaded event loop: signals arrive on a signalfd, the pty
//! master and the caller's terminal are polled beside it. No threads, so the loop can run
//! in a process that forked or re-exec'd before any thread pool existed.

use std::io::{Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios::{cfmakeraw, tcgetattr, tcsetattr, SetArg, Termios};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Signals the supervisor handles itself; all but SIGCHLD and SIGWINCH go to the container.
pub const HANDLED: [Signal; 8] = [
    Signal::SIGCHLD,
    Signal::SIGWINCH,
    Signal::SIGINT,
    Signal::SIGTERM,
    Signal::SIGHUP,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
];

/// Blocks [`HANDLED`] and reads them from a signalfd; the old mask comes back on drop.
/// Blocking happens before the runtime is spawned so no SIGCHLD is lost; std's spawn
/// resets the mask in children, so the runtime and container see default signals.
pub struct Signals {
    fd: SignalFd,
    old: SigSet,
}

impl Signals {
    /// Blocks the signals and opens the signalfd.
    pub fn block() -> nix::Result<Self> {
        let mut set = SigSet::empty();
        HANDLED.iter().for_each(|s| set.add(*s));
        let mut old = SigSet::empty();
        nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_BLOCK,
            Some(&set),
            Some(&mut old),
        )?;
        let fd = SignalFd::with_flags(&set, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)?;
        Ok(Signals { fd, old })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let _ = nix::sys::signal::sigprocmask(
            nix::sys::signal::SigmaskHow::SIG_SETMASK,
            Some(&self.old),
            None,
        );
    }
}

/// Puts a terminal in raw mode; restores it on drop.
pub struct RawMode {
    fd: OwnedFd,
    saved: Termios,
}

impl RawMode {
    /// Raw mode on `fd` if it is a terminal; `None` otherwise.
    pub fn enter(fd: BorrowedFd<'_>) -> Option<Self> {
        let saved = tcgetattr(fd).ok()?;
        let mut raw = saved.clone();
        cfmakeraw(&mut raw);
        tcsetattr(fd, SetArg::TCSANOW, &raw).ok()?;
        Some(RawMode {
            fd: fd.try_clone_to_owned().ok()?,
            saved,
        })
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = tcsetattr(&self.fd, SetArg::TCSAFLUSH, &self.saved);
    }
}

/// The streams copied to and from the pty master (terminal mode only).
pub struct Pty {
    /// The pty master from the console socket.
    pub master: std::fs::File,
    /// What feeds the container's terminal (the caller's stdin or a file), if anything.
    pub input: Option<std::fs::File>,
    /// Where the terminal's output goes (the caller's stdout or a log file).
    pub output: std::fs::File,
    /// Where the window size comes from (the caller's terminal), if anywhere.
    pub winsize_from: Option<std::fs::File>,
}

impl Pty {
    /// Copies the caller's window size onto the container's terminal.
    pub fn sync_window_size(&self) {
        if let Some(src) = &self.winsize_from {
            if let Ok(ws) = crate::sys::window_size(src) {
                let _ = crate::sys::set_window_size(&self.master, &ws);
            }
        }
    }

    /// Copies what is ready on master → output; false once the terminal is closed.
    fn pump_output(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        match self.master.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => self
                .output
                .write_all(&buf[..n])
                .and_then(|()| self.output.flush())
                .is_ok(),
            Err(e) => {
                e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::Interrupted
            }
        }
    }

    /// Copies what is ready on input → master; false at end of input.
    fn pump_input(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let Some(input) = self.input.as_mut() else {
            return false;
        };
        match input.read(&mut buf) {
            Ok(0) => false,
            Ok(n) => self.master.write_all(&buf[..n]).is_ok(),
            Err(e) => e.kind() == std::io::ErrorKind::Interrupted,
        }
    }
}

/// Runs until `init` is reaped: forwards signals to it, reaps every child (we are a
/// subreaper), copies pty traffic. Returns the exit code (128+n for signal n).
pub fn event_loop(signals: &Signals, init: Pid, mut pty: Option<Pty>) -> i32 {
    let (mut input_open, mut output_open) = (
        pty.as_ref().is_some_and(|p| p.input.is_some()),
        pty.is_some(),
    );
    loop {
        let (sig_ready, out_ready, in_ready) = {
            let mut fds = vec![PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
            if let Some(p) = pty.as_ref() {
                if output_open {
                    fds.push(PollFd::new(p.master.as_fd(), PollFlags::POLLIN));
                }
                if let (true, Some(i)) = (input_open, p.input.as_ref()) {
                    fds.push(PollFd::new(i.as_fd(), PollFlags::POLLIN));
                }
            }
            if poll(&mut fds, PollTimeout::NONE).is_err() {
                continue;
            }
            let ready = |i: usize| {
                fds.get(i)
                    .and_then(|f| f.revents())
                    .is_some_and(|r| !r.is_empty())
            };
            (
                ready(0),
                output_open && ready(1),
                input_open && ready(if output_open { 2 } else { 1 }),
            )
        };
        if let Some(p) = pty.as_mut() {
            if out_ready {
                output_open = p.pump_output();
            }
            if in_ready {
                input_open = p.pump_input();
            }
        }
        if !sig_ready {
            continue;
        }
        while let Ok(Some(info)) = signals.fd.read_signal() {
            let Ok(sig) = Signal::try_from(info.ssi_signo as i32) else {
                continue;
            };
            match sig {
                Signal::SIGCHLD => {
                    if let Some(code) = reap(init) {
                        if let Some(p) = pty.as_mut() {
                            while output_open && p.pump_output() {}
                        }
                        return code;
                    }
                }
                Signal::SIGWINCH => pty.iter().for_each(Pty::sync_window_size),
                other => {
                    let _ = kill(init, other);
                }
            }
        }
    }
}

/// How often [`runner_loop`] looks for the container's start while it has not seen it.
const START_POLL_MS: u16 = 2;

/// Runs until `runner` (a foreground `runtime run`, our child) is reaped: forwards
/// signals to it (the runtime passes them on to the container) and reaps every child.
/// Until `started` returns true it is called every few milliseconds, so the caller can
/// notice the container's pid file. Returns the runner's exit code (128+n for signal n).
pub fn runner_loop(signals: &Signals, runner: Pid, mut started: impl FnMut() -> bool) -> i32 {
    let mut waiting = true;
    loop {
        let timeout = match waiting {
            true => PollTimeout::from(START_POLL_MS),
            false => PollTimeout::NONE,
        };
        let mut fds = [PollFd::new(signals.fd.as_fd(), PollFlags::POLLIN)];
        let ready = poll(&mut fds, timeout).is_ok_and(|n| n > 0);
        if waiting {
            waiting = !started();
        }
        if !ready {
            continue;
        }
        while let Ok(Some(info)) = signals.fd.read_signal() {
            match Signal::try_from(info.ssi_signo as i32) {
                Ok(Signal::SIGCHLD) => {
                    if let Some(code) = reap(runner) {
                        return code;
                    }
                }
                Ok(Signal::SIGWINCH) | Err(_) => {}
                Ok(other) => {
                    let _ = kill(runner, other);
                }
            }
        }
    }
}

/// Reaps every exited child; returns the exit code if `init` was among them.
fn reap(init: Pid) -> Option<i32> {
    let mut found = None;
    loop {
        match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid == init => found = Some(code),
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid == init => found = Some(128 + sig as i32),
            Ok(WaitStatus::StillAlive) | Err(_) => return found,
            Ok(_) => {}
        }
    }
}
