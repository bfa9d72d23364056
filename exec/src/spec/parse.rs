//! Parsers for the docker/podman flag syntax `berth run` accepts, kept apart from spec
//! building so the CLI can validate flags before anything touches the disk.

use std::path::{Path, PathBuf};

use super::SpecError;

/// A `--mount type=bind,src=...,dst=...[,ro]` or `--mount type=tmpfs,dst=...` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// A host directory or file bound into the container.
    Bind {
        /// Host path.
        source: PathBuf,
        /// Absolute path inside the container.
        destination: String,
        /// Mounted read-only.
        readonly: bool,
        /// `rprivate` (docker's default), `rshared`, `rslave`, ...
        propagation: String,
    },
    /// A fresh tmpfs.
    Tmpfs(TmpfsMount),
}

/// A `--tmpfs DST[:opts]` request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TmpfsMount {
    /// Absolute path inside the container.
    pub destination: String,
    /// Extra mount options (`size=64m`, `mode=1777`, `exec`, ...).
    pub options: Vec<String>,
}

impl std::str::FromStr for MountRequest {
    type Err = SpecError;

    /// Parses docker's `--mount` CSV syntax.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let bad = |why: &str| SpecError::BadMount {
            spec: s.to_string(),
            why: why.to_string(),
        };
        let (mut kind, mut src, mut dst) = ("bind".to_string(), None, None);
        let (mut readonly, mut propagation, mut tmpfs_opts) =
            (false, "rprivate".to_string(), vec![]);
        for field in s.split(',').filter(|f| !f.is_empty()) {
            let (key, value) = match field.split_once('=') {
                Some((k, v)) => (k.trim().to_ascii_lowercase(), Some(v.trim())),
                None => (field.trim().to_ascii_lowercase(), None),
            };
            match (key.as_str(), value) {
                ("type", Some(v)) => kind = v.to_string(),
                ("src" | "source", Some(v)) => src = Some(PathBuf::from(v)),
                ("dst" | "destination" | "target", Some(v)) => dst = Some(v.to_string()),
                ("ro" | "readonly", None) => readonly = true,
                ("ro" | "readonly", Some(v)) => {
                    readonly = parse_bool(v).ok_or_else(|| bad("readonly wants true/false"))?
                }
                ("bind-propagation", Some(v)) => propagation = v.to_string(),
                ("tmpfs-size", Some(v)) => tmpfs_opts.push(format!("size={}", parse_bytes(v)?)),
                ("tmpfs-mode", Some(v)) => tmpfs_opts.push(format!("mode={v}")),
                _ => return Err(bad(&format!("unknown field {field:?}"))),
            }
        }
        let destination = dst.ok_or_else(|| bad("missing dst"))?;
        check_destination(&destination)?;
        match kind.as_str() {
            "bind" => {
                let source = src.ok_or_else(|| bad("missing src"))?;
                if !source.is_absolute() {
                    return Err(bad("src must be an absolute path"));
                }
                Ok(MountRequest::Bind {
                    source,
                    destination,
                    readonly,
                    propagation,
                })
            }
            "tmpfs" if src.is_none() => {
                if readonly {
                    tmpfs_opts.push("ro".into());
                }
                Ok(MountRequest::Tmpfs(TmpfsMount {
                    destination,
                    options: tmpfs_opts,
                }))
            }
            "tmpfs" => Err(bad("tmpfs takes no src")),
            other => Err(bad(&format!("unsupported type {other:?}"))),
        }
    }
}

impl std::str::FromStr for TmpfsMount {
    type Err = SpecError;

    /// Parses `--tmpfs /dst[:opt,opt]`.
    fn from_str(s: &str) -> Result<Self, SpecError> {
        let (dst, opts) = s.split_once(':').unwrap_or((s, ""));
        check_destination(dst)?;
        let options = opts
            .split(',')
            .filter(|o| !o.is_empty())
            .map(str::to_string)
            .collect();
        Ok(TmpfsMount {
            destination: dst.to_string(),
            options,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" => Some(true),
        "0" | "false" => Some(false),
        _ => None,
    }
}

/// Container paths must be absolute: a relative one has no meaning to the runtime.
fn check_destination(dst: &str) -> Result<(), SpecError> {
    if Path::new(dst).is_absolute() {
        Ok(())
    } else {
        Err(SpecError::RelativeContainerPath(dst.to_string()))
    }
}

/// Parses a byte size like docker's `--memory`: `512`, `64k`, `256m`, `1g`, `1GiB` (base 1024).
pub fn parse_bytes(s: &str) -> Result<i64, SpecError> {
    let bad = || SpecError::BadSize(s.to_string());
    let lower = s.trim().to_ascii_lowercase();
    let unit_start = lower
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(lower.len());
    let (num, unit) = lower.split_at(unit_start);
    let num: f64 = num.parse().map_err(|_| bad())?;
    let mult: f64 = match unit.trim_end_matches("ib").trim_end_matches('b') {
        "" => 1.0,
        "k" => 1024.0,
        "m" => 1024.0 * 1024.0,
        "g" => 1024.0 * 1024.0 * 1024.0,
        "t" => 1024.0f64.powi(4),
        _ => return Err(bad()),
    };
    let bytes = num * mult;
    if !bytes.is_finite() || bytes < 1.0 || bytes > i64::MAX as f64 {
        return Err(bad());
    }
    Ok(bytes as i64)
}

/// The CFS period docker and containerd use with `--cpus`.
pub const CPU_PERIOD: u64 = 100_000;

/// Turns `--cpus 1.5` into a CFS quota for [`CPU_PERIOD`].
pub fn cpu_quota(cpus: f64) -> Result<i64, SpecError> {
    if !cpus.is_finite() || cpus <= 0.0 || cpus > 1_000_000.0 {
        return Err(SpecError::BadCpus(cpus.to_string()));
    }
    Ok(((cpus * CPU_PERIOD as f64).round() as i64).max(1000))
}

/// Parses an `--env-file` body: `KEY=VALUE` lines taken literally, `KEY` alone to copy
/// from the caller's environment, blank lines and `#` comments skipped (docker's rules).
pub fn parse_env_file(text: &str, path: &Path) -> Result<Vec<String>, SpecError> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let key = line.split_once('=').map_or(line, |(k, _)| k);
        if key.is_empty() || key.contains(char::is_whitespace) {
            return Err(SpecError::BadEnvFile {
                path: path.to_path_buf(),
                line: i + 1,
            });
        }
        out.push(line.to_string());
    }
    Ok(out)
}

