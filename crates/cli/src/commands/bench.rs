//! `tern bench MODEL -p 512 -n 128 -r 5 -t N`: prompt-processing and generation speed,
//! load time, time to first token and peak memory, measured so the numbers compare
//! with llama.cpp's `llama-bench` on the same file.
//!
//! The rules are llama-bench's (llama.cpp `tools/llama-bench/llama-bench.cpp`, `main`,
//! `test_prompt`, `test_gen`):
//! - each `-p` value is a test `ppP` and each `-n` value a test `tgN` (0 skips it), for
//!   every `-t` value; a test gets its own KV cache of `P + N` positions (keys and
//!   values of `--kv-type`, F16 by default as llama-bench's `-ctk/-ctv`; its size is
//!   printed before it is allocated, refused when it does not fit, and reported per
//!   test as `kv_bytes`) and buffers;
//! - a warm-up run first (the whole prompt for `pp`, one generated token for `tg`), then
//!   `-r` repetitions, each starting from an empty cache;
//! - `pp`: P tokens fed in micro-batches of `--ubatch-size` (llama's `n_ubatch`, 512),
//!   logits for the last token only (`llama_batch_get_one`); the first token is BOS when
//!   the model adds one, the others random ids;
//! - `tg`: N passes of one token each, logits computed for every one of them; the token
//!   is BOS (when the model adds one) then random ids — sampling is not timed, as in
//!   llama-bench;
//! - tokens/s of a repetition is tokens ÷ its wall time; the table shows the mean ± the
//!   sample standard deviation over the repetitions.
//!
//! Beyond llama-bench: the load time (`Model::load` plus the tokenizer, which llama.cpp
//! also reads while loading), the time to first token (from the end of the load to the
//! logits of the first forward pass of the first test, buffers' allocation included —
//! the cold pass; `load + first token` is what llama.cpp reports as "load time" in
//! `llama_perf_context_print`, see `llama_context::decode`), and the peak resident set
//! (`VmHWM`), with the file-backed (mmapped weights) and anonymous (KV cache, buffers)
//! shares of the resident set at the end.
//!
//! `--prompt-cache N` adds the prompt-cache measurement (`bench_cache`): time to first
//! token with and without `N` shared prompt tokens cached.
//!
//! `--json` prints [`Report`], a documented contract (docs/PERFORMANCE.md) locked by
//! `tests/model_bench.rs`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use serde::Serialize;
use tern_engine::{Batch, KvCache, Logits, Model, ModelOptions, Scratch, TokenId};
use tern_gguf::{Key, file_type_name};
use tern_kernels::pool::{ThreadPool, default_threads};
use tern_kernels::{cpu_info, kernel_path};
use tern_tokenizer::Tokenizer;

use crate::cli::GlobalArgs;
use crate::kv::{self, KvTypeArg};
use crate::model::resolve_model;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model (default: smollm2-135m-instruct)
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// The model, as an option
    #[arg(short, long = "model", value_name = "MODEL", conflicts_with = "model")]
    pub model_option: Option<String>,
    /// Prompt lengths to test, comma-separated (0: no prompt test)
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_name = "N,…",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test, comma-separated (0: no generation test)
    #[arg(
        short = 'n',
        long = "n-gen",
        value_name = "N,…",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Timed repetitions of each test
    #[arg(
        short = 'r',
        long = "repetitions",
        value_name = "N",
        default_value_t = 5
    )]
    pub repetitions: usize,
    /// Thread counts to test, comma-separated (default: the physical cores)
    #[arg(
        short = 't',
        long = "threads",
        value_name = "N,…",
        value_delimiter = ',',
        env = "TERN_THREADS"
    )]
    pub threads: Vec<usize>,
    /// Context size of every test (default: prompt + generated tokens, as llama-bench)
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Type of the cached keys and values (llama-bench's -ctk/-ctv)
    #[arg(long = "kv-type", value_name = "TYPE", default_value = "f16")]
    pub kv_type: KvTypeArg,
    /// Also measure the prompt cache: time to first token of a prompt of N shared tokens
    /// plus each -p value of new ones, cold and with the N tokens cached
    #[arg(long = "prompt-cache", value_name = "N")]
    pub prompt_cache: Option<usize>,
    /// Most prompt tokens per forward pass (llama.cpp's n_ubatch)
    #[arg(
        short = 'u',
        long = "ubatch-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ubatch: usize,
    /// Skip the warm-up run before each test
    #[arg(long)]
    pub no_warmup: bool,
}

