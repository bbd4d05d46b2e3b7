//! Probes: `/health` (liveness: the process answers) and `/ready` (readiness: it accepts
//! work — not draining for shutdown and with at least one servable model). Neither needs
//! an API key, so orchestrators can call them without secrets.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::extract::Json;
use crate::state::AppState;

/// `GET /health`.
pub async fn health() -> Json<serde_json::Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /ready`.
pub async fn ready(State(state): State<AppState>) -> Response {
    let models = state.runtime().models();
    let loaded: Vec<String> = state
        .runtime()
        .loaded()
        .into_iter()
        .map(|l| l.name)
        .collect();
    let (status, text) = if state.is_draining() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting down")
    } else if models.is_empty() {
        (StatusCode::SERVICE_UNAVAILABLE, "no models to serve")
    } else {
        (StatusCode::OK, "ready")
    };
    (
        status,
        Json(json!({"status": text, "models": models.len(), "loaded": loaded})),
    )
        .into_response()
}

/// `GET /`: what Ollama answers, which some Ollama clients probe.
pub async fn root() -> &'static str {
    "tern is running"
}
