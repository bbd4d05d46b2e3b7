//! The continuous-batching scheduler on SmolLM2-135M: shared forward passes, prompt
//! chunks interleaved with decoding, cancellation, queue limits, timeouts, the prefix
//! cache, and aggregate throughput with 1 and 4 streams.

mod common;

use std::time::{Duration, Instant};

use common::{collect, entry, first_token, forward_calls, request, runtime};
use tern_runtime::{Event, FinishReason, RuntimeError};
use tern_testkit::TestModel;

const PROMPT: &str = "The history of the river begins in the mountains, where";

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn one_request_generates_and_reports_usage() {
    rt().block_on(async {
        let runtime = runtime(vec![entry("smol", TestModel::SmolLm2_135m)], None);
        let outcome = collect(runtime.generate(request("smol", PROMPT, 12)).await.unwrap()).await;
        assert_eq!(outcome.finish, Some(FinishReason::Length), "{outcome:?}");
        assert_eq!(outcome.usage.completion_tokens, 12);
        assert_eq!(outcome.tokens, 12);
        assert!(outcome.usage.prompt_tokens > 5);
        assert!(
            outcome.text.split_whitespace().count() >= 3,
            "{:?}",
            outcome.text
        );
        runtime.shutdown(Duration::from_secs(10)).await;
    });
}
