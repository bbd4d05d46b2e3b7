//! The constrained-decoding property test on Gemma 3's real 262,144-token SentencePiece
//! vocabulary (read from the GGUF): spaces spelled `▁`, byte-fallback tokens for bytes
//! outside the vocabulary. Fewer seeds than on SmolLM2, each step costing more.

mod common;

/// Seeds per constraint; seven constraints make 70 generations.
const SEEDS: u64 = 10;

#[test]
fn random_model_outputs_always_parse_and_validate_with_gemma_vocabulary() {
    let vocab = common::gemma_vocab();
    let total = common::check_all_constraints(&vocab, SEEDS);
    assert_eq!(total as u64, SEEDS * (common::schemas().len() as u64 + 2));
}
