//! [`QuantizedActivations`]: activation rows quantized for a matmul, plus the
//! derived layouts the SIMD kernels read, computed once per quantization so that every
//! weight row (and every thread) reuses them.
//!
//! - Q8_0 / Q8_1 rows, any number: per row a [`PairedRow`] for the matrix-vector
//!   kernels, the quants of each pair of blocks interleaved the way two 4-bit weight
//!   blocks unpack in one 256-bit register (`[a0[0..16], a1[0..16], a0[16..32],
//!   a1[16..32]]`), the block scales as f32 and the `s` term of the weight minimums.
//! - Several rows (prompt, from [`GEMM_MIN_TOKENS`]): [`GemmActivations`], the quants of
//!   all rows as one plain `i8` matrix in value order, per 32 values the scale and the
//!   `s` term, and the negated quant sums the batched kernels fold weight offsets (Q4_0's
//!   `-8`) and minimums with: per 4 values for Q8_0 / Q8_1, per 32 and 16 for Q8_K.
//!
//! Both are plain data derived from the ggml blocks by portable code; paths without a
//! kernel that reads them ignore them.

use tern_gguf::GgmlType;

use crate::Kernels;
use crate::blocks::{Block, BlockQ8_0, BlockQ8_1, BlockQ8K, QK_K, as_blocks};
use crate::error::KernelError;
use crate::quant::{row_bytes, vec_dot_type};

/// Activation rows quantized to the type a weight type's dot product needs. The buffers
/// are kept between calls, so a decode loop allocates only until it has seen its largest
/// batch.
#[derive(Debug, Clone)]
pub struct QuantizedActivations {
    pub(super) ty: GgmlType,
    pub(super) cols: usize,
    pub(super) n_rows: usize,
    row_bytes: usize,
    data: Vec<u8>,
    /// Which derived layout the buffers below hold for the current rows.
    derived: Derived,
    qs: Vec<i8>,
    nsum: Vec<i32>,
    d: Vec<f32>,
    s: Vec<f32>,
    nsum16: Vec<i32>,
    /// The batched layout of Q8_0 / Q8_1 rows, kept beside their paired layout.
    gemm32: Gemm32,
}

/// Q8_0 / Q8_1 rows in the batched layout: quants in value order, per 32 values the
/// scale and `s` term, per 4 values the negated quant sum.
#[derive(Debug, Clone, Default)]
struct Gemm32 {
    ready: bool,
    qs: Vec<i8>,
    d: Vec<f32>,
    s: Vec<f32>,
    nsum4: Vec<i32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Derived {
    None,
    Paired,
    Gemm,
}

impl Default for QuantizedActivations {
    fn default() -> Self {
        Self::new()
    }
}

/// One activation row as the matrix-vector kernels get it: the ggml blocks, and the
/// [`PairedRow`] layout when it was prepared.
// Only the x86-64 kernels read these layouts (aarch64 sums from the ggml blocks).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct ActRow<'a> {
    pub bytes: &'a [u8],
    pub paired: Option<PairedRow<'a>>,
}

/// A Q8_0 / Q8_1 row laid out for the paired 32-value kernels (see the module docs).
/// With `nb` blocks and `np = ceil(nb / 2)` pairs: `qs` has 64 bytes per pair (the odd
/// last block's partner half is zero), `d` and `s` one value per block, zero-padded to
/// a multiple of 8 blocks.
// Only the x86-64 kernels read these layouts (aarch64 sums from the ggml blocks).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct PairedRow<'a> {
    pub blocks: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
}

/// The activations of a batched matmul in the layout its kernels read (see the module
/// docs). `qs` is `n_tokens × cols` quants; `d`, `s` and `nsum32` have one entry per
/// token and 32-value chunk: the activation scale (a Q8_K block's scale repeated over
/// its chunks), the factor the weight minimums multiply (Q8_1: the stored `s`; Q8_0 and
/// Q8_K: `d` times the chunk's quant sum), and the negated quant sum; `nsum16` has the
/// negated quant sum of every 16 values; `nsum4` (Q8_0 / Q8_1 only, else empty) that of
/// every 4 values.
// Only the x86-64 kernels read these layouts (aarch64 sums from the ggml blocks).
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
#[derive(Clone, Copy, Debug)]
pub(crate) struct GemmActivations<'a> {
    pub n_tokens: usize,
    pub cols: usize,
    pub qs: &'a [i8],
    pub d: &'a [f32],
    pub s: &'a [f32],
    pub nsum32: &'a [i32],
    pub nsum16: &'a [i32],
    pub nsum4: &'a [i32],
}

