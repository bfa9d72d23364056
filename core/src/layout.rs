//! Every path of a berth root and its run root, in one place.
//!
//! ```text
//! <root>/ (default /var/lib/berth)
//!   oci-layout, index.json, blobs/, ingest/, quarantine/, meta.db, leases/, gc.*
//!                             the content store (berth-cas)
//!   objects/                  file objects and their tree indexes (berth-fs objects)
//!   snapshots/<name>/         one directory per registered snapshotter
//!   snapshots/default         the snapshotter chosen for this root (detected once)
//!   locks/checkout-<hash>     per-checkout writer locks
//! <run>/ (default /run/berth)
//!   containers/<id32>/        a container's bundle, supervisor config and status
//!   runtime/<runtime>/        the OCI runtime's --root
//!   fuse/<key>                the FUSE view under a FUSE-backed checkout
//!   fuse/*.log                a FUSE server's stderr while it starts
//!   apply/<key>               a layer applied onto its mounted lower layers
//!   netns/<name>              network namespaces made with `berth net ns add`
//! ```

use std::path::{Path, PathBuf};

/// The paths of one root and its run root.
#[derive(Debug, Clone)]
pub struct Layout {
    root: PathBuf,
    run: PathBuf,
}

impl Layout {
    /// The layout of store root `root` with run state under `run`.
    pub fn new(root: &Path, run: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
            run: run.to_path_buf(),
        }
    }

    /// The store root.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The run root.
    pub fn run(&self) -> &Path {
        &self.run
    }

    /// The file-object store.
    pub fn objects(&self) -> PathBuf {
        self.root.join("objects")
    }

    /// Where every snapshotter lives.
    pub fn snapshots(&self) -> PathBuf {
        self.root.join("snapshots")
    }

    /// The directory of the snapshotter registered as `name`.
    pub fn snapshotter(&self, name: &str) -> PathBuf {
        self.snapshots().join(name)
    }

    /// The file remembering this root's default snapshotter.
    pub fn default_snapshotter_memo(&self) -> PathBuf {
        self.snapshots().join("default")
    }

    /// Per-object lock files.
    pub fn locks(&self) -> PathBuf {
        self.root.join("locks")
    }

    /// A container's state directory. Named by the first 32 hex digits (128 bits) of the
    /// id: the console socket inside must fit a unix socket path (108 bytes).
    pub fn container(&self, id: &str) -> PathBuf {
        self.run.join("containers").join(id.get(..32).unwrap_or(id))
    }

    /// The OCI runtime's `--root` for containers run with `runtime`.
    pub fn runtime_root(&self, runtime: &str) -> PathBuf {
        let name = Path::new(runtime)
            .file_name()
            .map_or_else(|| "runtime".into(), |n| n.to_string_lossy().into_owned());
        self.run.join("runtime").join(name)
    }

    /// FUSE server state: mount points of checkout views and start-up logs.
    pub fn fuse(&self) -> PathBuf {
        self.run.join("fuse")
    }

    /// Where the FUSE view under checkout snapshot `key` is mounted.
    pub fn fuse_lower(&self, key: &str) -> PathBuf {
        self.fuse().join(key)
    }

    /// Where a layer that must be applied onto its mounted lower layers is mounted
    /// while it is (see `berth_fs::apply::settle`).
    pub fn apply_mount(&self, key: &str) -> PathBuf {
        self.run.join("apply").join(key)
    }

    /// The run root itself holds the network namespace directory (`netns/`).
    pub fn netns_base(&self) -> &Path {
        &self.run
    }
}
