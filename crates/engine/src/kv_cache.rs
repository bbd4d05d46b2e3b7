//! The key/value cache, shared by the sequences of a batch.
//!
//! Keys and values are stored in one of llama.cpp's cache types ([`KvType`]): F16 by
//! default (`--cache-type-k f16`), or Q8_0 / Q4_0 blocks, quantized row by row as
//! llama.cpp's CPU backend writes them (`ggml_compute_forward_set_rows`: the type's
//! `from_float`, i.e. the run-time Q8_0 quantizer and ggml's reference Q4_0 one). Each
//! sequence has its own slot. Before a quantized cache stores them, keys (with the
//! queries) and values are rotated by a Walsh–Hadamard transform, as llama.cpp does for
//! quantized caches (`llama_kv_cache`: `attn_rot_k` / `attn_rot_v`, on when the head
//! size is a multiple of 64): the rotation spreads outliers over a block, so 4- and 8-bit
//! blocks lose less, and being orthonormal it leaves K·Q unchanged; attention rotates its
//! output back ([`hadamard`]). A server gives each request a slot, and the slot
//! operations below — clear, truncate, copy a prefix — are what continuous batching and
//! prefix caching need.
//!
//! Layout per layer: `Shape: (n_seq, positions, kv_row)`, where a row holds the keys (or
//! values) of one position, `kv_dim = n_head_kv * head_dim` values in the cache type.
//! A global layer holds `capacity` positions (position `p` at index `p`). A
//! sliding-window layer holds only as many positions as llama.cpp's SWA cache has cells
//! (`llama_kv_cache_iswa`: `n_swa + n_ubatch` rounded up to a multiple of 256, at most
//! the context), as a ring buffer: position `p` at index `p % positions`. That is the
//! cell llama.cpp's `llama_kv_cache::find_slot` gives position `p` of a fresh sequence
//! fed in batches of at most `n_ubatch` tokens: it fills cells from its head onwards and
//! reuses a cell once the cell's position is outside the window of the sequence's next
//! position, which with that many cells is the cell `n_swa + n_ubatch` positions back.
//! Attention walks the rows in row order, as ggml walks cells (see
//! [`crate::attention`]), so the logits match llama.cpp's also after the ring wraps. The
//! ring holds the window of the first token of a batch while the batch's own keys are
//! written. The price: a ring forgets old positions, so a sequence can only be cut back
//! (to reuse a prefix) by a little more than `max_batch` positions;
//! [`KvCache::reusable_prefix`] says how far.

use std::fmt;
use std::str::FromStr;

use half::f16;
use half::slice::HalfFloatSliceExt;
use tern_gguf::GgmlType;

use crate::Batch;
use crate::attention::{Cached, KvRows};
use crate::buffer::AnonBuffer;
use crate::config::ModelConfig;
use crate::error::{Error, ErrorKind, Result};

/// The type cached keys and values are stored in (llama.cpp's `--cache-type-k/-v`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KvType {
    /// Half precision: 2 bytes a value, llama.cpp's default.
    #[default]
    F16,
    /// 8-bit blocks of 32 values with an F16 scale: 34 bytes per 32 values.
    Q8_0,
    /// 4-bit blocks of 32 values with an F16 scale: 18 bytes per 32 values.
    Q4_0,
}

impl KvType {
    /// Every type, F16 first.
    pub const ALL: [KvType; 3] = [KvType::F16, KvType::Q8_0, KvType::Q4_0];

    /// llama.cpp's name: `f16`, `q8_0`, `q4_0`.
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// The ggml tensor type.
    pub fn ggml_type(self) -> GgmlType {
        match self {
            KvType::F16 => GgmlType::F16,
            KvType::Q8_0 => GgmlType::Q8_0,
            KvType::Q4_0 => GgmlType::Q4_0,
        }
    }

    /// Values per block: rows must be a whole number of blocks, and for the quantized
    /// types each head (`head_dim` values) too, since attention reads heads separately.
    pub fn block_size(self) -> usize {
        self.ggml_type().block_size()
    }

