//! Bearer-token authentication and the Host check.
//!
//! Every route under `/api/v1` needs the token (writes, and reads too: the connection
//! table, live events and the ruleset are what `conntrack -L` and `nft list` keep to
//! CAP_NET_ADMIN), except the OpenAPI document. `--open-reads` opens the `GET` routes
//! explicitly. `/healthz`, `/readyz` and `/metrics` are open (probes and Prometheus;
//! `--auth-metrics` closes `/metrics`). Without a configured token every route that needs
//! it is refused (403): the API never accepts an unauthenticated change.
//!
//! The Host check: a browser on the appliance could be led by a web page to a name that
//! resolves to 127.0.0.1 (DNS rebinding) and read the API from the page's origin. Such a
//! request carries the attacker's name in `Host`; only IP literals, `localhost` and the
//! names given with `--allowed-host` (a reverse proxy's `server_name`) are served.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The configured token and policy.
#[derive(Clone)]
pub struct Auth {
    token: Option<String>,
    /// `GET` routes under `/api/v1` are open.
    pub open_reads: bool,
    /// `/metrics` needs the token.
    pub auth_metrics: bool,
    /// Host names served besides IP literals and `localhost` (lowercase, no port).
    pub allowed_hosts: Vec<String>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("open_reads", &self.open_reads)
            .field("auth_metrics", &self.auth_metrics)
            .field("allowed_hosts", &self.allowed_hosts)
            .finish()
    }
}

/// Why a token file is unusable.
#[derive(Debug, thiserror::Error)]
pub enum TokenFileError {
    #[error("{path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: the token file is empty")]
    Empty(String),
}

impl Auth {
    /// The default policy with `token` (trimmed; `None`: every route that needs the token
    /// is refused).
    pub fn new(token: Option<String>) -> Self {
        Auth {
            token: token.map(|t| t.trim().to_string()),
            open_reads: false,
            auth_metrics: false,
            allowed_hosts: Vec::new(),
        }
    }

    /// Reads the token from the first line of `path`.
    pub fn from_file(path: &Path) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(TokenFileError::Empty(path.display().to_string()));
        }
        Ok(Auth::new(Some(token)))
    }

    fn check(&self, given: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(ApiError::forbidden(
                "this fwmgmt has no token configured (--token-file): this route is disabled",
            ));
        };
        let given = given.ok_or_else(ApiError::unauthorized)?;
        if constant_time_eq(given.as_bytes(), expected.as_bytes()) {
            Ok(())
        } else {
            Err(ApiError::forbidden("the bearer token is not valid"))
        }
    }
}

/// Compares without an early exit on the first differing byte.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

impl Auth {
    /// Whether `method path` needs the token under this policy.
    pub fn needs_token(&self, method: &Method, path: &str) -> bool {
        match path {
            "/healthz" | "/readyz" | "/api/v1/openapi.json" => false,
            "/metrics" => self.auth_metrics,
            _ => !(self.open_reads && (method == Method::GET || method == Method::HEAD)),
        }
    }

    /// Whether a `Host` header value may be served.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            // `[v6]:port`
            return rest
                .split_once(']')
                .is_some_and(|(a, _)| a.parse::<std::net::Ipv6Addr>().is_ok());
        } else {
            host.rsplit_once(':').map_or(host.as_str(), |(h, p)| {
                if p.bytes().all(|b| b.is_ascii_digit()) {
                    h
                } else {
                    host.as_str()
                }
            })
        };
        name.parse::<std::net::Ipv4Addr>().is_ok()
            || name == "localhost"
            || self.allowed_hosts.iter().any(|h| h == name)
    }
}

/// The middleware: the Host check, then the token where the policy needs it.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    if let Some(h) = req.headers().get(header::HOST) {
        let ok = h.to_str().is_ok_and(|h| auth.host_allowed(h));
        if !ok {
            return ApiError::new(
                StatusCode::MISDIRECTED_REQUEST,
                "bad_host",
                "this Host is not served (IP addresses, localhost and --allowed-host names are)",
            )
            .with_field("Host")
            .into_response();
        }
    }
    let path = req.uri().path();
    if auth.needs_token(req.method(), path) {
        let header_value = req
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let token = match header_value {
            None => None,
            Some(v) => match v
                .strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
            {
                Some(t) => Some(t.trim()),
                None => {
                    return ApiError::unauthorized()
                        .with_field("Authorization")
                        .into_response();
                }
            },
        };
        if let Err(e) = auth.check(token) {
            return e.into_response();
        }
    }
    next.run(req).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_checks() {
        let a = Auth::new(Some("s3cret\n".into()));
        assert!(a.check(Some("s3cret")).is_ok());
        assert_eq!(a.check(Some("s3cres")).unwrap_err().code, "forbidden");
        assert_eq!(a.check(Some("s3cret2")).unwrap_err().code, "forbidden");
        assert_eq!(a.check(None).unwrap_err().code, "unauthorized");
        let none = Auth::new(None);
        assert_eq!(none.check(Some("x")).unwrap_err().code, "forbidden");
    }

    #[test]
    fn reads_need_the_token_unless_opened() {
        let mut a = Auth::new(Some("t".into()));
        for (m, p) in [
            (Method::GET, "/api/v1/ruleset"),
            (Method::GET, "/api/v1/conntrack"),
            (Method::GET, "/api/v1/conntrack/events"),
            (Method::PUT, "/api/v1/ruleset"),
            (Method::POST, "/api/v1/ruleset/check"),
            (Method::DELETE, "/api/v1/conntrack"),
        ] {
            assert!(a.needs_token(&m, p), "{m} {p}");
        }
        for p in ["/healthz", "/readyz", "/metrics", "/api/v1/openapi.json"] {
            assert!(!a.needs_token(&Method::GET, p), "{p}");
        }
        a.open_reads = true;
        a.auth_metrics = true;
        assert!(!a.needs_token(&Method::GET, "/api/v1/conntrack"));
        assert!(a.needs_token(&Method::POST, "/api/v1/ruleset/check"));
        assert!(a.needs_token(&Method::GET, "/metrics"));
    }

    #[test]
    fn hosts_are_ip_literals_localhost_or_allowed() {
        let mut a = Auth::new(None);
        for h in [
            "127.0.0.1:9477",
            "127.0.0.1",
            "[::1]:9477",
            "localhost:9477",
            "LOCALHOST",
        ] {
            assert!(a.host_allowed(h), "{h}");
        }
        for h in [
            "evil.example:9477",
            "evil.example",
            "127.0.0.1.evil.example",
            "[evil]:1",
        ] {
            assert!(!a.host_allowed(h), "{h}");
        }
        a.allowed_hosts.push("fw1.example.net".into());
        assert!(a.host_allowed("fw1.example.net"));
    }

    #[test]
    fn empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(Auth::from_file(&p), Err(TokenFileError::Empty(_))));
        std::fs::write(&p, "abc\n").unwrap();
        assert!(Auth::from_file(&p).unwrap().check(Some("abc")).is_ok());
    }
}