/// From this many tokens on, a matmul uses the batched kernels (when the path has one
/// for the weight type); fewer go through the matrix-vector kernels token by token.
/// Packing a panel costs about as much as four matrix-vector products of it (measured
/// on Zen 5 with the `matmul` benchmarks), so below four tokens it does not pay.
pub const GEMM_MIN_TOKENS: usize = 4;

/// A 32-value activation block's scale, stored `s` (Q8_1 only) and quants.
trait Act32: Block {
    fn parts(&self) -> (f32, Option<f32>, &[i8; 32]);
}

impl Act32 for BlockQ8_0 {
    fn parts(&self) -> (f32, Option<f32>, &[i8; 32]) {
        (self.d.to_f32(), None, &self.qs)
    }
}

impl Act32 for BlockQ8_1 {
    fn parts(&self) -> (f32, Option<f32>, &[i8; 32]) {
        (self.d.to_f32(), Some(self.s.to_f32()), &self.qs)
    }
}

impl QuantizedActivations {
    /// An empty buffer.
    pub fn new() -> Self {
        QuantizedActivations {
            ty: GgmlType::F32,
            cols: 0,
            n_rows: 0,
            row_bytes: 0,
            data: Vec::new(),
            derived: Derived::None,
            qs: Vec::new(),
            nsum: Vec::new(),
            d: Vec::new(),
            s: Vec::new(),
            nsum16: Vec::new(),
            gemm32: Gemm32::default(),
        }
    }

    /// Quantizes `n_rows` rows of `cols` values from `x` (row-major) to
    /// `vec_dot_type(for_weight)`, as llama.cpp's CPU backend does before a matmul with
    /// weights of type `for_weight` (its x86 rounding for Q8_0 / Q8_1, see
    /// [`crate::Kernels::quantize_activation_row`]), with the kernels of this process.
    /// The result can be reused for every matrix whose weights have the same activation
    /// type (e.g. the Q, K and V projections).
    ///
    /// # Panics
    /// If `for_weight` is not a supported weight type, if `x.len() != n_rows * cols`, or
    /// if `cols` is not a whole number of activation blocks. A
    /// [`WeightMatrix`](super::WeightMatrix) built with `try_new` guarantees the last for
    /// its own `cols`.
    pub fn quantize(&mut self, for_weight: GgmlType, x: &[f32], n_rows: usize, cols: usize) {
        self.quantize_with(Kernels::current(), for_weight, x, n_rows, cols);
    }

    /// [`QuantizedActivations::quantize`] with the given kernels' quantizers (every
    /// path's activation quantizers give the same bytes).
    ///
    /// # Panics
    /// As [`QuantizedActivations::quantize`].
    pub fn quantize_with(
        &mut self,
        kernels: Kernels,
        for_weight: GgmlType,
        x: &[f32],
        n_rows: usize,
        cols: usize,
    ) {
        let ty = vec_dot_type(for_weight)
            .unwrap_or_else(|| panic!("no kernels for weight type {for_weight}"));
        assert_eq!(
            x.len(),
            n_rows * cols,
            "activations: {n_rows} rows of {cols} values"
        );
        let row_bytes = match row_bytes(ty, cols) {
            Ok(n) => n,
            Err(e) => panic!("activations: {e}"),
        };
        let quantize_row = kernels
            .quantizer(ty)
            .expect("every activation type has a quantizer");
        self.ty = ty;
        self.cols = cols;
        self.n_rows = n_rows;
        self.row_bytes = row_bytes;
        self.derived = Derived::None;
        self.gemm32.ready = false;
        self.data.resize(n_rows * row_bytes, 0);
        if cols == 0 {
            return;
        }
        for (x, out) in x
            .chunks_exact(cols)
            .zip(self.data.chunks_exact_mut(row_bytes))
        {
            // SAFETY: `kernels` holds a table checked against this CPU's features; each
            // row holds `cols` values on both sides.
            unsafe { quantize_row(x, out) };
        }
        self.prepare();
    }

