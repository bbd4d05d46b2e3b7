//! The two real models open and show the facts known about them
//! (docs: ../shared/ENGINE-NOTES.md, "The real files").

mod common;

use std::collections::BTreeMap;

use tern_gguf::{Architecture, GgmlType, GgufFile, GgufWriter, Key, file_type_name};
use tern_testkit::{TestModel, model_path};

fn type_counts(file: &GgufFile) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for t in file.tensors() {
        *counts.entry(t.ggml_type.name().to_string()).or_default() += 1;
    }
    counts
}

#[test]
fn smollm2_135m_facts() {
    let file = GgufFile::open(model_path(TestModel::SmolLm2_135m)).expect("open smollm2");
    assert!(file.is_mapped());
    assert_eq!(file.version(), 3);
    assert_eq!(file.file_size(), 98_362_432);
    let m = file.metadata();
    assert_eq!(m.architecture().unwrap(), Architecture::Llama);
    assert_eq!(m.require_u32(Key::BlockCount).unwrap(), 30);
    assert_eq!(m.require_u32(Key::EmbeddingLength).unwrap(), 576);
    assert_eq!(m.require_u32(Key::AttentionHeadCount).unwrap(), 9);
    assert_eq!(m.require_u32(Key::AttentionHeadCountKv).unwrap(), 3);
    assert_eq!(
        m.require_u32_per_layer(Key::AttentionHeadCountKv, 30)
            .unwrap(),
        vec![3; 30]
    );
    assert_eq!(m.require_f32(Key::RopeFreqBase).unwrap(), 100_000.0);
    assert_eq!(m.require_str(Key::TokenizerModel).unwrap(), "gpt2");
    assert_eq!(m.require_str(Key::TokenizerPre).unwrap(), "smollm");
    assert_eq!(
        m.require_str_array(Key::TokenizerTokens).unwrap().len(),
        49_152
    );
    assert_eq!(
        m.require_i32_array(Key::TokenizerTokenType).unwrap().len(),
        49_152
    );
    assert!(
        !m.require_str_array(Key::TokenizerMerges)
            .unwrap()
            .is_empty()
    );
    assert!(!m.require_bool(Key::TokenizerAddBos).unwrap());
    assert!(
        m.require_str(Key::TokenizerChatTemplate)
            .unwrap()
            .contains("<|im_start|>")
    );
    assert_eq!(
        file_type_name(m.require_u32(Key::GeneralFileType).unwrap()),
        Some("Q4_1")
    );

    assert_eq!(file.tensors().len(), 272);
    let expected: BTreeMap<String, usize> = [("f32", 61), ("q4_1", 210), ("q8_0", 1)]
        .iter()
        .map(|(k, v)| (k.to_string(), *v))
        .collect();
    assert_eq!(type_counts(&file), expected);

    let embd = file.tensor("token_embd.weight").expect("token_embd");
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
    assert_eq!(embd.dims, vec![576, 49_152]);
    assert_eq!(embd.row_len(), 576);
    assert_eq!(embd.n_rows(), 49_152);
    assert_eq!(embd.n_bytes, 576 / 32 * 34 * 49_152);
    assert_eq!(file.tensor_data(embd).len() as u64, embd.n_bytes);
    let q = file.tensor("blk.0.attn_q.weight").expect("attn_q");
    assert_eq!(
        (q.ggml_type, q.dims.as_slice()),
        (GgmlType::Q4_1, &[576u64, 576][..])
    );
    // The last tensor ends inside the file, within one alignment of its end.
    let end = file
        .tensors()
        .iter()
        .map(|t| file.data_offset() + t.offset + t.n_bytes)
        .max()
        .unwrap();
    assert!(end <= file.file_size() && file.file_size() - end < file.alignment());
}

/// A sink that checks each written byte against the expected file, so a 250 MB rewrite
/// is compared without holding a second copy.
struct Compare<'a> {
    expected: &'a [u8],
    pos: usize,
}

