//! The command line: global flags and the subcommand enum.
//!
//! Adding a command is one file under `commands/` (its `Args` and `run`) and one variant
//! here plus one arm in `commands::run`.

use clap::{Args, Parser, Subcommand};

use crate::commands;

/// tern: run small language models locally, on edge devices.
#[derive(Debug, Parser)]
#[command(
    name = "tern",
    version,
    about = "tern: run small language models locally, on edge devices",
    propagate_version = true
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

/// Flags that mean the same for every command.
#[derive(Clone, Debug, Args)]
pub struct GlobalArgs {
    /// Print machine-readable JSON on stdout (the formats are documented in docs/CLI.md)
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors (and the requested output); no progress bars
    #[arg(short, long, global = true)]
    pub quiet: bool,
    /// More log output on stderr (-v info, -vv debug, -vvv trace); RUST_LOG overrides
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Chat with a model (interactive)
    Chat(commands::chat::Args),
    /// Answer one prompt and exit
    Run(commands::run::Args),
    /// Download a model into the store
    Pull(commands::pull::Args),
    /// List the models in the store (or the catalog)
    Models(commands::models::Args),
    /// Remove models from the store
    Rm(commands::rm::Args),
    /// Show what is inside a model file
    Inspect(commands::inspect::Args),
    /// Check this machine: CPU features, memory, store, kernel path
    Doctor(commands::doctor::Args),
    /// Show the token ids of a text as the model sees it
    Tokenize(commands::tokenize::Args),
    /// Measure the model's perplexity on a text (as llama-perplexity does)
    Perplexity(commands::perplexity::Args),
    /// Serve models over HTTP (OpenAI- and Ollama-compatible APIs)
    Serve(commands::serve::Args),
    /// Show the models a running server holds, with their usage statistics
    Ps(commands::ps::Args),
    /// Measure prompt and generation speed, load time and memory (as llama-bench does)
    Bench(commands::bench::Args),
}
