//! The overlay snapshotter: `<root>/snapshots/<id>/fs` holds one layer (or an active
//! snapshot's upper dir), `/work` the overlay workdir of actives. Mounts stack the
//! parents' `fs` dirs as lowerdirs, nearest parent first.
//!
//! Layers come in one of two formats, chosen once per root and kept in `<root>/layers`:
//! - `links`: layer files are hard links to their content objects. Content is stored
//!   once, but a file shows one more link per layer that shares it.
//! - `stubs` (when the kernel can mount data-only lower layers, Linux ≥ 6.5, checked
//!   by a probe mount): layer files are metacopy stubs redirecting into the object
//!   store, mounted as a data-only lower layer (see `objects::stubs`), so every path has
//!   its own inode and the image's link counts. overlayfs follows a stub's redirect
//!   only with `metacopy=on`, which a writable overlay must not have (it would copy up
//!   metadata only, and rename directories by redirect), so an active snapshot mounts
//!   in two steps: a read-only *view* of its parents and the objects at
//!   `<root>/snapshots/<id>/view` (`metacopy=on`), then the writable overlay on that
//!   view, which sees plain files and copies up whole ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use berth_mount::Mount;

use super::meta::{Record, Store};
use super::{io_err, usage, Info, Kind, SnapshotError, Snapshotter, SnapshotterKind, Usage};

/// Label naming an external lower directory for a parentless active or view snapshot:
/// it is mounted as the snapshot's only lowerdir and is what diffs compare against.
/// berth sets it to a FUSE view of an image (`berth checkout --fuse`), so a writable
/// checkout stacks on the view without any layer directory.
pub const LOWER_LABEL: &str = "berth.snapshot.lowerdir";

/// Overlayfs-backed snapshots: each layer directory holds only its own changes.
pub struct OverlaySnapshotter {
    store: Store,
    /// With `stubs` layers: the object store, mounted as the data-only lower layer.
    data: Option<PathBuf>,
}

/// The file recording a root's layer format.
const FORMAT_FILE: &str = "layers";

impl OverlaySnapshotter {
    /// Opens (creating) an overlay snapshotter rooted at `root`, `links` layers.
    pub fn open(root: &Path) -> Result<Self, SnapshotError> {
        Ok(OverlaySnapshotter {
            store: Store::open(root)?,
            data: None,
        })
    }

    /// Opens (creating) an overlay snapshotter rooted at `root` whose layers may be
    /// stubs over the objects at `objects`: a new root takes the `stubs` format when the
    /// kernel passes a probe mount, an existing one keeps the format it has.
    pub fn open_with_objects(root: &Path, objects: &Path) -> Result<Self, SnapshotError> {
        let store = Store::open(root)?;
        let file = root.join(FORMAT_FILE);
        let format = match std::fs::read_to_string(&file) {
            Ok(f) => f.trim().to_string(),
            Err(_) => {
                // A root with layers from before this file existed has links layers.
                let fresh = store.list()?.is_empty();
                let f = if fresh && probe_data_layers(root) {
                    "stubs"
                } else {
                    "links"
                };
                let tmp = root.join(format!(".{FORMAT_FILE}.tmp-{}", std::process::id()));
                std::fs::write(&tmp, f).map_err(io_err("writing", &tmp))?;
                std::fs::rename(&tmp, &file).map_err(io_err("writing", &file))?;
                f.to_string()
            }
        };
        let data = (format == "stubs").then(|| crate::objects::content_dir(objects));
        if let Some(d) = &data {
            std::fs::create_dir_all(d).map_err(io_err("creating", d))?;
        }
        Ok(OverlaySnapshotter { store, data })
    }

    fn view_dir(&self, rec: &Record) -> PathBuf {
        self.store.dir(rec.id).join("view")
    }

    /// The read-only view of `lowers` and the objects an active snapshot of `stubs`
    /// layers stacks on, mounted at `<id>/view` unless it is.
    fn ensure_view(
        &self,
        rec: &Record,
        lowers: &[String],
        data: &Path,
    ) -> Result<PathBuf, SnapshotError> {
        let view = self.view_dir(rec);
        if berth_mount::is_mount_point(&view) {
            return Ok(view);
        }
        std::fs::create_dir_all(&view).map_err(io_err("creating", &view))?;
        metacopy_view(lowers, data).mount(&view)?;
        Ok(view)
    }

    /// Unmounts a snapshot's view, if it has one mounted.
    fn release_view(&self, key: &str) -> Result<(), SnapshotError> {
        let rec = match self.store.get(key) {
            Ok(r) => r,
            Err(SnapshotError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e),
        };
        let view = self.view_dir(&rec);
        if view.exists() {
            berth_mount::unmount_recursive(&view)?;
            let _ = std::fs::remove_dir(&view);
        }
        Ok(())
    }

