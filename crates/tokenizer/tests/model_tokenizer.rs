//! Tokenization of the real models against llama.cpp's own tokenizer.
//!
//! `scripts/tokenizer/make_tokenizer_goldens.py` ran llama.cpp's `llama-tokenize` on the
//! prompts in `tests/goldens/tokenizer/prompts.json` (three modes each) and on a ~100 KB
//! text and a ~60 KB seeded random text (`random_text.txt`: words, code points from many
//! Unicode blocks and planes, whitespace runs, special-token text and fragments of it);
//! the ids are in `tests/goldens/tokenizer/<model>.json` with the special ids
//! llama.cpp reported. Every id must match. The same files drive the streaming-decoder
//! test (whole characters only, same text as a one-shot decode) and the speed report.

use std::time::Instant;

use serde_json::Value;
use tern_gguf::GgufFile;
use tern_testkit::{TestModel, goldens_dir, llamacpp_models_dir, model_path};
use tern_tokenizer::Tokenizer;
use tern_tokenizer::chat::ChatTemplate;

fn golden(name: &str) -> Value {
    let path = goldens_dir().join("tokenizer").join(format!("{name}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).expect("golden json")
}

fn prompts() -> Vec<String> {
    let path = goldens_dir().join("tokenizer").join("prompts.json");
    serde_json::from_str(&std::fs::read_to_string(path).expect("prompts")).expect("prompts json")
}

fn long_text() -> String {
    std::fs::read_to_string(goldens_dir().join("tokenizer").join("long_text.txt"))
        .expect("long text")
}

fn random_text() -> String {
    std::fs::read_to_string(goldens_dir().join("tokenizer").join("random_text.txt"))
        .expect("random text")
}

fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id array")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// (add_special, parse_special) of a golden mode, as `llama-tokenize` calls
/// `llama_tokenize`: BOS is requested only when the model adds one.
fn mode_flags(tokenizer: &Tokenizer, mode: &str) -> (bool, bool) {
    match mode {
        "prompt" => (tokenizer.add_bos(), true),
        "literal" => (tokenizer.add_bos(), false),
        "bare" => (false, false),
        other => panic!("unknown mode {other}"),
    }
}

fn check_against_llama_cpp(tokenizer: &Tokenizer, name: &str) {
    let golden = golden(name);
    let prompts = prompts();
    let cases = golden["cases"].as_array().expect("cases");
    assert_eq!(
        cases.len(),
        prompts.len() * 3,
        "{name}: golden does not cover every prompt"
    );
    let mut failures = Vec::new();
    for case in cases {
        let prompt = &prompts[case["prompt"].as_u64().expect("prompt index") as usize];
        let mode = case["mode"].as_str().expect("mode");
        let (add_special, parse_special) = mode_flags(tokenizer, mode);
        let expected = ids(&case["ids"]);
        let got = tokenizer.encode(prompt, add_special, parse_special);
        if got != expected {
            failures.push(format!(
                "{mode} {prompt:?}\n  got      {got:?}\n  expected {expected:?}"
            ));
        }
    }
    let long = long_text();
    let random = random_text();
    let texts = [
        ("long text", &long, "prompt", &golden["long_text"]["ids"]),
        (
            "random text",
            &random,
            "prompt",
            &golden["random_text"]["prompt"],
        ),
        (
            "random text",
            &random,
            "bare",
            &golden["random_text"]["bare"],
        ),
    ];
    for (label, text, mode, expected) in texts {
        let expected = ids(expected);
        let (add_special, parse_special) = mode_flags(tokenizer, mode);
        let got = tokenizer.encode(text, add_special, parse_special);
        if got != expected {
            let first = got
                .iter()
                .zip(&expected)
                .position(|(a, b)| a != b)
                .unwrap_or(got.len().min(expected.len()));
            failures.push(format!(
                "{label} ({mode}): {} tokens vs {} expected, first difference at {first}",
                got.len(),
                expected.len()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} mismatches with llama.cpp:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // Special ids as llama.cpp reported them after loading.
    let vocab = &golden["vocab"];
    let id = |key: &str| vocab[key].as_u64().map(|v| v as u32);
    assert_eq!(tokenizer.bos(), id("bos"), "{name}: BOS");
    assert_eq!(tokenizer.eos(), id("eos"), "{name}: EOS");
    assert_eq!(tokenizer.unknown(), id("unk"), "{name}: UNK");
    assert_eq!(tokenizer.padding(), id("pad"), "{name}: PAD");
    assert_eq!(
        tokenizer.end_of_generation_ids(),
        ids(&vocab["eog"]),
        "{name}: end-of-generation set"
    );
    for eog in ids(&vocab["eog"]) {
        assert!(
            tokenizer.is_end_of_generation(eog),
            "{name}: {eog} ends generation"
        );
    }
    assert!(
        tokenizer
            .eot()
            .is_some_and(|t| tokenizer.is_end_of_generation(t)),
        "{name}: EOT is an EOG token"
    );
}

/// Pushing ids one at a time yields exactly `decode(all)`, and every piece is whole
/// characters: no replacement character appears that the one-shot decode lacks.
fn check_stream_decoding(tokenizer: &Tokenizer, name: &str, sentencepiece: bool) -> usize {
    let mut held_back = 0;
    let mut texts = prompts();
    texts.push(long_text());
    texts.push(random_text());
    for text in &texts {
        for special in [false, true] {
            let ids = tokenizer.encode(text, tokenizer.add_bos(), true);
            let whole = if special {
                tokenizer.decode_with_special(&ids)
            } else {
                tokenizer.decode(&ids)
            };
            let mut decoder = if special {
                tokenizer.stream_decoder_with_special()
            } else {
                tokenizer.stream_decoder()
            };
            let mut streamed = String::new();
            for &id in &ids {
                let piece = decoder.push(id);
                if piece.is_empty() && decoder.pending_bytes() > 0 {
                    held_back += 1;
                }
                assert!(
                    !piece.contains('\u{FFFD}') || whole.contains('\u{FFFD}'),
                    "{name}: broken character streamed for {text:?}: {piece:?}"
                );
                streamed.push_str(&piece);
            }
            streamed.push_str(&decoder.finish());
            assert_eq!(
                streamed, whole,
                "{name}: streamed text differs for {text:?}"
            );
        }
        // Without BOS and special parsing, decoding gives the text back. SentencePiece
        // keeps its prefix space, and writes spaces as U+2581, so that a U+2581 in the
        // text comes back as a space.
        let literal = tokenizer.decode(&tokenizer.encode(text, false, false));
        let expected = if sentencepiece {
            text.replace('\u{2581}', " ")
        } else {
            text.clone()
        };
        let with_prefix =
            tokenizer.add_space_prefix() && literal.strip_prefix(' ') == Some(expected.as_str());
        assert!(
            literal == expected || with_prefix,
            "{name}: {text:?} decodes to {literal:?}"
        );
    }
    held_back
}

/// Tokenizes the ~100 KB text, best of three, and reports the speed.
fn report_speed(tokenizer: &Tokenizer, name: &str) {
    let text = long_text();
    let mut best = f64::INFINITY;
    let mut n = 0;
    for _ in 0..3 {
        let start = Instant::now();
        n = tokenizer.encode(&text, tokenizer.add_bos(), true).len();
        best = best.min(start.elapsed().as_secs_f64());
    }
    let mb_per_s = text.len() as f64 / best / 1e6;
    eprintln!(
        "{name}: {} bytes -> {n} tokens in {:.1} ms ({mb_per_s:.1} MB/s, {:.0} tokens/s)",
        text.len(),
        best * 1e3,
        n as f64 / best
    );
    // Generous bound: linearithmic code does this in tens of milliseconds; a quadratic
    // merge or a per-special-token rescan would take seconds.
    assert!(best < 2.0, "{name}: 100 KB took {best:.2} s");
    // One 100 KB word (no pre-tokenizer split, no spaces) must not be quadratic either.
    let word = "ab".repeat(50_000);
    let start = Instant::now();
    let n = tokenizer.encode(&word, false, false).len();
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{name}: one 100 KB word -> {n} tokens in {:.1} ms",
        secs * 1e3
    );
    assert!(secs < 2.0, "{name}: a 100 KB word took {secs:.2} s");
}

fn load(path: &std::path::Path) -> (GgufFile, Tokenizer) {
    let file = GgufFile::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let start = Instant::now();
    let tokenizer = Tokenizer::from_gguf(file.metadata()).expect("tokenizer");
    eprintln!(
        "{}: tokenizer built in {:.0} ms",
        path.display(),
        start.elapsed().as_secs_f64() * 1e3
    );
    (file, tokenizer)
}

#[test]
fn smollm2_matches_llama_cpp() {
    let (file, tokenizer) = load(&model_path(TestModel::SmolLm2_135m));
    assert_eq!(tokenizer.vocab_size(), 49_152);
    assert!(!tokenizer.add_bos());
    check_against_llama_cpp(&tokenizer, "smollm2-135m-instruct");
    check_stream_decoding(&tokenizer, "smollm2-135m-instruct", false);
    report_speed(&tokenizer, "smollm2-135m-instruct");
    // The GGUF carries a template; SmolLM2's inserts a default system prompt.
    let template = ChatTemplate::from_gguf(file.metadata(), &tokenizer).expect("template");
    assert!(!template.is_fallback());
    let text = template
        .render(
            &[tern_tokenizer::chat::Message::user("Hi")],
            true,
            &serde_json::Map::new(),
        )
        .expect("render");
    assert!(
        text.starts_with("<|im_start|>system\nYou are a helpful AI assistant named SmolLM"),
        "{text}"
    );
    // Special-token text in a rendered prompt becomes the control tokens.
    let ids = tokenizer.encode(&text, tokenizer.add_bos(), true);
    assert_eq!(
        ids[0],
        tokenizer.token_id("<|im_start|>").expect("im_start")
    );
}

#[test]
fn gemma3_matches_llama_cpp() {
    let (file, tokenizer) = load(&model_path(TestModel::Gemma3_270m));
    assert_eq!(tokenizer.vocab_size(), 262_144);
    assert!(tokenizer.add_bos());
    assert!(!tokenizer.add_space_prefix());
    // llama.cpp forces `</s>` (a user-defined token in this file) to control type.
    assert_eq!(tokenizer.token_text(212), "</s>");
    assert!(tokenizer.is_control(212));
    assert_eq!(tokenizer.eot(), Some(106));
    check_against_llama_cpp(&tokenizer, "gemma-3-270m");
    let held_back = check_stream_decoding(&tokenizer, "gemma-3-270m", true);
    // Characters outside the vocabulary arrive as <0xXX> byte tokens, so the decoder
    // must have held partial characters back.
    assert!(
        held_back > 0,
        "no prompt split a character across byte tokens"
    );
    let ids = tokenizer.encode("𠀀", false, false);
    assert!(
        ids.len() > 1
            && ids
                .iter()
                .all(|&id| tokenizer.token_text(id).starts_with("<0x")),
        "{ids:?}"
    );
    report_speed(&tokenizer, "gemma-3-270m");
    // No template in the file: the documented ChatML fallback.
    let template = ChatTemplate::from_gguf(file.metadata(), &tokenizer).expect("template");
    assert!(template.is_fallback());
}

#[test]
fn qwen2_vocab_matches_llama_cpp() {
    let (_file, tokenizer) = load(&llamacpp_models_dir().join("ggml-vocab-qwen2.gguf"));
    check_against_llama_cpp(&tokenizer, "qwen2-vocab");
    check_stream_decoding(&tokenizer, "qwen2-vocab", false);
}

#[test]
fn phi3_vocab_matches_llama_cpp() {
    // llama.cpp gives Phi-3's special tokens right-stripping by the model name: with
    // special parsing on, the whitespace after `<|end|>` or `<|user|>` disappears.
    let (_file, tokenizer) = load(&llamacpp_models_dir().join("ggml-vocab-phi-3.gguf"));
    check_against_llama_cpp(&tokenizer, "phi-3-vocab");
    check_stream_decoding(&tokenizer, "phi-3-vocab", true);
}
