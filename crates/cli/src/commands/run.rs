//! `tern run [MODEL] PROMPT`: answer one prompt and exit.
//!
//! The prompt goes through the model's chat template (as a user message, or the whole
//! `--messages` list) unless `--raw`; the answer streams to stdout as it is generated.
//! `--json` prints one [`Report`] instead (a documented contract, docs/CLI.md).
//!
//! Also home of what `chat` shares: [`SamplingArgs`] and [`load`].

use std::io::Write;
use std::ops::ControlFlow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use serde::Serialize;
use tern_engine::session::{chat_prompt_with, sampler_vocabulary};
use tern_engine::{GenerateOptions, Model, ModelOptions, Session, SessionOptions};
use tern_kernels::pool::default_threads;
use tern_sampler::{ConstrainedDecoder, Constraint, SamplingParams};
use tern_tokenizer::Tokenizer;
use tern_tokenizer::chat::{ChatTemplate, Message};

use crate::cli::GlobalArgs;
use crate::exit::{BAD_MODEL, Failure};
use crate::kv::{self, KvTypeArg};
use crate::model::{ResolvedModel, resolve_model};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model (default: smollm2-135m-instruct); with it, the positional arguments are
    /// all prompt
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<String>,
    /// [MODEL] PROMPT: with two or more arguments and no --model, the first is the model
    #[arg(value_name = "[MODEL] PROMPT")]
    pub args: Vec<String>,
    /// Feed the prompt as it is, without the chat template
    #[arg(long)]
    pub raw: bool,
    /// Read the conversation from an OpenAI-style JSON list of {"role", "content"}
    #[arg(long, value_name = "FILE.json", conflicts_with = "raw")]
    pub messages: Option<PathBuf>,
    /// A system message before the prompt
    #[arg(long, value_name = "TEXT", conflicts_with_all = ["raw", "messages"])]
    pub system: Option<String>,
    /// Constrain the answer to JSON valid against this JSON Schema file
    #[arg(long, value_name = "FILE.json")]
    pub schema: Option<PathBuf>,
    #[command(flatten)]
    pub sampling: SamplingArgs,
}

/// Generation settings shared by `run` and `chat` (llama.cpp's defaults).
#[derive(Clone, Debug, clap::Args)]
pub struct SamplingArgs {
    /// Most tokens to generate
    #[arg(
        short = 'n',
        long = "max-tokens",
        value_name = "N",
        default_value_t = 512
    )]
    pub max_tokens: usize,
    /// Sampling temperature; 0 is greedy
    #[arg(long, value_name = "T", default_value_t = 0.8)]
    pub temperature: f32,
    /// Keep the K most likely tokens (0: off)
    #[arg(long, value_name = "K", default_value_t = 40)]
    pub top_k: usize,
    /// Keep the most likely tokens up to probability P (1: off)
    #[arg(long, value_name = "P", default_value_t = 0.95)]
    pub top_p: f32,
    /// Drop tokens less likely than P times the most likely one (0: off)
    #[arg(long, value_name = "P", default_value_t = 0.05)]
    pub min_p: f32,
    /// Penalize tokens repeated in the last 64 (1: off)
    #[arg(long, value_name = "X", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Random seed (default: random)
    #[arg(long, value_name = "N")]
    pub seed: Option<u64>,
    /// Context size in tokens (default: the model's trained length, at most 4096)
    #[arg(short = 'c', long = "ctx-size", value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Type of the cached keys and values
    #[arg(long = "kv-type", value_name = "TYPE", default_value = "f16")]
    pub kv_type: KvTypeArg,
    /// Keep generating after end-of-generation tokens (they are never chosen)
    #[arg(long)]
    pub ignore_eos: bool,
    /// Stop before this text (repeatable)
    #[arg(long, value_name = "TEXT")]
    pub stop: Vec<String>,
    /// Thinking mode of chat templates that have one (Qwen3's `enable_thinking`): true or
    /// false (default: the template's own, thinking on for Qwen3)
    #[arg(long, value_name = "BOOL")]
    pub enable_thinking: Option<bool>,
    /// Threads the forward pass is split over (default: the physical cores this process
    /// may use)
    #[arg(short = 't', long, value_name = "N", env = "TERN_THREADS")]
    pub threads: Option<usize>,
}

