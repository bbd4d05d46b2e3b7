//! Unit tests of the KV cache: batch checks, slot operations, the sliding-window ring and
//! the quantized types.

use super::*;

fn spec(
    kv_type: KvType,
    windows: &[Option<usize>],
    capacity: usize,
    max_batch: usize,
) -> KvCacheSpec {
    KvCacheSpec {
        kv_type,
        layers: windows
            .iter()
            .map(|&window| KvLayerSpec {
                kv_dim: 64,
                head_dim: 32,
                window,
            })
            .collect(),
        n_seq: 3,
        capacity,
        max_batch,
    }
}

fn cache() -> KvCache {
    KvCache::new(spec(KvType::F16, &[None, None], 8, 8)).unwrap()
}

fn key(cache: &KvCache, layer: usize, seq: u32, pos: usize) -> f32 {
    let cached = cache.cached(layer, seq);
    match cached.keys {
        KvRows::F16(k) => k[(pos % cached.positions) * 64].to_f32(),
        KvRows::Quantized { .. } => panic!("f16 cache expected"),
    }
}

/// Stores row values `pos` (keys) and `pos + 0.5` (values) at `positions` of `seq`
/// through a real batch check, as the forward pass does.
fn fill(cache: &mut KvCache, seq: u32, positions: std::ops::Range<usize>) {
    let mut batch = Batch::default();
    for p in positions.clone() {
        batch.push(1, p as u32, seq, false);
    }
    let mut pending = PendingLens::default();
    cache.check_batch(&batch, &mut pending).unwrap();
    for layer in 0..cache.n_layers() {
        for p in positions.clone() {
            cache.store(layer, seq, p, &[p as f32; 64], &[p as f32 + 0.5; 64]);
        }
    }
    cache.set_lens(&pending);
}

#[test]
fn positions_must_follow_each_other() {
    let cache = cache();
    let mut pending = PendingLens::default();
    let mut batch = Batch::default();
    batch.push(1, 0, 0, false);
    batch.push(1, 1, 0, true);
    batch.push(1, 0, 2, true);
    cache.check_batch(&batch, &mut pending).unwrap();
    assert_eq!(pending.lens, vec![2, 0, 1]);

    let mut gap = Batch::default();
    gap.push(1, 1, 0, true);
    let err = cache.check_batch(&gap, &mut pending).unwrap_err();
    assert!(err.to_string().contains("position 1"), "{err}");
}

#[test]
fn unknown_sequence_and_full_context_are_errors() {
    let cache = cache();
    let mut pending = PendingLens::default();
    let err = cache
        .check_batch(&Batch::for_sequence(&[1], 0, 3), &mut pending)
        .unwrap_err();
    assert!(err.to_string().contains("sequence 3"), "{err}");
    let long: Vec<u32> = (0..9).collect();
    let err = cache
        .check_batch(&Batch::for_sequence(&long, 0, 0), &mut pending)
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::ContextFull { .. }), "{err}");
}

#[test]
fn copy_prefix_copies_values_and_sets_length() {
    let mut cache = cache();
    fill(&mut cache, 0, 0..3);
    fill(&mut cache, 1, 0..5);
    cache.copy_prefix(0, 1, 2).unwrap();
    assert_eq!(cache.seq_len(1), 2);
    assert_eq!(key(&cache, 1, 1, 1), 1.0);
    assert!(cache.copy_prefix(2, 0, 1).is_err(), "sequence 2 is empty");

    assert_eq!(cache.truncate(0, 1).unwrap(), 1);
    assert_eq!(cache.seq_len(0), 1);
    cache.truncate(0, 5).unwrap();
    assert_eq!(cache.seq_len(0), 1, "truncate never extends");
    cache.clear(1).unwrap();
    assert_eq!(cache.seq_len(1), 0);
}

