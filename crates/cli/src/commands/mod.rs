//! One module per subcommand; each has an `Args` (clap) and a `run`.

pub mod bench;
mod bench_cache;
pub mod chat;
pub mod doctor;
pub mod inspect;
pub mod models;
pub mod perplexity;
pub mod ps;
pub mod pull;
pub mod rm;
pub mod run;
pub mod serve;
pub mod tokenize;

use crate::cli::{Command, GlobalArgs};

/// Runs one command.
pub fn run(command: Command, global: &GlobalArgs) -> anyhow::Result<()> {
    match command {
        Command::Bench(args) => bench::run(args, global),
        Command::Chat(args) => chat::run(args, global),
        Command::Run(args) => run::run(args, global),
        Command::Pull(args) => pull::run(args, global),
        Command::Models(args) => models::run(args, global),
        Command::Rm(args) => rm::run(args, global),
        Command::Inspect(args) => inspect::run(args, global),
        Command::Doctor(args) => doctor::run(args, global),
        Command::Tokenize(args) => tokenize::run(args, global),
        Command::Perplexity(args) => perplexity::run(args, global),
        Command::Serve(args) => serve::run(args, global),
        Command::Ps(args) => ps::run(args, global),
    }
}
