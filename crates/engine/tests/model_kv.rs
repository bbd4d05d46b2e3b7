//! The KV cache on the real models: quantized types keep perplexity close to F16 (the
//! numbers of docs/RUNTIME.md, "KV cache types", on a shorter run), Gemma's
//! sliding-window ring gives logits identical to a cache that keeps every position, and
//! a session reuses a cached prefix — and starts over when the ring no longer holds it.

use std::sync::Arc;

use tern_engine::{
    Batch, KvCache, KvType, Logits, Model, ModelOptions, PerplexityOptions, Session,
    SessionOptions, perplexity,
};
use tern_testkit::{TestModel, model_path, repo_root};
use tern_tokenizer::Tokenizer;

fn load(which: TestModel, kv_type: KvType) -> (Arc<Model>, Arc<Tokenizer>) {
    let options = ModelOptions {
        kv_type,
        ..ModelOptions::default()
    };
    let model = Model::load(model_path(which), options).expect("model");
    let tokenizer = Tokenizer::from_gguf(model.file().metadata()).expect("tokenizer");
    (Arc::new(model), Arc::new(tokenizer))
}

/// The long text of the goldens, tokenized as llama-perplexity does.
fn text_tokens(tokenizer: &Tokenizer) -> Vec<u32> {
    let path = repo_root().join("scripts/goldens/texts/jargon-file-4.4.7-intro.txt");
    let text = std::fs::read_to_string(path).expect("text");
    tokenizer.encode(&text, true, false)
}

/// Perplexity of the first two 256-token chunks of the text with each KV type.
fn perplexities(which: TestModel) -> Vec<(KvType, f64)> {
    KvType::ALL
        .into_iter()
        .map(|kv_type| {
            let (model, tokenizer) = load(which, kv_type);
            let tokens = text_tokens(&tokenizer);
            let options = PerplexityOptions {
                n_ctx: 256,
                max_chunks: Some(2),
                bos: tokenizer.add_bos().then(|| tokenizer.bos()).flatten(),
                pool: None,
            };
            let report = perplexity(&model, &tokens, options, |_, _, _| {}).expect("ppl");
            (kv_type, report.ppl)
        })
        .collect()
}

/// Q8_0 within 2% of F16, Q4_0 worse than Q8_0 and within 30%. A cache that ignored its
/// type would give exactly F16's number. Measured here (2 chunks of 256), with the F16
/// cache in llama.cpp's tiled flash-attention order (bit-exact against llama.cpp; a
/// quantized cache takes its one-chunk path): SmolLM2 Q8_0 -0.16%, Q4_0 +3.2%; Gemma
/// Q8_0 -1.16%, Q4_0 +14.2% (short chunks amplify the differences; at 8 chunks of 512,
/// docs/RUNTIME.md: Gemma Q4_0 +9.5%, llama.cpp +8.6%).
fn check(which: TestModel) {
    let ppl = perplexities(which);
    eprintln!("{which:?}: {ppl:?}");
    let (f16, q8, q4) = (ppl[0].1, ppl[1].1, ppl[2].1);
    assert!(f16.is_finite() && f16 > 1.0, "{ppl:?}");
    assert_ne!(q8, f16, "Q8_0 must change the arithmetic: {ppl:?}");
    assert!((q8 / f16 - 1.0).abs() < 0.02, "Q8_0 vs F16: {ppl:?}");
    assert!((q4 / f16 - 1.0).abs() < 0.30, "Q4_0 vs F16: {ppl:?}");
    assert!(
        (q4 - f16).abs() > (q8 - f16).abs(),
        "Q4_0 loses more: {ppl:?}"
    );
}

#[test]
fn smollm2_quantized_kv_perplexity_stays_close_to_f16() {
    check(TestModel::SmolLm2_135m);
}

#[test]
fn gemma_quantized_kv_perplexity_stays_close_to_f16() {
    check(TestModel::Gemma3_270m);
}

