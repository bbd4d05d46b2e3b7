//! The float summation order of llama.cpp's x86 CPU backend for the 32-value block
//! formats, which every tern path (scalar, AVX2, AVX-512, NEON) reproduces bit for bit.
//!
//! ggml's AVX2 `ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0` and `ggml_vec_dot_{q4_1,q5_1}_q8_1`
//! (ggml-cpu/arch/x86/quants.c), and llamafile's `tinyBLAS_Q0_AVX` (llamafile/sgemm.cpp,
//! which takes the Q4_0 / Q5_0 / Q8_0 prompt batches) all compute one output the same
//! way, which the goldens' build (x86-64 AVX-512, GCC 12, `-march=native`) compiles to:
//! - per block, 8 exact i32 lane sums, lane `l` holding the products of values
//!   `4l .. 4l+4` (`vpdpbusd`, or `vpmaddubsw` + `vpmaddwd`);
//! - each lane converted to f32 and accumulated by a fused multiply-add with the block's
//!   `d_w · d_a` (one f32 product), into 8 f32 lane accumulators;
//! - the accumulators reduced as `((a0+a4) + (a2+a6)) + ((a1+a5) + (a3+a7))`
//!   (`hsum_float_8`);
//! - for formats with minimums, `Σ m_w · s_a` kept in one scalar, one fused
//!   multiply-add per block in block order (GCC contracts `summs += m * s`: see the
//!   disassembly of the reference build's `libggml-cpu.so`), added last.
//!
//! `f32::mul_add` is the same correctly rounded operation as the SIMD fused
//! multiply-adds, so the scalar reference gives the SIMD paths' bits.

/// The 8 lane accumulators and the minimum sum of one output.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Lanes8 {
    lanes: [f32; 8],
    mins: f32,
}

impl Lanes8 {
    /// Adds one block: `lanes[l] = fma(d, sums[l], lanes[l])`.
    #[inline(always)]
    pub(crate) fn add_block(&mut self, d: f32, sums: &[i32; 8]) {
        for (acc, &s) in self.lanes.iter_mut().zip(sums) {
            *acc = d.mul_add(s as f32, *acc);
        }
    }

    /// Adds one block's `m_w · s_a` term.
    #[inline(always)]
    pub(crate) fn add_min(&mut self, m: f32, s: f32) {
        self.mins = m.mul_add(s, self.mins);
    }

    /// The result; `with_min` for the formats that carry minimums.
    #[inline(always)]
    pub(crate) fn finish(&self, with_min: bool) -> f32 {
        let total = hsum8(&self.lanes);
        if with_min { total + self.mins } else { total }
    }
}

/// ggml's `hsum_float_8` order: the high half added to the low, then lanes 0+2 and 1+3,
/// then those two.
#[inline(always)]
pub(crate) fn hsum8(x: &[f32; 8]) -> f32 {
    let t = [x[0] + x[4], x[1] + x[5], x[2] + x[6], x[3] + x[7]];
    (t[0] + t[2]) + (t[1] + t[3])
}

/// The 8 lane sums of one block: lane `l` = `Σ a[i] · b[i]` over `i` in `4l .. 4l+4`.
#[inline(always)]
pub(crate) fn lane_sums(a: &[i8; 32], b: &[i8; 32]) -> [i32; 8] {
    let mut sums = [0i32; 8];
    for (l, sum) in sums.iter_mut().enumerate() {
        for i in 4 * l..4 * l + 4 {
            *sum += a[i] as i32 * b[i] as i32;
        }
    }
    sums
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hsum_follows_ggml_order() {
        // 1e8 absorbs a 1.0 unless it first meets its negation: lanes 0 and 4 pair up.
        let x = [1e8, 1.0, 0.0, 0.0, -1e8, 1.0, 0.0, 0.0];
        assert_eq!(hsum8(&x), 2.0);
        // (1e8 + 0) + (1 + 0): 1e8 + 1 rounds to 1e8.
        let y = [1e8, 0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0];
        assert_eq!(hsum8(&y), 1e8);
    }

    #[test]
    fn lanes_are_fused_per_block() {
        let mut acc = Lanes8::default();
        acc.add_block(1.0, &[-((1 << 24) + 4); 8]);
        acc.add_block(1.0 + f32::EPSILON, &[(1 << 24) + 2; 8]);
        // Fused, (2^24 + 2)(1 + 2^-23) - (2^24 + 4) keeps its 2^-22; a separate product
        // would round to 2^24 + 4 and give 0.
        let lanes = 8.0 * 2.0f32.powi(-22);
        assert_eq!(acc.finish(false), lanes);
        acc.add_min(3.0, 0.5);
        assert_eq!(acc.finish(true), lanes + 1.5);
    }
}