    /// Bytes of a row of `values` values (`values` a multiple of [`Self::block_size`]).
    pub fn row_bytes(self, values: usize) -> usize {
        let ty = self.ggml_type();
        values / ty.block_size() * ty.type_size()
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for KvType {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        KvType::ALL
            .into_iter()
            .find(|t| t.name().eq_ignore_ascii_case(s))
            .ok_or_else(|| {
                Error::new(ErrorKind::InvalidInput(format!(
                    "unknown KV cache type `{s}` (expected f16, q8_0 or q4_0)"
                )))
            })
    }
}

/// llama.cpp rounds the cells of its sliding-window cache up to a multiple of this
/// (`llama_kv_cache_iswa`, "the SWA cache is always padded to 256").
const SWA_CELL_PAD: usize = 256;

/// One layer of a cache: its key/value width and sliding window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KvLayerSpec {
    /// `n_head_kv * head_dim`.
    pub kv_dim: usize,
    /// Values per head (quantized types need a whole number of blocks per head).
    pub head_dim: usize,
    /// The layer's sliding window, if it is a sliding-window layer.
    pub window: Option<usize>,
}

/// Everything that decides a cache's size: computed before allocating, so the size can
/// be shown (and refused) first ([`KvCacheSpec::bytes`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvCacheSpec {
    pub kv_type: KvType,
    pub layers: Vec<KvLayerSpec>,
    /// Sequence slots.
    pub n_seq: usize,
    /// Positions each sequence can hold (the context size).
    pub capacity: usize,
    /// Most tokens of one sequence in one batch (llama.cpp's `n_ubatch`). Sliding-window
    /// layers keep `window + max_batch` positions rounded up to a multiple of 256, at
    /// most `capacity`.
    pub max_batch: usize,
}

impl KvCacheSpec {
    /// The cache a model of `config` needs for `n_seq` sequences of up to `capacity`
    /// positions, fed at most `max_batch` tokens of a sequence per pass.
    pub fn for_config(
        config: &ModelConfig,
        kv_type: KvType,
        n_seq: usize,
        capacity: usize,
        max_batch: usize,
    ) -> Self {
        KvCacheSpec {
            kv_type,
            layers: config
                .layers
                .iter()
                .map(|l| KvLayerSpec {
                    kv_dim: config.kv_dim(),
                    head_dim: config.key_length,
                    window: l.sliding_window,
                })
                .collect(),
            n_seq,
            capacity,
            max_batch,
        }
    }

    /// Positions layer `layer` keeps per sequence: for a sliding-window layer the cells
    /// of llama.cpp's SWA cache (`llama_kv_cache_iswa::llama_kv_cache_iswa`:
    /// `GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256)`), at most the context (a ring as
    /// long as the context never wraps, so it equals a full cache).
    pub fn positions(&self, layer: &KvLayerSpec) -> usize {
        match layer.window {
            Some(w) => w
                .max(1)
                .saturating_add(self.max_batch.max(1))
                .min(self.capacity)
                .next_multiple_of(SWA_CELL_PAD)
                .min(self.capacity),
            None => self.capacity,
        }
    }

    /// Bytes the cache's keys and values take.
    pub fn bytes(&self) -> u64 {
        self.layers
            .iter()
            .map(|l| 2 * self.positions(l) as u64 * self.kv_type.row_bytes(l.kv_dim) as u64)
            .sum::<u64>()
            * self.n_seq as u64
    }

    /// Checks that the type fits the heads and the sizes are positive.
    pub(crate) fn check(&self) -> Result<()> {
        let bs = self.kv_type.block_size();
        for (i, l) in self.layers.iter().enumerate() {
            if l.head_dim == 0 || !l.head_dim.is_multiple_of(bs) || !l.kv_dim.is_multiple_of(bs) {
                return Err(Error::new(ErrorKind::InvalidInput(format!(
                    "a {} KV cache needs heads of a multiple of {bs} values; layer {i} has \
                     heads of {} (use --kv-type f16)",
                    self.kv_type, l.head_dim
                ))));
            }
        }
        if self.capacity == 0 || self.n_seq == 0 {
            return Err(Error::new(ErrorKind::InvalidInput(
                "a KV cache needs at least one sequence and one position".into(),
            )));
        }
        Ok(())
    }
}

