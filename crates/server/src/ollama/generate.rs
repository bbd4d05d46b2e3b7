//! `/api/generate` and `/api/chat`: NDJSON streams of partial answers (Ollama streams by
//! default) or one final object, with Ollama's `options`, `format` and `keep_alive`.
//!
//! Ollama's conventions kept here: a request without a prompt (or messages) only loads
//! the model, or unloads it when `keep_alive` is 0; `/api/generate` applies the model's
//! chat template unless `raw` is set; durations are nanoseconds.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tern_runtime::{
    Constraint, Event, GenerateRequest, KeepAlive, Message, Prompt, Timings, Usage,
};

use super::{nanos, rfc3339};
use crate::error::ApiError;
use crate::extract::Json;
use crate::generation::{self, Completed};
use crate::state::AppState;
use crate::stream::{self, Frames, ndjson};

/// Ollama's `options` (the ones that change generation; others are accepted and
/// ignored, as Ollama ignores options a runner does not use).
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Options {
    pub num_predict: Option<i64>,
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<usize>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<i64>,
    pub stop: Option<Vec<String>>,
}

fn default_stream() -> bool {
    true
}

#[derive(Debug, Deserialize)]
pub struct GenerateBody {
    model: String,
    #[serde(default)]
    prompt: String,
    system: Option<String>,
    #[serde(default)]
    raw: bool,
    #[serde(default = "default_stream")]
    stream: bool,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    images: Vec<Value>,
}

#[derive(Debug, Deserialize)]
pub struct ChatBody {
    model: String,
    #[serde(default)]
    messages: Vec<ChatMessage>,
    #[serde(default = "default_stream")]
    stream: bool,
    format: Option<Value>,
    #[serde(default)]
    options: Options,
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    tools: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct ChatMessage {
    role: String,
    #[serde(default)]
    content: String,
    #[serde(default)]
    images: Vec<Value>,
    #[serde(flatten)]
    extra: Map<String, Value>,
}

fn invalid(message: impl Into<String>) -> ApiError {
    ApiError::bad_request(message)
}

/// `format`: `"json"`, a JSON Schema object, or absent / `""`.
fn constraint(format: Option<&Value>) -> Result<Option<Constraint>, ApiError> {
    match format {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) if s == "json" => Ok(Some(Constraint::Json { object_only: true })),
        Some(schema @ Value::Object(_)) => Ok(Some(Constraint::JsonSchema(schema.clone()))),
        Some(other) => Err(invalid(format!(
            "format must be \"json\" or a JSON Schema object, not {other}"
        ))),
    }
}

fn runtime_request(
    state: &AppState,
    model: &str,
    prompt: Prompt,
    options: &Options,
    format: Option<&Value>,
    keep_alive: Option<KeepAlive>,
) -> Result<GenerateRequest, ApiError> {
    if model.is_empty() {
        return Err(invalid("model is required"));
    }
    // num_predict: -1 generates until the end, -2 until the context is full; both are
    // bounded by the server's max_tokens limit.
    let requested = match options.num_predict {
        None => None,
        Some(n) if n < 0 => None,
        Some(n) => Some(n as u64),
    };
    let max_tokens = generation::max_tokens(state, requested, "num_predict")?;
    let mut params = state.runtime().sampling_defaults(model)?;
    let o = options;
    if let Some(v) = o.temperature {
        params.temperature = v;
    }
    if let Some(v) = o.top_k {
        params.top_k = v;
    }
    if let Some(v) = o.top_p {
        params.top_p = v;
    }
    if let Some(v) = o.min_p {
        params.min_p = v;
    }
    if let Some(v) = o.repeat_penalty {
        params.repeat_penalty = v;
    }
    if let Some(v) = o.repeat_last_n {
        params.repeat_last_n = v;
    }
    if let Some(v) = o.presence_penalty {
        params.presence_penalty = v;
    }
    if let Some(v) = o.frequency_penalty {
        params.frequency_penalty = v;
    }
    if let Some(seed) = o.seed {
        params.seed = Some(seed as u64);
    }
    params
        .validate()
        .map_err(|e| invalid(format!("options: {e}")))?;
    let stop = o.stop.clone().unwrap_or_default();
    if stop.iter().any(String::is_empty) {
        return Err(invalid("options.stop: stop strings must not be empty"));
    }
    let mut request = GenerateRequest::new(model, prompt);
    request.params = params;
    request.max_tokens = Some(max_tokens);
    request.stop = stop;
    request.constraint = constraint(format)?;
    request.keep_alive = keep_alive;
    Ok(request)
}

