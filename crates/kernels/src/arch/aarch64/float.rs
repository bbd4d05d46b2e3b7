//! Dot products of the unquantized types F32 and F16 on NEON registers: the row
//! kernels of F32/F16 weight matrices and the f16 dot products of the KV-cache
//! attention.
//!
//! The scalar reference (ggml's scalar `ggml_vec_dot_f32/_f16`, vec.cpp) forms each
//! product in f32 and sums the products in f64 (`ggml_float`). These kernels form the
//! same f32 products (an f16 × f16 product is exact in f32) and sum them in f64 lanes,
//! four accumulators of two lanes; only the order of the f64 additions differs, which
//! changes the f32 result in rare last-bit cases.
//!
//! [`dot_f16_ggml`] instead reproduces, bit for bit, the summation order of llama.cpp's
//! AVX-512 `ggml_vec_dot_f16` that the reference `vec_dot_f16_ggml_ref`
//! (crate::ops) documents, so that the decode attention gives the same bits on every
//! path.

use std::arch::aarch64::*;

use super::simd::{f16x4_high_to_f32, f16x4_to_f32, load_f16_bytes, load_f32_bytes};

/// The four f64x2 accumulators of f32 products.
type Acc64 = [float64x2_t; 4];

/// Adds the f32 products `p0` and `p1` (eight values) to the accumulators.
#[inline(always)]
unsafe fn accumulate(acc: &mut Acc64, p0: float32x4_t, p1: float32x4_t) {
    // SAFETY: register operations only.
    unsafe {
        acc[0] = vaddq_f64(acc[0], vcvt_f64_f32(vget_low_f32(p0)));
        acc[1] = vaddq_f64(acc[1], vcvt_high_f64_f32(p0));
        acc[2] = vaddq_f64(acc[2], vcvt_f64_f32(vget_low_f32(p1)));
        acc[3] = vaddq_f64(acc[3], vcvt_high_f64_f32(p1));
    }
}

/// The total of the accumulators.
#[inline(always)]
unsafe fn total(acc: &Acc64) -> f64 {
    // SAFETY: register operations only.
    unsafe {
        vaddvq_f64(vaddq_f64(
            vaddq_f64(acc[0], acc[1]),
            vaddq_f64(acc[2], acc[3]),
        ))
    }
}

/// Dot product of two little-endian f32 rows given as bytes (any alignment).
///
/// # Panics
/// If the rows differ in length or are not whole f32 values.
#[inline(always)]
pub(crate) unsafe fn dot_f32_bytes(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(4),
        "f32 dot: length mismatch"
    );
    let n = w.len() / 4;
    let whole = n / 8 * 8;
    // SAFETY: every load reads 16 bytes at byte offset `4 * i` with `i + 4 <= whole <= n`
    // values, inside both rows; register operations otherwise.
    let mut sum = unsafe {
        let mut acc: Acc64 = [vdupq_n_f64(0.0); 4];
        for i in (0..whole).step_by(8) {
            let (wp, ap) = (w.as_ptr().add(4 * i), a.as_ptr().add(4 * i));
            let p0 = vmulq_f32(load_f32_bytes(wp), load_f32_bytes(ap));
            let p1 = vmulq_f32(load_f32_bytes(wp.add(16)), load_f32_bytes(ap.add(16)));
            accumulate(&mut acc, p0, p1);
        }
        total(&acc)
    };
    for (x, y) in w[4 * whole..]
        .chunks_exact(4)
        .zip(a[4 * whole..].chunks_exact(4))
    {
        let x = f32::from_le_bytes([x[0], x[1], x[2], x[3]]);
        let y = f32::from_le_bytes([y[0], y[1], y[2], y[3]]);
        sum += (x * y) as f64;
    }
    sum as f32
}

