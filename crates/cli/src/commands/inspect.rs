//! `tern inspect MODEL`: what a GGUF file holds — architecture, size, quantization,
//! geometry, tokenizer — without loading the weights.
//!
//! `--json` prints [`Report`]; its fields are a documented contract (docs/CLI.md), locked
//! by a test that rejects unknown fields.

use std::collections::BTreeMap;

use anyhow::Context;
use serde::Serialize;
use tern_gguf::{GgufFile, Key, Metadata, PerLayer, file_type_name};

use crate::cli::GlobalArgs;
use crate::model::resolve_model;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A GGUF file or any model reference (pulled first if needed)
    #[arg(value_name = "FILE|REF")]
    pub model: String,
}

/// The `--json` document.
#[derive(Debug, Serialize)]
pub struct Report {
    pub path: String,
    /// `name:tag` when the file is in the store.
    pub reference: Option<String>,
    pub gguf_version: u32,
    /// `general.architecture`.
    pub architecture: Option<String>,
    /// `general.name`.
    pub name: Option<String>,
    /// Sum of the elements of every tensor.
    pub parameters: u64,
    /// `general.file_type` as llama.cpp names it (`Q4_1`, `Q4_K_M`…).
    pub file_type: Option<String>,
    /// Tensors and bytes per tensor type, largest first.
    pub quant_mix: Vec<QuantShare>,
    pub tensor_count: usize,
    pub metadata_count: usize,
    pub context_length: Option<u64>,
    pub block_count: Option<u32>,
    pub embedding_length: Option<u32>,
    /// The largest value when it varies per layer.
    pub feed_forward_length: Option<u32>,
    /// The largest value when it varies per layer.
    pub head_count: Option<u32>,
    /// The largest value when it varies per layer.
    pub head_count_kv: Option<u32>,
    /// `attention.key_length`, else embedding / heads.
    pub head_dim: Option<u32>,
    pub sliding_window: Option<u32>,
    pub rope_freq_base: Option<f32>,
    pub tokenizer: TokenizerReport,
    pub chat_template: bool,
    /// Bytes of the whole file.
    pub file_size: u64,
    /// Bytes of tensor data (sum over tensors, without padding).
    pub tensor_data_size: u64,
}

#[derive(Debug, Serialize)]
pub struct QuantShare {
    /// ggml type name (`Q4_1`, `F32`…).
    #[serde(rename = "type")]
    pub ggml_type: String,
    pub tensors: usize,
    pub bytes: u64,
    pub parameters: u64,
}

#[derive(Debug, Serialize)]
pub struct TokenizerReport {
    /// `tokenizer.ggml.model` (`gpt2`, `llama`…).
    pub model: Option<String>,
    /// `tokenizer.ggml.pre`.
    pub pre: Option<String>,
    /// Entries of `tokenizer.ggml.tokens`.
    pub vocab_size: Option<usize>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let model = resolve_model(global, Some(&args.model))?;
    let file = GgufFile::open(&model.path)
        .with_context(|| format!("reading `{}`", model.path.display()))?;
    let report = report(&file, &model)
        .with_context(|| format!("reading the metadata of `{}`", model.path.display()))?;
    if global.json {
        output::print_json(&report)?;
    } else {
        output::say(global, human(&report));
    }
    Ok(())
}

fn largest(value: Option<PerLayer>) -> Option<u32> {
    match value? {
        PerLayer::Same(v) => Some(v),
        PerLayer::Each(values) => values.into_iter().max(),
    }
}

