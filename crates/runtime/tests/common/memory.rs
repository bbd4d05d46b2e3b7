//! Memory checks shared by the per-model memory tests (each in its own test binary, so
//! each runs in a fresh process: the heap of one model's run cannot blur the next).
//!
//! Why the unload check runs twice: tern-engine allocates the KV cache and scratch
//! buffers as `Vec`s. glibc serves large allocations with their own mapping (given back
//! on free) only above its mmap threshold, and raises that threshold whenever such a
//! mapping is freed — after a load's temporary buffers (Gemma's 262k-token vocabulary)
//! the KV buffers land in the heap and stay resident after the unload. So in the
//! default environment the check demands only the weights' mapping back; then the test
//! re-runs itself with the threshold pinned (`MALLOC_MMAP_THRESHOLD_`, what a deployment
//! sets until the engine maps its buffers itself) and demands 80% of the model's memory
//! back.

use std::time::Duration;

use super::{collect, request, rss};
use tern_runtime::{ModelEntry, Runtime, RuntimeConfig};
use tern_testkit::{TestModel, model_path};

const THRESHOLD_ENV: &str = "MALLOC_MMAP_THRESHOLD_";

/// Runs test `name` of this binary again in a child process with glibc's mmap threshold
/// pinned at its default (128 KiB), and checks it passes.
pub fn rerun_with_pinned_mmap_threshold(name: &str) {
    if std::env::var_os(THRESHOLD_ENV).is_some() {
        return;
    }
    let output = std::process::Command::new(std::env::current_exe().unwrap())
        .args(["--exact", name, "--nocapture", "--test-threads=1"])
        .env(THRESHOLD_ENV, "131072")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    println!("child with {THRESHOLD_ENV}=131072:\n{stdout}");
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.contains("1 passed"),
        "the child ran no test: {stdout}"
    );
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// Loads `model` with the default sizes, runs a request whose prompt fills a whole batch
/// (so every compute buffer is touched), and compares the growth of resident memory
/// with the estimate.
pub fn estimate_matches_rss_then_unload_frees_it(model: TestModel) {
    rt().block_on(async {
        let baseline = rss();
        let entry = ModelEntry::new("m", model_path(model));
        let batch = entry.batch_size;
        let runtime = Runtime::new(RuntimeConfig { models: vec![entry], ..Default::default() }).unwrap();
        let prompt = "Rivers carry water from the hills to the sea, and ".repeat(batch / 8);
        let outcome = collect(runtime.generate(request("m", &prompt, 8)).await.unwrap()).await;
        assert!(outcome.usage.prompt_tokens > batch, "{:?}", outcome.usage);
        let grown = rss().saturating_sub(baseline);
        let status = &runtime.loaded()[0];
        let estimate = status.bytes_estimate;
        let f = status.footprint;
        println!(
            "{model:?}: estimate {} MiB (weights {}, kv {}, compute {}, other {}), measured at load {} MiB, RSS grew {} MiB",
            estimate >> 20,
            f.weights >> 20,
            f.kv_cache >> 20,
            f.compute >> 20,
            f.other >> 20,
            status.bytes_measured.unwrap_or(0) >> 20,
            grown >> 20
        );
        let error = grown as f64 / estimate as f64 - 1.0;
        assert!(error.abs() <= 0.15, "RSS grew {} MiB for an estimate of {} MiB ({:+.1}%)", grown >> 20, estimate >> 20, error * 100.0);

        // Unloading gives the memory back to the system: the mapping of the weights and
        // the KV cache and scratch buffers.
        let before_unload = rss();
        runtime.unload("m").await.unwrap();
        assert!(runtime.loaded().is_empty());
        let after_unload = rss();
        let freed = before_unload.saturating_sub(after_unload);
        println!("unload: RSS {} -> {} MiB (freed {} MiB)", before_unload >> 20, after_unload >> 20, freed >> 20);
        if std::env::var_os(THRESHOLD_ENV).is_some() {
            assert!(
                freed as f64 >= 0.8 * grown as f64,
                "the unload freed {} MiB of the {} MiB the model took",
                freed >> 20,
                grown >> 20
            );
        } else {
            assert!(freed >= f.weights, "the unload freed {} MiB, less than the weights' mapping", freed >> 20);
        }
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}
