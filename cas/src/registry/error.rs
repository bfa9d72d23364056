//! Registry errors. Each names the registry (and the repository, tag or digest) so a
//! user can tell "no such tag" from "not allowed" from "unreachable".

use std::path::PathBuf;

/// Result alias for registry operations.
pub type Result<T, E = RegistryError> = std::result::Result<T, E>;

/// Everything that can go wrong talking to a registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The content store failed (ingest, publish, metadata, digest checks).
    #[error(transparent)]
    Store(#[from] crate::error::Error),
    /// 401 and no credentials were available.
    #[error("registry {registry} requires authentication for {repository} (401 unauthorized); run `berth login {registry}`")]
    AuthRequired {
        /// Registry host.
        registry: String,
        /// Repository asked for.
        repository: String,
    },
    /// 401 although credentials were sent.
    #[error(
        "registry {registry} rejected the credentials for {repository} (401 unauthorized){detail}"
    )]
    BadCredentials {
        /// Registry host.
        registry: String,
        /// Repository asked for.
        repository: String,
        /// The registry's message, prefixed with ": " when present.
        detail: String,
    },
    /// 403: authenticated but not allowed.
    #[error("registry {registry} denied access to {repository} (403 forbidden){detail}")]
    Denied {
        /// Registry host.
        registry: String,
        /// Repository asked for.
        repository: String,
        /// The registry's message, prefixed with ": " when present.
        detail: String,
    },
    /// 404 for a manifest: unknown tag or digest (or repository).
    #[error("registry {registry} has no manifest {reference} (unknown tag, digest or repository)")]
    ManifestUnknown {
        /// Registry host.
        registry: String,
        /// `repository:tag` or `repository@digest`.
        reference: String,
    },
    /// 404 for a blob a manifest names.
    #[error("blob {digest} of {repository} not found in registry {registry}")]
    BlobUnknown {
        /// Registry host.
        registry: String,
        /// Repository.
        repository: String,
        /// The blob.
        digest: String,
    },
    /// Any other unexpected HTTP status.
    #[error("registry {registry}: {method} {url} returned {status}{detail}")]
    Status {
        /// Registry host.
        registry: String,
        /// HTTP method.
        method: String,
        /// URL requested.
        url: String,
        /// HTTP status code.
        status: u16,
        /// The registry's message, prefixed with ": " when present.
        detail: String,
    },
    /// The registry could not be reached or the connection broke (after retries).
    #[error("cannot reach registry {registry} ({url}): {cause}")]
    Connect {
        /// Registry host.
        registry: String,
        /// URL requested.
        url: String,
        /// Transport error (in the message, not the source chain, so it prints once).
        cause: Box<ureq::Error>,
    },
    /// A body stream broke off and could not be resumed within the retry bound.
    #[error("downloading {digest} from registry {registry}: {cause}")]
    Transfer {
        /// Registry host.
        registry: String,
        /// The blob.
        digest: String,
        /// What broke (in the message only).
        cause: std::io::Error,
    },
    /// The registry's answer breaks the distribution spec.
    #[error("registry {registry}: {reason}")]
    Protocol {
        /// Registry host.
        registry: String,
        /// What was wrong.
        reason: String,
    },
    /// A `WWW-Authenticate` challenge berth cannot follow.
    #[error("registry {registry}: unsupported authentication challenge {challenge:?}")]
    BadChallenge {
        /// Registry host.
        registry: String,
        /// The header.
        challenge: String,
    },
    /// The token endpoint refused or failed.
    #[error("token service {realm} for registry {registry} returned {status}{detail}")]
    Token {
        /// Registry host.
        registry: String,
        /// Token endpoint URL.
        realm: String,
        /// HTTP status.
        status: u16,
        /// Its message, prefixed with ": " when present.
        detail: String,
    },
    /// A configuration or credentials file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The hosts configuration does not parse.
    #[error("{path}: {source}")]
    HostsConfig {
        /// The file.
        path: PathBuf,
        /// The parser's complaint.
        source: Box<toml::de::Error>,
    },
    /// A TLS file (CA, client certificate or key) is unusable.
    #[error("{path}: {reason}")]
    Tls {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The docker config file is not valid.
    #[error("{path}: {reason}")]
    Credentials {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A `docker-credential-*` helper failed.
    #[error("credential helper docker-credential-{helper} ({action} {registry}): {detail}")]
    CredentialHelper {
        /// Helper suffix.
        helper: String,
        /// get, store or erase.
        action: &'static str,
        /// Registry host.
        registry: String,
        /// What it said.
        detail: String,
    },
    /// A URL (registry, mirror, Location header) is malformed.
    #[error("invalid URL {url:?}: {source}")]
    Url {
        /// The text.
        url: String,
        /// The parser's complaint.
        source: url::ParseError,
    },
    /// The pull or push was stopped because another part of it failed.
    #[error("cancelled")]
    Cancelled,
}

impl RegistryError {
    /// Wraps an I/O error with the file it concerns.
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> RegistryError {
        let path = path.into();
        move |source| RegistryError::Io { path, source }
    }

    /// Whether trying the next mirror (or again later) might help.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RegistryError::Connect { .. } | RegistryError::Transfer { .. }
        ) || matches!(self, RegistryError::Status { status, .. } if *status >= 500 || *status == 429)
    }
}
