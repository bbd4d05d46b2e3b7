//! The vocabulary as a GGUF file describes it ([`Vocab`], plain data), and the prepared
//! token table the algorithms use ([`TokenTable`]): attributes, special ids, the
//! end-of-generation set, after the fixes llama.cpp applies at load time.
//!
//! Follows llama.cpp `src/llama-vocab.cpp`, `llama_vocab::impl::load`: default special ids
//! per tokenizer family, token types to attributes, end-of-turn tokens found by their text
//! and forced to control type (this is how Gemma 3's `</s>`, id 212, becomes a control
//! token), "unused" control tokens, the end-of-generation set, and Phi-3's right-stripping
//! special tokens.

use crate::Error;
use crate::packed::TokenTexts;

/// Tokenizer metadata as stored in a GGUF file (`tokenizer.ggml.*`), before any
/// interpretation. [`crate::Tokenizer::from_gguf`] fills it; tests and tools can build one
/// by hand and call [`crate::Tokenizer::from_vocab`].
#[derive(Debug, Clone, Default)]
pub struct Vocab {
    /// `tokenizer.ggml.model`: "gpt2" (byte-level BPE) or "llama" (SentencePiece).
    pub model: String,
    /// `tokenizer.ggml.pre`: the BPE pre-tokenizer name.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`, by id.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.scores` (SentencePiece merge priorities).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.token_type` (1 normal, 2 unknown, 3 control, 4 user-defined,
    /// 5 unused, 6 byte).
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges` ("left right", by rank).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.eom_token_id`.
    pub eom_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unknown_id: Option<u32>,
    /// `tokenizer.ggml.seperator_token_id` (sic).
    pub separator_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub padding_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`.
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_eos_token`.
    pub add_eos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix`.
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.ggml.remove_extra_whitespaces` (read; only Unigram models use it).
    pub remove_extra_whitespaces: Option<bool>,
    /// `general.name`: llama.cpp gives Phi-3 models right-stripping special tokens by it.
    pub name: Option<String>,
}

/// Token attributes (llama.cpp `llama_token_attr`), a bit set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Attr(pub u16);

impl Attr {
    pub const UNDEFINED: u16 = 0;
    pub const UNKNOWN: u16 = 1 << 0;
    pub const UNUSED: u16 = 1 << 1;
    pub const NORMAL: u16 = 1 << 2;
    pub const CONTROL: u16 = 1 << 3;
    pub const USER_DEFINED: u16 = 1 << 4;
    pub const BYTE: u16 = 1 << 5;
    pub const LSTRIP: u16 = 1 << 7;
    pub const RSTRIP: u16 = 1 << 8;

    pub fn has(self, bits: u16) -> bool {
        self.0 & bits != 0
    }

    fn from_token_type(token_type: i32) -> Attr {
        Attr(match token_type {
            1 => Self::NORMAL,
            2 => Self::UNKNOWN,
            3 => Self::CONTROL,
            4 => Self::USER_DEFINED,
            5 => Self::UNUSED,
            6 => Self::BYTE,
            _ => Self::UNDEFINED,
        })
    }
}

/// Tokenizer family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Family {
    /// SentencePiece-style: scores, `▁` for spaces, `<0xXX>` byte fallback.
    Spm,
    /// Byte-level BPE with merges and a pre-tokenizer.
    Bpe,
    /// Gemma 4's SentencePiece-style BPE (merges over `▁`-escaped text).
    Gemma4Bpe,
}

/// Special token ids after defaults and metadata.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct SpecialIds {
    pub bos: Option<u32>,
    pub eos: Option<u32>,
    pub eot: Option<u32>,
    pub eom: Option<u32>,
    pub unknown: Option<u32>,
    pub padding: Option<u32>,
}

/// The prepared token table.
#[derive(Debug)]
pub(crate) struct TokenTable {
    /// Texts by id, and text to id (for duplicated texts the last id, as llama.cpp's
    /// `token_to_id`).
    pub texts: TokenTexts,
    pub scores: Vec<f32>,
    pub attrs: Vec<Attr>,
    pub ids: SpecialIds,
    /// End-of-generation tokens, by id.
    pub eog: Vec<bool>,
}

/// Texts llama.cpp takes as end-of-turn when `eot_token_id` is absent (its list, in
/// `llama_vocab::impl::load`).
const EOT_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "<|end_of_text|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "<｜end▁of▁sentence｜>",
    "<end_of_utterance>",
];

/// Texts of fill-in-the-middle pad / repo / file-separator tokens, which llama.cpp also
/// counts as end of generation.
const FIM_EOG_TEXTS: &[&[&str]] = &[
    &["<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"],
    &[
        "<|fim_repo|>",
        "<|repo_name|>",
        "<fim-repo>",
        "<REPO>",
        "<reponame>",
    ],
    &["<|file_sep|>"],
];

