//! Shared helpers of the integration tests: the real vocabularies and a fake model.

#![allow(dead_code)]

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;

use tern_gguf::{GgufFile, Key};
use tern_sampler::{ConstrainedDecoder, Constraint, Sampler, SamplingParams, Vocabulary};
use tern_testkit::{TestModel, model_path};

/// A generation that has not ended after this many tokens fails the test.
pub const MAX_TOKENS: usize = 3000;

/// The test data folder of this crate.
pub fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests")
        .join("data")
}

/// Reads a vocabulary written by `scripts/sampler/dump-vocab.py`: the token bytes and
/// end-of-generation ids.
pub fn read_vocab_file(path: &Path) -> (Vec<Vec<u8>>, Vec<u32>) {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut raw)
        .expect("gzip");
    assert_eq!(
        &raw[..5],
        b"TVOC1",
        "{}: not a vocabulary dump",
        path.display()
    );
    let u32_at = |at: usize| u32::from_le_bytes(raw[at..at + 4].try_into().unwrap());
    let (count, eog_count) = (u32_at(5) as usize, u32_at(9) as usize);
    let mut at = 13;
    let eog = (0..eog_count).map(|i| u32_at(at + 4 * i)).collect();
    at += 4 * eog_count;
    let mut tokens = Vec::with_capacity(count);
    for _ in 0..count {
        let len = u16::from_le_bytes([raw[at], raw[at + 1]]) as usize;
        tokens.push(raw[at + 2..at + 2 + len].to_vec());
        at += 2 + len;
    }
    assert_eq!(at, raw.len(), "trailing bytes in {}", path.display());
    (tokens, eog)
}

/// SmolLM2-135M's real vocabulary (49,152 tokens; EOG `<|endoftext|>` and `<|im_end|>`),
/// dumped from the GGUF by `scripts/sampler/dump-vocab.py`.
pub fn smollm2_vocab() -> Arc<Vocabulary> {
    let (tokens, eog) = read_vocab_file(&data_dir().join("smollm2-vocab.bin.gz"));
    Arc::new(Vocabulary::new(tokens, eog).expect("vocabulary"))
}

/// SplitMix64: the fake model's source of random logits.
pub struct SplitMix(pub u64);

impl SplitMix {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Approximately standard normal: the sum of four 16-bit uniforms from one draw
    /// (Irwin–Hall), rescaled to unit variance.
    pub fn normal(&mut self) -> f32 {
        let x = self.next_u64();
        let sum: u32 = (0..4).map(|i| ((x >> (16 * i)) & 0xffff) as u32).sum();
        let mean = 4.0 * 32767.5;
        // Variance of one 16-bit uniform: (65536^2 - 1) / 12.
        let sd = (4.0f32 * (65536.0f32 * 65536.0 - 1.0) / 12.0).sqrt();
        (sum as f32 - mean) / sd
    }
}

/// Random logits for every token: the "model" of the property tests.
pub fn random_logits(rng: &mut SplitMix, logits: &mut [f32], scale: f32) {
    for l in logits.iter_mut() {
        *l = rng.normal() * scale;
    }
}

/// Gemma 3's token bytes as llama.cpp's `token_to_piece` gives them for a SentencePiece
/// vocabulary: `▁` is a space, `<0xXX>` byte tokens are that byte; control, unknown and
/// unused tokens have no bytes; user-defined tokens keep their text.
pub fn gemma_vocab() -> Arc<Vocabulary> {
    let file = GgufFile::open(model_path(TestModel::Gemma3_270m)).expect("open gemma");
    let meta = file.metadata();
    let tokens = meta
        .get_str_array(Key::TokenizerTokens)
        .expect("tokens")
        .expect("tokens present");
    let types = meta
        .get_i32_array(Key::TokenizerTokenType)
        .expect("types")
        .expect("types present");
    let eos = meta
        .get_u32(Key::TokenizerEosId)
        .expect("eos")
        .expect("eos present");
    let mut eog = vec![eos];
    let mut bytes = Vec::with_capacity(tokens.len());
    for (id, (text, &ty)) in tokens.iter().zip(types).enumerate() {
        if text == "<end_of_turn>" {
            eog.push(id as u32);
        }
        bytes.push(match ty {
            2 | 3 | 5 => Vec::new(),
            6 => vec![u8::from_str_radix(&text[3..5], 16).expect("byte token")],
            _ => text.replace('\u{2581}', " ").into_bytes(),
        });
    }
    Arc::new(Vocabulary::new(bytes, eog).expect("vocabulary"))
}

pub fn full_distribution(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed: Some(seed),
        ..SamplingParams::default()
    }
}

