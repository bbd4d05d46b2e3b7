//! Many requests to several real models at once under a budget that fits only some of
//! them: every request is answered, the budget is never exceeded (by the manager's own
//! count, and by the process's resident memory sampled every few milliseconds), the
//! pinned router model is never evicted, and nothing deadlocks.
//!
//! The resident-memory check runs in a child process with glibc's mmap threshold pinned
//! (see `common/memory.rs`: the engine's `Vec` buffers otherwise stay in the heap after
//! an unload, and the next load comes on top); the parent prints its own peak.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use common::{collect, entry, request, rss};
use tern_runtime::estimate::{RunShape, estimate_file};
use tern_runtime::{Runtime, RuntimeConfig};
use tern_testkit::TestModel;

#[test]
fn mixed_models_under_a_budget_that_fits_only_some() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut router = entry("router", TestModel::SmolLm2_135m);
        router.pin = true;
        let smol = entry("smol", TestModel::SmolLm2_135m);
        let gemma = entry("gemma", TestModel::Gemma3_270m);
        let size = |e: &tern_runtime::ModelEntry| estimate_file(&e.path, RunShape::of(e)).unwrap().total();
        let (r, s, g) = (size(&router), size(&smol), size(&gemma));
        // The router and one of the others; never all three.
        let budget = r + s.max(g) + (s.min(g) / 4);
        assert!(budget < r + s + g);

        let baseline = rss();
        let runtime = Runtime::new(RuntimeConfig {
            models: vec![router, smol, gemma],
            memory_budget: Some(tern_runtime::Budget::Bytes(budget)),
            memory_wait: Duration::from_secs(300),
            ..RuntimeConfig::default()
        })
        .unwrap();
        let peak = Arc::new(AtomicU64::new(baseline));
        let done = Arc::new(AtomicBool::new(false));
        let sampler = {
            let (peak, done, runtime) = (Arc::clone(&peak), Arc::clone(&done), runtime.clone());
            std::thread::spawn(move || {
                let mut max_reserved = 0;
                while !done.load(Ordering::Relaxed) {
                    let now = rss();
                    if now > peak.fetch_max(now, Ordering::Relaxed) && std::env::var_os("TERN_TEST_VERBOSE").is_some() {
                        let states: Vec<String> = runtime
                            .loaded()
                            .iter()
                            .map(|s| format!("{}:{:?} est {} measured {:?}", s.name, s.state, s.bytes_estimate >> 20, s.bytes_measured.map(|m| m >> 20)))
                            .collect();
                        println!("peak {} MiB above baseline: {states:?}", (now - baseline) >> 20);
                    }
                    max_reserved = max_reserved.max(runtime.metrics().reserved_bytes);
                    std::thread::sleep(Duration::from_millis(5));
                }
                max_reserved
            })
        };

        let pattern = ["router", "gemma", "smol", "router", "smol", "gemma", "gemma", "router", "smol"];
        let requests = 36;
        let tasks: Vec<_> = (0..requests)
            .map(|i| {
                let runtime = runtime.clone();
                let model = pattern[i % pattern.len()];
                tokio::spawn(async move {
                    // Arrive in waves, so models are needed again after being evicted.
                    tokio::time::sleep(Duration::from_millis(500 * (i as u64 / 4))).await;
                    let stream = runtime.generate(request(model, &format!("Request {i} for {model}:"), 4)).await?;
                    Ok::<_, tern_runtime::RuntimeError>(collect(stream).await)
                })
            })
            .collect();
        let mut max_reserved = 0;
        for (i, task) in tasks.into_iter().enumerate() {
            let outcome = tokio::time::timeout(Duration::from_secs(600), task)
                .await
                .unwrap_or_else(|_| panic!("request {i} never answered"))
                .unwrap()
                .unwrap_or_else(|e| panic!("request {i} failed: {e}"));
            assert_eq!(outcome.usage.completion_tokens, 4, "request {i}: {outcome:?}");
            max_reserved = max_reserved.max(runtime.metrics().reserved_bytes);
        }
        done.store(true, Ordering::Relaxed);
        let max_reserved = max_reserved.max(sampler.join().unwrap());

        let metrics = runtime.metrics();
        let stats = |name: &str| metrics.models.iter().find(|m| m.name == name).unwrap().stats.clone();
        let (router, smol, gemma) = (stats("router"), stats("smol"), stats("gemma"));
        let peak = peak.load(Ordering::Relaxed) - baseline;
        println!(
            "budget {} MiB; peak RSS above baseline {} MiB; loads router {} smol {} gemma {}; evictions smol {} gemma {}",
            budget >> 20,
            peak >> 20,
            router.loads,
            smol.loads,
            gemma.loads,
            smol.eviction_count,
            gemma.eviction_count
        );
        assert_eq!(router.requests + smol.requests + gemma.requests, requests as u64);
        assert_eq!((router.loads, router.eviction_count), (1, 0), "the pinned router was evicted");
        assert!(smol.eviction_count + gemma.eviction_count >= 1, "the budget never forced an eviction");
        assert!(max_reserved <= budget);
        if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_some() {
            assert!(peak <= budget, "resident memory grew {} MiB above the {} MiB budget", peak >> 20, budget >> 20);
        }
        runtime.shutdown(Duration::from_secs(30)).await;
    });
    common::memory::rerun_with_pinned_mmap_threshold(
        "mixed_models_under_a_budget_that_fits_only_some",
    );
}