impl SamplingArgs {
    /// Extra variables for the chat template.
    pub fn template_variables(&self) -> serde_json::Map<String, serde_json::Value> {
        let mut variables = serde_json::Map::new();
        if let Some(on) = self.enable_thinking {
            variables.insert("enable_thinking".into(), on.into());
        }
        variables
    }

    /// The sampler parameters.
    pub fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repeat_penalty: self.repeat_penalty,
            seed: self.seed,
            ..SamplingParams::default()
        }
    }

    /// Generation options for one answer.
    pub fn generate_options(&self) -> GenerateOptions {
        GenerateOptions {
            sampling: self.params(),
            max_tokens: Some(self.max_tokens),
            stop: self.stop.clone(),
            ignore_eos: self.ignore_eos,
            constraint: None,
        }
    }
}

/// A model with its tokenizer, chat template and a session over it.
pub struct Loaded {
    pub model: ResolvedModel,
    pub session: Session,
    pub template: ChatTemplate,
    pub load_time: std::time::Duration,
}

/// Resolves, loads and opens a session on `model` (or the default model).
pub fn load(
    global: &GlobalArgs,
    model: Option<&str>,
    sampling: &SamplingArgs,
) -> anyhow::Result<Loaded> {
    let resolved = resolve_model(global, model)?;
    let started = Instant::now();
    let options = ModelOptions {
        kv_type: sampling.kv_type.engine(),
        ..ModelOptions::default()
    };
    let engine = Model::load(&resolved.path, options).map_err(|e| bad_model(&resolved, e))?;
    let meta = engine.file().metadata();
    let tokenizer =
        Tokenizer::from_gguf(meta).with_context(|| format!("tokenizer of {}", resolved.display))?;
    let template = ChatTemplate::from_gguf(meta, &tokenizer)
        .with_context(|| format!("chat template of {}", resolved.display))?;
    let threads = sampling.threads.unwrap_or_else(default_threads);
    if threads == 0 {
        bail!("--threads must be positive");
    }
    let trained = engine.config().context_length.max(1);
    let context = sampling.ctx_size.unwrap_or(trained.min(4096));
    if context == 0 {
        bail!("--ctx-size must be positive");
    }
    if context > trained && engine.config().context_length > 0 {
        output::say(
            global,
            format!(
                "tern: warning: --ctx-size {context} is beyond the {trained} positions {} was \
                 trained on; expect poor output past them",
                resolved.display
            ),
        );
    }
    let options = SessionOptions {
        context,
        threads,
        ..SessionOptions::default()
    };
    kv::check_memory(
        global,
        &engine.kv_cache_spec(1, context, options.ubatch.min(context)),
    )?;
    let session = Session::new(Arc::new(engine), Arc::new(tokenizer), options)?;
    Ok(Loaded {
        model: resolved,
        session,
        template,
        load_time: started.elapsed(),
    })
}

/// A model that cannot be loaded: exit code 5 (not a usable model), naming the file.
pub fn bad_model(model: &ResolvedModel, error: tern_engine::Error) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code: BAD_MODEL,
        message: format!("cannot load {}: {error}", model.display),
        help: Some(format!(
            "`tern inspect {}` shows what the file holds",
            model.path.display()
        )),
    })
}

/// The `--json` document of `tern run`.
#[derive(Debug, Serialize)]
pub struct Report {
    /// The model as named to the user (`name:tag` or a path).
    pub model: String,
    /// The prompt text after templating (as fed to the tokenizer).
    pub prompt_text: String,
    /// The prompt's token ids, as fed to the model (BOS included when the model adds it).
    pub prompt_tokens: Vec<u32>,
    /// The generated token ids (without a final end-of-generation token).
    pub tokens: Vec<u32>,
    /// The answer.
    pub text: String,
    /// `stop` (end of generation or a stop string), `length` (max tokens or context).
    pub finish_reason: String,
    pub timings: Timings,
}

