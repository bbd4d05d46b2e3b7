//! Prometheus metrics, and the middleware that measures and logs every request.
//!
//! The server's own metrics (requests by route and status, request duration, time to first
//! token and inter-token latency, prompt and generated tokens) are updated as requests run;
//! the runtime's state (queue depth, active sequences, loaded models and their memory, the
//! budget, per-model usage counters) and the process's resident memory are read at scrape
//! time by a collector, so they are never stale. Served in the Prometheus text format
//! 0.0.4 (prometheus-client's `prometheus_text` encoder).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;
use tern_runtime::Runtime;
use tracing::Instrument;

use crate::error::ApiError;
use crate::state::AppState;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: String,
    method: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ModelLabels {
    model: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

/// Seconds, from 5 ms to about 80 s: request durations and time to first token.
fn latency_histogram() -> Histogram {
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0,
    ])
}

/// Seconds, from 1 ms to 2.5 s: the gap between two generated tokens.
fn token_gap_histogram() -> Histogram {
    Histogram::new([
        0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.15, 0.3, 0.6, 1.2, 2.5,
    ])
}

/// The metrics registry and the server's own metrics.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_duration: HistogramFamily<RouteLabels>,
    ttft: HistogramFamily<ModelLabels>,
    inter_token: HistogramFamily<ModelLabels>,
    prompt_tokens: Family<ModelLabels, Counter>,
    generated_tokens: Family<ModelLabels, Counter>,
}