fn report(
    file: &GgufFile,
    model: &crate::model::ResolvedModel,
) -> Result<Report, tern_gguf::Error> {
    let meta: &Metadata = file.metadata();
    let mut mix: BTreeMap<String, QuantShare> = BTreeMap::new();
    for tensor in file.tensors() {
        let share = mix
            .entry(tensor.ggml_type.name().to_string())
            .or_insert_with(|| QuantShare {
                ggml_type: tensor.ggml_type.name().to_string(),
                tensors: 0,
                bytes: 0,
                parameters: 0,
            });
        share.tensors += 1;
        share.bytes += tensor.n_bytes;
        share.parameters += tensor.n_elements();
    }
    let mut quant_mix: Vec<QuantShare> = mix.into_values().collect();
    quant_mix.sort_by(|a, b| b.bytes.cmp(&a.bytes).then(a.ggml_type.cmp(&b.ggml_type)));

    let embedding_length = meta.get_u32(Key::EmbeddingLength)?;
    let head_count = largest(meta.get_u32_or_array(Key::AttentionHeadCount)?);
    let head_dim = match meta.get_u32(Key::AttentionKeyLength)? {
        Some(dim) => Some(dim),
        None => match (embedding_length, head_count) {
            (Some(embedding), Some(heads)) if heads > 0 => Some(embedding / heads),
            _ => None,
        },
    };
    let file_type = meta
        .get_u32(Key::GeneralFileType)?
        .map(|id| file_type_name(id).map_or_else(|| format!("unknown ({id})"), str::to_string));
    Ok(Report {
        path: model.path.display().to_string(),
        reference: model.installed.as_ref().map(|i| i.manifest.reference()),
        gguf_version: file.version(),
        architecture: meta.architecture_name().map(str::to_string),
        name: meta.get_str(Key::GeneralName)?.map(str::to_string),
        parameters: file.tensors().iter().map(|t| t.n_elements()).sum(),
        file_type,
        quant_mix,
        tensor_count: file.tensors().len(),
        metadata_count: meta.len(),
        context_length: meta.get_u64(Key::ContextLength)?,
        block_count: meta.get_u32(Key::BlockCount)?,
        embedding_length,
        feed_forward_length: largest(meta.get_u32_or_array(Key::FeedForwardLength)?),
        head_count,
        head_count_kv: largest(meta.get_u32_or_array(Key::AttentionHeadCountKv)?),
        head_dim,
        sliding_window: meta.get_u32(Key::AttentionSlidingWindow)?,
        rope_freq_base: meta.get_f32(Key::RopeFreqBase)?,
        tokenizer: TokenizerReport {
            model: meta.get_str(Key::TokenizerModel)?.map(str::to_string),
            pre: meta.get_str(Key::TokenizerPre)?.map(str::to_string),
            vocab_size: meta.get_array(Key::TokenizerTokens)?.map(|a| a.len()),
        },
        chat_template: meta.get(Key::TokenizerChatTemplate).is_some(),
        file_size: file.file_size(),
        tensor_data_size: file.tensors().iter().map(|t| t.n_bytes).sum(),
    })
}

/// Millions or billions, as model sizes are usually written.
fn parameters(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2}B", n as f64 / 1e9)
    } else {
        format!("{:.1}M", n as f64 / 1e6)
    }
}

fn human(r: &Report) -> String {
    let opt = |v: Option<String>| v.unwrap_or_else(|| "-".into());
    let num = |v: Option<u32>| opt(v.map(|v| v.to_string()));
    let mix: Vec<String> = r
        .quant_mix
        .iter()
        .map(|q| {
            format!(
                "{} ×{} ({})",
                q.ggml_type,
                q.tensors,
                output::bytes(q.bytes)
            )
        })
        .collect();
    let rows = [
        ("file", format!("{} (GGUF v{})", r.path, r.gguf_version)),
        ("reference", opt(r.reference.clone())),
        ("name", opt(r.name.clone())),
        ("architecture", opt(r.architecture.clone())),
        (
            "parameters",
            format!("{} ({})", parameters(r.parameters), r.parameters),
        ),
        ("file type", opt(r.file_type.clone())),
        ("tensor types", mix.join(", ")),
        (
            "context length",
            opt(r.context_length.map(|v| v.to_string())),
        ),
        ("layers", num(r.block_count)),
        ("embedding", num(r.embedding_length)),
        ("feed-forward", num(r.feed_forward_length)),
        (
            "heads",
            format!(
                "{} (KV {}), head dim {}",
                num(r.head_count),
                num(r.head_count_kv),
                num(r.head_dim)
            ),
        ),
        ("sliding window", num(r.sliding_window)),
        ("rope base", opt(r.rope_freq_base.map(|v| v.to_string()))),
        (
            "tokenizer",
            format!(
                "{} (pre-tokenizer {}), vocab {}",
                opt(r.tokenizer.model.clone()),
                opt(r.tokenizer.pre.clone()),
                opt(r.tokenizer.vocab_size.map(|v| v.to_string()))
            ),
        ),
        (
            "chat template",
            if r.chat_template {
                "yes".into()
            } else {
                "no".into()
            },
        ),
        (
            "size",
            format!(
                "{} file, {} tensor data in {} tensors",
                output::bytes(r.file_size),
                output::bytes(r.tensor_data_size),
                r.tensor_count
            ),
        ),
    ];
    rows.iter()
        .map(|(k, v)| format!("{k:<15} {v}"))
        .collect::<Vec<_>>()
        .join("\n")
}
