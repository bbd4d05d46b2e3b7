//! Elementwise and row-wise ops of a transformer on f32 slices: RMSNorm, softmax, SiLU
//! and GELU (with their gated forms), the F16 dot product and multiply-add of the
//! KV-cache attention, and f32/f16 slice conversion.
//!
//! Each follows the arithmetic of llama.cpp's CPU backend (ggml/src/ggml-cpu/ops.cpp,
//! vec.h, vec.cpp) where it decides results: which sums are in f64, where values pass
//! through f16. The `*_ref` functions here are the portable reference (the scalar path's
//! table, `SCALAR_OPS`); the public functions dispatch to the path of this process
//! ([`Kernels::current`]), whose SIMD versions are in [`crate::arch`]. Each public
//! function says where the SIMD versions compute differently from the reference (a
//! vectorised `expf`, f32 lane sums); the tests name the tolerance.

use std::sync::OnceLock;

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::Kernels;
use crate::arch::OpTable;

/// The scalar path's ops.
pub(crate) static SCALAR_OPS: OpTable = OpTable {
    rms_norm: rms_norm_ref,
    rms_norm_in_place: rms_norm_in_place_ref,
    softmax_in_place: softmax_in_place_ref,
    silu: silu_ref,
    swiglu: swiglu_ref,
    gelu_tanh: gelu_tanh_ref,
    geglu_tanh: geglu_tanh_ref,
    vec_dot_f16: vec_dot_f16_ref,
    vec_dot_f16_ggml: vec_dot_f16_ggml_ref,
    vec_mad_f16: vec_mad_f16_ref,
    vec_scale_f16: vec_scale_f16_ref,
    f32_to_f16: f32_to_f16_ref,
    f16_to_f32: f16_to_f32_ref,
};

/// RMSNorm: `out = x / sqrt(mean(x²) + eps) * weight`, as ggml's
/// `ggml_compute_forward_rms_norm_f32` followed by the weight multiply (llama.cpp fuses
/// them with the same arithmetic): squares summed in f64, mean and scale in f32, then
/// `(x * scale) * weight`. The SIMD paths sum the squares in f64 lanes, so the mean can
/// differ from the reference's in its last bit (in practice it does not: the f64 sum is
/// ~2^29 times more precise than the f32 it is rounded to).
///
/// # Panics
/// If the three slices differ in length.
pub fn rms_norm(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    Kernels::current().rms_norm(x, weight, eps, out);
}

/// [`rms_norm`] in place.
///
/// # Panics
/// If `x` and `weight` differ in length.
pub fn rms_norm_in_place(x: &mut [f32], weight: &[f32], eps: f32) {
    Kernels::current().rms_norm_in_place(x, weight, eps);
}

/// Softmax over the whole slice, in place, as ggml's `soft_max` op: subtract the max,
/// `expf`, sum in f64, multiply by the f32 reciprocal of the sum. The reference uses
/// libm's `expf`; the SIMD paths use llama.cpp's vectorised `ggml_v_expf` (vec.h), as
/// llama.cpp's own SIMD builds do, which is within 2 ulp of it. An empty slice is left
/// alone; a slice of all `-inf` gives NaNs, as in ggml.
pub fn softmax_in_place(x: &mut [f32]) {
    Kernels::current().softmax_in_place(x);
}

/// SiLU of one value: `x / (1 + e^-x)` (ggml's `ggml_silu_f32`).
#[inline]
pub fn silu_f32(x: f32) -> f32 {
    x / (1.0 + (-x).exp())
}

/// `out = silu(x)`. The SIMD paths use `ggml_v_silu` (vec.h: `ggml_v_expf`, then a
/// division), as llama.cpp's SIMD `ggml_vec_silu_f32` does; within 2 ulp of the
/// reference.
///
/// # Panics
/// If the slices differ in length.
pub fn silu(x: &[f32], out: &mut [f32]) {
    Kernels::current().silu(x, out);
}

/// The SwiGLU gate of llama-style FFNs: `out = silu(gate) * up` (ggml's `swiglu`; SIMD
/// as in [`silu`]).
///
/// # Panics
/// If the slices differ in length.
pub fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
    Kernels::current().swiglu(gate, up, out);
}

/// `out = gelu(x)`, tanh approximation, through ggml's f16 table (see
/// `gelu_table_lookup`'s rules) so results equal llama.cpp's bit for bit, on every path.
///
/// # Panics
/// If the slices differ in length.
pub fn gelu_tanh(x: &[f32], out: &mut [f32]) {
    Kernels::current().gelu_tanh(x, out);
}