/// Keys and values of every layer for `n_seq` sequences of up to `capacity` positions.
#[derive(Debug)]
pub struct KvCache {
    spec: KvCacheSpec,
    layers: Vec<LayerCache>,
    /// Filled positions of each sequence: positions `0..len` hold valid keys/values.
    lens: Vec<usize>,
    /// Per sequence, the lowest position every ring layer still holds: writing position
    /// `p` overwrites `p - positions` in a ring.
    oldest: Vec<usize>,
    /// The smallest ring (positions of the sliding-window layers), if any layer is one.
    ring: Option<usize>,
    /// The largest sliding window.
    window: usize,
    /// Walsh–Hadamard block sizes of keys and values (0: not rotated).
    rotation: Rotation,
    /// A rotated row before it is quantized.
    rotated: Vec<f32>,
}

/// Walsh–Hadamard block sizes of a quantized cache's keys and values (0: none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    pub keys: usize,
    pub values: usize,
}

impl Rotation {
    /// llama.cpp's choice (`llama_kv_cache::build_input_k_rot` / `_v_rot`): for a
    /// quantized type and heads of a multiple of 64 values, keys in blocks of the largest
    /// power of two dividing the head size, values in blocks of 64.
    pub fn for_cache(kv_type: KvType, head_dim: usize) -> Rotation {
        if kv_type == KvType::F16 || head_dim == 0 || !head_dim.is_multiple_of(64) {
            return Rotation::default();
        }
        Rotation {
            keys: 1 << head_dim.trailing_zeros(),
            values: 64,
        }
    }
}

/// The orthonormal Walsh–Hadamard transform (Sylvester order) of each block of `n`
/// values of `x`, in place: ggml's `ggml_compute_forward_fwht` (scale by `1/sqrt(n)`
/// first, then the butterflies). Its own inverse. `n` is a power of two dividing
/// `x.len()`; `n == 0` leaves `x` as it is.
pub fn hadamard(x: &mut [f32], n: usize) {
    if n < 2 {
        return;
    }
    let scale = 1.0 / (n as f32).sqrt();
    for block in x.chunks_exact_mut(n) {
        block.iter_mut().for_each(|v| *v *= scale);
        let mut len = 1;
        while len < n {
            for i in (0..n).step_by(2 * len) {
                for j in i..i + len {
                    let (u, v) = (block[j], block[j + len]);
                    block[j] = u + v;
                    block[j + len] = u - v;
                }
            }
            len *= 2;
        }
    }
}

#[derive(Debug)]
struct LayerCache {
    kv_dim: usize,
    head_dim: usize,
    /// Positions held per sequence.
    positions: usize,
    /// Bytes (quantized) or values (F16) of one position's row.
    row: usize,
    /// Shape: (n_seq, positions, row).
    keys: Storage,
    /// Shape: (n_seq, positions, row).
    values: Storage,
}

/// Each layer's keys or values in their own anonymous mapping ([`AnonBuffer`]), so a
/// dropped cache gives its pages back to the system at once.
#[derive(Debug)]
enum Storage {
    F16(AnonBuffer<f16>),
    Quantized(AnonBuffer<u8>),
}

impl Storage {
    fn new(kv_type: KvType, len: usize) -> Self {
        match kv_type {
            // Written once now, as llama.cpp clears its KV buffer at allocation: the
            // pages become resident at load, so the memory a model holds is what the
            // runtime reserved for it, not something that grows under later requests.
            KvType::F16 => {
                let mut buffer = AnonBuffer::zeroed(len);
                buffer.fill(f16::ZERO);
                Storage::F16(buffer)
            }
            _ => {
                let mut buffer = AnonBuffer::zeroed(len);
                buffer.fill(0);
                Storage::Quantized(buffer)
            }
        }
    }

    fn bytes(&self) -> usize {
        match self {
            Storage::F16(v) => v.len() * 2,
            Storage::Quantized(v) => v.len(),
        }
    }

    fn copy_within(&mut self, src: std::ops::Range<usize>, dst: usize) {
        match self {
            Storage::F16(v) => v.copy_within(src, dst),
            Storage::Quantized(v) => v.copy_within(src, dst),
        }
    }
}

