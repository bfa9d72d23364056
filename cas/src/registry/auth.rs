//! Authentication: `WWW-Authenticate` challenges, HTTP basic, and the bearer-token
//! flow (GET the realm with `service` and `scope`, basic credentials if any; or POST
//! an OAuth2 refresh grant for identity tokens). Tokens are cached per host and scope.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use base64::Engine as _;

use super::credentials::Credentials;
use super::error::{RegistryError, Result};

/// What a registry asked for in its `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Challenge {
    /// HTTP basic.
    Basic,
    /// A token from `realm`.
    Bearer {
        /// Token endpoint URL.
        realm: String,
        /// `service` parameter to pass on.
        service: Option<String>,
        /// `scope` the registry suggested (used when the caller has none).
        scope: Option<String>,
    },
}

/// Parses a `WWW-Authenticate` header (one challenge; the first is used).
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
        }),
        _ => None,
    }
}

/// `k="v, with comma",k2=v2` → map (keys lowercased).
fn parse_params(s: &str) -> HashMap<String, String> {
    let mut out = HashMap::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            return out;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|c| *c != ',').collect();
        }
        out.insert(key.trim().to_ascii_lowercase(), value.trim().to_string());
    }
}

/// `Authorization` value for basic credentials.
pub fn basic_header(username: &str, password: &str) -> String {
    let raw = format!("{username}:{password}");
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// A cached bearer token.
#[derive(Debug, Clone)]
struct Token {
    value: String,
    expires: Instant,
}

/// What is known about one host's authentication.
#[derive(Debug, Default)]
pub struct HostAuth {
    /// The challenge last seen (None until the host answered 401).
    pub challenge: Option<Challenge>,
    tokens: HashMap<String, Token>,
}

impl HostAuth {
    /// The header to send for `scope`, if one is known and fresh.
    pub fn header(&self, creds: Option<&Credentials>, scope: &str) -> Option<String> {
        match (&self.challenge, creds) {
            (Some(Challenge::Basic), Some(Credentials::Basic { username, password })) => {
                Some(basic_header(username, password))
            }
            (Some(Challenge::Bearer { .. }), _) => self
                .tokens
                .get(scope)
                .filter(|t| t.expires > Instant::now())
                .map(|t| format!("Bearer {}", t.value)),
            _ => None,
        }
    }

    /// Remembers a token for `scope`.
    pub fn put_token(&mut self, scope: &str, value: String, ttl: Duration) {
        // Renew a little early so a token never expires in flight.
        let ttl = ttl
            .saturating_sub(Duration::from_secs(5))
            .max(Duration::from_secs(1));
        self.tokens.insert(
            scope.to_string(),
            Token {
                value,
                expires: Instant::now() + ttl,
            },
        );
    }
}

/// The token service's reply.
#[derive(Debug, serde::Deserialize)]
struct TokenReply {
    token: Option<String>,
    access_token: Option<String>,
    expires_in: Option<u64>,
}

/// Asks `realm` for a token covering `scopes`; returns it and its lifetime.
pub fn fetch_token(
    agent: &ureq::Agent,
    registry: &str,
    challenge: &Challenge,
    scopes: &[&str],
    creds: Option<&Credentials>,
) -> Result<(String, Duration)> {
    let Challenge::Bearer { realm, service, .. } = challenge else {
        return Err(RegistryError::BadChallenge {
            registry: registry.into(),
            challenge: "Basic".into(),
        });
    };
    let mut url = url::Url::parse(realm).map_err(|source| RegistryError::Url {
        url: realm.clone(),
        source,
    })?;
    let response = match creds {
        Some(Credentials::IdentityToken(refresh)) => {
            let mut form = vec![
                ("grant_type", "refresh_token".to_string()),
                ("refresh_token", refresh.clone()),
                ("client_id", "berth".to_string()),
            ];
            form.extend(service.iter().map(|s| ("service", s.clone())));
            form.extend(scopes.iter().map(|s| ("scope", s.to_string())));
            let body: String = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(form.iter().map(|(k, v)| (*k, v.as_str())))
                .finish();
            agent
                .post(url.as_str())
                .content_type("application/x-www-form-urlencoded")
                .send(body.as_bytes())
        }
        _ => {
            {
                let mut q = url.query_pairs_mut();
                if let Some(s) = service {
                    q.append_pair("service", s);
                }
                for s in scopes.iter().filter(|s| !s.is_empty()) {
                    q.append_pair("scope", s);
                }
            }
            let mut req = agent.get(url.as_str());
            if let Some(Credentials::Basic { username, password }) = creds {
                req = req.header("Authorization", basic_header(username, password));
            }
            req.call()
        }
    };
    let mut resp = response.map_err(|e| RegistryError::Connect {
        registry: registry.into(),
        url: realm.clone(),
        cause: Box::new(e),
    })?;
    let status = resp.status().as_u16();
    let body = resp
        .body_mut()
        .with_config()
        .limit(1 << 20)
        .read_to_vec()
        .unwrap_or_default();
    if status != 200 {
        return Err(RegistryError::Token {
            registry: registry.into(),
            realm: realm.clone(),
            status,
            detail: super::client::error_detail(&body),
        });
    }
    let reply: TokenReply = serde_json::from_slice(&body).map_err(|e| RegistryError::Protocol {
        registry: registry.into(),
        reason: format!("token service {realm} sent invalid JSON: {e}"),
    })?;
    let token = reply
        .token
        .or(reply.access_token)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| RegistryError::Protocol {
            registry: registry.into(),
            reason: format!("token service {realm} sent no token"),
        })?;
    Ok((
        token,
        Duration::from_secs(reply.expires_in.unwrap_or(60).max(1)),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_challenges() {
        let c = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(
            c,
            Some(Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("reg.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
            })
        );
        assert_eq!(
            parse_challenge(r#"Basic realm="Registry Realm""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate abc"), None);
        assert_eq!(parse_challenge("Bearer service=x"), None);
    }

    #[test]
    fn basic_header_is_base64() {
        assert_eq!(basic_header("u", "p"), "Basic dTpw");
    }
}
