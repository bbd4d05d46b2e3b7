//! tern-tokenizer: the tokenizer a GGUF file describes, token-exact against llama.cpp, and
//! the chat template that turns messages into a prompt.
//!
//! [`Tokenizer::from_gguf`] reads `tokenizer.ggml.*` and builds one of two families:
//! - byte-level BPE (`gpt2`: SmolLM2, Llama 3, Qwen 2/2.5/3, StarCoder, …) with the
//!   pre-tokenizer that `tokenizer.ggml.pre` names,
//! - SentencePiece-style (`llama`: Llama 2, Gemma, Phi-3) with scores, `▁` for spaces and
//!   `<0xXX>` byte fallback.
//!
//! Both follow llama.cpp's `src/llama-vocab.cpp` (commit 0c1e57098), including its load-time
//! fixes of token types, special-token text parsing in prompts, and detokenization. The
//! [`chat`] module renders the GGUF's Jinja chat template as Hugging Face transformers does,
//! with a documented ChatML fallback for models that ship none ([`chat::CHATML_FALLBACK`]:
//! `<|im_start|>{role}\n{content}<|im_end|>\n` per message, then `<|im_start|>assistant\n`
//! when a generation prompt is asked for).
//!
//! Supported: tokenizer models `gpt2`, `llama` and `gemma4`; pre-tokenizers `default`,
//! `gpt-2` and its aliases, `llama3`/`llama-bpe`, `qwen2`, `qwen35`, `smollm`, `starcoder`,
//! `refact`, `command-r`, `mpt`, `falcon`, `deepseek-coder`, `deepseek-llm`, `bloom`,
//! `poro-chat`, `viking`, `chatglm-bpe`/`glm4`, and the others llama.cpp maps to the same
//! patterns (see `pretokenize.rs`). Patterns that need look-ahead beyond llama.cpp's
//! hand-written splitters (tekken, gpt-4o, deepseek-v3…) and the WordPiece, Unigram and
//! RWKV families are refused with an error naming them.
//!
//! Main types: [`Tokenizer`], [`StreamDecoder`], [`Vocab`] (the raw metadata),
//! [`chat::ChatTemplate`], [`Error`].

mod bpe;
pub mod chat;
mod decode;
mod error;
mod gguf;
mod packed;
mod pretokenize;
mod special;
mod spm;
mod unicode;
mod unicode_table;
mod vocab;

use std::cell::RefCell;

pub use decode::StreamDecoder;
pub use error::Error;
pub use vocab::Vocab;

use bpe::{BpeModel, BpeOptions, BpeScratch};
use packed::PackedBytes;
use pretokenize::PreTokenizer;
use special::{Fragment, SpecialMatcher};
use spm::SpmScratch;
use vocab::{Attr, Family, TokenTable};

/// A tokenizer built from GGUF metadata: text to token ids and back.
///
/// Cheap to share (`&Tokenizer` is `Sync`); all methods take `&self`.
pub struct Tokenizer {
    table: TokenTable,
    model: Model,
    specials: SpecialMatcher,
    /// Bytes of every token, special tokens rendered.
    pieces: PackedBytes,
    add_bos: bool,
    add_eos: bool,
    add_space_prefix: bool,
    /// Spaces become `▁` before the model sees them (SentencePiece, Gemma 4 BPE).
    escape_whitespaces: bool,
    clean_spaces: bool,
    /// SentencePiece byte fallback: token of each byte.
    byte_tokens: [Option<u32>; 256],
}

#[derive(Debug)]
enum Model {
    Spm,
    Bpe {
        model: Box<BpeModel>,
        pre: PreTokenizer,
    },
}

thread_local! {
    static SCRATCH: RefCell<(SpmScratch, BpeScratch, Vec<std::ops::Range<usize>>)> = RefCell::default();
}

impl Tokenizer {
    /// Builds the tokenizer that a GGUF file's metadata describes. An unknown tokenizer
    /// model or pre-tokenizer is an error naming it.
    pub fn from_gguf(meta: &tern_gguf::Metadata) -> Result<Tokenizer, Error> {
        Tokenizer::from_vocab(gguf::vocab_from_metadata(meta)?)
    }