/// Per-batch bookkeeping computed by [`KvCache::check_batch`] and applied after the pass
/// (the forward pass keeps one in its scratch, so a pass allocates nothing).
#[derive(Debug, Default)]
pub(crate) struct PendingLens {
    lens: Vec<usize>,
    oldest: Vec<usize>,
    /// First position of each sequence in the batch (`usize::MAX`: not in it).
    first: Vec<usize>,
}

impl KvCache {
    /// A cache of the given shape.
    pub fn new(spec: KvCacheSpec) -> Result<Self> {
        spec.check()?;
        Ok(Self::allocate(spec))
    }

    /// A cache of a shape already checked ([`KvCacheSpec::check`]).
    pub(crate) fn allocate(spec: KvCacheSpec) -> Self {
        let row_of = |kv_dim: usize| match spec.kv_type {
            KvType::F16 => kv_dim,
            t => t.row_bytes(kv_dim),
        };
        let layers: Vec<LayerCache> = spec
            .layers
            .iter()
            .map(|l| {
                let positions = spec.positions(l);
                let row = row_of(l.kv_dim);
                let len = spec.n_seq * positions * row;
                LayerCache {
                    kv_dim: l.kv_dim,
                    head_dim: l.head_dim,
                    positions,
                    row,
                    keys: Storage::new(spec.kv_type, len),
                    values: Storage::new(spec.kv_type, len),
                }
            })
            .collect();
        let ring = layers
            .iter()
            .filter(|l| l.positions < spec.capacity)
            .map(|l| l.positions)
            .min();
        let window = spec
            .layers
            .iter()
            .filter_map(|l| l.window)
            .max()
            .unwrap_or(0);
        let head_dim = spec.layers.iter().map(|l| l.head_dim).max().unwrap_or(0);
        let widest = spec.layers.iter().map(|l| l.kv_dim).max().unwrap_or(0);
        KvCache {
            lens: vec![0; spec.n_seq],
            oldest: vec![0; spec.n_seq],
            rotation: Rotation::for_cache(spec.kv_type, head_dim),
            rotated: vec![0.0; widest],
            spec,
            layers,
            ring,
            window,
        }
    }

    /// The shape the cache was made with.
    pub fn spec(&self) -> &KvCacheSpec {
        &self.spec
    }

    /// The type keys and values are stored in.
    pub fn kv_type(&self) -> KvType {
        self.spec.kv_type
    }

    /// Positions each sequence can hold (the context size).
    pub fn capacity(&self) -> usize {
        self.spec.capacity
    }

    /// Number of sequence slots.
    pub fn n_seq(&self) -> usize {
        self.lens.len()
    }

