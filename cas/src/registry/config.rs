//! Registry hosts configuration: one TOML file (`hosts.toml`) in berth's config dir
//! (`$BERTH_CONFIG`, else `/etc/berth`).
//!
//! ```toml
//! [hosts."registry.example:5000"]
//! plain_http = false          # talk HTTP instead of HTTPS
//! skip_verify = false         # do not verify the server's certificate
//! ca = "/etc/berth/certs/example-ca.pem"
//! client_cert = "/etc/berth/certs/me.pem"
//! client_key = "/etc/berth/certs/me.key"
//! mirrors = ["https://mirror.example", "http://127.0.0.1:5001"]   # tried in order, then the host itself
//! ```
//!
//! A mirror's own TLS settings come from its own `[hosts."..."]` entry. Loopback hosts
//! (127.0.0.0/8, ::1, localhost) use plain HTTP unless configured otherwise, as docker does.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use super::error::{RegistryError, Result};

/// Where berth reads its configuration when `$BERTH_CONFIG` is unset.
pub const DEFAULT_CONFIG_DIR: &str = "/etc/berth";

/// Settings for one registry host.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostConfig {
    /// Use HTTP instead of HTTPS (None: HTTP for loopback hosts only).
    pub plain_http: Option<bool>,
    /// Accept any server certificate.
    #[serde(default)]
    pub skip_verify: bool,
    /// Extra CA certificates (PEM) to trust for this host.
    pub ca: Option<PathBuf>,
    /// Client certificate chain (PEM).
    pub client_cert: Option<PathBuf>,
    /// Client private key (PEM).
    pub client_key: Option<PathBuf>,
    /// Mirrors (URLs) tried in order before this host.
    #[serde(default)]
    pub mirrors: Vec<String>,
}

/// The whole hosts file.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostsConfig {
    /// Per host (`host[:port]`) settings.
    #[serde(default)]
    pub hosts: BTreeMap<String, HostConfig>,
}

impl HostsConfig {
    /// Reads `hosts.toml` from `dir`; a missing file means defaults.
    pub fn load(dir: &Path) -> Result<Self> {
        let path = dir.join("hosts.toml");
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(RegistryError::io(&path)(e)),
        };
        Self::parse(&text, &path)
    }

    /// Parses the file's text (`path` is for messages).
    pub fn parse(text: &str, path: &Path) -> Result<Self> {
        toml::from_str(text).map_err(|e| RegistryError::HostsConfig {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Settings for `host` (defaults when it has no entry).
    pub fn host(&self, host: &str) -> HostConfig {
        self.hosts.get(host).cloned().unwrap_or_default()
    }
}

/// The config dir: `$BERTH_CONFIG` or `/etc/berth`.
pub fn config_dir() -> PathBuf {
    std::env::var_os("BERTH_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_DIR))
}

/// Whether `host[:port]` names this machine (127.0.0.0/8, ::1, localhost).
pub fn is_loopback(host: &str) -> bool {
    let name = strip_port(host);
    if name.eq_ignore_ascii_case("localhost") {
        return true;
    }
    name.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_loopback())
}

/// `host:port` → `host`; `[::1]:5000` → `[::1]`.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        return host
            .split_once(']')
            .map_or(host, |(h, _)| &host[..h.len() + 1]);
    }
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:5000",
            "127.0.0.1:5000",
            "127.3.4.5",
            "[::1]:5000",
            "::1",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in [
            "docker.io",
            "10.0.0.1:5000",
            "example.com:443",
            "localhost.example",
        ] {
            assert!(!is_loopback(h), "{h}");
        }
    }

    #[test]
    fn parses_hosts_file() {
        let text = r#"
            [hosts."reg.example:5000"]
            plain_http = true
            mirrors = ["http://127.0.0.1:1", "https://m.example"]
        "#;
        let cfg = HostsConfig::parse(text, Path::new("hosts.toml")).expect("parse");
        let h = cfg.host("reg.example:5000");
        assert_eq!(h.plain_http, Some(true));
        assert_eq!(h.mirrors.len(), 2);
        assert!(cfg.host("other").mirrors.is_empty());
        assert!(HostsConfig::parse("[hosts.x]\nbogus = 1", Path::new("h")).is_err());
    }
}
