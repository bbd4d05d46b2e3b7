//! `tern perplexity [MODEL] -f FILE -c 512`: perplexity of the model on a text, with
//! llama-perplexity's chunking and scoring (see `tern_engine::perplexity`), so the two
//! numbers compare directly.
//!
//! Human output: the running perplexity per chunk on stderr, the result on stdout.
//! `--json`: [`Report`] (`ppl`, `chunks`, …).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use tern_engine::{Model, ModelOptions, PerplexityOptions, perplexity};
use tern_kernels::pool::{ThreadPool, default_threads};
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
    /// The text file
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: PathBuf,
    /// Tokens per chunk
    #[arg(
        short = 'c',
        long = "ctx-size",
        value_name = "N",
        default_value_t = 512
    )]
    pub ctx_size: usize,
    /// Score only the first N chunks
    #[arg(long, value_name = "N")]
    pub chunks: Option<usize>,
    /// Type of the cached keys and values (compare with llama-perplexity's -ctk/-ctv)
    #[arg(long = "kv-type", value_name = "TYPE", default_value = "f16")]
    pub kv_type: KvTypeArg,
    /// Threads the forward pass is split over (default: the physical cores this process
    /// may use)
    #[arg(short = 't', long, value_name = "N", env = "TERN_THREADS")]
    pub threads: Option<usize>,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub model: String,
    pub file: String,
    pub ctx: usize,
    /// Type of the cached keys and values (`f16`, `q8_0`, `q4_0`).
    pub kv_type: String,
    /// Perplexity over every scored token.
    pub ppl: f64,
    /// Standard error of `ppl` (llama-perplexity's `+/-`).
    pub ppl_stderr: f64,
    pub chunks: usize,
    pub tokens: usize,
    pub tokens_scored: usize,
    /// The running perplexity after each chunk.
    pub running_ppl: Vec<f64>,
    pub seconds: f64,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let resolved = resolve_model(
        global,
        args.model.as_deref().or(args.model_option.as_deref()),
    )?;
    let options = ModelOptions {
        kv_type: args.kv_type.engine(),
        ..ModelOptions::default()
    };
    let model =
        Model::load(&resolved.path, options).map_err(|e| super::run::bad_model(&resolved, e))?;
    kv::check_memory(global, &model.kv_cache_spec(1, args.ctx_size, 512))?;
    let tokenizer = Tokenizer::from_gguf(model.file().metadata())
        .with_context(|| format!("tokenizer of {}", resolved.display))?;
    let mut text = std::fs::read_to_string(&args.file)
        .with_context(|| format!("reading {}", args.file.display()))?;
    // llama.cpp's `-f` reads the file and drops one trailing newline.
    if text.ends_with('\n') {
        text.pop();
    }
    // llama-perplexity: special tokens added (BOS), special-token text not parsed.
    let tokens = tokenizer.encode(&text, true, false);
    let threads = args.threads.unwrap_or_else(default_threads);
    let pool = match threads {
        0 => bail!("--threads must be positive"),
        1 => None,
        n => Some(Arc::new(
            ThreadPool::try_new(n).with_context(|| format!("cannot start {n} threads"))?,
        )),
    };
    let options = PerplexityOptions {
        pool,
        n_ctx: args.ctx_size,
        max_chunks: args.chunks,
        bos: if tokenizer.add_bos() {
            tokenizer.bos()
        } else {
            None
        },
    };
    let started = Instant::now();
    let report = perplexity(&model, &tokens, options, |chunk, total, ppl| {
        output::say(global, format!("[{chunk}/{total}] {ppl:.4}"));
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let ppl_stderr = report.ppl * report.nll_std_err;
    if global.json {
        return output::print_json(&Report {
            model: resolved.display,
            file: args.file.display().to_string(),
            ctx: args.ctx_size,
            kv_type: args.kv_type.engine().name().to_string(),
            ppl: report.ppl,
            ppl_stderr,
            chunks: report.chunks,
            tokens: tokens.len(),
            tokens_scored: report.tokens_scored,
            running_ppl: report.running_ppl,
            seconds,
        });
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    writeln!(
        stdout,
        "perplexity: {:.4} +/- {:.5} ({} chunks of {}, {} KV cache, {:.1} s)",
        report.ppl,
        ppl_stderr,
        report.chunks,
        args.ctx_size,
        args.kv_type.engine(),
        seconds
    )?;
    Ok(())
}
