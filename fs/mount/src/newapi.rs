//! Overlay mounts through the new mount API (fsopen/fsconfig/fsmount/move_mount).
//!
//! mount(2) copies at most one page of option data, which a 120-layer image's
//! `lowerdir=` list outgrows. Since Linux 6.8 overlayfs takes `lowerdir+` once per
//! layer through fsconfig(2), with no length limit on the whole. The raw syscalls are
//! not wrapped by nix 0.32, hence this small unsafe module.
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::libc;
use nix::mount::MsFlags;

use crate::MountError;

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOUNT_ATTR_RDONLY: libc::c_uint = 0x1;
const MOUNT_ATTR_NOSUID: libc::c_uint = 0x2;
const MOUNT_ATTR_NODEV: libc::c_uint = 0x4;
const MOUNT_ATTR_NOEXEC: libc::c_uint = 0x8;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

fn cstr(s: &[u8], target: &Path) -> Result<CString, MountError> {
    CString::new(s).map_err(|_| MountError::NewApi {
        step: "option with a NUL byte".into(),
        target: target.into(),
        errno: Errno::EINVAL,
    })
}

fn check(
    ret: libc::c_long,
    step: impl Into<String>,
    target: &Path,
) -> Result<libc::c_long, MountError> {
    if ret < 0 {
        return Err(MountError::NewApi {
            step: step.into(),
            target: target.into(),
            errno: Errno::last(),
        });
    }
    Ok(ret)
}

/// Mounts an overlay at `target` from mount(8)-style data options and flags, sending
/// each `lowerdir` entry as its own `lowerdir+` (and each data-only one, after `::`, as
/// `datadir+`).
pub(crate) fn mount_overlay(data: &str, flags: MsFlags, target: &Path) -> Result<(), MountError> {
    let fstype = cstr(b"overlay", target)?;
    // SAFETY: fstype is a valid NUL-terminated string; the returned fd is checked and owned below.
    let fd = check(
        unsafe { libc::syscall(libc::SYS_fsopen, fstype.as_ptr(), FSOPEN_CLOEXEC) },
        "fsopen overlay",
        target,
    )?;
    // SAFETY: fsopen returned a fresh fd that nothing else owns.
    let fs = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    for opt in data.split(',').filter(|o| !o.is_empty()) {
        match opt.split_once('=') {
            Some(("lowerdir", dirs)) => {
                // `a:b::data`: regular lower layers, then data-only ones after `::`.
                let mut parts = dirs.split("::");
                for dir in parts.next().unwrap_or_default().split(':') {
                    set_string(&fs, "lowerdir+", dir, target)?;
                }
                for dir in parts {
                    set_string(&fs, "datadir+", dir, target)?;
                }
            }
            Some((k, v)) => set_string(&fs, k, v, target)?,
            None => set_flag(&fs, opt, target)?,
        }
    }
    // SAFETY: fs is a valid fs context fd; key and value may be NULL for this command.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_CMD_CREATE,
            std::ptr::null::<libc::c_char>(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check(ret, "fsconfig create", target)?;
    // SAFETY: fs is a created fs context; the returned mount fd is checked and owned.
    let mfd = check(
        unsafe {
            libc::syscall(
                libc::SYS_fsmount,
                fs.as_raw_fd(),
                FSMOUNT_CLOEXEC,
                attr_flags(flags),
            )
        },
        "fsmount",
        target,
    )?;
    // SAFETY: fsmount returned a fresh fd that nothing else owns.
    let mnt = unsafe { OwnedFd::from_raw_fd(mfd as i32) };
    let to = cstr(target.as_os_str().as_bytes(), target)?;
    let empty = cstr(b"", target)?;
    // SAFETY: mnt is a detached mount fd; both paths are valid NUL-terminated strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            mnt.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(ret, "move_mount", target)?;
    Ok(())
}

fn attr_flags(flags: MsFlags) -> libc::c_uint {
    let mut attr = 0;
    for (ms, a) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
    ] {
        if flags.contains(ms) {
            attr |= a;
        }
    }
    attr
}

fn set_string(fs: &OwnedFd, key: &str, value: &str, target: &Path) -> Result<(), MountError> {
    let (k, v) = (
        cstr(key.as_bytes(), target)?,
        cstr(value.as_bytes(), target)?,
    );
    // SAFETY: fs is a valid fs context fd; key and value are valid NUL-terminated strings.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_STRING,
            k.as_ptr(),
            v.as_ptr(),
            0,
        )
    };
    check(ret, format!("fsconfig {key}={value}"), target).map(drop)
}

fn set_flag(fs: &OwnedFd, key: &str, target: &Path) -> Result<(), MountError> {
    let k = cstr(key.as_bytes(), target)?;
    // SAFETY: fs is a valid fs context fd; key is a valid NUL-terminated string, value NULL.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_fsconfig,
            fs.as_raw_fd(),
            FSCONFIG_SET_FLAG,
            k.as_ptr(),
            std::ptr::null::<libc::c_void>(),
            0,
        )
    };
    check(ret, format!("fsconfig {key}"), target).map(drop)
}
