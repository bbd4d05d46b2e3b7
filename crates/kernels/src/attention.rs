//! The inner loops of the engine's KV-cache attention: scores of a query against many
//! cached keys, and the weighted sum of the cached values, for each of the cache types
//! and arithmetic paths the engine reproduces from llama.cpp's CPU flash attention
//! (ggml-cpu `ops.cpp`, `ggml_compute_forward_flash_attn_ext_f16_one_chunk` and `..._tiled`).
//!
//! Every kernel here is **exact**: each SIMD path returns the same bits as the scalar
//! reference in this module, because each output value goes through the same
//! operations in the same order (only independent values are computed side by side).
//! That is what lets the engine's logits stay identical to its goldens whatever the CPU.
//!
//! - [`Kernels::attention_scores_f32`]: scores of a tile of [`QUERY_TILE`] F32 queries
//!   against F16 keys, each a chain of f32 fused multiply-adds in order of the head
//!   dimension (ggml's `simd_gemm` in the tiled path), then scaled. The SIMD paths put
//!   the tile's queries in the lanes (the query tile comes transposed) so each lane
//!   still sums in order.
//! - [`Kernels::attention_accumulate_f32`]: `acc = fma(v_j, w_j, acc)` over keys `j` in
//!   order, F16 values widened (the tiled path's `simd_gemm` of weights and values).
//! - [`softmax_exp`] and [`softmax_sum`]: the tiled path's softmax of a 64-key tile
//!   (`ggml_vec_soft_max_f32` as the goldens' AVX-512 build compiles it), in scalar code
//!   every path shares.
//! - [`Kernels::attention_scores_f16`]: scores of one F16 query against F16 keys with
//!   [`crate::vec_dot_f16_ggml`] (ggml's AVX-512 `ggml_vec_dot_f16` lane order).
//! - [`Kernels::attention_accumulate_f16`]: the F16 accumulator of ggml's one-chunk
//!   path: per key, `acc = f16(acc * r_j)` when the running maximum moved
//!   (`ggml_vec_scale_f16`), then `acc = f16(fma(v_j, w_j, acc))` (`ggml_vec_mad_f16`).
//! - [`Kernels::attention_scores_quantized`] / [`Kernels::attention_accumulate_quantized`]:
//!   Q8_0 / Q4_0 caches: each K·Q is the block dot product of the matmuls against a
//!   Q8_0 query, each V row dequantized to F32 (`d * q`), rescaled and accumulated as
//!   `acc = acc * r_j` (when `r_j != 1`), `acc += v_j * w_j` (`ggml_vec_mad_f32`).
//!
//! A rescale factor of exactly 1 is skipped: multiplying by 1 leaves every value as it
//! is, so the engine may pass 1 for "the maximum did not move".

use half::f16;
use tern_gguf::GgmlType;

use crate::{KernelError, Kernels};

/// Queries per tile of [`Kernels::attention_scores_f32`].
pub const QUERY_TILE: usize = 8;

/// Scores of a transposed query tile against F16 keys (see [`Kernels::attention_scores_f32`]).
pub(crate) type ScoresF32Fn = unsafe fn(&[f32], &[f16], usize, usize, f32, &mut [f32]);
/// `acc += v_j * w_j` over F16 value rows.
pub(crate) type AccumulateF32Fn = unsafe fn(&mut [f32], &[f16], usize, &[f32]);
/// Scores of one F16 query against F16 keys, ggml's lane order.
pub(crate) type ScoresF16Fn = unsafe fn(&[f16], &[f16], usize, usize, f32, &mut [f32]);
/// The F16 accumulator with rescales.
pub(crate) type AccumulateF16Fn = unsafe fn(&mut [f16], &[f16], usize, &[f32], &[f32]);
/// The F32 accumulator with rescales over quantized value rows.
pub(crate) type AccumulateQuantFn = unsafe fn(&mut [f32], &[u8], usize, &[f32], &[f32]);
/// The softmax weights of one key tile and their sum.
pub(crate) type SoftmaxTileFn =
    unsafe fn(&[f32; SOFTMAX_TILE], f32, &mut [f32; SOFTMAX_TILE]) -> f64;

