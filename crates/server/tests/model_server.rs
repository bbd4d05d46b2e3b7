//! The server over a real runtime serving SmolLM2-135M, on a loopback socket: both APIs
//! streaming and not, structured output, logprobs, metrics after generation, bounded
//! concurrency, queue-full backpressure, client disconnects, timeouts and graceful
//! shutdown. One compute thread per test (the runner runs `model_*` tests one at a time).

mod support;

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tern_runtime::{ModelEntry, Runtime, RuntimeConfig};
use tern_server::{AppState, ServerConfig};
use tern_testkit::{TestModel, model_path};
use tokio::sync::oneshot;

const MODEL: &str = "smollm2";

struct Server {
    base: String,
    state: AppState,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    client: reqwest::Client,
}

async fn start(config: ServerConfig, parallel: usize, queue_capacity: usize) -> Server {
    let mut entry = ModelEntry::new(MODEL, model_path(TestModel::SmolLm2_135m));
    entry.aliases = vec!["smollm2-135m-instruct".into()];
    entry.ctx_size = 1024;
    entry.parallel = parallel;
    let runtime = Runtime::new(RuntimeConfig {
        models: vec![entry],
        threads: 1,
        queue_capacity,
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let state = AppState::new(runtime, config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let base = format!("http://{}", listener.local_addr().expect("address"));
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(tern_server::serve(listener, state.clone(), async move {
        let _ = stopped.await;
    }));
    Server {
        base,
        state,
        stop: Some(stop),
        task,
        client: http_client(),
    }
}

/// A plain-HTTP client (the workspace's reqwest needs a TLS provider chosen first).
fn http_client() -> reqwest::Client {
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::new()
}

impl Server {
    async fn post(&self, path: &str, body: &Value) -> reqwest::Response {
        self.client
            .post(format!("{}{path}", self.base))
            .json(body)
            .send()
            .await
            .expect("request sent")
    }

    async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let response = self.post(path, body).await;
        let status = response.status().as_u16();
        let bytes = response.bytes().await.expect("body");
        let value = serde_json::from_slice(&bytes)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&bytes)));
        (status, value)
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = self
            .client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent");
        response.json_value().await
    }

    async fn get_text(&self, path: &str) -> String {
        self.client
            .get(format!("{}{path}", self.base))
            .send()
            .await
            .expect("request sent")
            .text()
            .await
            .expect("text")
    }
}

trait JsonValue {
    async fn json_value(self) -> Value;
}

impl JsonValue for reqwest::Response {
    async fn json_value(self) -> Value {
        let bytes = self.bytes().await.expect("body");
        serde_json::from_slice(&bytes).expect("JSON body")
    }
}

/// Reads a whole SSE stream: the JSON of each `data:` frame, and whether `[DONE]` ended it.
async fn read_sse(response: reqwest::Response) -> (Vec<Value>, bool) {
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let text = response.text().await.expect("stream");
    let mut frames = Vec::new();
    let mut done = false;
    for block in text.split("\n\n").filter(|b| !b.is_empty()) {
        let data = block
            .strip_prefix("data: ")
            .unwrap_or_else(|| panic!("not an SSE data frame: {block:?}"));
        assert!(!done, "frames after [DONE]");
        if data == "[DONE]" {
            done = true;
        } else {
            frames.push(serde_json::from_str(data).expect("frame JSON"));
        }
    }
    (frames, done)
}

/// Reads a whole NDJSON stream.
async fn read_ndjson(response: reqwest::Response) -> Vec<Value> {
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.expect("stream");
    assert!(text.ends_with('\n'));
    text.lines()
        .map(|l| serde_json::from_str(l).expect("NDJSON line"))
        .collect()
}

fn chat(content: &str, max_tokens: u64) -> Value {
    json!({
        "model": MODEL,
        "messages": [{"role": "user", "content": content}],
        "max_tokens": max_tokens,
        "temperature": 0,
    })
}

