//! Shared checks of the model fidelity tests: tern against llama.cpp's goldens
//! (`tests/goldens/<model>/`, format and rules in docs/GOLDENS.md).

#![allow(dead_code)] // each test binary uses a part

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::Value;
use tern_engine::{
    Batch, KvCache, Logits, Model, ModelOptions, PerplexityOptions, Scratch, perplexity,
};
use tern_testkit::{TestModel, goldens_dir, model_path};
use tern_tokenizer::Tokenizer;

/// The loaded model and its goldens.
pub struct Fixture {
    pub key: &'static str,
    pub model: Arc<Model>,
    pub tokenizer: Arc<Tokenizer>,
    dir: PathBuf,
}

impl Fixture {
    pub fn load(model: TestModel, key: &'static str) -> Fixture {
        let engine = Model::load(model_path(model), ModelOptions::default()).expect("load model");
        let tokenizer = Tokenizer::from_gguf(engine.file().metadata()).expect("tokenizer");
        Fixture {
            key,
            model: Arc::new(engine),
            tokenizer: Arc::new(tokenizer),
            dir: goldens_dir().join(key),
        }
    }

    pub fn golden(&self, name: &str) -> Value {
        let path = self.dir.join(format!("{name}.json"));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    /// The golden prompts: `(id, text, tokens)`.
    pub fn prompts(&self) -> Vec<(String, String, Vec<u32>)> {
        let golden = self.golden("prompts");
        golden["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .map(|p| {
                (
                    p["id"].as_str().unwrap().to_string(),
                    p["text"].as_str().unwrap().to_string(),
                    ids(&p["tokens"]),
                )
            })
            .collect()
    }
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|t| t.as_u64().expect("id") as u32)
        .collect()
}

fn f32_of(v: &Value) -> f32 {
    v.as_f64().expect("number") as f32
}

/// Runs a prompt the way llama.cpp did for the goldens (micro-batches of 512, logits of
/// the last position) on a fresh cache, and can then step greedily.
pub struct Runner<'m> {
    model: &'m Model,
    kv: KvCache,
    scratch: Scratch,
    logits: Logits,
    batch: Batch,
    pos: usize,
}

impl<'m> Runner<'m> {
    pub fn new(model: &'m Model, context: usize) -> Self {
        Runner {
            model,
            kv: model.new_kv_cache_for(1, context, 512),
            scratch: model.new_scratch(512, context),
            logits: Logits::new(model.vocab_size(), 1),
            batch: Batch::with_capacity(512),
            pos: 0,
        }
    }

    pub fn prompt(&mut self, tokens: &[u32]) -> &[f32] {
        for (i, chunk) in tokens.chunks(512).enumerate() {
            self.batch.clear();
            let last = (i + 1) * 512 >= tokens.len();
            self.batch.push_sequence(chunk, (i * 512) as u32, 0, last);
            self.model
                .forward(
                    &self.batch,
                    &mut self.kv,
                    &mut self.scratch,
                    &mut self.logits,
                )
                .expect("forward");
        }
        self.pos = tokens.len();
        self.logits.last().expect("logits")
    }

    pub fn step(&mut self, token: u32) -> &[f32] {
        self.batch.clear();
        self.batch.push(token, self.pos as u32, 0, true);
        self.model
            .forward(
                &self.batch,
                &mut self.kv,
                &mut self.scratch,
                &mut self.logits,
            )
            .expect("forward");
        self.pos += 1;
        self.logits.last().expect("logits")
    }
}

/// Argmax with end-of-generation tokens excluded (`--ignore-eos`); ties to the lower id.
pub fn greedy(logits: &[f32], eog: &[u32]) -> u32 {
    let mut best: Option<(u32, f32)> = None;
    for (id, &l) in logits.iter().enumerate() {
        if eog.contains(&(id as u32)) {
            continue;
        }
        if best.is_none_or(|(_, b)| l > b) {
            best = Some((id as u32, l));
        }
    }
    best.expect("a token").0
}

/// What the logits and greedy comparison found for one model.
#[derive(Debug, Default)]
pub struct Fidelity {
    pub prompts: usize,
    pub tokenization_mismatches: Vec<String>,
    pub top1_mismatches: Vec<String>,
    /// Largest |tern - llama.cpp| over the golden's 10 best tokens, over all prompts.
    pub max_top10_diff: f32,
    pub max_top10_prompt: String,
    pub greedy_passed: usize,
    pub greedy_failures: Vec<String>,
    /// Largest |Δ| of the chosen token's logit on the steps compared.
    pub max_step_diff: f32,
}

impl Fidelity {
    pub fn greedy_pass_rate(&self) -> f64 {
        self.greedy_passed as f64 / self.prompts.max(1) as f64
    }

    pub fn print(&self, key: &str) {
        println!("== {key}: {} prompts", self.prompts);
        println!(
            "tokenization mismatches: {:?}",
            self.tokenization_mismatches
        );
        println!("top-1 mismatches: {:?}", self.top1_mismatches);
        println!(
            "max |Δ| over the top-10 logits: {:.4} ({})",
            self.max_top10_diff, self.max_top10_prompt
        );
        println!(
            "greedy: {}/{} prompts pass ({:.1}%), max |Δ| of the chosen logit on compared steps {:.4}",
            self.greedy_passed,
            self.prompts,
            100.0 * self.greedy_pass_rate(),
            self.max_step_diff
        );
        for f in &self.greedy_failures {
            println!("  diverges: {f}");
        }
    }
}