impl std::io::Write for Compare<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let end = self.pos + buf.len();
        assert!(
            end <= self.expected.len(),
            "rewrite is longer than the original"
        );
        if let Some(i) = buf
            .iter()
            .zip(&self.expected[self.pos..end])
            .position(|(a, b)| a != b)
        {
            panic!("rewrite differs from the original at byte {}", self.pos + i);
        }
        self.pos = end;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Both files were laid out as llama.cpp/gguf-py lay files out, so reading them and
/// writing them back must give the same bytes: every value, tensor info and offset kept.
#[test]
fn real_files_rewrite_byte_identical() {
    for model in [TestModel::SmolLm2_135m, TestModel::Gemma3_270m] {
        let file = GgufFile::open(model_path(model)).unwrap();
        let mut sink = Compare {
            expected: file.as_bytes(),
            pos: 0,
        };
        let written = GgufWriter::from_file(&file)
            .unwrap()
            .write_to(&mut sink)
            .unwrap();
        assert_eq!(written, file.file_size(), "{model:?}");
        assert_eq!(sink.pos as u64, file.file_size(), "{model:?}");
    }
}

#[test]
fn gemma3_270m_facts() {
    let file = GgufFile::open(model_path(TestModel::Gemma3_270m)).expect("open gemma3");
    assert_eq!(file.file_size(), 253_113_024);
    let m = file.metadata();
    assert_eq!(m.architecture().unwrap(), Architecture::Gemma3);
    assert_eq!(m.require_u32(Key::BlockCount).unwrap(), 18);
    assert_eq!(m.require_u32(Key::EmbeddingLength).unwrap(), 640);
    assert_eq!(m.require_u32(Key::AttentionHeadCount).unwrap(), 4);
    assert_eq!(m.require_u32(Key::AttentionHeadCountKv).unwrap(), 1);
    assert_eq!(m.require_u32(Key::AttentionKeyLength).unwrap(), 256);
    assert_eq!(m.require_u32(Key::AttentionSlidingWindow).unwrap(), 512);
    assert_eq!(m.require_f32(Key::RopeFreqBase).unwrap(), 1_000_000.0);
    assert_eq!(m.require_str(Key::TokenizerModel).unwrap(), "llama");
    assert_eq!(
        m.require_str_array(Key::TokenizerTokens).unwrap().len(),
        262_144
    );
    assert_eq!(
        m.require_f32_array(Key::TokenizerScores).unwrap().len(),
        262_144
    );
    assert!(m.require_bool(Key::TokenizerAddBos).unwrap());
    assert!(!m.require_bool(Key::TokenizerAddSpacePrefix).unwrap());
    assert_eq!(m.get_str(Key::TokenizerChatTemplate).unwrap(), None);
    assert_eq!(
        file_type_name(m.require_u32(Key::GeneralFileType).unwrap()),
        Some("Q4_K_M")
    );

    let expected: BTreeMap<String, usize> = [
        ("f32", 109),
        ("q4_K", 27),
        ("q5_0", 81),
        ("q6_K", 9),
        ("q8_0", 10),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), *v))
    .collect();
    assert_eq!(type_counts(&file), expected);
    let embd = file.tensor("token_embd.weight").expect("token_embd");
    assert_eq!(embd.dims, vec![640, 262_144]);
    assert_eq!(embd.ggml_type, GgmlType::Q8_0);
}

/// ggml's own reader (through `scripts/gguf/interop.py ggml`) sees the same keys, value
/// types, tensors, offsets, sizes, alignment and data offset as tern in both files.
#[test]
fn real_files_match_ggml_reader() {
    for model in [TestModel::SmolLm2_135m, TestModel::Gemma3_270m] {
        let path = model_path(model);
        let file = GgufFile::open(&path).unwrap();
        let seen = common::interop::interop("ggml", &path);
        assert_eq!(seen, common::interop::ggml_view(&file), "{model:?}");
    }
}