#[tokio::test]
async fn openai_routes_stream_and_answer_whole() {
    let server = start(ServerConfig::default(), 4, 16).await;

    // Chat, whole.
    let (status, whole) = server
        .post_json(
            "/v1/chat/completions",
            &chat("What is the capital of France?", 24),
        )
        .await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "chat.completion");
    assert_eq!(whole["model"], MODEL);
    let choice = &whole["choices"][0];
    let text = choice["message"]["content"].as_str().unwrap().to_string();
    assert!(!text.is_empty());
    assert_eq!(choice["message"]["role"], "assistant");
    assert!(["stop", "length"].contains(&choice["finish_reason"].as_str().unwrap()));
    let usage = &whole["usage"];
    let (prompt, completion) = (
        usage["prompt_tokens"].as_u64().unwrap(),
        usage["completion_tokens"].as_u64().unwrap(),
    );
    assert!(prompt > 10 && (1..=24).contains(&completion), "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(prompt + completion));

    // Chat, streamed, with usage: the same greedy text, in chunks.
    let mut body = chat("What is the capital of France?", 24);
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (frames, done) = read_sse(server.post("/v1/chat/completions", &body).await).await;
    assert!(done, "no [DONE]");
    assert_eq!(frames[0]["choices"][0]["delta"]["role"], "assistant");
    let streamed: String = frames
        .iter()
        .filter_map(|f| f["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    let last = frames.last().unwrap();
    assert_eq!(last["choices"], json!([]));
    // Token counts agree (the second request may reuse the first's prompt from the
    // prefix cache, so `cached_tokens` may differ).
    for key in ["prompt_tokens", "completion_tokens", "total_tokens"] {
        assert_eq!(last["usage"][key], usage[key], "{key}");
    }
    let finish = &frames[frames.len() - 2]["choices"][0]["finish_reason"];
    assert_eq!(finish, &choice["finish_reason"]);
    assert!(
        frames
            .iter()
            .all(|f| f["object"] == "chat.completion.chunk")
    );

    // Legacy completions: a raw prompt, cut at max_tokens.
    let body = json!({"model": "smollm2-135m-instruct", "prompt": "Once upon a time", "max_tokens": 6, "temperature": 0});
    let (status, whole) = server.post_json("/v1/completions", &body).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["object"], "text_completion");
    assert_eq!(whole["choices"][0]["finish_reason"], "length");
    assert_eq!(whole["usage"]["completion_tokens"], 6);
    assert!(!whole["choices"][0]["text"].as_str().unwrap().is_empty());
    // Streamed (a different prompt: a repeated one would come partly from the prefix
    // cache, whose decode-path rounding can flip greedy near-ties, so texts are only
    // compared where the answer is clear, as for the chat above).
    let mut body = body.clone();
    body["prompt"] = json!("The three primary colors are");
    body["stream"] = json!(true);
    body["stream_options"] = json!({"include_usage": true});
    let (frames, done) = read_sse(server.post("/v1/completions", &body).await).await;
    assert!(done);
    let texts: Vec<&str> = frames
        .iter()
        .filter_map(|f| f["choices"][0]["text"].as_str())
        .collect();
    assert!(!texts.concat().is_empty() && texts.len() <= 7, "{texts:?}");
    assert_eq!(frames.last().unwrap()["usage"]["completion_tokens"], 6);
    let frames = &frames[..frames.len() - 1];
    assert_eq!(
        frames.last().unwrap()["choices"][0]["finish_reason"],
        "length"
    );

    // Log-probabilities: one entry per token, alternatives best first, greedy picks
    // the best.
    let mut body = chat("Say hello.", 8);
    body["logprobs"] = json!(true);
    body["top_logprobs"] = json!(3);
    let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let content = answer["choices"][0]["logprobs"]["content"]
        .as_array()
        .unwrap();
    assert_eq!(
        content.len() as u64,
        answer["usage"]["completion_tokens"].as_u64().unwrap()
    );
    for entry in content {
        let top = entry["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3, "{entry}");
        let lps: Vec<f64> = top.iter().map(|t| t["logprob"].as_f64().unwrap()).collect();
        assert!(lps.windows(2).all(|w| w[0] >= w[1]), "{entry}");
        assert!(lps[0] <= 0.0);
        assert_eq!(entry["token"], top[0]["token"], "{entry}");
        assert!((entry["logprob"].as_f64().unwrap() - lps[0]).abs() < 1e-4);
    }

    // Structured output: a JSON Schema, and any JSON object.
    let schema = json!({
        "type": "object",
        "properties": {"name": {"type": "string", "maxLength": 20}, "age": {"type": "integer"}},
        "required": ["name", "age"],
        "additionalProperties": false
    });
    let mut body = chat("Describe a person as JSON.", 96);
    body["response_format"] =
        json!({"type": "json_schema", "json_schema": {"name": "person", "schema": schema}});
    let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["choices"][0]["finish_reason"], "stop", "{answer}");
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    let person: Value = serde_json::from_str(text).expect("valid JSON");
    let object = person.as_object().expect("an object");
    assert_eq!(object.len(), 2, "{person}");
    assert!(
        person["name"]
            .as_str()
            .is_some_and(|n| n.chars().count() <= 20)
    );
    assert!(person["age"].is_i64() || person["age"].is_u64(), "{person}");

    let mut body = chat("List three colors in JSON.", 96);
    body["response_format"] = json!({"type": "json_object"});
    let (_, answer) = server.post_json("/v1/chat/completions", &body).await;
    let text = answer["choices"][0]["message"]["content"].as_str().unwrap();
    if answer["choices"][0]["finish_reason"] == "stop" {
        assert!(
            serde_json::from_str::<Value>(text)
                .expect("JSON")
                .is_object()
        );
    } else {
        assert!(text.trim_start().starts_with('{'), "{text}");
    }

    // An unsupported schema keyword is a clear 400, not ignored.
    let mut body = chat("x", 8);
    body["response_format"] = json!({"type": "json_schema", "json_schema": {"name": "n", "schema": {"type": "string", "pattern": "a+"}}});
    let (status, answer) = server.post_json("/v1/chat/completions", &body).await;
    assert_eq!(status, 400, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pattern")
    );

    // The model list has the name and the alias.
    let models = server.get_json("/v1/models").await;
    let ids: Vec<&str> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["id"].as_str())
        .collect();
    assert_eq!(ids, [MODEL, "smollm2-135m-instruct"]);
}

