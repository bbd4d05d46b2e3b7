//! The batched matmul of prompt processing: many tokens through one weight matrix.
//!
//! A panel of `PH` weight rows is unpacked once ([`super::pack`]) and then multiplied
//! with every token, `T` tokens at a time, with all `PH × T` sums in registers — the
//! outer-product form of int8 GEMM: each weight register (4 values of `PH` rows) meets
//! the same 4 activation values of one token, broadcast to every lane, in one
//! `vpdpbusd` (VNNI) or `vpmaddubsw` (+ `vpmaddwd` every `DEPTH` quads), so no
//! horizontal sums are ever needed. Per group of 32 (or 16) values and token, the exact
//! integer sum — started at `offset · (-Σa)` to undo the unsigned storage of the weights
//! — is converted once and accumulated as `sum · (d_w · d_a)`, plus `min_w · s_a` for
//! formats with minimums.
//!
//! The panel (at most ~180 KB for 16 rows of 8960 values) stays in L2 while all tokens
//! stream past it; the weights are read from memory once per matmul. Every output
//! element goes through the same instructions whatever panel or token tile holds it,
//! and rows never mix, so results do not depend on how rows are split over threads.
//! Panel heights: 16 rows in a zmm register on the AVX-512 paths, 8 in a ymm on AVX2.

use std::arch::x86_64::*;
use std::cell::RefCell;
use std::ops::Range;

use super::pack::{GemmFormat, group_bytes, pack_panel};
use crate::matmul::{GemmActivations, GemmOut, WeightMatrix};

