//! The `tern` binary: argument parsing and output only.
//!
//! `main` parses the command line (clap), sets up logging (`tracing`, to stderr, level
//! from `RUST_LOG` or `-v`), runs one subcommand from [`commands`], and turns its error
//! into the message format and exit code documented in docs/CLI.md ([`exit`]).

mod cli;
mod commands;
mod exit;
mod kv;
mod logging;
mod model;
mod output;
mod progress;
mod system;

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let cli = match cli::Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => return exit::usage_error(&error),
    };
    logging::init(&cli.global);
    let result = commands::run(cli.command, &cli.global);
    exit::finish(result)
}
