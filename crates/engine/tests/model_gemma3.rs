//! Gemma 3 270M Q4_K_M (gemma3: sliding-window and global layers, QK-norm, post-norms,
//! GeGLU) against llama.cpp's goldens: prompt tokens, logits at the last prompt position,
//! greedy continuations — including prompts of 1,500+ tokens, past the 512-token
//! window — and perplexity at contexts 512 and 2048.

mod fidelity;

use fidelity::{Fixture, compare, perplexity_prefix};
use tern_testkit::TestModel;

const KEY: &str = "gemma-3-270m-q4_k_m";

/// Issue 4 asks for top-1 identical, top-10 logits within 0.1 and greedy continuations
/// matching on 90% of prompts. The test prints the measured values (recorded in
/// crates/engine/README.md, "Fidelity"): tern computes llama.cpp's bits in every tensor
/// on these prompts (Q6_K in its tiled-matmul order from 8 tokens, attention in its
/// tiled order from 64), so top-1 43/43, top-10 max |Δ| 0.0000, greedy 43/43. The
/// bounds are that, with a hair of margin on the logits.
const TOP10_TOLERANCE: f32 = 0.001;
const GREEDY_PASS_RATE: f64 = 1.0;
/// Perplexity over 4 chunks of 512: measured equal to llama-perplexity to 4 decimals.
const PPL_512_TOLERANCE: f64 = 1e-5;
/// Issue 4 asks 0.5%. One chunk of 2048 (past 1,024 tokens, where llama.cpp's
/// sliding-window cache of 1,024 cells reuses them and tern's ring follows it): measured
/// equal to llama-perplexity to 4 decimals (before the ring followed llama.cpp's cells:
/// 0.91% off).
const PPL_2048_TOLERANCE: f64 = 1e-5;
/// The three 1,500+-token prompts, past the reuse of sliding-window cells above
/// (measured: top-1 3/3, top-10 max |Δ| 0.0000, greedy 3/3; before the ring followed
/// llama.cpp's cells: top-10 within 0.71, greedy 2/3). The bounds are that, with a hair
/// of margin on the logits.
const LONG_GREEDY_PASS_RATE: f64 = 1.0;
const LONG_TOP10_TOLERANCE: f32 = 0.001;

fn fixture() -> Fixture {
    Fixture::load(TestModel::Gemma3_270m, KEY)
}

#[test]
fn fidelity_against_llama_cpp() {
    let fixture = fixture();
    let report = compare(&fixture, |id| !id.starts_with("long-"));
    report.print(KEY);
    assert!(report.prompts >= 40, "{} prompts", report.prompts);
    assert!(
        report.tokenization_mismatches.is_empty(),
        "{:?}",
        report.tokenization_mismatches
    );
    assert!(
        report.top1_mismatches.is_empty(),
        "{:?}",
        report.top1_mismatches
    );
    assert!(
        report.max_top10_diff <= TOP10_TOLERANCE,
        "top-10 logits differ by {}",
        report.max_top10_diff
    );
    assert!(
        report.greedy_pass_rate() >= GREEDY_PASS_RATE,
        "greedy: {:?}",
        report.greedy_failures
    );
}

#[test]
fn fidelity_on_prompts_longer_than_the_sliding_window() {
    let fixture = fixture();
    let report = compare(&fixture, |id| id.starts_with("long-"));
    report.print(KEY);
    assert!(report.prompts >= 3, "{} long prompts", report.prompts);
    assert!(
        report.tokenization_mismatches.is_empty(),
        "{:?}",
        report.tokenization_mismatches
    );
    assert!(
        report.top1_mismatches.is_empty(),
        "{:?}",
        report.top1_mismatches
    );
    assert!(
        report.max_top10_diff <= LONG_TOP10_TOLERANCE,
        "top-10 logits differ by {}",
        report.max_top10_diff
    );
    assert!(
        report.greedy_pass_rate() >= LONG_GREEDY_PASS_RATE,
        "greedy: {:?}",
        report.greedy_failures
    );
}

#[test]
fn perplexity_matches_llama_perplexity_at_512() {
    let fixture = fixture();
    let (ours, reference) = perplexity_prefix(&fixture, 512, 4);
    let relative = (ours - reference).abs() / reference;
    println!(
        "perplexity over 4 chunks of 512: tern {ours:.4}, llama.cpp {reference:.4} ({:.3}%)",
        100.0 * relative
    );
    assert!(
        relative < PPL_512_TOLERANCE,
        "tern {ours}, llama-perplexity {reference}"
    );
}

#[test]
fn perplexity_matches_llama_perplexity_at_2048() {
    let fixture = fixture();
    let (ours, reference) = perplexity_prefix(&fixture, 2048, 1);
    let relative = (ours - reference).abs() / reference;
    println!(
        "perplexity over 1 chunk of 2048: tern {ours:.4}, llama.cpp {reference:.4} ({:.3}%)",
        100.0 * relative
    );
    assert!(
        relative < PPL_2048_TOLERANCE,
        "tern {ours}, llama-perplexity {reference}"
    );
}
