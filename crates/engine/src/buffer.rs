//! Large engine buffers (scratch activations, logits, KV cache) in their own anonymous
//! memory mappings instead of the malloc heap, so that dropping them — unloading a model
//! — gives their pages back to the system at once (issue 8: resident memory must drop
//! after an unload).
//!
//! Why not `Vec`: glibc serves a large allocation with its own mapping (returned on free)
//! only above its mmap threshold, and raises that threshold each time such a mapping is
//! freed. After a model load's temporary buffers (Gemma's 262k-token vocabulary) the
//! next model's KV cache and scratch land in the heap, and stay resident after they are
//! freed. A mapping per buffer does not depend on the allocator's history.
//!
//! Mapped through memmap2's safe `map_anon` and viewed with bytemuck's checked casts:
//! no `unsafe` here. Small buffers stay on the heap (a mapping costs a page and a
//! system call; they are not what holds memory).

use std::fmt;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};

use bytemuck::Pod;
use memmap2::MmapMut;

/// Buffers of at least this many bytes get their own mapping.
const MAP_MIN_BYTES: usize = 64 * 1024;

/// A fixed-size, zero-initialised buffer of `T` (f32, f16, bytes, …).
pub struct AnonBuffer<T: Pod> {
    storage: Storage<T>,
    len: usize,
    _values: PhantomData<T>,
}

enum Storage<T> {
    Mapped(MmapMut),
    Heap(Vec<T>),
}

impl<T: Pod> AnonBuffer<T> {
    /// `len` zeros. Large buffers are mapped; if the system refuses the mapping, the
    /// heap is used instead (the memory then returns only as the allocator sees fit).
    pub fn zeroed(len: usize) -> Self {
        let bytes = len * size_of::<T>();
        let storage = if bytes >= MAP_MIN_BYTES {
            match MmapMut::map_anon(bytes) {
                // Anonymous pages read as zeros, and zero bytes are zero values of a
                // `Pod` type; the mapping is page-aligned, so every `T` is aligned.
                Ok(map) => Storage::Mapped(map),
                Err(e) => {
                    tracing::warn!(bytes, "anonymous mapping refused ({e}); using the heap");
                    Storage::Heap(vec![T::zeroed(); len])
                }
            }
        } else {
            Storage::Heap(vec![T::zeroed(); len])
        };
        AnonBuffer {
            storage,
            len,
            _values: PhantomData,
        }
    }

    /// Whether the buffer has its own mapping (large buffers do).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }
}

impl<T: Pod> Deref for AnonBuffer<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        match &self.storage {
            Storage::Mapped(map) => bytemuck::cast_slice(&map[..self.len * size_of::<T>()]),
            Storage::Heap(v) => v,
        }
    }
}

impl<T: Pod> DerefMut for AnonBuffer<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        let bytes = self.len * size_of::<T>();
        match &mut self.storage {
            Storage::Mapped(map) => bytemuck::cast_slice_mut(&mut map[..bytes]),
            Storage::Heap(v) => v,
        }
    }
}

impl<T: Pod> Clone for AnonBuffer<T> {
    fn clone(&self) -> Self {
        let mut copy = AnonBuffer::zeroed(self.len);
        copy.copy_from_slice(self);
        copy
    }
}

impl<T: Pod> fmt::Debug for AnonBuffer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AnonBuffer")
            .field("len", &self.len)
            .field("mapped", &self.is_mapped())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use half::f16;

    #[test]
    fn large_buffers_are_mapped_zeroed_and_writable() {
        let mut big = AnonBuffer::<f32>::zeroed(100_000);
        assert!(big.is_mapped());
        assert_eq!(big.len(), 100_000);
        assert!(big.iter().all(|&v| v == 0.0));
        big[99_999] = 1.5;
        big[0] = -2.0;
        assert_eq!((big[0], big[99_999]), (-2.0, 1.5));
        let copy = big.clone();
        assert_eq!(&copy[..], &big[..]);

        let halves = AnonBuffer::<f16>::zeroed(40_000);
        assert!(halves.is_mapped() && halves.iter().all(|v| *v == f16::ZERO));
    }

    #[test]
    fn small_and_empty_buffers_stay_on_the_heap() {
        let small = AnonBuffer::<f32>::zeroed(10);
        assert!(!small.is_mapped());
        assert_eq!(&small[..], &[0.0; 10]);
        let empty = AnonBuffer::<f32>::zeroed(0);
        assert!(empty.is_empty() && !empty.is_mapped());
    }

    #[test]
    fn dropping_a_mapped_buffer_returns_its_pages() {
        fn rss_kib() -> Option<u64> {
            let status = std::fs::read_to_string("/proc/self/status").ok()?;
            let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse().ok()
        }
        let Some(before) = rss_kib() else { return };
        let mut buffer = AnonBuffer::<f32>::zeroed(64 << 20 >> 2); // 64 MiB
        buffer.fill(1.0); // touch every page
        let touched = rss_kib().unwrap();
        drop(buffer);
        let after = rss_kib().unwrap();
        assert!(touched >= before + 60 * 1024, "{before} -> {touched} KiB");
        assert!(
            after + 60 * 1024 <= touched,
            "{touched} -> {after} KiB after drop"
        );
    }
}