/// Keys per tile of ggml's tiled flash attention (`GGML_FA_TILE_KV`), the unit of
/// [`Kernels::attention_softmax_tile`].
pub const SOFTMAX_TILE: usize = 64;

/// One path's attention kernels. Callers ([`Kernels`]' methods) check every length, so
/// the functions may read `keys`/`values` rows without further checks.
#[derive(Clone, Copy)]
pub(crate) struct AttentionTable {
    pub scores_f32: ScoresF32Fn,
    pub accumulate_f32: AccumulateF32Fn,
    pub scores_f16: ScoresF16Fn,
    pub accumulate_f16: AccumulateF16Fn,
    pub accumulate_q8_0: AccumulateQuantFn,
    pub accumulate_q4_0: AccumulateQuantFn,
    pub softmax_tile: SoftmaxTileFn,
}

/// The scalar reference.
pub(crate) static SCALAR_ATTENTION: AttentionTable = AttentionTable {
    scores_f32: scores_f32_ref,
    accumulate_f32: accumulate_f32_ref,
    scores_f16: scores_f16_ref,
    accumulate_f16: accumulate_f16_ref,
    accumulate_q8_0: accumulate_q8_0_ref,
    accumulate_q4_0: accumulate_q4_0_ref,
    softmax_tile: softmax_tile_generic,
};

/// Checks that `rows` rows of `row_len` elements, `stride` apart, fit in `len`.
pub(crate) fn check_rows(what: &str, len: usize, rows: usize, stride: usize, row_len: usize) {
    if rows > 0 {
        assert!(
            stride >= row_len && (rows - 1) * stride + row_len <= len,
            "{what}: {rows} rows of {row_len} with stride {stride} do not fit in {len}"
        );
    }
}

/// The length checks of [`Kernels::attention_scores_f32`] (the SIMD kernels repeat
/// them, so their entry points are sound on their own).
pub(crate) fn check_scores_f32(queries: usize, keys: usize, stride: usize, n: usize, out: usize) {
    assert!(
        queries.is_multiple_of(QUERY_TILE),
        "attention_scores_f32: queries length {queries} is not a multiple of {QUERY_TILE}"
    );
    check_rows(
        "attention_scores_f32",
        keys,
        n,
        stride,
        queries / QUERY_TILE,
    );
    assert!(
        out >= n * QUERY_TILE,
        "attention_scores_f32: output too short"
    );
}

/// The length checks of the accumulators over `weights` rows of `row_len` elements.
pub(crate) fn check_accumulate(
    values: usize,
    stride: usize,
    row_len: usize,
    weights: usize,
    rescale: usize,
) {
    assert_eq!(weights, rescale, "attention accumulate: rescale length");
    check_rows("attention accumulate", values, weights, stride, row_len);
}

impl Kernels {
    /// Scores of a tile of [`QUERY_TILE`] queries against `n_keys` F16 keys:
    /// `out[j * QUERY_TILE + l] = s * scale` where `s` starts at 0 and takes
    /// `s = fma(q_l[d], k_j[d], s)` for `d` in order (the engine's F32 attention path for
    /// prompt batches: ggml's tiled flash attention, whose `simd_gemm` does exactly
    /// that per score before `ggml_vec_scale_f32`).
    ///
    /// `queries_t` is the tile transposed: `queries_t[d * QUERY_TILE + l] = q_l[d]`, so
    /// its length is `head_dim * QUERY_TILE`. Key `j` is
    /// `keys[j * key_stride..j * key_stride + head_dim]`.
    ///
    /// # Panics
    /// If `queries_t` is not a whole number of tiles, the keys do not fit in `keys`, or
    /// `out` is shorter than `n_keys * QUERY_TILE`.
    pub fn attention_scores_f32(
        &self,
        queries_t: &[f32],
        keys: &[f16],
        key_stride: usize,
        n_keys: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        check_scores_f32(queries_t.len(), keys.len(), key_stride, n_keys, out.len());
        // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
        // features; the lengths were checked above.
        unsafe {
            (self.table.attention.scores_f32)(queries_t, keys, key_stride, n_keys, scale, out)
        }
    }

