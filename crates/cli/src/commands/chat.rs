//! `tern chat [MODEL]`: interactive chat.
//!
//! Until the engine lands this resolves (and pulls) the model, then stops with a clear
//! message and exit code 7: the part that is missing is generation.

use crate::cli::GlobalArgs;
use crate::exit::{Failure, NOT_IMPLEMENTED};
use crate::model::resolve_model;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The model: a catalog name[:tag], store reference, path, hf://, URL or pip: reference
    /// (default: smollm2-135m-instruct)
    #[arg(value_name = "MODEL")]
    pub model: Option<String>,
    /// The model, as an option (same as the positional MODEL)
    #[arg(short, long = "model", value_name = "MODEL", conflicts_with = "model")]
    pub model_option: Option<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let model = resolve_model(global, args.model.or(args.model_option).as_deref())?;
    Err(engine_missing("chat", &model))
}

/// The error the engine commands return until generation exists.
pub fn engine_missing(command: &str, model: &crate::model::ResolvedModel) -> anyhow::Error {
    anyhow::Error::new(Failure {
        code: NOT_IMPLEMENTED,
        message: format!(
            "{command}: the model is ready ({} at {}), but the inference engine (model \
             loading, tokenizer and generation) has not landed in this build yet",
            model.display,
            model.path.display()
        ),
        help: Some("`tern inspect` shows what the model file holds".into()),
    })
}
