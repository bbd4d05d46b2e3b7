//! The thread pool changes how fast a pass runs, never what it computes: logits with
//! the matmuls and the attention split over 2 threads are the same bits as on the
//! calling thread alone, for a prompt batch (the batched kernels and the tiled F32
//! attention), single-token decode steps, and a batch of 20 tokens after them (the F16
//! attention split by token and head); with an F16 and a Q8_0 KV cache.

use std::sync::Arc;

use tern_engine::{Batch, KvType, Logits, Model, ModelOptions};
use tern_kernels::pool::ThreadPool;
use tern_testkit::{TestModel, model_path};

/// Logits of a 70-token prompt, then of 8 greedy decode steps, then of a 20-token batch.
fn run(model: &Model, pool: Option<Arc<ThreadPool>>) -> Vec<Vec<f32>> {
    let mut kv = model.new_kv_cache(1, 128);
    let mut scratch = model.new_scratch(70, 128);
    scratch.set_thread_pool(pool.clone());
    assert_eq!(scratch.threads(), pool.map_or(1, |p| p.n_threads()));
    let mut logits = Logits::new(model.vocab_size(), 1);
    let prompt: Vec<u32> = (0..70).map(|i| 100 + 37 * i).collect();
    let mut rows = Vec::new();
    model
        .forward(
            &Batch::for_sequence(&prompt, 0, 0),
            &mut kv,
            &mut scratch,
            &mut logits,
        )
        .expect("prompt");
    rows.push(logits.last().expect("logits").to_vec());
    for step in 0..8 {
        let last = rows.last().expect("row");
        let next = (0..last.len())
            .max_by(|&a, &b| last[a].total_cmp(&last[b]))
            .expect("argmax") as u32;
        let batch = Batch::for_sequence(&[next], (prompt.len() + step) as u32, 0);
        model
            .forward(&batch, &mut kv, &mut scratch, &mut logits)
            .expect("decode");
        rows.push(logits.last().expect("logits").to_vec());
    }
    let more: Vec<u32> = (0..20).map(|i| 500 + 11 * i).collect();
    let batch = Batch::for_sequence(&more, (prompt.len() + 8) as u32, 0);
    model
        .forward(&batch, &mut kv, &mut scratch, &mut logits)
        .expect("batch");
    rows.push(logits.last().expect("logits").to_vec());
    rows
}

fn check(model: TestModel, kv_type: KvType) {
    let options = ModelOptions {
        kv_type,
        ..ModelOptions::default()
    };
    let model = Model::load(model_path(model), options).expect("model");
    let alone = run(&model, None);
    let shared = run(&model, Some(Arc::new(ThreadPool::new(2))));
    assert_eq!(alone.len(), shared.len());
    for (step, (a, b)) in alone.iter().zip(&shared).enumerate() {
        let same = a.iter().zip(b).all(|(x, y)| x.to_bits() == y.to_bits());
        assert!(
            same,
            "{kv_type} step {step}: logits differ between 1 and 2 threads"
        );
    }
}

#[test]
fn smollm2_logits_do_not_depend_on_the_thread_count() {
    check(TestModel::SmolLm2_135m, KvType::F16);
}

#[test]
fn smollm2_logits_with_a_q8_0_cache_do_not_depend_on_the_thread_count() {
    check(TestModel::SmolLm2_135m, KvType::Q8_0);
}

#[test]
fn gemma3_logits_do_not_depend_on_the_thread_count() {
    check(TestModel::Gemma3_270m, KvType::F16);
}