    /// `acc[d] = fma(f32(v_j[d]), weights[j], acc[d])` for `j` in order (the `simd_gemm`
    /// of ggml's tiled flash attention on widened F16 values). Row `j` is
    /// `values[j * stride..j * stride + acc.len()]`.
    ///
    /// # Panics
    /// If the rows do not fit in `values`.
    pub fn attention_accumulate_f32(
        &self,
        acc: &mut [f32],
        values: &[f16],
        stride: usize,
        weights: &[f32],
    ) {
        check_accumulate(
            values.len(),
            stride,
            acc.len(),
            weights.len(),
            weights.len(),
        );
        // SAFETY: as in `attention_scores_f32`.
        unsafe { (self.table.attention.accumulate_f32)(acc, values, stride, weights) }
    }

    /// The softmax step of ggml's tiled flash attention for one tile of
    /// [`SOFTMAX_TILE`] keys: `weights[i] = softmax_exp(scores[i] - max)` (0 for a
    /// score of `-inf`, a key the query does not see) and their sum by
    /// [`softmax_sum`] — `ggml_vec_soft_max_f32` as the goldens' AVX-512 build computes
    /// it. The same bits on every path.
    pub fn attention_softmax_tile(
        &self,
        scores: &[f32; SOFTMAX_TILE],
        max: f32,
        weights: &mut [f32; SOFTMAX_TILE],
    ) -> f64 {
        // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
        // features; the arrays have the tile's length by their types.
        unsafe { (self.table.attention.softmax_tile)(scores, max, weights) }
    }

    /// Scores of one F16 query against `n_keys` F16 keys:
    /// `out[j] = vec_dot_f16_ggml(k_j, query) * scale` (the engine's F16 path for
    /// decoding). Key `j` is `keys[j * key_stride..j * key_stride + query.len()]`.
    ///
    /// # Panics
    /// If the keys do not fit in `keys` or `out` is shorter than `n_keys`.
    pub fn attention_scores_f16(
        &self,
        query: &[f16],
        keys: &[f16],
        key_stride: usize,
        n_keys: usize,
        scale: f32,
        out: &mut [f32],
    ) {
        check_rows(
            "attention_scores_f16",
            keys.len(),
            n_keys,
            key_stride,
            query.len(),
        );
        assert!(
            out.len() >= n_keys,
            "attention_scores_f16: output too short"
        );
        // SAFETY: as in `attention_scores_f32`.
        unsafe { (self.table.attention.scores_f16)(query, keys, key_stride, n_keys, scale, out) }
    }

    /// The F16 accumulator over keys `j` in order: when `rescale[j] != 1`,
    /// `acc = f16(acc * rescale[j])`; then `acc = f16(fma(v_j, weights[j], acc))`.
    /// Row `j` is `values[j * stride..j * stride + acc.len()]`.
    ///
    /// # Panics
    /// If `weights` and `rescale` differ in length or the rows do not fit in `values`.
    pub fn attention_accumulate_f16(
        &self,
        acc: &mut [f16],
        values: &[f16],
        stride: usize,
        weights: &[f32],
        rescale: &[f32],
    ) {
        check_accumulate(
            values.len(),
            stride,
            acc.len(),
            weights.len(),
            rescale.len(),
        );
        // SAFETY: as in `attention_scores_f32`.
        unsafe { (self.table.attention.accumulate_f16)(acc, values, stride, weights, rescale) }
    }