/// Compares tokenization, last-position logits and greedy continuations with the goldens.
/// `filter` picks prompts by id.
pub fn compare(fixture: &Fixture, filter: impl Fn(&str) -> bool) -> Fidelity {
    let logits_golden = fixture.golden("logits");
    let greedy_golden = fixture.golden("greedy");
    let meta = fixture.golden("meta");
    let eog = ids(&meta["model"]["eog_ids"]);
    let mut report = Fidelity::default();
    for (i, (id, text, tokens)) in fixture.prompts().into_iter().enumerate() {
        if !filter(&id) {
            continue;
        }
        report.prompts += 1;
        let ours = fixture.tokenizer.encode(&text, true, true);
        if ours != tokens {
            report.tokenization_mismatches.push(id.clone());
        }
        let lg = &logits_golden["prompts"][i];
        let gg = &greedy_golden["prompts"][i];
        assert_eq!(lg["id"].as_str(), Some(id.as_str()), "logits.json order");
        assert_eq!(gg["id"].as_str(), Some(id.as_str()), "greedy.json order");

        let n_ctx = gg["n_ctx"].as_u64().expect("n_ctx") as usize;
        let mut runner = Runner::new(&fixture.model, n_ctx);
        let logits = runner.prompt(&tokens).to_vec();

        // Top-1 and top-10 at the last prompt position.
        let top = lg["top"].as_array().expect("top");
        let golden_top1 = top[0][0].as_u64().unwrap() as usize;
        let ours_top1 = argmax(&logits);
        let margin = f32_of(&lg["top1_margin"]);
        let second = top[1][0].as_u64().unwrap() as usize;
        if ours_top1 != golden_top1 && !(margin < 0.1 && ours_top1 == second) {
            report
                .top1_mismatches
                .push(format!("{id}: ours {ours_top1}, llama.cpp {golden_top1}"));
        }
        for entry in top.iter().take(10) {
            let (token, logit) = (entry[0].as_u64().unwrap() as usize, f32_of(&entry[1]));
            let diff = (logits[token] - logit).abs();
            if diff > report.max_top10_diff {
                report.max_top10_diff = diff;
                report.max_top10_prompt = id.clone();
            }
        }

        // Greedy: steps before the first near tie identical, the near-tie step either of
        // the two best.
        let steps = gg["steps"].as_array().expect("steps");
        let near_tie = gg["near_tie_step"]
            .as_u64()
            .map_or(steps.len(), |k| k as usize);
        let mut row = logits;
        let mut failure = None;
        for (k, step) in steps
            .iter()
            .enumerate()
            .take((near_tie + 1).min(steps.len()))
        {
            let golden_token = step["token"].as_u64().unwrap() as u32;
            let runner_up = step["runner_up"].as_u64().unwrap() as u32;
            let ours = greedy(&row, &eog);
            if k < near_tie {
                report.max_step_diff = report
                    .max_step_diff
                    .max((row[golden_token as usize] - f32_of(&step["logit"])).abs());
            }
            let ok = ours == golden_token || (k == near_tie && ours == runner_up);
            if !ok {
                failure = Some(format!(
                    "{id} at step {k} (near tie at {near_tie}, golden margin {:.4}): ours {ours}, llama.cpp {golden_token}",
                    f32_of(&step["margin"])
                ));
                break;
            }
            if k + 1 < (near_tie + 1).min(steps.len()) {
                row = runner.step(golden_token).to_vec();
            }
        }
        match failure {
            None => report.greedy_passed += 1,
            Some(f) => report.greedy_failures.push(f),
        }
    }
    report
}

fn argmax(x: &[f32]) -> usize {
    let mut best = 0;
    for (i, &v) in x.iter().enumerate() {
        if v > x[best] {
            best = i;
        }
    }
    best
}

/// Perplexity over the first `chunks` chunks at context `ctx`, and llama-perplexity's
/// running value after as many chunks.
pub fn perplexity_prefix(fixture: &Fixture, ctx: usize, chunks: usize) -> (f64, f64) {
    let golden = fixture.golden("perplexity");
    let path = tern_testkit::repo_root().join(golden["text"].as_str().expect("text"));
    let mut text = std::fs::read_to_string(&path).expect("perplexity text");
    if text.ends_with('\n') {
        text.pop();
    }
    let tokens = fixture.tokenizer.encode(&text, true, false);
    assert_eq!(
        tokens.len() as u64,
        golden["n_tokens"].as_u64().unwrap(),
        "perplexity text tokenization"
    );
    let run = golden["runs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["ctx"].as_u64() == Some(ctx as u64))
        .unwrap_or_else(|| panic!("no golden perplexity run at ctx {ctx}"));
    let reference = run["chunks"][chunks - 1]["cumulative_ppl"]
        .as_f64()
        .unwrap();
    let bos = if fixture.tokenizer.add_bos() {
        fixture.tokenizer.bos()
    } else {
        None
    };
    let options = PerplexityOptions {
        n_ctx: ctx,
        max_chunks: Some(chunks),
        bos,
        pool: None,
    };
    let report = perplexity(&fixture.model, &tokens, options, |_, _, _| {}).expect("perplexity");
    (report.ppl, reference)
}
