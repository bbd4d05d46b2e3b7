//! Properties over arbitrary text, on llama.cpp's vocab-only files: encoding never fails
//! or yields ids outside the vocabulary, decoding gives the text back, and streaming
//! decoding gives the same text one whole character at a time.

use std::sync::OnceLock;

use proptest::prelude::*;
use tern_gguf::GgufFile;
use tern_tokenizer::Tokenizer;

fn load(name: &str) -> Tokenizer {
    let path = tern_testkit::llamacpp_models_dir().join(format!("ggml-vocab-{name}.gguf"));
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(file.metadata()).expect("tokenizer")
}

fn gpt2() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("gpt-2"))
}

fn spm() -> &'static Tokenizer {
    static T: OnceLock<Tokenizer> = OnceLock::new();
    T.get_or_init(|| load("llama-spm"))
}

/// Text with the characters tokenizers care about over-represented.
fn text() -> impl Strategy<Value = String> {
    let interesting = prop::sample::select(vec![
        " ",
        "  ",
        "\n",
        "\t",
        "\r\n",
        "'s",
        "12",
        "é",
        "中",
        "🦙",
        "<s>",
        "</s>",
        "<unk>",
        "<|endoftext|>",
        "\u{0}",
    ]);
    prop::collection::vec(
        prop_oneof![
            any::<char>().prop_map(String::from),
            interesting.prop_map(String::from)
        ],
        0..40,
    )
    .prop_map(|parts| parts.concat())
}

fn check_stream(tokenizer: &Tokenizer, ids: &[u32]) -> Result<(), TestCaseError> {
    let mut decoder = tokenizer.stream_decoder();
    let mut streamed = String::new();
    for &id in ids {
        streamed.push_str(&decoder.push(id));
    }
    streamed.push_str(&decoder.finish());
    prop_assert_eq!(streamed, tokenizer.decode(ids));
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn byte_level_bpe_round_trips(s in text()) {
        let t = gpt2();
        let ids = t.encode(&s, false, false);
        prop_assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        prop_assert_eq!(t.decode(&ids), s.clone());
        check_stream(t, &ids)?;
        let special = t.encode(&s, true, true);
        prop_assert_eq!(t.decode_with_special(&special), s);
    }

    #[test]
    fn sentencepiece_round_trips_with_its_prefix_space(s in text()) {
        // SentencePiece writes spaces as U+2581, so that character cannot round-trip.
        let s = s.replace('\u{2581}', "_");
        let t = spm();
        let ids = t.encode(&s, false, false);
        prop_assert!(ids.iter().all(|&id| (id as usize) < t.vocab_size()));
        let expected = if s.is_empty() { String::new() } else { format!(" {s}") };
        prop_assert_eq!(t.decode(&ids), expected);
        prop_assert_eq!(t.detokenize(&ids, false, false), s.clone());
        check_stream(t, &ids)?;
        let with_bos = t.encode(&s, true, true);
        prop_assert_eq!(with_bos.first().copied(), t.bos());
    }
}