    /// Builds the tokenizer from already-read metadata.
    pub fn from_vocab(vocab: Vocab) -> Result<Tokenizer, Error> {
        let family = match vocab.model.as_str() {
            "llama" => Family::Spm,
            "gpt2" => Family::Bpe,
            "gemma4" => Family::Gemma4Bpe,
            other => return Err(Error::UnsupportedModel(other.to_string())),
        };
        // llama.cpp names Gemma 4's pre-tokenizer after its tokenizer model.
        let pre = if family == Family::Gemma4Bpe {
            Some("gemma4")
        } else {
            vocab.pre.as_deref()
        };
        let pre_tokenizer = match family {
            Family::Spm => None,
            Family::Bpe | Family::Gemma4Bpe => Some(PreTokenizer::for_name(pre)?),
        };
        let no_default_bos = pre_tokenizer
            .as_ref()
            .is_some_and(|(_, options)| options.no_default_bos);
        let table = TokenTable::build(&vocab, family, no_default_bos)?;
        let (model, defaults) = match pre_tokenizer {
            None => (
                Model::Spm,
                FamilyDefaults {
                    force_bos: false,
                    add_bos: true,
                    add_space_prefix: true,
                    escape: true,
                    clean: false,
                },
            ),
            Some((pre, options)) => {
                let merges = vocab
                    .merges
                    .as_deref()
                    .ok_or(Error::MissingKey("tokenizer.ggml.merges"))?;
                let model = BpeModel::new(
                    &table,
                    merges,
                    BpeOptions {
                        byte_encode: options.byte_encode,
                        ignore_merges: options.ignore_merges,
                        newline_words_whole: options.newline_words_whole,
                    },
                );
                tracing::debug!(merges = model.merge_count(), pre = ?vocab.pre, "byte-level BPE tokenizer");
                let defaults = FamilyDefaults {
                    // llama.cpp forces BOS on for Gemma 4 whatever the metadata says.
                    force_bos: family == Family::Gemma4Bpe,
                    add_bos: options.add_bos,
                    add_space_prefix: false,
                    escape: options.escape_whitespaces,
                    clean: options.clean_spaces,
                };
                (
                    Model::Bpe {
                        model: Box::new(model),
                        pre,
                    },
                    defaults,
                )
            }
        };
        let mut byte_tokens = [None; 256];
        if family == Family::Spm {
            for b in 0..=255u8 {
                byte_tokens[b as usize] = table.id_of(&format!("<0x{b:02X}>")).or_else(|| {
                    if b.is_ascii() {
                        table.id_of(&char::from(b).to_string())
                    } else {
                        None
                    }
                });
            }
        }
        let specials = SpecialMatcher::new(&table)?;
        let pieces = decode::build_pieces(&table, family, defaults.escape)?;
        Ok(Tokenizer {
            add_bos: defaults.force_bos || vocab.add_bos.unwrap_or(defaults.add_bos),
            add_eos: vocab.add_eos.unwrap_or(false),
            add_space_prefix: vocab.add_space_prefix.unwrap_or(defaults.add_space_prefix),
            escape_whitespaces: defaults.escape,
            clean_spaces: defaults.clean,
            table,
            model,
            specials,
            pieces,
            byte_tokens,
        })
    }

    /// Text to token ids, as llama.cpp's `llama_tokenize`.
    ///
    /// `add_special`: add BOS / EOS where the model's `add_bos_token` / `add_eos_token`
    /// ask for them. `parse_special`: text of control tokens (e.g. `<|im_start|>`) becomes
    /// those tokens; user-defined tokens are matched either way.
    pub fn encode(&self, text: &str, add_special: bool, parse_special: bool) -> Vec<u32> {
        let mut fragments = Vec::new();
        self.specials.partition(text, parse_special, &mut fragments);
        let mut out = Vec::with_capacity(text.len() / 3 + 2);
        if add_special
            && self.add_bos
            && let Some(bos) = self.table.ids.bos
        {
            out.push(bos);
        }
        SCRATCH.with(|scratch| {
            let (spm_scratch, bpe_scratch, words) = &mut *scratch.borrow_mut();
            // SentencePiece: a space goes before the text at the start and after every
            // special token (llama.cpp `is_prev_special`).
            let mut prev_special = true;
            for fragment in &fragments {
                match fragment {
                    Fragment::Token(id) => {
                        out.push(*id);
                        prev_special = true;
                    }
                    Fragment::Text(range) => {
                        let raw = &text[range.clone()];
                        match &self.model {
                            Model::Spm => {
                                let mut piece = String::with_capacity(raw.len() + 4);
                                if self.add_space_prefix && prev_special {
                                    piece.push(' ');
                                }
                                piece.push_str(raw);
                                let escaped = piece.replace(' ', "▁");
                                spm::tokenize(
                                    &self.table,
                                    &self.byte_tokens,
                                    self.table.ids.unknown,
                                    &escaped,
                                    spm_scratch,
                                    &mut out,
                                );
                            }
                            Model::Bpe { model, pre } => {
                                let owned;
                                let source = if self.escape_whitespaces {
                                    owned = raw.replace(' ', "▁");
                                    owned.as_str()
                                } else {
                                    raw
                                };
                                words.clear();
                                pre.split(source, words);
                                for word in words.iter() {
                                    model.tokenize_word(
                                        &self.table,
                                        &source[word.clone()],
                                        bpe_scratch,
                                        &mut out,
                                    );
                                }
                            }
                        }
                        prev_special = false;
                    }
                }
            }
        });
        if add_special
            && self.add_eos
            && let Some(eos) = self.table.ids.eos
        {
            out.push(eos);
        }
        out
    }

