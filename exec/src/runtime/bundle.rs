//! An OCI bundle on disk: `config.json` beside a `rootfs/` built from a snapshotter's mounts.

use std::path::{Path, PathBuf};

use berth_mount::Mount;

use super::RuntimeError;

/// A bundle directory. Nothing happens on drop: the bundle usually outlives the process
/// that made it (the supervisor removes it), so removal is the explicit [`Bundle::remove`].
#[derive(Debug, Clone)]
pub struct Bundle {
    dir: PathBuf,
}

impl Bundle {
    /// Makes `dir` and `dir/rootfs`, then applies `mounts` under the rootfs in order
    /// (none: the caller fills `rootfs/` itself).
    pub fn create(dir: impl Into<PathBuf>, mounts: &[Mount]) -> Result<Bundle, RuntimeError> {
        let bundle = Bundle { dir: dir.into() };
        let rootfs = bundle.rootfs();
        std::fs::create_dir_all(&rootfs).map_err(|source| RuntimeError::Io {
            path: rootfs.clone(),
            source,
        })?;
        berth_mount::mount_all(mounts, &rootfs)?;
        Ok(bundle)
    }

    /// A bundle made earlier (by another process), for writing or removal.
    pub fn open(dir: impl Into<PathBuf>) -> Bundle {
        Bundle { dir: dir.into() }
    }

    /// The bundle directory, as given to the runtime.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The rootfs directory (`root.path` in the spec is `rootfs`).
    pub fn rootfs(&self) -> PathBuf {
        self.dir.join("rootfs")
    }

    /// Writes `config.json` atomically (temp file, rename).
    pub fn write_spec(&self, spec: &oci_spec::runtime::Spec) -> Result<(), RuntimeError> {
        let json = serde_json::to_vec_pretty(spec).expect("a Spec always serializes");
        write_atomic(&self.dir.join("config.json"), &json)
    }

    /// Unmounts everything under the rootfs (deepest first) and deletes the directory.
    pub fn remove(&self) -> Result<(), RuntimeError> {
        berth_mount::unmount_recursive(&self.rootfs())?;
        match std::fs::remove_dir_all(&self.dir) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(RuntimeError::Io {
                path: self.dir.clone(),
                source,
            }),
        }
    }
}

/// Writes `data` to `path` so readers see the old or the new content, never a part.
/// No fsync: this is run state (bundle spec, supervisor status), meaningless after a
/// reboot and usually on tmpfs; the rename alone gives readers the atomicity.
pub(crate) fn write_atomic(path: &Path, data: &[u8]) -> Result<(), RuntimeError> {
    use std::io::Write;
    let io = |source| RuntimeError::Io {
        path: path.to_path_buf(),
        source,
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = path.with_file_name(format!(".{name}.tmp{}", std::process::id()));
    let mut f = std::fs::File::create(&tmp).map_err(io)?;
    f.write_all(data).map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_mounts_and_removes() {
        let base = tempfile::tempdir().expect("tempdir");
        let src = base.path().join("src");
        std::fs::create_dir(&src).expect("src");
        std::fs::write(src.join("marker"), "x").expect("marker");
        let b = Bundle::create(
            base.path().join("b"),
            &[Mount::bind(src.to_string_lossy(), true)],
        )
        .expect("create");
        assert!(b.rootfs().join("marker").exists());
        assert!(berth_mount::is_mount_point(&b.rootfs()));
        b.write_spec(&oci_spec::runtime::Spec::default())
            .expect("write");
        let back = oci_spec::runtime::Spec::load(b.dir().join("config.json")).expect("load");
        assert_eq!(back, oci_spec::runtime::Spec::default());
        b.remove().expect("remove");
        assert!(!b.dir().exists());
        assert!(berth_mount::mount_points_under(base.path()).is_empty());
        assert!(src.join("marker").exists(), "the source survives");
    }
}
