//! Streaming response bodies: SSE for OpenAI, NDJSON for Ollama.
//!
//! A [`Frames`] value turns each runtime event into bytes to send; [`body`] drives it
//! from a [`Tracked`] generation with `futures_util::stream::unfold`, so the generation
//! lives inside the response body: when the client disconnects, hyper drops the body,
//! which drops the generation stream and cancels it in the runtime at once.

use std::collections::VecDeque;
use std::convert::Infallible;

use axum::body::Body;
use axum::http::{HeaderValue, header};
use axum::response::Response;
use bytes::Bytes;
use tern_runtime::Event;

use crate::generation::Tracked;

/// Turns events into the bytes of one streaming format.
pub trait Frames: Send + 'static {
    /// Sent before the first event.
    fn start(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
    /// Bytes for one event (an error event ends the stream after its bytes).
    fn event(&mut self, event: Event) -> Vec<Bytes>;
    /// Sent after the last event when the stream ended normally (`data: [DONE]`).
    fn end(&mut self) -> Vec<Bytes> {
        Vec::new()
    }
}

struct Driver<F> {
    tracked: Tracked,
    frames: F,
    pending: VecDeque<Bytes>,
    started: bool,
    finished: bool,
}

/// A streaming response body of `content_type`.
pub fn response<F: Frames>(tracked: Tracked, frames: F, content_type: &'static str) -> Response {
    let driver = Driver {
        tracked,
        frames,
        pending: VecDeque::new(),
        started: false,
        finished: false,
    };
    let stream = futures_util::stream::unfold(driver, |mut d| async move {
        loop {
            if let Some(bytes) = d.pending.pop_front() {
                return Some((Ok::<Bytes, Infallible>(bytes), d));
            }
            if d.finished {
                return None;
            }
            if !d.started {
                d.started = true;
                let start = d.frames.start();
                d.pending.extend(start);
                continue;
            }
            match d.tracked.next().await {
                Some(event) => {
                    let last = matches!(event, Event::Done { .. } | Event::Error(_));
                    let is_error = matches!(event, Event::Error(_));
                    let bytes = d.frames.event(event);
                    d.pending.extend(bytes);
                    if last {
                        d.finished = true;
                        if !is_error {
                            let end = d.frames.end();
                            d.pending.extend(end);
                        }
                    }
                }
                None => d.finished = true,
            }
        }
    });
    let mut response = Response::new(Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    // Tell reverse proxies (nginx) not to buffer the stream.
    headers.insert("x-accel-buffering", HeaderValue::from_static("no"));
    response
}

/// One SSE `data:` frame holding `value` as JSON.
pub fn sse_json(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("data: {value}\n\n"))
}

/// One NDJSON line.
pub fn ndjson(value: &serde_json::Value) -> Bytes {
    Bytes::from(format!("{value}\n"))
}

pub const SSE: &str = "text/event-stream";
pub const NDJSON: &str = "application/x-ndjson";
