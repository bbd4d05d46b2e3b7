//! Reading the tokenizer's metadata out of a GGUF file into the plain [`Vocab`].
//!
//! The keys are llama.cpp's (`src/llama-arch.cpp`, `LLM_KV_TOKENIZER_*`); which are
//! required and how they are typed follows `llama_vocab::impl::load`: the token list and
//! the model name are required, BPE needs merges, scores may be `f32` or `i32`.

use tern_gguf::{Array, Key, Metadata, Value};

use crate::{Error, Vocab};

/// Collects the tokenizer keys of `meta`.
pub(crate) fn vocab_from_metadata(meta: &Metadata) -> Result<Vocab, Error> {
    let model = meta
        .get_str(Key::TokenizerModel)?
        .ok_or(Error::MissingKey("tokenizer.ggml.model"))?;
    let tokens = meta
        .get_str_array(Key::TokenizerTokens)?
        .ok_or(Error::MissingKey("tokenizer.ggml.tokens"))?;
    let scores = match meta.get(Key::TokenizerScores) {
        None => None,
        Some(Value::Array(Array::F32(v))) => Some(v.clone()),
        Some(Value::Array(Array::I32(v))) => Some(v.iter().map(|&s| s as f32).collect()),
        Some(other) => {
            return Err(Error::InvalidMetadata {
                key: "tokenizer.ggml.scores",
                reason: format!(
                    "expected an array of f32 or i32, found {}",
                    other.type_description()
                ),
            });
        }
    };
    Ok(Vocab {
        model: model.to_string(),
        pre: meta.get_str(Key::TokenizerPre)?.map(str::to_string),
        tokens: tokens.to_vec(),
        scores,
        token_types: meta
            .get_i32_array(Key::TokenizerTokenType)?
            .map(<[i32]>::to_vec),
        merges: meta
            .get_str_array(Key::TokenizerMerges)?
            .map(<[String]>::to_vec),
        bos_id: token_id(meta, Key::TokenizerBosId)?,
        eos_id: token_id(meta, Key::TokenizerEosId)?,
        eot_id: token_id(meta, Key::TokenizerEotId)?,
        eom_id: token_id(meta, Key::TokenizerEomId)?,
        unknown_id: token_id(meta, Key::TokenizerUnknownId)?,
        separator_id: token_id(meta, Key::TokenizerSeparatorId)?,
        padding_id: token_id(meta, Key::TokenizerPaddingId)?,
        add_bos: meta.get_bool(Key::TokenizerAddBos)?,
        add_eos: meta.get_bool(Key::TokenizerAddEos)?,
        add_space_prefix: meta.get_bool(Key::TokenizerAddSpacePrefix)?,
        remove_extra_whitespaces: meta.get_bool(Key::TokenizerRemoveExtraWhitespaces)?,
        name: meta.get_str(Key::GeneralName)?.map(str::to_string),
    })
}

/// A special-token id; a negative value (written by some converters for "none") is
/// absent.
fn token_id(meta: &Metadata, key: Key) -> Result<Option<u32>, Error> {
    Ok(meta.get_i64(key)?.and_then(|id| u32::try_from(id).ok()))
}

/// The `tokenizer.chat_template` string, if the file has one.
pub(crate) fn chat_template(meta: &Metadata) -> Result<Option<String>, Error> {
    Ok(meta
        .get_str(Key::TokenizerChatTemplate)?
        .map(str::to_string))
}