/// The vector operations of one path's batched kernel.
pub(crate) trait GemmIsa {
    /// Integer and float registers of `ROWS` lanes.
    type I: Copy;
    type F: Copy;
    /// Rows per panel (f32 lanes per register).
    const ROWS: usize;
    /// Tokens per tile (register budget).
    const T: usize;
    /// Whether `dot` is VNNI's exact `vpdpbusd` (else `vpmaddubsw` + `vpmaddwd`).
    const VNNI: bool;
    unsafe fn zero_f() -> Self::F;
    unsafe fn load_i(p: *const u8) -> Self::I;
    unsafe fn load_f(p: *const u8) -> Self::F;
    /// 4 bytes at `p`, broadcast to every lane.
    unsafe fn bcast4(p: *const i8) -> Self::I;
    unsafe fn splat_i(v: i32) -> Self::I;
    unsafe fn splat_f(v: f32) -> Self::F;
    /// VNNI: `acc + Σ4 u·s` per lane.
    unsafe fn dpbusd(acc: Self::I, u: Self::I, s: Self::I) -> Self::I;
    /// `vpmaddubsw`: u8 × i8 pairs to i16.
    unsafe fn maddubs(u: Self::I, s: Self::I) -> Self::I;
    unsafe fn add16(a: Self::I, b: Self::I) -> Self::I;
    /// `acc + Σ2` of i16 pairs per lane.
    unsafe fn add_pairs(acc: Self::I, p16: Self::I) -> Self::I;
    unsafe fn cvt(v: Self::I) -> Self::F;
    unsafe fn mul(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn fma(a: Self::F, b: Self::F, c: Self::F) -> Self::F;
    unsafe fn sub(a: Self::F, b: Self::F) -> Self::F;
    unsafe fn add(a: Self::F, b: Self::F) -> Self::F;
    /// Stores the first `n` lanes of `v` at `p`.
    unsafe fn store(p: *mut f32, v: Self::F, n: usize);
}

/// AVX2, 8 rows × 4 tokens.
pub(crate) struct Ymm;
/// AVX-512 BW without VNNI, 16 rows × 8 tokens.
pub(crate) struct Zmm;
/// AVX-512 VNNI, 16 rows × 8 tokens.
pub(crate) struct ZmmVnni;

#[inline(always)]
unsafe fn read4(p: *const i8) -> i32 {
    // SAFETY: the caller guarantees 4 readable bytes.
    unsafe { std::ptr::read_unaligned(p.cast::<i32>()) }
}

impl GemmIsa for Ymm {
    type I = __m256i;
    type F = __m256;
    const ROWS: usize = 8;
    const T: usize = 4;
    const VNNI: bool = false;
    #[inline(always)]
    unsafe fn zero_f() -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_setzero_ps() }
    }
    #[inline(always)]
    unsafe fn load_i(p: *const u8) -> __m256i {
        // SAFETY: 32 readable bytes at `p` (panel layout).
        unsafe { _mm256_loadu_si256(p.cast()) }
    }
    #[inline(always)]
    unsafe fn load_f(p: *const u8) -> __m256 {
        // SAFETY: 32 readable bytes at `p` (panel layout).
        unsafe { _mm256_loadu_ps(p.cast()) }
    }
    #[inline(always)]
    unsafe fn bcast4(p: *const i8) -> __m256i {
        // SAFETY: 4 readable bytes at `p`.
        unsafe { _mm256_set1_epi32(read4(p)) }
    }
    #[inline(always)]
    unsafe fn splat_i(v: i32) -> __m256i {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_set1_epi32(v) }
    }
    #[inline(always)]
    unsafe fn splat_f(v: f32) -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_set1_ps(v) }
    }
    #[inline(always)]
    unsafe fn dpbusd(_: __m256i, _: __m256i, _: __m256i) -> __m256i {
        unreachable!("the AVX2 kernel has no VNNI")
    }
    #[inline(always)]
    unsafe fn maddubs(u: __m256i, s: __m256i) -> __m256i {
        // SAFETY: AVX2 per module contract.
        unsafe { _mm256_maddubs_epi16(u, s) }
    }
    #[inline(always)]
    unsafe fn add16(a: __m256i, b: __m256i) -> __m256i {
        // SAFETY: AVX2 per module contract.
        unsafe { _mm256_add_epi16(a, b) }
    }
    #[inline(always)]
    unsafe fn add_pairs(acc: __m256i, p16: __m256i) -> __m256i {
        // SAFETY: AVX2 per module contract.
        unsafe { _mm256_add_epi32(acc, _mm256_madd_epi16(p16, _mm256_set1_epi16(1))) }
    }
    #[inline(always)]
    unsafe fn cvt(v: __m256i) -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_cvtepi32_ps(v) }
    }
    #[inline(always)]
    unsafe fn mul(a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_mul_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn fma(a: __m256, b: __m256, c: __m256) -> __m256 {
        // SAFETY: FMA per module contract.
        unsafe { _mm256_fmadd_ps(a, b, c) }
    }
    #[inline(always)]
    unsafe fn sub(a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_sub_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn add(a: __m256, b: __m256) -> __m256 {
        // SAFETY: AVX per module contract.
        unsafe { _mm256_add_ps(a, b) }
    }
    #[inline(always)]
    unsafe fn store(p: *mut f32, v: __m256, n: usize) {
        // SAFETY: the caller guarantees `n` writable f32 at `p`; the masked store
        // touches only those.
        unsafe {
            if n == 8 {
                _mm256_storeu_ps(p, v);
            } else {
                let lanes = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
                let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(n as i32), lanes);
                _mm256_maskstore_ps(p, mask, v);
            }
        }
    }
}

