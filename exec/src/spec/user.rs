//! Image `User` resolution against the container's own /etc/passwd and /etc/group.
//!
//! The files are read through [`confined_path`], which resolves symlinks as if the
//! rootfs were `/`: an image cannot make berth read the host's files.

use std::path::{Component, Path, PathBuf};

use super::SpecError;

/// The uid, gid and supplementary groups a container process runs with.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedUser {
    /// User id.
    pub uid: u32,
    /// Primary group id.
    pub gid: u32,
    /// Supplementary groups (only when the user spec named no group).
    pub additional_gids: Vec<u32>,
}

struct PasswdEntry {
    name: String,
    uid: u32,
    gid: u32,
}

struct GroupEntry {
    name: String,
    gid: u32,
    members: Vec<String>,
}

/// Resolves `user`, `uid`, `user:group`, `uid:gid`, `uid:group` or `user:gid` (empty = root)
/// the way containerd does: names must exist, a numeric uid missing from passwd gets gid 0,
/// supplementary groups come from /etc/group only when no group is given.
pub fn resolve_user(rootfs: &Path, spec: &str) -> Result<ResolvedUser, SpecError> {
    let (user, group) = match spec.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (spec, None),
    };
    let user = if user.is_empty() { "0" } else { user };
    let passwd = read_passwd(rootfs)?;
    let entry = match user.parse::<u32>() {
        Ok(uid) => passwd.into_iter().find(|e| e.uid == uid),
        Err(_) => Some(
            passwd
                .into_iter()
                .find(|e| e.name == user)
                .ok_or_else(|| SpecError::UnknownUser(user.to_string()))?,
        ),
    };
    let uid = match &entry {
        Some(e) => e.uid,
        None => user
            .parse::<u32>()
            .map_err(|_| SpecError::UnknownUser(user.to_string()))?,
    };
    let groups = read_group(rootfs)?;
    if let Some(g) = group.filter(|g| !g.is_empty()) {
        let gid = match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|e| e.name == g)
                .map(|e| e.gid)
                .ok_or_else(|| SpecError::UnknownGroup(g.to_string()))?,
        };
        return Ok(ResolvedUser {
            uid,
            gid,
            additional_gids: Vec::new(),
        });
    }
    let Some(entry) = entry else {
        return Ok(ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
        });
    };
    let mut additional_gids: Vec<u32> = groups
        .iter()
        .filter(|g| g.gid != entry.gid && g.members.contains(&entry.name))
        .map(|g| g.gid)
        .collect();
    additional_gids.dedup();
    Ok(ResolvedUser {
        uid,
        gid: entry.gid,
        additional_gids,
    })
}

fn read_passwd(rootfs: &Path) -> Result<Vec<PasswdEntry>, SpecError> {
    let text = read_confined(rootfs, "/etc/passwd")?;
    Ok(colon_records(&text)
        .filter_map(|f| {
            Some(PasswdEntry {
                name: f.first()?.to_string(),
                uid: f.get(2)?.parse().ok()?,
                gid: f.get(3)?.parse().ok()?,
            })
        })
        .collect())
}

fn read_group(rootfs: &Path) -> Result<Vec<GroupEntry>, SpecError> {
    let text = read_confined(rootfs, "/etc/group")?;
    Ok(colon_records(&text)
        .filter_map(|f| {
            let members = f.get(3).map_or(vec![], |m| {
                m.split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            });
            Some(GroupEntry {
                name: f.first()?.to_string(),
                gid: f.get(2)?.parse().ok()?,
                members,
            })
        })
        .collect())
}

fn colon_records(text: &str) -> impl Iterator<Item = Vec<&str>> {
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|l| l.split(':').collect())
}

/// A missing file reads as empty: images without /etc/passwd run numeric users.
fn read_confined(rootfs: &Path, path: &str) -> Result<String, SpecError> {
    let real = confined_path(rootfs, path)?;
    match std::fs::read(&real) {
        Ok(b) => Ok(String::from_utf8_lossy(&b).into_owned()),
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
            ) =>
        {
            Ok(String::new())
        }
        Err(source) => Err(SpecError::ReadRootfs { path: real, source }),
    }
}

