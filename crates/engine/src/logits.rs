//! The output buffer of a forward pass: one row of vocabulary logits per batch token
//! that asked for them — or, for embeddings, one row of final hidden states.
//!
//! The caller owns it and sizes it once (a 262,144-token vocabulary makes a row 1 MiB),
//! so the forward pass writes into memory that already exists.

use crate::buffer::AnonBuffer;

/// What a forward pass writes into a [`Logits`] buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// Next-token logits: the output projection of the normed final hidden state.
    Logits,
    /// The final hidden state after the output norm (llama.cpp's `result_norm`, what
    /// its embedding pooling reads), without the output projection.
    Hidden,
}

/// Logits rows, in the order of the batch tokens that asked for them.
#[derive(Clone, Debug)]
pub struct Logits {
    kind: OutputKind,
    /// Values per row: the vocabulary size, or the embedding length for hidden states.
    vocab_size: usize,
    max_rows: usize,
    /// Shape: (n_rows, vocab_size), the first `n_rows` rows valid.
    data: AnonBuffer<f32>,
    /// The batch index of each valid row.
    batch_index: Vec<usize>,
}

impl Logits {
    /// A buffer for up to `max_rows` rows of `vocab_size` logits.
    pub fn new(vocab_size: usize, max_rows: usize) -> Self {
        Logits {
            kind: OutputKind::Logits,
            vocab_size,
            max_rows,
            data: AnonBuffer::zeroed(vocab_size * max_rows),
            batch_index: Vec::with_capacity(max_rows),
        }
    }

    /// A buffer for up to `max_rows` final hidden states of `embedding_length` values
    /// (for embeddings: the forward pass then skips the output projection).
    pub fn hidden(embedding_length: usize, max_rows: usize) -> Self {
        Logits {
            kind: OutputKind::Hidden,
            ..Logits::new(embedding_length, max_rows)
        }
    }

    /// What the rows hold.
    pub fn kind(&self) -> OutputKind {
        self.kind
    }

    /// Values per row (logits per row, or the embedding length for hidden states).
    pub fn vocab_size(&self) -> usize {
        self.vocab_size
    }

    /// The most rows one forward pass can fill.
    pub fn max_rows(&self) -> usize {
        self.max_rows
    }

    /// Number of rows the last forward pass filled.
    pub fn len(&self) -> usize {
        self.batch_index.len()
    }

    /// Whether the last forward pass filled no row.
    pub fn is_empty(&self) -> bool {
        self.batch_index.is_empty()
    }

    /// Row `i` (in batch order of the tokens that asked for logits).
    pub fn row(&self, i: usize) -> &[f32] {
        assert!(i < self.len(), "logits row {i} of {}", self.len());
        &self.data[i * self.vocab_size..(i + 1) * self.vocab_size]
    }

    /// Row `i`, mutable (samplers modify logits in place).
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        assert!(i < self.len(), "logits row {i} of {}", self.len());
        &mut self.data[i * self.vocab_size..(i + 1) * self.vocab_size]
    }

    /// The row of batch token `batch_index`, if it asked for logits.
    pub fn for_batch_index(&self, batch_index: usize) -> Option<&[f32]> {
        let i = self.batch_index.iter().position(|&b| b == batch_index)?;
        Some(self.row(i))
    }

    /// The last filled row (the next-token logits after a prompt).
    pub fn last(&self) -> Option<&[f32]> {
        self.len().checked_sub(1).map(|i| self.row(i))
    }

    /// The last filled row, mutable.
    pub fn last_mut(&mut self) -> Option<&mut [f32]> {
        self.len().checked_sub(1).map(|i| self.row_mut(i))
    }

    /// The batch index of each filled row.
    pub fn batch_indices(&self) -> &[usize] {
        &self.batch_index
    }

    /// Starts a pass: forgets the rows and records which batch tokens will fill them.
    pub(crate) fn begin(&mut self, wants_logits: &[bool]) {
        self.batch_index.clear();
        let rows = wants_logits
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| i);
        self.batch_index.extend(rows);
    }

    /// The storage of the first `n` rows, for the output projection to write into.
    pub(crate) fn rows_mut(&mut self, n: usize) -> &mut [f32] {
        &mut self.data[..n * self.vocab_size]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_follow_the_batch_tokens_that_want_them() {
        let mut logits = Logits::new(3, 2);
        logits.begin(&[false, true, false, true]);
        logits
            .rows_mut(2)
            .copy_from_slice(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
        assert_eq!(logits.len(), 2);
        assert_eq!(logits.for_batch_index(3), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!(logits.for_batch_index(0), None);
        assert_eq!(logits.last(), Some(&[4.0, 5.0, 6.0][..]));
        assert_eq!(logits.batch_indices(), &[1, 3]);
    }
}
