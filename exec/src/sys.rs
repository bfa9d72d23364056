//! The few syscalls berth-exec needs that have no safe wrapper: a `pre_exec` hook for
//! crun, terminal window-size ioctls, and adopting a file descriptor received by SCM_RIGHTS.
#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Where a hybrid host mounts its cgroup2 tree.
pub const UNIFIED_CGROUP: &str = "/sys/fs/cgroup/unified";

/// Makes `cmd` run in a private mount namespace without [`UNIFIED_CGROUP`], so a runtime
/// that refuses hybrid cgroup layouts (crun) sees a plain cgroup v1 host.
pub fn run_without_unified_cgroup(cmd: &mut Command) {
    // SAFETY: the hook runs in the forked child before exec and only makes raw syscalls
    // (unshare, mount, umount2) on static C strings: no allocation, no locks, so it is
    // async-signal-safe as pre_exec requires.
    unsafe {
        cmd.pre_exec(|| {
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            let root = c"/".as_ptr();
            if libc::mount(
                std::ptr::null(),
                root,
                std::ptr::null(),
                libc::MS_REC | libc::MS_SLAVE,
                std::ptr::null(),
            ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            if libc::umount2(c"/sys/fs/cgroup/unified".as_ptr(), libc::MNT_DETACH) != 0 {
                let err = std::io::Error::last_os_error();
                if err.raw_os_error() != Some(libc::EINVAL)
                    && err.raw_os_error() != Some(libc::ENOENT)
                {
                    return Err(err);
                }
            }
            Ok(())
        });
    }
}

nix::ioctl_read_bad!(tiocgwinsz, libc::TIOCGWINSZ, libc::winsize);
nix::ioctl_write_ptr_bad!(tiocswinsz, libc::TIOCSWINSZ, libc::winsize);

/// The window size of the terminal on `fd`.
pub fn window_size(fd: &impl AsRawFd) -> nix::Result<libc::winsize> {
    let mut ws = libc::winsize {
        ws_row: 0,
        ws_col: 0,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCGWINSZ writes one winsize into the valid, exclusively borrowed `ws`.
    unsafe { tiocgwinsz(fd.as_raw_fd(), &mut ws) }?;
    Ok(ws)
}

/// Sets the window size of the terminal on `fd`.
pub fn set_window_size(fd: &impl AsRawFd, ws: &libc::winsize) -> nix::Result<()> {
    // SAFETY: TIOCSWINSZ only reads the winsize behind the valid reference.
    unsafe { tiocswinsz(fd.as_raw_fd(), ws) }?;
    Ok(())
}

/// Takes ownership of a descriptor the kernel just installed for us via SCM_RIGHTS.
pub fn adopt_received_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: recvmsg installed `fd` in our table for this message only; nothing else
    // refers to it, so owning (and later closing) it is sound.
    unsafe { OwnedFd::from_raw_fd(fd) }
}