    /// Bytes held by keys and values.
    pub fn size_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| l.keys.bytes() + l.values.bytes())
            .sum()
    }

    /// Number of filled positions of sequence `seq` (0 for an unknown sequence).
    pub fn seq_len(&self, seq: u32) -> usize {
        self.lens.get(seq as usize).copied().unwrap_or(0)
    }

    /// Forgets every position of sequence `seq`.
    pub fn clear(&mut self, seq: u32) -> Result<()> {
        let s = self.check_seq(seq)?;
        self.lens[s] = 0;
        self.oldest[s] = 0;
        Ok(())
    }

    /// Forgets every sequence.
    pub fn clear_all(&mut self) {
        self.lens.iter_mut().for_each(|l| *l = 0);
        self.oldest.iter_mut().for_each(|l| *l = 0);
    }

    /// The longest prefix of at most `len` positions of sequence `seq` that can be kept
    /// and extended: `len` itself (capped at the sequence's length), or 0 when the
    /// sliding-window layers no longer hold the window before position `len` (the ring
    /// overwrote it). Without sliding-window layers every prefix can be kept.
    pub fn reusable_prefix(&self, seq: u32, len: usize) -> usize {
        let Some(&filled) = self.lens.get(seq as usize) else {
            return 0;
        };
        let len = len.min(filled);
        if self.window_start(len) >= self.oldest[seq as usize] {
            len
        } else {
            0
        }
    }

    /// Keeps the first `len` positions of sequence `seq` (no-op when it is shorter), or
    /// none when the sliding-window layers cannot extend that prefix any more (see
    /// [`Self::reusable_prefix`]). Returns the positions kept.
    pub fn truncate(&mut self, seq: u32, len: usize) -> Result<usize> {
        let s = self.check_seq(seq)?;
        let keep = self.reusable_prefix(seq, len);
        self.lens[s] = keep;
        if keep == 0 {
            self.oldest[s] = 0;
        }
        Ok(keep)
    }

    /// Makes sequence `dst` start with the first `len` positions of sequence `src`
    /// (its own positions from `len` on are dropped): prefix caching copies a shared
    /// prompt prefix instead of recomputing it. Fails when `src` holds fewer positions,
    /// or when its sliding-window layers no longer hold the window before `len`.
    pub fn copy_prefix(&mut self, src: u32, dst: u32, len: usize) -> Result<()> {
        let (s, d) = (self.check_seq(src)?, self.check_seq(dst)?);
        if len > self.lens[s] || self.reusable_prefix(src, len) != len {
            return Err(Error::new(ErrorKind::InvalidBatch(format!(
                "cannot copy {len} positions from sequence {src}, which holds {} (the last \
                 {} of them in its sliding-window layers)",
                self.lens[s],
                self.lens[s] - self.oldest[s]
            ))));
        }
        if s != d {
            let from = self.window_start(len);
            for layer in &mut self.layers {
                let stride = layer.positions * layer.row;
                if layer.positions >= self.spec.capacity {
                    let n = len * layer.row;
                    layer
                        .keys
                        .copy_within(s * stride..s * stride + n, d * stride);
                    layer
                        .values
                        .copy_within(s * stride..s * stride + n, d * stride);
                } else {
                    for p in from..len {
                        let at = (p % layer.positions) * layer.row;
                        let range = s * stride + at..s * stride + at + layer.row;
                        layer.keys.copy_within(range.clone(), d * stride + at);
                        layer.values.copy_within(range, d * stride + at);
                    }
                }
            }
            self.oldest[d] = from;
        }
        self.lens[d] = len;
        Ok(())
    }

    /// The first position a token at `pos` attends to in the widest sliding window (0
    /// without sliding-window layers).
    fn window_start(&self, pos: usize) -> usize {
        if self.ring.is_none() {
            return 0;
        }
        (pos + 1).saturating_sub(self.window.max(1))
    }

    /// Checks that `batch` can be applied: known sequences, positions inside the
    /// capacity, and each token's position at most the length of its sequence so far
    /// (appending, or overwriting from that position on); with sliding-window rings, no
    /// sequence spans more positions in one batch than the ring spares, and the window
    /// before its first token is still held.
    pub(crate) fn check_batch(&self, batch: &Batch, pending: &mut PendingLens) -> Result<()> {
        pending.lens.clear();
        pending.lens.extend_from_slice(&self.lens);
        pending.oldest.clear();
        pending.oldest.extend_from_slice(&self.oldest);
        pending.first.clear();
        pending.first.resize(self.lens.len(), usize::MAX);
        let lens = &mut pending.lens;
        for (i, (&seq, &pos)) in batch.seq_ids().iter().zip(batch.positions()).enumerate() {
            let s = self.check_seq(seq)?;
            let pos = pos as usize;
            if pos >= self.spec.capacity {
                return Err(Error::new(ErrorKind::ContextFull {
                    seq,
                    capacity: self.spec.capacity,
                }));
            }
            if pos > lens[s] {
                return Err(Error::new(ErrorKind::InvalidBatch(format!(
                    "token {i} of the batch is at position {pos} of sequence {seq}, which holds \
                     only {} positions (positions must follow each other)",
                    lens[s]
                ))));
            }
            lens[s] = pos + 1;
            if let Some(ring) = self.ring {
                let first = &mut pending.first[s];
                if *first == usize::MAX {
                    *first = pos;
                    if self.window_start(pos) < self.oldest[s] {
                        return Err(Error::new(ErrorKind::InvalidBatch(format!(
                            "position {pos} of sequence {seq} needs positions the \
                             sliding-window cache no longer holds (truncate it first)"
                        ))));
                    }
                }
                let spare = ring + 1 - self.window.min(ring);
                if pos.abs_diff(*first) + 1 > spare {
                    return Err(Error::new(ErrorKind::InvalidBatch(format!(
                        "sequence {seq} has more than {spare} tokens in one batch, more than \
                         its sliding-window cache was made for (split the batch)"
                    ))));
                }
                pending.oldest[s] = pending.oldest[s].max((pos + 1).saturating_sub(ring));
            }
        }
        Ok(())
    }

    /// Sets the sequence lengths after a batch was applied (from [`Self::check_batch`]).
    pub(crate) fn set_lens(&mut self, pending: &PendingLens) {
        self.lens.copy_from_slice(&pending.lens);
        self.oldest.copy_from_slice(&pending.oldest);
    }

    /// Stores the key and value rows of one token, in the cache's type.
    pub(crate) fn store(&mut self, layer: usize, seq: u32, pos: usize, key: &[f32], value: &[f32]) {
        let kv_type = self.spec.kv_type;
        let l = &mut self.layers[layer];
        let start = (seq as usize * l.positions + pos % l.positions) * l.row;
        let range = start..start + l.row;
        match (&mut l.keys, &mut l.values) {
            (Storage::F16(k), Storage::F16(v)) => {
                k[range.clone()].convert_from_f32_slice(key);
                v[range].convert_from_f32_slice(value);
            }
            (Storage::Quantized(k), Storage::Quantized(v)) => {
                let rotated = &mut self.rotated[..key.len()];
                rotated.copy_from_slice(key);
                hadamard(rotated, self.rotation.keys);
                quantize(kv_type, rotated, &mut k[range.clone()]);
                rotated.copy_from_slice(value);
                hadamard(rotated, self.rotation.values);
                quantize(kv_type, rotated, &mut v[range]);
            }
            _ => unreachable!("keys and values share one storage type"),
        }
    }

    /// The cached keys and values of sequence `seq` in `layer`, for attention.
    pub(crate) fn cached<'a>(&'a self, layer: usize, seq: u32) -> Cached<'a> {
        let l = &self.layers[layer];
        let stride = l.positions * l.row;
        let range = seq as usize * stride..(seq as usize + 1) * stride;
        let kv_type = self.spec.kv_type;
        let rows = |storage: &'a Storage| -> KvRows<'a> {
            match storage {
                Storage::F16(v) => KvRows::F16(&v[range.clone()]),
                Storage::Quantized(v) => KvRows::Quantized {
                    ty: kv_type.ggml_type(),
                    bytes: &v[range.clone()],
                    row_bytes: l.row,
                    head_bytes: kv_type.row_bytes(l.head_dim),
                },
            }
        };
        Cached {
            keys: rows(&l.keys),
            values: rows(&l.values),
            positions: l.positions,
            rotation: self.rotation,
        }
    }

    /// Number of layers the cache was made for.
    pub(crate) fn n_layers(&self) -> usize {
        self.layers.len()
    }

    /// Key/value width of `layer`.
    pub(crate) fn kv_dim(&self, layer: usize) -> usize {
        self.layers[layer].kv_dim
    }

    fn check_seq(&self, seq: u32) -> Result<usize> {
        let s = seq as usize;
        if s >= self.lens.len() {
            return Err(Error::new(ErrorKind::InvalidBatch(format!(
                "sequence {seq} does not exist (the cache has {} sequences)",
                self.lens.len()
            ))));
        }
        Ok(s)
    }
}

/// One row in a quantized cache type, as llama.cpp's CPU backend writes it: Q8_0 with
/// the run-time quantizer (x86 rounding), Q4_0 with ggml's reference
/// (`quantize_row_q4_0` calls `quantize_row_q4_0_ref`). Lengths are consistent by
/// construction of the cache.
fn quantize(kv_type: KvType, x: &[f32], out: &mut [u8]) {
    let result = match kv_type {
        KvType::Q8_0 => tern_kernels::quantize_activation_row(GgmlType::Q8_0, x, out),
        other => tern_kernels::quantize_row(other.ggml_type(), x, out),
    };
    debug_assert!(result.is_ok(), "{result:?}");
}

#[cfg(test)]
#[path = "kv_cache_tests.rs"]
mod tests;
