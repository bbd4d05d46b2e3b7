//! The Ollama-compatible API, so that clients written for Ollama work unchanged:
//! `/api/chat` and `/api/generate` (NDJSON streams by default, or one object with
//! `"stream": false`), `/api/tags`, `/api/ps`, `/api/show`, `/api/version`, `/api/pull`.
//! Shapes follow Ollama's `docs/api.md`; errors are Ollama's `{"error": "message"}`
//! ([`ollama_error_shape`]) with the same statuses as the OpenAI routes.

mod generate;
mod info;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::Request;
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/api/chat", post(generate::chat))
        .route("/api/generate", post(generate::generate))
        .route("/api/tags", get(info::tags))
        .route("/api/ps", get(info::ps))
        .route("/api/show", post(info::show))
        .route("/api/version", get(info::version))
        .route("/api/pull", post(info::pull))
}

/// Middleware for the whole router: on `/api/…` paths, rewrites an error response
/// (recognised by the [`ApiError`] the one conversion left in its extensions) into
/// Ollama's `{"error": "message"}`, keeping the status and headers such as
/// `Retry-After`. Covers errors from the extractors, auth and limits too.
pub async fn ollama_error_shape(request: Request, next: Next) -> Response {
    let is_ollama = request.uri().path().starts_with("/api/");
    let response = next.run(request).await;
    if !is_ollama {
        return response;
    }
    let Some(error) = response.extensions().get::<ApiError>().cloned() else {
        return response;
    };
    let (mut parts, _) = response.into_parts();
    let body = axum::Json(json!({"error": error.message})).into_response();
    let (body_parts, body) = body.into_parts();
    if let Some(content_type) = body_parts.headers.get(header::CONTENT_TYPE) {
        parts
            .headers
            .insert(header::CONTENT_TYPE, content_type.clone());
    }
    parts.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(parts, body)
}

/// RFC 3339 in UTC with nanoseconds, as Ollama writes `created_at`
/// (`2024-05-01T12:34:56.123456789Z`).
pub fn rfc3339(time: SystemTime) -> String {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    let seconds = since.as_secs();
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rest / 3600,
        (rest / 60) % 60,
        rest % 60,
        since.subsec_nanos()
    )
}

/// The proleptic Gregorian date of a day count since 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, from his paper "chrono-Compatible Low-Level Date Algorithms").
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Nanoseconds, as Ollama reports durations.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000000000Z");
        // 2024-02-29T12:34:56Z = 1709210096 (a leap day).
        let t = UNIX_EPOCH + Duration::new(1_709_210_096, 5);
        assert_eq!(rfc3339(t), "2024-02-29T12:34:56.000000005Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert!(rfc3339(t).starts_with("2000-02-29T00:00:00"));
    }
}
