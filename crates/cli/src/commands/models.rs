//! `tern models`: what is in the store, or (`--catalog`) what tern can pull by name.

use serde::Serialize;
use tern_store::{Catalog, CatalogModel};

use super::pull::ModelJson;
use crate::cli::GlobalArgs;
use crate::model::open_store;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// List the built-in catalog instead of the installed models
    #[arg(long)]
    pub catalog: bool,
}

#[derive(Debug, Serialize)]
struct CatalogJson<'a> {
    #[serde(flatten)]
    model: &'a CatalogModel,
    /// `name:tag` of the variants present in the store.
    installed: Vec<String>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let store = open_store()?;
    let installed = store.list()?;
    if args.catalog {
        let catalog = Catalog::builtin();
        if global.json {
            let entries: Vec<CatalogJson<'_>> = catalog
                .models
                .iter()
                .map(|model| CatalogJson {
                    model,
                    installed: installed
                        .iter()
                        .filter(|i| i.manifest.name == model.name)
                        .map(|i| i.manifest.reference())
                        .collect(),
                })
                .collect();
            return output::print_json(&entries);
        }
        let mut rows = Vec::new();
        for model in &catalog.models {
            for variant in &model.variants {
                let reference = format!("{}:{}", model.name, variant.tag);
                let default = if variant.tag == model.default_tag {
                    " (default)"
                } else {
                    ""
                };
                let present = installed
                    .iter()
                    .any(|i| i.manifest.reference() == reference);
                let size = output::bytes(variant.size);
                rows.push(vec![
                    format!("{reference}{default}"),
                    model.parameters.clone(),
                    variant.quant.clone(),
                    if variant.sha256.is_some() {
                        size
                    } else {
                        format!("~{size}")
                    },
                    format!("{} MiB", variant.ram_mb),
                    model.context.to_string(),
                    model.license.clone(),
                    if present { "yes".into() } else { String::new() },
                ]);
            }
        }
        let header = [
            "MODEL",
            "PARAMS",
            "QUANT",
            "SIZE",
            "RAM",
            "CONTEXT",
            "LICENSE",
            "INSTALLED",
        ];
        output::say(global, output::table(&header, &rows));
        return Ok(());
    }
    if global.json {
        let entries: Vec<ModelJson> = installed.iter().map(ModelJson::new).collect();
        return output::print_json(&entries);
    }
    if installed.is_empty() {
        output::say(
            global,
            "no models in the store (`tern pull NAME` adds one; `tern models --catalog` lists names)",
        );
        return Ok(());
    }
    let rows: Vec<Vec<String>> = installed
        .iter()
        .map(|i| {
            let m = &i.manifest;
            vec![
                m.reference(),
                output::bytes(m.size),
                m.sha256()[..12].to_string(),
                m.source.clone(),
            ]
        })
        .collect();
    let total: u64 = installed.iter().map(|i| i.manifest.size).sum();
    output::say(
        global,
        output::table(&["MODEL", "SIZE", "SHA256", "SOURCE"], &rows),
    );
    output::say(
        global,
        format!(
            "{} model(s), {} in {}",
            installed.len(),
            output::bytes(total),
            store.home().display()
        ),
    );
    Ok(())
}