    /// Takes `n_rows` rows of `cols` values already quantized to the activation type
    /// `ty` (Q8_0, Q8_1, Q8_K, F16, BF16 or F32), e.g. rows kept from an earlier
    /// quantization, and prepares them for matmuls as [`Self::quantize`] does.
    pub fn set_quantized(
        &mut self,
        ty: GgmlType,
        bytes: &[u8],
        n_rows: usize,
        cols: usize,
    ) -> Result<(), KernelError> {
        use GgmlType as T;
        if !matches!(ty, T::Q8_0 | T::Q8_1 | T::Q8_K | T::F16 | T::BF16 | T::F32) {
            return Err(KernelError::UnsupportedType(ty));
        }
        let row_bytes = row_bytes(ty, cols)?;
        let expected = row_bytes.saturating_mul(n_rows);
        if expected != bytes.len() {
            return Err(KernelError::SizeMismatch {
                ty,
                rows: n_rows,
                cols,
                expected,
                actual: bytes.len(),
            });
        }
        self.ty = ty;
        self.cols = cols;
        self.n_rows = n_rows;
        self.row_bytes = row_bytes;
        self.derived = Derived::None;
        self.gemm32.ready = false;
        self.data.clear();
        self.data.extend_from_slice(bytes);
        if cols > 0 {
            self.prepare();
        }
        Ok(())
    }

    /// Derives the kernel layouts for the current rows.
    fn prepare(&mut self) {
        // The 32-value formats follow llama.cpp's per-output summation order for any
        // token count (`quant::order`): the matrix-vector kernels always get the paired
        // layout, the batched kernels (which sum in the same order) their own.
        let batched = self.n_rows >= GEMM_MIN_TOKENS;
        match self.ty {
            GgmlType::Q8_0 => {
                self.prepare_paired::<BlockQ8_0>();
                if batched {
                    self.prepare_gemm32::<BlockQ8_0>();
                }
            }
            GgmlType::Q8_1 => {
                self.prepare_paired::<BlockQ8_1>();
                if batched {
                    self.prepare_gemm32::<BlockQ8_1>();
                }
            }
            _ if batched => self.prepare_gemm(),
            _ => {}
        }
    }

    /// Fills the [`PairedRow`] buffers from the blocks of every row.
    fn prepare_paired<B: Act32>(&mut self) {
        let nb = self.cols / 32;
        let (pairs, padded) = (nb.div_ceil(2), nb.next_multiple_of(8));
        let n = self.n_rows;
        self.qs.clear();
        self.qs.resize(n * pairs * 64, 0);
        self.d.clear();
        self.d.resize(n * padded, 0.0);
        self.s.clear();
        self.s.resize(n * padded, 0.0);
        for t in 0..n {
            let blocks: &[B] = as_blocks(&self.data[t * self.row_bytes..][..self.row_bytes]);
            let qs = &mut self.qs[t * pairs * 64..][..pairs * 64];
            let d = &mut self.d[t * padded..][..padded];
            let s = &mut self.s[t * padded..][..padded];
            for (b, block) in blocks.iter().enumerate() {
                let (bd, bs, q) = block.parts();
                let (p, half) = (b / 2, b % 2);
                let base = p * 64 + half * 16;
                qs[base..base + 16].copy_from_slice(&q[..16]);
                qs[base + 32..base + 48].copy_from_slice(&q[16..]);
                let sum: i32 = q.iter().map(|&v| v as i32).sum();
                d[b] = bd;
                s[b] = bs.unwrap_or(bd * sum as f32);
            }
        }
        self.derived = Derived::Paired;
    }

