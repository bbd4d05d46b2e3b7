//! The forward pass: one transformer for every architecture, parameterised by
//! [`ModelConfig`].
//!
//! Reads top to bottom like llama.cpp's graphs (`src/models/llama.cpp`,
//! `src/models/gemma3.cpp`); where they differ, a config flag says so (QK-norm, post-norms,
//! GELU vs SiLU, where the attention scale goes, embedding scale, soft-capping). Every
//! step works on all the batch's tokens at once (`rows` of the scratch matrices), so
//! each weight matrix is streamed once per pass, and nothing is allocated.

use crate::attention::{self, Arithmetic};
use crate::config::AttentionScale;
use crate::error::{Error, ErrorKind, Result};
use crate::logits::OutputKind;
use crate::weights::{LayerWeights, QkvWeights};
use crate::{Batch, KvCache, Logits, Model, Scratch, ops};

impl Model {
    /// Runs `batch` through the model: stores its keys and values in `kv` and writes the
    /// logits of the tokens that asked for them into `logits`, in batch order.
    ///
    /// The batch may mix sequences; each token attends to the positions `0..=pos` of its
    /// own sequence (those already in the cache and those earlier in the batch).
    pub fn forward(
        &self,
        batch: &Batch,
        kv: &mut KvCache,
        scratch: &mut Scratch,
        logits: &mut Logits,
    ) -> Result<()> {
        let c = &self.config;
        let n = batch.len();
        self.check_buffers(batch, kv, scratch, logits)?;
        kv.check_batch(batch, &mut scratch.lens)?;
        logits.begin(batch.wants_logits());
        if n == 0 {
            return Ok(());
        }
        let s = scratch;
        if let Some(dumper) = s.dumper.as_mut() {
            dumper.next_pass();
        }
        let d = c.embedding_length;
        let q_dim = c.q_dim();
        let kv_dim = c.kv_dim();
        let ff = c.feed_forward_length;
        let hd = c.key_length;
        let eps = c.norm_eps;
        let arithmetic = Arithmetic::for_batch(n);
        // Llama 3 / LongRoPE divisors; LongRoPE's choice depends on the context size.
        let rope_factors = self.weights.rope_factors(c, kv.capacity());

        // Token embeddings. Shape: (n, d).
        for (t, &token) in batch.tokens().iter().enumerate() {
            ops::embed(
                &self.weights.token_embd,
                &self.file,
                token,
                &mut s.x[t * d..(t + 1) * d],
            );
        }
        if let Some(scale) = c.embedding_scale {
            s.x[..n * d].iter_mut().for_each(|v| *v *= scale);
        }
        dump(s.dumper.as_mut(), "inp_embd", -1, &s.x, n, d);

        s.out_rows.clear();
        let wanted = batch.wants_logits().iter().enumerate().filter(|(_, w)| **w);
        s.out_rows.extend(wanted.map(|(i, _)| i));
        let mut rows = n;

        for (il, (lw, lc)) in self.weights.layers.iter().zip(&c.layers).enumerate() {
            let layer = il as i32;
            // --- attention ---
            ops::rms_norm_rows(
                &s.x[..rows * d],
                &mut s.xb[..rows * d],
                &lw.attn_norm,
                d,
                eps,
            );
            dump(s.dumper.as_mut(), "attn_norm", layer, &s.xb, rows, d);

            self.project_qkv(lw, s, rows);

            if let (Some(qn), Some(kn)) = (&lw.q_norm, &lw.k_norm) {
                // RMSNorm of every head (rows of `hd` values).
                ops::rms_norm_in_place(&mut s.q[..rows * q_dim], qn, hd, eps);
                ops::rms_norm_in_place(&mut s.k[..rows * kv_dim], kn, hd, eps);
                dump(s.dumper.as_mut(), "Qcur_normed", layer, &s.q, rows, q_dim);
                dump(s.dumper.as_mut(), "Kcur_normed", layer, &s.k, rows, kv_dim);
            }
            let rope = ops::Rope {
                layout: c.rope_layout,
                dims: c.rope_dimension_count,
                freq_base: lc.rope_freq_base,
                freq_scale: lc.rope_freq_scale,
                freq_factors: rope_factors,
                attn_factor: c.rope_attn_factor,
            };
            for t in 0..rows {
                rope.angles(batch.positions()[t], &mut s.rope_cache);
                rope.apply(&mut s.q[t * q_dim..(t + 1) * q_dim], hd, &s.rope_cache);
                rope.apply(&mut s.k[t * kv_dim..(t + 1) * kv_dim], hd, &s.rope_cache);
            }
            let score_scale = match c.attention_scale {
                AttentionScale::Scores(scale) => scale,
                AttentionScale::Query(scale) => {
                    s.q[..rows * q_dim].iter_mut().for_each(|v| *v *= scale);
                    1.0
                }
            };
            dump(s.dumper.as_mut(), "Qcur", layer, &s.q, rows, q_dim);
            dump(s.dumper.as_mut(), "Kcur", layer, &s.k, rows, kv_dim);
            dump(s.dumper.as_mut(), "Vcur", layer, &s.v, rows, kv_dim);

            for t in 0..rows {
                let (seq, pos) = (batch.seq_ids()[t], batch.positions()[t] as usize);
                let (k, v) = (
                    &s.k[t * kv_dim..(t + 1) * kv_dim],
                    &s.v[t * kv_dim..(t + 1) * kv_dim],
                );
                kv.store(il, seq, pos, k, v);
            }
            let shape = attention::Shape {
                head_count: c.head_count,
                head_count_kv: c.head_count_kv,
                head_dim: hd,
                scale: score_scale,
                window: lc.sliding_window,
            };
            // Every token and head; split over the pool's threads when there is one.
            let cached = |seq: u32| kv.cached(il, seq);
            let tokens = attention::Tokens {
                queries: &s.q[..rows * q_dim],
                seq_ids: batch.seq_ids(),
                positions: batch.positions(),
                cached: &cached,
            };
            let pool = s.acts.pool().map(|p| &**p);
            attention::attend_batch(
                &shape,
                arithmetic,
                tokens,
                &s.attention,
                pool,
                &mut s.attn[..],
            );
            dump(s.dumper.as_mut(), "kqv_out", layer, &s.attn, rows, q_dim);

            s.acts
                .quantize(lw.wo.ty, &s.attn[..rows * q_dim], rows, q_dim);
            ops::matmul(
                &lw.wo,
                &self.file,
                &mut s.acts,
                &s.attn[..rows * q_dim],
                &mut s.proj[..rows * d],
            );

            if il + 1 == c.block_count && s.out_rows.len() < rows {
                // Only the rows that want logits go on (llama.cpp's `inp_out_ids`).
                for (i, &r) in s.out_rows.iter().enumerate() {
                    s.proj.copy_within(r * d..(r + 1) * d, i * d);
                    s.x.copy_within(r * d..(r + 1) * d, i * d);
                }
                rows = s.out_rows.len();
            }
            if let Some(w) = &lw.attn_post_norm {
                ops::rms_norm_in_place(&mut s.proj[..rows * d], w, d, eps);
            }
            dump(s.dumper.as_mut(), "attn_out", layer, &s.proj, rows, d);
            add(&mut s.x[..rows * d], &s.proj[..rows * d]);
            dump(s.dumper.as_mut(), "ffn_inp", layer, &s.x, rows, d);

            // --- feed-forward ---
            ops::rms_norm_rows(
                &s.x[..rows * d],
                &mut s.xb[..rows * d],
                &lw.ffn_norm,
                d,
                eps,
            );
            dump(s.dumper.as_mut(), "ffn_norm", layer, &s.xb, rows, d);
            self.gated_ffn(lw, s, rows);
            dump(s.dumper.as_mut(), "ffn_act", layer, &s.hidden, rows, ff);
            s.acts
                .quantize(lw.down.ty, &s.hidden[..rows * ff], rows, ff);
            ops::matmul(
                &lw.down,
                &self.file,
                &mut s.acts,
                &s.hidden[..rows * ff],
                &mut s.proj[..rows * d],
            );
            if let Some(w) = &lw.ffn_post_norm {
                ops::rms_norm_in_place(&mut s.proj[..rows * d], w, d, eps);
            }
            dump(s.dumper.as_mut(), "ffn_out", layer, &s.proj, rows, d);
            add(&mut s.x[..rows * d], &s.proj[..rows * d]);
            dump(s.dumper.as_mut(), "l_out", layer, &s.x, rows, d);
        }
        kv.set_lens(&s.lens);

        // --- output ---
        if rows > 0 {
            let w = &self.weights;
            ops::rms_norm_rows(
                &s.x[..rows * d],
                &mut s.xb[..rows * d],
                &w.output_norm,
                d,
                eps,
            );
            dump(s.dumper.as_mut(), "result_norm", -1, &s.xb, rows, d);
            if logits.kind() == OutputKind::Hidden {
                logits.rows_mut(rows).copy_from_slice(&s.xb[..rows * d]);
                return Ok(());
            }
            s.acts.quantize(w.output.ty, &s.xb[..rows * d], rows, d);
            let out = logits.rows_mut(rows);
            ops::matmul(&w.output, &self.file, &mut s.acts, &s.xb[..rows * d], out);
            if let Some(bias) = &w.output_bias {
                ops::add_bias_rows(out, bias);
            }
            if let Some(cap) = c.final_logit_softcap {
                // ggml: scale(1/cap), tanh, scale(cap).
                out.iter_mut()
                    .for_each(|v| *v = (*v * (1.0 / cap)).tanh() * cap);
            }
            dump(
                s.dumper.as_mut(),
                "result_output",
                -1,
                out,
                rows,
                c.vocab_size,
            );
        }
        Ok(())
    }