/// The GeGLU gate of Gemma's FFN: `out = gelu(gate) * up`, as ggml's `ggml_vec_geglu_f32`
/// (table lookup as in [`gelu_tanh`]; `gate >= 10` gives `gate * up`). Exact on every
/// path.
///
/// # Panics
/// If the slices differ in length.
pub fn geglu_tanh(gate: &[f32], up: &[f32], out: &mut [f32]) {
    Kernels::current().geglu_tanh(gate, up, out);
}

/// Dot product of two f16 vectors with ggml's scalar `ggml_vec_dot_f16` semantics: each
/// product in f32, summed in f64, rounded to f32. The SIMD paths sum the f32 products
/// in f64 lanes too, in another order (last-bit differences are possible but rare).
///
/// # Panics
/// If the slices differ in length.
pub fn vec_dot_f16(a: &[f16], b: &[f16]) -> f32 {
    Kernels::current().vec_dot_f16(a, b)
}

/// Dot product of two f16 vectors summed exactly as llama.cpp's AVX-512 build of
/// `ggml_vec_dot_f16` does (vec.cpp with `GGML_F16_STEP` 64, `GGML_F16_EPR` 16): four
/// accumulators of 16 f32 lanes fed by fused multiply-adds over blocks of 64, added as
/// `(a0 + a2) + (a1 + a3)`, the 16 lanes then halved pairwise (`_mm512_reduce_add_ps`),
/// the leftover products (fewer than 64) summed in f64. Every path gives the same bits,
/// so the decode attention matches the reference build whatever this CPU has.
///
/// # Panics
/// If the slices differ in length.
pub fn vec_dot_f16_ggml(a: &[f16], b: &[f16]) -> f32 {
    Kernels::current().vec_dot_f16_ggml(a, b)
}

/// `y[i] = f16(x[i] * v + y[i])` with one fused multiply-add in f32 (ggml's
/// `ggml_vec_mad_f16` with F16C: widen, FMA, round to nearest even). Exact on every path.
///
/// # Panics
/// If the slices differ in length.
pub fn vec_mad_f16(y: &mut [f16], x: &[f16], v: f32) {
    Kernels::current().vec_mad_f16(y, x, v);
}

/// `y[i] = f16(y[i] * v)` (ggml's `ggml_vec_scale_f16`). Exact on every path.
pub fn vec_scale_f16(y: &mut [f16], v: f32) {
    Kernels::current().vec_scale_f16(y, v);
}

/// Converts f32 to f16, rounding to nearest even (F16C on the SIMD paths). Exact.
///
/// # Panics
/// If the slices differ in length.
pub fn f32_to_f16_slice(src: &[f32], dst: &mut [f16]) {
    Kernels::current().f32_to_f16_slice(src, dst);
}

/// Converts f16 to f32 (exact).
///
/// # Panics
/// If the slices differ in length.
pub fn f16_to_f32_slice(src: &[f16], dst: &mut [f32]) {
    Kernels::current().f16_to_f32_slice(src, dst);
}

impl Kernels {
    /// [`rms_norm`] with these kernels.
    ///
    /// # Panics
    /// If the three slices differ in length.
    pub fn rms_norm(&self, x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
        assert_eq!(x.len(), weight.len(), "rms_norm: weight length");
        assert_eq!(x.len(), out.len(), "rms_norm: output length");
        // SAFETY: `self` holds a table that `arch::table` checked against this CPU's
        // features; the lengths were checked above.
        unsafe { (self.table.ops.rms_norm)(x, weight, eps, out) }
    }

