//! The batched Q4_K matmul in the summation order of llama.cpp's x86 repacked kernel
//! (`ggml_gemm_q4_K_8x8_q8_K`, ggml-cpu/arch/x86/repack.cpp), which the goldens' build
//! runs for the tokens of a batch in whole groups of 4 (`quant::q4_k::vec_dot_batched`
//! is the scalar statement of it): per output and per 64 values (two 32-value groups),
//! the exact integer `sc_0 · Σ q·a + sc_1 · Σ q·a` is fused into one f32 sum by
//! `d_w · d_a`, and `m_0 · S_0 + m_1 · S_1` (`S`: the activation sums of the groups) into
//! a second one by `dmin_w · d_a`; the output is the first minus the second.
//!
//! The kernel has the outer-product form of [`super::gemm`]: a panel of `PH` weight rows
//! is unpacked once into 4-byte quads (one register holds the same 4 values of every
//! row), and each activation quad of a token, broadcast, meets it in one `vpdpbusd` (or
//! `vpmaddubsw`, summed in i16, then `vpmaddwd` by ones); so the lanes of a register are
//! rows, and no horizontal sums are needed. A group's integer sum is below 2^16 in
//! magnitude and its scale below 2^6, so the two scaled group sums and their total are
//! exact in f32 (below 2^24): converting each group sum and combining them with f32
//! multiply-adds gives exactly the integer llama.cpp converts.
//!
//! Panel layout, per super-block: `d_w` and `dmin_w` (`PH` f32 each), then per group the
//! 8 quads (`8 × PH × 4` bytes), the scales and the minimums (`PH` f32 each).

use std::cell::RefCell;
use std::ops::Range;

use super::dotk::{KFormat, Q4K};
use super::gemm::GemmIsa;
use crate::blocks::{BlockQ4K, QK_K, as_blocks};
use crate::matmul::{GemmActivations, GemmOut, WeightMatrix};

/// Bytes of one group of a panel of `ph` rows: quads, scales, minimums.
const fn group_bytes(ph: usize) -> usize {
    32 * ph + 8 * ph
}

/// Bytes of one super-block of a panel of `ph` rows.
const fn block_bytes(ph: usize) -> usize {
    8 * ph + 8 * group_bytes(ph)
}

/// Packs `rows` (at most `ph`) Q4_K rows into `panel`; missing rows are zero.
#[inline(always)]
unsafe fn pack(weights: &[u8], row_bytes: usize, rows: usize, ph: usize, panel: &mut [u8]) {
    let blocks = row_bytes / size_of::<BlockQ4K>();
    assert!(rows <= ph && weights.len() == rows * row_bytes);
    assert_eq!(panel.len(), blocks * block_bytes(ph));
    if rows < ph {
        panel.fill(0);
    }
    let mut q = [0u8; QK_K];
    for (r, row) in weights.chunks_exact(row_bytes).enumerate() {
        for (bi, block) in as_blocks::<BlockQ4K>(row).iter().enumerate() {
            let base = &mut panel[bi * block_bytes(ph)..][..block_bytes(ph)];
            // SAFETY: AVX2/F16C per module contract; `q` is 256 bytes.
            let (d, dmin, scales, mins) = unsafe {
                let (d, dmin, scales, mins, prep) = Q4K::prepare(block);
                for c in 0..8 {
                    let v = Q4K::chunk(block, &prep, c);
                    std::arch::x86_64::_mm256_storeu_si256(q[32 * c..].as_mut_ptr().cast(), v);
                }
                let (mut s, mut m) = ([0i16; 16], [0i16; 16]);
                std::arch::x86_64::_mm256_storeu_si256(s.as_mut_ptr().cast(), scales);
                std::arch::x86_64::_mm256_storeu_si256(m.as_mut_ptr().cast(), mins);
                (d, dmin, s, m)
            };
            base[4 * r..4 * r + 4].copy_from_slice(&d.to_ne_bytes());
            base[4 * (ph + r)..4 * (ph + r) + 4].copy_from_slice(&dmin.to_ne_bytes());
            for g in 0..8 {
                let group = &mut base[8 * ph + g * group_bytes(ph)..][..group_bytes(ph)];
                for j in 0..8 {
                    let at = (j * ph + r) * 4;
                    group[at..at + 4].copy_from_slice(&q[32 * g + 4 * j..][..4]);
                }
                // The i16 scales are per 16 values (each sub-block's twice).
                let (sc, mn) = (scales[2 * g] as f32, mins[2 * g] as f32);
                group[32 * ph + 4 * r..][..4].copy_from_slice(&sc.to_ne_bytes());
                group[36 * ph + 4 * r..][..4].copy_from_slice(&mn.to_ne_bytes());
            }
        }
    }
}

/// One token's activations: quants, per-32 scale (the block's `d`) and negated sums.
#[derive(Clone, Copy)]
struct Token {
    qs: *const i8,
    d: *const f32,
    nsum: *const i32,
}