    /// Q, K and V of `rows` normed rows (`s.xb`) into `s.q`, `s.k`, `s.v`, biases added
    /// (llama.cpp `build_qkv`). A fused matrix writes rows of Q|K|V that are split here.
    fn project_qkv(&self, lw: &LayerWeights, s: &mut Scratch, rows: usize) {
        let c = &self.config;
        let (d, q_dim, kv_dim) = (c.embedding_length, c.q_dim(), c.kv_dim());
        let x = &s.xb[..rows * d];
        match &lw.qkv {
            QkvWeights::Separate { q, k, v } => {
                s.acts.quantize(q.ty, x, rows, d);
                let file = &self.file;
                ops::matmul(q, file, &mut s.acts, x, &mut s.q[..rows * q_dim]);
                ops::matmul(k, file, &mut s.acts, x, &mut s.k[..rows * kv_dim]);
                ops::matmul(v, file, &mut s.acts, x, &mut s.v[..rows * kv_dim]);
            }
            QkvWeights::Fused(w) => {
                let width = q_dim + 2 * kv_dim;
                // `matmul` reuses quantized rows of the right shape: quantize this
                // input explicitly, never trust what an earlier step left.
                s.acts.quantize(w.ty, x, rows, d);
                ops::matmul(w, &self.file, &mut s.acts, x, &mut s.qkv[..rows * width]);
                for t in 0..rows {
                    let row = &s.qkv[t * width..(t + 1) * width];
                    s.q[t * q_dim..(t + 1) * q_dim].copy_from_slice(&row[..q_dim]);
                    s.k[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim..q_dim + kv_dim]);
                    s.v[t * kv_dim..(t + 1) * kv_dim].copy_from_slice(&row[q_dim + kv_dim..]);
                }
            }
        }
        if let Some(bias) = &lw.qkv_bias {
            ops::add_bias_rows(&mut s.q[..rows * q_dim], &bias.q);
            ops::add_bias_rows(&mut s.k[..rows * kv_dim], &bias.k);
            ops::add_bias_rows(&mut s.v[..rows * kv_dim], &bias.v);
        }
    }

    /// `s.hidden = act(gate · xb) * (up · xb)` for `rows` rows (llama.cpp `build_ffn`:
    /// parallel gate, or phi3's fused `ffn_up` whose first half of each row is the gate,
    /// `ggml_swiglu` on the whole row).
    fn gated_ffn(&self, lw: &LayerWeights, s: &mut Scratch, rows: usize) {
        let c = &self.config;
        let (d, ff) = (c.embedding_length, c.feed_forward_length);
        let x = &s.xb[..rows * d];
        match &lw.gate {
            Some(gate) => {
                s.acts.quantize(gate.ty, x, rows, d);
                ops::matmul(gate, &self.file, &mut s.acts, x, &mut s.gate[..rows * ff]);
                ops::matmul(&lw.up, &self.file, &mut s.acts, x, &mut s.up[..rows * ff]);
                let (gate, up, hidden) = (
                    &s.gate[..rows * ff],
                    &s.up[..rows * ff],
                    &mut s.hidden[..rows * ff],
                );
                ops::gated_activation(c.activation, gate, up, hidden);
            }
            None => {
                // `s.gate` holds 2 * ff values per row when the config fuses them.
                s.acts.quantize(lw.up.ty, x, rows, d);
                ops::matmul(
                    &lw.up,
                    &self.file,
                    &mut s.acts,
                    x,
                    &mut s.gate[..rows * 2 * ff],
                );
                for t in 0..rows {
                    let row = &s.gate[t * 2 * ff..(t + 1) * 2 * ff];
                    let (gate, up) = row.split_at(ff);
                    let hidden = &mut s.hidden[t * ff..(t + 1) * ff];
                    ops::gated_activation(c.activation, gate, up, hidden);
                }
            }
        }
    }

    fn check_buffers(
        &self,
        batch: &Batch,
        kv: &KvCache,
        scratch: &Scratch,
        logits: &Logits,
    ) -> Result<()> {
        let c = &self.config;
        let invalid = |m: String| Err(Error::new(ErrorKind::InvalidBatch(m)));
        if batch.len() > scratch.max_tokens {
            return invalid(format!(
                "{} tokens exceed the scratch buffers' {} (split the batch)",
                batch.len(),
                scratch.max_tokens
            ));
        }
        if kv.n_layers() != c.block_count || (0..kv.n_layers()).any(|l| kv.kv_dim(l) != c.kv_dim())
        {
            return invalid("the KV cache was made for another model".into());
        }
        if scratch.attention.capacity() < kv.capacity()
            || scratch.x.len() < scratch.max_tokens * c.embedding_length
        {
            return invalid(
                "the scratch buffers were made for another model or a smaller context".into(),
            );
        }
        let wanted = batch.logits_count();
        let width = match logits.kind() {
            OutputKind::Logits => c.vocab_size,
            OutputKind::Hidden => c.embedding_length,
        };
        if logits.vocab_size() != width || wanted > logits.max_rows() {
            return invalid(format!(
                "{wanted} output rows of {width} wanted, the buffer holds {} rows of {}",
                logits.max_rows(),
                logits.vocab_size()
            ));
        }
        if let Some(&bad) = batch.tokens().iter().find(|&&t| t as usize >= c.vocab_size) {
            return Err(Error::new(ErrorKind::InvalidInput(format!(
                "token id {bad} is outside the vocabulary of {}",
                c.vocab_size
            ))));
        }
        Ok(())
    }
}

/// `x += y`, the residual connection.
fn add(x: &mut [f32], y: &[f32]) {
    x.iter_mut().zip(y).for_each(|(a, b)| *a += b);
}

fn dump(
    dumper: Option<&mut crate::dump::Dumper>,
    name: &str,
    layer: i32,
    data: &[f32],
    rows: usize,
    width: usize,
) {
    if let Some(dumper) = dumper {
        dumper.record(name, layer, data, rows, width);
    }
}
