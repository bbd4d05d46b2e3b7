//! Model switch time: with one model loaded and idle under a budget that fits only one,
//! a request to the other evicts it, loads the other and generates — this measures that
//! whole path (evict + load + first token) for SmolLM2-135M and Gemma 3 270M, with the
//! other model's file in the page cache (warm) and dropped from it first (cold: GNU
//! `dd iflag=nocache`, which asks the kernel to forget the file's cached pages).
//!
//! Run: `cargo run --release -p tern-runtime --example switch [ROUNDS]`.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use tern_runtime::estimate::{RunShape, estimate_file};
use tern_runtime::{
    Event, GenerateRequest, ModelEntry, Prompt, Runtime, RuntimeConfig, SamplingParams,
};
use tern_testkit::{TestModel, model_path};

fn drop_from_page_cache(path: &Path) {
    let status = Command::new("dd")
        .arg(format!("if={}", path.display()))
        .args(["iflag=nocache", "count=0", "status=none"])
        .status();
    if !status.is_ok_and(|s| s.success()) {
        eprintln!(
            "warning: could not drop {} from the page cache",
            path.display()
        );
    }
}

/// Time from the request to its first token.
async fn first_token(runtime: &Runtime, model: &str) -> Duration {
    let started = Instant::now();
    let mut req = GenerateRequest::new(model, Prompt::Text("Hello, my name is".into()));
    req.params = SamplingParams::greedy();
    req.max_tokens = Some(4);
    let mut stream = runtime.generate(req).await.expect("generate");
    let mut ttft = None;
    while let Some(event) = stream.next().await {
        match event {
            Event::Token { .. } if ttft.is_none() => ttft = Some(started.elapsed()),
            Event::Error(e) => panic!("{e}"),
            _ => {}
        }
    }
    ttft.expect("a token")
}

fn main() {
    let rounds: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(3);
    let entry = |name: &str, model| {
        let mut e = ModelEntry::new(name, model_path(model));
        e.ctx_size = 2048;
        e.parallel = 1;
        e
    };
    let smol = entry("smollm2", TestModel::SmolLm2_135m);
    let gemma = entry("gemma3", TestModel::Gemma3_270m);
    let size = |e: &ModelEntry| {
        estimate_file(&e.path, RunShape::of(e))
            .expect("estimate")
            .total()
    };
    let budget = size(&smol).max(size(&gemma)) + size(&smol).min(size(&gemma)) / 2;
    let paths = [smol.path.clone(), gemma.path.clone()];
    let runtime = Runtime::new(RuntimeConfig {
        models: vec![smol, gemma],
        memory_budget: Some(tern_runtime::Budget::Bytes(budget)),
        ..RuntimeConfig::default()
    })
    .expect("runtime");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio");
    rt.block_on(async {
        first_token(&runtime, "gemma3").await;
        for cache in ["warm", "cold"] {
            for round in 0..rounds {
                for (target, path) in [("smollm2", &paths[0]), ("gemma3", &paths[1])] {
                    if cache == "cold" {
                        drop_from_page_cache(path);
                    }
                    let time = first_token(&runtime, target).await;
                    let load = runtime.loaded().iter().find(|s| s.name == target).and_then(|s| s.stats.load_time);
                    println!(
                        "{cache} round {round}: switch to {target}: {:.0} ms to the first token (load {:.0} ms)",
                        time.as_secs_f64() * 1e3,
                        load.map_or(0.0, |l| l.as_secs_f64() * 1e3)
                    );
                }
            }
        }
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}