/// `PH × T` outputs of one packed panel (see the module docs); `toks[t]` repeats the
/// last real token when the tile is not full, only the first `n_real` are stored.
#[inline(always)]
unsafe fn tile<I: GemmIsa, const T: usize>(
    panel: &[u8],
    blocks: usize,
    toks: &[Token; T],
    outs: &[*mut f32; T],
    n_real: usize,
    rows: usize,
) {
    let ph = I::ROWS;
    assert!(panel.len() >= blocks * block_bytes(ph));
    // SAFETY: panel reads stay within `blocks * block_bytes` (asserted); token pointers
    // index their rows' quants (256 bytes per block) and tables (8 entries per block),
    // which the caller sized; stores write `rows` lanes at pointers the caller owns.
    unsafe {
        let mut acc = [I::zero_f(); T];
        let mut acc_min = [I::zero_f(); T];
        for b in 0..blocks {
            let base = panel.as_ptr().add(b * block_bytes(ph));
            let dw = I::load_f(base);
            let dminw = I::load_f(base.add(4 * ph));
            for pair in 0..4 {
                let mut sum = [I::zero_f(); T];
                let mut min = [I::zero_f(); T];
                for half in 0..2 {
                    let g = 2 * pair + half;
                    let group = base.add(8 * ph + g * group_bytes(ph));
                    let q_off = b * QK_K + 32 * g;
                    let mut ints = [I::splat_i(0); T];
                    if I::VNNI {
                        for j in 0..8 {
                            let w = I::load_i(group.add(j * ph * 4));
                            for t in 0..T {
                                let a = I::bcast4(toks[t].qs.add(q_off + 4 * j));
                                ints[t] = I::dpbusd(ints[t], w, a);
                            }
                        }
                    } else {
                        // 8 quads of 4-bit quants: pair sums of at most 2 · 15 · 127,
                        // eight of them fit i16.
                        let mut p16 = [I::splat_i(0); T];
                        for j in 0..8 {
                            let w = I::load_i(group.add(j * ph * 4));
                            for t in 0..T {
                                let a = I::bcast4(toks[t].qs.add(q_off + 4 * j));
                                let p = I::maddubs(w, a);
                                p16[t] = if j == 0 { p } else { I::add16(p16[t], p) };
                            }
                        }
                        for t in 0..T {
                            ints[t] = I::add_pairs(ints[t], p16[t]);
                        }
                    }
                    let sc = I::load_f(group.add(32 * ph));
                    let mn = I::load_f(group.add(36 * ph));
                    for t in 0..T {
                        // Exact: see the module docs.
                        sum[t] = I::fma(I::cvt(ints[t]), sc, sum[t]);
                        let s = I::splat_f(-(*toks[t].nsum.add(b * 8 + g)) as f32);
                        min[t] = I::fma(mn, s, min[t]);
                    }
                }
                for t in 0..T {
                    let da = I::splat_f(*toks[t].d.add(b * 8));
                    acc[t] = I::fma(sum[t], I::mul(dw, da), acc[t]);
                    acc_min[t] = I::fma(min[t], I::mul(dminw, da), acc_min[t]);
                }
            }
        }
        for t in 0..n_real {
            I::store(outs[t], I::sub(acc[t], acc_min[t]), rows);
        }
    }
}

/// A 64-byte aligned unit of the panel buffer.
#[derive(Clone, Copy)]
#[repr(C, align(64))]
struct Line([u8; 64]);

thread_local! {
    /// Each thread's panel buffer, grown to the largest panel it has packed.
    static PANEL: RefCell<Vec<Line>> = const { RefCell::new(Vec::new()) };
}

/// The batched Q4_K matmul for weight rows `rows` and the first `acts.n_tokens`
/// tokens, `T` tokens per tile.
#[inline(always)]
pub(crate) unsafe fn gemm_q4_k<I: GemmIsa, const T: usize>(
    w: &WeightMatrix<'_>,
    rows: Range<usize>,
    acts: &GemmActivations<'_>,
    out: &GemmOut,
) {
    assert!(rows.end <= w.rows && acts.cols == w.cols);
    let row_bytes = w.row_bytes();
    let ph = I::ROWS;
    let blocks = w.cols / QK_K;
    let panel_bytes = blocks * block_bytes(ph);
    let n = acts.n_tokens;
    assert!(
        acts.qs.len() >= n * w.cols
            && acts.d.len() >= n * w.cols / 32
            && acts.nsum32.len() >= n * w.cols / 32
    );
    if n == 0 {
        return;
    }
    let token = |t: usize| Token {
        qs: acts.qs[t * w.cols..].as_ptr(),
        d: acts.d[t * w.cols / 32..].as_ptr(),
        nsum: acts.nsum32[t * w.cols / 32..].as_ptr(),
    };
    // Taken out of the thread-local and put back afterwards (see `gemm::gemm`).
    let mut buf = PANEL.take();
    {
        let lines = panel_bytes.div_ceil(64);
        if buf.len() < lines {
            buf.resize(lines, Line([0; 64]));
        }
        // SAFETY: `Line` is 64 plain bytes, so the buffer is `lines * 64` initialised
        // bytes, borrowed mutably for this call only.
        let panel =
            unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), panel_bytes) };
        let mut r0 = rows.start;
        while r0 < rows.end {
            let nrows = ph.min(rows.end - r0);
            // SAFETY: per module contract; the rows are inside the matrix.
            unsafe {
                pack(
                    &w.data[r0 * row_bytes..(r0 + nrows) * row_bytes],
                    row_bytes,
                    nrows,
                    ph,
                    panel,
                )
            };
            let mut t0 = 0;
            while t0 < n {
                let n_real = T.min(n - t0);
                let toks: [Token; T] = std::array::from_fn(|i| token(t0 + i.min(n_real - 1)));
                let outs: [*mut f32; T] =
                    std::array::from_fn(|i| out.row_ptr(t0 + i.min(n_real - 1), r0..r0 + nrows));
                // SAFETY: the tables were sized for every token (asserted above); the
                // output pointers hold `nrows` values of rows this call owns.
                unsafe { tile::<I, T>(panel, blocks, &toks, &outs, n_real, nrows) };
                t0 += T;
            }
            r0 += ph;
        }
    }
    PANEL.set(buf);
}