/// The `--json` document: one run of `tern bench`.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tern_version: String,
    /// The CPU's model name.
    pub cpu_info: Option<String>,
    /// The kernel family in use (`TERN_KERNELS` overrides it).
    pub kernel_path: String,
    pub model_filename: String,
    /// Architecture, parameter count and file type, as llama-bench's `model_type`.
    pub model_type: String,
    /// Bytes of tensor data (llama-bench's `model_size`).
    pub model_size: u64,
    /// Number of weights (llama-bench's `model_n_params`).
    pub model_n_params: u64,
    /// Wall time of loading the model and its tokenizer.
    pub load_ms: f64,
    /// Wall time from the end of the load to the logits of the first forward pass (the
    /// cold first pass of the first test, buffer allocation included).
    pub first_token_ms: f64,
    /// The test whose pass `first_token_ms` timed, with the tokens it fed.
    pub first_token_test: String,
    /// Peak resident set of the process (`VmHWM`).
    pub peak_rss_bytes: Option<u64>,
    /// Resident file-backed pages at the end (`RssFile`: the mapped weights).
    pub rss_file_bytes: Option<u64>,
    /// Resident anonymous pages at the end (`RssAnon`: KV caches, buffers, heap).
    pub rss_anon_bytes: Option<u64>,
    pub tests: Vec<TestReport>,
    /// `--prompt-cache` results, one per -p value (empty without the option).
    pub prompt_cache: Vec<super::bench_cache::PromptCacheReport>,
}

/// One test (`pp512`, `tg128`) at one thread count.
#[derive(Debug, Serialize)]
pub struct TestReport {
    /// `ppP` or `tgN`.
    pub test: String,
    pub n_prompt: usize,
    pub n_gen: usize,
    /// Threads asked for with `-t`.
    pub n_threads: usize,
    /// Threads the forward pass actually ran on.
    pub threads_used: usize,
    pub n_ctx: usize,
    pub n_ubatch: usize,
    pub type_k: String,
    pub type_v: String,
    /// Bytes of the test's KV cache (keys and values of every layer).
    pub kv_bytes: u64,
    pub warmup: bool,
    /// Wall time of each repetition.
    pub samples_ns: Vec<u64>,
    /// Tokens/s of each repetition.
    pub samples_ts: Vec<f64>,
    pub avg_ns: f64,
    pub stddev_ns: f64,
    pub avg_ts: f64,
    pub stddev_ts: f64,
}

/// One entry of the test matrix.
#[derive(Clone, Copy, Debug)]
struct Test {
    n_prompt: usize,
    n_gen: usize,
    threads: usize,
}

impl Test {
    fn name(&self) -> String {
        if self.n_prompt > 0 {
            format!("pp{}", self.n_prompt)
        } else {
            format!("tg{}", self.n_gen)
        }
    }
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    if args.repetitions == 0 {
        bail!("-r 0: at least one repetition is needed");
    }
    if args.ubatch == 0 {
        bail!("--ubatch-size 0: a micro-batch holds at least one token");
    }
    let threads = if args.threads.is_empty() {
        vec![default_threads()]
    } else {
        args.threads.clone()
    };
    if threads.contains(&0) {
        bail!("-t 0: a test runs on at least one thread");
    }
    let tests = test_matrix(&args.n_prompt, &args.n_gen, &threads);
    if tests.is_empty() {
        bail!("nothing to measure: every -p and -n value is 0");
    }
    let mut contexts = Vec::with_capacity(tests.len());
    for test in &tests {
        contexts.push(context_size(test, args.ctx_size)?);
    }

    let resolved = resolve_model(
        global,
        args.model.as_deref().or(args.model_option.as_deref()),
    )?;
    let load_start = Instant::now();
    let options = ModelOptions {
        kv_type: args.kv_type.engine(),
        ..ModelOptions::default()
    };
    let model = Arc::new(
        Model::load(&resolved.path, options).map_err(|e| super::run::bad_model(&resolved, e))?,
    );
    let tokenizer = Arc::new(
        Tokenizer::from_gguf(model.file().metadata())
            .with_context(|| format!("tokenizer of {}", resolved.display))?,
    );
    let load = load_start.elapsed();
    let prompt_start = if tokenizer.add_bos() {
        tokenizer.bos()
    } else {
        None
    };

