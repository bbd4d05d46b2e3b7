//! Final hidden states of a whole input, for embeddings: what llama.cpp's pooling reads
//! (the `result_norm` tensor — the output norm applied, the output projection not).
//!
//! A one-off pass with its own small cache and buffers, sized to the input, so it can
//! run beside a model's generation loop without touching that loop's sequences.

use std::sync::Arc;

use tern_kernels::pool::ThreadPool;

use crate::error::{Error, ErrorKind, Result};
use crate::{Batch, Logits, Model, TokenId};

/// Tokens per forward pass (llama.cpp's default `n_ubatch`).
const UBATCH: usize = 512;

impl Model {
    /// The normed final hidden state of every token of `tokens` (one sequence from
    /// position 0), row after row: `tokens.len() × embedding_length` values.
    /// `pool` splits the matmuls over its threads (`None`: this thread alone).
    pub fn final_hidden_states(
        &self,
        tokens: &[TokenId],
        pool: Option<Arc<ThreadPool>>,
    ) -> Result<Vec<f32>> {
        if tokens.is_empty() {
            return Err(Error::new(ErrorKind::InvalidInput(
                "no tokens to embed".into(),
            )));
        }
        let d = self.config().embedding_length;
        let n = tokens.len();
        let ubatch = n.min(UBATCH);
        let mut kv = self.new_kv_cache(1, n);
        let mut scratch = self.new_scratch(ubatch, n);
        scratch.set_thread_pool(pool);
        let mut out = Logits::hidden(d, ubatch);
        let mut batch = Batch::with_capacity(ubatch);
        let mut hidden = Vec::with_capacity(n * d);
        for (i, chunk) in tokens.chunks(ubatch).enumerate() {
            batch.clear();
            let start = i * ubatch;
            for (j, &token) in chunk.iter().enumerate() {
                batch.push(token, (start + j) as u32, 0, true);
            }
            self.forward(&batch, &mut kv, &mut scratch, &mut out)?;
            for row in 0..out.len() {
                hidden.extend_from_slice(out.row(row));
            }
        }
        Ok(hidden)
    }
}
