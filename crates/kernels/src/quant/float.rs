//! The unquantized weight types F32, F16 and BF16, read from little-endian bytes (a
//! tensor row in the mmap is not necessarily aligned for `f32`/`u16` loads, so values are
//! assembled from bytes rather than read through a cast slice).
//!
//! Dot products follow ggml's scalar `ggml_vec_dot_f32/_f16/_bf16`
//! (ggml/src/ggml-cpu/vec.cpp): each product in f32, summed in f64 (`ggml_float`),
//! rounded to f32 at the end. llama.cpp's SIMD versions sum in f32 across 16–64 lanes
//! (and with AVX512-BF16 compute BF16 products with `vdpbf16ps`), so they differ in the
//! last bits. The activation side has the weight's own type: ggml converts activations
//! to F16 (round to nearest even) for F16 weights and to BF16 for BF16 weights.

use half::f16;
use half::slice::HalfFloatSliceExt;

/// Values converted per step by the f16 paths: half's slice conversion uses F16C where
/// the CPU has it, element-wise `to_f32` pays a feature check per value.
const F16_CHUNK: usize = 64;

/// Decodes up to [`F16_CHUNK`] little-endian f16 values from `bytes` into `out`.
#[inline]
fn decode_f16_chunk(bytes: &[u8], out: &mut [f32]) {
    let mut halves = [f16::ZERO; F16_CHUNK];
    let halves = &mut halves[..out.len()];
    for (h, b) in halves.iter_mut().zip(bytes.chunks_exact(2)) {
        *h = f16::from_bits(u16::from_le_bytes([b[0], b[1]]));
    }
    halves.convert_to_f32_slice(out);
}

#[inline]
fn f32_at(bytes: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([
        bytes[4 * i],
        bytes[4 * i + 1],
        bytes[4 * i + 2],
        bytes[4 * i + 3],
    ])
}

#[inline]
fn u16_at(bytes: &[u8], i: usize) -> u16 {
    u16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]])
}

/// BF16 bits to f32 (exact).
#[inline]
pub fn bf16_to_f32(bits: u16) -> f32 {
    f32::from_bits((bits as u32) << 16)
}

/// f32 to BF16 bits as ggml's `ggml_compute_fp32_to_bf16` does it: round to nearest
/// even, NaNs kept NaN with the quiet bit forced.
#[inline]
pub fn f32_to_bf16(value: f32) -> u16 {
    let u = value.to_bits();
    if u & 0x7fff_ffff > 0x7f80_0000 {
        return ((u >> 16) | 64) as u16;
    }
    ((u as u64 + (0x7fff + ((u >> 16) & 1)) as u64) >> 16) as u16
}

/// Decodes little-endian f32 bytes.
pub fn dequantize_f32(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len(), out.len() * 4, "f32 row: length mismatch");
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *y = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
    }
}

/// Decodes little-endian f16 bytes.
pub fn dequantize_f16(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len(), out.len() * 2, "f16 row: length mismatch");
    for (y, b) in out.chunks_mut(F16_CHUNK).zip(bytes.chunks(2 * F16_CHUNK)) {
        decode_f16_chunk(b, y);
    }
}

/// Decodes little-endian bf16 bytes.
pub fn dequantize_bf16(bytes: &[u8], out: &mut [f32]) {
    assert_eq!(bytes.len(), out.len() * 2, "bf16 row: length mismatch");
    for (y, b) in out.iter_mut().zip(bytes.chunks_exact(2)) {
        *y = bf16_to_f32(u16::from_le_bytes([b[0], b[1]]));
    }
}

/// Encodes `x` as little-endian f16 bytes (round to nearest even).
pub fn quantize_f16(x: &[f32], out: &mut [u8]) {
    assert_eq!(out.len(), x.len() * 2, "f16 row: length mismatch");
    for (b, &v) in out.chunks_exact_mut(2).zip(x) {
        b.copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
    }
}

/// Encodes `x` as little-endian bf16 bytes (ggml's rounding, see [`f32_to_bf16`]).
pub fn quantize_bf16(x: &[f32], out: &mut [u8]) {
    assert_eq!(out.len(), x.len() * 2, "bf16 row: length mismatch");
    for (b, &v) in out.chunks_exact_mut(2).zip(x) {
        b.copy_from_slice(&f32_to_bf16(v).to_le_bytes());
    }
}

/// Encodes `x` as little-endian f32 bytes.
pub fn quantize_f32(x: &[f32], out: &mut [u8]) {
    assert_eq!(out.len(), x.len() * 4, "f32 row: length mismatch");
    for (b, &v) in out.chunks_exact_mut(4).zip(x) {
        b.copy_from_slice(&v.to_le_bytes());
    }
}

/// Dot product of two little-endian f32 rows of `n` values.
pub fn vec_dot_f32(w: &[u8], a: &[u8], n: usize) -> f32 {
    assert!(
        w.len() == 4 * n && a.len() == 4 * n,
        "f32 vec_dot: length mismatch"
    );
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (f32_at(w, i) * f32_at(a, i)) as f64;
    }
    sum as f32
}

/// Dot product of two little-endian f16 rows of `n` values.
pub fn vec_dot_f16(w: &[u8], a: &[u8], n: usize) -> f32 {
    assert!(
        w.len() == 2 * n && a.len() == 2 * n,
        "f16 vec_dot: length mismatch"
    );
    let mut sum = 0.0f64;
    let mut wf = [0.0f32; F16_CHUNK];
    let mut af = [0.0f32; F16_CHUNK];
    for (wc, ac) in w.chunks(2 * F16_CHUNK).zip(a.chunks(2 * F16_CHUNK)) {
        let m = wc.len() / 2;
        decode_f16_chunk(wc, &mut wf[..m]);
        decode_f16_chunk(ac, &mut af[..m]);
        for (&x, &y) in wf[..m].iter().zip(&af[..m]) {
            sum += (x * y) as f64;
        }
    }
    sum as f32
}

/// Dot product of two little-endian bf16 rows of `n` values.
pub fn vec_dot_bf16(w: &[u8], a: &[u8], n: usize) -> f32 {
    assert!(
        w.len() == 2 * n && a.len() == 2 * n,
        "bf16 vec_dot: length mismatch"
    );
    let mut sum = 0.0f64;
    for i in 0..n {
        sum += (bf16_to_f32(u16_at(w, i)) * bf16_to_f32(u16_at(a, i))) as f64;
    }
    sum as f32
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bf16_rounding_matches_ggml() {
        // Exactly halfway between two bf16 values: ties to even.
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8000)), 0x3f80);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f81_8000)), 0x3f82);
        assert_eq!(f32_to_bf16(f32::from_bits(0x3f80_8001)), 0x3f81);
        // A signalling NaN stays NaN and gets the quiet bit.
        assert_eq!(f32_to_bf16(f32::from_bits(0x7f80_0001)), 0x7fc0);
        assert_eq!(f32_to_bf16(f32::INFINITY), 0x7f80);
        assert_eq!(bf16_to_f32(0xc040), -3.0);
    }
}
