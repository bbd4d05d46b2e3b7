//! `tern tokenize [MODEL] TEXT`: the token ids of TEXT as the model sees it as a prompt —
//! BOS when the model adds one, special-token text parsed (llama.cpp's `llama-tokenize`
//! defaults). Only the tokenizer is read, not the weights.
//!
//! Human output: one `id  'piece'` line per token on stdout. `--json`: `{"tokens": [...]}`,
//! plus `pieces` (each token's text, lossy UTF-8) and `count`.

use anyhow::Context;
use serde::Serialize;
use tern_gguf::GgufFile;
use tern_tokenizer::Tokenizer;

use crate::cli::GlobalArgs;
use crate::model::resolve_model;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model (default: smollm2-135m-instruct); with it, the arguments are all text
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<String>,
    /// [MODEL] TEXT: with two or more arguments and no --model, the first is the model
    #[arg(value_name = "[MODEL] TEXT", required = true)]
    pub args: Vec<String>,
    /// Do not add BOS/EOS even when the model asks for them
    #[arg(long)]
    pub no_special: bool,
    /// Treat special-token text (`<|im_start|>`) as plain text
    #[arg(long)]
    pub no_parse_special: bool,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub tokens: Vec<u32>,
    pub pieces: Vec<String>,
    pub count: usize,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let mut positional = args.args.clone();
    let model = match &args.model {
        Some(m) => Some(m.clone()),
        None if positional.len() >= 2 => Some(positional.remove(0)),
        None => None,
    };
    let text = positional.join(" ");
    let resolved = resolve_model(global, model.as_deref())?;
    let file =
        GgufFile::open(&resolved.path).with_context(|| format!("reading {}", resolved.display))?;
    let tokenizer = Tokenizer::from_gguf(file.metadata())
        .with_context(|| format!("tokenizer of {}", resolved.display))?;
    let tokens = tokenizer.encode(&text, !args.no_special, !args.no_parse_special);
    let pieces: Vec<String> = tokens
        .iter()
        .map(|&t| String::from_utf8_lossy(tokenizer.token_bytes(t)).into_owned())
        .collect();
    if global.json {
        return output::print_json(&Report {
            count: tokens.len(),
            tokens,
            pieces,
        });
    }
    let mut out = String::new();
    for (id, piece) in tokens.iter().zip(&pieces) {
        out.push_str(&format!("{id:>7}  {piece:?}\n"));
    }
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(out.as_bytes())?;
    stdout.flush()?;
    Ok(())
}