#[test]
fn sliding_window_rings_have_llama_cpp_s_cell_count() {
    // `GGML_PAD(min(n_ctx, n_swa + n_ubatch), 256)` cells, at most the context.
    let positions = |window, capacity, max_batch| {
        let spec = spec(KvType::F16, &[Some(window)], capacity, max_batch);
        spec.positions(&spec.layers[0])
    };
    assert_eq!(
        positions(512, 2048, 512),
        1024,
        "Gemma 3 at llama.cpp's defaults"
    );
    assert_eq!(positions(512, 2048, 100), 768);
    assert_eq!(positions(512, 800, 512), 800);
    assert_eq!(positions(4, 32, 3), 32);
    assert_eq!(positions(4, 600, 3), 256);
}

#[test]
fn sliding_window_layers_keep_window_plus_batch_positions() {
    // Window 250, batches of up to 3 tokens: the ring holds 253 positions rounded up to
    // 256, the global layer 600.
    let (window, ring, len) = (250, 256, 520);
    let spec = spec(KvType::F16, &[Some(window), None], 600, 3);
    assert_eq!(spec.positions(&spec.layers[0]), ring);
    assert_eq!(spec.positions(&spec.layers[1]), 600);
    assert_eq!(spec.bytes(), 3 * 2 * (ring as u64 + 600) * 64 * 2);
    let mut cache = KvCache::new(spec.clone()).unwrap();
    assert_eq!(cache.size_bytes() as u64, spec.bytes());

    for start in (0..len).step_by(3) {
        fill(&mut cache, 0, start..(start + 3).min(len));
    }
    assert_eq!(cache.seq_len(0), len);
    // The ring holds positions 264..520, position p at row p % 256.
    for p in len - ring..len {
        assert_eq!(key(&cache, 0, 0, p), p as f32);
        assert_eq!(key(&cache, 1, 0, p), p as f32);
    }
    assert_eq!(
        key(&cache, 1, 0, 3),
        3.0,
        "the global layer keeps everything"
    );

    // Going back is possible while the window before the new end is held: 513 needs
    // 264.., 512 needs 263.
    assert_eq!(cache.reusable_prefix(0, 513), 513);
    assert_eq!(cache.reusable_prefix(0, 512), 0);
    assert_eq!(cache.truncate(0, 518).unwrap(), 518);
    fill(&mut cache, 0, 518..520);
    assert_eq!(
        cache.truncate(0, 10).unwrap(),
        0,
        "the ring lost position 0.."
    );
    assert_eq!(cache.seq_len(0), 0);

    // More tokens of one sequence in a batch than the ring spares (256 + 1 - 250) is
    // refused.
    let mut pending = PendingLens::default();
    let eight: Vec<u32> = (1..=8).collect();
    let err = cache
        .check_batch(&Batch::for_sequence(&eight, 0, 0), &mut pending)
        .unwrap_err();
    assert!(err.to_string().contains("split the batch"), "{err}");
    assert!(
        cache
            .check_batch(&Batch::for_sequence(&eight[..7], 0, 0), &mut pending)
            .is_ok()
    );
}

#[test]
fn copy_prefix_through_a_ring_copies_the_window() {
    let mut cache = KvCache::new(spec(KvType::F16, &[Some(250), None], 600, 3)).unwrap();
    for start in (0..270).step_by(3) {
        fill(&mut cache, 0, start..start + 3);
    }
    cache.copy_prefix(0, 2, 269).unwrap();
    assert_eq!(cache.seq_len(2), 269);
    // Position 269's window: 20..=269, so 20..269 are copied.
    for p in 20..269 {
        assert_eq!(key(&cache, 0, 2, p), p as f32);
    }
    assert_eq!(cache.reusable_prefix(2, 268), 0, "a copy cannot go back");
    // Sequence 0 holds 14..270 in its ring: 263 needs 14.., 262 needs 13 — gone.
    assert!(cache.copy_prefix(0, 1, 263).is_ok());
    assert!(cache.copy_prefix(0, 1, 262).is_err());
}

