//! Shared helpers of the integration tests: the real vocabularies and a fake model.

#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use tern_sampler::Vocabulary;

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

    /// Approximately standard normal (sum of four uniforms, rescaled).
    pub fn normal(&mut self) -> f32 {
        let sum: f64 = (0..4)
            .map(|_| (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64)
            .sum();
        ((sum - 2.0) * 3f64.sqrt()) as f32
    }
}

/// Random logits for every token: the "model" of the property tests.
pub fn random_logits(rng: &mut SplitMix, logits: &mut [f32], scale: f32) {
    for l in logits.iter_mut() {
        *l = rng.normal() * scale;
    }
}
