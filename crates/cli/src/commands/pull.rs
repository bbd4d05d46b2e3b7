//! `tern pull REF`: download a model into the store.

use anyhow::Context;
use serde::Serialize;
use tern_store::{Installed, ModelRef, PullOptions};

use crate::cli::GlobalArgs;
use crate::model::open_store;
use crate::output;
use crate::progress::Reporter;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// What to pull: a catalog name[:tag], hf://org/repo/file.gguf, an http(s) URL,
    /// pip:NAME==VER[,…], or a local path to import
    pub reference: String,
    /// Install under this name[:tag] instead of the derived one
    #[arg(long, value_name = "NAME[:TAG]")]
    pub name: Option<String>,
    /// The file's expected sha256; the pull fails if the bytes differ
    #[arg(long, value_name = "HEX")]
    pub sha256: Option<String>,
    /// Download again even if the model is in the store
    #[arg(long)]
    pub force: bool,
}

/// `--json` output of `tern pull` and one entry of `tern models --json`.
#[derive(Debug, Serialize)]
pub struct ModelJson {
    /// `name:tag`.
    pub reference: String,
    pub name: String,
    pub tag: String,
    /// `sha256:<hex>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// The blob file.
    pub path: String,
    /// The reference it was pulled from.
    pub source: String,
    /// Seconds since the Unix epoch.
    pub pulled_at: u64,
}

impl ModelJson {
    pub fn new(installed: &Installed) -> ModelJson {
        let m = &installed.manifest;
        ModelJson {
            reference: m.reference(),
            name: m.name.clone(),
            tag: m.tag.clone(),
            digest: m.digest.clone(),
            size: m.size,
            path: installed.path.display().to_string(),
            source: m.source.clone(),
            pulled_at: m.pulled_at,
        }
    }
}

#[derive(Debug, Serialize)]
struct PullJson {
    #[serde(flatten)]
    model: ModelJson,
    /// False when the model was already present.
    fetched: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let reference = ModelRef::parse(&args.reference)?;
    let store = open_store()?;
    let options = PullOptions {
        name: args.name,
        sha256: args.sha256,
        force: args.force,
    };
    let progress = Reporter::new(global);
    let pulled = store
        .pull(&reference, &options, &progress)
        .with_context(|| format!("pulling `{}`", args.reference))?;
    let m = &pulled.installed.manifest;
    if pulled.fetched {
        output::say(
            global,
            format!(
                "pulled {} ({}, sha256 {}) from {}",
                m.reference(),
                output::bytes(m.size),
                m.sha256(),
                m.source
            ),
        );
    } else {
        output::say(
            global,
            format!(
                "{} is already in the store ({})",
                m.reference(),
                output::bytes(m.size)
            ),
        );
    }
    if global.json {
        output::print_json(&PullJson {
            model: ModelJson::new(&pulled.installed),
            fetched: pulled.fetched,
        })?;
    }
    Ok(())
}
