//! The per-step cost of masking, on SmolLM2's 49,152-token vocabulary and Gemma 3's
//! 262,144-token one (read from the real GGUF with tern-gguf), at the states that cost
//! most and least: inside a free string (nearly every token continues it), after a key,
//! inside a number, and at the start of a value.
//!
//! The sampler's own cost per token at Gemma's vocabulary size is measured beside it.
//!
//! Prints the measured milliseconds per `mask_logits` call (run with `--nocapture`) and
//! fails if a step is slower than a generous bound, which only a regression to something
//! like a token-by-token check would hit.

mod common;

use std::sync::Arc;
use std::time::Instant;

use tern_sampler::{ConstrainedDecoder, Constraint, Sampler, SamplingParams, Vocabulary};

/// Median milliseconds of `mask_logits` after feeding `prefix` byte by byte.
fn cost_ms(vocab: &Arc<Vocabulary>, constraint: &Constraint, prefix: &str) -> f64 {
    let mut by_byte = vec![None; 256];
    for id in 0..vocab.len() as u32 {
        if let [b] = vocab.token_bytes(id) {
            by_byte[*b as usize].get_or_insert(id);
        }
    }
    let mut decoder = ConstrainedDecoder::new(constraint, Arc::clone(vocab)).expect("constraint");
    for b in prefix.bytes() {
        decoder
            .accept(by_byte[b as usize].expect("byte token"))
            .expect("prefix");
    }
    let mut logits = vec![0.0f32; vocab.len()];
    let mut times = Vec::new();
    for _ in 0..7 {
        let start = Instant::now();
        decoder.mask_logits(&mut logits);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    times[times.len() / 2]
}

#[test]
fn per_step_masking_cost() {
    let schema = serde_json::json!({
        "type": "object",
        "properties": {"name": {"type": "string"}, "code": {"type": "string", "maxLength": 8}, "count": {"type": "number"}, "tags": {"type": "array", "items": {"type": "string"}}},
        "required": ["name"]
    });
    let constraint = Constraint::JsonSchema(schema);
    let states = [
        ("value start", ""),
        ("after a key", "{\"name\":"),
        ("inside a free string", "{\"name\": \"Some text "),
        ("inside a short string", "{\"name\": \"x\", \"code\": \"ab"),
        ("inside a number", "{\"name\": \"x\", \"count\": -12.5"),
    ];
    for (name, vocab) in [
        ("SmolLM2 (49,152)", common::smollm2_vocab()),
        ("Gemma 3 (262,144)", common::gemma_vocab()),
    ] {
        println!(
            "{name}: {} trie nodes, {} in the trie walked inside strings",
            vocab.trie_node_count(),
            vocab.string_trie_node_count()
        );
        for (state, prefix) in states {
            let ms = cost_ms(&vocab, &constraint, prefix);
            println!("  {state:<22} {ms:8.3} ms per step");
            // Generous: measured values are a few ms with optimisations on.
            assert!(ms < 500.0, "{name}, {state}: {ms:.1} ms per step");
        }
    }
}

#[test]
fn per_token_sampling_cost_at_gemma_size() {
    let vocab_size = 262_144;
    let mut rng = common::SplitMix(7);
    let mut logits = vec![0.0f32; vocab_size];
    common::random_logits(&mut rng, &mut logits, 3.0);
    let history: Vec<u32> = (0..256).map(|i| (i * 1021) % vocab_size as u32).collect();
    let full = SamplingParams {
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        temperature: 1.0,
        seed: Some(1),
        ..SamplingParams::default()
    };
    let penalties = SamplingParams {
        repeat_penalty: 1.1,
        frequency_penalty: 0.5,
        presence_penalty: 0.5,
        seed: Some(1),
        ..SamplingParams::default()
    };
    for (name, params) in [
        ("greedy", SamplingParams::greedy()),
        (
            "llama.cpp defaults",
            SamplingParams {
                seed: Some(1),
                ..SamplingParams::default()
            },
        ),
        ("defaults + penalties", penalties),
        (
            "top-p 0.9 only",
            SamplingParams {
                top_k: 0,
                top_p: 0.9,
                min_p: 0.0,
                seed: Some(1),
                ..SamplingParams::default()
            },
        ),
        ("full distribution", full),
    ] {
        let mut sampler = Sampler::new(params, vocab_size).expect("sampler");
        let mut times = Vec::new();
        for _ in 0..7 {
            let start = Instant::now();
            std::hint::black_box(sampler.sample(&logits, &history));
            times.push(start.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        let ms = times[times.len() / 2];
        println!("sampling, {name:<22} {ms:8.3} ms per token (262,144 logits)");
        assert!(ms < 200.0, "{name}: {ms:.1} ms per token");
    }
}
