//! tern-server: the HTTP face of the runtime — OpenAI- and Ollama-compatible APIs with
//! streaming, API keys and rate limits, request limits, Prometheus metrics, probes and
//! graceful shutdown.
//!
//! As in mistral.rs's `mistralrs-server-core`, the server is a library: [`router`] builds
//! the whole `axum::Router` from an [`AppState`] (a [`tern_runtime::Runtime`] plus a
//! [`ServerConfig`]), tests call it in-process, and the `tern serve` command only wires it
//! to a socket with [`serve`] and [`shutdown_signal`].
//!
//! Layers, outermost first: CORS (only when origins are configured), the request log and
//! metrics ([`metrics::observe`]: request id, tracing span, counters), Ollama's error
//! shape on `/api/…` ([`ollama::ollama_error_shape`]), API keys and rate limits
//! ([`auth::authorize`]), the body size limit; then the routes:
//!
//! | route | |
//! |---|---|
//! | `POST /v1/chat/completions`, `POST /v1/completions` | OpenAI generation, SSE with `stream: true` |
//! | `GET /v1/models`, `POST /v1/embeddings` | OpenAI models and embeddings |
//! | `POST /api/chat`, `POST /api/generate` | Ollama generation, NDJSON streams |
//! | `GET /api/tags`, `GET /api/ps`, `POST /api/show`, `GET /api/version`, `POST /api/pull` | Ollama model routes |
//! | `GET /health`, `GET /ready` | probes (no key needed) |
//! | `GET /metrics` | Prometheus text format |
//!
//! docs/SERVER.md describes the API, the limits and the metrics for users.

pub mod auth;
pub mod config;
pub mod error;
pub mod extract;
mod generation;
pub mod metrics;
mod model_files;
pub mod ollama;
pub mod openai;
mod ops;
mod state;
mod stream;

use std::future::{Future, IntoFuture};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderValue, Method, Uri, header};
use axum::middleware;
use axum::routing::get;
use tokio::net::TcpListener;
use tower_http::cors::{AllowOrigin, CorsLayer};

pub use config::{RateLimit, ServerConfig, ServerSettings, split_config_file};
pub use error::ApiError;
pub use state::AppState;

/// The whole HTTP API over `state`.
pub fn router(state: AppState) -> Router {
    let config = state.config().clone();
    let app = Router::new()
        .route("/", get(ops::root))
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(metrics::metrics_handler))
        .merge(openai::routes())
        .merge(ollama::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            auth::authorize,
        ))
        .layer(middleware::from_fn(ollama::ollama_error_shape))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            metrics::observe,
        ));
    let app = match cors_layer(&config.cors_origins) {
        Some(cors) => app.layer(cors),
        None => app,
    };
    app.with_state(state)
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such route: {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::bad_request(format!("{method} is not allowed on {}", uri.path()))
        .with_code("method_not_allowed")
        .with_status(axum::http::StatusCode::METHOD_NOT_ALLOWED)
}

/// CORS only when origins are configured (browsers then may call the API from those
/// origins; preflights are answered before the key check, as they carry no key).
fn cors_layer(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o).ok())
                .collect::<Vec<_>>(),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
            .expose_headers([header::RETRY_AFTER])
            .max_age(Duration::from_secs(3600)),
    )
}

/// Serves `state` on `listener` until `shutdown` completes; then stops accepting
/// connections, lets in-flight requests finish for up to the configured
/// `shutdown_timeout`, closes whatever is left (which cancels those generations), and
/// shuts the runtime down.
pub async fn serve(
    listener: TcpListener,
    state: AppState,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let grace = state.config().shutdown_timeout;
    let app = router(state.clone());
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<Instant>();
    let drain = state.clone();
    let signal = async move {
        shutdown.await;
        drain.begin_draining();
        tracing::info!(
            grace_seconds = grace.as_secs_f64(),
            "shutting down: no new connections; waiting for in-flight requests"
        );
        let _ = signalled.send(Instant::now());
    };
    let server = axum::serve(listener, app)
        .with_graceful_shutdown(signal)
        .into_future();
    let deadline = async move {
        match on_signal.await {
            Ok(at) => tokio::time::sleep_until((at + grace).into()).await,
            // The server ended before any signal: nothing to wait for.
            Err(_) => std::future::pending::<()>().await,
        }
    };
    tokio::select! {
        result = server => result?,
        () = deadline => {
            tracing::warn!(
                grace_seconds = grace.as_secs_f64(),
                "in-flight requests did not finish in time; closing them"
            );
        }
    }
    state.runtime().shutdown(Duration::from_secs(5)).await;
    tracing::info!("server stopped");
    Ok(())
}

/// Completes on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(error) = tokio::signal::ctrl_c().await {
            tracing::error!(%error, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(error) => {
                tracing::error!(%error, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = interrupt => tracing::info!("interrupted (SIGINT)"),
        () = terminate => tracing::info!("terminated (SIGTERM)"),
    }
}
