//! The service's one error type. Domain code returns it; the HTTP layer turns
//! it into a status, headers and `{"error", "message"}` in one place
//! ([`crate::http::Response::from_error`]).

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    /// Stable, snake_case, machine-readable.
    pub code: &'static str,
    /// A sentence for people.
    pub message: String,
    /// Extra headers the status calls for (`Allow`, `Retry-After`, ...).
    pub headers: Vec<(&'static str, String)>,
    /// More members of the error body, such as `field` (the input field at
    /// fault) or `reason` (why a version was revoked).
    pub details: Vec<(&'static str, serde_json::Value)>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            headers: Vec::new(),
            details: Vec::new(),
        }
    }

    pub fn with_header(mut self, name: &'static str, value: impl Into<String>) -> ApiError {
        self.headers.push((name, value.into()));
        self
    }

    pub fn with_detail(mut self, key: &'static str, value: impl Into<serde_json::Value>) -> ApiError {
        self.details.push((key, value.into()));
        self
    }

    /// Names the input field at fault (`outline.license`).
    pub fn with_field(self, field: impl Into<String>) -> ApiError {
        self.with_detail("field", field.into())
    }

    pub fn field(&self) -> Option<&str> {
        self.details
            .iter()
            .find(|(key, _)| *key == "field")
            .and_then(|(_, value)| value.as_str())
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, code, message)
    }

    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(401, "unauthorized", message).with_header("WWW-Authenticate", "Bearer")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(404, code, message)
    }

    pub fn conflict(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(409, code, message)
    }

    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "body_too_large", message)
    }

    pub fn rate_limited(retry_after_secs: u64) -> ApiError {
        ApiError::new(
            429,
            "rate_limited",
            format!("Too many requests; try again in {retry_after_secs} seconds."),
        )
        .with_header("Retry-After", retry_after_secs.to_string())
    }

    /// A fault of ours. The detail goes to the log, never to the client.
    pub fn internal(detail: impl fmt::Display) -> ApiError {
        log::error!("internal error: {detail}");
        ApiError::new(
            500,
            "internal_error",
            "The registry hit an internal error; it has been logged.",
        )
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

impl From<std::io::Error> for ApiError {
    fn from(err: std::io::Error) -> ApiError {
        ApiError::internal(format!("storage: {err}"))
    }
}
