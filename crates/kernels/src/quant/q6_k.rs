//! Q6_K: 256 values per super-block in 16 groups of 16, `d * sc * (q - 32)` with a
//! 6-bit q (4 low bits in `ql`, 2 high in `qh`) and signed 8-bit scales. Used for output
//! and some FFN matrices of "Q4_K_M" files. Dequantize and dot product only. Follows
//! ggml's `dequantize_row_q6_K` (ggml/src/ggml-quants.c) and
//! `ggml_vec_dot_q6_K_q8_K_generic` (ggml/src/ggml-cpu/quants.c).
//!
//! llama.cpp's x86 backend has two orders for a Q6_K matmul, by the number of tokens
//! (activation rows) it multiplies: fewer than 8 go through `ggml_vec_dot_q6_K_q8_K`
//! token by token ([`vec_dot`]); 8 or more through its tiled K-quant matmul
//! (ggml-cpu/tiled/, [`vec_dot_tiled`]), which sums each super-block to one integer
//! first. Both give the same exact integers; only the f32 steps differ.

use super::order;
use crate::blocks::{BlockQ6K, BlockQ8K, QK_K};

/// The 256 signed quants (-32..32) of a block in value order. Each half of 128 values
/// reads 64 `ql` bytes and 32 `qh` bytes: value `l + 32 * k` (k = 0..4) takes the low or
/// high nibble of `ql[l]` / `ql[l + 32]` and bits `2k..2k+2` of `qh[l]`.
#[inline]
fn unpack(block: &BlockQ6K) -> [i8; QK_K] {
    let mut out = [0i8; QK_K];
    for half in 0..QK_K / 128 {
        let ql = &block.ql[64 * half..64 * (half + 1)];
        let qh = &block.qh[32 * half..32 * (half + 1)];
        let y = &mut out[128 * half..128 * (half + 1)];
        for l in 0..32 {
            y[l] = ((ql[l] & 0xF) | ((qh[l] & 3) << 4)) as i8 - 32;
            y[l + 32] = ((ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4)) as i8 - 32;
            y[l + 64] = ((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) as i8 - 32;
            y[l + 96] = ((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) as i8 - 32;
        }
    }
    out
}

/// Writes the 256 values of each block to `out`: `(d * sc) * q` in f32, as ggml.
pub fn dequantize(blocks: &[BlockQ6K], out: &mut [f32]) {
    assert_eq!(
        out.len(),
        blocks.len() * QK_K,
        "q6_K dequantize: length mismatch"
    );
    for (block, y) in blocks.iter().zip(out.chunks_exact_mut(QK_K)) {
        let d = block.d.to_f32();
        let q = unpack(block);
        for (group, (y, q)) in y.chunks_exact_mut(16).zip(q.chunks_exact(16)).enumerate() {
            let dl = d * block.scales[group] as f32;
            for (y, &q) in y.iter_mut().zip(q) {
                *y = dl * q as f32;
            }
        }
    }
}

/// Dot product with a Q8_K activation row in the order of llama.cpp's x86
/// `ggml_vec_dot_q6_K_q8_K` (ggml-cpu/arch/x86/quants.c, its AVX2 branch, which the
/// goldens' AVX-512 build runs for every Q6_K matmul: neither repacking nor llamafile
/// takes Q6_K on x86). Per super-block, 8 exact i32 lanes: lane `l` sums
/// `sc · q · a` over values `4l..4l+4` of every 32-value chunk (`q` unsigned, 0..64,
/// `sc` the value's 16-group scale) minus `32 · (sc_{2l} · bsum_{2l} + sc_{2l+1} ·
/// bsum_{2l+1})` (the `-32` offset, taken through the activation sums); each lane is
/// converted and fused into its f32 lane by `d_w · d_a`; the lanes are reduced as
/// `hsum_float_8` ([`order`]). Bounds: a lane sums 32 products of at most
/// 63 · 127 · 128 in magnitude (< 2^25) and an offset below 2^22.
pub fn vec_dot(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q6_K vec_dot: block count mismatch");
    let mut acc = [0.0f32; 8];
    for (x, y) in w.iter().zip(a) {
        let q = unpack(x);
        let mut lanes = [0i32; 8];
        for (i, (&q, &a)) in q.iter().zip(&y.qs).enumerate() {
            let scale = x.scales[i / 16] as i32;
            lanes[(i % 32) / 4] += scale * ((q as i32 + 32) * a as i32);
        }
        for (l, lane) in lanes.iter_mut().enumerate() {
            let offset = x.scales[2 * l] as i32 * y.bsum(2 * l) as i32
                + x.scales[2 * l + 1] as i32 * y.bsum(2 * l + 1) as i32;
            *lane -= 32 * offset;
        }
        let d = y.d() * x.d.to_f32();
        for (s, &v) in acc.iter_mut().zip(&lanes) {
            *s = d.mul_add(v as f32, *s);
        }
    }
    order::hsum8(&acc)
}

/// Dot product with a Q8_K activation row in the order of llama.cpp's tiled K-quant
/// matmul, which its x86 backend runs for every Q6_K matmul of 8 or more tokens
/// (`ggml_compute_forward_mul_mat_tiled`, ggml-cpu/tiled/tiled.cpp; its AVX-512 VNNI
/// microkernel `tiled_run_micro_vnni_8x16` in tiled-kernel.cpp, as the goldens' build
/// compiles it). Per super-block, one exact integer
/// `s = Σ_g sc_g · (Σ q·a − 32 · bsum_g)` over the 16 groups (`q` unsigned, 0..64),
/// then `r = f32(s) · d_w` (one rounded product) and `acc = fma(r, d_a, acc)`, in block
/// order from `acc = 0`. Bounds: `|s| ≤ 256 · 128 · 32 · 127 < 2^31`.
pub fn vec_dot_tiled(w: &[BlockQ6K], a: &[BlockQ8K]) -> f32 {
    assert_eq!(w.len(), a.len(), "q6_K vec_dot_tiled: block count mismatch");
    let mut acc = 0.0f32;
    for (x, y) in w.iter().zip(a) {
        let q = unpack(x);
        let mut s = 0i32;
        for (g, (q, a)) in q.chunks_exact(16).zip(y.qs.chunks_exact(16)).enumerate() {
            let raw: i32 = q
                .iter()
                .zip(a)
                .map(|(&q, &a)| (q as i32 + 32) * a as i32)
                .sum();
            s += x.scales[g] as i32 * (raw - 32 * y.bsum(g) as i32);
        }
        let r = s as f32 * x.d.to_f32();
        acc = r.mul_add(y.d(), acc);
    }
    acc
}
