//! Dequantization, quantization and dot products per tensor type — the portable scalar
//! reference of every format, one module per format.
//!
//! ggml pairs each weight type with an activation type (its `vec_dot_type`): the
//! activations of a matmul are quantized once per row to that type and every weight row
//! is dotted with them in integer arithmetic. tern does the same ([`vec_dot_type`]), so
//! its logits stay as close as possible to llama.cpp's.
//!
//! The byte-level entry points here ([`dequantize_row`], [`quantize_row`],
//! [`vec_dot`]) check their arguments; the matmul gets the unchecked function pointers
//! of a `RowKernels` table once per call. Those tables are the run-time dispatch point:
//! the scalar ones here, the SIMD ones in [`crate::arch`], chosen once per process
//! ([`crate::Kernels::current`]).
//!
//! Where llama.cpp's arithmetic differs from this reference: its CPU backend runs SIMD
//! versions of these dot products (8 to 16 f32 lanes, fused multiply-adds), and for
//! whole matmuls it may use llamafile's tinyBLAS (`ggml-cpu/llamafile/sgemm.cpp`: F32,
//! F16, BF16, Q8_0, Q4_0, Q5_0) or repacked, row-interleaved weights
//! (`ggml-cpu/repack.cpp`: Q4_0, Q8_0, Q2_K, Q4_K, Q5_K, Q6_K, depending on the CPU),
//! and on x86 the K-quants it does not repack go through its tiled matmul from 8 tokens
//! on (`ggml-cpu/tiled/`). All of them add the same exact per-block integer products;
//! only the order and rounding of the f32 sums differ, which moves results in the last
//! bits (the fixture tests measure it against llama.cpp's own `vec_dot` and, for whole
//! matmuls, its own `ggml_mul_mat`). tern follows the goldens' build where a model
//! needs it: `BatchOrder` (Q4_K's repacked orders, Q6_K's tiled one); Q2_K, Q3_K and
//! Q5_K batches still sum in their single-token order.

pub mod float;
pub(crate) mod order;
pub mod q2_k;
pub mod q3_k;
pub mod q4_0;
pub mod q4_1;
pub mod q4_k;
pub mod q5_0;
pub mod q5_1;
pub mod q5_k;
pub mod q6_k;
pub mod q8_0;
pub mod q8_1;
pub mod q8_k;

use tern_gguf::GgmlType;

use crate::blocks::as_blocks;
use crate::blocks::{F16Le, as_blocks_mut};
use crate::error::KernelError;

/// Exact integer dot product of two 32-value blocks of quants. Written as one plain loop
/// so that the compiler vectorizes it; integer sums are exact, so the order does not
/// matter (ggml's generic code splits it into two half sums).
#[inline]
#[allow(dead_code)]
pub(crate) fn dot_i8_32(a: &[i8; 32], b: &[i8; 32]) -> i32 {
    let mut sum = 0i32;
    for (&x, &y) in a.iter().zip(b) {
        sum += x as i32 * y as i32;
    }
    sum
}

/// The weight types tern can multiply with and look rows up in.
pub fn supported_weight_type(ty: GgmlType) -> bool {
    vec_dot_type(ty).is_some()
}

/// The activation type ggml quantizes to for a dot product with weights of type
/// `weight` (`type_traits_cpu[..].vec_dot_type` in ggml-cpu/ggml-cpu.c), or `None` when
/// tern has no kernel for `weight`.
pub fn vec_dot_type(weight: GgmlType) -> Option<GgmlType> {
    use GgmlType::*;
    Some(match weight {
        F32 => F32,
        F16 => F16,
        BF16 => BF16,
        Q4_0 | Q5_0 | Q8_0 => Q8_0,
        Q4_1 | Q5_1 => Q8_1,
        Q2_K | Q3_K | Q4_K | Q5_K | Q6_K => Q8_K,
        _ => return None,
    })
}