impl Metrics {
    pub fn new(runtime: Runtime) -> Metrics {
        let mut registry = Registry::with_prefix("tern");
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests answered, by route, method and status",
            requests.clone(),
        );
        let request_duration: HistogramFamily<RouteLabels> =
            Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time from a request's arrival to its response headers",
            request_duration.clone(),
        );
        let ttft: HistogramFamily<ModelLabels> = Family::new_with_constructor(latency_histogram);
        registry.register(
            "time_to_first_token_seconds",
            "Time from a generation request's arrival to its first generated token",
            ttft.clone(),
        );
        let inter_token: HistogramFamily<ModelLabels> =
            Family::new_with_constructor(token_gap_histogram);
        registry.register(
            "inter_token_latency_seconds",
            "Time between two generated tokens of one stream",
            inter_token.clone(),
        );
        let prompt_tokens = Family::<ModelLabels, Counter>::default();
        registry.register(
            "prompt_tokens",
            "Prompt tokens of finished generation requests",
            prompt_tokens.clone(),
        );
        let generated_tokens = Family::<ModelLabels, Counter>::default();
        registry.register(
            "generated_tokens",
            "Tokens generated",
            generated_tokens.clone(),
        );
        registry.register_collector(Box::new(RuntimeCollector { runtime }));
        Metrics {
            registry,
            requests,
            request_duration,
            ttft,
            inter_token,
            prompt_tokens,
            generated_tokens,
        }
    }

    fn record_request(&self, route: &str, method: &str, status: StatusCode, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels {
                route: route.to_string(),
                method: method.to_string(),
                status: status.as_u16(),
            })
            .inc();
        self.request_duration
            .get_or_create(&RouteLabels {
                route: route.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// The first token of a generation arrived `elapsed` after the request did.
    pub fn record_first_token(&self, model: &str, elapsed: Duration) {
        self.ttft
            .get_or_create(&model_labels(model))
            .observe(elapsed.as_secs_f64());
    }

    /// Two consecutive tokens of one stream were `gap` apart.
    pub fn record_token_gap(&self, model: &str, gap: Duration) {
        self.inter_token
            .get_or_create(&model_labels(model))
            .observe(gap.as_secs_f64());
    }

    /// A generation finished with these token counts.
    pub fn record_tokens(&self, model: &str, prompt: usize, generated: usize) {
        let labels = model_labels(model);
        self.prompt_tokens
            .get_or_create(&labels)
            .inc_by(prompt as u64);
        self.generated_tokens
            .get_or_create(&labels)
            .inc_by(generated as u64);
    }

    /// The exposition text.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

fn model_labels(model: &str) -> ModelLabels {
    ModelLabels {
        model: model.to_string(),
    }
}

/// Reads the runtime's state at scrape time.
#[derive(Debug)]
struct RuntimeCollector {
    runtime: Runtime,
}

fn gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, i64)],
) -> Result<(), std::fmt::Error> {
    let example = ConstGauge::new(0i64);
    let mut family = encoder.encode_descriptor(name, help, None, example.metric_type())?;
    for (model, value) in values {
        let labels = [("model", *model)];
        ConstGauge::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn single_gauge(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    value: i64,
) -> Result<(), std::fmt::Error> {
    let metric = ConstGauge::new(value);
    metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
}

fn counter(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    values: &[(&str, u64)],
) -> Result<(), std::fmt::Error> {
    let example = ConstCounter::new(0u64);
    let mut family = encoder.encode_descriptor(name, help, None, example.metric_type())?;
    for (model, value) in values {
        let labels = [("model", *model)];
        ConstCounter::new(*value).encode(family.encode_family(&labels)?)?;
    }
    Ok(())
}

fn to_i64(value: impl TryInto<i64>) -> i64 {
    value.try_into().unwrap_or(i64::MAX)
}

impl Collector for RuntimeCollector {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), std::fmt::Error> {
        let snapshot = self.runtime.metrics();
        let models = &snapshot.models;
        let per_model = |f: &dyn Fn(&tern_runtime::ModelMetrics) -> i64| -> Vec<(&str, i64)> {
            models.iter().map(|m| (m.name.as_str(), f(m))).collect()
        };
        let stat = |f: &dyn Fn(&tern_runtime::ModelStats) -> u64| -> Vec<(&str, u64)> {
            models
                .iter()
                .map(|m| (m.name.as_str(), f(&m.stats)))
                .collect()
        };
        gauge(
            &mut encoder,
            "queue_depth",
            "Requests waiting for a sequence slot",
            &per_model(&|m| to_i64(m.queue_depth)),
        )?;
        gauge(
            &mut encoder,
            "active_sequences",
            "Sequences being generated",
            &per_model(&|m| to_i64(m.active_sequences)),
        )?;
        gauge(
            &mut encoder,
            "model_loaded",
            "1 when the model is loaded",
            &per_model(&|m| i64::from(m.loaded)),
        )?;
        gauge(
            &mut encoder,
            "model_memory_estimate_bytes",
            "The footprint estimate the memory budget counts for a loaded model",
            &per_model(&|m| {
                if m.loaded {
                    to_i64(m.bytes_estimate)
                } else {
                    0
                }
            }),
        )?;
        let measured: Vec<(&str, i64)> = models
            .iter()
            .filter_map(|m| m.bytes_measured.map(|b| (m.name.as_str(), to_i64(b))))
            .collect();
        gauge(
            &mut encoder,
            "model_memory_measured_bytes",
            "Resident memory a model's load added, measured after its warm-up",
            &measured,
        )?;
        single_gauge(
            &mut encoder,
            "models_loaded",
            "Models loaded",
            to_i64(models.iter().filter(|m| m.loaded).count()),
        )?;
        single_gauge(
            &mut encoder,
            "memory_budget_bytes",
            "The memory budget of the loaded models",
            to_i64(snapshot.budget_bytes),
        )?;
        single_gauge(
            &mut encoder,
            "memory_reserved_bytes",
            "Bytes reserved by loaded and loading models (their estimates)",
            to_i64(snapshot.reserved_bytes),
        )?;
        let rss = snapshot
            .rss_bytes
            .or_else(tern_runtime::budget::process_rss);
        if let Some(rss) = rss {
            single_gauge(
                &mut encoder,
                "process_resident_memory_bytes",
                "Resident set size of the tern process",
                to_i64(rss),
            )?;
        }
        counter(
            &mut encoder,
            "model_requests",
            "Requests a model accepted",
            &stat(&|s| s.requests),
        )?;
        counter(
            &mut encoder,
            "model_loads",
            "Times a model was loaded",
            &stat(&|s| s.loads),
        )?;
        counter(
            &mut encoder,
            "model_evictions",
            "Times a model was unloaded",
            &stat(&|s| s.eviction_count),
        )?;
        counter(
            &mut encoder,
            "model_forward_calls",
            "Forward passes run",
            &stat(&|s| s.forward_calls),
        )?;
        counter(
            &mut encoder,
            "model_cancelled_requests",
            "Generations cancelled because their client went away",
            &stat(&|s| s.cancelled),
        )?;
        counter(
            &mut encoder,
            "model_rejected_requests",
            "Requests refused because the model's queue was full",
            &stat(&|s| s.rejected_queue_full),
        )?;
        counter(
            &mut encoder,
            "model_timeouts",
            "Requests that timed out",
            &stat(&|s| s.timeouts),
        )?;
        Ok(())
    }
}

/// `GET /metrics`.
pub async fn metrics_handler(State(state): State<AppState>) -> Response {
    match state.metrics().encode() {
        Ok(text) => (
            [(
                header::CONTENT_TYPE,
                prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            )],
            text,
        )
            .into_response(),
        Err(_) => ApiError::internal("encoding the metrics failed").into_response(),
    }
}

/// A request's id: the client's `x-request-id` when it is short and printable, else a
/// new one.
#[derive(Clone, Debug)]
pub struct RequestId(pub Arc<str>);

fn new_request_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    // A start-time prefix keeps ids unique across restarts, a counter within a run.
    static START: std::sync::OnceLock<u64> = std::sync::OnceLock::new();
    let start = *START.get_or_init(|| {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    });
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    format!("{start:x}-{n:06x}")
}