/// Most symlinks followed while resolving one path, as the kernel's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` inside `root` as if `root` were `/`: absolute symlinks restart at
/// `root` and `..` never climbs above it. Missing components are left as they are.
pub fn confined_path(root: &Path, path: &str) -> Result<PathBuf, SpecError> {
    let mut resolved = PathBuf::new();
    let mut links = 0;
    let mut stack: Vec<std::ffi::OsString> = Path::new(path)
        .components()
        .rev()
        .map(|c| c.as_os_str().to_os_string())
        .collect();
    while let Some(c) = stack.pop() {
        match Path::new(&c).components().next() {
            Some(Component::RootDir) => resolved.clear(),
            Some(Component::ParentDir) => {
                resolved.pop();
            }
            Some(Component::Normal(name)) => {
                match std::fs::read_link(root.join(&resolved).join(name)) {
                    Ok(target) => {
                        links += 1;
                        if links > MAX_SYMLINKS {
                            return Err(SpecError::SymlinkLoop(path.to_string()));
                        }
                        stack.extend(
                            target
                                .components()
                                .rev()
                                .map(|t| t.as_os_str().to_os_string()),
                        );
                    }
                    Err(_) => resolved.push(name),
                }
            }
            _ => {}
        }
    }
    Ok(root.join(resolved))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rootfs() -> tempfile::TempDir {
        let d = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(d.path().join("etc")).expect("etc");
        std::fs::write(
            d.path().join("etc/passwd"),
            "root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000::/home/app:/bin/sh\nbad:line\n",
        )
        .expect("passwd");
        std::fs::write(
            d.path().join("etc/group"),
            "root:x:0:\napp:x:1000:\nwheel:x:10:app,other\naudio:x:29:app\n",
        )
        .expect("group");
        d
    }

    #[test]
    fn names_and_numbers() {
        let r = rootfs();
        let u = |s| resolve_user(r.path(), s);
        assert_eq!(
            u("app").expect("name"),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29]
            }
        );
        assert_eq!(
            u("1000").expect("uid"),
            ResolvedUser {
                uid: 1000,
                gid: 1000,
                additional_gids: vec![10, 29]
            }
        );
        assert_eq!(
            u("").expect("empty"),
            ResolvedUser {
                uid: 0,
                gid: 0,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            u("app:wheel").expect("user:group"),
            ResolvedUser {
                uid: 1000,
                gid: 10,
                additional_gids: vec![]
            }
        );
        assert_eq!(
            u("1000:29").expect("uid:gid"),
            ResolvedUser {
                uid: 1000,
                gid: 29,
                additional_gids: vec![]
            }
        );
        assert_eq!(u("1000:wheel").expect("uid:group").gid, 10);
        assert_eq!(u("app:7").expect("user:gid").gid, 7);
    }

    #[test]
    fn numeric_uid_missing_from_passwd_gets_gid_zero() {
        let r = rootfs();
        assert_eq!(
            resolve_user(r.path(), "4242").expect("uid"),
            ResolvedUser {
                uid: 4242,
                gid: 0,
                additional_gids: vec![]
            }
        );
        let empty = tempfile::tempdir().expect("tempdir");
        assert_eq!(resolve_user(empty.path(), "5").expect("no passwd").uid, 5);
    }

    #[test]
    fn unknown_names_are_errors() {
        let r = rootfs();
        assert!(
            matches!(resolve_user(r.path(), "nobody"), Err(SpecError::UnknownUser(u)) if u == "nobody")
        );
        assert!(
            matches!(resolve_user(r.path(), "app:nogroup"), Err(SpecError::UnknownGroup(g)) if g == "nogroup")
        );
    }

    #[test]
    fn absolute_symlinks_stay_inside_the_rootfs() {
        let r = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/host-etc", r.path().join("etc")).expect("symlink");
        std::fs::create_dir(r.path().join("host-etc")).expect("dir");
        std::fs::write(
            r.path().join("host-etc/passwd"),
            "inside:x:77:77::/:/bin/sh\n",
        )
        .expect("passwd");
        assert_eq!(
            confined_path(r.path(), "/etc/passwd").expect("ok"),
            r.path().join("host-etc/passwd")
        );
        assert_eq!(resolve_user(r.path(), "inside").expect("found").uid, 77);
        let r = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(r.path().join("etc")).expect("etc");
        std::os::unix::fs::symlink("../../../../etc/hostpasswd", r.path().join("etc/passwd"))
            .expect("symlink");
        assert_eq!(
            confined_path(r.path(), "/etc/passwd").expect("ok"),
            r.path().join("etc/hostpasswd")
        );
        assert!(
            matches!(
                resolve_user(r.path(), "root"),
                Err(SpecError::UnknownUser(_))
            ),
            "host passwd must not be read"
        );
    }

    #[test]
    fn symlink_loops_are_errors() {
        let r = tempfile::tempdir().expect("tempdir");
        std::os::unix::fs::symlink("/etc", r.path().join("etc")).expect("symlink");
        assert!(matches!(
            confined_path(r.path(), "/etc/passwd"),
            Err(SpecError::SymlinkLoop(_))
        ));
    }
}
