//! The vocabulary as constrained decoding needs it: each token's bytes, and a byte trie of
//! all tokens so that one walk per step tests every token against the grammar.
//!
//! The trie is stored flat in preorder (as llguidance's `TokTrie` does): each node records
//! its byte and the size of its subtree, so a walk that rejects a byte skips the whole
//! subtree by jumping ahead, and the walk reads memory front to back.

use crate::Error;

/// One trie node: the byte on the edge from its parent, the number of nodes in its subtree
/// (itself included) and where its tokens start in `Vocabulary::trie_tokens`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TrieNode {
    pub(crate) byte: u8,
    pub(crate) subtree_len: u32,
    pub(crate) token_start: u32,
}

/// Token bytes plus the precomputed token trie; built once per model and shared (`Arc`)
/// by every constrained request.
#[derive(Debug)]
pub struct Vocabulary {
    bytes: Vec<u8>,
    offsets: Vec<u32>,
    end_of_generation: Vec<u32>,
    is_eog: Vec<bool>,
    /// Preorder nodes; node 0 is the root (empty prefix); one extra sentinel node at the end
    /// closes the token range of the last real node.
    trie: Vec<TrieNode>,
    /// Token ids grouped by the node their bytes end at, in node order.
    trie_tokens: Vec<u32>,
}

impl Vocabulary {
    /// Builds the vocabulary from each token's decoded bytes (index = token id) and the
    /// end-of-generation ids (EOS, end-of-turn, …).
    ///
    /// Give control and special tokens (BOS, `<|im_start|>`, …) empty bytes: a token with
    /// no bytes is never allowed by a constraint, except an end-of-generation token once
    /// the value is complete. A special token given as its text would otherwise be allowed
    /// wherever that text is, e.g. inside a JSON string.
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
            trie: Vec::new(),
            trie_tokens: Vec::new(),
        };
        vocab.build_trie();
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

    /// Number of trie nodes, root included (a measure of the per-step walk).
    pub fn trie_node_count(&self) -> usize {
        self.trie.len() - 1
    }

    pub(crate) fn trie(&self) -> &[TrieNode] {
        &self.trie[..self.trie.len() - 1]
    }

    /// The tokens whose bytes end at trie node `node`.
    pub(crate) fn node_tokens(&self, node: usize) -> &[u32] {
        &self.trie_tokens
            [self.trie[node].token_start as usize..self.trie[node + 1].token_start as usize]
    }

    /// Builds the preorder trie from the tokens sorted by bytes: consecutive tokens share
    /// their longest common prefix, so each token adds nodes only past it.
    fn build_trie(&mut self) {
        let mut order: Vec<u32> = (0..self.len() as u32)
            .filter(|&t| !self.is_eog[t as usize] && !self.token_bytes(t).is_empty())
            .collect();
        order.sort_by(|&a, &b| self.token_bytes(a).cmp(self.token_bytes(b)).then(a.cmp(&b)));

        let mut trie = vec![TrieNode {
            byte: 0,
            subtree_len: 0,
            token_start: 0,
        }];
        let mut tokens = Vec::with_capacity(order.len());
        // Node indices along the current path; path[d] is the node at depth d.
        let mut path: Vec<usize> = vec![0];
        let mut previous: &[u8] = &[];
        for &token in &order {
            let text = self.token_bytes(token);
            let common = previous
                .iter()
                .zip(text)
                .take_while(|(a, b)| a == b)
                .count();
            while path.len() > common + 1 {
                let done = path.pop().unwrap_or(0);
                trie[done].subtree_len = (trie.len() - done) as u32;
            }
            for &byte in &text[common..] {
                path.push(trie.len());
                trie.push(TrieNode {
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
            trie[done].subtree_len = (trie.len() - done) as u32;
        }
        trie.push(TrieNode {
            byte: 0,
            subtree_len: 1,
            token_start: tokens.len() as u32,
        });
        self.trie = trie;
        self.trie_tokens = tokens;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reads every token back out of the trie by walking it with an explicit path.
    fn spelled(vocab: &Vocabulary) -> Vec<(Vec<u8>, u32)> {
        let nodes = vocab.trie();
        let mut out = Vec::new();
        let mut stack: Vec<(usize, Vec<u8>)> = vec![(nodes[0].subtree_len as usize, Vec::new())];
        let mut i = 1;
        while i < nodes.len() {
            while stack.last().is_some_and(|(end, _)| *end <= i) {
                stack.pop();
            }
            let mut prefix = stack.last().map(|(_, p)| p.clone()).unwrap_or_default();
            prefix.push(nodes[i].byte);
            for &t in vocab.node_tokens(i) {
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
        assert_eq!(spelled(&vocab), want);
        // a, ab, abc, b, ba, and the two bytes of é: 7 nodes plus the root.
        assert_eq!(vocab.trie_node_count(), 8);
        assert_eq!(vocab.token_bytes(2), b"abc");
        assert_eq!(vocab.token_bytes(99), b"");
        assert!(vocab.is_end_of_generation(8));
        assert!(!vocab.is_end_of_generation(7));
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
