//! The model manager with real models: LRU eviction order, pinned models, waiting for
//! memory held by busy models, one load for concurrent first requests, keep-alive,
//! preload and usage statistics.

mod common;

use std::time::{Duration, Instant};

use common::{collect, entry, first_token, request};
use tern_runtime::estimate::{RunShape, estimate_file};
use tern_runtime::{
    EvictionReason, KeepAlive, LoadState, ModelEntry, Runtime, RuntimeConfig, RuntimeError,
};
use tern_testkit::TestModel;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn estimate(entry: &ModelEntry) -> u64 {
    estimate_file(&entry.path, RunShape::of(entry))
        .unwrap()
        .total()
}

fn runtime_with(models: Vec<ModelEntry>, budget: u64, memory_wait: Duration) -> Runtime {
    Runtime::new(RuntimeConfig {
        models,
        memory_budget: Some(tern_runtime::Budget::Bytes(budget)),
        memory_wait,
        ..RuntimeConfig::default()
    })
    .unwrap()
}

fn loaded_names(runtime: &Runtime) -> Vec<String> {
    let mut names: Vec<String> = runtime.loaded().into_iter().map(|s| s.name).collect();
    names.sort();
    names
}

/// Waits until `check` holds (the manager works on its own threads).
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while !check() {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn the_least_recently_used_idle_model_is_evicted() {
    rt().block_on(async {
        let models: Vec<ModelEntry> = ["a", "b", "c"]
            .iter()
            .map(|n| entry(n, TestModel::SmolLm2_135m))
            .collect();
        let one = estimate(&models[0]);
        let runtime = runtime_with(models, one * 5 / 2, Duration::from_secs(30));
        for name in ["a", "b", "a"] {
            collect(runtime.generate(request(name, "Hello", 2)).await.unwrap()).await;
        }
        assert_eq!(loaded_names(&runtime), ["a", "b"]);
        // c needs room: b was used least recently.
        collect(runtime.generate(request("c", "Hello", 2)).await.unwrap()).await;
        assert_eq!(loaded_names(&runtime), ["a", "c"]);
        let metrics = runtime.metrics();
        let b = metrics.models.iter().find(|m| m.name == "b").unwrap();
        assert_eq!(b.stats.eviction_count, 1);
        assert_eq!(
            b.stats.evictions[0].reason,
            EvictionReason::Lru {
                for_model: "c".into()
            }
        );
        // Now a is the oldest.
        collect(runtime.generate(request("b", "Hello", 2)).await.unwrap()).await;
        assert_eq!(loaded_names(&runtime), ["b", "c"]);
        assert!(metrics.reserved_bytes <= metrics.budget_bytes);
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn a_pinned_model_is_never_evicted_and_the_error_names_it() {
    rt().block_on(async {
        let mut smol = entry("smol", TestModel::SmolLm2_135m);
        smol.pin = true;
        let gemma = entry("gemma", TestModel::Gemma3_270m);
        let (s, g) = (estimate(&smol), estimate(&gemma));
        // Room for either model, not both.
        let budget = s.max(g) + s.min(g) / 2;
        let runtime = runtime_with(vec![smol, gemma], budget, Duration::from_secs(2));
        collect(runtime.generate(request("smol", "Hello", 2)).await.unwrap()).await;
        match runtime.generate(request("gemma", "Hello", 2)).await {
            Err(RuntimeError::DoesNotFit {
                model,
                budget: b,
                needed,
                held_by,
            }) => {
                assert_eq!((model.as_str(), b, needed), ("gemma", budget, g));
                assert_eq!(held_by, vec![("smol".to_string(), s)]);
            }
            other => panic!("expected DoesNotFit, got {other:?}"),
        }
        assert_eq!(loaded_names(&runtime), ["smol"]);
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn an_unpinned_model_makes_room_for_another() {
    rt().block_on(async {
        let smol = entry("smol", TestModel::SmolLm2_135m);
        let gemma = entry("gemma", TestModel::Gemma3_270m);
        let (s, g) = (estimate(&smol), estimate(&gemma));
        let runtime = runtime_with(
            vec![smol, gemma],
            s.max(g) + s.min(g) / 2,
            Duration::from_secs(30),
        );
        collect(runtime.generate(request("smol", "Hello", 2)).await.unwrap()).await;
        let outcome = collect(
            runtime
                .generate(request("gemma", "Hello", 2))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(outcome.usage.completion_tokens, 2);
        assert_eq!(loaded_names(&runtime), ["gemma"]);
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn a_load_waits_for_a_busy_model_then_fails_or_proceeds() {
    rt().block_on(async {
        let smol = entry("smol", TestModel::SmolLm2_135m);
        let gemma = entry("gemma", TestModel::Gemma3_270m);
        let (s, g) = (estimate(&smol), estimate(&gemma));
        let runtime = runtime_with(
            vec![smol, gemma],
            s.max(g) + s.min(g) / 2,
            Duration::from_secs(1),
        );
        // smol serves a long request: its memory is leased, gemma waits, then gives up.
        let mut busy = runtime
            .generate(request("smol", "Once upon a time", 400))
            .await
            .unwrap();
        first_token(&mut busy).await;
        let started = Instant::now();
        match runtime.generate(request("gemma", "Hello", 2)).await {
            Err(RuntimeError::DoesNotFit { held_by, .. }) => {
                assert_eq!(held_by, vec![("smol".to_string(), s)])
            }
            other => panic!("expected DoesNotFit, got {other:?}"),
        }
        assert!(
            started.elapsed() >= Duration::from_millis(900),
            "did not wait: {:?}",
            started.elapsed()
        );
        assert_eq!(loaded_names(&runtime), ["smol"], "a busy model was evicted");
        drop(busy);
        // Once smol is idle, gemma gets its memory.
        let outcome = collect(
            runtime
                .generate(request("gemma", "Hello", 2))
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(outcome.usage.completion_tokens, 2);
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn eight_concurrent_first_requests_load_the_model_once() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = runtime_with(
            vec![entry("smol", TestModel::SmolLm2_135m)],
            1 << 30,
            Duration::from_secs(30),
        );
        let tasks: Vec<_> = (0..8)
            .map(|i| {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    let stream = runtime
                        .generate(request("smol", &format!("Request {i}"), 3))
                        .await
                        .unwrap();
                    collect(stream).await
                })
            })
            .collect();
        for task in tasks {
            assert_eq!(task.await.unwrap().usage.completion_tokens, 3);
        }
        let stats = &runtime.metrics().models[0].stats;
        assert_eq!(stats.loads, 1);
        assert_eq!(stats.requests, 8);
        assert_eq!(stats.tokens_out, 24);
        assert!(stats.load_time.is_some() && stats.last_used.is_some());
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn keep_alive_per_request_and_per_model() {
    rt().block_on(async {
        let mut forever = entry("forever", TestModel::SmolLm2_135m);
        forever.keep_alive = Some(KeepAlive::Forever);
        let short = entry("short", TestModel::SmolLm2_135m);
        let runtime = runtime_with(vec![forever, short], 1 << 30, Duration::from_secs(30));

        // keep_alive 0: unloaded as soon as the request ends.
        let mut req = request("short", "Hello", 2);
        req.keep_alive = Some(KeepAlive::For(Duration::ZERO));
        collect(runtime.generate(req).await.unwrap()).await;
        eventually("short unloaded", || runtime.loaded().is_empty()).await;
        let stats = &runtime.metrics().models[1].stats;
        assert_eq!(
            stats.evictions.last().unwrap().reason,
            EvictionReason::Requested
        );

        // A duration: unloaded by the keep-alive thread once idle that long.
        let mut req = request("short", "Hello", 2);
        req.keep_alive = Some(KeepAlive::For(Duration::from_millis(700)));
        collect(runtime.generate(req).await.unwrap()).await;
        let status = runtime
            .loaded()
            .into_iter()
            .find(|s| s.name == "short")
            .unwrap();
        assert!(status.expires_at.is_some());
        let idle_since = Instant::now();
        eventually("short expired", || {
            runtime.loaded().iter().all(|s| s.name != "short")
        })
        .await;
        assert!(idle_since.elapsed() >= Duration::from_millis(500));
        let stats = &runtime.metrics().models[1].stats;
        assert_eq!(
            stats.evictions.last().unwrap().reason,
            EvictionReason::KeepAliveExpired
        );

        // The model's own keep_alive: forever.
        collect(
            runtime
                .generate(request("forever", "Hello", 2))
                .await
                .unwrap(),
        )
        .await;
        tokio::time::sleep(Duration::from_millis(1500)).await;
        let status = runtime
            .loaded()
            .into_iter()
            .find(|s| s.name == "forever")
            .unwrap();
        assert_eq!((status.state, status.expires_at), (LoadState::Ready, None));

        // unload() frees a model at once.
        runtime.unload("forever").await.unwrap();
        assert!(runtime.loaded().is_empty());
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn preloaded_models_load_at_start_and_report_status() {
    rt().block_on(async {
        let mut router = entry("router", TestModel::SmolLm2_135m);
        router.aliases = vec!["r".into()];
        router.pin = true;
        let runtime = Runtime::new(RuntimeConfig {
            models: vec![router, entry("other", TestModel::SmolLm2_135m)],
            preload: vec!["r".into()],
            ..RuntimeConfig::default()
        })
        .unwrap();
        eventually("router ready", || {
            runtime
                .loaded()
                .first()
                .is_some_and(|s| s.state == LoadState::Ready)
        })
        .await;
        let status = &runtime.loaded()[0];
        assert_eq!(status.name, "router");
        assert!(status.pinned && status.expires_at.is_none() && status.in_flight == 0);
        assert_eq!(status.bytes_estimate, status.footprint.total());
        assert!(status.bytes_measured.is_some_and(|m| m > 0));
        assert_eq!((status.stats.loads, status.stats.requests), (1, 0));
        let models = runtime.models();
        assert_eq!(models.len(), 2);
        assert!(models[0].loaded && !models[1].loaded && models[0].file_size > 0);
        let outcome = collect(runtime.generate(request("r", "Hello", 3)).await.unwrap()).await;
        let stats = &runtime.loaded()[0].stats;
        assert_eq!((stats.requests, stats.tokens_out), (1, 3));
        assert_eq!(stats.tokens_in as usize, outcome.usage.prompt_tokens);
        runtime.shutdown(Duration::from_secs(10)).await;
        assert!(runtime.loaded().is_empty());
    });
}

#[test]
fn too_many_requests_waiting_for_a_load_get_loading() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            models: vec![entry("gemma", TestModel::Gemma3_270m)],
            queue_capacity: 1,
            ..RuntimeConfig::default()
        })
        .unwrap();
        let first = {
            let runtime = runtime.clone();
            tokio::spawn(async move {
                let stream = runtime.generate(request("gemma", "Hello", 2)).await?;
                Ok::<_, RuntimeError>(collect(stream).await.usage.completion_tokens)
            })
        };
        // The first request started the load and waits for it: the waiting list is full.
        eventually("loading", || {
            runtime
                .loaded()
                .first()
                .is_some_and(|s| s.state == LoadState::Loading)
        })
        .await;
        match runtime.generate(request("gemma", "Hello", 2)).await {
            Err(RuntimeError::Loading { model, retry_after }) => {
                assert_eq!(model, "gemma");
                assert!(retry_after >= Duration::from_secs(1));
            }
            other => panic!("expected Loading, got {other:?}"),
        }
        assert_eq!(first.await.unwrap(), Ok(2));
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}

#[test]
fn dropping_the_runtime_ends_its_model_threads() {
    rt().block_on(async {
        let runtime = Runtime::new(RuntimeConfig {
            models: vec![entry("smol", TestModel::SmolLm2_135m)],
            ..RuntimeConfig::default()
        })
        .unwrap();
        collect(runtime.generate(request("smol", "Hello", 2)).await.unwrap()).await;
        let threads = |prefix: &str| {
            std::fs::read_dir("/proc/self/task")
                .unwrap()
                .flatten()
                .filter(|t| {
                    std::fs::read_to_string(t.path().join("comm"))
                        .unwrap_or_default()
                        .starts_with(prefix)
                })
                .count()
        };
        assert_eq!(threads("tern-model-"), 1);
        assert!(threads("tern-keep-alive") >= 1);
        drop(runtime);
        eventually("threads ended", || threads("tern-") == 0).await;
    });
}

#[test]
fn a_model_that_cannot_load_fails_every_waiter_and_holds_no_memory() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        // A vocabulary-only file: its header reads (the estimate works), its tensors are
        // missing (the load fails on the model's thread).
        let vocab_only = tern_testkit::llamacpp_models_dir().join("ggml-vocab-llama-spm.gguf");
        let missing = std::env::temp_dir().join("tern-runtime-test-no-such-model.gguf");
        let runtime = Runtime::new(RuntimeConfig {
            models: vec![
                ModelEntry::new("broken", &vocab_only),
                ModelEntry::new("missing", &missing),
            ],
            ..RuntimeConfig::default()
        })
        .unwrap();
        let tasks: Vec<_> = (0..3)
            .map(|_| {
                let runtime = runtime.clone();
                tokio::spawn(async move {
                    runtime
                        .generate(request("broken", "Hello", 2))
                        .await
                        .map(|_| ())
                })
            })
            .collect();
        for task in tasks {
            match task.await.unwrap() {
                Err(RuntimeError::Engine(message)) => {
                    assert!(message.contains("ggml-vocab-llama-spm"), "{message}")
                }
                other => panic!("expected an engine error, got {other:?}"),
            }
        }
        match runtime.generate(request("missing", "Hello", 2)).await {
            Err(RuntimeError::Engine(message)) => {
                assert!(message.contains("no-such-model"), "{message}")
            }
            other => panic!("expected an engine error, got {other:?}"),
        }
        assert!(runtime.loaded().is_empty());
        assert_eq!(runtime.metrics().reserved_bytes, 0);
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}
