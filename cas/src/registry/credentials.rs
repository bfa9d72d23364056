//! Credentials from the docker config file (`$DOCKER_CONFIG/config.json`, else
//! `~/.docker/config.json`): `auths` entries (base64 `user:pass`, `identitytoken`),
//! `credsStore` (the default helper) and `credHelpers` (per-host helpers), run as
//! `docker-credential-<name> get|store|erase`. `berth login`/`logout` write the same file.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine as _;
use serde_json::{Map, Value};

use super::error::{RegistryError, Result};

/// The key Docker Hub credentials are stored under.
const DOCKER_HUB_KEY: &str = "https://index.docker.io/v1/";

/// Credentials for one registry.
#[derive(Clone, PartialEq, Eq)]
pub enum Credentials {
    /// Username and password (HTTP basic, or a token request with basic auth).
    Basic {
        /// User name.
        username: String,
        /// Password or access token.
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`).
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Credentials::Basic { username, .. } => write!(f, "Basic({username}, ***)"),
            Credentials::IdentityToken(_) => write!(f, "IdentityToken(***)"),
        }
    }
}

/// The docker config file, kept as JSON so unknown fields survive a rewrite.
#[derive(Debug, Clone)]
pub struct DockerConfig {
    path: PathBuf,
    doc: Map<String, Value>,
}

/// `$DOCKER_CONFIG/config.json`, else `$HOME/.docker/config.json`.
pub fn default_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG") {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    PathBuf::from(home).join(".docker/config.json")
}

/// The key a registry's entry has in `auths`.
pub fn auth_key(registry: &str) -> String {
    match registry {
        "docker.io" | "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB_KEY.to_string(),
        other => other.to_string(),
    }
}

/// `https://host/v1/` → `host` (legacy keys are URLs).
fn key_host(key: &str) -> &str {
    let k = key
        .strip_prefix("https://")
        .or_else(|| key.strip_prefix("http://"))
        .unwrap_or(key);
    k.split('/').next().unwrap_or(k)
}

impl DockerConfig {
    /// Reads the file at `path`; a missing file is an empty config.
    pub fn load(path: &Path) -> Result<Self> {
        let doc = match std::fs::read(path) {
            Ok(bytes) if bytes.iter().all(u8::is_ascii_whitespace) => Map::new(),
            Ok(bytes) => match serde_json::from_slice(&bytes) {
                Ok(Value::Object(m)) => m,
                Ok(_) => return Err(bad(path, "not a JSON object".into())),
                Err(e) => return Err(bad(path, e.to_string())),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Map::new(),
            Err(e) => return Err(RegistryError::io(path)(e)),
        };
        Ok(DockerConfig {
            path: path.to_path_buf(),
            doc,
        })
    }

    /// The file this config lives in.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The helper responsible for `registry`, if any (`credHelpers` beats `credsStore`).
    pub fn helper(&self, registry: &str) -> Option<String> {
        let key = auth_key(registry);
        let per_host = self.doc.get("credHelpers").and_then(Value::as_object);
        per_host
            .and_then(|m| m.get(&key).or_else(|| m.get(registry)))
            .or_else(|| self.doc.get("credsStore"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Credentials for `registry`, from its helper or the `auths` map.
    pub fn get(&self, registry: &str) -> Result<Option<Credentials>> {
        if let Some(helper) = self.helper(registry) {
            return helper_get(&helper, registry);
        }
        let Some(auths) = self.doc.get("auths").and_then(Value::as_object) else {
            return Ok(None);
        };
        let key = auth_key(registry);
        let entry = auths.get(&key).or_else(|| {
            auths
                .iter()
                .find(|(k, _)| key_host(k) == key_host(&key))
                .map(|(_, v)| v)
        });
        match entry {
            Some(e) => self.decode_entry(e),
            None => Ok(None),
        }
    }

    fn decode_entry(&self, e: &Value) -> Result<Option<Credentials>> {
        let field = |k: &str| e.get(k).and_then(Value::as_str).filter(|s| !s.is_empty());
        if let Some(t) = field("identitytoken") {
            return Ok(Some(Credentials::IdentityToken(t.to_string())));
        }
        if let Some(auth) = field("auth") {
            let raw = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|e| bad(&self.path, format!("bad base64 in auth entry: {e}")))?;
            let text = String::from_utf8(raw)
                .map_err(|_| bad(&self.path, "auth entry is not UTF-8".into()))?;
            let (u, p) = text
                .split_once(':')
                .ok_or_else(|| bad(&self.path, "auth entry is not user:password".into()))?;
            return Ok(Some(basic(u, p)));
        }
        match (field("username"), field("password")) {
            (Some(u), Some(p)) => Ok(Some(basic(u, p))),
            _ => Ok(None),
        }
    }

    /// Stores credentials for `registry` (through its helper if it has one) and saves the file.
    pub fn store(&mut self, registry: &str, username: &str, password: &str) -> Result<()> {
        if let Some(helper) = self.helper(registry) {
            let input = serde_json::json!({
                "ServerURL": auth_key(registry), "Username": username, "Secret": password,
            });
            run_helper(&helper, "store", registry, &input.to_string())?;
            return Ok(());
        }
        let auth =
            base64::engine::general_purpose::STANDARD.encode(format!("{username}:{password}"));
        let auths = self
            .doc
            .entry("auths")
            .or_insert_with(|| Value::Object(Map::new()));
        if !auths.is_object() {
            *auths = Value::Object(Map::new());
        }
        if let Value::Object(m) = auths {
            m.insert(auth_key(registry), serde_json::json!({ "auth": auth }));
        }
        self.save()
    }

    /// Removes credentials for `registry`; false when there were none in the file.
    pub fn erase(&mut self, registry: &str) -> Result<bool> {
        if let Some(helper) = self.helper(registry) {
            run_helper(&helper, "erase", registry, &auth_key(registry))?;
            return Ok(true);
        }
        let key = auth_key(registry);
        let removed = match self.doc.get_mut("auths").and_then(Value::as_object_mut) {
            Some(m) => {
                let keys: Vec<String> = m
                    .keys()
                    .filter(|k| **k == key || key_host(k) == key_host(&key))
                    .cloned()
                    .collect();
                keys.iter().filter(|k| m.remove(*k).is_some()).count() > 0
            }
            None => false,
        };
        if removed {
            self.save()?;
        }
        Ok(removed)
    }

    /// Writes the file atomically, readable by its owner only.
    fn save(&self) -> Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let dir = self.path.parent().unwrap_or(Path::new("."));
        std::fs::create_dir_all(dir).map_err(RegistryError::io(dir))?;
        let tmp = dir.join(format!(".config.json.tmp-{}", std::process::id()));
        let bytes = serde_json::to_vec_pretty(&Value::Object(self.doc.clone()))
            .map_err(|e| bad(&self.path, e.to_string()))?;
        let write = || -> std::io::Result<()> {
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_all()?;
            std::fs::rename(&tmp, &self.path)
        };
        write().map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            RegistryError::io(&self.path)(e)
        })
    }
}

fn basic(u: &str, p: &str) -> Credentials {
    Credentials::Basic {
        username: u.to_string(),
        password: p.to_string(),
    }
}

fn bad(path: &Path, reason: String) -> RegistryError {
    RegistryError::Credentials {
        path: path.to_path_buf(),
        reason,
    }
}

/// `docker-credential-<helper> get`: `None` when the helper knows nothing of `registry`.
fn helper_get(helper: &str, registry: &str) -> Result<Option<Credentials>> {
    let out = match run_helper(helper, "get", registry, &auth_key(registry)) {
        Ok(out) => out,
        Err(RegistryError::CredentialHelper { detail, .. })
            if detail.contains("credentials not found") =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e),
    };
    let v: Value = serde_json::from_str(&out).map_err(|e| RegistryError::CredentialHelper {
        helper: helper.into(),
        action: "get",
        registry: registry.into(),
        detail: format!("bad JSON reply: {e}"),
    })?;
    let user = v.get("Username").and_then(Value::as_str).unwrap_or("");
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or("");
    Ok(match (user, secret) {
        (_, "") => None,
        ("<token>", s) => Some(Credentials::IdentityToken(s.to_string())),
        (u, s) => Some(basic(u, s)),
    })
}

fn run_helper(helper: &str, action: &'static str, registry: &str, input: &str) -> Result<String> {
    let fail = |detail: String| RegistryError::CredentialHelper {
        helper: helper.into(),
        action,
        registry: registry.into(),
        detail,
    };
    let mut child = Command::new(format!("docker-credential-{helper}"))
        .arg(action)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(input.as_bytes())
            .map_err(|e| fail(e.to_string()))?;
    }
    let out = child.wait_with_output().map_err(|e| fail(e.to_string()))?;
    let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();
        return Err(fail(if stdout.is_empty() { stderr } else { stdout }));
    }
    Ok(stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_auths_and_keeps_other_fields() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"auths":{"https://old.example/v1/":{"auth":"dTpw"}},"psFormat":"x"}"#,
        )
        .expect("write");
        let mut cfg = DockerConfig::load(&path).expect("load");
        assert_eq!(cfg.get("old.example").expect("get"), Some(basic("u", "p")));
        cfg.store("127.0.0.1:5000", "alice", "s3:cret")
            .expect("store");
        cfg.store("docker.io", "bob", "pw").expect("store");
        let cfg = DockerConfig::load(&path).expect("reload");
        assert_eq!(
            cfg.get("127.0.0.1:5000").expect("get"),
            Some(basic("alice", "s3:cret"))
        );
        assert_eq!(
            cfg.get("index.docker.io").expect("get"),
            Some(basic("bob", "pw"))
        );
        assert!(std::fs::read_to_string(&path)
            .expect("read")
            .contains("psFormat"));
        let mut cfg = cfg;
        assert!(cfg.erase("127.0.0.1:5000").expect("erase"));
        assert!(!cfg.erase("127.0.0.1:5000").expect("erase"));
        assert_eq!(cfg.get("127.0.0.1:5000").expect("get"), None);
    }

    #[test]
    fn missing_helper_is_a_clear_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("config.json");
        std::fs::write(
            &path,
            r#"{"credHelpers":{"reg.example":"berth-test-nonexistent"}}"#,
        )
        .expect("write");
        let cfg = DockerConfig::load(&path).expect("load");
        let err = cfg.get("reg.example").expect_err("no helper binary");
        assert!(
            err.to_string()
                .contains("docker-credential-berth-test-nonexistent"),
            "{err}"
        );
        assert_eq!(cfg.get("other.example").expect("no creds"), None);
    }
}
