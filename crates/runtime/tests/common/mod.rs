//! Helpers shared by the runtime's model tests.
#![allow(dead_code)]

pub mod memory;

use std::time::Duration;

use tern_runtime::{
    Event, FinishReason, GenerateRequest, GenerationStream, ModelEntry, Prompt, Runtime,
    RuntimeConfig, SamplingParams, Usage,
};
use tern_testkit::{TestModel, model_path};

/// An entry for a real model with small sizes (fast to load, little memory).
pub fn entry(name: &str, model: TestModel) -> ModelEntry {
    let mut entry = ModelEntry::new(name, model_path(model));
    entry.ctx_size = 512;
    entry.parallel = 4;
    entry.batch_size = 64;
    entry
}

pub fn runtime(models: Vec<ModelEntry>, budget: Option<u64>) -> Runtime {
    let config = RuntimeConfig {
        models,
        memory_budget: budget.map(tern_runtime::Budget::Bytes),
        // Model tests run one at a time on one thread each (see docs/TESTING.md).
        threads: 1,
        ..RuntimeConfig::default()
    };
    Runtime::new(config).expect("runtime")
}

/// A greedy request that generates exactly `tokens` tokens.
pub fn request(model: &str, prompt: &str, tokens: usize) -> GenerateRequest {
    let mut req = GenerateRequest::new(model, Prompt::Text(prompt.to_string()));
    req.params = SamplingParams::greedy();
    req.max_tokens = Some(tokens);
    req.ignore_eos = true;
    req
}

/// What a finished stream produced.
#[derive(Debug)]
pub struct Outcome {
    pub text: String,
    pub tokens: usize,
    pub finish: Option<FinishReason>,
    pub usage: Usage,
    pub error: Option<tern_runtime::RuntimeError>,
}

pub async fn collect(mut stream: GenerationStream) -> Outcome {
    let mut outcome = Outcome {
        text: String::new(),
        tokens: 0,
        finish: None,
        usage: Usage::default(),
        error: None,
    };
    while let Some(event) = stream.next().await {
        match event {
            Event::Token { text, .. } => {
                outcome.text.push_str(&text);
                outcome.tokens += 1;
            }
            Event::Done {
                finish_reason,
                usage,
                ..
            } => {
                outcome.finish = Some(finish_reason);
                outcome.usage = usage;
            }
            Event::Error(e) => outcome.error = Some(e),
        }
    }
    outcome
}

/// The first token event of `stream` (panics if the stream ends first).
pub async fn first_token(stream: &mut GenerationStream) {
    match tokio::time::timeout(Duration::from_secs(120), stream.next()).await {
        Ok(Some(Event::Token { .. })) => {}
        other => panic!("expected a token, got {other:?}"),
    }
}

/// The forward passes of model `name` so far.
pub fn forward_calls(runtime: &Runtime, name: &str) -> u64 {
    runtime
        .metrics()
        .models
        .iter()
        .find(|m| m.name == name)
        .map_or(0, |m| m.stats.forward_calls)
}

/// Resident memory of this process in bytes.
pub fn rss() -> u64 {
    tern_runtime::budget::process_rss().expect("VmRSS")
}
