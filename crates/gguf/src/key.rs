//! The metadata keys tern reads, as one table, and the architectures it knows.
//!
//! Model and tokenizer code names keys with [`Key`] variants, never with string literals.
//! The names follow llama.cpp's key table (`src/llama-arch.cpp`, `LLM_KV_NAMES`), where
//! `%s` — written `{arch}` here — stands for the file's `general.architecture`.

use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;

/// A model architecture (`general.architecture`), named as in llama.cpp's
/// `LLM_ARCH_NAMES` (`src/llama-arch.cpp`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Architecture {
    Llama,
    Gemma3,
    Qwen2,
    Qwen3,
    Phi3,
    /// Any other name, kept as written.
    Other(String),
}

impl Architecture {
    /// The name used in files and as the prefix of per-architecture keys.
    pub fn as_str(&self) -> &str {
        match self {
            Architecture::Llama => "llama",
            Architecture::Gemma3 => "gemma3",
            Architecture::Qwen2 => "qwen2",
            Architecture::Qwen3 => "qwen3",
            Architecture::Phi3 => "phi3",
            Architecture::Other(name) => name,
        }
    }

    /// The architecture called `name`; unknown names become [`Architecture::Other`].
    pub fn from_name(name: &str) -> Architecture {
        match name {
            "llama" => Architecture::Llama,
            "gemma3" => Architecture::Gemma3,
            "qwen2" => Architecture::Qwen2,
            "qwen3" => Architecture::Qwen3,
            "phi3" => Architecture::Phi3,
            other => Architecture::Other(other.to_string()),
        }
    }
}

impl FromStr for Architecture {
    type Err = Infallible;

    fn from_str(s: &str) -> Result<Architecture, Infallible> {
        Ok(Architecture::from_name(s))
    }
}

impl fmt::Display for Architecture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

