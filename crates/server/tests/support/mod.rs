//! Shared helpers: build the router over a runtime, send one request in-process
//! (axum `examples/testing`), and parse the Prometheus text format strictly.

#![allow(dead_code)]

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use http_body_util::BodyExt;
use tern_runtime::{Runtime, RuntimeConfig};
use tern_server::{AppState, ServerConfig, router};
use tower::ServiceExt;

/// A runtime that serves no models (enough for everything that happens before a model
/// is needed).
pub fn empty_runtime() -> Runtime {
    Runtime::new(RuntimeConfig::default()).expect("runtime without models")
}

pub fn app(config: ServerConfig) -> Router {
    router(AppState::new(empty_runtime(), config))
}

pub fn app_with_state(config: ServerConfig) -> (Router, AppState) {
    let state = AppState::new(empty_runtime(), config);
    (router(state.clone()), state)
}

/// A response, read whole.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

impl Answer {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("body is not JSON ({e}): {}", self.text()))
    }

    /// Checks OpenAI's error shape and returns the error object.
    pub fn openai_error(&self) -> serde_json::Map<String, serde_json::Value> {
        let body = self.json();
        let error = body["error"]
            .as_object()
            .unwrap_or_else(|| panic!("no error object: {body}"))
            .clone();
        let mut keys: Vec<&str> = error.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["code", "message", "param", "type"], "{body}");
        assert!(
            error["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
        assert!(error["type"].is_string(), "{body}");
        error
    }
}

pub async fn send(app: &Router, request: Request<Body>) -> Answer {
    let response = app.clone().oneshot(request).await.expect("infallible");
    let status = response.status();
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .expect("body")
        .to_bytes()
        .to_vec();
    Answer {
        status,
        headers,
        body,
    }
}

pub fn get(path: &str) -> Request<Body> {
    Request::get(path).body(Body::empty()).expect("request")
}

pub fn post_json(path: &str, body: &str) -> Request<Body> {
    Request::post(path)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("request")
}

pub fn with_key(mut request: Request<Body>, key: &str) -> Request<Body> {
    request.headers_mut().insert(
        "authorization",
        format!("Bearer {key}").parse().expect("header"),
    );
    request
}

/// One sample line of the exposition format.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: Vec<(String, String)>,
    pub value: f64,
}

impl Sample {
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn is_metric_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
}

/// Parses the Prometheus text format 0.0.4 strictly: `# HELP` / `# TYPE` lines with a
/// known type, each family's TYPE before its samples, valid names, quoted and escaped
/// label values, float values; every sample's family declared. Panics naming the line.
pub fn parse_exposition(text: &str) -> Vec<Sample> {
    let mut types: std::collections::HashMap<String, String> = Default::default();
    let mut samples = Vec::new();
    assert!(text.ends_with('\n'), "exposition must end with a newline");
    for (n, line) in text.lines().enumerate() {
        let at = || format!("line {}: {line:?}", n + 1);
        if line.is_empty() {
            continue;
        }
        if let Some(rest) = line.strip_prefix("# ") {
            let mut parts = rest.splitn(3, ' ');
            let kind = parts.next().unwrap_or_default();
            let name = parts.next().unwrap_or_default();
            assert!(is_metric_name(name), "bad name, {}", at());
            match kind {
                "HELP" => {}
                "TYPE" => {
                    let t = parts.next().unwrap_or_default();
                    assert!(
                        ["counter", "gauge", "histogram", "summary", "untyped"].contains(&t),
                        "bad type, {}",
                        at()
                    );
                    assert!(
                        types.insert(name.to_string(), t.to_string()).is_none(),
                        "family declared twice, {}",
                        at()
                    );
                }
                _ => panic!("unknown comment, {}", at()),
            }
            continue;
        }
        let (name_and_labels, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{}", at()));
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            "NaN" => f64::NAN,
            v => v.parse().unwrap_or_else(|_| panic!("bad value, {}", at())),
        };
        let (name, labels) = match name_and_labels.split_once('{') {
            None => (name_and_labels.to_string(), Vec::new()),
            Some((name, rest)) => {
                let inner = rest
                    .strip_suffix('}')
                    .unwrap_or_else(|| panic!("unclosed labels, {}", at()));
                (name.to_string(), parse_labels(inner, &at()))
            }
        };
        assert!(is_metric_name(&name), "bad name, {}", at());
        let family = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|s| {
                name.strip_suffix(s)
                    .filter(|base| types.get(*base).map(String::as_str) == Some("histogram"))
            })
            .unwrap_or(&name)
            .to_string();
        assert!(
            types.contains_key(&family),
            "sample without a TYPE line, {}",
            at()
        );
        samples.push(Sample {
            name,
            labels,
            value,
        });
    }
    samples
}

fn parse_labels(mut text: &str, at: &str) -> Vec<(String, String)> {
    let mut labels = Vec::new();
    while !text.is_empty() {
        let (key, rest) = text
            .split_once("=\"")
            .unwrap_or_else(|| panic!("bad label, {at}"));
        assert!(is_metric_name(key), "bad label name {key:?}, {at}");
        let mut value = String::new();
        let mut chars = rest.char_indices();
        let end = loop {
            match chars.next() {
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => panic!("bad escape, {at}"),
                },
                Some((i, '"')) => break i,
                Some((_, c)) => value.push(c),
                None => panic!("unterminated label value, {at}"),
            }
        };
        labels.push((key.to_string(), value));
        text = &rest[end + 1..];
        text = text.strip_prefix(',').unwrap_or(text);
    }
    labels
}