/// Dot product of two little-endian f16 rows given as bytes (any alignment).
///
/// # Panics
/// If the rows differ in length or are not whole f16 values.
#[inline(always)]
pub(crate) unsafe fn dot_f16_bytes(w: &[u8], a: &[u8]) -> f32 {
    assert!(
        w.len() == a.len() && w.len().is_multiple_of(2),
        "f16 dot: length mismatch"
    );
    let n = w.len() / 2;
    let whole = n / 8 * 8;
    // SAFETY: every load reads 16 bytes at byte offset `2 * i` with `i + 8 <= whole <= n`
    // values, inside both rows; register operations otherwise.
    let mut sum = unsafe {
        let mut acc: Acc64 = [vdupq_n_f64(0.0); 4];
        for i in (0..whole).step_by(8) {
            let wh = load_f16_bytes(w.as_ptr().add(2 * i));
            let ah = load_f16_bytes(a.as_ptr().add(2 * i));
            let p0 = vmulq_f32(
                f16x4_to_f32(vget_low_u16(wh)),
                f16x4_to_f32(vget_low_u16(ah)),
            );
            let p1 = vmulq_f32(f16x4_high_to_f32(wh), f16x4_high_to_f32(ah));
            accumulate(&mut acc, p0, p1);
        }
        total(&acc)
    };
    for (x, y) in w[2 * whole..]
        .chunks_exact(2)
        .zip(a[2 * whole..].chunks_exact(2))
    {
        let x = half::f16::from_bits(u16::from_le_bytes([x[0], x[1]])).to_f32();
        let y = half::f16::from_bits(u16::from_le_bytes([y[0], y[1]])).to_f32();
        sum += (x * y) as f64;
    }
    sum as f32
}

/// The bytes of an f16 slice (little-endian on aarch64 Linux).
#[inline(always)]
pub(crate) fn f16_bytes(x: &[half::f16]) -> &[u8] {
    // SAFETY: `f16` is a 2-byte plain value (`repr(transparent)` over `u16`) with no
    // padding, so its slice is `2 * len` initialised bytes; `u8` has alignment 1; the
    // result borrows `x`.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), 2 * x.len()) }
}

/// Lanes and block length of llama.cpp's AVX-512 `ggml_vec_dot_f16`
/// (`GGML_F16_EPR` = 16, `GGML_F16_STEP` = 64), as `crate::ops` defines them.
const LANES: usize = crate::ops::GGML_F16_LANES;
const STEP: usize = crate::ops::GGML_F16_STEP;

/// [`crate::ops::vec_dot_f16_ggml`]: four accumulators of 16 f32 lanes (here four
/// registers each) fed by fused multiply-adds over blocks of 64, added as
/// `(a0 + a2) + (a1 + a3)`, the 16 lanes halved pairwise, the leftover products summed
/// in f64 — the exact operations, in the exact order, of the reference.
///
/// # Panics
/// If the slices differ in length.
#[inline(always)]
pub(crate) unsafe fn dot_f16_ggml(a: &[half::f16], b: &[half::f16]) -> f32 {
    assert_eq!(a.len(), b.len(), "vec_dot_f16_ggml: length mismatch");
    const _: () = assert!(LANES == 16 && STEP == 64);
    let whole = a.len() / STEP * STEP;
    let (ab, bb) = (f16_bytes(a), f16_bytes(b));
    // SAFETY: every load reads 16 bytes at byte offset `2 * i` with `i + 8 <= whole`,
    // inside both slices; register operations otherwise.
    let lanes = unsafe {
        let mut acc = [[vdupq_n_f32(0.0); 4]; 4];
        for base in (0..whole).step_by(STEP) {
            for (j, acc) in acc.iter_mut().enumerate() {
                for half in 0..2 {
                    let i = base + j * LANES + 8 * half;
                    let x = load_f16_bytes(ab.as_ptr().add(2 * i));
                    let y = load_f16_bytes(bb.as_ptr().add(2 * i));
                    let (k0, k1) = (2 * half, 2 * half + 1);
                    acc[k0] = vfmaq_f32(
                        acc[k0],
                        f16x4_to_f32(vget_low_u16(x)),
                        f16x4_to_f32(vget_low_u16(y)),
                    );
                    acc[k1] = vfmaq_f32(acc[k1], f16x4_high_to_f32(x), f16x4_high_to_f32(y));
                }
            }
        }
        // (a0 + a2) + (a1 + a3), per group of four lanes.
        let l: [float32x4_t; 4] = std::array::from_fn(|k| {
            vaddq_f32(
                vaddq_f32(acc[0][k], acc[2][k]),
                vaddq_f32(acc[1][k], acc[3][k]),
            )
        });
        // Halving 16 → 8 → 4 lanes, then 4 → 2 → 1 in the last register.
        let l8 = [vaddq_f32(l[0], l[2]), vaddq_f32(l[1], l[3])];
        let v = vaddq_f32(l8[0], l8[1]);
        let (v0, v1, v2, v3) = (
            vgetq_lane_f32::<0>(v),
            vgetq_lane_f32::<1>(v),
            vgetq_lane_f32::<2>(v),
            vgetq_lane_f32::<3>(v),
        );
        (v0 + v2) + (v1 + v3)
    };
    let mut sum = lanes as f64;
    for (x, y) in a[whole..].iter().zip(&b[whole..]) {
        sum += (x.to_f32() * y.to_f32()) as f64;
    }
    sum as f32
}