    /// [`rms_norm_in_place`] with these kernels.
    ///
    /// # Panics
    /// If `x` and `weight` differ in length.
    pub fn rms_norm_in_place(&self, x: &mut [f32], weight: &[f32], eps: f32) {
        assert_eq!(x.len(), weight.len(), "rms_norm: weight length");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.rms_norm_in_place)(x, weight, eps) }
    }

    /// [`softmax_in_place`] with these kernels.
    pub fn softmax_in_place(&self, x: &mut [f32]) {
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.softmax_in_place)(x) }
    }

    /// [`silu`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn silu(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "silu: output length");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.silu)(x, out) }
    }

    /// [`swiglu`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn swiglu(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        assert_eq!(gate.len(), up.len(), "swiglu: up length");
        assert_eq!(gate.len(), out.len(), "swiglu: output length");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.swiglu)(gate, up, out) }
    }

    /// [`gelu_tanh`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn gelu_tanh(&self, x: &[f32], out: &mut [f32]) {
        assert_eq!(x.len(), out.len(), "gelu: output length");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.gelu_tanh)(x, out) }
    }

    /// [`geglu_tanh`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn geglu_tanh(&self, gate: &[f32], up: &[f32], out: &mut [f32]) {
        assert_eq!(gate.len(), up.len(), "geglu: up length");
        assert_eq!(gate.len(), out.len(), "geglu: output length");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.geglu_tanh)(gate, up, out) }
    }

    /// [`vec_dot_f16`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn vec_dot_f16(&self, a: &[f16], b: &[f16]) -> f32 {
        assert_eq!(a.len(), b.len(), "vec_dot_f16: length mismatch");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.vec_dot_f16)(a, b) }
    }

    /// [`vec_dot_f16_ggml`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn vec_dot_f16_ggml(&self, a: &[f16], b: &[f16]) -> f32 {
        assert_eq!(a.len(), b.len(), "vec_dot_f16_ggml: length mismatch");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.vec_dot_f16_ggml)(a, b) }
    }

    /// [`vec_mad_f16`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn vec_mad_f16(&self, y: &mut [f16], x: &[f16], v: f32) {
        assert_eq!(y.len(), x.len(), "vec_mad_f16: length mismatch");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.vec_mad_f16)(y, x, v) }
    }

    /// [`vec_scale_f16`] with these kernels.
    pub fn vec_scale_f16(&self, y: &mut [f16], v: f32) {
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.vec_scale_f16)(y, v) }
    }

    /// [`f32_to_f16_slice`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn f32_to_f16_slice(&self, src: &[f32], dst: &mut [f16]) {
        assert_eq!(src.len(), dst.len(), "f32_to_f16_slice: length mismatch");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.f32_to_f16)(src, dst) }
    }

    /// [`f16_to_f32_slice`] with these kernels.
    ///
    /// # Panics
    /// If the slices differ in length.
    pub fn f16_to_f32_slice(&self, src: &[f16], dst: &mut [f32]) {
        assert_eq!(src.len(), dst.len(), "f16_to_f32_slice: length mismatch");
        // SAFETY: as in `rms_norm`.
        unsafe { (self.table.ops.f16_to_f32)(src, dst) }
    }
}

// ---- The portable reference ------------------------------------------------------

pub(crate) fn rms_norm_ref(x: &[f32], weight: &[f32], eps: f32, out: &mut [f32]) {
    let scale = rms_scale(x, eps);
    for ((y, &v), &w) in out.iter_mut().zip(x).zip(weight) {
        *y = v * scale * w;
    }
}

pub(crate) fn rms_norm_in_place_ref(x: &mut [f32], weight: &[f32], eps: f32) {
    let scale = rms_scale(x, eps);
    for (v, &w) in x.iter_mut().zip(weight) {
        *v = *v * scale * w;
    }
}

/// `1 / sqrt(mean + eps)` from the f64 sum of squares, as ggml computes it.
#[inline]
pub(crate) fn rms_scale_from_sum(sum: f64, n: usize, eps: f32) -> f32 {
    let mean = (sum / n.max(1) as f64) as f32;
    1.0 / (mean + eps).sqrt()
}

fn rms_scale(x: &[f32], eps: f32) -> f32 {
    let mut sum = 0.0f64;
    for &v in x {
        sum += (v * v) as f64;
    }
    rms_scale_from_sum(sum, x.len(), eps)
}

pub(crate) fn softmax_in_place_ref(x: &mut [f32]) {
    if x.is_empty() {
        return;
    }
    let max = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let mut sum = 0.0f64;
    for v in x.iter_mut() {
        *v = (*v - max).exp();
        sum += *v as f64;
    }
    let inv = (1.0 / sum) as f32;
    for v in x.iter_mut() {
        *v *= inv;
    }
}

pub(crate) fn silu_ref(x: &[f32], out: &mut [f32]) {
    for (y, &v) in out.iter_mut().zip(x) {
        *y = silu_f32(v);
    }
}

