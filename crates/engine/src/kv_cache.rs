//! The key/value cache, shared by the sequences of a batch.
//!
//! Keys and values are stored in F16, as llama.cpp does by default (`--cache-type-k f16`),
//! so attention sees the same rounded values as the reference. Each sequence has its own
//! slot of `capacity` positions (position `p` of a sequence lives at index `p` of its
//! slot); a server gives each request a slot, and the slot operations below — clear,
//! truncate, copy a prefix — are what continuous batching and prefix caching need.
//!
//! Layout per layer: `Shape: (n_seq, capacity, kv_dim)` for keys and for values, where
//! `kv_dim = n_head_kv * head_dim`. Sliding-window layers keep every position for now
//! (the window is applied by the attention mask); a ring buffer of the window size would
//! save memory on long contexts.

use half::f16;
use half::slice::HalfFloatSliceExt;

use crate::Batch;
use crate::error::{Error, ErrorKind, Result};

/// Keys and values of every layer for `n_seq` sequences of up to `capacity` positions.
#[derive(Debug)]
pub struct KvCache {
    capacity: usize,
    layers: Vec<LayerCache>,
    /// Filled positions of each sequence: positions `0..len` hold valid keys/values.
    lens: Vec<usize>,
}

#[derive(Debug)]
struct LayerCache {
    kv_dim: usize,
    /// Shape: (n_seq, capacity, kv_dim).
    keys: Vec<f16>,
    /// Shape: (n_seq, capacity, kv_dim).
    values: Vec<f16>,
}

impl KvCache {
    /// A cache for layers of the given key/value widths (`n_head_kv * head_dim` per layer).
    pub fn new(layer_kv_dims: &[usize], n_seq: usize, capacity: usize) -> Self {
        let layers = layer_kv_dims
            .iter()
            .map(|&kv_dim| LayerCache {
                kv_dim,
                keys: vec![f16::ZERO; n_seq * capacity * kv_dim],
                values: vec![f16::ZERO; n_seq * capacity * kv_dim],
            })
            .collect();
        KvCache {
            capacity,
            layers,
            lens: vec![0; n_seq],
        }
    }

    /// Positions each sequence can hold (the context size).
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Number of sequence slots.
    pub fn n_seq(&self) -> usize {
        self.lens.len()
    }

    /// Bytes held by keys and values.
    pub fn size_bytes(&self) -> usize {
        self.layers
            .iter()
            .map(|l| (l.keys.len() + l.values.len()) * 2)
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
        Ok(())
    }

    /// Forgets every sequence.
    pub fn clear_all(&mut self) {
        self.lens.iter_mut().for_each(|l| *l = 0);
    }

    /// Keeps only the first `len` positions of sequence `seq` (no-op when it is shorter).
    pub fn truncate(&mut self, seq: u32, len: usize) -> Result<()> {
        let s = self.check_seq(seq)?;
        self.lens[s] = self.lens[s].min(len);
        Ok(())
    }

    /// Makes sequence `dst` start with the first `len` positions of sequence `src`
    /// (its own positions from `len` on are dropped): prefix caching copies a shared
    /// prompt prefix instead of recomputing it.
    pub fn copy_prefix(&mut self, src: u32, dst: u32, len: usize) -> Result<()> {
        let (s, d) = (self.check_seq(src)?, self.check_seq(dst)?);
        if len > self.lens[s] {
            return Err(Error::new(ErrorKind::InvalidBatch(format!(
                "cannot copy {len} positions from sequence {src}, which holds {}",
                self.lens[s]
            ))));
        }
        if s != d {
            for layer in &mut self.layers {
                let stride = self.capacity * layer.kv_dim;
                let n = len * layer.kv_dim;
                layer
                    .keys
                    .copy_within(s * stride..s * stride + n, d * stride);
                layer
                    .values
                    .copy_within(s * stride..s * stride + n, d * stride);
            }
        }
        self.lens[d] = len;
        Ok(())
    }