    /// The bytes a token decodes to: byte tokens give their byte, `▁` gives a space, GPT-2
    /// byte characters give their bytes, control and user-defined tokens give their text.
    /// Empty for ids outside the vocabulary.
    pub fn token_bytes(&self, id: u32) -> &[u8] {
        self.pieces.get(id as usize).unwrap_or_default()
    }

    /// The token's string as the vocabulary stores it (e.g. `Ġworld`, `▁world`, `<0x0A>`).
    /// Empty for ids outside the vocabulary.
    pub fn token_text(&self, id: u32) -> &str {
        self.table.texts.get(id as usize).unwrap_or_default()
    }

    /// The id of a token by its vocabulary string, if there is one.
    pub fn token_id(&self, text: &str) -> Option<u32> {
        self.table.id_of(text)
    }

    /// Bytes of a token as llama.cpp's `token_to_piece` gives them: with `special` false,
    /// control and unknown tokens give nothing.
    pub(crate) fn piece(&self, id: u32, special: bool) -> &[u8] {
        let Some(attr) = self.table.attrs.get(id as usize) else {
            return &[];
        };
        if !special && attr.has(Attr::CONTROL | Attr::UNKNOWN) {
            return &[];
        }
        self.pieces.get(id as usize).unwrap_or_default()
    }

    /// Token ids to text as llama.cpp's generation output is built (each token's piece,
    /// concatenated): control tokens such as `<|im_end|>` are not rendered. Invalid UTF-8
    /// (a character cut off at the end) becomes U+FFFD.
    pub fn decode(&self, ids: &[u32]) -> String {
        self.decode_bytes(ids, false)
    }

    /// As [`decode`](Self::decode), with control tokens rendered as their text.
    pub fn decode_with_special(&self, ids: &[u32]) -> String {
        self.decode_bytes(ids, true)
    }

