//! The runtime's error type. Each variant maps to one HTTP status in the server
//! (404, 429, 503, 400, 500, 504) and its message says what to do about it.

use std::time::Duration;

use crate::budget::format_bytes;

/// Why a runtime call failed.
#[derive(Clone, Debug, PartialEq, thiserror::Error)]
pub enum RuntimeError {
    /// No configured model has this name or alias (404).
    #[error("model {0:?} is not known (see the model list)")]
    UnknownModel(String),
    /// The model's queue is full (429 with `Retry-After`).
    #[error("model {model:?} is busy: {capacity} requests are already waiting; retry in {}s", retry_after.as_secs().max(1))]
    QueueFull {
        model: String,
        capacity: usize,
        retry_after: Duration,
    },
    /// The model is loading and its waiting list is full (503 with `Retry-After`).
    #[error("model {model:?} is loading; retry in {}s", retry_after.as_secs().max(1))]
    Loading {
        model: String,
        retry_after: Duration,
    },
    /// The model cannot be loaded within the memory budget, even after evicting every
    /// model that can be evicted (503).
    #[error("{}", does_not_fit(model, *budget, *needed, held_by))]
    DoesNotFit {
        model: String,
        /// The budget in bytes.
        budget: u64,
        /// The model's estimated footprint in bytes.
        needed: u64,
        /// The models holding memory (name, estimated bytes), with why they stay.
        held_by: Vec<(String, u64)>,
    },
    /// The prompt does not leave room for one generated token (400).
    #[error(
        "the prompt has {tokens} tokens but the context holds {ctx}; shorten it or raise ctx_size"
    )]
    PromptTooLong { tokens: usize, ctx: usize },
    /// The request is invalid (400).
    #[error("bad request: {0}")]
    BadRequest(String),
    /// The engine failed (500): the model file, a forward pass.
    #[error("engine: {0}")]
    Engine(String),
    /// The request's timeout passed (504).
    #[error("the request timed out")]
    Timeout,
    /// The runtime is shutting down and accepts no new work (503).
    #[error("the runtime is shutting down")]
    ShuttingDown,
}

fn does_not_fit(model: &str, budget: u64, needed: u64, held_by: &[(String, u64)]) -> String {
    let mut text = format!(
        "model {model:?} needs {} but the memory budget is {}",
        format_bytes(needed),
        format_bytes(budget)
    );
    if held_by.is_empty() {
        text.push_str(" (raise --memory-budget, or lower ctx_size / parallel)");
    } else {
        let held: Vec<String> = held_by
            .iter()
            .map(|(name, bytes)| format!("{name} {}", format_bytes(*bytes)))
            .collect();
        text.push_str(&format!(
            "; held by models that cannot be evicted now (pinned or serving requests): {}",
            held.join(", ")
        ));
    }
    text
}

impl From<tern_engine::Error> for RuntimeError {
    fn from(e: tern_engine::Error) -> Self {
        RuntimeError::Engine(e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn does_not_fit_names_budget_sizes_and_holders() {
        let e = RuntimeError::DoesNotFit {
            model: "gemma".into(),
            budget: 300 << 20,
            needed: 200 << 20,
            held_by: vec![("router".into(), 150 << 20)],
        };
        let text = e.to_string();
        for part in ["gemma", "200.0 MiB", "300.0 MiB", "router 150.0 MiB"] {
            assert!(text.contains(part), "{text}");
        }
        let e = RuntimeError::QueueFull {
            model: "m".into(),
            capacity: 4,
            retry_after: Duration::from_millis(10),
        };
        assert!(e.to_string().contains("retry in 1s"), "{e}");
    }
}
