//! A read-only FUSE view of an image, served straight from its layers' tree indexes and
//! the file objects: nothing is unpacked to mount it. [`View`] merges the indexes with
//! overlayfs's rules; [`ViewFs`] answers the kernel (fuser), with passthrough reads.
//!
//! The view takes its input as plain data (the layers' [`Entry`](crate::objects::Entry)
//! lists and the object directory), so whoever owns the layers (berth's cli over its
//! store) decides which image is shown.

mod serve;
mod view;

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
    fuser::mount2(fs, dir, &config)
}