    fn build(&self, work: bool) -> Result<PathBuf, SnapshotError> {
        let tmp = self.store.temp_dir("new");
        let fs = tmp.join("fs");
        std::fs::create_dir_all(&fs).map_err(io_err("creating", &fs))?;
        if work {
            let w = tmp.join("work");
            std::fs::create_dir(&w).map_err(io_err("creating", &w))?;
        }
        Ok(tmp)
    }

    fn create(
        &self,
        key: &str,
        parent: Option<&str>,
        kind: Kind,
    ) -> Result<Vec<Mount>, SnapshotError> {
        let tmp = self.build(kind == Kind::Active)?;
        let rec = self.store.create(key, parent, kind, &tmp);
        if rec.is_err() {
            let _ = std::fs::remove_dir_all(&tmp);
        }
        self.mounts_of(&rec?)
    }

    fn fs_of(&self, rec: &Record) -> PathBuf {
        self.store.dir(rec.id).join("fs")
    }

    /// The parents' layer dirs, nearest first, or the external lower of a parentless
    /// snapshot labelled with [`LOWER_LABEL`].
    fn lowers_of(&self, rec: &Record) -> Result<Vec<PathBuf>, SnapshotError> {
        let chain = self.store.chain(&rec.info.key)?;
        if chain.len() == 1 {
            if let Some(lower) = rec.info.labels.get(LOWER_LABEL) {
                return Ok(vec![PathBuf::from(lower)]);
            }
        }
        Ok(chain[1..].iter().map(|r| self.fs_of(r)).collect())
    }

    fn mounts_of(&self, rec: &Record) -> Result<Vec<Mount>, SnapshotError> {
        let lowers: Vec<String> = self
            .lowers_of(rec)?
            .iter()
            .map(|p| p.display().to_string())
            .collect();
        let own = self.fs_of(rec).display().to_string();
        let overlay = |mut options: Vec<String>| {
            options.push(format!("lowerdir={}", lowers.join(":")));
            Mount {
                kind: "overlay".into(),
                source: "overlay".into(),
                target: String::new(),
                options,
            }
        };
        let external = rec.info.parent.is_none() && rec.info.labels.contains_key(LOWER_LABEL);
        if let (Some(data), false, false) = (&self.data, lowers.is_empty(), external) {
            return Ok(match rec.info.kind {
                Kind::Committed => {
                    return Err(SnapshotError::WrongKind {
                        key: rec.info.key.clone(),
                        actual: Kind::Committed,
                        expected: Kind::Active,
                    })
                }
                Kind::Active => {
                    let view = self.ensure_view(rec, &lowers, data)?;
                    let work = self.store.dir(rec.id).join("work").display().to_string();
                    vec![Mount {
                        kind: "overlay".into(),
                        source: "overlay".into(),
                        target: String::new(),
                        options: vec![
                            "index=off".into(),
                            "metacopy=off".into(),
                            format!("lowerdir={}", view.display()),
                            format!("workdir={work}"),
                            format!("upperdir={own}"),
                        ],
                    }]
                }
                Kind::View => vec![metacopy_view(&lowers, data)],
            });
        }
        Ok(match (rec.info.kind, lowers.len()) {
            (Kind::Committed, _) => {
                return Err(SnapshotError::WrongKind {
                    key: rec.info.key.clone(),
                    actual: Kind::Committed,
                    expected: Kind::Active,
                })
            }
            (Kind::Active, 0) => vec![Mount::bind(own, false)],
            (Kind::Active, _) => {
                let work = self.store.dir(rec.id).join("work").display().to_string();
                vec![overlay(vec![
                    "index=off".into(),
                    format!("workdir={work}"),
                    format!("upperdir={own}"),
                ])]
            }
            (Kind::View, 0) => vec![Mount::bind(own, true)],
            (Kind::View, 1) => vec![Mount::bind(lowers[0].clone(), true)],
            (Kind::View, _) => vec![overlay(vec!["ro".into(), "index=off".into()])],
        })
    }
}

impl Snapshotter for OverlaySnapshotter {
    fn kind(&self) -> SnapshotterKind {
        SnapshotterKind::Overlay
    }

    fn root(&self) -> &Path {
        self.store.root()
    }

