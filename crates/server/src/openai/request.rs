//! OpenAI request bodies and their translation into a runtime [`GenerateRequest`].
//!
//! Fields follow OpenAI's API reference (Chat Completions and legacy Completions). Unknown
//! fields are ignored, as OpenAI's own SDKs send fields older servers do not know; fields
//! that would change the answer but are not supported (`n > 1`, `tools`) are refused
//! rather than ignored. `top_k`, `min_p`, `repeat_penalty` and `ignore_eos` are accepted
//! as extensions, as llama-server does.

use serde::Deserialize;
use serde_json::Value;
use tern_runtime::{Constraint, GenerateRequest, Message, Prompt};

use crate::error::ApiError;
use crate::generation;
use crate::state::AppState;

/// `stop`: one string or a list.
#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

/// Most stop strings per request.
const MAX_STOP: usize = 16;

/// Sampling and length fields shared by both endpoints.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct SamplingFields {
    pub max_tokens: Option<u64>,
    pub max_completion_tokens: Option<u64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub stop: Option<Stop>,
    pub seed: Option<i64>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub top_k: Option<usize>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub ignore_eos: Option<bool>,
    pub n: Option<u32>,
    pub response_format: Option<ResponseFormat>,
}

/// `response_format`.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: JsonSchemaFormat },
}

#[derive(Clone, Debug, Deserialize)]
pub struct JsonSchemaFormat {
    pub name: Option<String>,
    pub schema: Option<Value>,
    pub strict: Option<bool>,
}

