//! The vocabulary as constrained decoding needs it: each token's bytes, and a byte trie of
//! all tokens so that one walk per step tests every token against the grammar.
//!
//! The trie is stored flat in preorder (as llguidance's `TokTrie` does): each node records
//! its byte and the size of its subtree, so a walk that rejects a byte skips the whole
//! subtree by jumping ahead, and the walk reads memory front to back.
//!
//! Inside a JSON string almost every token is allowed, and walking the whole trie there
//! costs most (tens of ms for a 262k vocabulary). So the tokens that are plain string
//! content — printable ASCII other than `"` and `\`, and complete UTF-8 characters — are
//! also kept aside with their character counts, and a second trie holds only the others:
//! in a string, the plain tokens are allowed wholesale (up to the length budget) and only
//! the small second trie is walked.

use crate::Error;

/// One trie node: the byte on the edge from its parent, the number of nodes in its subtree
/// (itself included) and where its tokens start in `Trie::tokens`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrieNode {
    pub(crate) byte: u8,
    pub(crate) subtree_len: u32,
    pub(crate) token_start: u32,
}

/// A byte trie of tokens in preorder; node 0 is the root (empty prefix), and one extra
/// sentinel node at the end closes the token range of the last real node.
#[derive(Debug, Default)]
pub(crate) struct Trie {
    nodes: Vec<TrieNode>,
    /// Token ids grouped by the node their bytes end at, in node order.
    tokens: Vec<u32>,
}

impl Trie {
    /// Builds the trie of `ids` (non-empty tokens) from the tokens sorted by bytes:
    /// consecutive tokens share their longest common prefix, so each adds nodes only past it.
    fn build(mut ids: Vec<u32>, vocab: &Vocabulary) -> Self {
        let bytes = |t: u32| vocab.token_bytes(t);
        ids.sort_by(|&a, &b| bytes(a).cmp(bytes(b)).then(a.cmp(&b)));
        let mut nodes = vec![TrieNode {
            byte: 0,
            subtree_len: 0,
            token_start: 0,
        }];
        let mut tokens = Vec::with_capacity(ids.len());
        // Node indices along the current path; path[d] is the node at depth d.
        let mut path: Vec<usize> = vec![0];
        let mut previous: &[u8] = &[];
        for &token in &ids {
            let text = bytes(token);
            let common = previous
                .iter()
                .zip(text)
                .take_while(|(a, b)| a == b)
                .count();
            while path.len() > common + 1 {
                let done = path.pop().unwrap_or(0);
                nodes[done].subtree_len = (nodes.len() - done) as u32;
            }
            for &byte in &text[common..] {
                path.push(nodes.len());
                nodes.push(TrieNode {
                    byte,
                    subtree_len: 0,
                    token_start: tokens.len() as u32,
                });
            }
            // Sorted order puts a token right after the one it duplicates, so the node it
            // ends at is the last one created and its token range stays contiguous.
            tokens.push(token);
            previous = text;
        }
        while let Some(done) = path.pop() {
            nodes[done].subtree_len = (nodes.len() - done) as u32;
        }
        nodes.push(TrieNode {
            byte: 0,
            subtree_len: 1,
            token_start: tokens.len() as u32,
        });
        Self { nodes, tokens }
    }

    /// The nodes, root first, without the sentinel.
    pub(crate) fn nodes(&self) -> &[TrieNode] {
        &self.nodes[..self.nodes.len() - 1]
    }

    /// The tokens whose bytes end at node `node`.
    pub(crate) fn node_tokens(&self, node: usize) -> &[u32] {
        &self.tokens
            [self.nodes[node].token_start as usize..self.nodes[node + 1].token_start as usize]
    }
}

/// Token bytes plus the precomputed token tries; built once per model and shared (`Arc`)
/// by every constrained request.
#[derive(Debug)]
pub struct Vocabulary {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    end_of_generation: Vec<u32>,
    is_eog: Vec<bool>,
    /// Every token that has bytes and is not end-of-generation.
    full: Trie,
    /// The same tokens, less the plain string content ones.
    special: Trie,
    /// Bit set of the plain string content tokens.
    plain: Vec<u64>,
    /// `(characters, token)` of the plain tokens, fewest characters first.
    plain_by_chars: Vec<(u32, u32)>,
}

