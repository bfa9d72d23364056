//! Platforms (`os/arch[/variant]`) and choosing the right manifest from an index.
//!
//! Normalisation and the compatibility order follow containerd's platforms package:
//! `x86_64` is `amd64`, `aarch64` is `arm64` (whose `v8` variant is the default),
//! an arm64 host also runs `arm/v8`…`arm/v5`, an amd64 host also runs `386`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Why a string is not a platform.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid platform {0:?}: expected os/arch[/variant], e.g. linux/arm64")]
pub struct PlatformError(pub String);

/// A normalised platform.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Platform {
    /// `linux`, `windows`, ...
    pub os: String,
    /// GOARCH spelling: `amd64`, `arm64`, `arm`, `386`, ...
    pub architecture: String,
    /// CPU variant: `v7`, `v8`; empty when none.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub variant: String,
}

impl Platform {
    /// Builds a normalised platform from raw parts.
    pub fn new(os: &str, arch: &str, variant: &str) -> Self {
        let os = if os.is_empty() {
            "linux".to_string()
        } else {
            os.to_ascii_lowercase()
        };
        let (architecture, variant) =
            normalize_arch(&arch.to_ascii_lowercase(), &variant.to_ascii_lowercase());
        Platform {
            os,
            architecture,
            variant,
        }
    }

    /// The platform this process runs on.
    pub fn host() -> Self {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "x86" => "386",
            "aarch64" => "arm64",
            "powerpc64" if cfg!(target_endian = "little") => "ppc64le",
            other => other,
        };
        Platform::new(std::env::consts::OS, arch, "")
    }

    /// How well an image for `self` suits a host of `host`: lower is better, None = cannot run.
    pub fn rank_on(&self, host: &Platform) -> Option<usize> {
        if self.os != host.os {
            return None;
        }
        compatible(host)
            .iter()
            .position(|(a, v)| *a == self.architecture && *v == self.variant)
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.os, self.architecture)?;
        if !self.variant.is_empty() {
            write!(f, "/{}", self.variant)?;
        }
        Ok(())
    }
}

impl FromStr for Platform {
    type Err = PlatformError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let parts: Vec<&str> = s.split('/').collect();
        let valid = |p: &&str| {
            !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.')
        };
        if !(2..=3).contains(&parts.len()) || !parts.iter().all(valid) {
            return Err(PlatformError(s.to_string()));
        }
        Ok(Platform::new(
            parts[0],
            parts[1],
            parts.get(2).copied().unwrap_or(""),
        ))
    }
}

fn normalize_arch(arch: &str, variant: &str) -> (String, String) {
    let (a, v) = match (arch, variant) {
        ("i386", _) => ("386", ""),
        ("x86_64" | "x86-64" | "amd64", "v1") => ("amd64", ""),
        ("x86_64" | "x86-64", v) => ("amd64", v),
        ("aarch64" | "arm64", "8" | "v8") => ("arm64", ""),
        ("aarch64", v) => ("arm64", v),
        ("armhf", _) => ("arm", "v7"),
        ("armel", _) => ("arm", "v6"),
        ("arm", "") | ("arm", "7") => ("arm", "v7"),
        ("arm", "5" | "6" | "8") => ("arm", ""),
        (a, v) => (a, v),
    };
    let v = match (a, variant) {
        ("arm", "5") => "v5",
        ("arm", "6") => "v6",
        ("arm", "8") => "v8",
        _ => v,
    };
    (a.to_string(), v.to_string())
}

/// Architectures a host can run, best first.
fn compatible(host: &Platform) -> Vec<(String, String)> {
    let own = (host.architecture.clone(), host.variant.clone());
    let arm = |from: u8| {
        (5..=from)
            .rev()
            .map(|n| ("arm".to_string(), format!("v{n}")))
            .collect::<Vec<_>>()
    };
    let mut out = vec![own];
    match host.architecture.as_str() {
        "amd64" => out.push(("386".into(), String::new())),
        "arm64" => out.extend(arm(8)),
        "arm" => {
            let level = host.variant.trim_start_matches('v').parse().unwrap_or(7);
            out.extend(arm(level).into_iter().filter(|p| p.1 != host.variant));
        }
        _ => {}
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Platform {
        s.parse().expect(s)
    }

    #[test]
    fn parses_and_normalises() {
        assert_eq!(p("linux/amd64").to_string(), "linux/amd64");
        assert_eq!(p("linux/x86_64").to_string(), "linux/amd64");
        assert_eq!(p("linux/aarch64").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm64/v8").to_string(), "linux/arm64");
        assert_eq!(p("linux/arm").to_string(), "linux/arm/v7");
        assert_eq!(p("Linux/armhf").to_string(), "linux/arm/v7");
        assert!("linux".parse::<Platform>().is_err());
        assert!("linux/amd64/v2/x".parse::<Platform>().is_err());
        assert!("linux//v2".parse::<Platform>().is_err());
    }

    #[test]
    fn ranks_like_containerd() {
        let amd = p("linux/amd64");
        assert_eq!(p("linux/amd64").rank_on(&amd), Some(0));
        assert_eq!(p("linux/386").rank_on(&amd), Some(1));
        assert_eq!(p("linux/arm64").rank_on(&amd), None);
        assert_eq!(p("windows/amd64").rank_on(&amd), None);
        let arm64 = p("linux/arm64");
        assert_eq!(p("linux/arm64/v8").rank_on(&arm64), Some(0));
        assert!(p("linux/arm/v7").rank_on(&arm64) < p("linux/arm/v6").rank_on(&arm64));
        let armv6 = p("linux/arm/v6");
        assert_eq!(p("linux/arm/v7").rank_on(&armv6), None);
        assert_eq!(p("linux/arm/v5").rank_on(&armv6), Some(1));
    }
}