/// Parses a signal as images and `kill -s` name it: `SIGTERM`, `TERM`, `15`, `SIGRTMIN+3`.
pub fn parse_signal(s: &str) -> Result<i32, SpecError> {
    let bad = || SpecError::BadSignal(s.to_string());
    if let Ok(n) = s.parse::<i32>() {
        return (1..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
            .ok_or_else(bad);
    }
    let upper = s.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    if let Some(rest) = name.strip_prefix("RTMIN") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| bad())?
        };
        let n = libc::SIGRTMIN() + off;
        return (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
            .ok_or_else(bad);
    }
    if let Some(rest) = name.strip_prefix("RTMAX") {
        let off: i32 = if rest.is_empty() {
            0
        } else {
            rest.parse().map_err(|_| bad())?
        };
        let n = libc::SIGRTMAX() + off;
        return (libc::SIGRTMIN()..=libc::SIGRTMAX())
            .contains(&n)
            .then_some(n)
            .ok_or_else(bad);
    }
    format!("SIG{name}")
        .parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bind_mount_syntax() {
        let m: MountRequest = "type=bind,src=/data,dst=/mnt,ro".parse().expect("valid");
        assert_eq!(
            m,
            MountRequest::Bind {
                source: "/data".into(),
                destination: "/mnt".into(),
                readonly: true,
                propagation: "rprivate".into()
            }
        );
        let m: MountRequest = "source=/a,target=/b,readonly=false".parse().expect("valid");
        assert!(matches!(
            m,
            MountRequest::Bind {
                readonly: false,
                ..
            }
        ));
        assert!("type=bind,src=rel,dst=/b".parse::<MountRequest>().is_err());
        assert!("type=bind,src=/a,dst=b".parse::<MountRequest>().is_err());
        assert!("type=bind,dst=/b".parse::<MountRequest>().is_err());
        assert!("type=volume,src=v,dst=/b".parse::<MountRequest>().is_err());
        assert!("type=bind,src=/a,dst=/b,bogus=1"
            .parse::<MountRequest>()
            .is_err());
    }

    #[test]
    fn tmpfs_syntax() {
        let t: TmpfsMount = "/run:size=64m,mode=1777".parse().expect("valid");
        assert_eq!(t.destination, "/run");
        assert_eq!(t.options, vec!["size=64m", "mode=1777"]);
        let t: TmpfsMount = "/tmp".parse().expect("valid");
        assert!(t.options.is_empty());
        assert!("tmp".parse::<TmpfsMount>().is_err());
        let m: MountRequest = "type=tmpfs,dst=/t,tmpfs-size=1m".parse().expect("valid");
        assert_eq!(
            m,
            MountRequest::Tmpfs(TmpfsMount {
                destination: "/t".into(),
                options: vec!["size=1048576".into()]
            })
        );
    }

    #[test]
    fn byte_sizes() {
        assert_eq!(parse_bytes("512").expect("n"), 512);
        assert_eq!(parse_bytes("64k").expect("k"), 64 * 1024);
        assert_eq!(parse_bytes("256m").expect("m"), 256 << 20);
        assert_eq!(parse_bytes("1G").expect("g"), 1 << 30);
        assert_eq!(parse_bytes("1GiB").expect("gib"), 1 << 30);
        assert_eq!(parse_bytes("1.5k").expect("frac"), 1536);
        for bad in ["", "m", "-1m", "12x", "0"] {
            assert!(parse_bytes(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cpus_become_quota() {
        assert_eq!(cpu_quota(1.5).expect("ok"), 150_000);
        assert_eq!(cpu_quota(0.5).expect("ok"), 50_000);
        assert!(cpu_quota(0.0).is_err());
        assert!(cpu_quota(f64::NAN).is_err());
    }

    #[test]
    fn env_file_lines() {
        let p = Path::new("/e");
        let got = parse_env_file("# c\n\nA=1\n  B= two words \nHOME\n", p).expect("valid");
        assert_eq!(got, vec!["A=1", "B= two words ", "HOME"]);
        assert!(matches!(
            parse_env_file("A B=1", p),
            Err(SpecError::BadEnvFile { line: 1, .. })
        ));
        assert!(parse_env_file("=x", p).is_err());
    }

    #[test]
    fn signals() {
        assert_eq!(parse_signal("SIGTERM").expect("name"), libc::SIGTERM);
        assert_eq!(parse_signal("kill").expect("short"), libc::SIGKILL);
        assert_eq!(parse_signal("15").expect("num"), 15);
        assert_eq!(
            parse_signal("SIGRTMIN+3").expect("rt"),
            libc::SIGRTMIN() + 3
        );
        assert!(parse_signal("SIGNOPE").is_err());
        assert!(parse_signal("0").is_err());
    }
}
