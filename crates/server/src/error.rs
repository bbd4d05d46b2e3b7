//! The one API error type, and the one place it becomes an HTTP response.
//!
//! Every failure a handler, an extractor or a middleware can meet is an [`ApiError`]:
//! a status, OpenAI's error `type`, an optional `param` and `code`, a message that says
//! what to change, and for backpressure a `Retry-After`. [`ApiError::into_response`]
//! writes OpenAI's error JSON (`{"error": {"message", "type", "param", "code"}}`); the
//! Ollama routes turn the same error into Ollama's `{"error": "message"}` in
//! [`crate::ollama::ollama_error_shape`], and 5xx errors are logged once, by the request
//! log middleware, from the copy left in the response's extensions. This follows axum's
//! `examples/error-handling`.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use tern_runtime::RuntimeError;

/// A failed API request.
#[derive(Clone, Debug, PartialEq)]
pub struct ApiError {
    /// The HTTP status.
    pub status: StatusCode,
    /// OpenAI's error `type` (`invalid_request_error`, `authentication_error`, …).
    pub kind: &'static str,
    /// What went wrong and what to do about it.
    pub message: String,
    /// The request field at fault.
    pub param: Option<String>,
    /// A machine-readable code (`model_not_found`, `rate_limit_exceeded`, …).
    pub code: Option<&'static str>,
    /// Sent as `Retry-After` (whole seconds, at least 1).
    pub retry_after: Option<Duration>,
}

impl ApiError {
    fn new(status: StatusCode, kind: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            kind,
            message: message.into(),
            param: None,
            code: None,
            retry_after: None,
        }
    }

    /// 400: the request is invalid.
    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request_error", message)
    }

    /// 400 naming the field at fault.
    pub fn invalid_param(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::bad_request(message).with_param(param)
    }

    /// 401: no API key, or a wrong one.
    pub fn unauthorized(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
            .with_code("invalid_api_key")
    }

    /// 404: no such route or model.
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, "invalid_request_error", message)
    }

    /// 429: this key's rate limit is used up.
    pub fn rate_limited(retry_after: Duration) -> ApiError {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limit_error",
            format!(
                "rate limit reached for this API key; retry in {}s",
                retry_seconds(retry_after)
            ),
        )
        .with_code("rate_limit_exceeded")
        .with_retry_after(retry_after)
    }

    /// 500: something failed on the server's side.
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "server_error", message)
    }

    /// 503: the server is not ready or is stopping.
    pub fn unavailable(message: impl Into<String>, code: &'static str) -> ApiError {
        ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "server_error", message).with_code(code)
    }

    pub fn with_status(mut self, status: StatusCode) -> ApiError {
        self.status = status;
        self
    }

    pub fn with_param(mut self, param: &str) -> ApiError {
        self.param = Some(param.to_string());
        self
    }

    pub fn with_code(mut self, code: &'static str) -> ApiError {
        self.code = Some(code);
        self
    }

    pub fn with_retry_after(mut self, retry_after: Duration) -> ApiError {
        self.retry_after = Some(retry_after);
        self
    }

    /// OpenAI's error body.
    pub fn openai_body(&self) -> serde_json::Value {
        json!({
            "error": {
                "message": self.message,
                "type": self.kind,
                "param": self.param,
                "code": self.code,
            }
        })
    }
}

/// `Retry-After` counts whole seconds; round up so a client never retries too early.
fn retry_seconds(duration: Duration) -> u64 {
    let whole = duration.as_secs();
    let seconds = if duration.subsec_nanos() > 0 {
        whole + 1
    } else {
        whole
    };
    seconds.max(1)
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.status.as_u16(),
            self.kind,
            self.message
        )
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, axum::Json(self.openai_body())).into_response();
        if let Some(retry_after) = self.retry_after
            && let Ok(value) = HeaderValue::from_str(&retry_seconds(retry_after).to_string())
        {
            response.headers_mut().insert(header::RETRY_AFTER, value);
        }
        // Kept for the Ollama adapter and the request log (5xx logged once there).
        response.extensions_mut().insert(self);
        response
    }
}

impl From<RuntimeError> for ApiError {
    fn from(error: RuntimeError) -> ApiError {
        let message = error.to_string();
        match error {
            RuntimeError::UnknownModel(_) => ApiError::not_found(message)
                .with_param("model")
                .with_code("model_not_found"),
            RuntimeError::QueueFull { retry_after, .. } => {
                ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limit_error", message)
                    .with_code("queue_full")
                    .with_retry_after(retry_after)
            }
            RuntimeError::Loading { retry_after, .. } => {
                ApiError::unavailable(message, "model_loading").with_retry_after(retry_after)
            }
            RuntimeError::DoesNotFit { .. } => ApiError::unavailable(message, "model_does_not_fit"),
            RuntimeError::PromptTooLong { .. } => {
                ApiError::bad_request(message).with_code("context_length_exceeded")
            }
            RuntimeError::BadRequest(_) => ApiError::bad_request(message),
            RuntimeError::Engine(_) => ApiError::internal(message),
            RuntimeError::Timeout => {
                ApiError::new(StatusCode::GATEWAY_TIMEOUT, "server_error", message)
                    .with_code("timeout")
            }
            RuntimeError::ShuttingDown => ApiError::unavailable(message, "shutting_down"),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(rejection: JsonRejection) -> ApiError {
        let status = rejection.status();
        let message = rejection.body_text();
        match status {
            StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
                status,
                "invalid_request_error",
                format!("the request body is too large: {message}"),
            )
            .with_code("request_too_large"),
            StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(
                status,
                "invalid_request_error",
                "the request body must be JSON, sent with `Content-Type: application/json`",
            ),
            // Syntax errors (400) and well-formed JSON of the wrong shape (422): both are
            // the client's mistake, and OpenAI answers both with 400.
            _ => ApiError::bad_request(format!("invalid JSON body: {message}"))
                .with_code("invalid_json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        assert_eq!(retry_seconds(Duration::from_millis(10)), 1);
        assert_eq!(retry_seconds(Duration::from_millis(1500)), 2);
        assert_eq!(retry_seconds(Duration::from_secs(3)), 3);
        assert_eq!(retry_seconds(Duration::ZERO), 1);
    }

    #[test]
    fn runtime_errors_map_to_statuses() {
        let cases = [
            (RuntimeError::UnknownModel("x".into()), 404),
            (
                RuntimeError::QueueFull {
                    model: "m".into(),
                    capacity: 1,
                    retry_after: Duration::from_secs(2),
                },
                429,
            ),
            (
                RuntimeError::Loading {
                    model: "m".into(),
                    retry_after: Duration::from_secs(1),
                },
                503,
            ),
            (RuntimeError::PromptTooLong { tokens: 9, ctx: 8 }, 400),
            (RuntimeError::BadRequest("no".into()), 400),
            (RuntimeError::Engine("boom".into()), 500),
            (RuntimeError::Timeout, 504),
            (RuntimeError::ShuttingDown, 503),
        ];
        for (error, status) in cases {
            let api = ApiError::from(error.clone());
            assert_eq!(api.status.as_u16(), status, "{error:?}");
            let response = api.into_response();
            let has_retry = response.headers().contains_key(header::RETRY_AFTER);
            assert_eq!(
                has_retry,
                matches!(
                    error,
                    RuntimeError::QueueFull { .. } | RuntimeError::Loading { .. }
                ),
                "{error:?}"
            );
        }
    }
}
