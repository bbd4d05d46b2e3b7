//! Constrained decoding with SmolLM2's real 49,152-token vocabulary.
//!
//! - Property test: a "model" of random logits, sampled at temperature 1.0 from the full
//!   masked distribution over hundreds of seeds, for schemas kept in `tests/data/schemas`
//!   (not in the library): every output must parse (serde_json) and validate (Python's
//!   jsonschema, an oracle independent of this code, via `scripts/sampler/validate.py`).
//!   Random logits almost never close a free string (few tokens contain a quote), so the
//!   fake model grows a preference for closing tokens the longer it runs, as a real model
//!   that wants to finish does; what may be emitted is still decided by the mask alone.
//! - The trie walk against a token-by-token check of every token, at several states.
//! - Negative test: logits that strongly favour invalid tokens still give valid output
//!   with the mask, and invalid output without it.

mod common;

use std::sync::Arc;

use common::{MAX_TOKENS, SplitMix, random_logits, smollm2_vocab, validate_with_python};
use tern_sampler::{ConstrainedDecoder, Constraint, Sampler, SamplingParams, Vocabulary};

/// Seeds per constraint; six constraints make 300 generations.
const SEEDS: u64 = 50;

#[test]
fn random_model_outputs_always_parse_and_validate() {
    let vocab = smollm2_vocab();
    let total = common::check_all_constraints(&vocab, SEEDS);
    assert_eq!(total as u64, SEEDS * (common::schemas().len() as u64 + 2));
}

/// The token of each single byte, where the vocabulary has one (byte-level BPE has one
/// for every byte that can occur in UTF-8 text).
fn byte_tokens(vocab: &Vocabulary) -> Vec<Option<u32>> {
    let mut ids = vec![None; 256];
    for id in 0..vocab.len() as u32 {
        if let [b] = vocab.token_bytes(id) {
            ids[*b as usize].get_or_insert(id);
        }
    }
    ids
}

fn feed(decoder: &mut ConstrainedDecoder, bytes: &[u8], by_byte: &[Option<u32>]) {
    for &b in bytes {
        let token = by_byte[b as usize].unwrap_or_else(|| panic!("no token for byte {b:#x}"));
        decoder
            .accept(token)
            .unwrap_or_else(|e| panic!("feeding {:?}: {e}", String::from_utf8_lossy(bytes)));
    }
}

#[test]
fn the_trie_walk_agrees_with_checking_every_token() {
    let vocab = smollm2_vocab();
    let by_byte = byte_tokens(&vocab);
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::data_dir().join("schemas/inventory.json")).unwrap(),
    )
    .unwrap();
    let constraint = Constraint::JsonSchema(schema);
    let mut complete_states = 0;
    for prefix in [
        "",
        "{",
        "{\"warehouse\": \"z",
        "{\"warehouse\": \"zürich-süd\", \"items\": [{\"sku\": \"ab\\u00",
        "{\"items\": [{\"sku\": \"abc\", \"price\": -1.5e",
        "{\"items\": [{\"sku\": \"abc\", \"price\": 12",
        "{\"items\": [{\"sku\": \"abc\", \"tags\": [\"sale\", ",
        "{\"items\": [{\"sku\": \"abc\", \"price\": 0}]}",
    ] {
        let mut decoder = ConstrainedDecoder::new(&constraint, Arc::clone(&vocab)).unwrap();
        feed(&mut decoder, prefix.as_bytes(), &by_byte);
        let mut logits = vec![0.0f32; vocab.len()];
        decoder.mask_logits(&mut logits);
        let mut allowed = 0;
        for token in 0..vocab.len() as u32 {
            let by_mask = logits[token as usize].is_finite();
            let by_accept = decoder.clone().accept(token).is_ok();
            assert_eq!(
                by_mask,
                by_accept,
                "after {prefix:?}: token {token} {:?}",
                String::from_utf8_lossy(vocab.token_bytes(token))
            );
            allowed += usize::from(by_mask);
        }
        assert!(allowed > 0, "after {prefix:?}: nothing allowed");
        // Once the value is complete, only whitespace (bounded) and the end remain.
        if decoder.is_complete() {
            complete_states += 1;
            for token in (0..vocab.len() as u32).filter(|&t| logits[t as usize].is_finite()) {
                let bytes = vocab.token_bytes(token);
                assert!(
                    vocab.is_end_of_generation(token)
                        || bytes.iter().all(|b| b" \t\n\r".contains(b)),
                    "after the complete {prefix:?}: token {token} {:?} allowed",
                    String::from_utf8_lossy(bytes)
                );
            }
            assert!(
                vocab
                    .end_of_generation()
                    .iter()
                    .all(|&t| logits[t as usize].is_finite())
            );
        }
    }
    assert_eq!(complete_states, 1);
}

#[test]
fn masking_excludes_invalid_tokens_the_model_prefers() {
    let vocab = smollm2_vocab();
    let schema: serde_json::Value = serde_json::from_slice(
        &std::fs::read(common::data_dir().join("schemas/person.json")).unwrap(),
    )
    .unwrap();
    let constraint = Constraint::JsonSchema(schema.clone());
    // A "model" that loves prose and markdown fences: the tokens that do not start with a
    // JSON structural byte get a large bonus.
    let bonus = |token: u32| match vocab.token_bytes(token).first() {
        Some(b'{' | b'}' | b'[' | b']' | b'"' | b':' | b',' | b' ' | b'\n') | None => 0.0,
        Some(_) => 30.0,
    };
    let mut decoder = ConstrainedDecoder::new(&constraint, Arc::clone(&vocab)).unwrap();
    let mut sampler = Sampler::new(SamplingParams::greedy(), vocab.len()).unwrap();
    let mut rng = SplitMix(99);
    let mut logits = vec![0.0f32; vocab.len()];

    // Without the mask the first choice is not even the start of JSON.
    random_logits(&mut rng, &mut logits, 1.0);
    for (id, l) in logits.iter_mut().enumerate() {
        *l += bonus(id as u32);
    }
    let unmasked = sampler.sample(&logits, &[]);
    assert!(
        decoder.clone().accept(unmasked).is_err(),
        "the unmasked choice was valid: the test shows nothing"
    );

    let mut out = Vec::new();
    let mut masked_away = 0usize;
    for _ in 0..MAX_TOKENS {
        random_logits(&mut rng, &mut logits, 1.0);
        for (id, l) in logits.iter_mut().enumerate() {
            *l += bonus(id as u32);
        }
        let before: Vec<bool> = logits.iter().map(|l| l.is_finite()).collect();
        decoder.mask_logits(&mut logits);
        masked_away += before
            .iter()
            .zip(&logits)
            .filter(|(b, l)| **b && !l.is_finite())
            .count();
        let token = sampler.sample(&logits, &[]);
        decoder
            .accept(token)
            .expect("the greedy choice after masking is allowed");
        if vocab.is_end_of_generation(token) {
            break;
        }
        out.extend_from_slice(vocab.token_bytes(token));
    }
    assert!(
        decoder.is_complete(),
        "no end: {}",
        String::from_utf8_lossy(&out)
    );
    assert!(masked_away > 0);
    let value: serde_json::Value = serde_json::from_slice(&out).expect("parses");
    validate_with_python(&common::data_dir().join("schemas/person.json"), &[value]);
}
