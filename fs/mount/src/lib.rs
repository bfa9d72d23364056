//! The `Mount` value: the one thing berth's snapshotters and its execution layer share.
//!
//! A snapshotter describes a root filesystem as an ordered `Vec<Mount>`; whoever needs
//! the filesystem (a checkout, a container runtime) applies them in order. This crate is
//! deliberately tiny — serde, nix and thiserror — so the execution layer can depend on
//! it without pulling in storage, FUSE or SQLite code.

mod newapi;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One mount: plain data, serializable, applied with [`Mount::mount`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mount {
    /// Filesystem type: `overlay`, `bind`, `tmpfs`, `fuse.berth`, ...
    #[serde(rename = "type")]
    pub kind: String,
    /// What is mounted: a directory for binds, `overlay` for overlays.
    pub source: String,
    /// Where it goes, relative to the root it is applied under ("" or "/" = the root itself).
    #[serde(default)]
    pub target: String,
    /// Options in `mount(8)` form: flags such as `ro`, `rbind`, and `key=value` data.
    #[serde(default)]
    pub options: Vec<String>,
}

/// Errors from applying or removing mounts.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mount(2) call failed.
    #[error("mount {kind} {source_path} on {target}: {errno}")]
    Mount {
        /// Filesystem type.
        kind: String,
        /// Mount source.
        source_path: String,
        /// Mount point.
        target: PathBuf,
        /// The kernel's answer.
        errno: nix::Error,
    },
    /// The umount(2) call failed.
    #[error("unmount {target}: {errno}")]
    Unmount {
        /// Mount point.
        target: PathBuf,
        /// The kernel's answer.
        errno: nix::Error,
    },
    /// The mount's target would leave the root it is applied under.
    #[error("mount target {0:?} leaves the root")]
    TargetEscapes(String),
    /// A step of a new-mount-API overlay mount (used when the options exceed a page) failed.
    #[error("mount overlay on {target}: {step}: {errno}")]
    NewApi {
        /// Which call, with the option involved.
        step: String,
        /// Mount point.
        target: PathBuf,
        /// The kernel's answer.
        errno: nix::Error,
    },
    /// Mount data longer than the kernel accepts in one page.
    #[error("mount options for {target} are {len} bytes, more than the kernel's {max}")]
    OptionsTooLong {
        /// Mount point.
        target: PathBuf,
        /// Length of the data string.
        len: usize,
        /// The limit.
        max: usize,
    },
}

/// The kernel copies at most one page of mount data.
pub const MAX_MOUNT_DATA: usize = 4095;

impl Mount {
    /// A read-only or read-write bind of `source`.
    pub fn bind(source: impl Into<String>, readonly: bool) -> Self {
        let mut options = vec!["rbind".to_string()];
        options.push(if readonly { "ro" } else { "rw" }.to_string());
        Mount {
            kind: "bind".into(),
            source: source.into(),
            target: String::new(),
            options,
        }
    }

    /// Whether the options make this mount read-only.
    pub fn is_readonly(&self) -> bool {
        self.options.iter().any(|o| o == "ro")
    }

    /// Where this mount lands when applied under `root`; refuses targets that climb out.
    pub fn resolved_target(&self, root: &Path) -> Result<PathBuf, MountError> {
        let rel = Path::new(self.target.trim_start_matches('/'));
        let mut out = root.to_path_buf();
        for c in rel.components() {
            match c {
                std::path::Component::Normal(p) => out.push(p),
                std::path::Component::CurDir => {}
                _ => return Err(MountError::TargetEscapes(self.target.clone())),
            }
        }
        Ok(out)
    }

