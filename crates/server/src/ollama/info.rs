//! Ollama's model listing and management routes: `/api/tags` (servable models),
//! `/api/ps` (loaded models), `/api/show` (one model's details), `/api/version`, and
//! `/api/pull` (a download into the store, with its progress as an NDJSON stream).

use std::convert::Infallible;
use std::path::Path;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_runtime::{LoadState, ModelInfo};
use tern_store::{ErrorClass, ModelRef, Progress, PullOptions, Store};
use tokio::sync::mpsc;

use super::rfc3339;
use crate::error::ApiError;
use crate::extract::Json;
use crate::model_files::FileFacts;
use crate::state::AppState;
use crate::stream::{NDJSON, ndjson};

/// The sha256 of a store blob, from its file name (`blobs/sha256-<hex>`); empty for
/// files outside the store (hashing a whole model per listing would be too slow).
fn digest_of(path: &Path) -> String {
    path.file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.strip_prefix("sha256-"))
        .filter(|hex| tern_store::is_sha256_hex(hex))
        .map_or_else(String::new, str::to_string)
}

fn details(facts: Option<&FileFacts>) -> Value {
    match facts {
        Some(f) => json!({
            "parent_model": "",
            "format": "gguf",
            "family": f.family,
            "families": [f.family],
            "parameter_size": f.parameter_size,
            "quantization_level": f.quantization_level,
        }),
        None => json!({"parent_model": "", "format": "gguf"}),
    }
}

/// The facts of several models' files, read off the async executor.
async fn facts_of(state: &AppState, paths: Vec<std::path::PathBuf>) -> Vec<Option<Arc<FileFacts>>> {
    let state = state.clone();
    tokio::task::spawn_blocking(move || {
        paths
            .iter()
            .map(|p| state.files().get(p).ok())
            .collect::<Vec<_>>()
    })
    .await
    .unwrap_or_default()
}

fn find_model(state: &AppState, name: &str) -> Result<ModelInfo, ApiError> {
    state
        .runtime()
        .models()
        .into_iter()
        .find(|m| m.name == name || m.aliases.iter().any(|a| a == name))
        .ok_or_else(|| ApiError::not_found(format!("model {name:?} not found")))
}

/// `GET /api/tags`.
pub async fn tags(State(state): State<AppState>) -> Json<Value> {
    let models = state.runtime().models();
    let facts = facts_of(&state, models.iter().map(|m| m.path.clone()).collect()).await;
    let list: Vec<Value> = models
        .iter()
        .zip(facts)
        .map(|(m, f)| {
            json!({
                "name": m.name,
                "model": m.name,
                "modified_at": m.modified.map(rfc3339),
                "size": m.file_size,
                "digest": digest_of(&m.path),
                "details": details(f.as_deref()),
            })
        })
        .collect();
    Json(json!({"models": list}))
}

/// `GET /api/ps`.
/// A model's usage statistics (tern's addition to `/api/ps`; Ollama clients ignore
/// fields they do not know): what `tern ps` shows.
fn stats_json(s: &tern_runtime::ModelStats) -> Value {
    let evictions: Vec<Value> = s
        .evictions
        .iter()
        .map(|e| json!({"at": rfc3339(e.at), "reason": e.reason.to_string()}))
        .collect();
    json!({
        "requests": s.requests,
        "tokens_in": s.tokens_in,
        "tokens_out": s.tokens_out,
        "loads": s.loads,
        "load_time_ms": s.load_time.map(|d| d.as_millis() as u64),
        "last_used": s.last_used.map(rfc3339),
        "eviction_count": s.eviction_count,
        "evictions": evictions,
        "forward_calls": s.forward_calls,
        "prefix_reused_tokens": s.prefix_reused_tokens,
        "cancelled": s.cancelled,
        "rejected_queue_full": s.rejected_queue_full,
        "timeouts": s.timeouts,
    })
}

pub async fn ps(State(state): State<AppState>) -> Json<Value> {
    let loaded = state.runtime().loaded();
    let models = state.runtime().models();
    let paths: Vec<_> = loaded
        .iter()
        .map(|l| {
            models
                .iter()
                .find(|m| m.name == l.name)
                .map(|m| m.path.clone())
                .unwrap_or_default()
        })
        .collect();
    let facts = facts_of(&state, paths.clone()).await;
    let list: Vec<Value> = loaded
        .iter()
        .zip(paths.iter().zip(facts))
        .map(|(l, (path, f))| {
            json!({
                "name": l.name,
                "model": l.name,
                "size": l.bytes_estimate,
                "digest": digest_of(path),
                "details": details(f.as_deref()),
                "expires_at": l.expires_at.map(rfc3339),
                "size_vram": 0,
                "context_length": l.ctx_size,
                "state": match l.state {
                    LoadState::Loading => "loading",
                    LoadState::Ready => "ready",
                    LoadState::Unloading => "unloading",
                },
                "in_flight": l.in_flight,
                "pinned": l.pinned,
                "size_measured": l.bytes_measured,
                "stats": stats_json(&l.stats),
            })
        })
        .collect();
    Json(json!({"models": list}))
}