/// Other FIM tokens llama.cpp detects by text and forces to control type.
const FIM_OTHER_TEXTS: &[&[&str]] = &[
    &[
        "<|fim_prefix|>",
        "<fim-prefix>",
        "<fim_prefix>",
        "<｜fim▁begin｜>",
        "<PRE>",
        "▁<PRE>",
        "<|code_prefix|>",
        "<|prefix|>",
    ],
    &[
        "<|fim_suffix|>",
        "<fim-suffix>",
        "<fim_suffix>",
        "<｜fim▁hole｜>",
        "<SUF>",
        "▁<SUF>",
        "<|code_suffix|>",
        "<|suffix|>",
    ],
    &[
        "<|fim_middle|>",
        "<fim-middle>",
        "<fim_middle>",
        "<｜fim▁end｜>",
        "<MID>",
        "▁<MID>",
        "<|code_middle|>",
        "<|middle|>",
    ],
];

/// Texts that end generation whatever their type (llama.cpp's EOG list).
const EOG_TEXTS: &[&str] = &[
    "<|eot_id|>",
    "<|im_end|>",
    "<|end|>",
    "<|return|>",
    "<|call|>",
    "<|flush|>",
    "<|calls|>",
    "<end_of_turn>",
    "<|endoftext|>",
    "</s>",
    "<|eom_id|>",
    "<EOT>",
    "_<EOT>",
    "[EOT]",
    "[EOS]",
    "<|end_of_text|>",
    "<end_of_utterance>",
    "<eos>",
    "<turn|>",
    "<|tool_response>",
    "<｜end▁of▁sentence｜>",
    "[e~[",
];

impl TokenTable {
    /// Builds the table for `vocab` of the given family; `no_default_bos` drops the
    /// family's default BOS id (llama.cpp does for ChatGLM pre-tokenizers).
    pub(crate) fn build(
        vocab: &Vocab,
        family: Family,
        no_default_bos: bool,
    ) -> Result<TokenTable, Error> {
        let n = vocab.tokens.len();
        if n == 0 {
            return Err(Error::InvalidMetadata {
                key: "tokenizer.ggml.tokens",
                reason: "empty token list".into(),
            });
        }
        if u32::try_from(n).is_err() {
            return Err(Error::InvalidMetadata {
                key: "tokenizer.ggml.tokens",
                reason: format!("{n} tokens"),
            });
        }
        if let Some(scores) = &vocab.scores
            && scores.len() < n
        {
            return Err(Error::InvalidMetadata {
                key: "tokenizer.ggml.scores",
                reason: format!("{} scores for {n} tokens", scores.len()),
            });
        }
        if let Some(types) = &vocab.token_types
            && types.len() < n
        {
            return Err(Error::InvalidMetadata {
                key: "tokenizer.ggml.token_type",
                reason: format!("{} token types for {n} tokens", types.len()),
            });
        }
        // llama.cpp renames empty tokens so that every text is unique and non-empty.
        let texts = TokenTexts::build(vocab.tokens[..n].iter().map(String::as_str), |id, text| {
            text.is_empty().then(|| format!("[EMPTY_{id}]"))
        })?;
        let scores = match &vocab.scores {
            Some(s) => s[..n].to_vec(),
            None => vec![0.0; n],
        };
        let attrs = match &vocab.token_types {
            Some(t) => t[..n].iter().map(|&t| Attr::from_token_type(t)).collect(),
            None => vec![Attr(Attr::NORMAL); n],
        };

        // Default ids per family (llama.cpp `load`), dropped when outside the vocabulary,
        // then replaced by the metadata's ids when those are inside it.
        let (default_bos, default_eos, default_unknown) = match family {
            Family::Spm => (Some(1), Some(2), Some(0)),
            Family::Bpe => (Some(11), Some(11), None),
            Family::Gemma4Bpe => (None, None, None),
        };
        let default_bos = if no_default_bos { None } else { default_bos };
        let pick = |default: Option<u32>, meta: Option<u32>| -> Option<u32> {
            let default = default.filter(|&id| (id as usize) < n);
            match meta {
                Some(id) if (id as usize) < n => Some(id),
                _ => default,
            }
        };
        let ids = SpecialIds {
            bos: pick(default_bos, vocab.bos_id),
            eos: pick(default_eos, vocab.eos_id),
            eot: pick(None, vocab.eot_id),
            eom: pick(None, vocab.eom_id),
            unknown: pick(default_unknown, vocab.unknown_id),
            padding: pick(None, vocab.padding_id),
        };
        let mut table = TokenTable {
            texts,
            scores,
            attrs,
            ids,
            eog: vec![false; n],
        };
        table.apply_load_fixes(vocab);
        Ok(table)
    }

    pub(crate) fn len(&self) -> usize {
        self.texts.len()
    }

    pub(crate) fn id_of(&self, text: &str) -> Option<u32> {
        self.texts.id_of(text)
    }