    /// Splits options into mount(2) flags and the data string.
    pub fn flags_and_data(&self) -> (nix::mount::MsFlags, String) {
        use nix::mount::MsFlags;
        let mut flags = MsFlags::empty();
        let mut data = Vec::new();
        for o in &self.options {
            match o.as_str() {
                "ro" => flags |= MsFlags::MS_RDONLY,
                "rw" => flags &= !MsFlags::MS_RDONLY,
                "bind" => flags |= MsFlags::MS_BIND,
                "rbind" => flags |= MsFlags::MS_BIND | MsFlags::MS_REC,
                "nosuid" => flags |= MsFlags::MS_NOSUID,
                "nodev" => flags |= MsFlags::MS_NODEV,
                "noexec" => flags |= MsFlags::MS_NOEXEC,
                "noatime" => flags |= MsFlags::MS_NOATIME,
                "relatime" => flags |= MsFlags::MS_RELATIME,
                "strictatime" => flags |= MsFlags::MS_STRICTATIME,
                "sync" => flags |= MsFlags::MS_SYNCHRONOUS,
                "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" => {}
                other => data.push(other),
            }
        }
        if self.kind == "bind" {
            flags |= MsFlags::MS_BIND;
        }
        (flags, data.join(","))
    }

    /// Applies this mount under `root` (the target is taken relative to it).
    ///
    /// Read-only binds need a second remount call: the kernel ignores `MS_RDONLY` on
    /// the first bind. Overlay data longer than a page (many layers) goes through the new
    /// mount API instead, one `lowerdir+` per layer (Linux >= 6.8).
    pub fn mount(&self, root: &Path) -> Result<(), MountError> {
        use nix::mount::{mount, MsFlags};
        let target = self.resolved_target(root)?;
        let (flags, data) = self.flags_and_data();
        if data.len() > MAX_MOUNT_DATA && self.kind == "overlay" {
            return newapi::mount_overlay(&data, flags, &target);
        }
        if data.len() > MAX_MOUNT_DATA {
            return Err(MountError::OptionsTooLong {
                target,
                len: data.len(),
                max: MAX_MOUNT_DATA,
            });
        }
        let err = |errno| MountError::Mount {
            kind: self.kind.clone(),
            source_path: self.source.clone(),
            target: target.clone(),
            errno,
        };
        let data_opt = (!data.is_empty()).then_some(data.as_str());
        let fstype = (!flags.contains(MsFlags::MS_BIND)).then_some(self.kind.as_str());
        mount(Some(self.source.as_str()), &target, fstype, flags, data_opt).map_err(err)?;
        if flags.contains(MsFlags::MS_BIND) && flags.contains(MsFlags::MS_RDONLY) {
            let remount = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &target, None::<&str>, remount, None::<&str>).map_err(err)?;
        }
        Ok(())
    }
}

/// Applies every mount in order under `root`; on failure unmounts what was applied.
pub fn mount_all(mounts: &[Mount], root: &Path) -> Result<(), MountError> {
    for (i, m) in mounts.iter().enumerate() {
        if let Err(e) = m.mount(root) {
            for done in mounts[..i].iter().rev() {
                if let Ok(t) = done.resolved_target(root) {
                    let _ = unmount(&t);
                }
            }
            return Err(e);
        }
    }
    Ok(())
}

/// Unmounts `target` (lazily detaching if busy), treating "not mounted" as done.
pub fn unmount(target: &Path) -> Result<(), MountError> {
    use nix::mount::{umount2, MntFlags};
    match umount2(target, MntFlags::empty()) {
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => Ok(()),
        Err(nix::Error::EBUSY) => {
            umount2(target, MntFlags::MNT_DETACH).map_err(|errno| MountError::Unmount {
                target: target.to_path_buf(),
                errno,
            })
        }
        Err(errno) => Err(MountError::Unmount {
            target: target.to_path_buf(),
            errno,
        }),
    }
}

/// Unmounts every mount at or below `target`, deepest first, as read from /proc/self/mountinfo.
pub fn unmount_recursive(target: &Path) -> Result<(), MountError> {
    let mut points = mount_points_under(target);
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for p in points {
        unmount(&p)?;
    }
    Ok(())
}

/// Whether something is mounted exactly at `path`: statx's mount-root attribute (since
/// Linux 5.8), one call where reading mountinfo costs a line per mount on the machine;
/// mountinfo where the kernel does not say.
pub fn is_mount_point(path: &Path) -> bool {
    use rustix::fs::{statx, AtFlags, StatxAttributes, StatxFlags, CWD};
    if let Ok(st) = statx(CWD, path, AtFlags::empty(), StatxFlags::BASIC_STATS) {
        if st.stx_attributes_mask.contains(StatxAttributes::MOUNT_ROOT) {
            return st.stx_attributes.contains(StatxAttributes::MOUNT_ROOT);
        }
    }
    let Ok(canon) = path.canonicalize() else {
        return false;
    };
    mount_points_under(&canon).contains(&canon)
}

