//! qwen2, qwen3, phi3 and Llama 3 against llama.cpp on tiny synthetic models
//! (scripts/synthetic/make-models.py: random Q4_K_M weights, the real tokenizers and
//! chat templates, the converter's tensors and keys; goldens by
//! scripts/goldens/architectures.py). Each architecture must match llama.cpp by issue
//! 6's rules, and each mutation of its graph — NeoX vs normal RoPE, a missing QK-norm, a
//! wrong RoPE base, missing Q/K/V biases, swapped LongRoPE factors, missing Llama 3
//! frequency divisors — must make the same comparison fail.

mod arch;
mod fidelity;

use arch::{Case, assert_mutation_detected, synthetic_path};
use tern_engine::Mutation;

fn case(key: &'static str) -> Case {
    Case::new(key, synthetic_path(key))
}

fn all(_: &str) -> bool {
    true
}

#[test]
fn qwen2_matches_llama_cpp_and_mutations_are_caught() {
    // QKV biases, untied output, NeoX RoPE with base 1e6.
    let case = case("qwen2-synthetic");
    case.compare(&case.model(None), all).assert_passes(case.key);
    assert_mutation_detected(&case, Mutation::SkipQkvBias, all);
    assert_mutation_detected(&case, Mutation::SwapRopeLayout, all);
    assert_mutation_detected(&case, Mutation::WrongRopeBase, all);
}

#[test]
fn qwen3_matches_llama_cpp_and_mutations_are_caught() {
    // QK-norm, no biases, tied embeddings, explicit head width.
    let case = case("qwen3-synthetic");
    case.compare(&case.model(None), all).assert_passes(case.key);
    assert_mutation_detected(&case, Mutation::SkipQkNorm, all);
    assert_mutation_detected(&case, Mutation::SwapRopeLayout, all);
    assert_mutation_detected(&case, Mutation::WrongRopeBase, all);
}

fn long_context(id: &str) -> bool {
    id.starts_with("ctx4096/")
}

fn original_context(id: &str) -> bool {
    !long_context(id)
}

#[test]
fn phi3_matches_llama_cpp_at_the_original_context() {
    // Fused QKV and gate/up, partial rotary (48 of 64), LongRoPE short factors and the
    // attention factor, the file's 32-token sliding window ignored.
    let case = case("phi3-synthetic");
    case.compare(&case.model(None), original_context)
        .assert_passes("phi3-synthetic, 2048-token context");
    assert_mutation_detected(&case, Mutation::SwapRopeLayout, original_context);
    assert_mutation_detected(&case, Mutation::SwapLongRopeFactors, original_context);
}

#[test]
fn phi3_longrope_switches_to_the_long_factors_past_the_original_context() {
    // Original context 2048: a 4096-token context takes the long factors for every
    // position, as llama.cpp does; with the short ones the comparison fails.
    let case = case("phi3-synthetic");
    case.compare(&case.model(None), long_context)
        .assert_passes("phi3-synthetic, 4096-token context");
    assert_mutation_detected(&case, Mutation::SwapLongRopeFactors, long_context);
}

#[test]
fn llama3_rope_scaling_matches_llama_cpp() {
    // rope_freqs (Llama 3 scaling) with normal RoPE, base 500000, tied embeddings.
    let case = case("llama3-synthetic");
    case.compare(&case.model(None), all).assert_passes(case.key);
    assert_mutation_detected(&case, Mutation::DropRopeFreqs, all);
    assert_mutation_detected(&case, Mutation::SwapRopeLayout, all);
    assert_mutation_detected(&case, Mutation::WrongRopeBase, all);
}
