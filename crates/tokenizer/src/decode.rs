//! Token ids back to text: the bytes of each token (its "piece"), whole-sequence
//! decoding, llama.cpp's detokenizer with its space clean-up, and a streaming decoder that
//! only ever yields whole UTF-8 characters.
//!
//! Follows llama.cpp `llama_vocab::impl::token_to_piece` (pieces, cached at load as
//! llama.cpp does) and `llama_vocab::impl::detokenize` (leading-space removal and
//! `clean_up_tokenization_spaces`).

use std::borrow::Borrow;

use crate::Error;
use crate::packed::PackedBytes;
use crate::unicode;
use crate::vocab::{Attr, Family, TokenTable};

/// The bytes each token stands for, special tokens rendered as their text.
pub(crate) fn build_pieces(
    table: &TokenTable,
    family: Family,
    escaped_spaces: bool,
) -> Result<PackedBytes, Error> {
    // A piece is never longer than its text (`▁` and GPT-2 byte characters shrink to one
    // byte, `<0x0A>` to one byte), so the texts' size bounds the buffer.
    let mut pieces = PackedBytes::with_capacity(table.len(), table.texts.total_bytes());
    for id in 0..table.len() {
        pieces.push(&piece(table, family, escaped_spaces, id))?;
    }
    pieces.shrink_to_fit();
    Ok(pieces)
}

fn piece(table: &TokenTable, family: Family, escaped_spaces: bool, id: usize) -> Vec<u8> {
    let attr = table.attrs[id];
    let text: &str = table.texts.get(id).unwrap_or_default();
    if attr.has(Attr::UNKNOWN | Attr::CONTROL | Attr::USER_DEFINED) {
        return text.as_bytes().to_vec();
    }
    if attr.has(Attr::NORMAL) {
        return match family {
            Family::Spm => text.replace('▁', " ").into_bytes(),
            Family::Bpe | Family::Gemma4Bpe if escaped_spaces => {
                text.replace('▁', " ").into_bytes()
            }
            Family::Bpe | Family::Gemma4Bpe => byte_level_decode(text),
        };
    }
    if attr.has(Attr::BYTE) {
        // "<0xXX>"
        return text
            .get(3..5)
            .and_then(|hex| u8::from_str_radix(hex, 16).ok())
            .map(|b| vec![b])
            .unwrap_or_default();
    }
    Vec::new()
}

/// GPT-2 byte characters back to bytes (llama.cpp `llama_decode_text`, including its
/// marker for characters outside the byte map).
fn byte_level_decode(text: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    for c in text.chars() {
        match unicode::char_to_byte(c) {
            Some(b) => out.push(b),
            None => {
                out.extend_from_slice(b"[UNK_BYTE_0x");
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    out.extend_from_slice(format!("{b:02x}").as_bytes());
                }
                out.extend_from_slice(text.as_bytes());
                out.push(b']');
            }
        }
    }
    out
}

/// llama.cpp's `clean_up_tokenization_spaces` passes over detokenized bytes.
pub(crate) fn clean_up_spaces(text: &mut Vec<u8>) {
    // " ?", " !", " .", " ,": drop the space.
    let mut out: Vec<u8> = Vec::with_capacity(text.len());
    for (i, &x) in text.iter().enumerate() {
        if i > 0 && text[i - 1] == b' ' && matches!(x, b'?' | b'!' | b'.' | b',') {
            out.pop();
        }
        out.push(x);
    }
    // " ' " (a lone apostrophe between spaces): drop both spaces.
    // llama.cpp blanks the dropped second space in place, so it no longer counts as a
    // space before the next character.
    let first = std::mem::take(&mut out);
    let mut i = 0;
    let mut prev_blanked = false;
    while i < first.len() {
        let x = first[i];
        let prev_is_space = i > 0 && first[i - 1] == b' ' && !prev_blanked;
        prev_blanked = false;
        if x == b'\'' && prev_is_space && i + 1 < first.len() && first[i + 1] == b' ' {
            out.pop();
            out.push(x);
            i += 2;
            prev_blanked = true;
            continue;
        }
        out.push(x);
        i += 1;
    }
    // " 's", " 'm", " 're", " 've": drop the space.
    let second = std::mem::take(&mut out);
    for (i, &x) in second.iter().enumerate() {
        if i > 0 && second[i - 1] == b' ' && x == b'\'' && i + 1 < second.len() {
            let x1 = second[i + 1];
            let x2 = second.get(i + 2).copied();
            let drop = matches!(x1, b's' | b'm')
                || (matches!((x1, x2), (b'r', Some(b'e')) | (b'v', Some(b'e'))));
            if drop {
                out.pop();
            }
        }
        out.push(x);
    }
    *text = out;
}

