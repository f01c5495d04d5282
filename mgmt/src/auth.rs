//! Bearer-token authentication.
//!
//! Writes (every method except GET/HEAD, and except `POST /api/v1/ruleset/check`, a dry
//! run) always need the token; reads need it when `auth_reads` is set. `/healthz` and
//! `/readyz` are always open (liveness and readiness probes). Without a configured token,
//! writes are refused (403): the API never accepts an unauthenticated change.

use std::path::Path;

use axum::extract::{Request, State};
use axum::http::{Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// The configured token and policy.
#[derive(Clone)]
pub struct Auth {
    token: Option<String>,
    auth_reads: bool,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Auth")
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("auth_reads", &self.auth_reads)
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
    /// A policy with `token` (trimmed; `None` disables writes).
    pub fn new(token: Option<String>, auth_reads: bool) -> Self {
        Auth {
            token: token.map(|t| t.trim().to_string()),
            auth_reads,
        }
    }

    /// Reads the token from the first line of `path`.
    pub fn from_file(path: &Path, auth_reads: bool) -> Result<Self, TokenFileError> {
        let text = std::fs::read_to_string(path).map_err(|source| TokenFileError::Read {
            path: path.display().to_string(),
            source,
        })?;
        let token = text.lines().next().unwrap_or("").trim().to_string();
        if token.is_empty() {
            return Err(TokenFileError::Empty(path.display().to_string()));
        }
        Ok(Auth::new(Some(token), auth_reads))
    }

    fn check(&self, given: Option<&str>) -> Result<(), ApiError> {
        let Some(expected) = &self.token else {
            return Err(ApiError::forbidden(
                "this fwmgmt has no token configured (--token-file); changes are disabled",
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

/// Whether a request changes state.
fn is_write(method: &Method, path: &str) -> bool {
    !(method == Method::GET || method == Method::HEAD || path == "/api/v1/ruleset/check")
}

/// The middleware.
pub async fn require_token(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    let path = req.uri().path();
    let open = path == "/healthz" || path == "/readyz";
    let needed = !open && (is_write(req.method(), path) || auth.auth_reads);
    if needed {
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
        let a = Auth::new(Some("s3cret\n".into()), false);
        assert!(a.check(Some("s3cret")).is_ok());
        assert_eq!(a.check(Some("s3cres")).unwrap_err().code, "forbidden");
        assert_eq!(a.check(Some("s3cret2")).unwrap_err().code, "forbidden");
        assert_eq!(a.check(None).unwrap_err().code, "unauthorized");
        let none = Auth::new(None, false);
        assert_eq!(none.check(Some("x")).unwrap_err().code, "forbidden");
    }

    #[test]
    fn writes_are_recognised() {
        assert!(!is_write(&Method::GET, "/api/v1/ruleset"));
        assert!(is_write(&Method::PUT, "/api/v1/ruleset"));
        assert!(!is_write(&Method::POST, "/api/v1/ruleset/check"));
        assert!(is_write(&Method::DELETE, "/api/v1/conntrack"));
        assert!(is_write(&Method::PATCH, "/api/v1/tuning"));
    }

    #[test]
    fn empty_token_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("token");
        std::fs::write(&p, "\n").unwrap();
        assert!(matches!(
            Auth::from_file(&p, false),
            Err(TokenFileError::Empty(_))
        ));
        std::fs::write(&p, "abc\n").unwrap();
        assert!(
            Auth::from_file(&p, true)
                .unwrap()
                .check(Some("abc"))
                .is_ok()
        );
    }
}
