//! Facts the APIs report about a model that are read from its GGUF file: Ollama's
//! `details` (family, parameter size, quantization), `/api/show`'s scalar metadata and
//! template, and the token texts of log-probability alternatives.
//!
//! The file's header is read once per path (memory-mapped, no tensor data touched) and
//! cached; the tokenizer is built only when a request asks for log-probabilities.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::{Map, Value as Json};
use tern_gguf::{GgufFile, Key, Value, file_type_name};
use tern_tokenizer::Tokenizer;

/// What one model file says about itself.
#[derive(Debug)]
pub struct FileFacts {
    pub family: String,
    pub parameter_size: String,
    pub quantization_level: String,
    pub context_length: Option<u64>,
    pub chat_template: Option<String>,
    /// Scalar metadata (no arrays, no tokenizer tables), for `/api/show`.
    pub model_info: Map<String, Json>,
    path: PathBuf,
    tokenizer: OnceLock<Option<Tokenizer>>,
}

impl FileFacts {
    fn read(path: &Path) -> Result<FileFacts, String> {
        let file = GgufFile::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let meta = file.metadata();
        let family = meta.architecture_name().unwrap_or("unknown").to_string();
        let parameter_size = meta
            .get(Key::GeneralSizeLabel)
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| parameter_size(&file));
        let quantization_level = meta
            .get(Key::GeneralFileType)
            .and_then(Value::as_i128)
            .and_then(|t| u32::try_from(t).ok())
            .and_then(file_type_name)
            .unwrap_or("unknown")
            .to_string();
        let context_length = meta
            .get(Key::ContextLength)
            .and_then(Value::as_i128)
            .and_then(|v| u64::try_from(v).ok());
        let chat_template = meta
            .get(Key::TokenizerChatTemplate)
            .and_then(Value::as_str)
            .map(str::to_string);
        let mut model_info = Map::new();
        for (key, value) in meta.iter() {
            if key.starts_with("tokenizer.") {
                continue;
            }
            let json = match value {
                Value::String(s) => Json::from(s.clone()),
                Value::Bool(b) => Json::from(*b),
                Value::F32(_) | Value::F64(_) => value.as_f64().map_or(Json::Null, Json::from),
                Value::Array(_) => continue,
                other => match other.as_i128().and_then(|v| i64::try_from(v).ok()) {
                    Some(v) => Json::from(v),
                    None => continue,
                },
            };
            model_info.insert(key.to_string(), json);
        }
        Ok(FileFacts {
            family,
            parameter_size,
            quantization_level,
            context_length,
            chat_template,
            model_info,
            path: path.to_path_buf(),
            tokenizer: OnceLock::new(),
        })
    }

    /// The text of token `id` as the tokenizer decodes it alone (`None` when the file's
    /// tokenizer cannot be built).
    pub fn token_text(&self, id: u32) -> Option<String> {
        let tokenizer = self.tokenizer.get_or_init(|| {
            let file = GgufFile::open(&self.path).ok()?;
            Tokenizer::from_gguf(file.metadata()).ok()
        });
        let tokenizer = tokenizer.as_ref()?;
        (usize::try_from(id).ok()? < tokenizer.vocab_size())
            .then(|| String::from_utf8_lossy(tokenizer.token_bytes(id)).into_owned())
    }
}

/// "135M", "1.7B": the parameter count from the tensor shapes, when the file has no
/// size label.
fn parameter_size(file: &GgufFile) -> String {
    let count: u64 = file
        .tensors()
        .iter()
        .map(|t| t.dims.iter().product::<u64>())
        .sum();
    match count {
        n if n >= 1_000_000_000 => format!("{:.1}B", n as f64 / 1e9),
        n if n >= 1_000_000 => format!("{}M", n / 1_000_000),
        n => format!("{n}"),
    }
}

/// The cache of [`FileFacts`] by path.
#[derive(Debug, Default)]
pub struct ModelFiles {
    facts: Mutex<HashMap<PathBuf, Arc<FileFacts>>>,
}

impl ModelFiles {
    /// The facts of the file at `path` (read on first use; blocking file I/O, so call it
    /// from `spawn_blocking` or accept a short read of the header).
    pub fn get(&self, path: &Path) -> Result<Arc<FileFacts>, String> {
        if let Some(facts) = self.lock().get(path) {
            return Ok(facts.clone());
        }
        let facts = Arc::new(FileFacts::read(path)?);
        self.lock().insert(path.to_path_buf(), facts.clone());
        Ok(facts)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<PathBuf, Arc<FileFacts>>> {
        self.facts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
