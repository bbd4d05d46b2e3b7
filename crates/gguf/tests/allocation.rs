//! No input makes the reader allocate more than a small multiple of the file's size: a
//! counting allocator records the largest single allocation while hostile files (huge
//! counts and lengths in a few bytes, and many random mutations) are parsed.
//!
//! One test only, because the allocator is global to this binary.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use common::Raw;
use tern_gguf::GgufFile;

struct Counting;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; only a counter is
// updated beside it.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Parses `bytes` and returns the largest allocation made while doing so.
fn largest_allocation(bytes: &[u8]) -> usize {
    let input = bytes.to_vec();
    LARGEST.store(0, Ordering::Relaxed);
    let result = GgufFile::from_bytes(input);
    let largest = LARGEST.load(Ordering::Relaxed);
    drop(result);
    largest
}

fn limit(len: usize) -> usize {
    // Typed containers (Vec<String>, tensor infos, the name index) take a few times the
    // bytes they were read from, never more.
    16 * len + 4096
}

#[test]
fn hostile_files_never_cause_large_allocations() {
    let mut files: Vec<(String, Vec<u8>)> = common::bad_cases()
        .into_iter()
        .map(|c| (c.name.to_string(), c.bytes))
        .collect();
    // Counts that exactly fit the bytes left, then fail: pre-allocation stays bounded.
    files.push((
        "max_tensors".into(),
        Raw::header(3, 1000, 0).raw(&[0; 24_000]).bytes,
    ));
    files.push((
        "max_kvs".into(),
        Raw::header(3, 0, 1000).raw(&[0; 13_000]).bytes,
    ));
    files.push((
        "max_strings".into(),
        Raw::header(3, 0, 1)
            .str("k")
            .u32(9)
            .u32(8)
            .u64(10_000)
            .raw(&[0; 80_000])
            .bytes,
    ));
    files.push((
        "max_nested".into(),
        Raw::header(3, 0, 1)
            .str("k")
            .u32(9)
            .u32(9)
            .u64(10_000)
            .raw(&[0; 120_000])
            .bytes,
    ));
    files.push(("valid".into(), common::valid_file()));

    // Random mutations of the valid file (a fixed-seed generator, so failures replay).
    let base = common::valid_file();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for i in 0..3000 {
        let mut bytes = base.clone();
        for _ in 0..1 + next() % 4 {
            let at = (next() % bytes.len() as u64) as usize;
            // Bias toward 0xff so counts and lengths become huge.
            bytes[at] = if next() % 2 == 0 { 0xff } else { next() as u8 };
        }
        files.push((format!("mutation {i}"), bytes));
    }

    for (name, bytes) in &files {
        let largest = largest_allocation(bytes);
        assert!(
            largest <= limit(bytes.len()),
            "{name}: allocated {largest} bytes at once for a {}-byte file",
            bytes.len()
        );
    }
}
