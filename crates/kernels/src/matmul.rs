//! The typed API the engine multiplies with: weight matrices borrowed from the mmap,
//! activations quantized once per matmul the way ggml quantizes them, the matmul itself
//! and the embedding lookup.
//!
//! Layout follows ggml's `ggml_mul_mat(w, x)`: a weight matrix has `rows` output rows of
//! `cols` values each (ggml's `ne[1]` × `ne[0]`), stored row after row; activations are
//! `n_rows` token rows of `cols` values; the result is `n_rows` rows of `rows` values.
//!
//! One token (decode) runs the path's matrix-vector kernel over the rows, which reads
//! each weight byte once, in file order, and allocates nothing: the speed limit is the
//! memory bandwidth. Several tokens (prompts) run the path's batched kernel, which
//! unpacks a panel of weight rows once and multiplies it with every token
//! (`arch::x86_64::gemm`); where a path has none, a cache-sized tile of rows is reused
//! for all tokens. [`matmul_with_pool`] splits the rows over a [`ThreadPool`]; every
//! output element is computed by the same instructions whichever thread computes it, so
//! the result does not depend on the number of threads.

use std::ops::Range;

use tern_gguf::GgmlType;

mod activations;

#[cfg(target_arch = "x86_64")]
pub(crate) use activations::PairedRow;
pub(crate) use activations::{ActRow, GemmActivations};
pub use activations::{GEMM_MIN_TOKENS, QuantizedActivations};

use crate::Kernels;
use crate::error::KernelError;
use crate::pool::ThreadPool;
use crate::quant::{self, RowKernels, row_bytes, row_kernels};

/// A weight matrix in its stored type, borrowed from the model file.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    /// The element type.
    pub ty: GgmlType,
    /// Output rows (ggml `ne[1]`).
    pub rows: usize,
    /// Values per row (ggml `ne[0]`), a whole number of blocks of `ty`.
    pub cols: usize,
    /// `rows` rows of `ty`, row-major, exactly `rows * row_bytes(ty, cols)` bytes.
    pub data: &'a [u8],
}

