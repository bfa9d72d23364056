//! The HTTP side: endpoints (mirrors, then the registry), TLS per host, auth on 401,
//! and bounded retries with backoff for dropped connections, 5xx and 429.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ureq::http::{self, Response};
use ureq::tls::{Certificate, ClientCert, PemItem, RootCerts, TlsConfig};
use ureq::{Agent, Body};
use url::Url;

use super::auth::{self, Challenge, HostAuth};
use super::config::{is_loopback, HostConfig, HostsConfig};
use super::credentials::{Credentials, DockerConfig};
use super::error::{RegistryError, Result};

/// Attempts per request for transient failures (connection errors, 5xx, 429).
pub const MAX_ATTEMPTS: u32 = 4;
const BACKOFF_START: Duration = Duration::from_millis(250);
const MAX_RETRY_AFTER: Duration = Duration::from_secs(10);

/// How to reach registries.
#[derive(Debug, Clone, Default)]
pub struct ClientOptions {
    /// Per-host settings (`hosts.toml`).
    pub hosts: HostsConfig,
    /// Force plain HTTP for the registry (`--plain-http`).
    pub plain_http: bool,
    /// Where credentials come from (None: anonymous only).
    pub docker_config: Option<DockerConfig>,
    /// Credentials that override the docker config (as `berth login` checks them).
    pub credentials: Option<Credentials>,
}

/// One place requests go: a mirror or the registry itself.
#[derive(Debug)]
pub(crate) struct Endpoint {
    /// `scheme://host[:port][/prefix]`, no trailing slash.
    pub base: String,
    /// `host[:port]`, the key for auth state and credentials.
    pub host: String,
    agent: Agent,
    creds: Option<Credentials>,
}

/// A registry client, cheap to clone and share between threads.
#[derive(Debug, Clone)]
pub struct Client {
    pub(crate) inner: Arc<Inner>,
}

#[derive(Debug)]
pub(crate) struct Inner {
    pub registry: String,
    /// Mirrors in order, then the registry (always last).
    pub endpoints: Vec<Endpoint>,
    auth: Mutex<HashMap<String, HostAuth>>,
}

/// One request to send (replayable: bodies are borrowed bytes).
pub(crate) struct Req<'a> {
    pub method: &'static str,
    pub url: String,
    pub headers: Vec<(&'static str, String)>,
    pub body: Option<&'a [u8]>,
    /// Token scope, e.g. `repository:a/b:pull`.
    pub scope: String,
    /// Send no credentials (the URL is on another host).
    pub anonymous: bool,
}