    /// Scores of one query, quantized to `ty`'s activation type (Q8_0 for both cache
    /// types), against `n_keys` keys of type `ty`: `out[j] = vec_dot(k_j, query) * scale`
    /// with this path's row dot product (the same as [`Kernels::vec_dot`]). Key `j` is
    /// `keys[j * key_stride..]`, `head_dim` values.
    ///
    /// # Errors
    /// If `ty` is not Q8_0 or Q4_0, or the rows do not hold `head_dim` values.
    ///
    /// # Panics
    /// If the keys do not fit in `keys` or `out` is shorter than `n_keys`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention_scores_quantized(
        &self,
        ty: GgmlType,
        query: &[u8],
        head_dim: usize,
        keys: &[u8],
        key_stride: usize,
        n_keys: usize,
        scale: f32,
        out: &mut [f32],
    ) -> Result<(), KernelError> {
        quantized_type(ty)?;
        let kernels = self
            .row_kernels(ty)
            .ok_or(KernelError::UnsupportedType(ty))?;
        check_row(kernels.activation, head_dim, query.len())?;
        let row_bytes = head_dim / ty.block_size() * ty.type_size();
        check_row(ty, head_dim, row_bytes)?;
        check_rows(
            "attention_scores_quantized",
            keys.len(),
            n_keys,
            key_stride,
            row_bytes,
        );
        assert!(
            out.len() >= n_keys,
            "attention_scores_quantized: output too short"
        );
        for (j, out) in out[..n_keys].iter_mut().enumerate() {
            let key = &keys[j * key_stride..j * key_stride + row_bytes];
            // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
            // features; both rows were checked to hold `head_dim` values.
            *out = unsafe { (kernels.dot)(key, query) } * scale;
        }
        Ok(())
    }

    /// The F32 accumulator over quantized value rows `j` in order: when
    /// `rescale[j] != 1`, `acc *= rescale[j]`; then `acc += dequantize(v_j) * weights[j]`
    /// (a multiply, then an add). Row `j` is `values[j * stride..]`, `acc.len()` values
    /// of type `ty`.
    ///
    /// # Errors
    /// If `ty` is not Q8_0 or Q4_0 or `acc.len()` is not a whole number of its blocks.
    ///
    /// # Panics
    /// If `weights` and `rescale` differ in length or the rows do not fit in `values`.
    pub fn attention_accumulate_quantized(
        &self,
        ty: GgmlType,
        acc: &mut [f32],
        values: &[u8],
        stride: usize,
        weights: &[f32],
        rescale: &[f32],
    ) -> Result<(), KernelError> {
        let f = match quantized_type(ty)? {
            GgmlType::Q8_0 => self.table.attention.accumulate_q8_0,
            _ => self.table.attention.accumulate_q4_0,
        };
        let row_bytes = acc.len() / ty.block_size() * ty.type_size();
        check_row(ty, acc.len(), row_bytes)?;
        check_accumulate(
            values.len(),
            stride,
            row_bytes,
            weights.len(),
            rescale.len(),
        );
        // SAFETY: as in `attention_scores_f32`; `acc.len()` is a whole number of blocks
        // and every row holds them.
        unsafe { f(acc, values, stride, weights, rescale) };
        Ok(())
    }
}

/// Checks that `bytes` is one row of `values` values of the block type `ty`.
fn check_row(ty: GgmlType, values: usize, bytes: usize) -> Result<(), KernelError> {
    let block_size = ty.block_size();
    if !values.is_multiple_of(block_size) {
        return Err(KernelError::RowNotBlockAligned {
            ty,
            cols: values,
            block_size,
        });
    }
    let expected = values / block_size * ty.type_size();
    if expected != bytes {
        return Err(KernelError::SizeMismatch {
            ty,
            rows: 1,
            cols: values,
            expected,
            actual: bytes,
        });
    }
    Ok(())
}

