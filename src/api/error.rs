//! The API's one error type: every failure answers `{"error": {"code", "message"}}`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use utoipa::ToSchema;

#[derive(Debug, thiserror::Error)]
pub(super) enum ApiError {
    /// The request cannot be read: bad JSON syntax, a bad query or path parameter.
    #[error("{0}")]
    Malformed(String),
    #[error("missing or invalid bearer token (Authorization: Bearer <token>)")]
    Unauthorized,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed on this route")]
    MethodNotAllowed,
    #[error("{0}")]
    Conflict(String),
    #[error("request body is over the limit of {0} bytes (http.max_body_bytes)")]
    TooLarge(usize),
    /// Well-formed but not acceptable: a validation failure.
    #[error("{0}")]
    Invalid(String),
    /// Too many requests now (a limit was reached); try again after `Retry-After`.
    #[error("{0}")]
    TooMany(String),
    /// Over `http.rate_limit`; `Retry-After` says when the next request is allowed.
    #[error("over the rate limit of this token (http.rate_limit); retry after {}s", retry_after_secs(.0))]
    RateLimited(std::time::Duration),
    #[error("storage unavailable, try again")]
    Unavailable(#[from] redis::RedisError),
    #[error("{0}")]
    Internal(String),
}

/// Whole seconds for `Retry-After`, never 0.
fn retry_after_secs(wait: &std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

impl ApiError {
    pub(super) fn status(&self) -> StatusCode {
        match self {
            ApiError::Malformed(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::TooMany(_) | ApiError::RateLimited(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub(super) fn code(&self) -> &'static str {
        match self {
            ApiError::Malformed(_) => "malformed",
            ApiError::Unauthorized => "unauthorized",
            ApiError::Forbidden(_) => "forbidden",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::Conflict(_) => "conflict",
            ApiError::TooLarge(_) => "payload_too_large",
            ApiError::Invalid(_) => "invalid",
            ApiError::TooMany(_) | ApiError::RateLimited(_) => "too_many_requests",
            ApiError::Unavailable(_) => "unavailable",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// `{"error": {"code": …, "message": …}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorBody {
    pub(super) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(super) struct ErrorDetail {
    /// Stable, machine-readable: `malformed`, `unauthorized`, `forbidden`, `not_found`,
    /// `method_not_allowed`, `conflict`, `payload_too_large`, `invalid`, `too_many_requests`,
    /// `unavailable`.
    #[schema(example = "invalid")]
    pub(super) code: String,
    /// What went wrong, for a person.
    pub(super) message: String,
}

/// The longest error message: one naming a field quotes what was sent, and a 100 KB filter
/// made a 100 KB answer.
const MAX_MESSAGE: usize = 1000;

fn shortened(mut message: String) -> String {
    if message.len() > MAX_MESSAGE {
        let mut end = MAX_MESSAGE;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
        message.push('…');
    }
    message
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            // Only the error itself: never the request, whose body or headers may hold secrets.
            ApiError::Unavailable(e) => {
                tracing::warn!(error = %e, "API request failed: Redis unavailable")
            }
            ApiError::Internal(m) => tracing::error!(error = %m, "API request failed"),
            _ => {}
        }
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code().to_string(),
                message: shortened(self.to_string()),
            },
        };
        let mut resp = (status, Json(body)).into_response();
        match self {
            ApiError::Unauthorized => {
                resp.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            ApiError::Unavailable(_) | ApiError::TooMany(_) => {
                resp.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            ApiError::RateLimited(wait) => {
                resp.headers_mut().insert(
                    header::RETRY_AFTER,
                    HeaderValue::from(retry_after_secs(&wait)),
                );
            }
            _ => {}
        }
        resp
    }
}
