//! Typed metadata getters: `{arch}` resolution, lossless integer conversion, errors that
//! name the key and both types, `require_*` naming the missing key, per-layer values.

use tern_gguf::{Architecture, Array, Error, GgufFile, GgufWriter, Key, Metadata, PerLayer, Value};

fn metadata(entries: Vec<(&str, Value)>) -> Metadata {
    let mut w = GgufWriter::new();
    for (k, v) in entries {
        w.add_metadata(k, v).unwrap();
    }
    let mut bytes = Vec::new();
    w.write_to(&mut bytes).unwrap();
    GgufFile::from_bytes(bytes).unwrap().metadata().clone()
}

fn qwen3() -> Metadata {
    metadata(vec![
        ("general.architecture", "qwen3".into()),
        ("qwen3.context_length", Value::U32(40960)),
        ("qwen3.block_count", Value::I32(4)),
        ("qwen3.embedding_length", Value::U64(1024)),
        ("qwen3.attention.head_count", Value::U8(16)),
        (
            "qwen3.attention.head_count_kv",
            Value::Array(Array::I32(vec![8, 8, 4, 4])),
        ),
        (
            "qwen3.feed_forward_length",
            Value::Array(Array::U32(vec![3072, 3072])),
        ),
        ("qwen3.rope.freq_base", Value::F64(1e6)),
        ("qwen3.attention.layer_norm_rms_epsilon", Value::F32(1e-6)),
        ("qwen3.attention.sliding_window", Value::I64(-1)),
        ("llama.context_length", Value::U32(1)),
        (
            "tokenizer.ggml.tokens",
            vec!["a".to_string(), "b".to_string()].into(),
        ),
        ("tokenizer.ggml.scores", vec![0.0f32, -1.0].into()),
        ("tokenizer.ggml.token_type", vec![1i32, 3].into()),
        (
            "tokenizer.ggml.precompiled_charsmap",
            vec![1u8, 2, 3].into(),
        ),
        ("tokenizer.ggml.add_bos_token", Value::Bool(false)),
        ("tokenizer.ggml.bos_token_id", Value::U32(151643)),
        ("tokenizer.ggml.model", "gpt2".into()),
    ])
}

#[test]
fn keys_resolve_with_the_file_architecture() {
    let m = qwen3();
    assert_eq!(m.architecture().unwrap(), Architecture::Qwen3);
    assert_eq!(
        m.get_u32(Key::ContextLength).unwrap(),
        Some(40960),
        "not llama.context_length"
    );
    assert_eq!(m.get(Key::ContextLength), Some(&Value::U32(40960)));
    assert_eq!(m.key_name(Key::BlockCount), "qwen3.block_count");
    assert_eq!(m.get_str(Key::TokenizerModel).unwrap(), Some("gpt2"));
    assert_eq!(m.get_u32(Key::VocabSize).unwrap(), None);
    assert_eq!(m.iter().count(), 18);
    assert_eq!(
        m.iter().next().map(|(k, _)| k),
        Some("general.architecture")
    );
}

