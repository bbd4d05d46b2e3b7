//! Each stage against hand-computed results, the whole chain against hand-computed
//! distributions, penalties, seeds and the empirical draw frequencies.

use super::*;

fn ln(ps: &[f32]) -> Vec<f32> {
    ps.iter().map(|p| p.ln()).collect()
}

fn cands(logits: &[f32]) -> Vec<Candidate> {
    logits
        .iter()
        .enumerate()
        .map(|(id, &logit)| Candidate {
            id: id as u32,
            logit,
        })
        .collect()
}

fn ids(c: &[Candidate]) -> Vec<u32> {
    c.iter().map(|c| c.id).collect()
}

/// Every stage off except the ones a test turns on.
fn plain() -> SamplingParams {
    SamplingParams {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_penalty: 1.0,
        repeat_last_n: 64,
        frequency_penalty: 0.0,
        presence_penalty: 0.0,
        seed: Some(7),
    }
}

fn assert_dist(got: &[(u32, f32)], want: &[(u32, f32)]) {
    assert_eq!(got.len(), want.len(), "got {got:?}, want {want:?}");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.0, w.0, "got {got:?}, want {want:?}");
        assert!((g.1 - w.1).abs() < 1e-5, "got {got:?}, want {want:?}");
    }
}

fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &l| m.max(l));
    let e: Vec<f32> = logits.iter().map(|l| (l - max).exp()).collect();
    let s: f32 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

#[test]
fn greedy_is_exact_argmax_with_ties_to_lowest_id() {
    let mut s = Sampler::new(SamplingParams::greedy(), 5).unwrap();
    assert_eq!(s.sample(&[1.0, 3.0, 3.0, 2.0, f32::NAN], &[]), 1);
    assert_eq!(
        s.sample(&[f32::NAN, -1.0, f32::NEG_INFINITY, -0.5, -0.5], &[]),
        3
    );
    // A margin far below any sampling noise still decides.
    assert_eq!(
        s.sample(&[0.0, 1.0, 1.0 + f32::EPSILON * 2.0, 0.0, 0.0], &[]),
        2
    );
    // Nothing allowed at all: token 0, no panic.
    assert_eq!(s.sample(&[f32::NEG_INFINITY; 5], &[]), 0);
}

#[test]
fn greedy_sees_the_penalties() {
    let params = SamplingParams {
        repeat_penalty: 2.0,
        ..SamplingParams::greedy()
    };
    let mut s = Sampler::new(params, 4).unwrap();
    // Token 1 (3.0) is penalised to 1.5, below token 2 (2.0).
    assert_eq!(s.sample(&[0.0, 3.0, 2.0, 1.0], &[1]), 2);
    assert_eq!(s.sample(&[0.0, 3.0, 2.0, 1.0], &[]), 1);
}

#[test]
fn top_k_keeps_the_k_best_sorted() {
    let mut c = cands(&[1.0, 5.0, 3.0, 5.0, 2.0]);
    let mut sorted = false;
    top_k(&mut c, 2, &mut sorted);
    assert_eq!(ids(&c), [1, 3]);
    assert!(sorted);

    let mut c = cands(&[1.0, 5.0, 3.0, 5.0, 2.0]);
    let mut sorted = false;
    top_k(&mut c, 0, &mut sorted);
    assert_eq!(ids(&c), [0, 1, 2, 3, 4]);
    assert!(!sorted);

    top_k(&mut c, 10, &mut sorted);
    assert_eq!(ids(&c), [1, 3, 2, 4, 0]);
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    // Probabilities 0.2, 0.1, 0.2, 0.5 for ids 0..4.
    let logits = ln(&[0.2, 0.1, 0.2, 0.5]);
    for (p, want) in [
        (0.45, vec![3]),
        (0.65, vec![3, 0]),
        (0.75, vec![3, 0, 2]),
        (0.95, vec![3, 0, 2, 1]),
    ] {
        let mut c = cands(&logits);
        let mut sorted = false;
        top_p(&mut c, p, &mut sorted);
        assert_eq!(ids(&c), want, "p = {p}");
    }
    let mut c = cands(&logits);
    let mut sorted = false;
    top_p(&mut c, 1.0, &mut sorted);
    assert_eq!(ids(&c), [0, 1, 2, 3]);
}