impl Client {
    /// A client for `registry` (a reference's host, e.g. `docker.io`, `127.0.0.1:5000`).
    pub fn new(registry: &str, opts: &ClientOptions) -> Result<Client> {
        let mut endpoints = Vec::new();
        for mirror in &opts.hosts.host(registry).mirrors {
            let url = Url::parse(mirror).map_err(|source| RegistryError::Url {
                url: mirror.clone(),
                source,
            })?;
            let host = authority(&url);
            let cfg = opts.hosts.host(&host);
            let creds = lookup(opts, &host)?;
            let base = mirror
                .trim_end_matches('/')
                .trim_end_matches("/v2")
                .to_string();
            endpoints.push(Endpoint {
                base,
                agent: agent(&cfg)?,
                host,
                creds,
            });
        }
        let cfg = opts.hosts.host(registry);
        let plain = opts.plain_http || cfg.plain_http.unwrap_or_else(|| is_loopback(registry));
        let api_host = match registry {
            "docker.io" | "index.docker.io" => "registry-1.docker.io",
            other => other,
        };
        let scheme = if plain { "http" } else { "https" };
        endpoints.push(Endpoint {
            base: format!("{scheme}://{api_host}"),
            host: api_host.to_string(),
            agent: agent(&cfg)?,
            creds: match &opts.credentials {
                Some(c) => Some(c.clone()),
                None => lookup(opts, registry)?,
            },
        });
        Ok(Client {
            inner: Arc::new(Inner {
                registry: registry.to_string(),
                endpoints,
                auth: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// The registry this client talks to.
    pub fn registry(&self) -> &str {
        &self.inner.registry
    }

    /// The registry's own endpoint index.
    pub(crate) fn upstream(&self) -> usize {
        self.inner.endpoints.len() - 1
    }

    /// `<base>/v2/<repo>/<tail>` on endpoint `ep`.
    pub(crate) fn url(&self, ep: usize, repo: &str, tail: &str) -> String {
        format!("{}/v2/{repo}/{tail}", self.inner.endpoints[ep].base)
    }

    /// Resolves a `Location` header against the URL it answered.
    pub(crate) fn join(&self, base: &str, location: &str) -> Result<String> {
        let parsed = Url::parse(base).and_then(|b| b.join(location));
        parsed
            .map(String::from)
            .map_err(|source| RegistryError::Url {
                url: location.to_string(),
                source,
            })
    }

    /// Checks the registry answers `/v2/` with the credentials at hand (for `login`).
    pub fn check(&self) -> Result<()> {
        let ep = self.upstream();
        let url = format!("{}/v2/", self.inner.endpoints[ep].base);
        let resp = self.send(
            ep,
            &Req {
                method: "GET",
                url: url.clone(),
                headers: vec![],
                body: None,
                scope: String::new(),
                anonymous: false,
            },
        )?;
        match resp.status().as_u16() {
            200..=299 => Ok(()),
            _ => Err(self.status_error("GET", &url, "", resp)),
        }
    }

    /// Sends `req` to endpoint `ep`, authenticating on 401 and retrying transient failures.
    pub(crate) fn send(&self, ep: usize, req: &Req<'_>) -> Result<Response<Body>> {
        let mut delay = BACKOFF_START;
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            match self.send_authed(ep, req) {
                Ok(resp) if !last && is_retryable(resp.status()) => {
                    let wait = retry_after(&resp).unwrap_or(delay);
                    tracing::debug!(url = %req.url, status = resp.status().as_u16(), "retrying");
                    std::thread::sleep(wait);
                }
                Err(RegistryError::Connect { ref cause, .. })
                    if !last && is_transient_transport(cause) =>
                {
                    tracing::debug!(url = %req.url, "connection failed, retrying");
                    std::thread::sleep(delay);
                }
                other => return other,
            }
            delay *= 2;
        }
        unreachable!("the last attempt always returns")
    }

    /// One attempt: with the known auth header; on 401 learn the challenge and try once more.
    fn send_authed(&self, ep: usize, req: &Req<'_>) -> Result<Response<Body>> {
        let endpoint = &self.inner.endpoints[ep];
        if req.anonymous {
            return self.send_once(endpoint, req, None);
        }
        let before = self.auth_header(ep, &req.scope);
        let resp = self.send_once(endpoint, req, before.as_deref())?;
        if resp.status() != http::StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let Some(header) = resp
            .headers()
            .get("www-authenticate")
            .and_then(|v| v.to_str().ok())
        else {
            return Ok(resp);
        };
        let challenge =
            auth::parse_challenge(header).ok_or_else(|| RegistryError::BadChallenge {
                registry: self.inner.registry.clone(),
                challenge: header.to_string(),
            })?;
        if let Challenge::Bearer { scope, .. } = &challenge {
            let scope = match req.scope.as_str() {
                "" => scope.clone().unwrap_or_default(),
                s => s.to_string(),
            };
            let scopes: Vec<&str> = scope.split(' ').collect();
            let fetched = auth::fetch_token(
                &endpoint.agent,
                &self.inner.registry,
                &challenge,
                &scopes,
                endpoint.creds.as_ref(),
            );
            let (token, ttl) = fetched.map_err(|e| self.token_error(ep, &scope, e))?;
            self.with_auth(ep, |a| a.put_token(&req.scope, token, ttl));
        }
        self.with_auth(ep, |a| a.challenge = Some(challenge));
        let after = self.auth_header(ep, &req.scope);
        if after.is_none() || after == before {
            return Ok(resp); // nothing new to answer the challenge with
        }
        self.send_once(endpoint, req, after.as_deref())
    }

    /// A token service's 401/403 means the same as the registry's.
    fn token_error(&self, ep: usize, scope: &str, e: RegistryError) -> RegistryError {
        let RegistryError::Token { status, detail, .. } = &e else {
            return e;
        };
        let repository = scope.split(':').nth(1).unwrap_or("");
        self.auth_error(ep, *status, repository, detail)
            .unwrap_or(e)
    }

    /// A 401 or 403 as the user should read it: missing or wrong credentials, or access
    /// denied. None for any other status.
    fn auth_error(
        &self,
        ep: usize,
        status: u16,
        repository: &str,
        detail: &str,
    ) -> Option<RegistryError> {
        let (registry, repository) = (self.inner.registry.clone(), repository.to_string());
        Some(match status {
            401 if self.has_creds(ep) => RegistryError::BadCredentials {
                registry,
                repository,
                detail: detail.to_string(),
            },
            401 => RegistryError::AuthRequired {
                registry,
                repository,
            },
            403 => RegistryError::Denied {
                registry,
                repository,
                detail: detail.to_string(),
            },
            _ => return None,
        })
    }

    fn auth_header(&self, ep: usize, scope: &str) -> Option<String> {
        let creds = self.inner.endpoints[ep].creds.clone();
        self.with_auth(ep, |a| a.header(creds.as_ref(), scope))
    }

    fn with_auth<T>(&self, ep: usize, f: impl FnOnce(&mut HostAuth) -> T) -> T {
        let mut map = self.inner.auth.lock().unwrap_or_else(|p| p.into_inner());
        f(map
            .entry(self.inner.endpoints[ep].host.clone())
            .or_default())
    }

    fn send_once(
        &self,
        ep: &Endpoint,
        req: &Req<'_>,
        auth: Option<&str>,
    ) -> Result<Response<Body>> {
        let mut b = http::Request::builder().method(req.method).uri(&req.url);
        for (k, v) in &req.headers {
            b = b.header(*k, v);
        }
        if let Some(a) = auth {
            b = b.header("Authorization", a);
        }
        let connect = |source: ureq::Error| RegistryError::Connect {
            registry: self.inner.registry.clone(),
            url: req.url.clone(),
            cause: Box::new(source),
        };
        match req.body {
            Some(body) => b
                .body(body)
                .map_err(|e| connect(e.into()))
                .and_then(|r| ep.agent.run(r).map_err(connect)),
            None => b
                .body(())
                .map_err(|e| connect(e.into()))
                .and_then(|r| ep.agent.run(r).map_err(connect)),
        }
    }

    /// Whether credentials are configured for endpoint `ep`.
    fn has_creds(&self, ep: usize) -> bool {
        self.inner.endpoints[ep].creds.is_some()
    }

    /// Turns an unexpected response into a typed error (401, 403, or the status).
    pub(crate) fn status_error(
        &self,
        method: &str,
        url: &str,
        repository: &str,
        mut resp: Response<Body>,
    ) -> RegistryError {
        let status = resp.status().as_u16();
        let body = resp
            .body_mut()
            .with_config()
            .limit(64 << 10)
            .read_to_vec()
            .unwrap_or_default();
        let detail = error_detail(&body);
        let ep = self
            .inner
            .endpoints
            .iter()
            .position(|e| url.starts_with(&e.base))
            .unwrap_or(self.upstream());
        self.auth_error(ep, status, repository, &detail)
            .unwrap_or_else(|| RegistryError::Status {
                registry: self.inner.registry.clone(),
                method: method.into(),
                url: url.into(),
                status,
                detail,
            })
    }
}

/// `: CODE message; CODE2 message2` from a distribution error body, or "".
pub(crate) fn error_detail(body: &[u8]) -> String {
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let Ok(e) = serde_json::from_slice::<Errors>(body) else {
        let text = String::from_utf8_lossy(body);
        let line = text.lines().next().unwrap_or("").trim();
        return if line.is_empty() || line.len() > 200 {
            String::new()
        } else {
            format!(": {line}")
        };
    };
    let parts: Vec<String> = e
        .errors
        .iter()
        .map(|i| {
            format!(
                "{} {}",
                i.code.as_deref().unwrap_or(""),
                i.message.as_deref().unwrap_or("")
            )
            .trim()
            .to_string()
        })
        .collect();
    if parts.is_empty() {
        String::new()
    } else {
        format!(": {}", parts.join("; "))
    }
}

fn is_retryable(s: http::StatusCode) -> bool {
    s.is_server_error() || s == http::StatusCode::TOO_MANY_REQUESTS
}

fn is_transient_transport(e: &ureq::Error) -> bool {
    matches!(
        e,
        ureq::Error::Io(_) | ureq::Error::ConnectionFailed | ureq::Error::Timeout(_)
    )
}

fn retry_after(resp: &Response<Body>) -> Option<Duration> {
    let secs: u64 = resp
        .headers()
        .get("retry-after")?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(secs).min(MAX_RETRY_AFTER))
}

fn authority(url: &Url) -> String {
    match (url.host_str(), url.port()) {
        (Some(h), Some(p)) => format!("{h}:{p}"),
        (Some(h), None) => h.to_string(),
        _ => String::new(),
    }
}

fn lookup(opts: &ClientOptions, host: &str) -> Result<Option<Credentials>> {
    match &opts.docker_config {
        Some(cfg) => cfg.get(host),
        None => Ok(None),
    }
}

/// An HTTP agent with `cfg`'s TLS settings; statuses are values, redirects drop credentials.
fn agent(cfg: &HostConfig) -> Result<Agent> {
    let mut tls = TlsConfig::builder().disable_verification(cfg.skip_verify);
    // A host's CA file replaces the public roots for that host (a private registry).
    if let Some(ca) = &cfg.ca {
        let certs = read_certs(ca)?;
        if certs.is_empty() {
            return Err(tls_err(ca, "no certificate in file"));
        }
        tls = tls.root_certs(RootCerts::new_with_certs(&certs));
    }
    if let (Some(cert), Some(key)) = (&cfg.client_cert, &cfg.client_key) {
        let chain = read_certs(cert)?;
        let bytes = std::fs::read(key).map_err(RegistryError::io(key))?;
        let key_pem =
            ureq::tls::PrivateKey::from_pem(&bytes).map_err(|e| tls_err(key, &e.to_string()))?;
        tls = tls.client_cert(Some(ClientCert::new_with_certs(&chain, key_pem)));
    }
    let config = Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(10)
        .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(15)))
        .timeout_recv_response(Some(Duration::from_secs(120)))
        .timeout_recv_body(None)
        .timeout_per_read(Some(Duration::from_secs(120)))
        .tls_config(tls.build())
        .build();
    Ok(config.new_agent())
}

fn read_certs(path: &std::path::Path) -> Result<Vec<Certificate<'static>>> {
    let bytes = std::fs::read(path).map_err(RegistryError::io(path))?;
    let mut out = Vec::new();
    for item in ureq::tls::parse_pem(&bytes) {
        match item.map_err(|e| tls_err(path, &e.to_string()))? {
            PemItem::Certificate(c) => out.push(c),
            _ => continue,
        }
    }
    Ok(out)
}

fn tls_err(path: &std::path::Path, reason: &str) -> RegistryError {
    RegistryError::Tls {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}