/// Turns a stream of token ids into text, yielding only complete UTF-8 characters:
/// a character whose bytes are split across tokens (emoji and CJK as byte tokens) is held
/// back until its last byte arrives. Concatenating every [`push`](Self::push) result and
/// [`finish`](Self::finish) gives exactly [`crate::Tokenizer::decode`] of all the ids.
#[derive(Debug)]
pub struct StreamDecoder<T: Borrow<crate::Tokenizer>> {
    tokenizer: T,
    pending: Vec<u8>,
    special: bool,
}

impl<T: Borrow<crate::Tokenizer>> StreamDecoder<T> {
    /// A decoder over any handle to a tokenizer (`&Tokenizer`, `Arc<Tokenizer>`…);
    /// `special`: render control tokens.
    pub fn new(tokenizer: T, special: bool) -> Self {
        StreamDecoder {
            tokenizer,
            pending: Vec::new(),
            special,
        }
    }

    /// Adds one token; returns the text that is now complete (possibly empty).
    pub fn push(&mut self, id: u32) -> String {
        self.pending
            .extend_from_slice(self.tokenizer.borrow().piece(id, self.special));
        let mut text = String::new();
        let mut rest: &[u8] = &self.pending;
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    text.push_str(valid);
                    rest = &[];
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // `valid_up_to` guarantees this prefix is UTF-8.
                    text.push_str(std::str::from_utf8(valid).unwrap_or_default());
                    match e.error_len() {
                        // Bytes that can never start a character: one replacement
                        // character, as `String::from_utf8_lossy` writes.
                        Some(bad) => {
                            text.push(char::REPLACEMENT_CHARACTER);
                            rest = &after[bad..];
                        }
                        // A character cut short: wait for its next bytes.
                        None => {
                            rest = after;
                            break;
                        }
                    }
                }
            }
        }
        let keep = rest.len();
        let start = self.pending.len() - keep;
        self.pending.drain(..start);
        text
    }

    /// Ends the stream: a character still incomplete becomes U+FFFD.
    pub fn finish(self) -> String {
        String::from_utf8_lossy(&self.pending).into_owned()
    }

    /// Bytes held back, waiting for the rest of a character.
    pub fn pending_bytes(&self) -> usize {
        self.pending.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(s: &str) -> String {
        let mut v = s.as_bytes().to_vec();
        clean_up_spaces(&mut v);
        String::from_utf8(v).expect("utf-8")
    }

    #[test]
    fn clean_up_follows_llama_cpp() {
        assert_eq!(clean("Hello , world !"), "Hello, world!");
        assert_eq!(clean("rock ' n roll"), "rock'n roll");
        assert_eq!(clean("a ' ' b"), "a'' b");
        assert_eq!(
            clean("it 's I 'm we 're they 've you 'll he 'd don 't"),
            "it's I'm we're they've you 'll he 'd don 't"
        );
    }

    #[test]
    fn byte_level_decode_marks_unknown_characters() {
        assert_eq!(byte_level_decode("ĠHello"), b" Hello");
        assert_eq!(byte_level_decode("a b"), b"a[UNK_BYTE_0x20a b]b");
    }
}
