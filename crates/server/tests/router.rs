//! In-process tests of the router (no model needed): routing, auth, error shapes, body and
//! token limits, rate limits, CORS, probes and the metrics exposition.

mod support;

use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use support::*;
use tern_server::{RateLimit, ServerConfig};

fn keyed() -> ServerConfig {
    ServerConfig {
        api_keys: vec!["secret-one".into(), "second-key-that-is-longer".into()],
        ..ServerConfig::default()
    }
}

const CHAT: &str = r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#;

#[tokio::test]
async fn health_and_unknown_routes() {
    let app = app(ServerConfig::default());
    let health = send(&app, get("/health")).await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");

    let missing = send(&app, get("/v1/nothing")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let error = missing.openai_error();
    assert!(error["message"].as_str().unwrap().contains("/v1/nothing"));

    let wrong_method = send(&app, get("/v1/chat/completions")).await;
    assert_eq!(wrong_method.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(wrong_method.openai_error()["code"], "method_not_allowed");

    let models = send(&app, get("/v1/models")).await;
    assert_eq!(models.status, StatusCode::OK);
    assert_eq!(models.json()["object"], "list");
    assert_eq!(models.json()["data"], serde_json::json!([]));

    let version = send(&app, get("/api/version")).await;
    assert_eq!(version.json()["version"], env!("CARGO_PKG_VERSION"));
    let tags = send(&app, get("/api/tags")).await;
    assert_eq!(tags.json()["models"], serde_json::json!([]));
    let ps = send(&app, get("/api/ps")).await;
    assert_eq!(ps.json()["models"], serde_json::json!([]));
}

#[tokio::test]
async fn every_response_carries_a_request_id() {
    let app = app(ServerConfig::default());
    let fresh = send(&app, get("/health")).await;
    let id = fresh.headers["x-request-id"].to_str().unwrap().to_string();
    assert!(!id.is_empty());
    let again = send(&app, get("/health")).await;
    assert_ne!(again.headers["x-request-id"].to_str().unwrap(), id);
    let mut request = get("/health");
    request
        .headers_mut()
        .insert("x-request-id", "client-chosen-1".parse().unwrap());
    let echoed = send(&app, request).await;
    assert_eq!(echoed.headers["x-request-id"], "client-chosen-1");
}

#[tokio::test]
async fn api_keys_are_required_except_for_probes() {
    let app = app(keyed());
    // Probes need no key.
    assert_eq!(send(&app, get("/health")).await.status, StatusCode::OK);
    assert_ne!(
        send(&app, get("/ready")).await.status,
        StatusCode::UNAUTHORIZED
    );

    let missing = send(&app, get("/v1/models")).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let error = missing.openai_error();
    assert_eq!(error["type"], "authentication_error");
    assert!(error["message"].as_str().unwrap().contains("Bearer"));

    for wrong in ["secret-on", "secret-one2", "SECRET-ONE", "", "second-key"] {
        let answer = send(&app, with_key(get("/v1/models"), wrong)).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{wrong:?}");
        assert_eq!(answer.openai_error()["code"], "invalid_api_key");
    }
    // A malformed Authorization header is not a key.
    let mut basic = get("/v1/models");
    basic
        .headers_mut()
        .insert("authorization", "Basic c2VjcmV0LW9uZQ==".parse().unwrap());
    assert_eq!(send(&app, basic).await.status, StatusCode::UNAUTHORIZED);

    for key in ["secret-one", "second-key-that-is-longer"] {
        let answer = send(&app, with_key(get("/v1/models"), key)).await;
        assert_eq!(answer.status, StatusCode::OK, "{key}");
    }
    // Some clients send the key as `x-api-key`.
    let mut header_key = get("/v1/models");
    header_key
        .headers_mut()
        .insert("x-api-key", "secret-one".parse().unwrap());
    assert_eq!(send(&app, header_key).await.status, StatusCode::OK);
    // The scheme is case-insensitive.
    let mut lower = get("/v1/models");
    lower
        .headers_mut()
        .insert("authorization", "bearer secret-one".parse().unwrap());
    assert_eq!(send(&app, lower).await.status, StatusCode::OK);

    // Metrics need the key too.
    assert_eq!(
        send(&app, get("/metrics")).await.status,
        StatusCode::UNAUTHORIZED
    );
}

#[tokio::test]
async fn ollama_routes_take_the_bearer_key_and_answer_in_ollama_shape() {
    let app = app(keyed());
    let missing = send(&app, get("/api/tags")).await;
    assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
    let body = missing.json();
    assert!(body["error"].is_string(), "{body}");
    let ok = send(&app, with_key(get("/api/tags"), "secret-one")).await;
    assert_eq!(ok.status, StatusCode::OK);

    let malformed = send(
        &app,
        with_key(post_json("/api/chat", "{\"model\": "), "secret-one"),
    )
    .await;
    assert_eq!(malformed.status, StatusCode::BAD_REQUEST);
    let body = malformed.json();
    assert!(
        body["error"].as_str().unwrap().contains("invalid JSON"),
        "{body}"
    );
}

#[tokio::test]
async fn malformed_bodies_get_openai_errors() {
    let app = app(ServerConfig::default());
    let syntax = send(
        &app,
        post_json("/v1/chat/completions", "{\"model\": \"m\","),
    )
    .await;
    assert_eq!(syntax.status, StatusCode::BAD_REQUEST);
    let error = syntax.openai_error();
    assert_eq!(error["type"], "invalid_request_error");
    assert_eq!(error["code"], "invalid_json");

    // Valid JSON of the wrong shape: no messages.
    let shape = send(&app, post_json("/v1/chat/completions", r#"{"model":"m"}"#)).await;
    assert_eq!(shape.status, StatusCode::BAD_REQUEST);
    assert!(
        shape.openai_error()["message"]
            .as_str()
            .unwrap()
            .contains("messages")
    );

    let wrong_type = send(
        &app,
        post_json(
            "/v1/completions",
            r#"{"model":"m","prompt":"x","max_tokens":"ten"}"#,
        ),
    )
    .await;
    assert_eq!(wrong_type.status, StatusCode::BAD_REQUEST);
    wrong_type.openai_error();

    let no_content_type = Request::post("/v1/chat/completions")
        .body(Body::from(CHAT))
        .unwrap();
    let answer = send(&app, no_content_type).await;
    assert_eq!(answer.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    answer.openai_error();
}

#[tokio::test]
async fn oversized_bodies_are_refused_with_413() {
    let app = app(ServerConfig {
        max_body_bytes: 4096,
        ..ServerConfig::default()
    });
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "x".repeat(5000)
    );
    let answer = send(&app, post_json("/v1/chat/completions", &big)).await;
    assert_eq!(answer.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(answer.openai_error()["code"], "request_too_large");

    // Also without a Content-Length (a streamed body).
    let chunks = vec![Ok::<_, std::io::Error>(big.clone().into_bytes())];
    let streamed = Request::post("/v1/chat/completions")
        .header("content-type", "application/json")
        .body(Body::from_stream(futures_util::stream::iter(chunks)))
        .unwrap();
    assert_eq!(
        send(&app, streamed).await.status,
        StatusCode::PAYLOAD_TOO_LARGE
    );

    let ollama = send(&app, post_json("/api/generate", &big)).await;
    assert_eq!(ollama.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert!(ollama.json()["error"].is_string());
}

#[tokio::test]
async fn request_fields_are_checked_before_any_model_work() {
    let app = app(ServerConfig {
        max_tokens: 256,
        ..ServerConfig::default()
    });
    let cases = [
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_tokens":257}"#,
            "max_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"max_completion_tokens":100000}"#,
            "max_completion_tokens",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"temperature":3}"#,
            "temperature",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_p":1.5}"#,
            "top_p",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"n":2}"#,
            "n",
        ),
        (r#"{"model":"m","messages":[]}"#, "messages"),
        (
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}],"top_logprobs":3}"#,
            "top_logprobs",
        ),
        (
            r#"{"model":"m","messages":[{"role":"user","content":[{"type":"image_url"}]}]}"#,
            "messages[0].content",
        ),
    ];
    for (body, param) in cases {
        let answer = send(&app, post_json("/v1/chat/completions", body)).await;
        assert_eq!(answer.status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(answer.openai_error()["param"], param, "{body}");
    }
    let over = send(
        &app,
        post_json(
            "/v1/completions",
            r#"{"model":"m","prompt":"x","max_tokens":1000}"#,
        ),
    )
    .await;
    assert_eq!(over.status, StatusCode::BAD_REQUEST);
    let error = over.openai_error();
    assert_eq!(error["code"], "max_tokens_exceeded");
    assert!(error["message"].as_str().unwrap().contains("256"));

    let ollama = send(
        &app,
        post_json(
            "/api/generate",
            r#"{"model":"m","prompt":"x","options":{"num_predict":1000}}"#,
        ),
    )
    .await;
    assert_eq!(ollama.status, StatusCode::BAD_REQUEST);
    assert!(
        ollama.json()["error"]
            .as_str()
            .unwrap()
            .contains("num_predict")
    );
}

#[tokio::test]
async fn unknown_models_are_404() {
    let app = app(ServerConfig::default());
    let answer = send(&app, post_json("/v1/chat/completions", CHAT)).await;
    assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text());
    let error = answer.openai_error();
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");
    let ollama = send(
        &app,
        post_json(
            "/api/chat",
            r#"{"model":"m","messages":[{"role":"user","content":"hi"}]}"#,
        ),
    )
    .await;
    assert_eq!(ollama.status, StatusCode::NOT_FOUND);
    assert!(ollama.json()["error"].is_string());
    let show = send(&app, post_json("/api/show", r#"{"model":"m"}"#)).await;
    assert_eq!(show.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn rate_limits_are_per_key_with_retry_after() {
    let app = app(ServerConfig {
        rate_limit: Some(RateLimit {
            requests_per_minute: 6.0,
            burst: 2,
        }),
        ..keyed()
    });
    for _ in 0..2 {
        let ok = send(&app, with_key(get("/v1/models"), "secret-one")).await;
        assert_eq!(ok.status, StatusCode::OK);
    }
    let limited = send(&app, with_key(get("/v1/models"), "secret-one")).await;
    assert_eq!(limited.status, StatusCode::TOO_MANY_REQUESTS);
    let error = limited.openai_error();
    assert_eq!(error["code"], "rate_limit_exceeded");
    // 6 per minute: the next token comes within 10 seconds.
    let retry: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=10).contains(&retry), "{retry}");
    // The other key has its own bucket; probes are never limited.
    let other = send(
        &app,
        with_key(get("/v1/models"), "second-key-that-is-longer"),
    )
    .await;
    assert_eq!(other.status, StatusCode::OK);
    assert_eq!(send(&app, get("/health")).await.status, StatusCode::OK);
    // A wrong key is refused before it can use anyone's bucket.
    let wrong = send(&app, with_key(get("/v1/models"), "nope")).await;
    assert_eq!(wrong.status, StatusCode::UNAUTHORIZED);
}

#[tokio::test]
async fn cors_is_off_unless_configured() {
    let preflight = || {
        Request::options("/v1/chat/completions")
            .header("origin", "http://app.example")
            .header("access-control-request-method", "POST")
            .header(
                "access-control-request-headers",
                "authorization,content-type",
            )
            .body(Body::empty())
            .unwrap()
    };
    let off = app(keyed());
    let answer = send(&off, preflight()).await;
    assert!(!answer.headers.contains_key("access-control-allow-origin"));
    let mut request = get("/health");
    request
        .headers_mut()
        .insert("origin", "http://app.example".parse().unwrap());
    assert!(
        !send(&off, request)
            .await
            .headers
            .contains_key("access-control-allow-origin")
    );

    let on = app(ServerConfig {
        cors_origins: vec!["http://app.example".into()],
        ..keyed()
    });
    let answer = send(&on, preflight()).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.headers["access-control-allow-origin"],
        "http://app.example"
    );
    let other = Request::options("/v1/models")
        .header("origin", "http://evil.example")
        .header("access-control-request-method", "GET")
        .body(Body::empty())
        .unwrap();
    assert!(
        !send(&on, other)
            .await
            .headers
            .contains_key("access-control-allow-origin")
    );
}

#[tokio::test]
async fn readiness_follows_models_and_draining() {
    let (app, state) = app_with_state(ServerConfig::default());
    // No models to serve: alive but not ready.
    let answer = send(&app, get("/ready")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["status"], "no models to serve");
    state.begin_draining();
    let answer = send(&app, get("/ready")).await;
    assert_eq!(answer.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(answer.json()["status"], "shutting down");
    assert_eq!(send(&app, get("/health")).await.status, StatusCode::OK);
}

#[tokio::test]
async fn metrics_exposition_parses_and_counts_requests() {
    let app = app(ServerConfig::default());
    for _ in 0..3 {
        send(&app, get("/health")).await;
    }
    send(&app, get("/no/such/path")).await;
    send(&app, post_json("/v1/chat/completions", "{")).await;
    let answer = send(&app, get("/metrics")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        answer.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain; version=0.0.4"),
        "{:?}",
        answer.headers["content-type"]
    );
    let text = answer.text();
    let samples = parse_exposition(&text);
    let requests = |route: &str, status: &str| {
        samples
            .iter()
            .find(|s| {
                s.name == "tern_http_requests_total"
                    && s.label("route") == Some(route)
                    && s.label("status") == Some(status)
            })
            .map(|s| s.value)
    };
    assert_eq!(requests("/health", "200"), Some(3.0), "{text}");
    assert_eq!(requests("unmatched", "404"), Some(1.0), "{text}");
    assert_eq!(requests("/v1/chat/completions", "400"), Some(1.0), "{text}");
    // The duration histogram has cumulative buckets ending at +Inf = count.
    let buckets: Vec<&Sample> = samples
        .iter()
        .filter(|s| {
            s.name == "tern_http_request_duration_seconds_bucket"
                && s.label("route") == Some("/health")
        })
        .collect();
    assert!(buckets.windows(2).all(|w| w[0].value <= w[1].value));
    assert_eq!(buckets.last().and_then(|b| b.label("le")), Some("+Inf"));
    assert_eq!(buckets.last().map(|b| b.value), Some(3.0));
    // Runtime gauges are present even with no models.
    for name in [
        "tern_memory_budget_bytes",
        "tern_models_loaded",
        "tern_process_resident_memory_bytes",
    ] {
        assert!(samples.iter().any(|s| s.name == name), "{name} in {text}");
    }
    let rss = samples
        .iter()
        .find(|s| s.name == "tern_process_resident_memory_bytes")
        .unwrap();
    assert!(rss.value > 1e6, "{rss:?}");
    // Per-model families are declared even before any model exists (the latency
    // histograms appear with the first generation: see the model tests).
    for family in [
        "tern_queue_depth",
        "tern_active_sequences",
        "tern_model_memory_estimate_bytes",
        "tern_model_requests_total",
    ] {
        assert!(
            text.contains(&format!("# TYPE {family}")),
            "{family} declared in {text}"
        );
    }
}

#[tokio::test]
async fn pull_without_a_store_is_a_clear_error() {
    let app = app(ServerConfig::default());
    let answer = send(&app, post_json("/api/pull", r#"{"model":"x"}"#)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(answer.json()["error"].as_str().unwrap().contains("store"));
}

#[tokio::test]
async fn pull_streams_progress_and_installs_into_the_store() {
    let home = tempfile::tempdir().expect("temp dir");
    let store =
        tern_store::Store::open(tern_store::StoreConfig::with_home(home.path())).expect("store");
    let state = tern_server::AppState::with_store(
        empty_runtime(),
        ServerConfig::default(),
        std::sync::Arc::new(store),
    );
    let app = tern_server::router(state.clone());
    let source = tern_testkit::model_path(tern_testkit::TestModel::SmolLm2_135m);
    let body = serde_json::json!({"model": source}).to_string();
    let answer = send(&app, post_json("/api/pull", &body)).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.headers["content-type"], "application/x-ndjson");
    let lines: Vec<serde_json::Value> = answer
        .text()
        .lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON"))
        .collect();
    assert_eq!(lines[0]["status"], "pulling manifest");
    let size = std::fs::metadata(&source).unwrap().len();
    assert!(
        lines
            .iter()
            .any(|l| l["total"] == size && l["completed"] == size),
        "{lines:?}"
    );
    let last = lines.last().unwrap();
    assert_eq!(last["status"], "success", "{lines:?}");
    assert!(last["digest"].as_str().unwrap().starts_with("sha256:"));
    let installed = state.store().unwrap().list().expect("list");
    assert_eq!(installed.len(), 1);
    assert_eq!(installed[0].manifest.size, size);

    // Not streamed: one object; a bad reference is an error in Ollama's shape.
    let body = serde_json::json!({"model": source, "stream": false}).to_string();
    let answer = send(&app, post_json("/api/pull", &body)).await;
    assert_eq!(answer.json()["status"], "success");
    let missing = serde_json::json!({"model": "/no/such/file.gguf", "stream": false}).to_string();
    let answer = send(&app, post_json("/api/pull", &missing)).await;
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    assert!(
        answer.json()["error"]
            .as_str()
            .unwrap()
            .contains("/no/such/file.gguf")
    );
}

#[tokio::test]
async fn ready_with_a_servable_model_even_before_it_loads() {
    let entry = tern_runtime::ModelEntry::new(
        "small",
        tern_testkit::model_path(tern_testkit::TestModel::SmolLm2_135m),
    );
    let runtime = tern_runtime::Runtime::new(tern_runtime::RuntimeConfig {
        models: vec![entry],
        ..tern_runtime::RuntimeConfig::default()
    })
    .expect("runtime");
    let app = tern_server::router(tern_server::AppState::new(runtime, ServerConfig::default()));
    let answer = send(&app, get("/ready")).await;
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.json()["status"], "ready");
    assert_eq!(answer.json()["loaded"], serde_json::json!([]));
}

#[test]
fn timeouts_have_defaults() {
    let config = ServerConfig::default();
    assert_eq!(config.request_timeout, Some(Duration::from_secs(600)));
    assert!(config.validate().is_ok());
}
