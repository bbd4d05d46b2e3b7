//! `POST /v1/completions` (legacy text completions): raw prompt in, text out, streamed
//! as `text_completion` chunks over SSE or returned whole.

use std::time::SystemTime;

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::{Value, json};
use tern_runtime::{Event, Prompt};

use super::logprobs::completion_logprobs;
use super::request::{CompletionRequest, completion_prompt, generate_request};
use super::usage_json;
use crate::error::ApiError;
use crate::extract::Json;
use crate::generation::{self, TokenInfo, response_id, unix_seconds};
use crate::model_files::FileFacts;
use crate::state::AppState;
use crate::stream::{self, Frames, sse_json};

/// Most alternatives per token the legacy API allows.
const MAX_LOGPROBS: u32 = 5;

pub async fn completions(
    State(state): State<AppState>,
    Json(body): Json<CompletionRequest>,
) -> Result<Response, ApiError> {
    if body.best_of.is_some_and(|b| b != 1) {
        return Err(ApiError::invalid_param(
            "best_of",
            "best_of must be 1 on this server",
        ));
    }
    if body.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
        return Err(ApiError::invalid_param(
            "suffix",
            "suffix (fill-in-the-middle) is not supported",
        ));
    }
    if let Some(n) = body.logprobs
        && n > MAX_LOGPROBS
    {
        return Err(ApiError::invalid_param(
            "logprobs",
            format!("logprobs is {n}; at most {MAX_LOGPROBS}"),
        ));
    }
    let prompt = completion_prompt(&body.prompt)?;
    let echo = match (&prompt, body.echo) {
        (Prompt::Text(text), true) => text.clone(),
        (_, true) => {
            return Err(ApiError::invalid_param("echo", "echo needs a text prompt"));
        }
        _ => String::new(),
    };
    let want_logprobs = body.logprobs.is_some();
    let logprobs = body.logprobs.map(|n| n as usize);
    let request = generate_request(&state, &body.model, prompt, &body.sampling, logprobs)?;
    let tracked = generation::start(&state, request, "prompt").await?;
    let model = tracked.model().to_string();
    let facts = match want_logprobs {
        true => super::file_facts(&state, &model).await,
        false => None,
    };
    let id = response_id("cmpl");
    let created = unix_seconds(SystemTime::now());
    if body.stream {
        let include_usage = body.stream_options.is_some_and(|o| o.include_usage);
        let frames = CompletionFrames {
            id,
            created,
            model,
            include_usage,
            facts,
            echo,
            offset: 0,
        };
        return Ok(stream::response(tracked, frames, stream::SSE));
    }
    let completed = tracked.collect(want_logprobs).await?;
    let logprobs = match want_logprobs {
        true => completion_logprobs(&completed.logprobs, echo.len(), facts.as_deref()),
        false => Value::Null,
    };
    Ok(Json(json!({
        "id": id,
        "object": "text_completion",
        "created": created,
        "model": model,
        "system_fingerprint": super::fingerprint(),
        "choices": [{
            "index": 0,
            "text": format!("{echo}{}", completed.text),
            "logprobs": logprobs,
            "finish_reason": completed.finish_reason.as_str(),
        }],
        "usage": usage_json(&completed.usage),
    }))
    .into_response())
}

struct CompletionFrames {
    id: String,
    created: u64,
    model: String,
    include_usage: bool,
    facts: Option<std::sync::Arc<FileFacts>>,
    echo: String,
    /// Bytes of text sent so far (for `text_offset`).
    offset: usize,
}

impl CompletionFrames {
    fn chunk(&self, text: &str, logprobs: Value, finish_reason: Value) -> Bytes {
        let mut chunk = json!({
            "id": self.id,
            "object": "text_completion",
            "created": self.created,
            "model": self.model,
            "system_fingerprint": super::fingerprint(),
            "choices": [{
                "index": 0,
                "text": text,
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

impl Frames for CompletionFrames {
    fn start(&mut self) -> Vec<Bytes> {
        if self.echo.is_empty() {
            return Vec::new();
        }
        let echo = std::mem::take(&mut self.echo);
        self.offset = echo.len();
        vec![self.chunk(&echo, Value::Null, Value::Null)]
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
                    Some(logprob) => {
                        let info = TokenInfo {
                            id,
                            text: text.clone(),
                            logprob,
                            top: top_logprobs,
                        };
                        completion_logprobs(&[info], self.offset, self.facts.as_deref())
                    }
                    None => Value::Null,
                };
                if text.is_empty() && logprobs.is_null() {
                    return Vec::new();
                }
                self.offset += text.len();
                vec![self.chunk(&text, logprobs, Value::Null)]
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                let mut frames =
                    vec![self.chunk("", Value::Null, Value::from(finish_reason.as_str()))];
                if self.include_usage {
                    frames.push(super::usage_frame(
                        &self.id,
                        "text_completion",
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
