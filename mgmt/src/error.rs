//! API errors: one JSON shape, stable codes, one HTTP status per code.
//!
//! Body: `{"code": "...", "message": "...", "line"?: N, "column"?: N, "field"?: "..."}`.
//! Codes coming from `fwd` keep their control-protocol names (`bad_ruleset`,
//! `bad_tunable`, ...); codes of mgmt's own are listed in [`ApiError`]'s constructors and
//! in `docs/mgmt.md`.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use fwd_proto::{ControlError, ErrorCode};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::client::ClientError;

/// The error body of every failed request.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// Stable snake_case code, e.g. `bad_ruleset`, `unauthorized`, `fwd_unreachable`.
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// 1-based line of a ruleset error (or of a malformed JSON body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column of a ruleset error (or of a malformed JSON body).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The query parameter, body field or tunable the error is about.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// HTTP status (not serialized: it is the response's status).
    #[serde(skip)]
    #[schema(ignore)]
    pub status: u16,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &str, message: impl Into<String>) -> Self {
        ApiError {
            code: code.to_string(),
            message: message.into(),
            line: None,
            column: None,
            field: None,
            status: status.as_u16(),
        }
    }

    /// The same error naming the field it is about.
    pub fn with_field(mut self, field: impl Into<String>) -> Self {
        self.field = Some(field.into());
        self
    }

    /// 400 `bad_request`: malformed body or parameter.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }

    /// 400 `bad_filter`: a conntrack filter parameter is unknown or malformed.
    pub fn bad_filter(field: &str, message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_filter", message).with_field(field)
    }

    /// 401 `unauthorized`: no bearer token was given.
    pub fn unauthorized() -> Self {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            "a bearer token is required (Authorization: Bearer <token>)",
        )
    }

    /// 403 `forbidden`: a token was given but it is wrong, or writes are disabled.
    pub fn forbidden(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::FORBIDDEN, "forbidden", message)
    }

    /// 404 `not_found`.
    pub fn not_found() -> Self {
        ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }

    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }

    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    /// Maps a malformed JSON body to a 400 with the line and column serde reports.
    pub fn from_json(e: &serde_json::Error) -> Self {
        let mut err = ApiError::bad_request(format!("malformed JSON body: {e}"));
        if e.line() > 0 {
            err.line = u32::try_from(e.line()).ok();
            err.column = u32::try_from(e.column()).ok();
        }
        err
    }
}

/// HTTP status for each control-protocol error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest
        | ErrorCode::BadRuleset
        | ErrorCode::BadFilter
        | ErrorCode::BadTunable
        | ErrorCode::RefusedUnfiltered => StatusCode::BAD_REQUEST,
        // The listing changed under the cursor (or it was forged): start again.
        ErrorCode::BadCursor | ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::WorkerTimeout => StatusCode::GATEWAY_TIMEOUT,
        ErrorCode::Busy => StatusCode::TOO_MANY_REQUESTS,
        // fwd speaks another protocol version than this mgmt build.
        ErrorCode::UnsupportedVersion => StatusCode::BAD_GATEWAY,
        ErrorCode::Persist | ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// The snake_case name of a control-protocol error code.
pub fn code_name(code: ErrorCode) -> String {
    match serde_json::to_value(code) {
        Ok(serde_json::Value::String(s)) => s,
        _ => "internal".to_string(),
    }
}

impl From<ControlError> for ApiError {
    fn from(e: ControlError) -> Self {
        ApiError {
            code: code_name(e.code),
            message: e.message,
            line: e.line,
            column: e.column,
            field: e.field,
            status: status_of(e.code).as_u16(),
        }
    }
}

impl From<ClientError> for ApiError {
    fn from(e: ClientError) -> Self {
        match e {
            ClientError::Fwd(c) => c.into(),
            ClientError::Unreachable(m) => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "fwd_unreachable",
                format!("fwd is not reachable on its control socket: {m}"),
            ),
            ClientError::Timeout(ms) => ApiError::new(
                StatusCode::GATEWAY_TIMEOUT,
                "fwd_timeout",
                format!(
                    "fwd did not answer within {ms} ms; the request may or may not have been applied"
                ),
            ),
            ClientError::Lost(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "fwd_connection_lost",
                format!(
                    "fwd closed the control connection before answering ({m}); the request may or may not have been applied"
                ),
            ),
            ClientError::TooLarge(n) => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too_large",
                format!(
                    "the request ({n} bytes encoded) exceeds fwd's control-line limit; nothing was sent"
                ),
            ),
            ClientError::Protocol(m) => ApiError::new(
                StatusCode::BAD_GATEWAY,
                "fwd_protocol",
                format!("unexpected answer from fwd: {m}"),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let unauthorized = status == StatusCode::UNAUTHORIZED;
        let mut resp = (status, axum::Json(self)).into_response();
        if unauthorized {
            resp.headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_errors_keep_code_and_location() {
        let e: ApiError = ControlError::new(ErrorCode::BadRuleset, "unknown statement")
            .at(3, 5)
            .into();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code":"bad_ruleset","message":"unknown statement","line":3,"column":5})
        );
        let e: ApiError = ControlError::new(ErrorCode::WorkerTimeout, "w3").into();
        assert_eq!(
            (e.status(), e.code.as_str()),
            (StatusCode::GATEWAY_TIMEOUT, "worker_timeout")
        );
    }

    #[test]
    fn client_errors_map_to_gateway_statuses() {
        let e: ApiError = ClientError::Unreachable("no socket".into()).into();
        assert_eq!(
            (e.status(), e.code.as_str()),
            (StatusCode::SERVICE_UNAVAILABLE, "fwd_unreachable")
        );
        let e: ApiError = ClientError::Timeout(100).into();
        assert_eq!(
            (e.status(), e.code.as_str()),
            (StatusCode::GATEWAY_TIMEOUT, "fwd_timeout")
        );
    }
}
