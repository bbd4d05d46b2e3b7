//! A loaded model: the open file, its typed config, its weights table and tokenizer
//! metadata. Loading checks everything up front, so a forward pass cannot fail on the
//! file.

use std::path::{Path, PathBuf};

use tern_gguf::GgufFile;

use crate::config::ModelConfig;
use crate::error::{Error, ErrorKind, Result};
use crate::kv_cache::KvCache;
use crate::scratch::Scratch;
use crate::weights::Weights;

/// How to load a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Map the file instead of reading it into memory (the default: weights stay in the
    /// page cache and are shared between processes).
    pub mmap: bool,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions { mmap: true }
    }
}

/// A model ready to run. Read-only: any number of threads may run forward passes on it,
/// each with its own [`KvCache`] and [`Scratch`].
#[derive(Debug)]
pub struct Model {
    pub(crate) file: GgufFile,
    pub(crate) config: ModelConfig,
    pub(crate) weights: Weights,
    path: PathBuf,
}

impl Model {
    /// Opens `path`, reads the config and checks every tensor's presence, shape and type.
    pub fn load(path: impl AsRef<Path>, options: ModelOptions) -> Result<Model> {
        let path = path.as_ref();
        let file = if options.mmap {
            GgufFile::open(path)
        } else {
            std::fs::read(path)
                .map_err(|e| tern_gguf::Error::Io {
                    path: path.to_path_buf(),
                    source: e,
                })
                .and_then(GgufFile::from_bytes)
        }
        .map_err(|e| Error::with_source(ErrorKind::File(path.display().to_string()), e))?;
        Model::from_file(file, path)
    }

    /// A model from a parsed file (`path` is only reported).
    pub fn from_file(file: GgufFile, path: &Path) -> Result<Model> {
        let config = ModelConfig::from_metadata(file.metadata())?;
        let weights = Weights::load(&file, &config)?;
        tracing::debug!(
            model = %path.display(),
            arch = config.architecture.name(),
            layers = config.block_count,
            "model loaded"
        );
        Ok(Model {
            file,
            config,
            weights,
            path: path.to_path_buf(),
        })
    }

    /// The typed configuration.
    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    /// The GGUF file (metadata for the tokenizer and chat template).
    pub fn file(&self) -> &GgufFile {
        &self.file
    }

    /// The path the model was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of logits per position.
    pub fn vocab_size(&self) -> usize {
        self.config.vocab_size
    }

    /// A cache for `n_seq` sequences of up to `context` positions each.
    pub fn new_kv_cache(&self, n_seq: usize, context: usize) -> KvCache {
        let dims = vec![self.config.kv_dim(); self.config.block_count];
        KvCache::new(&dims, n_seq, context)
    }

    /// Scratch buffers for batches of up to `max_tokens` tokens over sequences of up to
    /// `context` positions.
    pub fn new_scratch(&self, max_tokens: usize, context: usize) -> Scratch {
        Scratch::new(&self.config, max_tokens, context)
    }

    /// Bytes of one cached position (keys and values of every layer, F16).
    pub fn kv_bytes_per_position(&self) -> usize {
        2 * 2 * self.config.kv_dim() * self.config.block_count
    }
}
