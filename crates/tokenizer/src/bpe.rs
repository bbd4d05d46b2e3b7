//! Byte-level BPE (`tokenizer.ggml.model = "gpt2"`: SmolLM2, Llama 3, Qwen, StarCoder…):
//! each pre-tokenized word is merged pair by pair, lowest merge rank first.
//!
//! Follows llama.cpp `llm_tokenizer_bpe_session::tokenize`. Strings are interned once at
//! load: every token text, merge side and merge result gets a symbol id (the token id
//! when the string is a token), and the merge table maps a pair of symbol ids to its rank
//! and result. A word then merges with integer look-ups only, through a binary heap
//! ordered by (rank, position) as llama.cpp's `llm_bigram_bpe::comparator`: O(n log n) per
//! word, no string building. In byte-level mode a word's initial symbols are its bytes
//! (each stands for one GPT-2 byte character), so no encoded string is ever built either.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::unicode;
use crate::vocab::TokenTable;

/// A symbol id for strings that are neither tokens nor part of any merge.
const NO_SYMBOL: u32 = u32::MAX;

#[derive(Debug)]
pub(crate) struct BpeModel {
    n_vocab: u32,
    byte_encode: bool,
    ignore_merges: bool,
    newline_words_whole: bool,
    /// Symbol ids (from `n_vocab` up) of merge sides and results that are not tokens;
    /// tokens are their own symbols, looked up in the token table.
    extra_symbols: FxHashMap<Box<str>, u32>,
    /// (left symbol, right symbol) → (rank, result symbol).
    merges: FxHashMap<(u32, u32), (u32, u32)>,
    /// Byte-level mode: symbol of each byte's GPT-2 character.
    byte_symbol: [u32; 256],
    /// Byte-level mode: token of each raw byte sequence whose encoding is a token.
    raw_tokens: FxHashMap<Box<[u8]>, u32>,
    /// Non-byte-level mode: `<0xXX>` token of each byte.
    hex_byte_tokens: [Option<u32>; 256],
}

/// A candidate merge: (rank, left index, right index, size of the pair, result symbol).
/// Ordered by rank, then leftmost first, as llama.cpp's queue.
type Candidate = (u32, u32, u32, u32, u32);

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    id: u32,
    prev: i32,
    next: i32,
}

/// Reusable buffers of one tokenization call.
#[derive(Debug, Default)]
pub(crate) struct BpeScratch {
    symbols: Vec<Symbol>,
    /// Min-heap of candidate merges.
    queue: BinaryHeap<Reverse<Candidate>>,
}

pub(crate) struct BpeOptions {
    pub byte_encode: bool,
    pub ignore_merges: bool,
    pub newline_words_whole: bool,
}

impl BpeModel {
    pub(crate) fn new(table: &TokenTable, merges: &[String], options: BpeOptions) -> BpeModel {
        let n_vocab = table.len() as u32;
        let mut extra_symbols: FxHashMap<Box<str>, u32> = FxHashMap::default();
        let intern = |s: &str, extra: &mut FxHashMap<Box<str>, u32>| -> u32 {
            if let Some(id) = table.id_of(s) {
                return id;
            }
            if let Some(&id) = extra.get(s) {
                return id;
            }
            let id = n_vocab + extra.len() as u32;
            extra.insert(s.into(), id);
            id
        };
        let mut merge_table = FxHashMap::default();
        merge_table.reserve(merges.len());
        for (rank, merge) in merges.iter().enumerate() {
            // llama.cpp splits at the first space after the first byte; a line without one
            // becomes an empty pair that never matches, so it is skipped.
            let Some(pos) = merge.bytes().skip(1).position(|b| b == b' ').map(|p| p + 1) else {
                continue;
            };
            let (left, right) = (&merge[..pos], &merge[pos + 1..]);
            let l = intern(left, &mut extra_symbols);
            let r = intern(right, &mut extra_symbols);
            let result = intern(&format!("{left}{right}"), &mut extra_symbols);
            // The first occurrence of a pair keeps its rank (llama.cpp's `emplace`).
            merge_table.entry((l, r)).or_insert((rank as u32, result));
        }
        let mut byte_symbol = [NO_SYMBOL; 256];
        let mut raw_tokens = FxHashMap::default();
        let mut hex_byte_tokens = [None; 256];
        if options.byte_encode {
            for b in 0..=255u8 {
                let mut buf = [0u8; 4];
                let c = unicode::byte_to_char(b).encode_utf8(&mut buf);
                byte_symbol[b as usize] = table
                    .id_of(c)
                    .or_else(|| extra_symbols.get(&*c).copied())
                    .unwrap_or(NO_SYMBOL);
            }
            // Only `ignore_merges` looks whole words up.
            if options.ignore_merges {
                // In id order, so a text held by several ids keeps the last (as the
                // table's own index does).
                for (id, text) in (0u32..).zip(table.texts.iter()) {
                    let raw: Option<Vec<u8>> = text.chars().map(unicode::char_to_byte).collect();
                    if let Some(raw) = raw {
                        raw_tokens.insert(raw.into_boxed_slice(), id);
                    }
                }
            }
        } else {
            for b in 0..=255u8 {
                hex_byte_tokens[b as usize] = table.id_of(&format!("<0x{b:02X}>"));
            }
        }
        BpeModel {
            n_vocab,
            byte_encode: options.byte_encode,
            ignore_merges: options.ignore_merges,
            newline_words_whole: options.newline_words_whole,
            extra_symbols,
            merges: merge_table,
            byte_symbol,
            raw_tokens,
            hex_byte_tokens,
        }
    }