#[derive(Debug, Deserialize)]
pub struct ShowBody {
    model: Option<String>,
    name: Option<String>,
}

/// `POST /api/show`.
pub async fn show(
    State(state): State<AppState>,
    Json(body): Json<ShowBody>,
) -> Result<Json<Value>, ApiError> {
    let name = body
        .model
        .or(body.name)
        .ok_or_else(|| ApiError::bad_request("model is required"))?;
    let model = find_model(&state, &name)?;
    let facts = facts_of(&state, vec![model.path.clone()])
        .await
        .pop()
        .flatten()
        .ok_or_else(|| ApiError::internal(format!("cannot read {}", model.path.display())))?;
    Ok(Json(json!({
        "license": "",
        "modelfile": "",
        "parameters": "",
        "template": facts.chat_template.clone().unwrap_or_default(),
        "details": details(Some(&facts)),
        "model_info": facts.model_info,
        "capabilities": ["completion"],
        "modified_at": model.modified.map(rfc3339),
    })))
}

/// `GET /api/version`: tern's version.
pub async fn version() -> Json<Value> {
    Json(json!({"version": env!("CARGO_PKG_VERSION")}))
}

fn default_stream() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct PullBody {
    model: Option<String>,
    name: Option<String>,
    #[serde(default = "default_stream")]
    stream: bool,
}

/// Sends a pull's progress as Ollama's status objects.
struct ChannelProgress {
    sender: mpsc::UnboundedSender<Value>,
    label: std::sync::Mutex<(String, Option<u64>)>,
}

impl Progress for ChannelProgress {
    fn begin(&self, label: &str, total: Option<u64>) {
        if let Ok(mut current) = self.label.lock() {
            *current = (label.to_string(), total);
        }
        let mut status = json!({"status": label});
        if let Some(total) = total {
            status["total"] = json!(total);
            status["completed"] = json!(0);
        }
        let _ = self.sender.send(status);
    }
    fn advance(&self, position: u64) {
        let (label, total) = self.label.lock().map(|l| l.clone()).unwrap_or_default();
        let mut status = json!({"status": label, "completed": position});
        if let Some(total) = total {
            status["total"] = json!(total);
        }
        let _ = self.sender.send(status);
    }
    fn note(&self, message: &str) {
        let _ = self.sender.send(json!({"status": message}));
    }
    fn finish(&self) {}
}

/// `POST /api/pull`: pulls a model reference into the store.
pub async fn pull(
    State(state): State<AppState>,
    Json(body): Json<PullBody>,
) -> Result<Response, ApiError> {
    let store: Arc<Store> = state
        .store()
        .cloned()
        .ok_or_else(|| ApiError::bad_request("this server has no model store to pull into"))?;
    let text = body
        .model
        .or(body.name)
        .ok_or_else(|| ApiError::bad_request("model is required"))?;
    let reference = ModelRef::parse(&text).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let (sender, mut receiver) = mpsc::unbounded_channel::<Value>();
    let progress = ChannelProgress {
        sender: sender.clone(),
        label: std::sync::Mutex::new((String::new(), None)),
    };
    let _ = sender.send(json!({"status": "pulling manifest"}));
    // The download is blocking I/O; it runs to the end even if the client leaves, so a
    // retried pull finds the file (or resumes it).
    let task = tokio::task::spawn_blocking(move || {
        let result = store.pull(&reference, &PullOptions::default(), &progress);
        let last = match result {
            Ok(pulled) => json!({
                "status": "success",
                "digest": pulled.installed.manifest.digest,
                "model": pulled.installed.manifest.reference(),
            }),
            Err(error) => {
                // A bad reference is the client's mistake; a failed download is the
                // source's (502); anything else is ours.
                let status = match error.class() {
                    ErrorClass::Reference => 400,
                    ErrorClass::Network | ErrorClass::Content => 502,
                    _ => 500,
                };
                json!({"error": error.to_string(), "status_code": status})
            }
        };
        let _ = progress.sender.send(last);
    });
    drop(sender);
    if !body.stream {
        let _ = task.await;
        let mut last = json!({"error": "the pull ended without a result"});
        while let Some(status) = receiver.recv().await {
            last = status;
        }
        return match last.get("error").and_then(Value::as_str) {
            Some(message) => {
                let status = last
                    .get("status_code")
                    .and_then(Value::as_u64)
                    .and_then(|s| StatusCode::from_u16(s as u16).ok())
                    .unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
                Err(ApiError::internal(format!("pull {text}: {message}")).with_status(status))
            }
            None => Ok(Json(last).into_response()),
        };
    }
    let stream = futures_util::stream::unfold(receiver, |mut receiver| async move {
        let status = receiver.recv().await?;
        Some((Ok::<Bytes, Infallible>(ndjson(&status)), receiver))
    });
    let mut response = Body::from_stream(stream).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(NDJSON));
    Ok(response)
}