#[test]
fn quantized_rows_round_trip_within_their_precision() {
    for (kv_type, bytes, tolerance) in [(KvType::Q8_0, 34, 0.01), (KvType::Q4_0, 18, 0.15)] {
        let spec = spec(kv_type, &[None], 4, 4);
        assert_eq!(spec.bytes(), 3 * 2 * 4 * 2 * bytes);
        let mut cache = KvCache::new(spec).unwrap();
        let row: Vec<f32> = (0..64).map(|i| (i as f32 * 0.37).sin()).collect();
        cache.store(0, 1, 2, &row, &row);
        let KvRows::Quantized {
            ty,
            bytes: keys,
            row_bytes,
            head_bytes,
        } = cache.cached(0, 1).keys
        else {
            panic!("quantized rows expected");
        };
        assert_eq!(
            (row_bytes, head_bytes),
            (2 * bytes as usize, bytes as usize)
        );
        let mut back = vec![0.0; 64];
        tern_kernels::dequantize_row(ty, &keys[2 * row_bytes..3 * row_bytes], &mut back).unwrap();
        for (a, b) in row.iter().zip(&back) {
            assert!((a - b).abs() < tolerance, "{kv_type}: {a} vs {b}");
        }
    }
}

#[test]
fn quantized_types_need_whole_blocks_per_head() {
    let mut bad = spec(KvType::Q8_0, &[None], 4, 4);
    bad.layers[0].head_dim = 48;
    bad.layers[0].kv_dim = 96;
    let err = KvCache::new(bad.clone()).unwrap_err().to_string();
    assert!(err.contains("q8_0") && err.contains("48"), "{err}");
    bad.kv_type = KvType::F16;
    assert!(KvCache::new(bad).is_ok());
}

#[test]
fn type_names_are_llama_cpp_s() {
    for t in KvType::ALL {
        assert_eq!(t.name().parse::<KvType>().unwrap(), t);
    }
    assert_eq!("Q8_0".parse::<KvType>().unwrap(), KvType::Q8_0);
    assert!("q5_1".parse::<KvType>().is_err());
    assert_eq!(KvType::Q4_0.row_bytes(64), 36);
    assert_eq!(KvType::F16.row_bytes(64), 128);
}

#[test]
fn hadamard_is_sylvester_orthonormal_and_its_own_inverse() {
    // H4 = [[1,1,1,1],[1,-1,1,-1],[1,1,-1,-1],[1,-1,-1,1]] / 2.
    let mut x = [1.0, 2.0, 3.0, 4.0];
    hadamard(&mut x, 4);
    assert_eq!(x, [5.0, -1.0, -2.0, 0.0]);
    let a: Vec<f32> = (0..256).map(|i| (i as f32 * 0.71).sin()).collect();
    let b: Vec<f32> = (0..256).map(|i| (i as f32 * 0.13).cos()).collect();
    let (mut ra, mut rb) = (a.clone(), b.clone());
    hadamard(&mut ra, 256);
    hadamard(&mut rb, 256);
    let dot = |x: &[f32], y: &[f32]| x.iter().zip(y).map(|(p, q)| p * q).sum::<f32>();
    assert!((dot(&a, &b) - dot(&ra, &rb)).abs() < 1e-3);
    hadamard(&mut ra, 256);
    for (p, q) in a.iter().zip(&ra) {
        assert!((p - q).abs() < 1e-5);
    }
}

#[test]
fn rotation_follows_llama_cpp() {
    assert_eq!(Rotation::for_cache(KvType::F16, 64), Rotation::default());
    let r = |keys, values| Rotation { keys, values };
    assert_eq!(Rotation::for_cache(KvType::Q8_0, 64), r(64, 64));
    assert_eq!(Rotation::for_cache(KvType::Q4_0, 256), r(256, 64));
    assert_eq!(Rotation::for_cache(KvType::Q8_0, 192), r(64, 64));
    assert_eq!(Rotation::for_cache(KvType::Q8_0, 96), Rotation::default());
}