    /// Number of merges (for diagnostics).
    pub(crate) fn merge_count(&self) -> usize {
        self.merges.len()
    }

    /// Merges one pre-tokenized word (raw UTF-8 bytes of the prompt; in non-byte-level
    /// mode already `▁`-escaped) and appends its token ids.
    pub(crate) fn tokenize_word(
        &self,
        table: &TokenTable,
        word: &str,
        scratch: &mut BpeScratch,
        out: &mut Vec<u32>,
    ) {
        let bytes = word.as_bytes();
        let symbols = &mut scratch.symbols;
        symbols.clear();
        if self.byte_encode {
            if self.ignore_merges
                && let Some(&id) = self.raw_tokens.get(bytes)
            {
                out.push(id);
                return;
            }
            for (i, &b) in bytes.iter().enumerate() {
                symbols.push(Symbol {
                    start: i as u32,
                    len: 1,
                    id: self.byte_symbol[b as usize],
                    prev: i as i32 - 1,
                    next: if i + 1 == bytes.len() {
                        -1
                    } else {
                        i as i32 + 1
                    },
                });
            }
        } else {
            let whole = table.id_of(word);
            if let Some(id) = whole
                && (self.ignore_merges
                    || (self.newline_words_whole && bytes.iter().all(|&b| b == b'\n')))
            {
                out.push(id);
                return;
            }
            let count = word.chars().count();
            for (i, (start, c)) in word.char_indices().enumerate() {
                let len = c.len_utf8();
                symbols.push(Symbol {
                    start: start as u32,
                    len: len as u32,
                    id: self.symbol_of(table, &word[start..start + len]),
                    prev: i as i32 - 1,
                    next: if i + 1 == count { -1 } else { i as i32 + 1 },
                });
            }
        }
        if symbols.is_empty() {
            return;
        }
        let queue = &mut scratch.queue;
        queue.clear();
        for i in 1..symbols.len() {
            self.add_bigram(symbols, queue, i as i32 - 1, i as i32);
        }
        while let Some(Reverse((_, left, right, size, result))) = queue.pop() {
            let (left, right) = (left as usize, right as usize);
            let (l, r) = (symbols[left], symbols[right]);
            // Stale: either side merged since (sizes only grow, so equal sizes mean
            // both sides are unchanged and still adjacent).
            if l.len == 0 || r.len == 0 || l.len + r.len != size {
                continue;
            }
            symbols[left].len += r.len;
            symbols[left].id = result;
            symbols[right].len = 0;
            symbols[left].next = r.next;
            if r.next >= 0 {
                symbols[r.next as usize].prev = left as i32;
            }
            let (prev, next) = (symbols[left].prev, symbols[left].next);
            self.add_bigram(symbols, queue, prev, left as i32);
            self.add_bigram(symbols, queue, left as i32, next);
        }
        let mut i = 0i32;
        while i >= 0 {
            let s = symbols[i as usize];
            if s.id < self.n_vocab {
                out.push(s.id);
            } else {
                self.byte_fallback(&bytes[s.start as usize..(s.start + s.len) as usize], out);
            }
            i = s.next;
        }
    }

    fn symbol_of(&self, table: &TokenTable, text: &str) -> u32 {
        table
            .id_of(text)
            .or_else(|| self.extra_symbols.get(text).copied())
            .unwrap_or(NO_SYMBOL)
    }

    /// A merged piece that is not a token: llama.cpp looks each byte of its encoded text
    /// up as a one-byte token (only printable ASCII can be one), or `<0xXX>` tokens in
    /// non-byte-level mode; bytes without a token are dropped, as there.
    fn byte_fallback(&self, raw: &[u8], out: &mut Vec<u32>) {
        for &b in raw {
            let id = if self.byte_encode {
                Some(self.byte_symbol[b as usize])
                    .filter(|&id| (0x21..=0x7E).contains(&b) && id < self.n_vocab)
            } else {
                self.hex_byte_tokens[b as usize]
            };
            if let Some(id) = id {
                out.push(id);
            }
        }
    }

    fn add_bigram(
        &self,
        symbols: &[Symbol],
        queue: &mut BinaryHeap<Reverse<Candidate>>,
        left: i32,
        right: i32,
    ) {
        if left < 0 || right < 0 {
            return;
        }
        let (l, r) = (symbols[left as usize], symbols[right as usize]);
        if l.id == NO_SYMBOL || r.id == NO_SYMBOL {
            return;
        }
        if let Some(&(rank, result)) = self.merges.get(&(l.id, r.id)) {
            queue.push(Reverse((
                rank,
                left as u32,
                right as u32,
                l.len + r.len,
                result,
            )));
        }
    }
}