/// Feeds `tokens` in micro-batches of `ubatch`, then steps greedily `steps` times;
/// returns the logits after the prompt and after each step.
fn run(
    model: &Model,
    kv: &mut KvCache,
    tokens: &[u32],
    ubatch: usize,
    steps: usize,
) -> Vec<Vec<f32>> {
    let context = kv.capacity();
    let mut scratch = model.new_scratch(ubatch, context);
    let mut logits = Logits::new(model.vocab_size(), 1);
    let mut batch = Batch::with_capacity(ubatch);
    for (i, chunk) in tokens.chunks(ubatch).enumerate() {
        batch.clear();
        let last = (i + 1) * ubatch >= tokens.len();
        batch.push_sequence(chunk, (i * ubatch) as u32, 0, last);
        model
            .forward(&batch, kv, &mut scratch, &mut logits)
            .expect("forward");
    }
    let mut out = vec![logits.last().expect("logits").to_vec()];
    for step in 0..steps {
        let row = out.last().expect("row");
        let next = (0..row.len())
            .max_by(|&a, &b| row[a].total_cmp(&row[b]))
            .expect("argmax");
        batch.clear();
        batch.push(next as u32, (tokens.len() + step) as u32, 0, true);
        model
            .forward(&batch, kv, &mut scratch, &mut logits)
            .expect("step");
        out.push(logits.last().expect("logits").to_vec());
    }
    out
}

#[test]
fn gemma_sliding_window_ring_gives_identical_logits() {
    let (model, tokenizer) = load(TestModel::Gemma3_270m, KvType::F16);
    // Past the 512-token window: 700 prompt tokens, then 4 greedy steps. The rings
    // (1,024 and 768 cells) do not wrap here, so they equal a full cache; past the wrap
    // they walk their rows in llama.cpp's cell order (the long-prompt goldens of
    // model_gemma3 test that).
    let tokens: Vec<u32> = text_tokens(&tokenizer)[..700].to_vec();
    let context = 1024;
    for ubatch in [512, 100] {
        let mut full = model.new_kv_cache(1, context);
        let mut ring = model.new_kv_cache_for(1, context, ubatch);
        // Gemma 3 270M: 15 of 18 layers are sliding-window layers of 512 positions.
        let per_layer = |positions: usize| (positions * 256 * 2 * 2) as u64;
        assert_eq!(full.size_bytes() as u64, 18 * per_layer(context));
        assert_eq!(
            ring.size_bytes() as u64,
            3 * per_layer(context)
                + 15 * per_layer((512 + ubatch).next_multiple_of(256).min(context))
        );
        let want = run(&model, &mut full, &tokens, ubatch, 4);
        let got = run(&model, &mut ring, &tokens, ubatch, 4);
        for (step, (a, b)) in want.iter().zip(&got).enumerate() {
            assert!(a == b, "ubatch {ubatch}, step {step}: the logits differ");
        }
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

#[test]
fn a_session_reuses_its_prefix_and_starts_over_when_the_ring_lost_it() {
    let (model, tokenizer) = load(TestModel::Gemma3_270m, KvType::Q8_0);
    let tokens = text_tokens(&tokenizer);
    // Micro-batches of 64: the sliding-window layers keep 512 + 64 cells rounded up to
    // 768 (llama.cpp's count); 900 tokens wrap them, keeping positions 132..900.
    let options = SessionOptions {
        context: 1024,
        ubatch: 64,
        threads: 1,
    };
    let fresh = |prompt: &[u32]| {
        let mut s = Session::new(Arc::clone(&model), Arc::clone(&tokenizer), options).unwrap();
        assert_eq!(s.feed(prompt).unwrap(), prompt.len());
        s.logits().unwrap().to_vec()
    };
    let mut session = Session::new(Arc::clone(&model), Arc::clone(&tokenizer), options).unwrap();
    assert_eq!(session.kv_cache().kv_type(), KvType::Q8_0);
    assert_eq!(session.feed(&tokens[..900]).unwrap(), 900);

    // A new prompt sharing 832 tokens (window 321..832, still held in the wrapped ring):
    // only the rest is computed. 832 is a whole number of micro-batches, so a fresh
    // session computes every token in the same batches and gives the same bits: the
    // rows the ring kept past the cut (positions 832..900) must stay masked.
    let mut next = tokens[..832].to_vec();
    next.extend_from_slice(&tokens[950..960]);
    assert_eq!(session.feed(&next).unwrap(), 10);
    let reused = session.logits().unwrap().to_vec();
    let want = fresh(&next);
    assert!(reused == want, "{}", max_diff(&reused, &want));

    // Sharing only 100 tokens: the ring overwrote the window before position 100, so
    // the session starts over — and gives exactly a fresh session's logits.
    let mut back = tokens[..100].to_vec();
    back.extend_from_slice(&tokens[960..970]);
    assert_eq!(session.feed(&back).unwrap(), 110);
    assert!(session.logits().unwrap() == fresh(&back).as_slice());
}