    if let Some(&largest) = contexts.iter().max() {
        kv::check_memory(global, &model.kv_cache_spec(1, largest, args.ubatch))?;
    }
    let mut runner = Runner {
        model: &model,
        ubatch: args.ubatch,
        bos: prompt_start,
        rng: Rng::new(RNG_SEED),
        first_token: FirstToken {
            since: Instant::now(),
            at: None,
            test: String::new(),
        },
    };
    let mut reports = Vec::with_capacity(tests.len());
    for (test, &n_ctx) in tests.iter().zip(&contexts) {
        tracing::info!(test = %test.name(), threads = test.threads, n_ctx, "bench test");
        let (samples, kv_bytes) = runner.measure(test, n_ctx, args.repetitions, !args.no_warmup)?;
        let mut report = test_report(test, n_ctx, args.ubatch, !args.no_warmup, &samples);
        report.type_k = args.kv_type.engine().name().to_string();
        report.type_v = report.type_k.clone();
        report.kv_bytes = kv_bytes;
        reports.push(report);
    }
    let prompt_cache = match args.prompt_cache {
        Some(prefix) => super::bench_cache::measure(
            global,
            &model,
            &tokenizer,
            prefix,
            &args.n_prompt,
            super::bench_cache::RunSettings {
                repetitions: args.repetitions,
                ubatch: args.ubatch,
                threads: engine_threads(threads[0]),
            },
        )?,
        None => Vec::new(),
    };
    let memory = ProcessMemory::read();
    let first_token = runner.first_token;

    let report = Report {
        tern_version: env!("CARGO_PKG_VERSION").to_string(),
        cpu_info: cpu_info().model_name.clone(),
        kernel_path: kernel_path().name().to_string(),
        model_filename: resolved.path.display().to_string(),
        model_type: model_type(&model),
        model_size: model.file().tensors().iter().map(|t| t.n_bytes).sum(),
        model_n_params: model.file().tensors().iter().map(|t| t.n_elements()).sum(),
        load_ms: millis(load),
        first_token_ms: millis(first_token.at.unwrap_or_default()),
        first_token_test: first_token.test,
        peak_rss_bytes: memory.peak,
        rss_file_bytes: memory.file,
        rss_anon_bytes: memory.anon,
        tests: reports,
        prompt_cache,
    };
    if global.json {
        return output::print_json(&report);
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{}", table(&report))?;
    writeln!(stdout)?;
    writeln!(stdout, "{}", summary(&report))?;
    Ok(())
}

/// Threads the forward pass runs on when `requested` are asked for: all of them (the
/// matmuls are split over a pool of that many threads, the caller included).
fn engine_threads(requested: usize) -> usize {
    requested.max(1)
}

/// llama-bench's order: for each thread count, the prompt tests, then the generation
/// tests (`get_cmd_params_instances`); zeros are skipped.
fn test_matrix(n_prompt: &[usize], n_gen: &[usize], threads: &[usize]) -> Vec<Test> {
    let mut tests = Vec::new();
    for &threads in threads {
        let prompts = n_prompt.iter().filter(|&&p| p > 0).map(|&p| Test {
            n_prompt: p,
            n_gen: 0,
            threads,
        });
        let gens = n_gen.iter().filter(|&&n| n > 0).map(|&n| Test {
            n_prompt: 0,
            n_gen: n,
            threads,
        });
        tests.extend(prompts.chain(gens));
    }
    tests
}

/// `prompt + generated` (llama-bench's `n_ctx`), or `--ctx-size` when it is large enough.
fn context_size(test: &Test, ctx_size: Option<usize>) -> anyhow::Result<usize> {
    let needed = test
        .n_prompt
        .checked_add(test.n_gen)
        .filter(|&n| u32::try_from(n).is_ok())
        .with_context(|| format!("test {}: too many tokens", test.name()))?;
    match ctx_size {
        Some(ctx) if ctx < needed => bail!(
            "--ctx-size {ctx} is too small for test {}, which needs {needed} positions",
            test.name()
        ),
        Some(ctx) => Ok(ctx),
        None => Ok(needed),
    }
}

/// The seed of the random prompt and generated tokens. llama-bench draws them from an
/// unseeded `std::rand()`; any fixed seed makes runs repeat.
const RNG_SEED: u64 = 0x7465_726e_6265_6e63;

/// Runs the passes of the tests on one model.
struct Runner<'a> {
    model: &'a Model,
    ubatch: usize,
    /// The first token of a prompt or generation: BOS when the model adds one.
    bos: Option<TokenId>,
    rng: Rng,
    first_token: FirstToken,
}

