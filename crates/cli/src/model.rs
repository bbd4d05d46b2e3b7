//! Turning a MODEL argument into a local GGUF file: the one call every command that loads
//! a model makes.
//!
//! Any reference works (catalog name, `name:tag`, path, `hf://`, URL, `pip:`); a catalog
//! model or remote reference not yet in the store is pulled first, with the progress bar.
//! Without an argument the default model (`smollm2-135m-instruct`) is used.

use std::path::PathBuf;

use anyhow::Context;
use tern_store::{DEFAULT_MODEL, Installed, ModelRef, Store, StoreConfig};

use crate::cli::GlobalArgs;
use crate::output;
use crate::progress::Reporter;

/// A model ready to open.
#[derive(Clone, Debug)]
pub struct ResolvedModel {
    /// The GGUF file.
    pub path: PathBuf,
    /// How to name it to the user: `name:tag` for store models, the path otherwise.
    pub display: String,
    /// The store entry, for store models.
    pub installed: Option<Installed>,
}

/// Opens the store configured by the environment (`TERN_HOME`, `HF_ENDPOINT`, `HF_TOKEN`,
/// `TERN_PYTHON`).
pub fn open_store() -> anyhow::Result<Store> {
    let config = StoreConfig::from_env()?;
    let home = config.home.clone();
    Store::open(config).with_context(|| format!("opening the model store at {}", home.display()))
}

/// Resolves `model` (or the default model) to a local file, pulling it when needed.
pub fn resolve_model(global: &GlobalArgs, model: Option<&str>) -> anyhow::Result<ResolvedModel> {
    let text = model.unwrap_or(DEFAULT_MODEL);
    let reference = ModelRef::parse(text)?;
    let store = open_store()?;
    let progress = Reporter::new(global);
    let resolved = store
        .resolve(&reference, &progress)
        .with_context(|| format!("model `{text}`"))?;
    let label = match &resolved.installed {
        Some(installed) => installed.manifest.reference(),
        None => resolved.path.display().to_string(),
    };
    if resolved.pulled {
        output::say(global, format!("pulled {label}"));
    }
    tracing::info!(model = %label, path = %resolved.path.display(), "model resolved");
    Ok(ResolvedModel {
        path: resolved.path,
        display: label,
        installed: resolved.installed,
    })
}