#[tokio::test]
async fn ollama_routes_stream_ndjson_and_manage_models() {
    let server = start(ServerConfig::default(), 2, 8).await;
    let options = json!({"temperature": 0, "num_predict": 12});

    let body = json!({"model": MODEL, "prompt": "Why is the sky blue?", "stream": false, "options": options});
    let (status, whole) = server.post_json("/api/generate", &body).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["done"], true);
    assert_eq!(whole["eval_count"], 12);
    assert!(whole["prompt_eval_count"].as_u64().unwrap() > 5);
    assert!(whole["total_duration"].as_u64().unwrap() > 0);
    let text = whole["response"].as_str().unwrap();

    let mut body = body.clone();
    body.as_object_mut().unwrap().remove("stream"); // Ollama streams by default
    let lines = read_ndjson(server.post("/api/generate", &body).await).await;
    let (last, parts) = lines.split_last().unwrap();
    assert!(parts.iter().all(|l| l["done"] == false));
    assert_eq!(last["done"], true);
    assert_eq!(last["done_reason"], "length");
    let streamed: String = parts
        .iter()
        .filter_map(|l| l["response"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert!(last["created_at"].as_str().unwrap().ends_with('Z'));

    let body = json!({"model": MODEL, "messages": [{"role": "user", "content": "Hi there"}], "options": options});
    let lines = read_ndjson(server.post("/api/chat", &body).await).await;
    let (last, parts) = lines.split_last().unwrap();
    assert_eq!(last["done"], true);
    assert!(!parts.is_empty());
    assert!(parts.iter().all(|l| l["message"]["role"] == "assistant"));
    let streamed: String = parts
        .iter()
        .filter_map(|l| l["message"]["content"].as_str())
        .collect();
    assert!(!streamed.is_empty());
    assert_eq!(last["message"]["content"], "");
    let mut whole_body = body.clone();
    whole_body["stream"] = json!(false);
    let (status, whole) = server.post_json("/api/chat", &whole_body).await;
    assert_eq!(status, 200, "{whole}");
    assert_eq!(whole["done"], true);
    // Not compared with the streamed text: this request reuses the prompt's keys and
    // values from the prefix cache, and the last prompt token then goes through the
    // decode path, whose rounding can flip SmolLM2's greedy near-ties.
    assert!(!whole["message"]["content"].as_str().unwrap().is_empty());

    // format: "json" gives JSON.
    let body = json!({"model": MODEL, "stream": false, "format": "json",
        "messages": [{"role": "user", "content": "Give me a JSON object with a key a."}],
        "options": {"temperature": 0, "num_predict": 64}});
    let (_, whole) = server.post_json("/api/chat", &body).await;
    if whole["done_reason"] == "stop" {
        let content = whole["message"]["content"].as_str().unwrap();
        assert!(
            serde_json::from_str::<Value>(content)
                .expect("JSON")
                .is_object()
        );
    }

    // Listing, details and the loaded model.
    let tags = server.get_json("/api/tags").await;
    let model = &tags["models"][0];
    assert_eq!(model["name"], MODEL);
    assert_eq!(model["details"]["family"], "llama");
    assert_eq!(model["details"]["quantization_level"], "Q4_1");
    assert!(model["size"].as_u64().unwrap() > 50_000_000);
    let show = server
        .post_json("/api/show", &json!({"model": MODEL}))
        .await
        .1;
    assert!(show["template"].as_str().unwrap().contains("<|im_start|>"));
    assert_eq!(show["model_info"]["general.architecture"], "llama");
    let ps = server.get_json("/api/ps").await;
    assert_eq!(ps["models"][0]["name"], MODEL);
    assert!(ps["models"][0]["size"].as_u64().unwrap() > 50_000_000);

    // keep_alive 0 with no prompt unloads at once; an empty request loads again.
    let (status, answer) = server
        .post_json("/api/generate", &json!({"model": MODEL, "keep_alive": 0}))
        .await;
    assert_eq!((status, &answer["done_reason"]), (200, &json!("unload")));
    assert_eq!(server.get_json("/api/ps").await["models"], json!([]));
    let (status, answer) = server
        .post_json("/api/chat", &json!({"model": MODEL, "keep_alive": "-1"}))
        .await;
    assert_eq!((status, &answer["done_reason"]), (200, &json!("load")));
    let ps = server.get_json("/api/ps").await;
    assert_eq!(ps["models"][0]["name"], MODEL);
    // Negative keep_alive: loaded forever (no expiry).
    assert_eq!(ps["models"][0]["expires_at"], Value::Null);
}

#[tokio::test]
async fn metrics_report_generation_latency_tokens_and_memory() {
    let server = start(ServerConfig::default(), 2, 8).await;
    let mut body = chat("Count to five.", 10);
    body["stream"] = json!(true);
    let (_, done) = read_sse(server.post("/v1/chat/completions", &body).await).await;
    assert!(done);
    let text = server.get_text("/metrics").await;
    let samples = support::parse_exposition(&text);
    let value = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == name && s.label("model") == Some(MODEL))
            .map(|s| s.value)
            .unwrap_or_else(|| panic!("{name} missing in {text}"))
    };
    assert_eq!(value("tern_time_to_first_token_seconds_count"), 1.0);
    assert!(value("tern_inter_token_latency_seconds_count") >= 1.0);
    assert!(value("tern_prompt_tokens_total") > 10.0);
    let generated = value("tern_generated_tokens_total");
    assert!((1.0..=10.0).contains(&generated));
    assert_eq!(value("tern_model_loaded"), 1.0);
    assert!(value("tern_model_memory_estimate_bytes") > 50e6);
    assert_eq!(value("tern_active_sequences"), 0.0);
    assert_eq!(value("tern_queue_depth"), 0.0);
    assert!(value("tern_model_forward_calls_total") >= generated);
    let requests = samples
        .iter()
        .find(|s| {
            s.name == "tern_http_requests_total" && s.label("route") == Some("/v1/chat/completions")
        })
        .unwrap();
    assert_eq!(
        (requests.value, requests.label("status")),
        (1.0, Some("200"))
    );
}

