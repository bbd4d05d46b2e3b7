//! `tern rm REF…`: remove references from the store; a blob goes when no reference uses it.

use anyhow::Context;
use serde::Serialize;

use crate::cli::GlobalArgs;
use crate::model::open_store;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// Store references (name[:tag]) to remove
    #[arg(required = true)]
    pub references: Vec<String>,
}

#[derive(Debug, Serialize)]
struct RemovedJson {
    reference: String,
    digest: String,
    /// The file was deleted (no other reference used it).
    blob_removed: bool,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = open_store()?;
    let mut removed = Vec::new();
    for reference in &args.references {
        let outcome = store
            .remove(reference)
            .with_context(|| format!("removing `{reference}`"))?;
        let m = &outcome.manifest;
        let blob = if outcome.blob_removed {
            format!("freed {}", output::bytes(m.size))
        } else {
            "file kept: another reference uses it".into()
        };
        output::say(global, format!("removed {} ({blob})", m.reference()));
        removed.push(RemovedJson {
            reference: m.reference(),
            digest: m.digest.clone(),
            blob_removed: outcome.blob_removed,
        });
    }
    if global.json {
        output::print_json(&removed)?;
    }
    Ok(())
}