/// The zmm operations shared by [`Zmm`] and [`ZmmVnni`].
macro_rules! zmm_common {
    () => {
        type I = __m512i;
        type F = __m512;
        const ROWS: usize = 16;
        const T: usize = 8;
        #[inline(always)]
        unsafe fn zero_f() -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_setzero_ps() }
        }
        #[inline(always)]
        unsafe fn load_i(p: *const u8) -> __m512i {
            // SAFETY: 64 readable bytes at `p` (panel layout).
            unsafe { _mm512_loadu_si512(p.cast()) }
        }
        #[inline(always)]
        unsafe fn load_f(p: *const u8) -> __m512 {
            // SAFETY: 64 readable bytes at `p` (panel layout).
            unsafe { _mm512_loadu_ps(p.cast()) }
        }
        #[inline(always)]
        unsafe fn bcast4(p: *const i8) -> __m512i {
            // SAFETY: 4 readable bytes at `p`.
            unsafe { _mm512_set1_epi32(read4(p)) }
        }
        #[inline(always)]
        unsafe fn splat_i(v: i32) -> __m512i {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_set1_epi32(v) }
        }
        #[inline(always)]
        unsafe fn splat_f(v: f32) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_set1_ps(v) }
        }
        #[inline(always)]
        unsafe fn maddubs(u: __m512i, s: __m512i) -> __m512i {
            // SAFETY: AVX-512 BW per module contract.
            unsafe { _mm512_maddubs_epi16(u, s) }
        }
        #[inline(always)]
        unsafe fn add16(a: __m512i, b: __m512i) -> __m512i {
            // SAFETY: AVX-512 BW per module contract.
            unsafe { _mm512_add_epi16(a, b) }
        }
        #[inline(always)]
        unsafe fn add_pairs(acc: __m512i, p16: __m512i) -> __m512i {
            // SAFETY: AVX-512 BW per module contract.
            unsafe { _mm512_add_epi32(acc, _mm512_madd_epi16(p16, _mm512_set1_epi16(1))) }
        }
        #[inline(always)]
        unsafe fn cvt(v: __m512i) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_cvtepi32_ps(v) }
        }
        #[inline(always)]
        unsafe fn mul(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_mul_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn fma(a: __m512, b: __m512, c: __m512) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_fmadd_ps(a, b, c) }
        }
        #[inline(always)]
        unsafe fn sub(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_sub_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn add(a: __m512, b: __m512) -> __m512 {
            // SAFETY: AVX-512 F per module contract.
            unsafe { _mm512_add_ps(a, b) }
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, v: __m512, n: usize) {
            // SAFETY: the caller guarantees `n` writable f32 at `p`; the masked store
            // touches only those.
            unsafe { _mm512_mask_storeu_ps(p, ((1u32 << n) - 1) as u16, v) }
        }
    };
}

impl GemmIsa for Zmm {
    zmm_common!();
    const VNNI: bool = false;
    #[inline(always)]
    unsafe fn dpbusd(_: __m512i, _: __m512i, _: __m512i) -> __m512i {
        unreachable!("this kernel has no VNNI")
    }
}

impl GemmIsa for ZmmVnni {
    zmm_common!();
    const VNNI: bool = true;
    #[inline(always)]
    unsafe fn dpbusd(acc: __m512i, u: __m512i, s: __m512i) -> __m512i {
        // SAFETY: AVX-512 VNNI per module contract.
        unsafe { _mm512_dpbusd_epi32(acc, u, s) }
    }
}

/// Where one token's data starts: its quants and its per-group tables.
#[derive(Clone, Copy)]
struct Token {
    qs: *const i8,
    d: *const f32,
    s: *const f32,
    nsum: *const i32,
}