    /// Checks that `batch` can be applied: known sequences, positions inside the
    /// capacity, and each token's position at most the length of its sequence so far
    /// (appending, or overwriting from that position on). No sequence/position pair twice.
    pub(crate) fn check_batch(&self, batch: &Batch, lens: &mut Vec<usize>) -> Result<()> {
        lens.clear();
        lens.extend_from_slice(&self.lens);
        for (i, (&seq, &pos)) in batch.seq_ids().iter().zip(batch.positions()).enumerate() {
            let s = self.check_seq(seq)?;
            let pos = pos as usize;
            if pos >= self.capacity {
                return Err(Error::new(ErrorKind::ContextFull {
                    seq,
                    capacity: self.capacity,
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
        }
        Ok(())
    }

    /// Sets the sequence lengths after a batch was applied (from [`Self::check_batch`]).
    pub(crate) fn set_lens(&mut self, lens: &[usize]) {
        self.lens.copy_from_slice(lens);
    }

    /// Stores the key and value rows of one token (rounded to F16).
    pub(crate) fn store(&mut self, layer: usize, seq: u32, pos: usize, key: &[f32], value: &[f32]) {
        let l = &mut self.layers[layer];
        let start = (seq as usize * self.capacity + pos) * l.kv_dim;
        l.keys[start..start + l.kv_dim].convert_from_f32_slice(key);
        l.values[start..start + l.kv_dim].convert_from_f32_slice(value);
    }

    /// Keys of sequence `seq` in `layer`. Shape: (capacity, kv_dim).
    pub(crate) fn keys(&self, layer: usize, seq: u32) -> &[f16] {
        let l = &self.layers[layer];
        let stride = self.capacity * l.kv_dim;
        &l.keys[seq as usize * stride..(seq as usize + 1) * stride]
    }

    /// Values of sequence `seq` in `layer`. Shape: (capacity, kv_dim).
    pub(crate) fn values(&self, layer: usize, seq: u32) -> &[f16] {
        let l = &self.layers[layer];
        let stride = self.capacity * l.kv_dim;
        &l.values[seq as usize * stride..(seq as usize + 1) * stride]
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

#[cfg(test)]
mod tests {
    use super::*;

    fn cache() -> KvCache {
        KvCache::new(&[4, 4], 3, 8)
    }

    #[test]
    fn positions_must_follow_each_other() {
        let cache = cache();
        let mut lens = Vec::new();
        let mut batch = Batch::default();
        batch.push(1, 0, 0, false);
        batch.push(1, 1, 0, true);
        batch.push(1, 0, 2, true);
        cache.check_batch(&batch, &mut lens).unwrap();
        assert_eq!(lens, vec![2, 0, 1]);

        let mut gap = Batch::default();
        gap.push(1, 1, 0, true);
        let err = cache.check_batch(&gap, &mut lens).unwrap_err();
        assert!(err.to_string().contains("position 1"), "{err}");
    }

    #[test]
    fn unknown_sequence_and_full_context_are_errors() {
        let cache = cache();
        let mut lens = Vec::new();
        let err = cache
            .check_batch(&Batch::for_sequence(&[1], 0, 3), &mut lens)
            .unwrap_err();
        assert!(err.to_string().contains("sequence 3"), "{err}");
        let long: Vec<u32> = (0..9).collect();
        let err = cache
            .check_batch(&Batch::for_sequence(&long, 0, 0), &mut lens)
            .unwrap_err();
        assert!(matches!(err.kind(), ErrorKind::ContextFull { .. }), "{err}");
    }

    #[test]
    fn copy_prefix_copies_values_and_sets_length() {
        let mut cache = cache();
        for pos in 0..3 {
            let k = [pos as f32; 4];
            let v = [pos as f32 + 0.5; 4];
            cache.store(1, 0, pos, &k, &v);
        }
        cache.set_lens(&[3, 5, 0]);
        cache.copy_prefix(0, 1, 2).unwrap();
        assert_eq!(cache.seq_len(1), 2);
        assert_eq!(cache.keys(1, 1)[4].to_f32(), 1.0);
        assert_eq!(cache.values(1, 1)[0].to_f32(), 0.5);
        assert!(cache.copy_prefix(2, 0, 1).is_err(), "sequence 2 is empty");

        cache.truncate(0, 1).unwrap();
        assert_eq!(cache.seq_len(0), 1);
        cache.truncate(0, 5).unwrap();
        assert_eq!(cache.seq_len(0), 1, "truncate never extends");
        cache.clear(1).unwrap();
        assert_eq!(cache.seq_len(1), 0);
    }
}