#[test]
fn top_p_on_a_large_unsorted_list_matches_a_full_sort() {
    // Large unsorted lists take the 256-best shortcut when the mass is reached there, and
    // buckets by logit otherwise; both must keep the top tokens a full sort keeps, as many
    // as reach p (within float rounding of a sum over tens of thousands of terms).
    for (n, scale) in [(5000u32, 500.0f32), (60_000, 20_000.0)] {
        let logits: Vec<f32> = (0..n).map(|i| ((i * 7919) % n) as f32 / scale).collect();
        for p in [0.3, 0.9, 0.999] {
            let mut fast = cands(&logits);
            let mut sorted = false;
            top_p(&mut fast, p, &mut sorted);

            let mut slow = cands(&logits);
            slow.sort_by(by_logit_desc);
            let probs = softmax(&slow.iter().map(|c| c.logit).collect::<Vec<_>>());
            // Running mass in f64, for a tolerance-aware comparison at the boundary.
            let cumulative: Vec<f64> = probs
                .iter()
                .scan(0.0f64, |sum, &q| {
                    *sum += f64::from(q);
                    Some(*sum)
                })
                .collect();
            let kept = fast.len();
            let p = f64::from(p);
            assert!(
                cumulative[kept - 1] >= p - 2e-3,
                "n {n}, p {p}: kept {kept} too few"
            );
            assert!(
                kept == 1 || cumulative[kept - 2] < p + 2e-3,
                "n {n}, p {p}: kept {kept} too many"
            );
            let mut got = ids(&fast);
            let mut want = ids(&slow[..kept]);
            if sorted {
                assert_eq!(got, want, "n {n}, p {p}: not best first");
            }
            got.sort_unstable();
            want.sort_unstable();
            assert_eq!(got, want, "n {n}, p {p}");
        }
    }
}

#[test]
fn min_p_drops_tokens_below_p_times_the_best() {
    let logits = ln(&[0.2, 0.1, 0.2, 0.5]);
    let mut c = cands(&logits);
    min_p(&mut c, 0.3, false); // threshold 0.15: only 0.1 goes
    assert_eq!(ids(&c), [0, 2, 3]);
    let mut c = cands(&logits);
    min_p(&mut c, 0.5, false); // threshold 0.25
    assert_eq!(ids(&c), [3]);
    let mut c = cands(&logits);
    min_p(&mut c, 0.0, false);
    assert_eq!(c.len(), 4);
}

#[test]
fn chain_distribution_top_k_then_temperature() {
    let logits = ln(&[0.5, 0.2, 0.2, 0.1]);
    let mut s = Sampler::new(
        SamplingParams {
            top_k: 3,
            ..plain()
        },
        4,
    )
    .unwrap();
    assert_dist(
        &s.distribution(&logits, &[]),
        &[(0, 0.5 / 0.9), (1, 0.2 / 0.9), (2, 0.2 / 0.9)],
    );

    // Temperature 0.5 squares the probabilities before renormalising.
    let mut s = Sampler::new(
        SamplingParams {
            top_k: 3,
            temperature: 0.5,
            ..plain()
        },
        4,
    )
    .unwrap();
    assert_dist(
        &s.distribution(&logits, &[]),
        &[(0, 0.25 / 0.33), (1, 0.04 / 0.33), (2, 0.04 / 0.33)],
    );
}

#[test]
fn chain_order_is_top_p_before_min_p_before_temperature() {
    // top-p 0.8 keeps 0.5, 0.2, 0.2 (cumulative 0.9); min-p 0.5 of the *unscaled* best
    // (0.5) then drops both 0.2s; had temperature 2 run first (flattening 0.2/0.5 to
    // sqrt(0.4) ≈ 0.63) they would survive min-p.
    let logits = ln(&[0.5, 0.2, 0.2, 0.1]);
    let params = SamplingParams {
        top_p: 0.8,
        min_p: 0.5,
        temperature: 2.0,
        ..plain()
    };
    let mut s = Sampler::new(params, 4).unwrap();
    assert_dist(&s.distribution(&logits, &[]), &[(0, 1.0)]);

    let params = SamplingParams {
        top_p: 0.8,
        min_p: 0.3,
        temperature: 2.0,
        ..plain()
    };
    let mut s = Sampler::new(params, 4).unwrap();
    let kept = softmax(&[0.5f32.ln() / 2.0, 0.2f32.ln() / 2.0, 0.2f32.ln() / 2.0]);
    assert_dist(
        &s.distribution(&logits, &[]),
        &[(0, kept[0]), (1, kept[1]), (2, kept[2])],
    );
}

#[test]
fn repeat_penalty_only_over_the_last_n_and_sign_aware() {
    let logits = [2.0, -1.0, 0.5, 1.0];
    let params = SamplingParams {
        repeat_penalty: 2.0,
        repeat_last_n: 2,
        ..plain()
    };
    let mut s = Sampler::new(params, 4).unwrap();
    // History [0, 1, 2] with a window of 2: tokens 1 and 2 are penalised, 0 is not.
    let want = softmax(&[2.0, -2.0, 0.25, 1.0]);
    let got = s.distribution(&logits, &[0, 1, 2]);
    assert_dist(
        &got,
        &[(0, want[0]), (1, want[1]), (2, want[2]), (3, want[3])],
    );
    // Repeats inside the window are penalised once, not per occurrence.
    let got = s.distribution(&logits, &[0, 1, 1, 2, 2, 2][3..]);
    let want = softmax(&[2.0, -1.0, 0.25, 1.0]);
    assert_dist(
        &got,
        &[(0, want[0]), (1, want[1]), (2, want[2]), (3, want[3])],
    );
    // The state does not leak between calls.
    let got = s.distribution(&logits, &[]);
    let want = softmax(&logits);
    assert_dist(
        &got,
        &[(0, want[0]), (1, want[1]), (2, want[2]), (3, want[3])],
    );
}

