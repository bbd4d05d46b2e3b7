//! Token strings packed into one buffer each, and the text-to-id index over them.
//!
//! A vocabulary is hundreds of thousands of short strings (Gemma 3: 262,144 of about six
//! bytes). Stored one heap block per string, each costs a 16–24 byte handle plus a
//! 32-byte allocation, and the text-to-id map held its own copy of every key: about 70 MB
//! of resident memory for Gemma's tokenizer, more than llama.cpp's whole compute buffer.
//! Packed, the texts take their bytes plus four bytes of offset each, and the index holds
//! only ids (it hashes the text an id points at).

use std::hash::{Hash, Hasher};

use hashbrown::HashTable;
use rustc_hash::FxHasher;

use crate::Error;

/// Byte strings in one buffer: string `i` is `bytes[ends[i - 1]..ends[i]]`.
#[derive(Debug, Default, Clone)]
pub(crate) struct PackedBytes {
    bytes: Vec<u8>,
    ends: Vec<u32>,
}

impl PackedBytes {
    pub(crate) fn with_capacity(strings: usize, bytes: usize) -> PackedBytes {
        PackedBytes {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    pub(crate) fn push(&mut self, s: &[u8]) -> Result<(), Error> {
        self.bytes.extend_from_slice(s);
        let end = u32::try_from(self.bytes.len())
            .map_err(|_| Error::Internal("token strings exceed 4 GiB in total".into()))?;
        self.ends.push(end);
        Ok(())
    }

    pub(crate) fn shrink_to_fit(&mut self) {
        self.bytes.shrink_to_fit();
    }

    pub(crate) fn get(&self, i: usize) -> Option<&[u8]> {
        let end = *self.ends.get(i)? as usize;
        let start = if i == 0 { 0 } else { self.ends[i - 1] as usize };
        Some(&self.bytes[start..end])
    }
}

/// Every token's text, in id order, with an index from text to id. For texts that occur
/// more than once the index gives the last id, as llama.cpp's `token_to_id` map does.
#[derive(Debug, Default)]
pub(crate) struct TokenTexts {
    text: String,
    ends: Vec<u32>,
    index: HashTable<u32>,
}

impl TokenTexts {
    /// Packs `texts` in order; `rename` may replace a text (llama.cpp renames empty
    /// tokens) and is called with each id and text.
    pub(crate) fn build<'a>(
        texts: impl ExactSizeIterator<Item = &'a str> + Clone,
        rename: impl Fn(usize, &str) -> Option<String>,
    ) -> Result<TokenTexts, Error> {
        let n = texts.len();
        let total: usize = texts.clone().map(str::len).sum();
        let mut out = TokenTexts {
            text: String::with_capacity(total),
            ends: Vec::with_capacity(n),
            index: HashTable::with_capacity(n),
        };
        for (id, text) in texts.enumerate() {
            match rename(id, text) {
                Some(renamed) => out.push(&renamed)?,
                None => out.push(text)?,
            }
        }
        Ok(out)
    }

    fn push(&mut self, text: &str) -> Result<(), Error> {
        let id = u32::try_from(self.ends.len())
            .map_err(|_| Error::Internal("more than 2^32 tokens".into()))?;
        self.text.push_str(text);
        let end = u32::try_from(self.text.len())
            .map_err(|_| Error::Internal("token texts exceed 4 GiB in total".into()))?;
        self.ends.push(end);
        let (all, ends) = (&self.text, &self.ends);
        let hash = hash_text(text);
        match self
            .index
            .find_mut(hash, |&other| slice(all, ends, other) == text)
        {
            Some(slot) => *slot = id,
            None => {
                self.index
                    .insert_unique(hash, id, |&other| hash_text(slice(all, ends, other)));
            }
        }
        Ok(())
    }

    pub(crate) fn len(&self) -> usize {
        self.ends.len()
    }

    /// The size of all texts together, in bytes.
    pub(crate) fn total_bytes(&self) -> usize {
        self.text.len()
    }

    /// The text of token `id`, `None` outside the vocabulary.
    pub(crate) fn get(&self, id: usize) -> Option<&str> {
        (id < self.ends.len()).then(|| slice(&self.text, &self.ends, id as u32))
    }

    /// The id of the token with this text (the last one when several share it).
    pub(crate) fn id_of(&self, text: &str) -> Option<u32> {
        self.index
            .find(hash_text(text), |&id| {
                slice(&self.text, &self.ends, id) == text
            })
            .copied()
    }

    /// Texts in id order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &str> {
        (0..self.ends.len() as u32).map(|id| slice(&self.text, &self.ends, id))
    }
}

fn slice<'a>(all: &'a str, ends: &[u32], id: u32) -> &'a str {
    let id = id as usize;
    let start = if id == 0 { 0 } else { ends[id - 1] as usize };
    &all[start..ends[id] as usize]
}

fn hash_text(text: &str) -> u64 {
    let mut hasher = FxHasher::default();
    text.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip_and_the_index_keeps_the_last_duplicate() {
        let words = ["a", "", "▁hello", "a", "<0x0A>", "b"];
        let texts = TokenTexts::build(words.iter().copied(), |id, t| {
            t.is_empty().then(|| format!("[EMPTY_{id}]"))
        })
        .unwrap();
        assert_eq!(texts.len(), 6);
        assert_eq!(texts.get(1), Some("[EMPTY_1]"));
        assert_eq!(texts.get(2), Some("▁hello"));
        assert_eq!(texts.get(6), None);
        assert_eq!(texts.id_of("a"), Some(3));
        assert_eq!(texts.id_of("▁hello"), Some(2));
        assert_eq!(texts.id_of("[EMPTY_1]"), Some(1));
        assert_eq!(texts.id_of("c"), None);
        let all: Vec<&str> = texts.iter().collect();
        assert_eq!(all, ["a", "[EMPTY_1]", "▁hello", "a", "<0x0A>", "b"]);
    }

    #[test]
    fn the_index_finds_every_text_of_a_large_vocabulary() {
        let words: Vec<String> = (0..50_000).map(|i| format!("t{i:x}")).collect();
        let texts = TokenTexts::build(words.iter().map(String::as_str), |_, _| None).unwrap();
        for (i, w) in words.iter().enumerate() {
            assert_eq!(texts.id_of(w), Some(i as u32));
            assert_eq!(texts.get(i), Some(w.as_str()));
        }
    }

    #[test]
    fn packed_bytes_round_trip() {
        let mut p = PackedBytes::with_capacity(3, 8);
        for s in [&b"ab"[..], b"", b"\xff\x00c"] {
            p.push(s).unwrap();
        }
        assert_eq!(p.get(0), Some(&b"ab"[..]));
        assert_eq!(p.get(1), Some(&b""[..]));
        assert_eq!(p.get(2), Some(&b"\xff\x00c"[..]));
        assert_eq!(p.get(3), None);
    }
}