/// The number of characters if `bytes` can stand unescaped inside a JSON string as a
/// whole (printable ASCII but `"` and `\`, complete well-formed UTF-8), else `None`.
fn plain_string_chars(bytes: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(bytes).ok()?;
    let mut chars = 0;
    for c in text.chars() {
        if c < ' ' || c == '"' || c == '\\' {
            return None;
        }
        chars += 1;
    }
    Some(chars)
}

impl Vocabulary {
    /// Builds the vocabulary from each token's decoded bytes (index = token id) and the
    /// end-of-generation ids (EOS, end-of-turn, …).
    ///
    /// Give control and special tokens (BOS, `<|im_start|>`, …) empty bytes: a token with
    /// no bytes is never allowed by a constraint, except an end-of-generation token once
    /// the value is complete. A special token given as its text would otherwise be allowed
    /// wherever that text is, e.g. inside a JSON string.
    ///
    /// The constraint can only lead to a complete value if every byte it may need can be
    /// spelled with tokens, as in byte-level BPE and in SentencePiece with byte fallback.
    pub fn new(token_bytes: Vec<Vec<u8>>, end_of_generation: Vec<u32>) -> Result<Self, Error> {
        let count = token_bytes.len();
        if count == 0 {
            return Err(Error::InvalidVocabulary("no tokens".into()));
        }
        if u32::try_from(count).is_err() {
            return Err(Error::InvalidVocabulary(format!(
                "{count} tokens do not fit 32-bit ids"
            )));
        }
        let mut is_eog = vec![false; count];
        for &id in &end_of_generation {
            match is_eog.get_mut(id as usize) {
                Some(flag) => *flag = true,
                None => {
                    return Err(Error::InvalidVocabulary(format!(
                        "end-of-generation token {id} is out of range for {count} tokens"
                    )));
                }
            }
        }
        let total: usize = token_bytes.iter().map(Vec::len).sum();
        if u32::try_from(total).is_err() {
            return Err(Error::InvalidVocabulary(format!(
                "{total} bytes of token text is too much"
            )));
        }
        let mut bytes = Vec::with_capacity(total);
        let mut offsets = Vec::with_capacity(count + 1);
        offsets.push(0);
        for token in &token_bytes {
            bytes.extend_from_slice(token);
            offsets.push(bytes.len() as u32);
        }
        let mut vocab = Self {
            bytes,
            offsets,
            end_of_generation,
            is_eog,
            full: Trie::default(),
            special: Trie::default(),
            plain: vec![0; count.div_ceil(64)],
            plain_by_chars: Vec::new(),
        };
        let candidates: Vec<u32> = (0..count as u32)
            .filter(|&t| !vocab.is_eog[t as usize] && !vocab.token_bytes(t).is_empty())
            .collect();
        let mut special = Vec::new();
        for &t in &candidates {
            match plain_string_chars(vocab.token_bytes(t)) {
                Some(chars) => {
                    vocab.plain[t as usize / 64] |= 1 << (t % 64);
                    vocab.plain_by_chars.push((chars, t));
                }
                None => special.push(t),
            }
        }
        vocab.plain_by_chars.sort_unstable();
        vocab.full = Trie::build(candidates, &vocab);
        vocab.special = Trie::build(special, &vocab);
        Ok(vocab)
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.offsets.len() - 1
    }

    /// Always false: a vocabulary has at least one token.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes of a token (empty for control tokens and ids out of range).
    pub fn token_bytes(&self, token: u32) -> &[u8] {
        let t = token as usize;
        if t >= self.len() {
            return &[];
        }
        &self.bytes[self.offsets[t] as usize..self.offsets[t + 1] as usize]
    }

    /// The end-of-generation token ids.
    pub fn end_of_generation(&self) -> &[u32] {
        &self.end_of_generation
    }

    /// True for an end-of-generation token.
    pub fn is_end_of_generation(&self, token: u32) -> bool {
        self.is_eog.get(token as usize).copied().unwrap_or(false)
    }

    /// Number of nodes of the full token trie, root excluded (a measure of the per-step
    /// walk outside strings).
    pub fn trie_node_count(&self) -> usize {
        self.full.nodes().len() - 1
    }

    /// Number of nodes of the trie walked inside strings, root excluded.
    pub fn string_trie_node_count(&self) -> usize {
        self.special.nodes().len() - 1
    }