    fn prepare(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::Active)
    }

    fn view(&self, key: &str, parent: Option<&str>) -> Result<Vec<Mount>, SnapshotError> {
        self.create(key, parent, Kind::View)
    }

    fn mounts(&self, key: &str) -> Result<Vec<Mount>, SnapshotError> {
        self.mounts_of(&self.store.get(key)?)
    }

    fn commit(&self, name: &str, key: &str) -> Result<(), SnapshotError> {
        self.release_view(key)?;
        self.store.commit(name, key, None)
    }

    fn commit_with_parent(
        &self,
        name: &str,
        key: &str,
        parent: Option<&str>,
    ) -> Result<(), SnapshotError> {
        self.release_view(key)?;
        self.store.commit(name, key, Some(parent))
    }

    fn remove(&self, key: &str) -> Result<(), SnapshotError> {
        self.release_view(key)?;
        self.store.remove(key)
    }

    fn remove_detached(&self, key: &str) -> Result<Option<PathBuf>, SnapshotError> {
        self.release_view(key)?;
        self.store.remove_detached(key)
    }

    fn data_dir(&self) -> Option<&Path> {
        self.data.as_deref()
    }

    fn stat(&self, key: &str) -> Result<Info, SnapshotError> {
        Ok(self.store.get(key)?.info)
    }

    fn update_labels(
        &self,
        key: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<Info, SnapshotError> {
        Ok(self.store.set_labels(key, &labels)?.info)
    }

    fn usage(&self, key: &str) -> Result<Usage, SnapshotError> {
        usage::usage(&self.fs_of(&self.store.get(key)?))
    }

    fn list(&self) -> Result<Vec<Info>, SnapshotError> {
        Ok(self.store.list()?.into_iter().map(|r| r.info).collect())
    }

    fn fs_dir(&self, key: &str) -> Result<PathBuf, SnapshotError> {
        Ok(self.fs_of(&self.store.get(key)?))
    }

    fn parent_dirs(&self, key: &str) -> Result<Vec<PathBuf>, SnapshotError> {
        self.lowers_of(&self.store.get(key)?)
    }

    fn cleanup(&self) -> Result<Vec<PathBuf>, SnapshotError> {
        self.store.cleanup()
    }

    fn check(&self) -> Result<Vec<String>, SnapshotError> {
        self.store.check(&["fs"])
    }
}

/// A read-only overlay of stub layers `lowers` (top first) over the data-only layer
/// `data`, following stubs' redirects (`metacopy=on`, which only a read-only overlay may
/// have: see the module docs).
fn metacopy_view(lowers: &[String], data: &Path) -> Mount {
    Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            "ro".into(),
            "index=off".into(),
            "metacopy=on".into(),
            format!("lowerdir={}::{}", lowers.join(":"), data.display()),
        ],
    }
}

/// Whether overlayfs here follows stubs into a data-only lower layer, through a
/// read-only view under a writable overlay that copies up whole files (see the module
/// docs). Probed in a locked scratch directory under `root`, as [`probe`] does.
pub(super) fn probe_data_layers(root: &Path) -> bool {
    probe_with(root, "data", probe_data_in)
}

fn probe_data_in(dir: &Path) -> Result<(), SnapshotError> {
    let d = |p: &str| dir.join(p);
    for sub in ["l1", "l2", "data/ab", "view", "upper", "work", "merged"] {
        std::fs::create_dir_all(d(sub)).map_err(io_err("creating", dir))?;
    }
    let fail = |what: &'static str| SnapshotError::Io {
        op: what,
        path: dir.to_path_buf(),
        source: std::io::Error::other("the data-only layer probe failed"),
    };
    std::fs::write(d("data/ab/abcd"), b"berth").map_err(io_err("writing", dir))?;
    let stub = d("l1/f");
    std::fs::File::create(&stub)
        .and_then(|f| f.set_len(5))
        .map_err(io_err("writing", &stub))?;
    xattr::set(&stub, crate::objects::METACOPY_XATTR, b"").map_err(io_err("xattr", &stub))?;
    xattr::set(&stub, crate::objects::REDIRECT_XATTR, b"/ab/abcd")
        .map_err(io_err("xattr", &stub))?;
    let overlay = |options: Vec<String>| Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options,
    };
    let s = |p: &str| d(p).display().to_string();
    overlay(vec![
        "ro".into(),
        "index=off".into(),
        "metacopy=on".into(),
        format!("lowerdir={}:{}::{}", s("l1"), s("l2"), s("data")),
    ])
    .mount(&d("view"))?;
    overlay(vec![
        "index=off".into(),
        "metacopy=off".into(),
        format!("lowerdir={}", s("view")),
        format!("upperdir={}", s("upper")),
        format!("workdir={}", s("work")),
    ])
    .mount(&d("merged"))?;
    let read = std::fs::read(d("merged/f")).unwrap_or_default();
    let chmod = std::fs::set_permissions(
        d("merged/f"),
        std::os::unix::fs::PermissionsExt::from_mode(0o600),
    );
    let copied = std::fs::read(d("upper/f")).unwrap_or_default();
    let plain = xattr::get(d("upper/f"), crate::objects::METACOPY_XATTR)
        .ok()
        .flatten()
        .is_none();
    let _ = berth_mount::unmount(&d("merged"));
    let _ = berth_mount::unmount(&d("view"));
    if read != b"berth" || chmod.is_err() || copied != b"berth" || !plain {
        return Err(fail("probing data-only layers"));
    }
    Ok(())
}