#[tokio::test]
async fn sixteen_clients_of_eight_requests_all_complete() {
    let server = std::sync::Arc::new(start(ServerConfig::default(), 4, 64).await);
    let started = Instant::now();
    let mut clients = Vec::new();
    for client in 0..16 {
        let server = server.clone();
        clients.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            for request in 0..8 {
                let prompt = format!("Item {client}-{request}: the weather today is");
                let stream = (client + request) % 2 == 0;
                let body = json!({"model": MODEL, "prompt": prompt, "max_tokens": 6,
                    "temperature": 0.7, "seed": client * 100 + request, "stream": stream});
                let response = server.post("/v1/completions", &body).await;
                let status = response.status().as_u16();
                if status != 200 {
                    failures.push(format!("{client}-{request}: status {status}"));
                    continue;
                }
                let complete = if stream {
                    let (frames, done) = read_sse(response).await;
                    done && frames
                        .last()
                        .is_some_and(|f| f["choices"][0]["finish_reason"].is_string())
                } else {
                    let whole = response.json_value().await;
                    let tokens = whole["usage"]["completion_tokens"].as_u64().unwrap_or(0);
                    whole["choices"][0]["finish_reason"].is_string() && (1..=6).contains(&tokens)
                };
                if !complete {
                    failures.push(format!("{client}-{request}: incomplete"));
                }
            }
            failures
        }));
    }
    let mut failures = Vec::new();
    for client in clients {
        failures.extend(client.await.expect("client task"));
    }
    assert!(failures.is_empty(), "{failures:?}");
    let metrics = server.state.runtime().metrics();
    assert_eq!(metrics.models[0].stats.requests, 128);
    assert_eq!(metrics.active_sequences, 0);
    eprintln!("128 requests in {:.1?}", started.elapsed());
}

