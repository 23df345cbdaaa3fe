//! The one place errors become responses. Every error has the shape
//! `{"detail": code, "error": {"code", "message", "fields"?}}`; 4xx bodies explain, 5xx
//! bodies are opaque and the cause chain is logged once.

use crate::domain::FieldError;
use crate::service::Error;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub fields: Vec<FieldError>,
    /// Seconds for `Retry-After` (429; every 503 says 1).
    pub retry_after: Option<u64>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            fields: Vec::new(),
            retry_after: None,
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_payload", message)
    }
    pub fn invalid_field(field: &str, message: &str) -> Self {
        let mut e = Self::invalid(format!("{field}: {message}"));
        e.fields.push(FieldError::new(field, message));
        e
    }
    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", message)
    }
    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", "no such route")
    }
    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }
    pub fn method_not_allowed() -> Self {
        Self::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "this route does not accept that method",
        )
    }
}

fn log_chain(err: &dyn std::error::Error) -> String {
    let mut out = err.to_string();
    let mut cur = err.source();
    while let Some(e) = cur {
        out.push_str(": ");
        out.push_str(&e.to_string());
        cur = e.source();
    }
    out
}

impl From<Error> for ApiError {
    fn from(e: Error) -> Self {
        match e {
            Error::Invalid { message, fields } => Self {
                status: StatusCode::BAD_REQUEST,
                code: "invalid_payload",
                message,
                fields,
                retry_after: None,
            },
            Error::NotFound(code, msg) => Self::new(StatusCode::NOT_FOUND, code, msg),
            Error::Conflict(c) => {
                Self::new(StatusCode::CONFLICT, c.code(), conflict_message(c.code()))
            }
            Error::Unauthorized(m) => Self::unauthorized(m),
            Error::Forbidden(code, m) => Self::new(StatusCode::FORBIDDEN, code, m),
            e @ Error::RateLimited(_) => {
                let mut out =
                    Self::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", e.to_string());
                if let Error::RateLimited(secs) = e {
                    out.retry_after = Some(secs);
                }
                out
            }
            ref e @ Error::Unavailable(_) => {
                tracing::warn!(error = %log_chain(e), "store unavailable");
                Self::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "unavailable",
                    "the store is unavailable; try again",
                )
            }
            ref e @ Error::Internal(_) => {
                tracing::error!(error = %log_chain(e), "internal error");
                Self::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal error",
                )
            }
        }
    }
}

fn conflict_message(code: &str) -> &'static str {
    match code {
        "job_not_leased" => "the job is not leased by this worker",
        "lease_lost" => "this lease no longer holds (expired, requeued or leased again)",
        "job_canceled" => "the job was canceled",
        "invalid_status" => "the resource's status does not allow this",
        "idempotency_conflict" => "this idempotency key was used with a different input",
        "duplicate_job_id" => "a job with this id exists",
        _ => "conflict",
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut error = json!({ "code": self.code, "message": self.message });
        if !self.fields.is_empty() {
            error["fields"] = json!(self.fields);
        }
        let body = json!({ "detail": self.code, "error": error });
        let mut resp = (self.status, axum::Json(body)).into_response();
        let retry_after = match self.retry_after {
            Some(s) => Some(s.max(1)),
            None if self.status == StatusCode::SERVICE_UNAVAILABLE => Some(1),
            None => None,
        };
        if let Some(s) = retry_after {
            resp.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from(s),
            );
        }
        resp
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