/// The quantized cache types these kernels serve.
fn quantized_type(ty: GgmlType) -> Result<GgmlType, KernelError> {
    match ty {
        GgmlType::Q8_0 | GgmlType::Q4_0 => Ok(ty),
        other => Err(KernelError::UnsupportedType(other)),
    }
}

// ---- The scalar reference ----

pub(crate) fn scores_f32_ref(
    queries_t: &[f32],
    keys: &[f16],
    key_stride: usize,
    n_keys: usize,
    scale: f32,
    out: &mut [f32],
) {
    let head_dim = queries_t.len() / QUERY_TILE;
    for j in 0..n_keys {
        let key = &keys[j * key_stride..j * key_stride + head_dim];
        for l in 0..QUERY_TILE {
            let mut sum = 0.0f32;
            for (d, k) in key.iter().enumerate() {
                sum = queries_t[d * QUERY_TILE + l].mul_add(k.to_f32(), sum);
            }
            out[j * QUERY_TILE + l] = sum * scale;
        }
    }
}

pub(crate) fn accumulate_f32_ref(acc: &mut [f32], values: &[f16], stride: usize, weights: &[f32]) {
    for (j, &w) in weights.iter().enumerate() {
        let row = &values[j * stride..j * stride + acc.len()];
        for (a, v) in acc.iter_mut().zip(row) {
            *a = v.to_f32().mul_add(w, *a);
        }
    }
}

/// `e^x` as llama.cpp's AVX-512 `ggml_v_expf` (ggml-cpu/vec.h) computes it — the
/// exponential of the softmax of ggml's tiled flash attention in the goldens' build —
/// in scalar code, so every tern path gets its bits: `n = round(x · log2 e)` by the
/// `1.5 · 2^23` trick, `b = x − n · ln 2` in two fused steps, a degree-5 polynomial in
/// `b` by fused multiply-adds, then `vscalefps` (`j · 2^n`, one rounding; done here in
/// f64, where the product is exact). `|n| > 192` gives 0 below and infinity above (so
/// `-inf` gives 0).
#[inline(always)]
pub fn softmax_exp(x: f32) -> f32 {
    let r = f32::from_bits(0x4b40_0000); // 0x1.8p23
    let z = x.mul_add(f32::from_bits(0x3fb8_aa3b), r); // 0x1.715476p+0
    let n = z - r;
    let b = (-n).mul_add(
        f32::from_bits(0x35bf_be8e),                  // 0x1.7f7d1cp-20
        (-n).mul_add(f32::from_bits(0x3f31_7200), x), // 0x1.62e4p-1
    );
    if n.abs() > 192.0 {
        return if n <= 0.0 { 0.0 } else { f32::INFINITY };
    }
    let u = b * b;
    let j = f32::from_bits(0x3c07_2010) // 0x1.0e4020p-7
        .mul_add(b, f32::from_bits(0x3d2b_9f17)) // 0x1.573e2ep-5
        .mul_add(
            u,
            f32::from_bits(0x3e2a_af33).mul_add(b, f32::from_bits(0x3eff_fedb)), // 0x1.555e66p-3, 0x1.fffdb6p-2
        )
        .mul_add(u, f32::from_bits(0x3f7f_fff6).mul_add(b, 1.0)); // 0x1.ffffecp-1
    // 2^n as an f64 built from its exponent bits (|n| <= 192: a normal f64).
    let scale = f64::from_bits(((n as i64 + 1023) as u64) << 52);
    (j as f64 * scale) as f32
}

/// [`Kernels::attention_softmax_tile`] as plain code: the SIMD paths compile this same
/// function with their fused multiply-add instructions (without them `f32::mul_add` is
/// a slow library call, with the same result).
#[inline(always)]
pub(crate) fn softmax_tile_generic(
    scores: &[f32; SOFTMAX_TILE],
    max: f32,
    weights: &mut [f32; SOFTMAX_TILE],
) -> f64 {
    for (w, &s) in weights.iter_mut().zip(scores) {
        *w = softmax_exp(s - max);
    }
    softmax_sum(weights)
}