pub(crate) fn swiglu_ref(gate: &[f32], up: &[f32], out: &mut [f32]) {
    for ((y, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *y = silu_f32(g) * u;
    }
}

const GELU_COEF_A: f32 = 0.044715;
// ggml's `SQRT_2_OVER_PI`, written with the same digits so it rounds to the same f32.
#[allow(clippy::excessive_precision)]
const SQRT_2_OVER_PI: f32 = 0.797_884_560_802_865_355_879_892_119_868_76;

/// GELU, tanh approximation, computed directly in f32 (ggml's `ggml_gelu_f32`). This
/// is *not* what llama.cpp's CPU backend returns for f32 tensors: see [`gelu_tanh`].
///
/// The inner `1 + A·x·x` is one fused multiply-add, `(A·x)·x + 1`, as GCC compiles
/// ggml's expression in the reference build (`ggml_cpu_init`'s table loop:
/// `vmulss`, `vfmadd213ss`, `vmulss`, `tanhf`, `vaddss`, `vmulss`); with a separate
/// product and sum, 8 of Gemma 3's first-layer GELU outputs per 21 tokens differed by
/// one f16 step of the table.
#[inline]
pub fn gelu_tanh_f32(x: f32) -> f32 {
    let inner = (GELU_COEF_A * x).mul_add(x, 1.0);
    (0.5 * x) * (1.0 + (SQRT_2_OVER_PI * x * inner).tanh())
}

/// ggml's `ggml_table_gelu_f16`: GELU of every f16 value, rounded to f16. Built on first
/// use (65,536 evaluations, 128 KiB), as ggml builds it in `ggml_cpu_init`. One zero
/// entry of padding follows, so the SIMD lookups can gather 4 bytes at any index.
pub(crate) fn gelu_table() -> &'static [u16] {
    static TABLE: OnceLock<Vec<u16>> = OnceLock::new();
    TABLE.get_or_init(|| {
        (0..=u16::MAX)
            .map(|bits| f16::from_f32(gelu_tanh_f32(f16::from_bits(bits).to_f32())).to_bits())
            .chain([0])
            .collect()
    })
}

/// GELU (tanh approximation) of one value the way llama.cpp's CPU backend computes it
/// for f32 tensors: ggml-cpu/vec.h defines `GGML_GELU_FP16`, so `ggml_vec_gelu_f32`
/// rounds `x` to f16, looks the result up in an f16 table, and returns it as f32 —
/// except for `x <= -10` (0) and `x >= 10` (x).
#[inline]
pub(crate) fn gelu_table_lookup(table: &[u16], x: f32) -> f32 {
    if x <= -10.0 {
        0.0
    } else if x >= 10.0 {
        x
    } else {
        f16::from_bits(table[f16::from_f32(x).to_bits() as usize]).to_f32()
    }
}

pub(crate) fn gelu_tanh_ref(x: &[f32], out: &mut [f32]) {
    let table = gelu_table();
    for (y, &v) in out.iter_mut().zip(x) {
        *y = gelu_table_lookup(table, v);
    }
}

pub(crate) fn geglu_tanh_ref(gate: &[f32], up: &[f32], out: &mut [f32]) {
    let table = gelu_table();
    for ((y, &g), &u) in out.iter_mut().zip(gate).zip(up) {
        *y = gelu_table_lookup(table, g) * u;
    }
}

pub(crate) fn vec_dot_f16_ref(a: &[f16], b: &[f16]) -> f32 {
    // Converted 64 at a time with half's slice conversion (F16C where available).
    let mut af = [0.0f32; 64];
    let mut bf = [0.0f32; 64];
    let mut sum = 0.0f64;
    for (ac, bc) in a.chunks(64).zip(b.chunks(64)) {
        let (af, bf) = (&mut af[..ac.len()], &mut bf[..bc.len()]);
        ac.convert_to_f32_slice(af);
        bc.convert_to_f32_slice(bf);
        for (&x, &y) in af.iter().zip(bf.iter()) {
            sum += (x * y) as f64;
        }
    }
    sum as f32
}

/// Lanes and block length of [`vec_dot_f16_ggml`].
pub(crate) const GGML_F16_LANES: usize = 16;
pub(crate) const GGML_F16_STEP: usize = 4 * GGML_F16_LANES;

