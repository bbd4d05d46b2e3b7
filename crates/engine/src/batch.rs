//! A batch of tokens for one forward pass.
//!
//! Serving needs to put tokens of several sequences into one pass (continuous batching:
//! one request's prompt next to other requests' next tokens), so a batch is a list of
//! `(token, position, sequence, wants logits)` rows, as in llama.cpp's `llama_batch`
//! (`include/llama.h`). Single-prompt use is the special case of one sequence.

use crate::TokenId;

/// Tokens fed to [`crate::Model::forward`], each with its sequence id, its position in
/// that sequence, and whether the caller wants its logits.
///
/// The buffers are kept across [`Batch::clear`], so a generation loop reuses one batch
/// without allocating.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    tokens: Vec<TokenId>,
    positions: Vec<u32>,
    seq_ids: Vec<u32>,
    wants_logits: Vec<bool>,
}

impl Batch {
    /// An empty batch with room for `capacity` tokens.
    pub fn with_capacity(capacity: usize) -> Self {
        Batch {
            tokens: Vec::with_capacity(capacity),
            positions: Vec::with_capacity(capacity),
            seq_ids: Vec::with_capacity(capacity),
            wants_logits: Vec::with_capacity(capacity),
        }
    }

    /// A batch holding `tokens` of sequence `seq` at positions `start_pos..`, with logits
    /// for the last token only (the usual prompt feed).
    pub fn for_sequence(tokens: &[TokenId], start_pos: u32, seq: u32) -> Self {
        let mut batch = Batch::with_capacity(tokens.len());
        batch.push_sequence(tokens, start_pos, seq, true);
        batch
    }

    /// Removes every token, keeping the buffers.
    pub fn clear(&mut self) {
        self.tokens.clear();
        self.positions.clear();
        self.seq_ids.clear();
        self.wants_logits.clear();
    }

    /// Appends one token.
    pub fn push(&mut self, token: TokenId, position: u32, seq: u32, wants_logits: bool) {
        self.tokens.push(token);
        self.positions.push(position);
        self.seq_ids.push(seq);
        self.wants_logits.push(wants_logits);
    }

    /// Appends `tokens` of sequence `seq` at consecutive positions from `start_pos`;
    /// `logits_last` asks for the logits of the last one.
    pub fn push_sequence(
        &mut self,
        tokens: &[TokenId],
        start_pos: u32,
        seq: u32,
        logits_last: bool,
    ) {
        for (i, &token) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            self.push(token, start_pos + i as u32, seq, logits_last && last);
        }
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the batch has no token.
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// The token ids, in batch order.
    pub fn tokens(&self) -> &[TokenId] {
        &self.tokens
    }

    /// The position of each token in its sequence.
    pub fn positions(&self) -> &[u32] {
        &self.positions
    }

    /// The sequence id of each token.
    pub fn seq_ids(&self) -> &[u32] {
        &self.seq_ids
    }

    /// Whether each token's logits are wanted.
    pub fn wants_logits(&self) -> &[bool] {
        &self.wants_logits
    }

    /// How many tokens want logits (the rows [`crate::Logits`] will hold).
    pub fn logits_count(&self) -> usize {
        self.wants_logits.iter().filter(|&&w| w).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_sequence_asks_logits_for_the_last_token_only() {
        let batch = Batch::for_sequence(&[5, 6, 7], 10, 2);
        assert_eq!(batch.tokens(), &[5, 6, 7]);
        assert_eq!(batch.positions(), &[10, 11, 12]);
        assert_eq!(batch.seq_ids(), &[2, 2, 2]);
        assert_eq!(batch.wants_logits(), &[false, false, true]);
        assert_eq!(batch.logits_count(), 1);
    }

    #[test]
    fn clear_keeps_capacity() {
        let mut batch = Batch::with_capacity(8);
        batch.push(1, 0, 0, true);
        batch.clear();
        assert!(batch.is_empty());
        assert!(batch.tokens.capacity() >= 8);
    }
}