#[test]
fn frequency_and_presence_penalties_over_the_whole_history() {
    let logits = [1.0, 1.0, 1.0, 1.0];
    let params = SamplingParams {
        frequency_penalty: 0.5,
        presence_penalty: 0.25,
        repeat_last_n: 1,
        ..plain()
    };
    let mut s = Sampler::new(params, 4).unwrap();
    // Token 3 twice: 1 - 2 * 0.5 - 0.25; token 1 once: 1 - 0.5 - 0.25. Ids out of the
    // vocabulary are ignored.
    let want = softmax(&[1.0, 0.25, 1.0, -0.25]);
    let got = s.distribution(&logits, &[3, 3, 99, 1]);
    assert_dist(
        &got,
        &[(0, want[0]), (1, want[1]), (2, want[2]), (3, want[3])],
    );
}

#[test]
fn masked_tokens_are_never_drawn() {
    let mut logits = vec![f32::NEG_INFINITY; 100];
    logits[17] = 0.0;
    logits[42] = 0.5;
    logits[99] = -30.0;
    let mut s = Sampler::new(plain(), 100).unwrap();
    for _ in 0..2000 {
        let t = s.sample(&logits, &[]);
        assert!(t == 17 || t == 42 || t == 99, "drew masked token {t}");
    }
}

#[test]
fn draws_follow_the_distribution() {
    let logits = ln(&[0.5, 0.3, 0.2]);
    let mut s = Sampler::new(plain(), 3).unwrap();
    let mut hits = [0u32; 3];
    let draws = 40_000;
    for _ in 0..draws {
        hits[s.sample(&logits, &[]) as usize] += 1;
    }
    for (h, p) in hits.iter().zip([0.5, 0.3, 0.2]) {
        let freq = f64::from(*h) / f64::from(draws);
        // Five standard deviations of a binomial at this sample size is under 0.013.
        assert!((freq - p).abs() < 0.013, "frequencies {hits:?}");
    }
}

#[test]
fn same_seed_same_tokens_other_seed_other_tokens() {
    let logits: Vec<f32> = (0..1000).map(|i| ((i * 37 % 101) as f32) / 25.0).collect();
    let run = |seed| {
        let params = SamplingParams {
            seed: Some(seed),
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(params, 1000).unwrap();
        let mut history = Vec::new();
        for _ in 0..200 {
            let t = s.sample(&logits, &history);
            history.push(t);
        }
        history
    };
    assert_eq!(run(1234), run(1234));
    assert_ne!(run(1234), run(1235));
}

#[test]
fn logprobs_are_of_the_model_distribution() {
    let logits = [0.0, 3.0f32.ln(), f32::NEG_INFINITY];
    let mut s = Sampler::new(SamplingParams::greedy(), 3).unwrap();
    let out = s.sample_with_logprobs(&logits, &[], 2);
    assert_eq!(out.token, 1);
    assert!((out.logprob - 0.75f32.ln()).abs() < 1e-6);
    assert_eq!(out.top_logprobs.len(), 2);
    assert_eq!(out.top_logprobs[0].token, 1);
    assert_eq!(out.top_logprobs[1].token, 0);
    assert!((out.top_logprobs[1].logprob - 0.25f32.ln()).abs() < 1e-6);
    // More alternatives than tokens: all of them, the masked one at -inf.
    let out = s.sample_with_logprobs(&logits, &[], 10);
    assert_eq!(out.top_logprobs.len(), 3);
    assert_eq!(out.top_logprobs[2].logprob, f32::NEG_INFINITY);
}

#[test]
fn calls_do_not_grow_the_buffers() {
    let vocab = 4096;
    let params = SamplingParams {
        repeat_penalty: 1.1,
        frequency_penalty: 0.2,
        ..SamplingParams::default()
    };
    let mut s = Sampler::new(params, vocab).unwrap();
    let logits: Vec<f32> = (0..vocab).map(|i| (i % 97) as f32 / 10.0).collect();
    let history: Vec<u32> = (0..500).map(|i| (i * 13 % vocab) as u32).collect();
    let capacity = (s.candidates.capacity(), s.touched.capacity());
    for _ in 0..50 {
        s.sample(&logits, &history);
    }
    assert_eq!((s.candidates.capacity(), s.touched.capacity()), capacity);
}

#[test]
fn new_rejects_bad_params_and_empty_vocabularies() {
    let bad = SamplingParams {
        top_p: 2.0,
        ..SamplingParams::default()
    };
    assert!(matches!(
        Sampler::new(bad, 10),
        Err(Error::InvalidParam { field: "top_p", .. })
    ));
    assert!(matches!(
        Sampler::new(SamplingParams::default(), 0),
        Err(Error::InvalidVocabulary(_))
    ));
}
