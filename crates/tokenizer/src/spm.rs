//! SentencePiece-style tokenization (`tokenizer.ggml.model = "llama"`: Llama 2, Gemma,
//! Phi-3): merge adjacent pieces, highest-scoring resulting token first; pieces that never
//! form a token fall back to `<0xXX>` byte tokens.
//!
//! Follows llama.cpp `llm_tokenizer_spm_session::tokenize`. The text arrives with spaces
//! already written as `▁`. Every merge result is a vocabulary token, so the re-segmentation
//! step of llama.cpp (`resegment` via `rev_merge`) only ever emits a symbol's token or its
//! bytes; it is written that way here. A binary heap orders candidate merges by score, then
//! by position, exactly as llama.cpp's `llm_bigram_spm::comparator`, so each text costs
//! O(n log n).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use crate::vocab::TokenTable;

#[derive(Clone, Copy, Debug)]
struct Symbol {
    start: u32,
    len: u32,
    prev: i32,
    next: i32,
}

#[derive(Debug)]
struct Bigram {
    score: f32,
    left: u32,
    right: u32,
    size: u32,
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Bigram {}
impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Bigram {
    /// Greater = popped first: higher score, then the leftmost pair.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

/// Reusable buffers of one tokenization call.
#[derive(Debug, Default)]
pub(crate) struct SpmScratch {
    symbols: Vec<Symbol>,
    queue: BinaryHeap<Bigram>,
}

/// Tokenizes `text` (spaces already escaped) and appends ids to `out`.
/// `byte_tokens[b]` is the token of byte `b` (`<0xXX>`, else the one-byte text), if any.
pub(crate) fn tokenize(
    table: &TokenTable,
    byte_tokens: &[Option<u32>; 256],
    unknown: Option<u32>,
    text: &str,
    scratch: &mut SpmScratch,
    out: &mut Vec<u32>,
) {
    let symbols = &mut scratch.symbols;
    let queue = &mut scratch.queue;
    symbols.clear();
    queue.clear();
    for (i, (start, c)) in text.char_indices().enumerate() {
        let len = c.len_utf8();
        let last = start + len == text.len();
        symbols.push(Symbol {
            start: start as u32,
            len: len as u32,
            prev: i as i32 - 1,
            next: if last { -1 } else { i as i32 + 1 },
        });
    }
    if symbols.is_empty() {
        return;
    }
    for i in 1..symbols.len() {
        try_add_bigram(table, text, symbols, queue, i as i32 - 1, i as i32);
    }
    while let Some(bigram) = queue.pop() {
        let (left, right) = (bigram.left as usize, bigram.right as usize);
        let (l, r) = (symbols[left], symbols[right]);
        // Stale: one side has been merged since the pair was queued.
        if l.len == 0 || r.len == 0 || l.len + r.len != bigram.size {
            continue;
        }
        symbols[left].len += r.len;
        symbols[right].len = 0;
        symbols[left].next = r.next;
        if r.next >= 0 {
            symbols[r.next as usize].prev = left as i32;
        }
        let prev = symbols[left].prev;
        let next = symbols[left].next;
        try_add_bigram(table, text, symbols, queue, prev, left as i32);
        try_add_bigram(table, text, symbols, queue, left as i32, next);
    }
    let mut i = 0i32;
    while i >= 0 {
        let symbol = symbols[i as usize];
        let piece = &text[symbol.start as usize..(symbol.start + symbol.len) as usize];
        match table.id_of(piece) {
            Some(id) => out.push(id),
            None => {
                for &b in piece.as_bytes() {
                    // llama.cpp throws when a byte has no token; the unknown token is the
                    // graceful equivalent.
                    if let Some(id) = byte_tokens[b as usize].or(unknown) {
                        out.push(id);
                    }
                }
            }
        }
        i = symbol.next;
    }
}

fn try_add_bigram(
    table: &TokenTable,
    text: &str,
    symbols: &[Symbol],
    queue: &mut BinaryHeap<Bigram>,
    left: i32,
    right: i32,
) {
    if left < 0 || right < 0 {
        return;
    }
    let (l, r) = (symbols[left as usize], symbols[right as usize]);
    // Adjacent symbols: their texts are contiguous in `text`.
    let start = l.start as usize;
    let end = (r.start + r.len) as usize;
    let Some(id) = table.id_of(&text[start..end]) else {
        return;
    };
    queue.push(Bigram {
        score: table.scores[id as usize],
        left: left as u32,
        right: right as u32,
        size: l.len + r.len,
    });
}
