//! `AppError`: every failure a client can see, with the error codes of
//! API.md: the JSON error of an HTTP answer, the `error` frame of a WebSocket.

use actix_web::http::{StatusCode, header};
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::hub::HubError;
use crate::message::{Invalid, ParseError};
use crate::stats::Rejection;

/// Error codes of API.md, shared by HTTP JSON errors and WebSocket `error` frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadChannel,
    BadCursor,
    BadJson,
    BadRequest,
    Unauthorized,
    UpgradeRequired,
    Forbidden,
    NotFound,
    MethodNotAllowed,
    /// 408: the request did not arrive whole within `--request-timeout`.
    RequestTimeout,
    /// 431: a request head over 16 KiB.
    HeadersTooLarge,
    TooLarge,
    RateLimited,
    Overloaded,
    Unavailable,
}

/// An error answered to an HTTP client: `{"error":{"code":..,"message":..}}`.
/// Messages are written for the client; internals are logged, not leaked.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code:?}: {message}")]
pub struct AppError {
    pub code: ErrorCode,
    pub message: String,
    /// Seconds, for `rate_limited`, `overloaded` and `unavailable`.
    pub retry_after: Option<u32>,
    /// Methods a resource allows, for `method_not_allowed`.
    pub allow: Option<&'static str>,
    /// A status more precise than the code's (415 for a `bad_request` body type).
    pub status: Option<StatusCode>,
    /// The limit or access rule that refused the request, counted in `/metrics`
    /// wherever the error is answered (`routes::meter`, a WebSocket `error` frame).
    pub rejection: Option<Rejection>,
}

impl AppError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> AppError {
        let retry_after =
            matches!(code, ErrorCode::RateLimited | ErrorCode::Overloaded | ErrorCode::Unavailable).then_some(1);
        let rejection = match code {
            ErrorCode::Unauthorized => Some(Rejection::Unauthorized),
            ErrorCode::Forbidden => Some(Rejection::Forbidden),
            // Connections over the per-address cap are refused before HTTP (`limits::refuse`).
            ErrorCode::RateLimited => Some(Rejection::PublishRate),
            ErrorCode::RequestTimeout => Some(Rejection::RequestTimeout),
            ErrorCode::HeadersTooLarge => Some(Rejection::HeadersTooLarge),
            _ => None,
        };
        AppError { code, message: message.into(), retry_after, allow: None, status: None, rejection }
    }

    /// The same error, counted as refused by `rejection`.
    pub fn rejected_by(self, rejection: Rejection) -> AppError {
        AppError { rejection: Some(rejection), ..self }
    }

    pub fn bad_request(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::BadRequest, message)
    }

    /// `415` with code `bad_request`: a body of a type the route does not take.
    pub fn unsupported_media_type(message: impl Into<String>) -> AppError {
        AppError { status: Some(StatusCode::UNSUPPORTED_MEDIA_TYPE), ..AppError::bad_request(message) }
    }

    pub fn unauthorized(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Unauthorized, message)
    }

    pub fn forbidden(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::Forbidden, message)
    }

    /// `429 rate_limited`, to come back after `wait`.
    pub fn rate_limited(message: impl Into<String>, wait: std::time::Duration) -> AppError {
        let seconds = u32::try_from(wait.as_secs_f64().ceil() as u64).unwrap_or(u32::MAX).max(1);
        AppError { retry_after: Some(seconds), ..AppError::new(ErrorCode::RateLimited, message) }
    }

    pub fn too_large(message: impl Into<String>) -> AppError {
        AppError::new(ErrorCode::TooLarge, message)
    }

    pub fn method_not_allowed(allow: &'static str) -> AppError {
        AppError { allow: Some(allow), ..AppError::new(ErrorCode::MethodNotAllowed, format!("allowed: {allow}")) }
    }
}

pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadChannel | ErrorCode::BadCursor | ErrorCode::BadJson | ErrorCode::BadRequest => {
            StatusCode::BAD_REQUEST
        }
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::HeadersTooLarge => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
        ErrorCode::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Overloaded | ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
    }
}

#[derive(Serialize)]
struct Body<'a> {
    error: Inner<'a>,
}

#[derive(Serialize)]
struct Inner<'a> {
    code: ErrorCode,
    message: &'a str,
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        self.status.unwrap_or_else(|| status_of(self.code))
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        response.insert_header((header::CACHE_CONTROL, "no-store"));
        if let Some(seconds) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, seconds.to_string()));
        }
        if let Some(allow) = self.allow {
            response.insert_header((header::ALLOW, allow));
        }
        if self.code == ErrorCode::Unauthorized {
            response.insert_header((header::WWW_AUTHENTICATE, "Bearer"));
        }
        if matches!(self.code, ErrorCode::RequestTimeout | ErrorCode::HeadersTooLarge) {
            response.force_close();
        }
        if self.code == ErrorCode::UpgradeRequired {
            // A 426 names the protocol to switch to (RFC 9110, 15.5.22).
            response.insert_header((header::UPGRADE, "websocket"));
        }
        response.json(Body { error: Inner { code: self.code, message: &self.message } })
    }
}

impl From<ParseError> for AppError {
    fn from(e: ParseError) -> AppError {
        let too_many = e.kind == Invalid::TooMany;
        let error = AppError::new(e.kind.into(), e.message);
        if too_many { error.rejected_by(Rejection::Channels) } else { error }
    }
}

impl From<Invalid> for ErrorCode {
    fn from(kind: Invalid) -> ErrorCode {
        match kind {
            Invalid::Channel => ErrorCode::BadChannel,
            Invalid::Cursor | Invalid::Epoch => ErrorCode::BadCursor,
            Invalid::TooMany | Invalid::IdempotencyKey => ErrorCode::BadRequest,
            Invalid::Data => ErrorCode::BadJson,
        }
    }
}

impl From<HubError> for AppError {
    fn from(e: HubError) -> AppError {
        match e {
            HubError::Unavailable(reason) => {
                tracing::warn!(%reason, "hub unavailable");
                AppError::new(ErrorCode::Unavailable, "the channel hub is unreachable; retry shortly")
            }
            HubError::Full(reason) => {
                tracing::warn!(%reason, "hub full");
                AppError::new(ErrorCode::Overloaded, "the hub holds as many channels as it may; retry later")
            }
            HubError::Uncertain(reason) => {
                tracing::warn!(%reason, "publish outcome unknown");
                AppError::new(
                    ErrorCode::Unavailable,
                    "the publish timed out and may have been stored: retry with the same Idempotency-Key to be safe",
                )
            }
        }
    }
}