#[derive(Clone, Debug, Deserialize)]
pub struct StreamOptions {
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions`.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatRequest {
    pub model: String,
    pub messages: Vec<ChatMessage>,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    pub logprobs: Option<bool>,
    pub top_logprobs: Option<u32>,
    pub tools: Option<Vec<Value>>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

/// One chat message: `content` is a string, `null`, or a list of text parts.
#[derive(Clone, Debug, Deserialize)]
pub struct ChatMessage {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
    #[serde(flatten)]
    pub extra: serde_json::Map<String, Value>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    Text(String),
    Parts(Vec<ContentPart>),
}

#[derive(Clone, Debug, Deserialize)]
pub struct ContentPart {
    #[serde(rename = "type")]
    pub kind: String,
    pub text: Option<String>,
}

/// `POST /v1/completions`: `prompt` is a string, a list of one string, or token ids.
#[derive(Clone, Debug, Deserialize)]
pub struct CompletionRequest {
    pub model: String,
    pub prompt: Value,
    #[serde(default)]
    pub stream: bool,
    pub stream_options: Option<StreamOptions>,
    /// Legacy: the number of alternatives per token (0–5).
    pub logprobs: Option<u32>,
    #[serde(default)]
    pub echo: bool,
    pub suffix: Option<String>,
    pub best_of: Option<u32>,
    #[serde(flatten)]
    pub sampling: SamplingFields,
}

fn check_range(param: &str, value: Option<f32>, low: f32, high: f32) -> Result<(), ApiError> {
    match value {
        Some(v) if !(v.is_finite() && (low..=high).contains(&v)) => Err(ApiError::invalid_param(
            param,
            format!("{param} is {v}; it must be between {low} and {high}"),
        )),
        _ => Ok(()),
    }
}

/// The runtime request for `model` and `prompt` with the shared fields applied over the
/// model's sampling defaults; `prompt_param` names the prompt field in errors.
pub fn generate_request(
    state: &AppState,
    model: &str,
    prompt: Prompt,
    fields: &SamplingFields,
    logprobs: Option<usize>,
) -> Result<GenerateRequest, ApiError> {
    if model.is_empty() {
        return Err(ApiError::invalid_param("model", "model is required"));
    }
    if let Some(n) = fields.n
        && n != 1
    {
        return Err(ApiError::invalid_param(
            "n",
            format!("n is {n}; this server generates one choice per request (n = 1)"),
        ));
    }
    check_range("temperature", fields.temperature, 0.0, 2.0)?;
    check_range("top_p", fields.top_p, 0.0, 1.0)?;
    check_range("min_p", fields.min_p, 0.0, 1.0)?;
    check_range("presence_penalty", fields.presence_penalty, -2.0, 2.0)?;
    check_range("frequency_penalty", fields.frequency_penalty, -2.0, 2.0)?;
    if let Some(p) = fields.repeat_penalty
        && !(p.is_finite() && p > 0.0)
    {
        return Err(ApiError::invalid_param(
            "repeat_penalty",
            format!("repeat_penalty is {p}; it must be greater than 0"),
        ));
    }
    let (requested, param) = match (fields.max_completion_tokens, fields.max_tokens) {
        (Some(n), _) => (Some(n), "max_completion_tokens"),
        (None, n) => (n, "max_tokens"),
    };
    let max_tokens = generation::max_tokens(state, requested, param)?;
    let stop = match &fields.stop {
        None => Vec::new(),
        Some(Stop::One(s)) => vec![s.clone()],
        Some(Stop::Many(list)) => list.clone(),
    };
    if stop.len() > MAX_STOP {
        return Err(ApiError::invalid_param(
            "stop",
            format!("{} stop strings given; at most {MAX_STOP}", stop.len()),
        ));
    }
    if stop.iter().any(String::is_empty) {
        return Err(ApiError::invalid_param(
            "stop",
            "stop strings must not be empty",
        ));
    }
    let mut params = state.runtime().sampling_defaults(model)?;
    if let Some(t) = fields.temperature {
        params.temperature = t;
    }
    if let Some(p) = fields.top_p {
        params.top_p = p;
    }
    if let Some(k) = fields.top_k {
        params.top_k = k;
    }
    if let Some(p) = fields.min_p {
        params.min_p = p;
    }
    if let Some(p) = fields.repeat_penalty {
        params.repeat_penalty = p;
    }
    if let Some(p) = fields.presence_penalty {
        params.presence_penalty = p;
    }
    if let Some(p) = fields.frequency_penalty {
        params.frequency_penalty = p;
    }
    if let Some(seed) = fields.seed {
        // OpenAI's seed is a signed integer; every value names one stream.
        params.seed = Some(seed as u64);
    }
    let constraint = match &fields.response_format {
        None | Some(ResponseFormat::Text) => None,
        Some(ResponseFormat::JsonObject) => Some(Constraint::Json { object_only: true }),
        Some(ResponseFormat::JsonSchema { json_schema }) => Some(match &json_schema.schema {
            Some(schema) => Constraint::JsonSchema(schema.clone()),
            None => Constraint::Json { object_only: true },
        }),
    };
    let mut request = GenerateRequest::new(model, prompt);
    request.params = params;
    request.max_tokens = Some(max_tokens);
    request.stop = stop;
    request.constraint = constraint;
    request.logprobs = logprobs;
    request.ignore_eos = fields.ignore_eos.unwrap_or(false);
    Ok(request)
}

/// Chat messages as the runtime's template sees them.
pub fn chat_messages(messages: &[ChatMessage]) -> Result<Vec<Message>, ApiError> {
    if messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "messages must hold at least one message",
        ));
    }
    messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let content = match &m.content {
                None => String::new(),
                Some(Content::Text(text)) => text.clone(),
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for part in parts {
                        match (part.kind.as_str(), &part.text) {
                            ("text", Some(t)) => text.push_str(t),
                            (kind, _) => {
                                return Err(ApiError::invalid_param(
                                    &format!("messages[{i}].content"),
                                    format!(
                                        "content parts of type {kind:?} are not supported (text only)"
                                    ),
                                ));
                            }
                        }
                    }
                    text
                }
            };
            Ok(Message {
                role: m.role.clone(),
                content,
                extra: m.extra.clone(),
            })
        })
        .collect()
}

/// The legacy `prompt`: a string, `[string]`, or token ids (`[int]` or `[[int]]`).
pub fn completion_prompt(prompt: &Value) -> Result<Prompt, ApiError> {
    let bad = |why: &str| ApiError::invalid_param("prompt", why.to_string());
    let tokens = |items: &[Value]| -> Result<Vec<u32>, ApiError> {
        items
            .iter()
            .map(|v| {
                v.as_u64()
                    .and_then(|n| u32::try_from(n).ok())
                    .ok_or_else(|| bad("token ids must be integers between 0 and 2^32-1"))
            })
            .collect()
    };
    match prompt {
        Value::String(text) => Ok(Prompt::Text(text.clone())),
        Value::Array(items) => match items.as_slice() {
            [Value::String(text)] => Ok(Prompt::Text(text.clone())),
            [Value::Array(ids)] => Ok(Prompt::Tokens(tokens(ids)?)),
            [] => Err(bad("prompt must not be empty")),
            [first, ..] if first.is_number() => Ok(Prompt::Tokens(tokens(items)?)),
            _ => Err(bad(
                "one prompt per request: a string, a list of one string, or token ids",
            )),
        },
        _ => Err(bad("prompt must be a string or a list of token ids")),
    }
}