    /// Fills the [`GemmActivations`] buffers from the blocks: `nsum` holds the
    /// per-32 negated sums here, `nsum16` the per-16 ones.
    fn prepare_gemm(&mut self) {
        let (n, cols) = (self.n_rows, self.cols);
        let chunks = cols / 32;
        self.qs.resize(n * cols, 0);
        self.d.resize(n * chunks, 0.0);
        self.s.resize(n * chunks, 0.0);
        self.nsum.resize(n * chunks, 0);
        self.nsum16.resize(n * cols / 16, 0);
        match self.ty {
            GgmlType::Q8_K => {
                for t in 0..n {
                    let blocks: &[BlockQ8K] =
                        as_blocks(&self.data[t * self.row_bytes..][..self.row_bytes]);
                    for (i, b) in blocks.iter().enumerate() {
                        let at = t * cols + i * QK_K;
                        self.qs[at..at + QK_K].copy_from_slice(&b.qs);
                        let bd = b.d();
                        for j in 0..QK_K / 16 {
                            self.nsum16[at / 16 + j] = -(b.bsum(j) as i32);
                        }
                        for j in 0..QK_K / 32 {
                            let pair = b.bsum(2 * j) as i32 + b.bsum(2 * j + 1) as i32;
                            self.d[at / 32 + j] = bd;
                            self.s[at / 32 + j] = bd * pair as f32;
                            self.nsum[at / 32 + j] = -pair;
                        }
                    }
                }
            }
            _ => return,
        }
        self.derived = Derived::Gemm;
    }

    /// Fills the [`Gemm32`] buffers from the blocks of every row.
    fn prepare_gemm32<B: Act32>(&mut self) {
        let (n, cols) = (self.n_rows, self.cols);
        let g = &mut self.gemm32;
        g.qs.resize(n * cols, 0);
        g.d.resize(n * cols / 32, 0.0);
        g.s.resize(n * cols / 32, 0.0);
        g.nsum4.resize(n * cols / 4, 0);
        for t in 0..n {
            let blocks: &[B] = as_blocks(&self.data[t * self.row_bytes..][..self.row_bytes]);
            for (i, b) in blocks.iter().enumerate() {
                let (d, s, qs) = b.parts();
                let c = t * (cols / 32) + i;
                g.qs[c * 32..(c + 1) * 32].copy_from_slice(qs);
                let mut sum = 0;
                for (l, quad) in qs.chunks_exact(4).enumerate() {
                    let q: i32 = quad.iter().map(|&q| q as i32).sum();
                    g.nsum4[c * 8 + l] = -q;
                    sum += q;
                }
                g.d[c] = d;
                g.s[c] = s.unwrap_or(d * sum as f32);
            }
        }
        g.ready = true;
    }

    /// Row `t` for the matrix-vector kernels.
    pub(crate) fn act_row(&self, t: usize) -> ActRow<'_> {
        let nb = self.cols / 32;
        let (pairs, padded) = (nb.div_ceil(2), nb.next_multiple_of(8));
        let paired = (self.derived == Derived::Paired).then(|| PairedRow {
            blocks: nb,
            qs: &self.qs[t * pairs * 64..][..pairs * 64],
            d: &self.d[t * padded..][..padded],
            s: &self.s[t * padded..][..padded],
        });
        ActRow {
            bytes: self.row(t),
            paired,
        }
    }

    /// The batched-matmul view of the rows, if it was prepared.
    pub(crate) fn gemm_view(&self) -> Option<GemmActivations<'_>> {
        let n = self.n_rows * self.cols;
        if self.gemm32.ready {
            let g = &self.gemm32;
            return Some(GemmActivations {
                n_tokens: self.n_rows,
                cols: self.cols,
                qs: &g.qs[..n],
                d: &g.d[..n / 32],
                s: &g.s[..n / 32],
                nsum32: &[],
                nsum16: &[],
                nsum4: &g.nsum4[..n / 4],
            });
        }
        (self.derived == Derived::Gemm).then(|| GemmActivations {
            n_tokens: self.n_rows,
            cols: self.cols,
            qs: &self.qs[..self.n_rows * self.cols],
            d: &self.d[..self.n_rows * self.cols / 32],
            s: &self.s[..self.n_rows * self.cols / 32],
            nsum32: &self.nsum[..self.n_rows * self.cols / 32],
            nsum16: &self.nsum16[..self.n_rows * self.cols / 16],
            nsum4: &[],
        })
    }

    /// The activation type the rows are stored in.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows (tokens).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Whether these activations can be multiplied with weights of type `weight`.
    pub fn fits(&self, weight: GgmlType) -> bool {
        vec_dot_type(weight) == Some(self.ty)
    }

    /// The bytes of row `t`.
    ///
    /// # Panics
    /// If `t >= self.n_rows()`.
    pub fn row(&self, t: usize) -> &[u8] {
        &self.data[t * self.row_bytes..(t + 1) * self.row_bytes]
    }
}
