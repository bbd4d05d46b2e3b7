//! The model manager (skeleton: the API compiles; the implementation follows).

use std::sync::Arc;
use std::time::Duration;

use tern_sampler::SamplingParams;
use tern_tokenizer::chat::Message;

use crate::api::{
    Embeddings, GenerateRequest, GenerationStream, LoadedStatus, ModelInfo, RuntimeMetrics,
};
use crate::config::RuntimeConfig;
use crate::error::RuntimeError;

/// The model manager. Cheap to clone: clones share the same models.
#[derive(Clone, Debug)]
pub struct Runtime {
    inner: Arc<RuntimeConfig>,
}

fn pending() -> RuntimeError {
    RuntimeError::Engine("the runtime is being implemented".into())
}

impl Runtime {
    pub fn new(config: RuntimeConfig) -> Result<Runtime, RuntimeError> {
        Ok(Runtime {
            inner: Arc::new(config),
        })
    }
    pub fn models(&self) -> Vec<ModelInfo> {
        Vec::new()
    }
    pub fn loaded(&self) -> Vec<LoadedStatus> {
        Vec::new()
    }
    pub async fn generate(&self, _req: GenerateRequest) -> Result<GenerationStream, RuntimeError> {
        Err(pending())
    }
    pub async fn embed(
        &self,
        _model: &str,
        _inputs: Vec<String>,
    ) -> Result<Embeddings, RuntimeError> {
        Err(pending())
    }
    pub async fn unload(&self, _model: &str) -> Result<(), RuntimeError> {
        Err(pending())
    }
    pub fn sampling_defaults(&self, _model: &str) -> Result<SamplingParams, RuntimeError> {
        Err(pending())
    }
    pub fn chat_template(&self, _model: &str) -> Result<String, RuntimeError> {
        Err(pending())
    }
    pub fn render_chat(
        &self,
        _model: &str,
        _messages: &[Message],
        _add_generation_prompt: bool,
    ) -> Result<String, RuntimeError> {
        Err(pending())
    }
    pub fn metrics(&self) -> RuntimeMetrics {
        RuntimeMetrics {
            queue_depth: 0,
            active_sequences: 0,
            budget_bytes: 0,
            reserved_bytes: 0,
            rss_bytes: None,
            models: Vec::new(),
        }
    }
    pub async fn shutdown(&self, _timeout: Duration) {}
}