/// Tokens that close something (contain `"`, `}` or `]`) or end the generation.
pub fn closing_tokens(vocab: &Vocabulary) -> Vec<u32> {
    (0..vocab.len() as u32)
        .filter(|&t| {
            vocab.is_end_of_generation(t)
                || vocab.token_bytes(t).iter().any(|b| b"\"}]".contains(b))
        })
        .collect()
}

/// Generates until an end-of-generation token; returns the output bytes.
pub fn generate(
    vocab: &Arc<Vocabulary>,
    constraint: &Constraint,
    seed: u64,
    closing: &[u32],
) -> Vec<u8> {
    let mut decoder = ConstrainedDecoder::new(constraint, Arc::clone(vocab)).expect("constraint");
    let mut sampler = Sampler::new(full_distribution(seed), vocab.len()).expect("sampler");
    let mut rng = SplitMix(seed ^ 0x5eed);
    let mut logits = vec![0.0f32; vocab.len()];
    let mut history = Vec::new();
    let mut out = Vec::new();
    for step in 0..MAX_TOKENS {
        random_logits(&mut rng, &mut logits, 2.0);
        let pressure = (step as f32 / 20.0).min(12.0);
        for &t in closing {
            logits[t as usize] += pressure;
        }
        decoder.mask_logits(&mut logits);
        let token = sampler.sample(&logits, &history);
        decoder
            .accept(token)
            .unwrap_or_else(|e| panic!("seed {seed}: sampled a masked token: {e}"));
        history.push(token);
        if vocab.is_end_of_generation(token) {
            assert!(decoder.is_complete());
            return out;
        }
        out.extend_from_slice(vocab.token_bytes(token));
    }
    panic!(
        "seed {seed}: no end after {MAX_TOKENS} tokens: {}",
        String::from_utf8_lossy(&out)
    );
}

pub fn python() -> std::path::PathBuf {
    tern_testkit::data_dir()
        .join("venv")
        .join("bin")
        .join("python")
}

/// Validates documents against a schema file with Python's jsonschema; panics with its
/// report when any is invalid.
pub fn validate_with_python(schema: &Path, documents: &[serde_json::Value]) {
    let script = tern_testkit::repo_root().join("scripts/sampler/validate.py");
    let mut child = Command::new(python())
        .arg(&script)
        .arg(schema)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "{}: {e} (run scripts/fetch-test-data.py to make the venv)",
                python().display()
            )
        });
    let mut input = String::new();
    for d in documents {
        input.push_str(&serde_json::to_string(d).expect("serialise"));
        input.push('\n');
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write");
    let output = child.wait_with_output().expect("validator");
    let report = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}: invalid outputs:\n{report}{}",
        schema.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    assert_eq!(report.trim(), format!("{} valid", documents.len()));
}

/// The schemas of `tests/data/schemas`, sorted by file name, with their paths.
pub fn schemas() -> Vec<(PathBuf, serde_json::Value)> {
    let dir = data_dir().join("schemas");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("schemas")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "schemas missing in {}", dir.display());
    files
        .into_iter()
        .map(|f| {
            let schema =
                serde_json::from_slice(&std::fs::read(&f).expect("read")).expect("schema JSON");
            (f, schema)
        })
        .collect()
}

/// Generates `seeds` outputs per schema file and per `Json` mode; checks that every one
/// parses, validates (Python's jsonschema) and that the outputs vary. Returns the count.
pub fn check_all_constraints(vocab: &Arc<Vocabulary>, seeds: u64) -> usize {
    let closing = closing_tokens(vocab);
    let mut total = 0;
    for (file, schema) in schemas() {
        let constraint = Constraint::JsonSchema(schema);
        let mut documents = Vec::new();
        for seed in 0..seeds {
            let out = generate(vocab, &constraint, seed, &closing);
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                panic!(
                    "{}: seed {seed}: does not parse ({e}): {}",
                    file.display(),
                    String::from_utf8_lossy(&out)
                )
            });
            documents.push(value);
        }
        validate_with_python(&file, &documents);
        total += documents.len();
        // The outputs differ from seed to seed: the model really chose.
        let distinct: std::collections::HashSet<String> =
            documents.iter().map(|d| d.to_string()).collect();
        assert!(
            distinct.len() > documents.len() / 2,
            "{}: too few distinct outputs",
            file.display()
        );
    }
    for object_only in [false, true] {
        for seed in 0..seeds {
            let out = generate(
                vocab,
                &Constraint::Json { object_only },
                seed + 1000,
                &closing,
            );
            let value: serde_json::Value = serde_json::from_slice(&out).unwrap_or_else(|e| {
                panic!(
                    "json (object only: {object_only}), seed {seed}: does not parse ({e}): {}",
                    String::from_utf8_lossy(&out)
                )
            });
            assert!(!object_only || value.is_object(), "{value}");
            total += 1;
        }
    }
    total
}