/// A request with nothing to generate: unload the model (`keep_alive` 0) or load it.
async fn load_or_unload(
    state: &AppState,
    model: &str,
    keep_alive: Option<KeepAlive>,
    chat: bool,
) -> Result<Response, ApiError> {
    let reason = if keep_alive == Some(KeepAlive::For(std::time::Duration::ZERO)) {
        state.runtime().unload(model).await?;
        "unload"
    } else {
        // The runtime loads a model to serve a generation, so loading is the smallest
        // one: a one-token prompt (id 0 is in every vocabulary), one token out.
        let mut request = GenerateRequest::new(model, Prompt::Tokens(vec![0]));
        request.max_tokens = Some(1);
        request.keep_alive = keep_alive;
        let tracked = generation::start(state, request, "prompt").await?;
        tracked.collect(false).await?;
        "load"
    };
    let mut body = json!({
        "model": model,
        "created_at": rfc3339(SystemTime::now()),
        "done": true,
        "done_reason": reason,
    });
    if chat {
        body["message"] = json!({"role": "assistant", "content": ""});
    } else {
        body["response"] = Value::from("");
    }
    Ok(Json(body).into_response())
}

pub async fn generate(
    State(state): State<AppState>,
    Json(body): Json<GenerateBody>,
) -> Result<Response, ApiError> {
    if !body.images.is_empty() {
        return Err(invalid(
            "images are not supported: this server runs text models",
        ));
    }
    if body.prompt.is_empty() && body.system.is_none() {
        return load_or_unload(&state, &body.model, body.keep_alive, false).await;
    }
    let prompt = if body.raw {
        Prompt::Text(body.prompt.clone())
    } else {
        let mut messages = Vec::new();
        if let Some(system) = &body.system {
            messages.push(Message::system(system.clone()));
        }
        messages.push(Message::user(body.prompt.clone()));
        Prompt::Chat(messages)
    };
    let request = runtime_request(
        &state,
        &body.model,
        prompt,
        &body.options,
        body.format.as_ref(),
        body.keep_alive,
    )?;
    respond(&state, request, body.stream, false).await
}

pub async fn chat(
    State(state): State<AppState>,
    Json(body): Json<ChatBody>,
) -> Result<Response, ApiError> {
    if !body.tools.is_empty() {
        return Err(invalid("tools are not supported by this server"));
    }
    if body.messages.is_empty() {
        return load_or_unload(&state, &body.model, body.keep_alive, true).await;
    }
    if body.messages.iter().any(|m| !m.images.is_empty()) {
        return Err(invalid(
            "images are not supported: this server runs text models",
        ));
    }
    let messages = body
        .messages
        .into_iter()
        .map(|m| Message {
            role: m.role,
            content: m.content,
            extra: m.extra,
        })
        .collect();
    let request = runtime_request(
        &state,
        &body.model,
        Prompt::Chat(messages),
        &body.options,
        body.format.as_ref(),
        body.keep_alive,
    )?;
    respond(&state, request, body.stream, true).await
}

async fn respond(
    state: &AppState,
    request: GenerateRequest,
    stream: bool,
    chat: bool,
) -> Result<Response, ApiError> {
    // Ollama echoes the name the client used.
    let model = request.model.clone();
    let prompt_param = if chat { "messages" } else { "prompt" };
    let tracked = generation::start(state, request, prompt_param).await?;
    if stream {
        let frames = OllamaFrames { model, chat };
        return Ok(stream::response(tracked, frames, stream::NDJSON));
    }
    let completed: Completed = tracked.collect(false).await?;
    let timings = Timings {
        prompt: completed.prompt_duration,
        total: completed.duration,
        ..Timings::default()
    };
    let mut body = final_object(
        &model,
        chat,
        completed.finish_reason,
        &completed.usage,
        &timings,
    );
    set_text(&mut body, chat, &completed.text);
    Ok(Json(body).into_response())
}

fn set_text(object: &mut Value, chat: bool, text: &str) {
    if chat {
        object["message"] = json!({"role": "assistant", "content": text});
    } else {
        object["response"] = Value::from(text);
    }
}

fn final_object(
    model: &str,
    chat: bool,
    finish: tern_runtime::FinishReason,
    usage: &Usage,
    timings: &Timings,
) -> Value {
    let mut object = json!({
        "model": model,
        "created_at": rfc3339(SystemTime::now()),
        "done": true,
        "done_reason": finish.as_str(),
        "total_duration": nanos(timings.total),
        "load_duration": 0,
        "prompt_eval_count": usage.prompt_tokens,
        "prompt_eval_duration": nanos(timings.prompt),
        "eval_count": usage.completion_tokens,
        "eval_duration": nanos(timings.total.saturating_sub(timings.prompt)),
    });
    set_text(&mut object, chat, "");
    object
}

struct OllamaFrames {
    model: String,
    chat: bool,
}

impl Frames for OllamaFrames {
    fn event(&mut self, event: Event) -> Vec<Bytes> {
        match event {
            Event::Token { text, .. } => {
                if text.is_empty() {
                    return Vec::new();
                }
                let mut object = json!({
                    "model": self.model,
                    "created_at": rfc3339(SystemTime::now()),
                    "done": false,
                });
                set_text(&mut object, self.chat, &text);
                vec![ndjson(&object)]
            }
            Event::Done {
                finish_reason,
                usage,
                timings,
            } => vec![ndjson(&final_object(
                &self.model,
                self.chat,
                finish_reason,
                &usage,
                &timings,
            ))],
            Event::Error(error) => vec![ndjson(&json!({"error": ApiError::from(error).message}))],
        }
    }
}