/// The sum of the softmax weights of one 64-key tile as ggml's tiled flash attention
/// adds them (`ggml_vec_soft_max_f32`, AVX-512 build): per 16 weights the f32 reduction
/// of `_mm512_reduce_add_ps` (halves, quarters, then pairs), each added to an f64 sum.
#[inline(always)]
pub fn softmax_sum(weights: &[f32; SOFTMAX_TILE]) -> f64 {
    let mut sum = 0.0f64;
    for v in weights.chunks_exact(16) {
        let t: [f32; 8] = std::array::from_fn(|i| v[i + 8] + v[i]);
        let u: [f32; 4] = std::array::from_fn(|i| t[i + 4] + t[i]);
        sum += ((u[2] + u[0]) + (u[3] + u[1])) as f64;
    }
    sum
}

pub(crate) fn scores_f16_ref(
    query: &[f16],
    keys: &[f16],
    key_stride: usize,
    n_keys: usize,
    scale: f32,
    out: &mut [f32],
) {
    for (j, out) in out[..n_keys].iter_mut().enumerate() {
        let key = &keys[j * key_stride..j * key_stride + query.len()];
        *out = crate::ops::vec_dot_f16_ggml_ref(key, query) * scale;
    }
}

pub(crate) fn accumulate_f16_ref(
    acc: &mut [f16],
    values: &[f16],
    stride: usize,
    weights: &[f32],
    rescale: &[f32],
) {
    for (j, (&w, &r)) in weights.iter().zip(rescale).enumerate() {
        if r != 1.0 {
            crate::ops::vec_scale_f16_ref(acc, r);
        }
        let row = &values[j * stride..j * stride + acc.len()];
        crate::ops::vec_mad_f16_ref(acc, row, w);
    }
}

/// The quantized accumulators' shared loop: `dequantize` writes one row as F32.
fn accumulate_quantized_ref(
    acc: &mut [f32],
    values: &[u8],
    stride: usize,
    weights: &[f32],
    rescale: &[f32],
    row_bytes: usize,
    dequantize: impl Fn(&[u8], &mut [f32]),
) {
    // One block of values at a time, on the stack: the reference allocates nothing.
    const CHUNK: usize = 32;
    let mut value = [0.0f32; CHUNK];
    let blocks = acc.len() / CHUNK;
    let block_bytes = row_bytes / blocks.max(1);
    for (j, (&w, &r)) in weights.iter().zip(rescale).enumerate() {
        if r != 1.0 {
            acc.iter_mut().for_each(|a| *a *= r);
        }
        let row = &values[j * stride..j * stride + row_bytes];
        for (b, acc) in acc.chunks_exact_mut(CHUNK).enumerate() {
            dequantize(&row[b * block_bytes..(b + 1) * block_bytes], &mut value);
            for (a, v) in acc.iter_mut().zip(&value) {
                *a += v * w;
            }
        }
    }
}

pub(crate) fn accumulate_q8_0_ref(
    acc: &mut [f32],
    values: &[u8],
    stride: usize,
    weights: &[f32],
    rescale: &[f32],
) {
    let row_bytes = acc.len() / 32 * 34;
    accumulate_quantized_ref(
        acc,
        values,
        stride,
        weights,
        rescale,
        row_bytes,
        |b, out| crate::quant::q8_0::dequantize(crate::blocks::as_blocks(b), out),
    );
}

pub(crate) fn accumulate_q4_0_ref(
    acc: &mut [f32],
    values: &[u8],
    stride: usize,
    weights: &[f32],
    rescale: &[f32],
) {
    let row_bytes = acc.len() / 32 * 18;
    accumulate_quantized_ref(
        acc,
        values,
        stride,
        weights,
        rescale,
        row_bytes,
        |b, out| crate::quant::q4_0::dequantize(crate::blocks::as_blocks(b), out),
    );
}