pub(crate) fn vec_dot_f16_ggml_ref(a: &[f16], b: &[f16]) -> f32 {
    let whole = a.len() / GGML_F16_STEP * GGML_F16_STEP;
    let mut acc = [[0.0f32; GGML_F16_LANES]; 4];
    let mut af = [0.0f32; GGML_F16_STEP];
    let mut bf = [0.0f32; GGML_F16_STEP];
    for (ac, bc) in a[..whole]
        .chunks_exact(GGML_F16_STEP)
        .zip(b[..whole].chunks_exact(GGML_F16_STEP))
    {
        ac.convert_to_f32_slice(&mut af);
        bc.convert_to_f32_slice(&mut bf);
        for (j, acc) in acc.iter_mut().enumerate() {
            for (l, s) in acc.iter_mut().enumerate() {
                let i = j * GGML_F16_LANES + l;
                *s = af[i].mul_add(bf[i], *s);
            }
        }
    }
    let mut lanes = [0.0f32; GGML_F16_LANES];
    for (l, v) in lanes.iter_mut().enumerate() {
        *v = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
    }
    let mut width = GGML_F16_LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            lanes[l] += lanes[l + width];
        }
    }
    let mut sum = lanes[0] as f64;
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum += (x.to_f32() * y.to_f32()) as f64;
    }
    sum as f32
}

pub(crate) fn vec_mad_f16_ref(y: &mut [f16], x: &[f16], v: f32) {
    for (y, x) in y.iter_mut().zip(x) {
        *y = f16::from_f32(x.to_f32().mul_add(v, y.to_f32()));
    }
}

pub(crate) fn vec_scale_f16_ref(y: &mut [f16], v: f32) {
    for y in y.iter_mut() {
        *y = f16::from_f32(y.to_f32() * v);
    }
}

pub(crate) fn f32_to_f16_ref(src: &[f32], dst: &mut [f16]) {
    dst.convert_from_f32_slice(src);
}