    fn decode_bytes(&self, ids: &[u32], special: bool) -> String {
        let mut bytes = Vec::new();
        for &id in ids {
            bytes.extend_from_slice(self.piece(id, special));
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// llama.cpp's `llama_detokenize`: as [`decode`](Self::decode), but also drops the
    /// leading space a SentencePiece prefix added, can drop the BOS/EOS that
    /// `add_special` would add (`remove_special`), renders control tokens when
    /// `unparse_special`, and applies the model's space clean-up (` ,` → `,`, ` 's` → `'s`…).
    pub fn detokenize(&self, ids: &[u32], remove_special: bool, unparse_special: bool) -> String {
        let mut ids = ids;
        let mut remove_space = self.add_space_prefix;
        if remove_special
            && self.add_bos
            && ids
                .first()
                .is_some_and(|&id| Some(id) == self.table.ids.bos)
        {
            remove_space = false;
            ids = &ids[1..];
        }
        if remove_special
            && self.add_eos
            && ids.last().is_some_and(|&id| Some(id) == self.table.ids.eos)
        {
            ids = &ids[..ids.len() - 1];
        }
        let mut bytes = Vec::new();
        for &id in ids {
            let mut piece = self.piece(id, unparse_special);
            if remove_space {
                piece = piece.strip_prefix(b" ").unwrap_or(piece);
                remove_space = false;
            }
            bytes.extend_from_slice(piece);
        }
        if self.clean_spaces {
            decode::clean_up_spaces(&mut bytes);
        }
        String::from_utf8_lossy(&bytes).into_owned()
    }

    /// A decoder for streaming output, token by token, yielding only whole characters;
    /// its output concatenated equals [`decode`](Self::decode).
    pub fn stream_decoder(&self) -> StreamDecoder<&Tokenizer> {
        StreamDecoder::new(self, false)
    }

    /// As [`stream_decoder`](Self::stream_decoder), rendering control tokens.
    pub fn stream_decoder_with_special(&self) -> StreamDecoder<&Tokenizer> {
        StreamDecoder::new(self, true)
    }

    /// Number of tokens in the vocabulary.
    pub fn vocab_size(&self) -> usize {
        self.table.len()
    }

    /// Beginning-of-sequence token.
    pub fn bos(&self) -> Option<u32> {
        self.table.ids.bos
    }

    /// End-of-sequence token.
    pub fn eos(&self) -> Option<u32> {
        self.table.ids.eos
    }

    /// End-of-turn token: from metadata, else found by its text as llama.cpp does. When
    /// several texts qualify (`<|im_end|>` and `<|endoftext|>`), llama.cpp takes the
    /// first in hash-map order; tern takes the lowest id. Both are end-of-generation
    /// tokens either way (see [`is_end_of_generation`](Self::is_end_of_generation)).
    pub fn eot(&self) -> Option<u32> {
        self.table.ids.eot
    }

    /// Unknown-token id.
    pub fn unknown(&self) -> Option<u32> {
        self.table.ids.unknown
    }

    /// Padding token id.
    pub fn padding(&self) -> Option<u32> {
        self.table.ids.padding
    }

    /// Whether generation stops at this token: llama.cpp's end-of-generation set (EOS,
    /// EOT, EOM and tokens it recognises by text such as `<|im_end|>`, `<end_of_turn>`,
    /// `<|end|>`, `<|eot_id|>`, `<|endoftext|>`, `</s>`).
    pub fn is_end_of_generation(&self, id: u32) -> bool {
        self.table.eog.get(id as usize).copied().unwrap_or(false)
    }

    /// All end-of-generation token ids, ascending.
    pub fn end_of_generation_ids(&self) -> Vec<u32> {
        (0..self.table.len() as u32)
            .filter(|&id| self.table.eog[id as usize])
            .collect()
    }

    /// Whether the token is a control token (not rendered in output, parsed from prompt
    /// text only when special parsing is on).
    pub fn is_control(&self, id: u32) -> bool {
        self.table
            .attrs
            .get(id as usize)
            .is_some_and(|a| a.has(Attr::CONTROL))
    }

    /// Whether `encode(.., add_special = true, ..)` starts with BOS.
    pub fn add_bos(&self) -> bool {
        self.add_bos
    }

    /// Whether SentencePiece text gets a leading space (at the start and after every
    /// special token).
    pub fn add_space_prefix(&self) -> bool {
        self.add_space_prefix
    }

    /// Whether `encode(.., add_special = true, ..)` ends with EOS.
    pub fn add_eos(&self) -> bool {
        self.add_eos
    }
}

impl std::fmt::Debug for Tokenizer {
    /// A summary: the tables themselves are far too large to print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field(
                "model",
                &match self.model {
                    Model::Spm => "sentencepiece",
                    Model::Bpe { .. } => "bpe",
                },
            )
            .field("vocab_size", &self.vocab_size())
            .field("bos", &self.bos())
            .field("eos", &self.eos())
            .field("eot", &self.eot())
            .field("add_bos", &self.add_bos)
            .field("add_eos", &self.add_eos)
            .field("add_space_prefix", &self.add_space_prefix)
            .finish_non_exhaustive()
    }
}

/// Defaults that differ per tokenizer family before metadata overrides them.
struct FamilyDefaults {
    force_bos: bool,
    add_bos: bool,
    add_space_prefix: bool,
    escape: bool,
    clean: bool,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spm_vocab() -> Vocab {
        // <unk> <s> </s>, the 256 byte tokens, then a few pieces.
        let mut tokens = vec!["<unk>".to_string(), "<s>".into(), "</s>".into()];
        let mut types = vec![2, 3, 3];
        for b in 0..=255u8 {
            tokens.push(format!("<0x{b:02X}>"));
            types.push(6);
        }
        for piece in ["▁", "▁a", "▁ab", "a", "b", "<x>"] {
            tokens.push(piece.into());
            types.push(if piece == "<x>" { 4 } else { 1 });
        }
        let scores = (0..tokens.len()).map(|i| -(i as f32)).collect();
        Vocab {
            model: "llama".into(),
            tokens,
            scores: Some(scores),
            token_types: Some(types),
            ..Vocab::default()
        }
    }

