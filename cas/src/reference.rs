//! Docker-style image references: `alpine` → `docker.io/library/alpine:latest`.
//!
//! The grammar and normalisation follow distribution/reference (as containerd and
//! docker use it): a first path part is a registry host iff it is `localhost`,
//! contains `.` or `:`, or has an uppercase letter; `index.docker.io` is `docker.io`;
//! one-part Docker Hub paths get `library/`; no tag and no digest means `:latest`.

use std::fmt;
use std::str::FromStr;

use oci_spec::image::Digest;

/// The default registry for names without a host.
pub const DOCKER_HUB: &str = "docker.io";
const MAX_NAME_LEN: usize = 255;
const MAX_TAG_LEN: usize = 128;

/// Why a string is not an image reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// Empty input.
    #[error("empty image reference")]
    Empty,
    /// Repository path with uppercase letters.
    #[error("invalid reference {0:?}: repository name must be lowercase")]
    Uppercase(String),
    /// A path component outside `[a-z0-9]+` joined by separators.
    #[error("invalid reference {reference:?}: bad repository path component {component:?}")]
    BadComponent {
        /// The whole input.
        reference: String,
        /// The offending part.
        component: String,
    },
    /// A tag outside `[\w][\w.-]{0,127}`.
    #[error("invalid reference {reference:?}: bad tag {tag:?}")]
    BadTag {
        /// The whole input.
        reference: String,
        /// The offending tag.
        tag: String,
    },
    /// A malformed digest after `@`.
    #[error("invalid reference {reference:?}: bad digest {digest:?}")]
    BadDigest {
        /// The whole input.
        reference: String,
        /// The offending digest.
        digest: String,
    },
    /// A host part with characters a host cannot have.
    #[error("invalid reference {reference:?}: bad registry host {host:?}")]
    BadHost {
        /// The whole input.
        reference: String,
        /// The offending host.
        host: String,
    },
    /// Name longer than 255 bytes.
    #[error("invalid reference {0:?}: name longer than 255 characters")]
    TooLong(String),
}

/// A normalised image reference: `registry/path[:tag][@digest]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<Digest>,
}

impl Reference {
    /// Parses and normalises `s`.
    pub fn parse(s: &str) -> Result<Self, ReferenceError> {
        if s.is_empty() {
            return Err(ReferenceError::Empty);
        }
        let (name_tag, digest) = match s.split_once('@') {
            Some((n, d)) => (n, Some(parse_digest(s, d)?)),
            None => (s, None),
        };
        let (name, tag) = split_tag(name_tag);
        let (registry, repository) = split_registry(s, name)?;
        if registry.len() + 1 + repository.len() > MAX_NAME_LEN {
            return Err(ReferenceError::TooLong(s.to_string()));
        }
        if let Some(t) = tag {
            validate_tag(s, t)?;
        }
        // A digest pins the content; a tag beside it says nothing more.
        let tag = match (&digest, tag) {
            (Some(_), _) => None,
            (None, Some(t)) => Some(t.to_string()),
            (None, None) => Some("latest".to_string()),
        };
        Ok(Reference {
            registry,
            repository,
            tag,
            digest,
        })
    }

    /// Registry host (and port): `docker.io`, `localhost:5000`.
    pub fn registry(&self) -> &str {
        &self.registry
    }

    /// Repository path inside the registry: `library/alpine`.
    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// The tag, if the reference is not pinned by digest.
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }

    /// The digest, if pinned.
    pub fn digest(&self) -> Option<&Digest> {
        self.digest.as_ref()
    }

    /// `registry/repository` without tag or digest.
    pub fn name(&self) -> String {
        format!("{}/{}", self.registry, self.repository)
    }

    /// What a registry's manifest endpoint takes: the digest if pinned, else the tag.
    pub fn tag_or_digest(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_string(),
        }
    }

    /// The same repository with another tag.
    pub fn with_tag(&self, tag: &str) -> Result<Self, ReferenceError> {
        Reference::parse(&format!("{}:{tag}", self.name()))
    }

    /// The short form people type: `alpine:latest` for Docker Hub library images.
    pub fn familiar(&self) -> String {
        let full = self.to_string();
        let short = full.strip_prefix("docker.io/").unwrap_or(&full);
        short.strip_prefix("library/").unwrap_or(short).to_string()
    }
}

impl fmt::Display for Reference {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl FromStr for Reference {
    type Err = ReferenceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Reference::parse(s)
    }
}

fn parse_digest(whole: &str, d: &str) -> Result<Digest, ReferenceError> {
    let bad = || ReferenceError::BadDigest {
        reference: whole.into(),
        digest: d.into(),
    };
    let (alg, hex) = d.split_once(':').ok_or_else(bad)?;
    if alg.is_empty() || hex.len() < 32 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Digest::from_str(d).map_err(|_| bad())
}

/// A tag is whatever follows the last `:` after the last `/`.
fn split_tag(s: &str) -> (&str, Option<&str>) {
    let slash = s.rfind('/').map_or(0, |i| i + 1);
    match s[slash..].rfind(':') {
        Some(i) => (&s[..slash + i], Some(&s[slash + i + 1..])),
        None => (s, None),
    }
}