    /// The trie of all tokens.
    pub(crate) fn full_trie(&self) -> &Trie {
        &self.full
    }

    /// The trie of the tokens that are not plain string content.
    pub(crate) fn special_trie(&self) -> &Trie {
        &self.special
    }

    /// Marks in `allowed` the plain string content tokens of at most `max_chars`
    /// characters.
    pub(crate) fn allow_plain(&self, allowed: &mut [u64], max_chars: u32) {
        let longest = self.plain_by_chars.last().map_or(0, |&(c, _)| c);
        if max_chars >= longest {
            for (a, p) in allowed.iter_mut().zip(&self.plain) {
                *a |= p;
            }
            return;
        }
        for &(chars, t) in &self.plain_by_chars {
            if chars > max_chars {
                break;
            }
            allowed[t as usize / 64] |= 1 << (t % 64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every token back out of the trie by walking it with an explicit path.
    fn spelled(trie: &Trie) -> Vec<(Vec<u8>, u32)> {
        let nodes = trie.nodes();
        let mut out = Vec::new();
        let mut stack: Vec<(usize, Vec<u8>)> = vec![(nodes[0].subtree_len as usize, Vec::new())];
        let mut i = 1;
        while i < nodes.len() {
            while stack.last().is_some_and(|(end, _)| *end <= i) {
                stack.pop();
            }
            let mut prefix = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
            prefix.push(nodes[i].byte);
            for &t in trie.node_tokens(i) {
                out.push((prefix.clone(), t));
            }
            stack.push((i + nodes[i].subtree_len as usize, prefix));
            i += 1;
        }
        out.sort();
        out
    }

    #[test]
    fn trie_holds_every_nonempty_non_eog_token_once() {
        let tokens: Vec<Vec<u8>> = ["a", "ab", "abc", "b", "ab", "", "ba", "\u{e9}", "zz", "a"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        let vocab = Vocabulary::new(tokens.clone(), vec![8]).unwrap();
        let mut want: Vec<(Vec<u8>, u32)> = tokens
            .iter()
            .enumerate()
            .filter(|(id, t)| !t.is_empty() && *id != 8)
            .map(|(id, t)| (t.clone(), id as u32))
            .collect();
        want.sort();
        assert_eq!(spelled(vocab.full_trie()), want);
        // a, ab, abc, b, ba, and the two bytes of é: 7 nodes besides the root.
        assert_eq!(vocab.trie_node_count(), 7);
        assert_eq!(vocab.token_bytes(2), b"abc");
        assert_eq!(vocab.token_bytes(99), b"");
        assert!(vocab.is_end_of_generation(8));
        assert!(!vocab.is_end_of_generation(7));
    }

    #[test]
    fn plain_string_tokens_are_set_aside_with_their_lengths() {
        let mut tokens: Vec<Vec<u8>> = ["ab", "a\"", "\\n", "é中", "\n", "x", "\u{7f}"]
            .iter()
            .map(|s| s.as_bytes().to_vec())
            .collect();
        tokens.push(vec![0xe4, 0xb8]); // half of a character
        let vocab = Vocabulary::new(tokens.clone(), vec![]).unwrap();
        let special: Vec<u32> = spelled(vocab.special_trie())
            .iter()
            .map(|(_, t)| *t)
            .collect();
        assert_eq!(special, [4, 2, 1, 7]);
        let plain = |max| {
            let mut allowed = vec![0u64; 1];
            vocab.allow_plain(&mut allowed, max);
            (0..8)
                .filter(|t| allowed[0] >> t & 1 == 1)
                .collect::<Vec<u32>>()
        };
        assert_eq!(plain(0), Vec::<u32>::new());
        assert_eq!(plain(1), [5, 6]);
        assert_eq!(plain(2), [0, 3, 5, 6]);
        assert_eq!(plain(99), [0, 3, 5, 6]);
        assert_eq!(vocab.string_trie_node_count(), 7);
    }

    #[test]
    fn bad_vocabularies_are_rejected() {
        assert!(matches!(
            Vocabulary::new(vec![], vec![]),
            Err(Error::InvalidVocabulary(_))
        ));
        let err = Vocabulary::new(vec![b"a".to_vec()], vec![5]).unwrap_err();
        assert!(
            err.to_string().contains("end-of-generation token 5"),
            "{err}"
        );
    }
}