    fn force_control(&mut self, id: u32) {
        let attr = &mut self.attrs[id as usize];
        if !attr.has(Attr::CONTROL) {
            tracing::debug!(
                id,
                text = self.texts.get(id as usize).unwrap_or_default(),
                "control-looking token forced to control type"
            );
            attr.0 |= Attr::CONTROL;
        }
    }

    /// Lowest id among tokens whose text is in `texts`. llama.cpp takes the first such
    /// token in hash-map order, which is not reproducible; the lowest id agrees with it on
    /// SmolLM2 and Gemma 3.
    fn first_with_text(&self, texts: &[&str]) -> Option<u32> {
        texts.iter().filter_map(|t| self.id_of(t)).min()
    }

    fn apply_load_fixes(&mut self, vocab: &Vocab) {
        let n = self.len();
        // End-of-turn / end-of-message / FIM tokens found by text are control tokens.
        if self.ids.eot.is_none() {
            self.ids.eot = self.first_with_text(EOT_TEXTS);
            if let Some(id) = self.ids.eot {
                self.force_control(id);
            }
        }
        if self.ids.eom.is_none() {
            self.ids.eom = self.first_with_text(&["<|eom_id|>"]);
            if let Some(id) = self.ids.eom {
                self.force_control(id);
            }
        }
        let mut fim_eog = Vec::new();
        for texts in FIM_EOG_TEXTS {
            if let Some(id) = self.first_with_text(texts) {
                self.force_control(id);
                fim_eog.push(id);
            }
        }
        for texts in FIM_OTHER_TEXTS {
            if let Some(id) = self.first_with_text(texts) {
                self.force_control(id);
            }
        }
        // Control tokens named "unused…" are unused.
        for (attr, text) in self.attrs.iter_mut().zip(self.texts.iter()) {
            if attr.has(Attr::CONTROL) && text.contains("unused") {
                attr.0 |= Attr::UNUSED;
            }
        }
        // The end-of-generation set.
        for id in fim_eog {
            self.eog[id as usize] = true;
        }
        for text in EOG_TEXTS {
            if let Some(id) = self.texts.id_of(text) {
                self.eog[id as usize] = true;
                self.force_control(id);
            }
        }
        // gpt-oss: these tokens are always rendered.
        for text in ["<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"] {
            if let Some(id) = self.texts.id_of(text) {
                self.attrs[id as usize] = Attr(Attr::USER_DEFINED);
            }
        }
        for id in [self.ids.eos, self.ids.eot, self.ids.eom]
            .into_iter()
            .flatten()
        {
            self.eog[id as usize] = true;
        }
        let eog_with_text =
            |table: &TokenTable, text: &str| table.id_of(text).filter(|&id| table.eog[id as usize]);
        // o200k_harmony / solar-open: "<|end|>" is not an end of generation there.
        let has = |table: &TokenTable, text: &str| eog_with_text(table, text).is_some();
        if let Some(end) = eog_with_text(self, "<|end|>")
            && ((has(self, "<|return|>") && has(self, "<|call|>"))
                || ((has(self, "<|call|>") || has(self, "<|calls|>")) && has(self, "<|flush|>")))
        {
            self.eog[end as usize] = false;
            self.attrs[end as usize] = Attr(Attr::USER_DEFINED);
        }
        // gemma4 / plamo: "</s>" is a normal token there.
        if let Some(s) = eog_with_text(self, "</s>")
            && (has(self, "<|tool_response>") || has(self, "<|plamo:eos|>"))
        {
            self.eog[s as usize] = false;
            self.attrs[s as usize] = Attr(Attr::NORMAL);
        }
        // Per-model whitespace stripping around special tokens (llama.cpp tests these
        // in this order and applies the first that fits).
        let pre = vocab.pre.as_deref().unwrap_or("");
        let name = vocab.name.as_deref().unwrap_or("").to_ascii_lowercase();
        if ["jina-v2-de", "jina-v2-es", "jina-v2-code"]
            .iter()
            .any(|p| pre.contains(p))
        {
            // The mask token swallows the whitespace before it.
            if let Some(id) = self.id_of("<mask>") {
                self.attrs[id as usize].0 |= Attr::LSTRIP;
            }
        } else if name.contains("phi-3") || name.contains("phi3") {
            // Special tokens swallow the whitespace after them, except three.
            for attr in &mut self.attrs {
                if attr.has(Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN) {
                    attr.0 |= Attr::RSTRIP;
                }
            }
            if let Some(id) = self.id_of("</s>") {
                self.attrs[id as usize].0 |= Attr::RSTRIP;
            }
            for text in ["<unk>", "<s>", "<|endoftext|>"] {
                if let Some(id) = self.id_of(text) {
                    self.attrs[id as usize].0 &= !Attr::RSTRIP;
                }
            }
        } else if name.contains("modern-bert")
            && let Some(id) = self.id_of("[MASK]")
        {
            self.attrs[id as usize].0 |= Attr::LSTRIP;
        }
        debug_assert_eq!(self.eog.len(), n);
    }
}
