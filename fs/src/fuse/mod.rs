//! A read-only FUSE view of an image, served straight from its layers' tree indexes and
//! the file objects: nothing is unpacked to mount it. [`View`] merges the indexes with
//! overlayfs's rules; [`ViewFs`] answers the kernel (fuser), with passthrough reads.
//!
//! The view takes its input as plain data (the layers' [`Entry`](crate::objects::Entry)
//! lists and the object directory), so whoever owns the layers (berth's cli over its
//! store) decides which image is shown.

mod prefetch;
mod serve;
pub(crate) mod view;

use std::io;
use std::path::Path;

pub use serve::ViewFs;
pub use view::{Node, View, ROOT};

/// Mounts `fs` at `dir` read-only and serves it until unmounted. Returns once the
/// session ends. With `auto_unmount`, fusermount3 unmounts if this process dies.
pub fn serve(fs: ViewFs, dir: &Path, auto_unmount: bool) -> io::Result<()> {
    let mut config = fuser::Config::default();
    config.mount_options = vec![
        fuser::MountOption::RO,
        fuser::MountOption::FSName("berth".into()),
        fuser::MountOption::Subtype("berth".into()),
        fuser::MountOption::DefaultPermissions,
        fuser::MountOption::Dev,
        fuser::MountOption::Suid,
    ];
    config.acl = fuser::SessionACL::All;
    if auto_unmount {
        config.mount_options.push(fuser::MountOption::AutoUnmount);
    }
    config.n_threads = Some(2);
    raise_open_file_limit();
    fuser::mount2(fs, dir, &config)
}

/// Open files (each kept for the kernel while a reader has it open, plus those opened
/// ahead) may outnumber the usual soft limit of 1024: raise it to the hard limit.
fn raise_open_file_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    if let Ok((_, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        let _ = setrlimit(Resource::RLIMIT_NOFILE, hard, hard);
    }
}
