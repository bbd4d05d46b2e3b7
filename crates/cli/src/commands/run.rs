//! `tern run [-m MODEL] PROMPT`: answer one prompt and exit.
//!
//! Until the engine lands this resolves (and pulls) the model, then stops with a clear
//! message and exit code 7.

use crate::cli::GlobalArgs;
use crate::model::resolve_model;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model (default: smollm2-135m-instruct)
    #[arg(short, long, value_name = "MODEL")]
    pub model: Option<String>,
    /// The prompt
    #[arg(value_name = "PROMPT")]
    pub prompt: Vec<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let model = resolve_model(global, args.model.as_deref())?;
    Err(super::chat::engine_missing("run", &model))
}