fn split_registry(whole: &str, name: &str) -> Result<(String, String), ReferenceError> {
    let (registry, path) = match name.split_once('/') {
        Some((first, rest)) if is_host(first) => (first.to_string(), rest.to_string()),
        _ => (DOCKER_HUB.to_string(), name.to_string()),
    };
    validate_host(whole, &registry)?;
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_string()
    } else {
        registry
    };
    if path.bytes().any(|b| b.is_ascii_uppercase()) {
        return Err(ReferenceError::Uppercase(whole.to_string()));
    }
    for component in path.split('/') {
        if !valid_component(component) {
            return Err(ReferenceError::BadComponent {
                reference: whole.into(),
                component: component.into(),
            });
        }
    }
    let path = if registry == DOCKER_HUB && !path.contains('/') {
        format!("library/{path}")
    } else {
        path
    };
    Ok((registry, path))
}

fn is_host(first: &str) -> bool {
    first == "localhost"
        || first.contains('.')
        || first.contains(':')
        || first.bytes().any(|b| b.is_ascii_uppercase())
}

fn validate_host(whole: &str, host: &str) -> Result<(), ReferenceError> {
    let ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::BadHost {
            reference: whole.into(),
            host: host.into(),
        })
    }
}

/// `[a-z0-9]+` joined by `.`, `_`, `__` or runs of `-`.
fn valid_component(c: &str) -> bool {
    let b = c.as_bytes();
    if b.is_empty() || !is_alnum(b[0]) || !is_alnum(b[b.len() - 1]) {
        return false;
    }
    let mut i = 0;
    while i < b.len() {
        if is_alnum(b[i]) {
            i += 1;
            continue;
        }
        let start = i;
        while i < b.len() && !is_alnum(b[i]) {
            i += 1;
        }
        let sep = &c[start..i];
        if !(sep == "." || sep == "_" || sep == "__" || sep.bytes().all(|s| s == b'-')) {
            return false;
        }
    }
    true
}

fn is_alnum(b: u8) -> bool {
    b.is_ascii_lowercase() || b.is_ascii_digit()
}

fn validate_tag(whole: &str, tag: &str) -> Result<(), ReferenceError> {
    let b = tag.as_bytes();
    let word = |c: u8| c.is_ascii_alphanumeric() || c == b'_';
    let ok = !b.is_empty()
        && b.len() <= MAX_TAG_LEN
        && word(b[0])
        && b.iter().all(|&c| word(c) || c == b'.' || c == b'-');
    if ok {
        Ok(())
    } else {
        Err(ReferenceError::BadTag {
            reference: whole.into(),
            tag: tag.into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn norm(s: &str) -> String {
        Reference::parse(s).expect(s).to_string()
    }

    #[test]
    fn normalises_like_docker() {
        assert_eq!(norm("alpine"), "docker.io/library/alpine:latest");
        assert_eq!(norm("alpine:3.19"), "docker.io/library/alpine:3.19");
        assert_eq!(norm("user/app"), "docker.io/user/app:latest");
        assert_eq!(norm("index.docker.io/foo"), "docker.io/library/foo:latest");
        assert_eq!(norm("localhost/app"), "localhost/app:latest");
        assert_eq!(norm("localhost:5000/a/b:v1"), "localhost:5000/a/b:v1");
        assert_eq!(norm("127.0.0.1:5000/app"), "127.0.0.1:5000/app:latest");
        assert_eq!(
            norm("quay.io/x/y_z__w.v-1---2"),
            "quay.io/x/y_z__w.v-1---2:latest"
        );
    }

    #[test]
    fn digest_pins_and_drops_tag() {
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("busybox:1@{d}")).expect("valid");
        assert_eq!(r.to_string(), format!("docker.io/library/busybox@{d}"));
        assert_eq!(r.tag_or_digest(), d);
        assert_eq!(r.tag(), None);
    }

    #[test]
    fn rejects_bad_input() {
        assert!(matches!(Reference::parse(""), Err(ReferenceError::Empty)));
        assert!(matches!(
            Reference::parse("Alpine"),
            Err(ReferenceError::Uppercase(_))
        ));
        assert!(matches!(
            Reference::parse("a//b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        assert!(matches!(
            Reference::parse("a:-x"),
            Err(ReferenceError::BadTag { .. })
        ));
        assert!(matches!(
            Reference::parse("a@sha256:xyz"),
            Err(ReferenceError::BadDigest { .. })
        ));
        assert!(matches!(
            Reference::parse("a_/b"),
            Err(ReferenceError::BadComponent { .. })
        ));
        let long = format!("a/{}", "b".repeat(300));
        assert!(matches!(
            Reference::parse(&long),
            Err(ReferenceError::TooLong(_))
        ));
    }

    #[test]
    fn familiar_names() {
        assert_eq!(
            Reference::parse("alpine").expect("v").familiar(),
            "alpine:latest"
        );
        assert_eq!(
            Reference::parse("localhost:5000/x").expect("v").familiar(),
            "localhost:5000/x:latest"
        );
    }
}