impl<'a> WeightMatrix<'a> {
    /// Checks that tern has kernels for `ty`, that a row is a whole number of blocks and
    /// that `data` has exactly the size the shape implies.
    pub fn try_new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        if !quant::supported_weight_type(ty) {
            return Err(KernelError::UnsupportedType(ty));
        }
        let expected = row_bytes(ty, cols)?.saturating_mul(rows);
        if expected != data.len() {
            return Err(KernelError::SizeMismatch {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(WeightMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.ty, self.cols).unwrap_or(0)
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= self.rows`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// Panics unless the public fields are consistent (they can be set without
    /// `try_new`); keeps the kernels from reading a malformed matrix.
    fn assert_consistent(&self) {
        let expected = row_bytes(self.ty, self.cols).map(|b| b.saturating_mul(self.rows));
        assert!(
            quant::supported_weight_type(self.ty) && expected == Ok(self.data.len()),
            "malformed WeightMatrix: {} {}×{} with {} bytes (build it with try_new)",
            self.ty,
            self.rows,
            self.cols,
            self.data.len()
        );
    }
}

/// Where a batched matmul writes: `out[t * stride + r]` for token `t` and weight row `r`.
/// Threads write disjoint row ranges of the same matrix, hence a raw pointer.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmOut {
    ptr: *mut f32,
    stride: usize,
    n_tokens: usize,
}

// SAFETY: a `GemmOut` is only used to write the rows a thread was given by
// `ThreadPool::for_each_chunk` (disjoint ranges), inside a call that holds the `&mut`
// borrow of the whole output, so no two threads write the same element and the memory
// outlives every use.
unsafe impl Sync for GemmOut {}
// SAFETY: as for `Sync`.
unsafe impl Send for GemmOut {}

impl GemmOut {
    fn new(out: &mut [f32], stride: usize, n_tokens: usize) -> GemmOut {
        assert_eq!(out.len(), stride * n_tokens);
        GemmOut {
            ptr: out.as_mut_ptr(),
            stride,
            n_tokens,
        }
    }

    /// A pointer to the output of token `t` for rows `rows` (for SIMD stores; writing
    /// through it has the same contract as [`GemmOut::row_slice`]).
    #[cfg(target_arch = "x86_64")]
    pub(crate) fn row_ptr(&self, t: usize, rows: Range<usize>) -> *mut f32 {
        assert!(t < self.n_tokens && rows.start <= rows.end && rows.end <= self.stride);
        self.ptr.wrapping_add(t * self.stride + rows.start)
    }

    /// The output of token `t` for rows `rows`.
    ///
    /// # Safety
    /// No other live reference may cover these elements: callers take them only for
    /// the rows their chunk owns, and drop them before the chunk ends.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn row_slice(&self, t: usize, rows: Range<usize>) -> &mut [f32] {
        assert!(t < self.n_tokens && rows.start <= rows.end && rows.end <= self.stride);
        // SAFETY: in bounds by the assertion (the buffer is `stride * n_tokens` long);
        // exclusive by the caller's contract.
        unsafe {
            std::slice::from_raw_parts_mut(self.ptr.add(t * self.stride + rows.start), rows.len())
        }
    }
}

/// The batched matmul of one weight type: computes `out` for every token and the
/// weight rows `rows` (a range that starts at a multiple of the kernel's panel height).
pub(crate) type GemmFn = unsafe fn(&WeightMatrix<'_>, Range<usize>, &GemmActivations<'_>, &GemmOut);

/// Weight rows per pool chunk are chosen so that a chunk holds at least this many
/// bytes: smaller chunks cost more in hand-over than they gain in balance.
const MIN_CHUNK_BYTES: usize = 16 * 1024;
/// Row granularity of the chunks handed to the batched kernels (their panel heights
/// divide it), so a panel is never split between threads.
const GEMM_ROW_GRAIN: usize = 16;
/// Matrix-vector products over several tokens read this many weight bytes at a time
/// for all tokens, so the rows come from cache for every token after the first.
const MATVEC_TILE_BYTES: usize = 32 * 1024;

/// `out[t * w.rows + r] = dot(w row r, x row t)` for every weight row `r` and activation
/// row `t`, single-threaded, with the kernels of this process. Allocates nothing.
///
/// # Panics
/// If `x` was not quantized for `w.ty` (see [`QuantizedActivations::fits`]), if the
/// column counts differ, or if `out.len() != x.n_rows() * w.rows`.
pub fn matmul(w: &WeightMatrix<'_>, x: &QuantizedActivations, out: &mut [f32]) {
    Kernels::current().matmul(w, x, out);
}

/// [`matmul`] split over the threads of `pool` by output rows. The result is the same as
/// [`matmul`]'s, bit for bit, whatever the number of threads.
///
/// # Panics
/// As [`matmul`].
pub fn matmul_with_pool(
    pool: &ThreadPool,
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    out: &mut [f32],
) {
    Kernels::current().matmul_with_pool(pool, w, x, out);
}

impl Kernels {
    /// [`matmul`] with these kernels.
    ///
    /// # Panics
    /// As [`matmul`].
    pub fn matmul(&self, w: &WeightMatrix<'_>, x: &QuantizedActivations, out: &mut [f32]) {
        self.matmul_impl(None, w, x, out);
    }

    /// [`matmul_with_pool`] with these kernels.
    ///
    /// # Panics
    /// As [`matmul`].
    pub fn matmul_with_pool(
        &self,
        pool: &ThreadPool,
        w: &WeightMatrix<'_>,
        x: &QuantizedActivations,
        out: &mut [f32],
    ) {
        self.matmul_impl(Some(pool), w, x, out);
    }

    fn matmul_impl(
        &self,
        pool: Option<&ThreadPool>,
        w: &WeightMatrix<'_>,
        x: &QuantizedActivations,
        out: &mut [f32],
    ) {
        w.assert_consistent();
        let kernels = self
            .row_kernels(w.ty)
            .expect("checked by assert_consistent");
        assert_eq!(
            kernels.activation, x.ty,
            "activations quantized to {} but {} weights need {}",
            x.ty, w.ty, kernels.activation
        );
        assert_eq!(x.cols, w.cols, "activation and weight column counts differ");
        assert_eq!(out.len(), x.n_rows * w.rows, "matmul output length");
        if w.cols == 0 || w.rows == 0 {
            out.fill(0.0);
            return;
        }
        let n_tokens = x.n_rows;
        let row_bytes = w.row_bytes();
        let out = GemmOut::new(out, w.rows, n_tokens);
        // Tokens `0..batched` take the batched order (`RowKernels::batch_order`): for
        // Q4_K the tokens in whole groups of 4, as llama.cpp's repacked kernels; for
        // Q6_K all of them from 8 tokens on, as its tiled matmul; for the other types
        // all of them, in the order of the single-token kernels.
        let batched = match kernels.batch_order {
            Some(order) => order.split.tokens(n_tokens),
            None => n_tokens,
        };
        let gemm = kernels
            .gemm
            .zip(x.gemm_view())
            .filter(|_| batched >= GEMM_MIN_TOKENS);
        match gemm {
            Some((gemm, mut acts)) => {
                acts.n_tokens = batched;
                let panels = w.rows.div_ceil(GEMM_ROW_GRAIN);
                let run = |panels: Range<usize>, _thread: usize| {
                    let rows =
                        panels.start * GEMM_ROW_GRAIN..(panels.end * GEMM_ROW_GRAIN).min(w.rows);
                    // SAFETY: the table was checked against this CPU's features; `w`,
                    // `acts` and `out` have consistent shapes (asserted above), and
                    // the pool hands each chunk of rows to one thread only.
                    unsafe { gemm(w, rows.clone(), &acts, &out) };
                    per_token(&kernels, w, x, &out, rows, batched..n_tokens, batched);
                };
                match pool {
                    Some(pool) => pool.for_each_chunk(panels, 1, run),
                    None => run(0..panels, 0),
                }
            }
            None => {
                let min_rows = MIN_CHUNK_BYTES.div_ceil(row_bytes).max(1);
                let run = |rows: Range<usize>, _thread: usize| {
                    per_token(&kernels, w, x, &out, rows, 0..n_tokens, batched);
                };
                match pool {
                    Some(pool) => pool.for_each_chunk(w.rows, min_rows, run),
                    None => run(0..w.rows, 0),
                }
            }
        }
    }
}

/// Weight rows `rows` times the tokens `tokens`, token by token: the matrix-vector
/// kernel (or `dot` row by row), or the batch order's `dot` for the tokens before
/// `grouped_until` when the type has one. One token streams the whole chunk; several
/// take a cache-sized tile of rows at a time for all tokens.
fn per_token(
    kernels: &RowKernels,
    w: &WeightMatrix<'_>,
    x: &QuantizedActivations,
    out: &GemmOut,
    rows: Range<usize>,
    tokens: Range<usize>,
    grouped_until: usize,
) {
    if tokens.is_empty() {
        return;
    }
    let row_bytes = w.row_bytes();
    let tile_rows = MATVEC_TILE_BYTES.div_ceil(row_bytes).max(1);
    let mut start = rows.start;
    while start < rows.end {
        let end = if tokens.len() == 1 {
            rows.end
        } else {
            (start + tile_rows).min(rows.end)
        };
        let w_rows = &w.data[start * row_bytes..end * row_bytes];
        for t in tokens.clone() {
            // SAFETY: this chunk owns rows `start..end` of every token's output; the
            // slice is dropped before the next one is taken.
            let out_t = unsafe { out.row_slice(t, start..end) };
            let x_t = x.act_row(t);
            let grouped = kernels
                .batch_order
                .map(|order| order.dot)
                .filter(|_| t < grouped_until);
            match (grouped, kernels.matvec) {
                // SAFETY: the table was checked against this CPU's features; `w_rows`
                // holds `out_t.len()` rows of `row_bytes`, and `x_t` one row of the
                // same width.
                (None, Some(matvec)) => unsafe { matvec(w_rows, row_bytes, &x_t, out_t) },
                (dot, _) => {
                    let dot = dot.unwrap_or(kernels.dot);
                    for (o, w_row) in out_t.iter_mut().zip(w_rows.chunks_exact(row_bytes)) {
                        // SAFETY: as above, one row each.
                        *o = unsafe { dot(w_row, x_t.bytes) };
                    }
                }
            }
        }
        start = end;
    }
}

/// Embedding lookup: `out` row `i` = row `ids[i]` of `w`, dequantized (ggml's
/// `ggml_get_rows`).
///
/// Returns an error, leaving `out` partly written, if an id is not a row of `w`.
///
/// # Panics
/// If `out.len() != ids.len() * w.cols`.
pub fn get_rows(w: &WeightMatrix<'_>, ids: &[u32], out: &mut [f32]) -> Result<(), KernelError> {
    w.assert_consistent();
    let kernels = row_kernels(w.ty).expect("checked by assert_consistent");
    assert_eq!(out.len(), ids.len() * w.cols, "get_rows output length");
    if w.cols == 0 {
        return ids.iter().try_for_each(|&id| check_id(id, w.rows));
    }
    for (&id, out) in ids.iter().zip(out.chunks_exact_mut(w.cols)) {
        check_id(id, w.rows)?;
        // SAFETY: the table was checked against this CPU's features; the row and `out`
        // both hold `w.cols` values.
        unsafe { (kernels.dequantize)(w.row(id as usize), out) };
    }
    Ok(())
}

fn check_id(id: u32, rows: usize) -> Result<(), KernelError> {
    if (id as usize) < rows {
        Ok(())
    } else {
        Err(KernelError::RowOutOfRange { id, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn try_new_names_the_problem() {
        let data = [0u8; 18 * 4];
        assert!(WeightMatrix::try_new(GgmlType::Q4_0, 2, 64, &data).is_ok());
        let e = WeightMatrix::try_new(GgmlType::IQ2_XXS, 1, 256, &data).unwrap_err();
        assert_eq!(e, KernelError::UnsupportedType(GgmlType::IQ2_XXS));
        assert_eq!(
            e.to_string(),
            "tensor type iq2_xxs is not supported by tern's kernels"
        );
        let e = WeightMatrix::try_new(GgmlType::Q4_0, 1, 48, &data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a q4_0 row of 48 values is not a whole number of 32-value blocks"
        );
        let e = WeightMatrix::try_new(GgmlType::Q4_0, 3, 64, &data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a q4_0 matrix of 3×64 takes 108 bytes, but 72 were given"
        );
        // Sizes that overflow do not wrap around to something that matches.
        let e = WeightMatrix::try_new(GgmlType::F32, usize::MAX, 4, &data).unwrap_err();
        assert!(matches!(e, KernelError::SizeMismatch { .. }), "{e}");
    }

    #[test]
    fn f32_matmul_of_odd_shapes_matches_f64() {
        let (rows, cols, tokens) = (5, 7, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| (i as f32 * 0.71).cos())
            .collect();
        let data = f32_bytes(&w);
        let m = WeightMatrix::try_new(GgmlType::F32, rows, cols, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::F32, &x, tokens, cols);
        assert!(acts.fits(GgmlType::F32) && !acts.fits(GgmlType::F16));
        let mut out = vec![0.0; rows * tokens];
        matmul(&m, &acts, &mut out);
        for t in 0..tokens {
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|i| w[r * cols + i] as f64 * x[t * cols + i] as f64)
                    .sum();
                let got = out[t * rows + r] as f64;
                assert!((got - want).abs() < 1e-6, "t{t} r{r}: {got} vs {want}");
            }
        }
        let mut emb = vec![0.0; 2 * cols];
        get_rows(&m, &[4, 1], &mut emb).unwrap();
        assert_eq!(&emb[..cols], &w[4 * cols..5 * cols]);
        assert_eq!(&emb[cols..], &w[cols..2 * cols]);
    }

    #[test]
    fn empty_batches_are_fine() {
        let data = f32_bytes(&[1.0; 6]);
        let m = WeightMatrix::try_new(GgmlType::F32, 2, 3, &data).unwrap();
        let mut acts = QuantizedActivations::default();
        acts.quantize(GgmlType::F32, &[], 0, 3);
        let mut out: [f32; 0] = [];
        matmul(&m, &acts, &mut out);
        get_rows(&m, &[], &mut out).unwrap();
        // A matrix without rows: nothing to compute, every id out of range.
        let none = WeightMatrix::try_new(GgmlType::Q8_0, 0, 64, &[]).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::Q8_0, &[1.0; 128], 2, 64);
        matmul(&none, &acts, &mut out);
        assert!(get_rows(&none, &[0], &mut [0.0; 64]).is_err());
    }

    #[test]
    #[should_panic(expected = "activations quantized to q8_0 but q4_1 weights need q8_1")]
    fn matmul_rejects_activations_of_the_wrong_type() {
        let data = [0u8; 20];
        let m = WeightMatrix::try_new(GgmlType::Q4_1, 1, 32, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::Q4_0, &[0.5; 32], 1, 32);
        matmul(&m, &acts, &mut [0.0]);
    }

    #[test]
    #[should_panic(expected = "not a whole number of 256-value blocks")]
    fn k_quant_activations_need_whole_super_blocks() {
        QuantizedActivations::new().quantize(GgmlType::Q4_K, &[0.0; 64], 1, 64);
    }
}