/// A request that keeps generating until dropped: a streamed completion that ignores
/// end-of-generation tokens, read until its first token.
async fn long_stream(server: &Server) -> reqwest::Response {
    let body = json!({"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 900,
        "ignore_eos": true, "stream": true, "temperature": 0});
    let mut response = server.post("/v1/completions", &body).await;
    assert_eq!(response.status(), 200);
    // Wait for real generation, not just headers.
    // (Frames are sent only for tokens with text, so the first frame means generating.)
    let mut seen = String::new();
    while !seen.contains("\"text\":") {
        let chunk = response.chunk().await.expect("read").expect("more");
        seen.push_str(&String::from_utf8_lossy(&chunk));
    }
    response
}

#[tokio::test]
async fn a_full_queue_answers_429_with_retry_after() {
    let server = start(ServerConfig::default(), 1, 1).await;
    let running = long_stream(&server).await;
    // One request waits in the queue...
    let waiting = {
        let client = server.client.clone();
        let url = format!("{}/v1/completions", server.base);
        tokio::spawn(async move {
            let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 3});
            client
                .post(url)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while server.state.runtime().metrics().queue_depth < 1 {
        assert!(Instant::now() < deadline, "the second request never queued");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // ...so the next is refused at once.
    let response = server.post("/v1/chat/completions", &chat("Hello", 3)).await;
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(retry >= 1);
    let error = response.json_value().await;
    assert_eq!(error["error"]["code"], "queue_full");
    // Ollama clients get the same status in Ollama's shape.
    let response = server
        .post("/api/generate", &json!({"model": MODEL, "prompt": "Hi"}))
        .await;
    assert_eq!(response.status(), 429);
    assert!(response.headers().contains_key("retry-after"));
    assert!(response.json_value().await["error"].is_string());
    // The running stream's client leaves: the queued request gets the slot.
    drop(running);
    let status = tokio::time::timeout(Duration::from_secs(60), waiting)
        .await
        .expect("the queued request finished")
        .expect("task")
        .expect("response");
    assert_eq!(status, 200);
}

#[tokio::test]
async fn requests_beyond_the_waiting_list_of_a_loading_model_get_503() {
    // One request may wait for the load; the model is cold, so of six requests sent at
    // once, some find the waiting list full while it loads.
    let server = std::sync::Arc::new(start(ServerConfig::default(), 1, 1).await);
    let mut requests = Vec::new();
    for _ in 0..6 {
        let server = server.clone();
        requests.push(tokio::spawn(async move {
            let body = json!({"model": MODEL, "prompt": "Hi", "max_tokens": 2});
            let response = server.post("/v1/completions", &body).await;
            let status = response.status().as_u16();
            let retry = response.headers().get("retry-after").cloned();
            (status, retry, response.json_value().await)
        }));
    }
    let mut loading = 0;
    for request in requests {
        let (status, retry, body) = request.await.expect("task");
        match status {
            200 => assert_eq!(body["usage"]["completion_tokens"], 2),
            503 => {
                loading += 1;
                assert_eq!(body["error"]["code"], "model_loading", "{body}");
                assert!(retry.is_some(), "503 without Retry-After");
            }
            429 => assert_eq!(body["error"]["code"], "queue_full", "{body}"),
            other => panic!("status {other}: {body}"),
        }
    }
    assert!(loading >= 1, "no request saw the model loading");
}

#[tokio::test]
async fn a_client_disconnect_cancels_its_generation_and_frees_the_slot() {
    let server = start(ServerConfig::default(), 1, 4).await;
    let running = long_stream(&server).await;
    let before = Instant::now();
    drop(running);
    // With one slot, the next request can only run once the first is cancelled; the
    // first alone would need 900 tokens.
    let (status, answer) = server
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "Hi", "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 200, "{answer}");
    assert!(
        before.elapsed() < Duration::from_secs(15),
        "{:?}",
        before.elapsed()
    );
    let stats = &server.state.runtime().metrics().models[0].stats;
    assert_eq!(stats.cancelled, 1);
    assert!(stats.tokens_out < 300, "{}", stats.tokens_out);
    let metrics = server.get_text("/metrics").await;
    assert!(metrics.contains("tern_model_cancelled_requests_total{model=\"smollm2\"} 1"));
}

#[tokio::test]
async fn a_disconnect_during_a_whole_answer_also_cancels() {
    use tokio::io::AsyncWriteExt;
    let server = start(ServerConfig::default(), 1, 4).await;
    let body = json!({"model": MODEL, "prompt": "Tell me a long story.", "max_tokens": 900,
        "ignore_eos": true, "stream": false})
    .to_string();
    let address = server.base.trim_start_matches("http://").to_string();
    let mut socket = tokio::net::TcpStream::connect(&address)
        .await
        .expect("connect");
    let request = format!(
        "POST /v1/completions HTTP/1.1\r\nHost: {address}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    socket.write_all(request.as_bytes()).await.expect("send");
    let runtime = server.state.runtime();
    let deadline = Instant::now() + Duration::from_secs(30);
    while runtime.metrics().active_sequences == 0 {
        assert!(Instant::now() < deadline, "the request never started");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    drop(socket);
    let deadline = Instant::now() + Duration::from_secs(10);
    while runtime.metrics().models[0].stats.cancelled == 0 {
        assert!(
            Instant::now() < deadline,
            "the generation went on after its client left"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(runtime.metrics().active_sequences, 0);
}

#[tokio::test]
async fn requests_time_out_with_504_and_long_prompts_are_refused() {
    let config = ServerConfig {
        request_timeout: Some(Duration::from_millis(1500)),
        max_prompt_tokens: Some(16),
        ..ServerConfig::default()
    };
    let server = start(config, 1, 4).await;
    let started = Instant::now();
    let (status, answer) = server
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "Once", "max_tokens": 4000, "ignore_eos": true}),
        )
        .await;
    assert_eq!(status, 504, "{answer}");
    assert_eq!(answer["error"]["code"], "timeout");
    assert!(started.elapsed() < Duration::from_secs(30));

    let (status, answer) = server
        .post_json(
            "/v1/completions",
            &json!({"model": MODEL, "prompt": "word ".repeat(40), "max_tokens": 4}),
        )
        .await;
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["code"], "prompt_too_long");
    assert!(answer["error"]["message"].as_str().unwrap().contains("16"));
}

#[tokio::test]
async fn shutdown_finishes_in_flight_requests_and_stops_accepting() {
    let mut server = start(ServerConfig::default(), 2, 4).await;
    let body = json!({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 40,
        "ignore_eos": true, "stream": true, "temperature": 0});
    let mut response = server.post("/v1/completions", &body).await;
    let first = response.chunk().await.expect("read").expect("a chunk");
    // Shut down while the answer is being generated.
    server
        .stop
        .take()
        .expect("stop")
        .send(())
        .expect("server alive");
    let mut text = String::from_utf8_lossy(&first).into_owned();
    while let Some(chunk) = response.chunk().await.expect("the stream completes") {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    assert!(text.contains("\"finish_reason\":\"length\""));
    tokio::time::timeout(Duration::from_secs(30), &mut server.task)
        .await
        .expect("serve returned")
        .expect("task")
        .expect("no error");
    let refused = http_client()
        .get(format!("{}/health", server.base))
        .send()
        .await;
    assert!(refused.is_err(), "still accepting after shutdown");
}