/// Prefix of the scratch directories [`probe`] makes, followed by the prober's PID.
const PROBE_PREFIX: &str = "overlay-probe-";

/// Whether an overlay can be mounted with its dirs under `root`.
///
/// The probe directory is locked (flock) by its prober for as long as it exists under
/// its final name: it is made under a hidden name, locked, then renamed, so a directory
/// with the prefix that can be locked is one whose prober died.
pub(super) fn probe(root: &Path) -> bool {
    probe_with(root, "plain", probe_in)
}

/// Runs `check` in a fresh, locked probe directory under `root`, then unmounts and
/// removes it.
fn probe_with(root: &Path, what: &str, check: fn(&Path) -> Result<(), SnapshotError>) -> bool {
    let _ = remove_stale_probes(root);
    let pid = std::process::id();
    let dir = root.join(format!("{PROBE_PREFIX}{what}-{pid}"));
    let making = root.join(format!(".{PROBE_PREFIX}{what}-{pid}"));
    let _ = std::fs::remove_dir_all(&making);
    let ok = std::fs::create_dir_all(&making)
        .ok()
        .and_then(|()| lock_dir(&making, false))
        .and_then(|lock| std::fs::rename(&making, &dir).ok().map(|()| lock))
        .is_some_and(|_lock| {
            let ok = check(&dir).is_ok();
            let _ = berth_mount::unmount_recursive(&dir);
            let _ = std::fs::remove_dir_all(&dir);
            ok
        });
    let _ = std::fs::remove_dir_all(&making);
    ok
}

/// An exclusive flock on directory `dir`, held while the returned fd lives. With
/// `nonblocking`, None when another process holds it.
fn lock_dir(dir: &Path, nonblocking: bool) -> Option<nix::fcntl::Flock<std::fs::File>> {
    let file = std::fs::File::open(dir).ok()?;
    let arg = match nonblocking {
        true => nix::fcntl::FlockArg::LockExclusiveNonblock,
        false => nix::fcntl::FlockArg::LockExclusive,
    };
    nix::fcntl::Flock::lock(file, arg).ok()
}

fn probe_in(dir: &Path) -> Result<(), SnapshotError> {
    for d in ["lower", "upper", "work", "merged"] {
        std::fs::create_dir_all(dir.join(d)).map_err(io_err("creating", dir))?;
    }
    let p = |d: &str| dir.join(d).display().to_string();
    let m = Mount {
        kind: "overlay".into(),
        source: "overlay".into(),
        target: String::new(),
        options: vec![
            "index=off".into(),
            format!("lowerdir={}", p("lower")),
            format!("upperdir={}", p("upper")),
            format!("workdir={}", p("work")),
        ],
    };
    m.mount(&dir.join("merged"))?;
    berth_mount::unmount(&dir.join("merged"))?;
    Ok(())
}

/// Unmounts and removes probe directories under `root` left by processes that died
/// mid-probe (a kill between mount and unmount leaves the overlay mounted). Returns the
/// directories removed. A probe whose prober lives is locked and left alone; so is one
/// another cleaner is removing.
pub(super) fn remove_stale_probes(root: &Path) -> Result<Vec<PathBuf>, SnapshotError> {
    let mut removed = Vec::new();
    let entries = match std::fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(io_err("listing", root)(e)),
    };
    for entry in entries {
        let entry = entry.map_err(io_err("listing", root))?;
        let is_probe = entry
            .file_name()
            .to_str()
            .is_some_and(|n| n.starts_with(PROBE_PREFIX));
        let dir = entry.path();
        let Some(_lock) = is_probe.then(|| lock_dir(&dir, true)).flatten() else {
            continue;
        };
        berth_mount::unmount_recursive(&dir)?;
        match std::fs::remove_dir_all(&dir) {
            Ok(()) => removed.push(dir),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("removing", &dir)(e)),
        }
    }
    Ok(removed)
}
