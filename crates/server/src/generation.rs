//! What the OpenAI and Ollama handlers share between a parsed request and the runtime:
//! starting a generation within the server's limits, reading its events with the
//! request's deadline while recording latency metrics, and collecting a whole answer
//! for non-streaming responses.
//!
//! A [`Tracked`] stream owns the runtime's `GenerationStream`: when the client goes away,
//! axum drops the response body, the body drops the `Tracked`, and dropping the
//! `GenerationStream` cancels the generation and frees its slot.

use std::time::{Duration, Instant};

use tern_runtime::{Event, FinishReason, GenerateRequest, GenerationStream, RuntimeError, Usage};
use tern_sampler::TokenLogprob;

use crate::error::ApiError;
use crate::state::AppState;

/// Checks the requested `max_tokens` against the server's limit; `None` gets the limit.
pub fn max_tokens(
    state: &AppState,
    requested: Option<u64>,
    param: &str,
) -> Result<usize, ApiError> {
    let limit = state.config().max_tokens;
    match requested {
        None => Ok(limit),
        Some(0) => Err(ApiError::invalid_param(
            param,
            format!("{param} must be at least 1"),
        )),
        Some(n) if n > limit as u64 => Err(ApiError::invalid_param(
            param,
            format!("{param} is {n}, but this server allows at most {limit}"),
        )
        .with_code("max_tokens_exceeded")),
        Some(n) => Ok(n as usize),
    }
}

/// Starts a generation: applies the server's timeout, submits it, and checks the
/// prompt's length against the server's limit (the runtime counts the tokens, after
/// templating; a prompt over the limit is cancelled before it is computed).
pub async fn start(
    state: &AppState,
    mut request: GenerateRequest,
    prompt_param: &str,
) -> Result<Tracked, ApiError> {
    let arrived = Instant::now();
    if request.timeout.is_none() {
        request.timeout = state.config().request_timeout;
    }
    let deadline = request.timeout.map(|t| arrived + t);
    let stream = state.runtime().generate(request).await?;
    if let Some(limit) = state.config().max_prompt_tokens
        && stream.prompt_tokens() > limit
    {
        let tokens = stream.prompt_tokens();
        drop(stream);
        return Err(ApiError::invalid_param(
            prompt_param,
            format!("the prompt has {tokens} tokens, but this server allows at most {limit}"),
        )
        .with_code("prompt_too_long"));
    }
    Ok(Tracked {
        model: stream.model().to_string(),
        stream,
        state: state.clone(),
        arrived,
        deadline,
        last_token: None,
        finished: false,
    })
}

/// A generation whose events update the metrics and respect the request's deadline.
#[derive(Debug)]
pub struct Tracked {
    stream: GenerationStream,
    state: AppState,
    model: String,
    arrived: Instant,
    deadline: Option<Instant>,
    last_token: Option<Instant>,
    finished: bool,
}

impl Tracked {
    /// The model's configured name.
    pub fn model(&self) -> &str {
        &self.model
    }

    /// The next event: a token, the end, or an error (also when the deadline passes or
    /// the runtime ends the stream without saying why). `None` after the end.
    pub async fn next(&mut self) -> Option<Event> {
        if self.finished {
            return None;
        }
        let event = match self.deadline {
            Some(deadline) => {
                match tokio::time::timeout_at(deadline.into(), self.stream.next()).await {
                    Ok(event) => event,
                    Err(_) => Some(Event::Error(RuntimeError::Timeout)),
                }
            }
            None => self.stream.next().await,
        };
        let event = event.unwrap_or_else(|| {
            Event::Error(RuntimeError::Engine(
                "the generation ended without a result".into(),
            ))
        });
        let now = Instant::now();
        match &event {
            Event::Token { .. } => {
                let metrics = self.state.metrics();
                match self.last_token {
                    None => metrics.record_first_token(&self.model, now - self.arrived),
                    Some(last) => metrics.record_token_gap(&self.model, now - last),
                }
                self.last_token = Some(now);
            }
            Event::Done { usage, .. } => {
                self.finished = true;
                self.state.metrics().record_tokens(
                    &self.model,
                    usage.prompt_tokens,
                    usage.completion_tokens,
                );
            }
            Event::Error(_) => self.finished = true,
        }
        Some(event)
    }

    /// Reads the whole answer (non-streaming responses).
    pub async fn collect(mut self, want_logprobs: bool) -> Result<Completed, ApiError> {
        let mut completed = Completed::default();
        while let Some(event) = self.next().await {
            match event {
                Event::Token {
                    text,
                    id,
                    logprob,
                    top_logprobs,
                } => {
                    completed.text.push_str(&text);
                    if want_logprobs {
                        completed.logprobs.push(TokenInfo {
                            id,
                            text,
                            logprob: logprob.unwrap_or(0.0),
                            top: top_logprobs,
                        });
                    }
                }
                Event::Done {
                    finish_reason,
                    usage,
                    timings,
                } => {
                    completed.finish_reason = finish_reason;
                    completed.usage = usage;
                    completed.duration = timings.total;
                    completed.prompt_duration = timings.prompt;
                    return Ok(completed);
                }
                Event::Error(error) => return Err(error.into()),
            }
        }
        Err(ApiError::internal("the generation ended without a result"))
    }
}

/// One generated token with its log-probabilities.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenInfo {
    pub id: u32,
    /// The text the token completed (see `tern_runtime::Event::Token`).
    pub text: String,
    pub logprob: f32,
    pub top: Vec<TokenLogprob>,
}

/// A whole answer.
#[derive(Clone, Debug)]
pub struct Completed {
    pub text: String,
    pub finish_reason: FinishReason,
    pub usage: Usage,
    pub logprobs: Vec<TokenInfo>,
    pub duration: Duration,
    pub prompt_duration: Duration,
}

impl Default for Completed {
    fn default() -> Self {
        Completed {
            text: String::new(),
            finish_reason: FinishReason::Stop,
            usage: Usage::default(),
            logprobs: Vec::new(),
            duration: Duration::ZERO,
            prompt_duration: Duration::ZERO,
        }
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_seconds(time: std::time::SystemTime) -> u64 {
    time.duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A short random-looking id for responses (`chatcmpl-…`), unique within the process.
pub fn response_id(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{:x}{:08x}", n, nanos)
}
