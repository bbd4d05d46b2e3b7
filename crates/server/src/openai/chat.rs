//! `POST /v1/chat/completions`: one answer as a `chat.completion` object, or a stream
//! of `chat.completion.chunk` objects as server-sent events ending with `data: [DONE]`.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tern_runtime::{Event, Prompt};

use super::logprobs::{chat_logprob, chat_logprobs};
use super::request::{ChatRequest, chat_messages, generate_request};
use super::usage_json;
use crate::error::ApiError;
use crate::extract::Json;
use crate::generation::{self, response_id, unix_seconds};
use crate::model_files::FileFacts;
use crate::state::AppState;
use crate::stream::{self, Frames, sse_json};

/// Most alternatives per token OpenAI allows.
const MAX_TOP_LOGPROBS: u32 = 20;

pub async fn chat_completions(
    State(state): State<AppState>,
    Json(body): Json<ChatRequest>,
) -> Result<Response, ApiError> {
    if body.tools.as_ref().is_some_and(|t| !t.is_empty()) {
        return Err(ApiError::invalid_param(
            "tools",
            "tool calling is not supported by this server",
        ));
    }
    let want_logprobs = body.logprobs.unwrap_or(false);
    let top = body.top_logprobs.unwrap_or(0);
    if top > MAX_TOP_LOGPROBS {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            format!("top_logprobs is {top}; at most {MAX_TOP_LOGPROBS}"),
        ));
    }
    if body.top_logprobs.is_some() && !want_logprobs {
        return Err(ApiError::invalid_param(
            "top_logprobs",
            "top_logprobs needs logprobs: true",
        ));
    }
    let messages = chat_messages(&body.messages)?;
    let logprobs = want_logprobs.then_some(top as usize);
    let request = generate_request(
        &state,
        &body.model,
        Prompt::Chat(messages),
        &body.sampling,
        logprobs,
    )?;
    let tracked = generation::start(&state, request, "messages").await?;
    let model = tracked.model().to_string();
    let facts = match want_logprobs {
        true => super::file_facts(&state, &model).await,
        false => None,
    };
    let id = response_id("chatcmpl");
    let created = unix_seconds(SystemTime::now());
    if body.stream {
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let frames = ChatFrames {
            id,
            created,
            model,
            include_usage,
            facts,
        };
        return Ok(stream::response(tracked, frames, stream::SSE));
    }
    let completed = tracked.collect(want_logprobs).await?;
    let logprobs = match want_logprobs {
        true => chat_logprobs(&completed.logprobs, facts.as_deref()),
        false => Value::Null,
    };
    Ok(Json(json!({
        "id": id,
        "object": "chat.completion",
        "created": created,
        "model": model,
        "system_fingerprint": super::fingerprint(),
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": completed.text, "refusal": null},
            "logprobs": logprobs,
            "finish_reason": completed.finish_reason.as_str(),
        }],
        "usage": usage_json(&completed.usage),
    }))
    .into_response())
}

struct ChatFrames {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    facts: Option<std::sync::Arc<FileFacts>>,
}

impl ChatFrames {
    fn chunk(&self, delta: Value, logprobs: Value, finish_reason: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": super::fingerprint(),
            "choices": [{
                "index": 0,
                "delta": delta,
                "logprobs": logprobs,
                "finish_reason": finish_reason,
            }],
        });
        if self.include_usage {
            chunk["usage"] = Value::Null;
        }
        sse_json(&chunk)
    }
}

impl Frames for ChatFrames {
    fn start(&mut self) -> Vec<Bytes> {
        vec![self.chunk(
            json!({"role": "assistant", "content": ""}),
            Value::Null,
            Value::Null,
        )]
    }

    fn event(&mut self, event: Event) -> Vec<Bytes> {
        match event {
            Event::Token {
                text,
                id,
                logprob,
                top_logprobs,
            } => {
                let logprobs = match logprob {
                    Some(lp) => json!({"content": [chat_logprob(
                        &text, id, lp, &top_logprobs, self.facts.as_deref()
                    )]}),
                    None => Value::Null,
                };
                if text.is_empty() && logprobs.is_null() {
                    return Vec::new();
                }
                vec![self.chunk(json!({"content": text}), logprobs, Value::Null)]
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                let mut frames =
                    vec![self.chunk(json!({}), Value::Null, Value::from(finish_reason.as_str()))];
                if self.include_usage {
                    frames.push(super::usage_frame(
                        &self.id,
                        "chat.completion.chunk",
                        self.created,
                        &self.model,
                        &usage,
                    ));
                }
                frames
            }
            Event::Error(error) => vec![sse_json(&ApiError::from(error).openai_body())],
        }
    }

    fn end(&mut self) -> Vec<Bytes> {
        super::done_frame()
    }
}