pub(crate) fn f16_to_f32_ref(src: &[f16], dst: &mut [f32]) {
    src.convert_to_f32_slice(dst);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic values in [-scale, scale] (xorshift; no test dependency needed).
    fn values(n: usize, seed: u64, scale: f32) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32 * scale
            })
            .collect()
    }

    fn assert_close(got: &[f32], want: &[f64], rel: f64, abs: f64, what: &str) {
        assert_eq!(got.len(), want.len());
        for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
            let err = (g as f64 - w).abs();
            assert!(
                err <= abs + rel * w.abs(),
                "{what}[{i}]: got {g}, f64 reference {w}, error {err:.3e}"
            );
        }
    }

    #[test]
    fn rms_norm_matches_f64() {
        // The last case has values so small that eps dominates the mean square.
        for (n, seed, scale, eps) in [
            (1, 1, 3.0, 1e-6f32),
            (7, 2, 3.0, 1e-6),
            (576, 3, 3.0, 1e-5),
            (2048, 4, 3.0, 1e-6),
            (640, 5, 1e-3, 1e-5),
        ] {
            let x = values(n, seed, scale);
            let w = values(n, seed + 100, 1.5);
            let mean: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
            let scale = 1.0 / (mean + eps as f64).sqrt();
            let want: Vec<f64> = x
                .iter()
                .zip(&w)
                .map(|(&v, &w)| v as f64 * scale * w as f64)
                .collect();
            let mut out = vec![0.0; n];
            rms_norm(&x, &w, eps, &mut out);
            assert_close(&out, &want, 1e-6, 1e-30, "rms_norm");
            let mut in_place = x.clone();
            rms_norm_in_place(&mut in_place, &w, eps);
            assert_eq!(in_place, out, "in-place and out-of-place differ");
        }
        // eps dominates an all-zero row: the output is zero, not NaN.
        let mut out = [1.0f32; 4];
        rms_norm(&[0.0; 4], &[1.0; 4], 1e-5, &mut out);
        assert_eq!(out, [0.0; 4]);
    }

    #[test]
    fn softmax_matches_f64() {
        for (n, seed, scale) in [(1, 1, 1.0), (5, 2, 3.0), (1000, 3, 20.0), (49_152, 4, 8.0)] {
            let mut x = values(n, seed, scale);
            // Large logits must not overflow: softmax subtracts the max.
            x[0] += 1000.0;
            let max = x.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
            let exps: Vec<f64> = x.iter().map(|&v| (v as f64 - max).exp()).collect();
            let sum: f64 = exps.iter().sum();
            let want: Vec<f64> = exps.iter().map(|e| e / sum).collect();
            softmax_in_place(&mut x);
            assert_close(&x, &want, 1e-6, 1e-30, "softmax");
            let total: f64 = x.iter().map(|&v| v as f64).sum();
            assert!((total - 1.0).abs() < 1e-5, "sum {total}");
        }
        let mut masked = [0.5, f32::NEG_INFINITY, 0.5];
        softmax_in_place(&mut masked);
        assert_eq!(masked, [0.5, 0.0, 0.5]);
    }

    #[test]
    fn silu_and_swiglu_match_f64() {
        let mut x = values(4000, 7, 12.0);
        x.extend([0.0, -0.0, 80.0, -80.0, -1000.0, 1000.0]);
        let up = values(x.len(), 8, 2.0);
        let silu64: Vec<f64> = x
            .iter()
            .map(|&v| v as f64 / (1.0 + (-v as f64).exp()))
            .collect();
        let mut out = vec![0.0; x.len()];
        silu(&x, &mut out);
        assert_close(&out, &silu64, 1e-6, 1e-37, "silu");
        let want: Vec<f64> = silu64.iter().zip(&up).map(|(s, &u)| s * u as f64).collect();
        swiglu(&x, &up, &mut out);
        assert_close(&out, &want, 2e-6, 1e-37, "swiglu");
    }

    fn gelu64(x: f64) -> f64 {
        let c = (2.0 / std::f64::consts::PI).sqrt();
        0.5 * x * (1.0 + (c * x * (1.0 + 0.044715 * x * x)).tanh())
    }

    #[test]
    fn gelu_matches_f64_through_f16_rounding() {
        let mut x = values(20_000, 9, 12.0);
        x.extend([0.0, 1.0, -1.0, 9.999, 10.0, -10.0, 37.5, -37.5]);
        let mut out = vec![0.0; x.len()];
        gelu_tanh(&x, &mut out);
        for (&v, &y) in x.iter().zip(&out) {
            if v >= 10.0 {
                assert_eq!(y, v);
            } else if v <= -10.0 {
                assert_eq!(y, 0.0);
            } else {
                // Input and output both pass through f16 (relative 2^-11 each); the
                // input rounding moves the result by at most |gelu'| <= 1.13 times it.
                let want = gelu64(v as f64);
                let tol = 2f64.powi(-11) * (1.13 * v.abs() as f64 + want.abs()) + 1e-7;
                assert!(
                    (y as f64 - want).abs() <= tol,
                    "gelu({v}) = {y}, f64 {want}"
                );
            }
        }
        // The table value for 1.0: gelu(1) = 0.841192 rounds to f16 0.84130859375.
        let mut one = [0.0];
        gelu_tanh(&[1.0], &mut one);
        assert_eq!(one[0], 0.841_308_6);
        // The f32 formula is the unrounded one.
        assert!((gelu_tanh_f32(1.0) as f64 - gelu64(1.0)).abs() < 1e-6);

        let up = values(x.len(), 10, 2.0);
        let mut gated = vec![0.0; x.len()];
        geglu_tanh(&x, &up, &mut gated);
        for i in 0..x.len() {
            assert_eq!(gated[i], out[i] * up[i], "geglu at {}", x[i]);
        }
    }

    #[test]
    fn f16_dot_and_conversions() {
        let a32 = values(1000, 11, 4.0);
        let b32 = values(1000, 12, 4.0);
        let mut a = vec![f16::ZERO; a32.len()];
        let mut b = vec![f16::ZERO; b32.len()];
        f32_to_f16_slice(&a32, &mut a);
        f32_to_f16_slice(&b32, &mut b);
        for (h, &v) in a.iter().zip(&a32) {
            assert_eq!(
                *h,
                f16::from_f32(v),
                "slice conversion rounds like f16::from_f32"
            );
        }
        let mut back = vec![0.0; a.len()];
        f16_to_f32_slice(&a, &mut back);
        for (&r, &v) in back.iter().zip(&a32) {
            assert!((r - v).abs() <= v.abs() * 2f32.powi(-11) + 1e-7);
        }
        let exact: f64 = a.iter().zip(&b).map(|(x, y)| x.to_f64() * y.to_f64()).sum();
        let magnitude: f64 = a
            .iter()
            .zip(&b)
            .map(|(x, y)| (x.to_f64() * y.to_f64()).abs())
            .sum();
        let got = vec_dot_f16(&a, &b) as f64;
        // f16 products are exact in f64; the f32 products round once, the f64 sum
        // barely, the result once more.
        assert!(
            (got - exact).abs() <= 2f64.powi(-24) * (magnitude + exact.abs()),
            "{got} vs {exact}"
        );
        assert_eq!(vec_dot_f16(&[], &[]), 0.0);
    }
}