/// When the first forward pass of the process ended.
struct FirstToken {
    since: Instant,
    at: Option<Duration>,
    test: String,
}

/// The buffers of one test, as a fresh llama.cpp context holds them.
struct Buffers {
    kv: KvCache,
    scratch: Scratch,
    logits: Logits,
    batch: Batch,
}

impl Runner<'_> {
    /// Allocates the test's buffers, runs the warm-up, then `repetitions` timed runs, each
    /// from an empty cache. Returns the wall time of each repetition.
    fn measure(
        &mut self,
        test: &Test,
        n_ctx: usize,
        repetitions: usize,
        warmup: bool,
    ) -> anyhow::Result<(Vec<Duration>, u64)> {
        let threads = engine_threads(test.threads);
        let batch_tokens = test.n_prompt.clamp(1, self.ubatch);
        let mut scratch = self.model.new_scratch(batch_tokens, n_ctx);
        if threads > 1 {
            let pool = ThreadPool::try_new(threads)
                .with_context(|| format!("cannot start {threads} threads"))?;
            scratch.set_thread_pool(Some(Arc::new(pool)));
        }
        let mut buffers = Buffers {
            kv: self.model.new_kv_cache_for(1, n_ctx, batch_tokens),
            scratch,
            logits: Logits::new(self.model.vocab_size(), 1),
            batch: Batch::with_capacity(batch_tokens),
        };
        if self.first_token.at.is_none() {
            self.first_token.test = test.name();
        }
        if warmup {
            if test.n_prompt > 0 {
                self.prompt(&mut buffers, test.n_prompt)?;
            }
            if test.n_gen > 0 {
                self.generate(&mut buffers, 1)?;
            }
        }
        let mut samples = Vec::with_capacity(repetitions);
        for _ in 0..repetitions {
            buffers.kv.clear_all();
            let start = Instant::now();
            if test.n_prompt > 0 {
                self.prompt(&mut buffers, test.n_prompt)?;
            }
            if test.n_gen > 0 {
                self.generate(&mut buffers, test.n_gen)?;
            }
            samples.push(start.elapsed());
        }
        Ok((samples, buffers.kv.size_bytes() as u64))
    }

    /// llama-bench's `test_prompt`: `n` tokens from the cache's end, logits for the last.
    fn prompt(&mut self, b: &mut Buffers, n: usize) -> anyhow::Result<()> {
        let start = b.kv.seq_len(0);
        let mut fed = 0;
        while fed < n {
            let chunk = (n - fed).min(self.ubatch);
            b.batch.clear();
            for i in 0..chunk {
                let first = fed == 0 && i == 0;
                let token = if first {
                    self.bos.unwrap_or_else(|| self.random_token())
                } else {
                    self.random_token()
                };
                b.batch
                    .push(token, (start + fed + i) as u32, 0, fed + i + 1 == n);
            }
            self.model
                .forward(&b.batch, &mut b.kv, &mut b.scratch, &mut b.logits)
                .context("prompt pass")?;
            fed += chunk;
        }
        self.first_token.mark();
        Ok(())
    }

    /// llama-bench's `test_gen`: `n` passes of one token, each with its logits.
    fn generate(&mut self, b: &mut Buffers, n: usize) -> anyhow::Result<()> {
        let mut token = self.bos.unwrap_or_else(|| self.random_token());
        let start = b.kv.seq_len(0);
        for pos in start..start + n {
            b.batch.clear();
            b.batch.push(token, pos as u32, 0, true);
            self.model
                .forward(&b.batch, &mut b.kv, &mut b.scratch, &mut b.logits)
                .context("generation pass")?;
            self.first_token.mark();
            token = self.random_token();
        }
        Ok(())
    }

    fn random_token(&mut self) -> TokenId {
        (self.rng.next() % self.model.vocab_size() as u64) as TokenId
    }
}

impl FirstToken {
    fn mark(&mut self) {
        if self.at.is_none() {
            self.at = Some(self.since.elapsed());
        }
    }
}

/// SplitMix64: enough to draw token ids, without a dependency.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}

