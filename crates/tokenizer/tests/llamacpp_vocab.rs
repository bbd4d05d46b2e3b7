//! llama.cpp's own tokenizer tests: every `ggml-vocab-*.gguf` in its `models/` folder
//! with `.inp` / `.out` files (inputs separated by `__ggml_vocab_test__` lines, expected ids
//! one line per input, made with `add_special = false, parse_special = false` as
//! llama.cpp's `tests/test-tokenizer-0.cpp`). Each supported vocabulary must give the
//! expected ids on every input and decode them back to the input; every unsupported one
//! must be refused with an error naming what is missing. A vocabulary file that is
//! neither listed as supported nor as unsupported fails the inventory test. The files
//! without test pairs (gpt-neox and aquila: BPE with the default pre-tokenizer; baichuan:
//! SentencePiece) are checked on a seeded random text against llama.cpp's ids, with
//! several of the others.

use std::path::PathBuf;

use tern_gguf::GgufFile;
use tern_tokenizer::{Error, Tokenizer};

/// Vocabularies whose tokenizer type tern implements.
const SUPPORTED: &[&str] = &[
    "command-r",
    "deepseek-coder",
    "deepseek-llm",
    "falcon",
    "gemma-4",
    "gpt-2",
    "llama-bpe",
    "llama-spm",
    "mpt",
    "phi-3",
    "qwen2",
    "qwen35",
    "refact",
    "starcoder",
];

/// Vocabularies with tests whose tokenizer family tern does not implement.
const UNSUPPORTED: &[(&str, &str)] = &[("bert-bge", "bert")];

fn vocab_path(name: &str) -> PathBuf {
    tern_testkit::llamacpp_models_dir().join(format!("ggml-vocab-{name}.gguf"))
}

fn load(name: &str) -> Result<Tokenizer, Error> {
    let path = vocab_path(name);
    let file = GgufFile::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Tokenizer::from_gguf(file.metadata())
}

/// The (input, expected ids) pairs of a vocabulary's test files.
fn cases(name: &str) -> Vec<(String, Vec<u32>)> {
    let path = vocab_path(name);
    let inp = std::fs::read_to_string(path.with_extension("gguf.inp")).expect("read .inp");
    let out = std::fs::read_to_string(path.with_extension("gguf.out")).expect("read .out");
    let separator = "\n__ggml_vocab_test__\n";
    let mut inputs = Vec::new();
    let mut rest = inp.as_str();
    while !rest.is_empty() {
        match rest.find(separator) {
            Some(n) => {
                inputs.push(rest[..n].to_string());
                rest = &rest[n + separator.len()..];
            }
            None => {
                inputs.push(rest.to_string());
                rest = "";
            }
        }
    }
    let expected: Vec<Vec<u32>> = out
        .lines()
        .map(|line| {
            line.split_whitespace()
                .map(|id| id.parse().expect("token id"))
                .collect()
        })
        .collect();
    assert_eq!(
        inputs.len(),
        expected.len(),
        "{name}: .inp and .out disagree on the number of tests"
    );
    assert!(inputs.len() >= 40, "{name}: only {} tests", inputs.len());
    inputs.into_iter().zip(expected).collect()
}

fn check(name: &str) {
    let tokenizer = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut failures = Vec::new();
    for (i, (text, expected)) in cases(name).iter().enumerate() {
        let ids = tokenizer.encode(text, false, false);
        if &ids != expected {
            failures.push(format!(
                "#{i} {text:?}\n   got      {ids:?}\n   expected {expected:?}"
            ));
            continue;
        }
        // SentencePiece's prefix space stays in the decoded text.
        let back = tokenizer.decode(&ids);
        let with_prefix =
            tokenizer.add_space_prefix() && !text.is_empty() && back == format!(" {text}");
        if back != *text && !with_prefix {
            failures.push(format!("#{i} {text:?} decodes to {back:?}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{name}: {} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

macro_rules! vocab_tests {
    ($($test:ident => $name:literal,)*) => {
        $(
            #[test]
            fn $test() {
                check($name);
            }
        )*
    };
}

vocab_tests! {
    command_r => "command-r",
    deepseek_coder => "deepseek-coder",
    deepseek_llm => "deepseek-llm",
    falcon => "falcon",
    gemma_4 => "gemma-4",
    gpt_2 => "gpt-2",
    llama_bpe => "llama-bpe",
    llama_spm => "llama-spm",
    mpt => "mpt",
    phi_3 => "phi-3",
    qwen2 => "qwen2",
    qwen35 => "qwen35",
    refact => "refact",
    starcoder => "starcoder",
}

#[test]
fn unsupported_vocabularies_are_refused_by_name() {
    for (name, model) in UNSUPPORTED {
        match load(name) {
            Err(e @ Error::UnsupportedModel(_)) => {
                assert!(e.to_string().contains(model), "{name}: {e}");
            }
            other => panic!("{name}: expected an unsupported-model error, got {other:?}"),
        }
    }
}

#[test]
fn every_test_vocabulary_is_accounted_for() {
    let dir = tern_testkit::llamacpp_models_dir();
    let mut with_tests: Vec<String> = std::fs::read_dir(&dir)
        .expect("read models dir")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            Some(
                name.strip_prefix("ggml-vocab-")?
                    .strip_suffix(".gguf.inp")?
                    .to_string(),
            )
        })
        .collect();
    with_tests.sort();
    let mut known: Vec<String> = SUPPORTED
        .iter()
        .map(|s| s.to_string())
        .chain(UNSUPPORTED.iter().map(|(n, _)| n.to_string()))
        .collect();
    known.sort();
    assert_eq!(
        with_tests, known,
        "vocabularies with tests vs. those this file covers"
    );
}

/// `tests/goldens/tokenizer/random/<name>.json`: llama.cpp's ids for the seeded random
/// text (`random_text.txt`) on more vocab-only files, with BOS and special parsing as
/// `llama-tokenize` applies them ("prompt") and without ("bare").
#[test]
fn random_text_matches_llama_cpp_on_more_vocabularies() {
    let dir = tern_testkit::goldens_dir().join("tokenizer");
    let text = std::fs::read_to_string(dir.join("random_text.txt")).expect("random text");
    let mut names: Vec<String> = std::fs::read_dir(dir.join("random"))
        .expect("random goldens")
        .filter_map(|e| {
            e.ok()?
                .file_name()
                .into_string()
                .ok()?
                .strip_suffix(".json")
                .map(String::from)
        })
        .collect();
    names.sort();
    for required in [
        "gpt-neox",
        "aquila",
        "baichuan",
        "llama-bpe",
        "deepseek-llm",
    ] {
        assert!(
            names.iter().any(|n| n == required),
            "no random-text golden for {required}"
        );
    }
    let mut failures = Vec::new();
    for name in &names {
        let golden: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(dir.join("random").join(format!("{name}.json")))
                .expect("read"),
        )
        .expect("json");
        let tokenizer = load(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        for (mode, add_special, parse_special) in [
            ("prompt", tokenizer.add_bos(), true),
            ("bare", false, false),
        ] {
            let expected: Vec<u32> = golden["random_text"][mode]
                .as_array()
                .expect("ids")
                .iter()
                .map(|v| v.as_u64().expect("id") as u32)
                .collect();
            let got = tokenizer.encode(&text, add_special, parse_special);
            if got != expected {
                let at = got
                    .iter()
                    .zip(&expected)
                    .position(|(a, b)| a != b)
                    .unwrap_or(got.len().min(expected.len()));
                failures.push(format!("{name} ({mode}): first difference at token {at}"));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