fn client_request_id(request: &Request) -> Option<String> {
    let value = request.headers().get("x-request-id")?.to_str().ok()?;
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b));
    ok.then(|| value.to_string())
}

/// Middleware: gives the request an id, runs it inside a tracing span carrying the id,
/// method and route, logs its outcome (5xx with the error, once), and counts it.
pub async fn observe(State(state): State<AppState>, mut request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = client_request_id(&request).unwrap_or_else(new_request_id);
    // The matched route, not the raw path: unknown paths must not create label values.
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_string(), |p| p.as_str().to_string());
    let method = request.method().to_string();
    request
        .extensions_mut()
        .insert(RequestId(Arc::from(id.as_str())));
    let span = tracing::info_span!("request", id = %id, method = %method, route = %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let elapsed = started.elapsed();
    let status = response.status();
    let _entered = span.enter();
    if status.is_server_error() {
        let message = response
            .extensions()
            .get::<ApiError>()
            .map_or_else(String::new, |e| e.message.clone());
        tracing::error!(status = status.as_u16(), elapsed_ms = elapsed.as_millis() as u64, error = %message, "request failed");
    } else {
        tracing::info!(
            status = status.as_u16(),
            elapsed_ms = elapsed.as_millis() as u64,
            "request answered"
        );
    }
    state
        .metrics()
        .record_request(&route, &method, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_ids_are_unique_and_client_ids_checked() {
        let a = new_request_id();
        let b = new_request_id();
        assert_ne!(a, b);
        let with = |value: &str| {
            let request = Request::builder()
                .header("x-request-id", value)
                .body(axum::body::Body::empty())
                .unwrap();
            client_request_id(&request)
        };
        assert_eq!(with("abc-123").as_deref(), Some("abc-123"));
        assert_eq!(with("has space"), None);
        assert_eq!(with(&"x".repeat(65)), None);
    }
}