/// Mount points at or under `dir`, from /proc/self/mountinfo.
pub fn mount_points_under(dir: &Path) -> Vec<PathBuf> {
    let Ok(info) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    info.lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape_mountinfo(p)))
        .filter(|p| p.starts_with(dir))
        .collect()
}

/// What /proc/self/mountinfo says about one mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The path inside the source filesystem that is mounted (a bind's source).
    pub root: String,
    /// Mount point.
    pub mount_point: PathBuf,
    /// Filesystem type (`overlay`, `ext4`, ...).
    pub fstype: String,
    /// Mount source (`overlay`, `/dev/vda`, ...).
    pub source: String,
    /// Per-superblock options (`lowerdir=…,upperdir=…` for overlays).
    pub super_options: String,
}

/// The topmost mount exactly at `path`, if any.
pub fn mount_info(path: &Path) -> Option<MountInfo> {
    let canon = path.canonicalize().ok()?;
    let info = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    info.lines()
        .filter_map(parse_mountinfo_line)
        .rfind(|m| m.mount_point == canon)
}

/// `id parent maj:min root mountpoint opts [optional…] - fstype source superopts`.
fn parse_mountinfo_line(line: &str) -> Option<MountInfo> {
    let (head, tail) = line.split_once(" - ")?;
    let head: Vec<&str> = head.split(' ').collect();
    let mut tail = tail.splitn(3, ' ');
    Some(MountInfo {
        root: unescape_mountinfo(head.get(3)?),
        mount_point: PathBuf::from(unescape_mountinfo(head.get(4)?)),
        fstype: tail.next()?.to_string(),
        source: unescape_mountinfo(tail.next()?),
        super_options: tail.next().unwrap_or("").to_string(),
    })
}

/// mountinfo escapes space, tab, newline and backslash as octal `\ooo`.
fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            if let Ok(v) = u8::from_str_radix(&s[i + 1..i + 4], 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_shape_matches_containerd() {
        let m = Mount {
            kind: "overlay".into(),
            source: "overlay".into(),
            target: String::new(),
            options: vec![
                "lowerdir=/a:/b".into(),
                "upperdir=/u".into(),
                "workdir=/w".into(),
            ],
        };
        let v = serde_json::to_value(&m).expect("serialize");
        assert_eq!(v["type"], "overlay");
        let back: Mount = serde_json::from_value(v).expect("deserialize");
        assert_eq!(back, m);
    }

    #[test]
    fn targets_cannot_climb_out() {
        let m = Mount {
            target: "../etc".into(),
            ..Mount::bind("/x", true)
        };
        assert!(matches!(
            m.resolved_target(Path::new("/r")),
            Err(MountError::TargetEscapes(_))
        ));
        let m = Mount {
            target: "/dev/shm".into(),
            ..Mount::bind("/x", true)
        };
        assert_eq!(
            m.resolved_target(Path::new("/r")).expect("inside"),
            Path::new("/r/dev/shm")
        );
    }

    #[test]
    fn options_split_into_flags_and_data() {
        let m = Mount::bind("/x", true);
        let (flags, data) = m.flags_and_data();
        assert!(flags.contains(nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_BIND));
        assert!(data.is_empty());
        assert!(m.is_readonly());
    }

    #[test]
    fn mountinfo_lines_parse() {
        let l = "36 35 98:0 /mnt1 /mnt/a\\040b rw,noatime master:1 - overlay overlay rw,lowerdir=/l,upperdir=/u";
        let m = parse_mountinfo_line(l).expect("parses");
        assert_eq!(m.root, "/mnt1");
        assert_eq!(m.mount_point, Path::new("/mnt/a b"));
        assert_eq!(m.fstype, "overlay");
        assert_eq!(m.super_options, "rw,lowerdir=/l,upperdir=/u");
    }

    #[test]
    fn mountinfo_escapes_decode() {
        assert_eq!(unescape_mountinfo("/a\\040b"), "/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
    }
}