fn test_report(
    test: &Test,
    n_ctx: usize,
    n_ubatch: usize,
    warmup: bool,
    samples: &[Duration],
) -> TestReport {
    let tokens = (test.n_prompt + test.n_gen) as f64;
    let ns: Vec<f64> = samples.iter().map(|d| d.as_nanos() as f64).collect();
    let ts: Vec<f64> = ns.iter().map(|&ns| 1e9 * tokens / ns).collect();
    TestReport {
        test: test.name(),
        n_prompt: test.n_prompt,
        n_gen: test.n_gen,
        n_threads: test.threads,
        threads_used: engine_threads(test.threads),
        n_ctx,
        n_ubatch,
        type_k: "f16".into(),
        type_v: "f16".into(),
        kv_bytes: 0,
        warmup,
        samples_ns: samples.iter().map(|d| d.as_nanos() as u64).collect(),
        avg_ns: mean(&ns),
        stddev_ns: stddev(&ns),
        avg_ts: mean(&ts),
        stddev_ts: stddev(&ts),
        samples_ts: ts,
    }
}

fn mean(values: &[f64]) -> f64 {
    if values.is_empty() {
        0.0
    } else {
        values.iter().sum::<f64>() / values.len() as f64
    }
}

/// The sample standard deviation (n − 1), as llama-bench's `stdev`; 0 for one value.
fn stddev(values: &[f64]) -> f64 {
    if values.len() < 2 {
        return 0.0;
    }
    let m = mean(values);
    let squares: f64 = values.iter().map(|v| (v - m) * (v - m)).sum();
    (squares / (values.len() - 1) as f64).sqrt()
}

fn millis(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// `llama 134.5M Q4_1`: what llama-bench's `model_type` says (`llama_model_desc`).
fn model_type(model: &Model) -> String {
    let params: u64 = model.file().tensors().iter().map(|t| t.n_elements()).sum();
    let file_type = match model.file().metadata().get_u32(Key::GeneralFileType) {
        Ok(Some(id)) => file_type_name(id).map_or_else(|| format!("type {id}"), str::to_string),
        _ => "?".to_string(),
    };
    let params = if params >= 1_000_000_000 {
        format!("{:.1}B", params as f64 / 1e9)
    } else {
        format!("{:.0}M", params as f64 / 1e6)
    };
    format!(
        "{} {params} {file_type}",
        model.config().architecture.name()
    )
}

/// The memory lines of `/proc/self/status`, in bytes (`None` where unreadable).
#[derive(Debug, Default)]
struct ProcessMemory {
    peak: Option<u64>,
    file: Option<u64>,
    anon: Option<u64>,
}

impl ProcessMemory {
    fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        ProcessMemory {
            peak: status_field(&status, "VmHWM"),
            file: status_field(&status, "RssFile"),
            anon: status_field(&status, "RssAnon"),
        }
    }
}

/// A `kB` line of `/proc/self/status`, in bytes.
fn status_field(status: &str, name: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(name)?.strip_prefix(':')?;
        let kib: u64 = value.trim().strip_suffix("kB")?.trim().parse().ok()?;
        kib.checked_mul(1024)
    })
}

