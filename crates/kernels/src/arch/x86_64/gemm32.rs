//! The batched matmul of the 32-value block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) in
//! llama.cpp's x86 summation order ([`crate::quant::order`]), so that every output is
//! bit for bit what the matrix-vector kernel ([`super::dot32`]) gives for its token.
//!
//! The order needs, per output and block, the 8 exact lane sums of 4 values each, each
//! fused into its own f32 lane accumulator by `d_w · d_a`. The kernel keeps the
//! outer-product form of [`super::gemm`] — a panel of `PH` weight rows unpacked once
//! into 4-byte quads ([`super::pack`]), one register holding the same 4 values of every
//! row — where one quad of a token, broadcast, meets the panel's quad in one `vpdpbusd`
//! (or `vpmaddubsw` + `vpmaddwd` by ones): that instruction yields lane `l` of the block
//! for all `PH` rows at once, with no horizontal sums. So each token of a tile carries 8
//! accumulator registers (lane `l` of every row), plus one for the minimum sum of Q4_1 /
//! Q5_1 (`m_w · s_a`, fused block by block). Weight offsets (Q4_0's `-8`, Q5_0's `-16`,
//! Q8_0 stored as `w + 128`) start each lane's integer sum at `offset · (-Σ a)` over its 4
//! values, so the lane is exactly ggml's `Σ (q - offset) · a`. At the end the 8 lane
//! registers are reduced as `hsum_float_8` (`((l0+l4) + (l2+l6)) + ((l1+l5) + (l3+l7))`)
//! and the minimum sum added.
//!
//! Compared with the matrix-vector kernel run token by token, each weight block is
//! unpacked once per panel instead of once per token, and the integer work per output
//! and block is 8 instructions on `PH` rows at a time.

use std::cell::RefCell;
use std::ops::Range;

use super::gemm::GemmIsa;
use super::pack::{GemmFormat, group_bytes, pack_panel};
use crate::matmul::{GemmActivations, GemmOut, WeightMatrix};

/// One token's activations: quants, per-32 scale and `s`, per-4 negated sums.
#[derive(Clone, Copy)]
struct Token {
    qs: *const i8,
    d: *const f32,
    s: *const f32,
    nsum4: *const i32,
}

/// `PH × T` outputs: rows of one packed panel times tokens `toks` (`toks[t]` repeats
/// the last real token when the tile is not full; only the first `n_real` are stored).
#[inline(always)]
unsafe fn tile<I: GemmIsa, F: GemmFormat, const T: usize>(
    panel: &[u8],
    blocks: usize,
    toks: &[Token; T],
    outs: &[*mut f32; T],
    n_real: usize,
    rows: usize,
) {
    let ph = I::ROWS;
    let gb = group_bytes::<F>(ph);
    assert_eq!(F::G, 32);
    assert!(panel.len() >= blocks * gb);
    assert!(I::VNNI || F::DEPTH > 0, "this format needs VNNI here");
    // SAFETY: panel reads stay within `blocks * gb` bytes (asserted); token pointers
    // index their rows' quants (32 bytes per block) and tables (one `d` and `s` per
    // block, 8 sums per block), which the caller sized for `blocks` blocks; stores write
    // `rows` lanes at pointers the caller owns. Features per the module contract.
    unsafe {
        let mut lanes = [[I::zero_f(); 8]; T];
        let mut mins = [I::zero_f(); T];
        for b in 0..blocks {
            let base = panel.as_ptr().add(b * gb);
            let dw = I::load_f(base.add(32 * ph));
            for t in 0..T {
                let dd = I::mul(dw, I::splat_f(*toks[t].d.add(b)));
                let a = toks[t].qs.add(32 * b);
                for (l, lane) in lanes[t].iter_mut().enumerate() {
                    let start = match F::OFFSET_SHIFT {
                        Some(shift) => I::splat_i(*toks[t].nsum4.add(8 * b + l) << shift),
                        None => I::splat_i(0),
                    };
                    let w = I::load_i(base.add(l * ph * 4));
                    let sum = if I::VNNI {
                        I::dpbusd(start, w, I::bcast4(a.add(4 * l)))
                    } else {
                        I::add_pairs(start, I::maddubs(w, I::bcast4(a.add(4 * l))))
                    };
                    *lane = I::fma(I::cvt(sum), dd, *lane);
                }
                if F::MIN {
                    let mw = I::load_f(base.add(32 * ph + 4 * ph));
                    mins[t] = I::fma(mw, I::splat_f(*toks[t].s.add(b)), mins[t]);
                }
            }
        }
        for t in 0..n_real {
            let l = &lanes[t];
            let total = I::add(
                I::add(I::add(l[0], l[4]), I::add(l[2], l[6])),
                I::add(I::add(l[1], l[5]), I::add(l[3], l[7])),
            );
            let total = if F::MIN {
                I::add(total, mins[t])
            } else {
                total
            };
            I::store(outs[t], total, rows);
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

/// The batched matmul for weight rows `rows` and every token, `T` tokens per tile.
#[inline(always)]
pub(crate) unsafe fn gemm<I: GemmIsa, F: GemmFormat, const T: usize>(
    w: &WeightMatrix<'_>,
    rows: Range<usize>,
    acts: &GemmActivations<'_>,
    out: &GemmOut,
) {
    assert!(rows.end <= w.rows && acts.cols == w.cols);
    let row_bytes = w.row_bytes();
    let ph = I::ROWS;
    let blocks = w.cols / 32;
    let panel_bytes = blocks * group_bytes::<F>(ph);
    let n = acts.n_tokens;
    assert!(
        acts.qs.len() >= n * w.cols
            && acts.d.len() >= n * blocks
            && acts.s.len() >= n * blocks
            && acts.nsum4.len() >= n * w.cols / 4
    );
    if n == 0 {
        return;
    }
    let token = |t: usize| Token {
        qs: acts.qs[t * w.cols..].as_ptr(),
        d: acts.d[t * blocks..].as_ptr(),
        s: acts.s[t * blocks..].as_ptr(),
        nsum4: acts.nsum4[t * w.cols / 4..].as_ptr(),
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
                // SAFETY: the tables were sized for every token (asserted above); the
                // output pointers hold `nrows` values of rows this call owns.
                unsafe { tile::<I, F, T>(panel, blocks, &toks, &outs, n_real, nrows) };
                t0 += T;
            }
            r0 += ph;
        }
    }
    PANEL.set(buf);
}