/// Bytes of a row of `cols` values of type `ty`, checking that `cols` is a whole number
/// of blocks.
pub fn row_bytes(ty: GgmlType, cols: usize) -> Result<usize, KernelError> {
    let block_size = ty.block_size();
    if !cols.is_multiple_of(block_size) {
        return Err(KernelError::RowNotBlockAligned {
            ty,
            cols,
            block_size,
        });
    }
    // Saturating: an impossible size then fails the caller's length comparison.
    Ok((cols / block_size).saturating_mul(ty.type_size()))
}

// The kernel function types are `unsafe fn` pointers because the SIMD paths store
// `#[target_feature]` functions in them: calling one is sound only on a CPU with those
// features, which `crate::arch::table` checks before it hands out a table (see
// `crate::arch`). The scalar functions coerce to the same types.

/// Decodes a row of bytes into f32 values.
pub(crate) type DequantizeFn = unsafe fn(&[u8], &mut [f32]);
/// Dot product of a weight row and an activation row, both as bytes.
pub(crate) type DotFn = unsafe fn(&[u8], &[u8]) -> f32;
/// Encodes f32 values as a row of bytes.
pub(crate) type QuantizeFn = unsafe fn(&[f32], &mut [u8]);
/// Dot products of consecutive weight rows with one activation row:
/// `out[r] = dot(weights[r * row_bytes..][..row_bytes], activations)` for every `r` in
/// `0..out.len()`; `weights` holds exactly `out.len()` rows.
pub(crate) type MatVecFn = unsafe fn(&[u8], usize, &crate::matmul::ActRow<'_>, &mut [f32]);

/// Function pointers for one weight type. Each takes whole rows as bytes; the lengths
/// must already be consistent (a whole number of blocks, weight and activation rows of
/// the same number of values), which the callers check once per matrix.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowKernels {
    /// Decodes a weight row.
    pub dequantize: DequantizeFn,
    /// Dot product of a weight row with an activation row of type `activation`.
    pub dot: DotFn,
    /// The activation type ([`vec_dot_type`]).
    pub activation: GgmlType,
    /// Several rows against one activation row, when the path has a kernel that is
    /// faster than one `dot` per row; otherwise the matmul calls `dot` row by row.
    pub matvec: Option<MatVecFn>,
    /// The batched (several tokens) matmul of this path, when it has one for the type.
    /// It computes the tokens [`BatchOrder::tokens`] selects in the order of
    /// `batch_order.dot` when that is set, else every token in the order of `dot`.
    pub gemm: Option<crate::matmul::GemmFn>,
    /// For the types whose matmul llama.cpp's x86 backend computes in another order when
    /// it has several tokens (Q4_K, Q6_K): that order, and which tokens take it; the
    /// others take `dot`'s. `None`: every token takes `dot`'s order.
    pub batch_order: Option<BatchOrder>,
}

/// A per-token dot product in the order llama.cpp's x86 backend uses inside a matmul
/// of several tokens, and which tokens of a matmul get it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct BatchOrder {
    /// The dot product in that order.
    pub dot: DotFn,
    /// Which tokens take it.
    pub split: BatchSplit,
}

/// Which tokens of a matmul take a [`BatchOrder`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum BatchSplit {
    /// The tokens in whole groups of 4; the last `n % 4` take `dot`'s order (Q4_K:
    /// llama.cpp's repacked `ggml_gemm_q4_K_8x8_q8_K` for the groups of 4, its
    /// `ggml_gemv_q4_K_8x8_q8_K` for the rest; ggml-cpu/repack.cpp).
    GroupsOf4,
    /// Every token when the matmul has at least [`TILED_MIN_TOKENS`], none otherwise
    /// (Q6_K: llama.cpp's tiled K-quant matmul, ggml-cpu/tiled/tiled.cpp).
    Tiled,
}

/// From this many tokens on, llama.cpp's x86 backend multiplies the K-quant types it
/// does not repack through its tiled matmul (`ggml_tiled_min_batch` in
/// ggml-cpu/tiled/tiled.cpp: `rows >= 8`, `rows` being the matmul's `src1->ne[1]`).
pub const TILED_MIN_TOKENS: usize = 8;

