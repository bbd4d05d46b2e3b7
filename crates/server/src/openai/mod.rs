//! The OpenAI-compatible API: `/v1/chat/completions`, `/v1/completions`, `/v1/models`,
//! `/v1/embeddings`. Shapes follow OpenAI's API reference so that the official SDKs work
//! unchanged; errors use OpenAI's error object ([`crate::error`]).

mod chat;
mod completions;
mod logprobs;
pub mod request;

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::routing::{get, post};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Value, json};
use tern_runtime::Usage;

use crate::error::ApiError;
use crate::extract::Json;
use crate::generation::unix_seconds;
use crate::model_files::FileFacts;
use crate::state::AppState;
use crate::stream::sse_json;

pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/v1/chat/completions", post(chat::chat_completions))
        .route("/v1/completions", post(completions::completions))
        .route("/v1/models", get(list_models))
        .route("/v1/models/{*model}", get(get_model))
        .route("/v1/embeddings", post(embeddings))
}

/// `system_fingerprint`: the server build, so clients can tell answers of different
/// builds apart.
pub(crate) fn fingerprint() -> String {
    format!("tern-{}", env!("CARGO_PKG_VERSION"))
}

/// The last streamed chunk when `stream_options.include_usage` asks for it: no choices,
/// the request's token counts. `object` is the stream's chunk type.
pub(crate) fn usage_frame(
    id: &str,
    object: &str,
    created: u64,
    model: &str,
    usage: &Usage,
) -> Bytes {
    sse_json(&json!({
        "id": id,
        "object": object,
        "created": created,
        "model": model,
        "system_fingerprint": fingerprint(),
        "choices": [],
        "usage": usage_json(usage),
    }))
}

/// OpenAI's end of a stream.
pub(crate) fn done_frame() -> Vec<Bytes> {
    vec![Bytes::from_static(b"data: [DONE]\n\n")]
}

pub(crate) fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// The file facts of a model by its configured name (`None` when unreadable).
pub(crate) async fn file_facts(state: &AppState, model: &str) -> Option<Arc<FileFacts>> {
    let info = state
        .runtime()
        .models()
        .into_iter()
        .find(|m| m.name == model || m.aliases.iter().any(|a| a == model))?;
    let state = state.clone();
    tokio::task::spawn_blocking(move || state.files().get(&info.path).ok())
        .await
        .ok()
        .flatten()
}

fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "tern"})
}

/// `GET /v1/models`: every servable model, and each alias as its own entry (requests
/// may use either).
async fn list_models(State(state): State<AppState>) -> Json<Value> {
    let mut data = Vec::new();
    for model in state.runtime().models() {
        let created = model.modified.map_or(0, unix_seconds);
        data.push(model_object(&model.name, created));
        for alias in &model.aliases {
            data.push(model_object(alias, created));
        }
    }
    Json(json!({"object": "list", "data": data}))
}

/// `GET /v1/models/{model}` (model names may contain `/` and `:`).
async fn get_model(
    State(state): State<AppState>,
    axum::extract::Path(id): axum::extract::Path<String>,
) -> Result<Json<Value>, ApiError> {
    state
        .runtime()
        .models()
        .into_iter()
        .find(|m| m.name == id || m.aliases.contains(&id))
        .map(|m| Json(model_object(&id, m.modified.map_or(0, unix_seconds))))
        .ok_or_else(|| {
            ApiError::not_found(format!("model {id:?} is not known (see /v1/models)"))
                .with_param("model")
                .with_code("model_not_found")
        })
}

/// `POST /v1/embeddings` body.
#[derive(Debug, Deserialize)]
struct EmbeddingsRequest {
    model: String,
    input: Value,
    encoding_format: Option<String>,
    dimensions: Option<u32>,
}

/// Most inputs per embeddings request.
const MAX_EMBEDDING_INPUTS: usize = 256;

async fn embeddings(
    State(state): State<AppState>,
    Json(body): Json<EmbeddingsRequest>,
) -> Result<Json<Value>, ApiError> {
    let inputs: Vec<String> = match &body.input {
        Value::String(text) => vec![text.clone()],
        Value::Array(items) if !items.is_empty() && items.iter().all(Value::is_string) => items
            .iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect(),
        _ => {
            return Err(ApiError::invalid_param(
                "input",
                "input must be a string or a non-empty list of strings",
            ));
        }
    };
    if inputs.len() > MAX_EMBEDDING_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!(
                "{} inputs given; at most {MAX_EMBEDDING_INPUTS}",
                inputs.len()
            ),
        ));
    }
    if body.dimensions.is_some() {
        return Err(ApiError::invalid_param(
            "dimensions",
            "dimensions is not supported: the embedding has the model's width",
        ));
    }
    let base64 = match body.encoding_format.as_deref() {
        None | Some("float") => false,
        Some("base64") => true,
        Some(other) => {
            return Err(ApiError::invalid_param(
                "encoding_format",
                format!("encoding_format {other:?} is not \"float\" or \"base64\""),
            ));
        }
    };
    let result = state.runtime().embed(&body.model, inputs).await?;
    let data: Vec<Value> = result
        .vectors
        .iter()
        .enumerate()
        .map(|(index, vector)| {
            let embedding = match base64 {
                true => Value::from(base64_f32(vector)),
                false => Value::from(vector.iter().map(|&x| f64::from(x)).collect::<Vec<_>>()),
            };
            json!({"object": "embedding", "index": index, "embedding": embedding})
        })
        .collect();
    Ok(Json(json!({
        "object": "list",
        "data": data,
        "model": body.model,
        "usage": {"prompt_tokens": result.prompt_tokens, "total_tokens": result.prompt_tokens},
    })))
}

/// Little-endian f32 bytes in standard base64 with padding, as OpenAI's
/// `encoding_format: "base64"` sends them (the Python SDK asks for this by default).
fn base64_f32(vector: &[f32]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let bytes: Vec<u8> = vector.iter().flat_map(|x| x.to_le_bytes()).collect();
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_standard_encoding() {
        // 1.0f32 = 00 00 80 3f; 2.0f32 = 00 00 00 40 (checked with Python's base64).
        assert_eq!(base64_f32(&[1.0]), "AACAPw==");
        assert_eq!(base64_f32(&[1.0, 2.0]), "AACAPwAAAEA=");
        assert_eq!(base64_f32(&[]), "");
    }
}