/// llama-bench's markdown table: model, size, params, backend, threads, test, t/s.
fn table(report: &Report) -> String {
    let size = report.model_size as f64;
    let size = if size < 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} MiB", size / 1024.0 / 1024.0)
    } else {
        format!("{:.2} GiB", size / 1024.0 / 1024.0 / 1024.0)
    };
    let params = report.model_n_params as f64;
    let params = if params < 1e9 {
        format!("{:.2} M", params / 1e6)
    } else {
        format!("{:.2} B", params / 1e9)
    };
    let backend = format!("CPU ({})", report.kernel_path);
    let header = [
        "model", "size", "params", "backend", "threads", "test", "t/s",
    ];
    let rows: Vec<[String; 7]> = report
        .tests
        .iter()
        .map(|t| {
            let threads = if t.threads_used == t.n_threads {
                t.n_threads.to_string()
            } else {
                format!("{} (-t {})", t.threads_used, t.n_threads)
            };
            [
                report.model_type.clone(),
                size.clone(),
                params.clone(),
                backend.clone(),
                threads,
                t.test.clone(),
                format!("{:.2} ± {:.2}", t.avg_ts, t.stddev_ts),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    // Text columns left-aligned, numbers right-aligned, as llama-bench prints them.
    let right = [false, true, true, false, true, true, true];
    let line = |cells: &[String]| {
        let mut out = String::from("|");
        for ((cell, &w), &r) in cells.iter().zip(&widths).zip(&right) {
            let pad = " ".repeat(w - cell.chars().count());
            let _ = if r {
                write!(out, " {pad}{cell} |")
            } else {
                write!(out, " {cell}{pad} |")
            };
        }
        out
    };
    let mut out = line(&header.map(str::to_string));
    out.push('\n');
    out.push('|');
    for (&w, &r) in widths.iter().zip(&right) {
        let dashes = "-".repeat(w + 1);
        let _ = if r {
            write!(out, "{dashes}:|")
        } else {
            write!(out, "{dashes}-|")
        };
    }
    for row in &rows {
        out.push('\n');
        out.push_str(&line(row));
    }
    out
}

/// The lines under the table: load, first token, KV cache, memory, prompt cache.
fn summary(report: &Report) -> String {
    let mib = |b: Option<u64>| {
        b.map_or_else(
            || "?".to_string(),
            |b| format!("{:.1} MiB", b as f64 / 1048576.0),
        )
    };
    format!(
        "load: {:.1} ms\nfirst token: {:.1} ms after load ({}, cold)\nload + first token: {:.1} ms\n\
         peak RSS: {} (at the end: {} file-backed, {} anonymous)",
        report.load_ms,
        report.first_token_ms,
        report.first_token_test,
        report.load_ms + report.first_token_ms,
        mib(report.peak_rss_bytes),
        mib(report.rss_file_bytes),
        mib(report.rss_anon_bytes),
    ) + &kv_lines(report)
}

/// `KV cache: …` per distinct test context, then the prompt-cache lines.
fn kv_lines(report: &Report) -> String {
    let mut out = String::new();
    let mut seen = Vec::new();
    for t in &report.tests {
        if !seen.contains(&(t.n_ctx, t.kv_bytes)) {
            seen.push((t.n_ctx, t.kv_bytes));
            let _ = write!(
                out,
                "\nKV cache: {:.1} MiB ({}, {} positions)",
                t.kv_bytes as f64 / 1048576.0,
                t.type_k,
                t.n_ctx
            );
        }
    }
    for p in &report.prompt_cache {
        let _ = write!(out, "\n{}", super::bench_cache::line(p));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_follows_llama_bench_order_and_skips_zeros() {
        let tests = test_matrix(&[0, 16], &[4, 0], &[1, 2]);
        let names: Vec<(String, usize)> = tests.iter().map(|t| (t.name(), t.threads)).collect();
        assert_eq!(
            names,
            [
                ("pp16".into(), 1),
                ("tg4".into(), 1),
                ("pp16".into(), 2),
                ("tg4".into(), 2)
            ]
        );
        assert!(test_matrix(&[0], &[0], &[1]).is_empty());
    }

    #[test]
    fn context_is_prompt_plus_generated_unless_set() {
        let test = Test {
            n_prompt: 0,
            n_gen: 128,
            threads: 1,
        };
        assert_eq!(context_size(&test, None).unwrap(), 128);
        assert_eq!(context_size(&test, Some(4096)).unwrap(), 4096);
        let err = context_size(&test, Some(64)).unwrap_err().to_string();
        assert!(
            err.contains("--ctx-size 64") && err.contains("tg128"),
            "{err}"
        );
        let huge = Test {
            n_prompt: usize::MAX,
            n_gen: 1,
            threads: 1,
        };
        assert!(context_size(&huge, None).is_err());
    }

    #[test]
    fn statistics_match_llama_bench() {
        assert_eq!(stddev(&[5.0]), 0.0);
        let values = [2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0];
        assert_eq!(mean(&values), 5.0);
        // Sample standard deviation: sqrt(32 / 7).
        assert!((stddev(&values) - (32.0f64 / 7.0).sqrt()).abs() < 1e-12);
    }

    #[test]
    fn status_fields_are_read_in_bytes() {
        let status = "Name:\ttern\nVmHWM:\t  123456 kB\nRssAnon:\t    2048 kB\nRssFile:\t x kB\n";
        assert_eq!(status_field(status, "VmHWM"), Some(123456 * 1024));
        assert_eq!(status_field(status, "RssAnon"), Some(2048 * 1024));
        assert_eq!(status_field(status, "RssFile"), None);
        assert_eq!(status_field(status, "VmRSS"), None);
    }
}