impl BatchSplit {
    /// How many of the first tokens of a matmul of `n_tokens` take the batch order.
    pub(crate) fn tokens(self, n_tokens: usize) -> usize {
        match self {
            BatchSplit::GroupsOf4 => n_tokens - n_tokens % 4,
            BatchSplit::Tiled if n_tokens >= TILED_MIN_TOKENS => n_tokens,
            BatchSplit::Tiled => 0,
        }
    }
}

/// The kernels for weights of type `ty` on the path chosen for this process
/// ([`crate::Kernels::current`]).
pub(crate) fn row_kernels(ty: GgmlType) -> Option<RowKernels> {
    crate::Kernels::current().row_kernels(ty)
}

/// The scalar reference kernels for weights of type `ty`: the table of the scalar path,
/// and what the SIMD tables fall back to for types they have no kernel for.
pub(crate) fn scalar_row_kernels(ty: GgmlType) -> Option<RowKernels> {
    use GgmlType as T;
    let activation = vec_dot_type(ty)?;
    let (dequantize, dot): (DequantizeFn, DotFn) = match ty {
        T::F32 => (float::dequantize_f32, |w, a| {
            float::vec_dot_f32(w, a, w.len() / 4)
        }),
        T::F16 => (float::dequantize_f16, |w, a| {
            float::vec_dot_f16(w, a, w.len() / 2)
        }),
        T::BF16 => (float::dequantize_bf16, |w, a| {
            float::vec_dot_bf16(w, a, w.len() / 2)
        }),
        T::Q4_0 => (
            |b, y| q4_0::dequantize(as_blocks(b), y),
            |w, a| q4_0::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q4_1 => (
            |b, y| q4_1::dequantize(as_blocks(b), y),
            |w, a| q4_1::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q5_0 => (
            |b, y| q5_0::dequantize(as_blocks(b), y),
            |w, a| q5_0::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q5_1 => (
            |b, y| q5_1::dequantize(as_blocks(b), y),
            |w, a| q5_1::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q8_0 => (
            |b, y| q8_0::dequantize(as_blocks(b), y),
            |w, a| q8_0::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q2_K => (
            |b, y| q2_k::dequantize(as_blocks(b), y),
            |w, a| q2_k::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q3_K => (
            |b, y| q3_k::dequantize(as_blocks(b), y),
            |w, a| q3_k::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q4_K => (
            |b, y| q4_k::dequantize(as_blocks(b), y),
            |w, a| q4_k::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q5_K => (
            |b, y| q5_k::dequantize(as_blocks(b), y),
            |w, a| q5_k::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        T::Q6_K => (
            |b, y| q6_k::dequantize(as_blocks(b), y),
            |w, a| q6_k::vec_dot(as_blocks(w), as_blocks(a)),
        ),
        _ => return None,
    };
    Some(RowKernels {
        dequantize,
        dot,
        activation,
        matvec: None,
        gemm: None,
        batch_order: match ty {
            T::Q4_K => Some(BatchOrder {
                dot: |w, a| q4_k::vec_dot_batched(as_blocks(w), as_blocks(a)),
                split: BatchSplit::GroupsOf4,
            }),
            T::Q6_K => Some(BatchOrder {
                dot: |w, a| q6_k::vec_dot_tiled(as_blocks(w), as_blocks(a)),
                split: BatchSplit::Tiled,
            }),
            _ => None,
        },
    })
}

/// Q8_0 / Q8_1 blocks as llama.cpp's CPU backend quantizes activations on x86
/// (ggml-cpu/arch/x86/quants.c `quantize_row_q8_0` / `quantize_row_q8_1`): per block,
/// `d = amax / 127`, the values times `127 / amax` (not `1 / d`) rounded to nearest with
/// ties to even, and for Q8_1 `s = d · Σq` (the f32 `d`). ggml's reference quantizer
/// ([`q8_0::quantize`]: `1 / d`, ties away from zero) writes the weights of files; the
/// CPU backend uses this one for everything it quantizes at run time (activations, a
/// Q8_0 KV cache). The two differ in rare last-quant cases, which on real activations
/// move a matmul's outputs by ~3e-4 relative against llama.cpp (measured on SmolLM2's
/// first layer by the engine), versus ~1e-7 with this one. Every tern path quantizes
/// activations this way, so the paths agree with each other and with the goldens'
/// llama.cpp build. (llama.cpp's Arm build multiplies by `1 / d` and rounds ties to
/// even: a third variant, not reproduced.)
fn quantize_q8_x86(x: &[f32], out: &mut [u8], with_sum: bool) {
    let block_bytes = if with_sum { 36 } else { 34 };
    assert_eq!(
        x.len() / 32 * block_bytes,
        out.len(),
        "q8 activations: length mismatch"
    );
    for (x, b) in x.chunks_exact(32).zip(out.chunks_exact_mut(block_bytes)) {
        let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
        let d = amax / 127.0;
        let id = if amax != 0.0 { 127.0 / amax } else { 0.0 };
        let (head, qs) = b.split_at_mut(block_bytes - 32);
        let mut sum = 0i32;
        for (q, &v) in qs.iter_mut().zip(x) {
            let r = (v * id).round_ties_even() as i8;
            sum += r as i32;
            *q = r as u8;
        }
        head[..2].copy_from_slice(&F16Le::from_f32(d).0);
        if with_sum {
            head[2..4].copy_from_slice(&F16Le::from_f32(d * sum as f32).0);
        }
    }
}

/// The scalar path's Q8_0 activation quantizer (see [`quantize_q8_x86`]).
pub(crate) fn scalar_quantize_q8_0(x: &[f32], out: &mut [u8]) {
    quantize_q8_x86(x, out, false);
}

/// The scalar path's Q8_1 activation quantizer (see [`quantize_q8_x86`]).
pub(crate) fn scalar_quantize_q8_1(x: &[f32], out: &mut [u8]) {
    quantize_q8_x86(x, out, true);
}

/// The scalar path's Q8_K activation quantizer: ggml's reference, which llama.cpp's x86
/// backend also uses.
pub(crate) fn scalar_quantize_q8_k(x: &[f32], out: &mut [u8]) {
    q8_k::quantize(x, as_blocks_mut(out));
}

/// A quantizer from f32 values to the bytes of type `ty`, for the types tern writes:
/// the activation types (Q8_0, Q8_1, Q8_K, F16, BF16, F32) and the weight / KV-cache
/// types Q4_0, Q4_1, Q5_0, Q5_1.
pub(crate) fn quantizer(ty: GgmlType) -> Option<QuantizeFn> {
    use GgmlType as T;
    Some(match ty {
        T::F32 => float::quantize_f32,
        T::F16 => float::quantize_f16,
        T::BF16 => float::quantize_bf16,
        T::Q4_0 => |x, b| q4_0::quantize(x, as_blocks_mut(b)),
        T::Q4_1 => |x, b| q4_1::quantize(x, as_blocks_mut(b)),
        T::Q5_0 => |x, b| q5_0::quantize(x, as_blocks_mut(b)),
        T::Q5_1 => |x, b| q5_1::quantize(x, as_blocks_mut(b)),
        T::Q8_0 => |x, b| q8_0::quantize(x, as_blocks_mut(b)),
        T::Q8_1 => |x, b| q8_1::quantize(x, as_blocks_mut(b)),
        T::Q8_K => |x, b| q8_k::quantize(x, as_blocks_mut(b)),
        _ => return None,
    })
}

/// A dequantizer for every type tern reads or writes, including the activation-only
/// Q8_1 and Q8_K (used by tests and debugging).
fn dequantizer(ty: GgmlType) -> Option<DequantizeFn> {
    match ty {
        GgmlType::Q8_1 => Some(|b, y| q8_1::dequantize(as_blocks(b), y)),
        GgmlType::Q8_K => Some(|b, y| q8_k::dequantize(as_blocks(b), y)),
        _ => scalar_row_kernels(ty).map(|k| k.dequantize),
    }
}

/// Checks that `bytes` is exactly one row of `values` values of type `ty`.
fn check_row(ty: GgmlType, values: usize, bytes: usize) -> Result<(), KernelError> {
    let expected = row_bytes(ty, values)?;
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

/// Decodes one row of type `ty` from `bytes` into `out` (whose length is the number of
/// values).
pub fn dequantize_row(ty: GgmlType, bytes: &[u8], out: &mut [f32]) -> Result<(), KernelError> {
    let f = dequantizer(ty).ok_or(KernelError::UnsupportedType(ty))?;
    check_row(ty, out.len(), bytes.len())?;
    // SAFETY: a scalar function (no target features); lengths checked above.
    unsafe { f(bytes, out) };
    Ok(())
}

/// Encodes `x` as one row of type `ty` into `out` as ggml's reference quantizer for that
/// type does (see the format modules for the exact rounding) — how files store weights.
/// Activations are quantized with [`quantize_activation_row`] instead.
pub fn quantize_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    crate::Kernels::scalar().quantize_row(ty, x, out)
}

/// Encodes `x` as one row of the activation type `ty` (Q8_0, Q8_1, Q8_K, F16, BF16 or
/// F32) as llama.cpp's CPU backend does at run time, with the kernels of this process
/// (see [`crate::Kernels::quantize_activation_row`]).
pub fn quantize_activation_row(ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
    crate::Kernels::current().quantize_activation_row(ty, x, out)
}

/// Dot product of one weight row of type `weight_type` with one activation row of type
/// `vec_dot_type(weight_type)`, both of `values` values, with the kernels of this
/// process.
pub fn vec_dot(
    weight_type: GgmlType,
    weight_row: &[u8],
    activation_row: &[u8],
    values: usize,
) -> Result<f32, KernelError> {
    crate::Kernels::current().vec_dot(weight_type, weight_row, activation_row, values)
}

impl crate::Kernels {
    /// Encodes `x` as one row of type `ty` into `out`, as ggml's reference quantizer for
    /// that type does (see the format modules for the exact rounding). Portable code on
    /// every path: this is how weights are written, not a hot path.
    pub fn quantize_row(&self, ty: GgmlType, x: &[f32], out: &mut [u8]) -> Result<(), KernelError> {
        let f = quantizer(ty).ok_or(KernelError::UnsupportedType(ty))?;
        check_row(ty, x.len(), out.len())?;
        // SAFETY: a scalar function (no target features); lengths checked above.
        unsafe { f(x, out) };
        Ok(())
    }

    /// Encodes `x` as one row of the activation type `ty` as llama.cpp's CPU backend
    /// quantizes activations: Q8_0 / Q8_1 with its x86 rounding (`127 / amax`, ties to
    /// even; see `quantize_q8_x86` in this module's source), Q8_K with ggml's reference
    /// (which that backend calls too), F16 / BF16 / F32 as [`Self::quantize_row`]. Every
    /// path writes the same bytes; the SIMD paths use their own quantizers.
    pub fn quantize_activation_row(
        &self,
        ty: GgmlType,
        x: &[f32],
        out: &mut [u8],
    ) -> Result<(), KernelError> {
        let f = match ty {
            GgmlType::Q8_0
            | GgmlType::Q8_1
            | GgmlType::Q8_K
            | GgmlType::F16
            | GgmlType::BF16
            | GgmlType::F32 => self.quantizer(ty).ok_or(KernelError::UnsupportedType(ty))?,
            _ => return Err(KernelError::UnsupportedType(ty)),
        };
        check_row(ty, x.len(), out.len())?;
        // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
        // features; the row lengths were checked above.
        unsafe { f(x, out) };
        Ok(())
    }

    /// Dot product of one weight row of type `weight_type` with one activation row of
    /// type `vec_dot_type(weight_type)`, both of `values` values.
    pub fn vec_dot(
        &self,
        weight_type: GgmlType,
        weight_row: &[u8],
        activation_row: &[u8],
        values: usize,
    ) -> Result<f32, KernelError> {
        let k = self
            .row_kernels(weight_type)
            .ok_or(KernelError::UnsupportedType(weight_type))?;
        check_row(weight_type, values, weight_row.len())?;
        check_row(k.activation, values, activation_row.len())?;
        // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
        // features; both rows were checked to hold `values` values.
        Ok(unsafe { (k.dot)(weight_row, activation_row) })
    }
}