#[test]
fn integers_convert_losslessly_between_types() {
    let m = qwen3();
    assert_eq!(m.require_u32(Key::BlockCount).unwrap(), 4, "from i32");
    assert_eq!(
        m.require_u32(Key::EmbeddingLength).unwrap(),
        1024,
        "from u64"
    );
    assert_eq!(
        m.require_u64(Key::AttentionHeadCount).unwrap(),
        16,
        "from u8"
    );
    assert_eq!(
        m.require_i32(Key::AttentionSlidingWindow).unwrap(),
        -1,
        "from i64"
    );
    let err = m.get_u32(Key::AttentionSlidingWindow).unwrap_err();
    assert!(matches!(err, Error::OutOfRange { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("qwen3.attention.sliding_window") && msg.contains("-1") && msg.contains("u32"),
        "{msg}"
    );
    assert!(matches!(m.get_i32(Key::TokenizerBosId), Ok(Some(151643))));
}

#[test]
fn floats_accept_f32_and_f64() {
    let m = qwen3();
    assert_eq!(m.require_f32(Key::RopeFreqBase).unwrap(), 1e6);
    assert_eq!(
        m.require_f64(Key::AttentionLayerNormRmsEpsilon).unwrap(),
        1e-6f32 as f64
    );
    assert!(matches!(
        m.get_f32(Key::BlockCount),
        Err(Error::WrongType { .. })
    ));
}

#[test]
fn wrong_types_name_the_key_and_both_types() {
    let m = qwen3();
    let err = m.get_u32(Key::TokenizerModel).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metadata key \"tokenizer.ggml.model\": expected u32, found string"
    );
    let err = m.get_str_array(Key::TokenizerScores).unwrap_err();
    assert_eq!(
        err.to_string(),
        "metadata key \"tokenizer.ggml.scores\": expected array of string, found array of f32"
    );
    assert!(matches!(
        m.get_bool(Key::ContextLength),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        m.get_str(Key::TokenizerAddBos),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        m.get_f32_array(Key::TokenizerTokens),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        m.get_i32_array(Key::TokenizerScores),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        m.get_u32_array(Key::TokenizerTokens),
        Err(Error::WrongType { .. })
    ));
}

#[test]
fn arrays_are_borrowed_typed() {
    let m = qwen3();
    assert_eq!(
        m.require_str_array(Key::TokenizerTokens).unwrap(),
        ["a", "b"]
    );
    assert_eq!(
        m.require_f32_array(Key::TokenizerScores).unwrap(),
        [0.0, -1.0]
    );
    assert_eq!(
        m.require_i32_array(Key::TokenizerTokenType).unwrap(),
        [1, 3]
    );
    assert_eq!(
        m.require_u8_array(Key::TokenizerPrecompiledCharsmap)
            .unwrap(),
        [1, 2, 3]
    );
    assert!(!m.require_bool(Key::TokenizerAddBos).unwrap());
    assert_eq!(m.require_array(Key::TokenizerTokens).unwrap().len(), 2);
}

#[test]
fn missing_keys_are_named_in_full() {
    let m = qwen3();
    let err = m.require_u32(Key::VocabSize).unwrap_err();
    assert!(matches!(&err, Error::MissingKey(k) if k == "qwen3.vocab_size"));
    assert_eq!(err.to_string(), "missing metadata key \"qwen3.vocab_size\"");
    assert!(
        matches!(m.require_str(Key::TokenizerPre), Err(Error::MissingKey(k)) if k == "tokenizer.ggml.pre")
    );

    let llama = metadata(vec![("general.architecture", "llama".into())]);
    assert!(
        matches!(llama.require_u32(Key::ContextLength), Err(Error::MissingKey(k)) if k == "llama.context_length")
    );

    // Without an architecture, per-architecture keys cannot be resolved.
    let none = metadata(vec![("qwen3.context_length", Value::U32(8))]);
    assert_eq!(none.get(Key::ContextLength), None);
    assert!(
        matches!(none.architecture(), Err(Error::MissingKey(k)) if k == "general.architecture")
    );
    assert!(
        matches!(none.require_u32(Key::ContextLength), Err(Error::MissingKey(k)) if k == "general.architecture")
    );
}

#[test]
fn per_layer_values_may_be_scalars_or_arrays() {
    let m = qwen3();
    assert_eq!(
        m.require_u32_or_array(Key::AttentionHeadCountKv).unwrap(),
        PerLayer::Each(vec![8, 8, 4, 4])
    );
    assert_eq!(
        m.require_u32_per_layer(Key::AttentionHeadCountKv, 4)
            .unwrap(),
        vec![8, 8, 4, 4]
    );
    assert_eq!(
        m.require_u32_or_array(Key::AttentionHeadCount).unwrap(),
        PerLayer::Same(16)
    );
    assert_eq!(
        m.require_u32_per_layer(Key::AttentionHeadCount, 3).unwrap(),
        vec![16; 3]
    );
    assert_eq!(
        m.require_u32_or_array(Key::AttentionHeadCountKv)
            .unwrap()
            .get(2),
        Some(4)
    );
    let err = m
        .require_u32_per_layer(Key::FeedForwardLength, 4)
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::PerLayerLength {
                expected: 4,
                found: 2,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("qwen3.feed_forward_length"));
    assert!(matches!(
        m.get_u32_or_array(Key::TokenizerModel),
        Err(Error::WrongType { .. })
    ));
}