/// `PH × T` outputs: rows of one packed panel times tokens `toks` (`toks[t]` repeats
/// the last real token when the tile is not full; only the first `n_real` are stored).
#[inline(always)]
unsafe fn tile<I: GemmIsa, F: GemmFormat, const T: usize>(
    panel: &[u8],
    groups: usize,
    toks: &[Token; T],
    outs: &[*mut f32; T],
    n_real: usize,
    rows: usize,
) {
    let ph = I::ROWS;
    let gb = group_bytes::<F>(ph);
    assert!(panel.len() >= groups * gb);
    assert!(
        I::VNNI || F::DEPTH > 0,
        "this format needs VNNI in the batched kernel"
    );
    // SAFETY: panel reads stay within `groups * gb` bytes (asserted); token pointers
    // index their rows' quants (`G` bytes per group) and tables (one entry per group,
    // or per two 16-value groups for `d` and `s`), which the caller sized for `groups`
    // groups; stores write `rows` lanes at pointers the caller owns. Features per the
    // module contract.
    unsafe {
        let mut acc = [I::zero_f(); T];
        for g in 0..groups {
            let base = panel.as_ptr().add(g * gb);
            let mut sums = [I::splat_i(0); T];
            if let Some(shift) = F::OFFSET_SHIFT {
                for t in 0..T {
                    sums[t] = I::splat_i(*toks[t].nsum.add(g) << shift);
                }
            }
            let q_off = g * F::G;
            if I::VNNI {
                for j in 0..F::G / 4 {
                    let w = I::load_i(base.add(j * ph * 4));
                    for t in 0..T {
                        sums[t] = I::dpbusd(sums[t], w, I::bcast4(toks[t].qs.add(q_off + 4 * j)));
                    }
                }
            } else {
                let mut j = 0;
                while j < F::G / 4 {
                    let depth = F::DEPTH.min(F::G / 4 - j);
                    let mut p16 = [I::splat_i(0); T];
                    for k in 0..depth {
                        let w = I::load_i(base.add((j + k) * ph * 4));
                        for t in 0..T {
                            let p = I::maddubs(w, I::bcast4(toks[t].qs.add(q_off + 4 * (j + k))));
                            p16[t] = if k == 0 { p } else { I::add16(p16[t], p) };
                        }
                    }
                    for t in 0..T {
                        sums[t] = I::add_pairs(sums[t], p16[t]);
                    }
                    j += depth;
                }
            }
            let scale = I::load_f(base.add(F::G * ph));
            // `d` and `s` are per 32 values: a 16-value group shares its half's.
            let chunk = g * F::G / 32;
            for t in 0..T {
                let sc = I::mul(scale, I::splat_f(*toks[t].d.add(chunk)));
                acc[t] = I::fma(I::cvt(sums[t]), sc, acc[t]);
            }
            if F::MIN {
                let min = I::load_f(base.add(F::G * ph + 4 * ph));
                for t in 0..T {
                    acc[t] = I::fma(min, I::splat_f(*toks[t].s.add(chunk)), acc[t]);
                }
            }
        }
        for t in 0..n_real {
            I::store(outs[t], acc[t], rows);
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

/// The batched matmul for weight rows `rows` (see the module docs).
#[inline(always)]
pub(crate) unsafe fn gemm<I: GemmIsa, F: GemmFormat, const T: usize>(
    w: &WeightMatrix<'_>,
    rows: Range<usize>,
    acts: &GemmActivations<'_>,
    out: &GemmOut,
) {
    assert_eq!(T, I::T);
    assert!(rows.end <= w.rows && acts.cols == w.cols);
    let row_bytes = w.row_bytes();
    let ph = I::ROWS;
    let groups = w.cols / F::G;
    let panel_bytes = groups * group_bytes::<F>(ph);
    let n = acts.n_tokens;
    assert!(
        acts.qs.len() >= n * w.cols
            && acts.d.len() >= n * w.cols / 32
            && acts.s.len() >= n * w.cols / 32
            && acts.nsum32.len() >= n * w.cols / 32
            && acts.nsum16.len() >= n * w.cols / 16
    );
    let token = |t: usize| {
        let nsum = if F::G == 32 {
            acts.nsum32[t * w.cols / 32..].as_ptr()
        } else {
            acts.nsum16[t * w.cols / 16..].as_ptr()
        };
        Token {
            qs: acts.qs[t * w.cols..].as_ptr(),
            d: acts.d[t * w.cols / 32..].as_ptr(),
            s: acts.s[t * w.cols / 32..].as_ptr(),
            nsum,
        }
    };
    // Taken out of the thread-local and put back afterwards, rather than used inside
    // `with`: a closure would be compiled without this function's target features,
    // and the kernel with it.
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
                pack_panel::<F>(
                    &w.data[r0 * row_bytes..(r0 + nrows) * row_bytes],
                    row_bytes,
                    nrows,
                    ph,
                    panel,
                );
            }
            let mut t0 = 0;
            while t0 < n {
                let n_real = T.min(n - t0);
                let toks: [Token; T] = std::array::from_fn(|i| token(t0 + i.min(n_real - 1)));
                let outs: [*mut f32; T] =
                    std::array::from_fn(|i| out.row_ptr(t0 + i.min(n_real - 1), r0..r0 + nrows));
                // SAFETY: the tables were sized for `groups` groups of every token
                // (asserted above); the output pointers hold `nrows` values of rows
                // this call owns (the pool hands out disjoint row ranges), written only
                // by the stores of this tile.
                unsafe { tile::<I, F, T>(panel, groups, &toks, &outs, n_real, nrows) };
                t0 += T;
            }
            r0 += ph;
        }
    }
    PANEL.set(buf);
}