/// Times of a run, in milliseconds, and speeds in tokens per second.
#[derive(Debug, Serialize)]
pub struct Timings {
    pub load_ms: f64,
    pub prompt_ms: f64,
    pub prompt_tokens_per_second: f64,
    pub generation_ms: f64,
    pub generation_tokens_per_second: f64,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let (model, prompt) = split_args(&args)?;
    let mut loaded = load(global, model.as_deref(), &args.sampling)?;
    let prompt_text = if args.raw {
        prompt
    } else {
        let messages = match &args.messages {
            Some(path) => read_messages(path)?,
            None => {
                let mut messages = Vec::new();
                if let Some(system) = &args.system {
                    messages.push(Message::system(system.clone()));
                }
                messages.push(Message::user(prompt));
                messages
            }
        };
        let variables = args.sampling.template_variables();
        chat_prompt_with(
            &loaded.template,
            loaded.session.tokenizer(),
            &messages,
            &variables,
        )?
    };
    let prompt_tokens = loaded.session.tokenize_prompt(&prompt_text);
    let mut options = args.sampling.generate_options();
    if let Some(path) = &args.schema {
        options.constraint = Some(schema_constraint(path, loaded.session.tokenizer())?);
    }

    let stream = !global.json;
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let generation = loaded.session.generate(&prompt_tokens, options, |piece| {
        if stream
            && let Err(e) = stdout
                .write_all(piece.as_bytes())
                .and_then(|()| stdout.flush())
        {
            write_error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = write_error {
        return Err(e.into());
    }
    if stream {
        writeln!(stdout)?;
        drop(stdout);
        output::say(
            global,
            format!(
                "[{} prompt tokens, {} generated at {:.1} tokens/s]",
                prompt_tokens.len(),
                generation.tokens.len(),
                per_second(generation.tokens.len(), generation.generation_time)
            ),
        );
        return Ok(());
    }
    drop(stdout);
    output::print_json(&Report {
        model: loaded.model.display.clone(),
        prompt_text,
        timings: Timings {
            load_ms: loaded.load_time.as_secs_f64() * 1e3,
            prompt_ms: generation.prompt_time.as_secs_f64() * 1e3,
            prompt_tokens_per_second: per_second(
                generation.prompt_tokens_fed,
                generation.prompt_time,
            ),
            generation_ms: generation.generation_time.as_secs_f64() * 1e3,
            generation_tokens_per_second: per_second(
                generation.tokens.len(),
                generation.generation_time,
            ),
        },
        prompt_tokens,
        tokens: generation.tokens,
        text: generation.text,
        finish_reason: generation.finish_reason.as_str().to_string(),
    })
}

/// `(model, prompt)` from `[MODEL] PROMPT` and `--model`.
fn split_args(args: &Args) -> anyhow::Result<(Option<String>, String)> {
    let mut positional = args.args.clone();
    let model = match (&args.model, positional.len()) {
        (Some(model), _) => Some(model.clone()),
        // With --messages the prompt is in the file: a single argument is the model.
        (None, 1) if args.messages.is_some() => Some(positional.remove(0)),
        (None, n) if n >= 2 => Some(positional.remove(0)),
        (None, _) => None,
    };
    let prompt = positional.join(" ");
    if prompt.is_empty() && args.messages.is_none() {
        bail!("no prompt given (usage: tern run [MODEL] PROMPT)");
    }
    Ok((model, prompt))
}

/// An OpenAI-style message list: `[{"role": "user", "content": "…"}, …]`.
fn read_messages(path: &std::path::Path) -> anyhow::Result<Vec<Message>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let messages: Vec<Message> = serde_json::from_str(&text).with_context(|| {
        format!(
            "{}: expected a JSON list of {{\"role\", \"content\"}} objects",
            path.display()
        )
    })?;
    if messages.is_empty() {
        bail!("{}: the message list is empty", path.display());
    }
    Ok(messages)
}

/// A decoder that keeps the output valid against the JSON Schema in `path`.
pub fn schema_constraint(
    path: &std::path::Path,
    tokenizer: &Tokenizer,
) -> anyhow::Result<ConstrainedDecoder> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let schema: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{}: not JSON", path.display()))?;
    let vocab = sampler_vocabulary(tokenizer)?;
    ConstrainedDecoder::new(&Constraint::JsonSchema(schema), Arc::new(vocab))
        .with_context(|| format!("schema {}", path.display()))
}

fn per_second(n: usize, time: std::time::Duration) -> f64 {
    let secs = time.as_secs_f64();
    if secs > 0.0 { n as f64 / secs } else { 0.0 }
}