    #[test]
    fn sentencepiece_defaults_and_prefix_space_after_special_tokens() {
        let t = Tokenizer::from_vocab(spm_vocab()).expect("tokenizer");
        // No metadata: BOS 1 / EOS 2 / UNK 0, BOS added, a space prefix.
        assert_eq!((t.bos(), t.eos(), t.unknown()), (Some(1), Some(2), Some(0)));
        assert!(t.add_bos() && !t.add_eos() && t.add_space_prefix());
        let id = |s: &str| t.token_id(s).expect(s);
        assert_eq!(t.encode("ab", true, false), [1, id("▁ab")]);
        // The user-defined token matches without special parsing, and the text after
        // it gets the prefix space again.
        assert_eq!(
            t.encode("ab<x>ab", false, false),
            [id("▁ab"), id("<x>"), id("▁ab")]
        );
        // Unknown characters fall back to bytes.
        assert_eq!(
            t.encode("é", false, false),
            [id("▁"), id("<0xC3>"), id("<0xA9>")]
        );
        assert_eq!(t.decode(&t.encode("ab é", true, false)), " ab é");
        // llama.cpp's detokenizer drops the prefix space only when no BOS was removed.
        assert_eq!(
            t.detokenize(&t.encode("ab é", false, false), false, false),
            "ab é"
        );
        assert_eq!(
            t.detokenize(&t.encode("ab é", true, false), true, false),
            " ab é"
        );
    }

    #[test]
    fn metadata_overrides_defaults() {
        let mut v = spm_vocab();
        v.add_bos = Some(false);
        v.add_eos = Some(true);
        v.add_space_prefix = Some(false);
        v.eos_id = Some(1);
        v.bos_id = Some(100_000); // out of range: the default stays
        let t = Tokenizer::from_vocab(v).expect("tokenizer");
        assert_eq!((t.bos(), t.eos()), (Some(1), Some(1)));
        assert!(!t.add_bos() && t.add_eos() && !t.add_space_prefix());
        assert_eq!(
            t.encode("ab", true, false),
            [t.token_id("a").unwrap(), t.token_id("b").unwrap(), 1]
        );
    }

    #[test]
    fn bad_metadata_is_a_named_error() {
        let mut v = spm_vocab();
        v.scores = Some(vec![0.0; 3]);
        let e = Tokenizer::from_vocab(v).unwrap_err();
        assert!(e.to_string().contains("tokenizer.ggml.scores"), "{e}");
        let v = Vocab {
            model: "gpt2".into(),
            pre: Some("gpt-2".into()),
            tokens: vec!["a".into()],
            ..Vocab::default()
        };
        let e = Tokenizer::from_vocab(v).unwrap_err();
        assert!(e.to_string().contains("tokenizer.ggml.merges"), "{e}");
        let v = Vocab {
            model: "rwkv".into(),
            tokens: vec!["a".into()],
            ..Vocab::default()
        };
        assert!(
            Tokenizer::from_vocab(v)
                .unwrap_err()
                .to_string()
                .contains("\"rwkv\"")
        );
        let v = Vocab {
            model: "llama".into(),
            ..Vocab::default()
        };
        assert!(
            Tokenizer::from_vocab(v)
                .unwrap_err()
                .to_string()
                .contains("empty token list")
        );
    }

    #[test]
    fn debug_output_is_a_summary() {
        let t = Tokenizer::from_vocab(spm_vocab()).expect("tokenizer");
        let text = format!("{t:?}");
        assert!(
            text.contains("vocab_size: 265") && text.len() < 300,
            "{text}"
        );
    }

    #[test]
    fn out_of_range_ids_decode_to_nothing() {
        let t = Tokenizer::from_vocab(spm_vocab()).expect("tokenizer");
        assert_eq!(t.decode(&[u32::MAX, 7_000_000]), "");
        assert_eq!(t.token_bytes(u32::MAX), b"");
        assert_eq!(t.token_text(u32::MAX), "");
        assert!(!t.is_end_of_generation(u32::MAX) && !t.is_control(u32::MAX));
    }
}