macro_rules! keys {
    ($($(#[$doc:meta])* $variant:ident => $template:literal,)*) => {
        /// A metadata key tern understands. `template()` gives its name with `{arch}`
        /// where the architecture goes; [`Key::name`] fills it in.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Key {
            $($(#[$doc])* $variant,)*
        }

        impl Key {
            /// Every key, in table order.
            pub const ALL: &'static [Key] = &[$(Key::$variant,)*];

            /// The key's name, with `{arch}` standing for the architecture.
            pub fn template(self) -> &'static str {
                match self {
                    $(Key::$variant => $template,)*
                }
            }
        }
    };
}

keys! {
    GeneralType => "general.type",
    GeneralArchitecture => "general.architecture",
    GeneralQuantizationVersion => "general.quantization_version",
    GeneralAlignment => "general.alignment",
    GeneralFileType => "general.file_type",
    GeneralName => "general.name",
    GeneralAuthor => "general.author",
    GeneralVersion => "general.version",
    GeneralUrl => "general.url",
    GeneralDescription => "general.description",
    GeneralLicense => "general.license",
    GeneralSourceUrl => "general.source.url",
    GeneralSourceHfRepo => "general.source.huggingface.repository",
    // Written by gguf-py's metadata helpers (gguf-py `constants.py`, `Keys.General`), not
    // in llama.cpp's table, but present in most files.
    GeneralSizeLabel => "general.size_label",
    GeneralBasename => "general.basename",
    GeneralFinetune => "general.finetune",
    GeneralOrganization => "general.organization",

    VocabSize => "{arch}.vocab_size",
    ContextLength => "{arch}.context_length",
    EmbeddingLength => "{arch}.embedding_length",
    BlockCount => "{arch}.block_count",
    FeedForwardLength => "{arch}.feed_forward_length",
    UseParallelResidual => "{arch}.use_parallel_residual",
    TensorDataLayout => "{arch}.tensor_data_layout",
    ExpertCount => "{arch}.expert_count",
    ExpertUsedCount => "{arch}.expert_used_count",
    PoolingType => "{arch}.pooling_type",
    LogitScale => "{arch}.logit_scale",
    AttnLogitSoftcapping => "{arch}.attn_logit_softcapping",
    FinalLogitSoftcapping => "{arch}.final_logit_softcapping",
    EmbeddingScale => "{arch}.embedding_scale",
    ResidualScale => "{arch}.residual_scale",

    AttentionHeadCount => "{arch}.attention.head_count",
    AttentionHeadCountKv => "{arch}.attention.head_count_kv",
    AttentionMaxAlibiBias => "{arch}.attention.max_alibi_bias",
    AttentionClampKqv => "{arch}.attention.clamp_kqv",
    AttentionKeyLength => "{arch}.attention.key_length",
    AttentionValueLength => "{arch}.attention.value_length",
    AttentionLayerNormEpsilon => "{arch}.attention.layer_norm_epsilon",
    AttentionLayerNormRmsEpsilon => "{arch}.attention.layer_norm_rms_epsilon",
    AttentionCausal => "{arch}.attention.causal",
    AttentionSlidingWindow => "{arch}.attention.sliding_window",
    AttentionSlidingWindowPattern => "{arch}.attention.sliding_window_pattern",
    AttentionScale => "{arch}.attention.scale",

    RopeDimensionCount => "{arch}.rope.dimension_count",
    RopeDimensionSections => "{arch}.rope.dimension_sections",
    RopeFreqBase => "{arch}.rope.freq_base",
    RopeFreqBaseSwa => "{arch}.rope.freq_base_swa",
    RopeScaleLinear => "{arch}.rope.scale_linear",
    RopeScalingType => "{arch}.rope.scaling.type",
    RopeScalingFactor => "{arch}.rope.scaling.factor",
    RopeScalingAttnFactor => "{arch}.rope.scaling.attn_factor",
    RopeScalingOriginalContextLength => "{arch}.rope.scaling.original_context_length",
    RopeScalingFinetuned => "{arch}.rope.scaling.finetuned",
    RopeScalingYarnLogMultiplier => "{arch}.rope.scaling.yarn_log_multiplier",
    RopeScalingYarnExtFactor => "{arch}.rope.scaling.yarn_ext_factor",
    RopeScalingYarnAttnFactor => "{arch}.rope.scaling.yarn_attn_factor",
    RopeScalingYarnBetaFast => "{arch}.rope.scaling.yarn_beta_fast",
    RopeScalingYarnBetaSlow => "{arch}.rope.scaling.yarn_beta_slow",

    SplitNo => "split.no",
    SplitCount => "split.count",
    SplitTensorsCount => "split.tensors.count",

    TokenizerModel => "tokenizer.ggml.model",
    TokenizerPre => "tokenizer.ggml.pre",
    TokenizerTokens => "tokenizer.ggml.tokens",
    TokenizerTokenType => "tokenizer.ggml.token_type",
    TokenizerTokenTypeCount => "tokenizer.ggml.token_type_count",
    TokenizerScores => "tokenizer.ggml.scores",
    TokenizerMerges => "tokenizer.ggml.merges",
    TokenizerBosId => "tokenizer.ggml.bos_token_id",
    TokenizerEosId => "tokenizer.ggml.eos_token_id",
    TokenizerEotId => "tokenizer.ggml.eot_token_id",
    TokenizerEomId => "tokenizer.ggml.eom_token_id",
    TokenizerUnknownId => "tokenizer.ggml.unknown_token_id",
    /// Spelled "seperator" in llama.cpp and every file it reads.
    TokenizerSeparatorId => "tokenizer.ggml.seperator_token_id",
    TokenizerPaddingId => "tokenizer.ggml.padding_token_id",
    TokenizerClsId => "tokenizer.ggml.cls_token_id",
    TokenizerMaskId => "tokenizer.ggml.mask_token_id",
    TokenizerAddBos => "tokenizer.ggml.add_bos_token",
    TokenizerAddEos => "tokenizer.ggml.add_eos_token",
    TokenizerAddSep => "tokenizer.ggml.add_sep_token",
    TokenizerAddSpacePrefix => "tokenizer.ggml.add_space_prefix",
    TokenizerRemoveExtraWhitespaces => "tokenizer.ggml.remove_extra_whitespaces",
    TokenizerPrecompiledCharsmap => "tokenizer.ggml.precompiled_charsmap",
    TokenizerHfJson => "tokenizer.huggingface.json",
    TokenizerRwkv => "tokenizer.rwkv.world",
    TokenizerChatTemplate => "tokenizer.chat_template",
    TokenizerNormalizerLowercase => "tokenizer.ggml.normalizer.lowercase",
    TokenizerFimPreId => "tokenizer.ggml.fim_pre_token_id",
    TokenizerFimSufId => "tokenizer.ggml.fim_suf_token_id",
    TokenizerFimMidId => "tokenizer.ggml.fim_mid_token_id",
    TokenizerFimPadId => "tokenizer.ggml.fim_pad_token_id",
    TokenizerFimRepId => "tokenizer.ggml.fim_rep_token_id",
    TokenizerFimSepId => "tokenizer.ggml.fim_sep_token_id",
    TokenizerPrefixId => "tokenizer.ggml.prefix_token_id",
    TokenizerSuffixId => "tokenizer.ggml.suffix_token_id",
    TokenizerMiddleId => "tokenizer.ggml.middle_token_id",
}

impl Key {
    /// Whether the name depends on the architecture (`{arch}.…`).
    pub fn is_per_architecture(self) -> bool {
        self.template().starts_with("{arch}")
    }

    /// The full key for architecture `arch` (`Key::ContextLength.name("llama")` is
    /// `"llama.context_length"`); keys outside `{arch}` are returned as they are.
    pub fn name(self, arch: &str) -> String {
        let template = self.template();
        match template.strip_prefix("{arch}") {
            Some(rest) => format!("{arch}{rest}"),
            None => template.to_string(),
        }
    }

    /// The key whose full name (for `arch`) is `name`.
    pub fn from_name(name: &str, arch: &str) -> Option<Key> {
        Key::ALL
            .iter()
            .copied()
            .find(|k| match k.template().strip_prefix("{arch}") {
                Some(rest) => name.strip_prefix(arch).is_some_and(|r| r == rest),
                None => k.template() == name,
            })
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.template())
    }
}

/// The short name of a `general.file_type` value (llama.cpp's `enum llama_ftype`,
/// `include/llama.h`, as `llama-quantize` names the types): `3` → `"Q4_1"`,
/// `15` → `"Q4_K_M"`. `None` for values llama.cpp does not define (or has removed).
pub fn file_type_name(file_type: u32) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        19 => "IQ2_XXS",
        20 => "IQ2_XS",
        21 => "Q2_K_S",
        22 => "IQ3_XS",
        23 => "IQ3_XXS",
        24 => "IQ1_S",
        25 => "IQ4_NL",
        26 => "IQ3_S",
        27 => "IQ3_M",
        28 => "IQ2_S",
        29 => "IQ2_M",
        30 => "IQ4_XS",
        31 => "IQ1_M",
        32 => "BF16",
        36 => "TQ1_0",
        37 => "TQ2_0",
        38 => "MXFP4_MOE",
        39 => "NVFP4",
        40 => "Q1_0",
        41 => "Q2_0",
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fill_in_the_architecture() {
        assert_eq!(Key::ContextLength.name("llama"), "llama.context_length");
        assert_eq!(
            Key::AttentionHeadCountKv.name("gemma3"),
            "gemma3.attention.head_count_kv"
        );
        assert_eq!(Key::TokenizerTokens.name("llama"), "tokenizer.ggml.tokens");
        assert!(Key::BlockCount.is_per_architecture());
        assert!(!Key::GeneralArchitecture.is_per_architecture());
    }

    #[test]
    fn names_parse_back_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for &k in Key::ALL {
            assert!(
                seen.insert(k.template()),
                "duplicate template {}",
                k.template()
            );
            assert_eq!(Key::from_name(&k.name("qwen3"), "qwen3"), Some(k));
        }
        assert_eq!(Key::from_name("llama.context_length", "qwen3"), None);
    }

    #[test]
    fn architectures_parse_back() {
        for a in ["llama", "gemma3", "qwen2", "qwen3", "phi3", "mamba"] {
            let arch: Architecture = a.parse().unwrap_or_else(|e: Infallible| match e {});
            assert_eq!(arch.as_str(), a);
        }
        assert_eq!(Architecture::from_name("gemma3"), Architecture::Gemma3);
        assert_eq!(
            Architecture::from_name("bert"),
            Architecture::Other("bert".into())
        );
    }

    #[test]
    fn file_types_follow_llama_cpp() {
        assert_eq!(file_type_name(3), Some("Q4_1"));
        assert_eq!(file_type_name(15), Some("Q4_K_M"));
        assert_eq!(file_type_name(4), None, "Q4_1_SOME_F16 was removed");
        assert_eq!(file_type_name(1024), None);
    }
}
