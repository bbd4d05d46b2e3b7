//! A loaded model: the open file, its typed config, its weights table and tokenizer
//! metadata. Loading checks everything up front, so a forward pass cannot fail on the
//! file.

use std::path::{Path, PathBuf};

use tern_gguf::GgufFile;

use crate::config::{ModelConfig, RopeLayout};
use crate::error::{Error, ErrorKind, Result};
use crate::kv_cache::{KvCache, KvCacheSpec, KvType};
use crate::scratch::Scratch;
use crate::weights::{QkvWeights, Weights};

/// How to load a model.
#[derive(Clone, Debug)]
pub struct ModelOptions {
    /// Map the file instead of reading it into memory (the default: weights stay in the
    /// page cache and are shared between processes).
    pub mmap: bool,
    /// The type of the KV caches made for this model ([`Model::new_kv_cache`]).
    pub kv_type: KvType,
}

impl Default for ModelOptions {
    fn default() -> Self {
        ModelOptions {
            mmap: true,
            kv_type: KvType::F16,
        }
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
    kv_type: KvType,
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
        let mut model = Model::from_file(file, path)?;
        model.set_kv_type(options.kv_type)?;
        Ok(model)
    }

    /// A model from a parsed file (`path` is only reported).
    pub fn from_file(file: GgufFile, path: &Path) -> Result<Model> {
        let mut config = ModelConfig::from_metadata(file.metadata())?;
        let weights = Weights::load(&file, &config)?;
        config.fused_qkv = weights
            .layers
            .iter()
            .any(|l| matches!(l.qkv, QkvWeights::Fused(_)));
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
            kv_type: KvType::F16,
        })
    }

    /// Sets the type of the KV caches made from now on; fails when the model's heads are
    /// not a whole number of the type's blocks.
    pub fn set_kv_type(&mut self, kv_type: KvType) -> Result<()> {
        KvCacheSpec {
            kv_type,
            ..self.kv_cache_spec(1, 1, 1)
        }
        .check()?;
        self.kv_type = kv_type;
        Ok(())
    }

    /// The type of the KV caches this model makes.
    pub fn kv_type(&self) -> KvType {
        self.kv_type
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

    /// The shape of a cache for `n_seq` sequences of up to `context` positions each, fed
    /// at most `max_batch` tokens of a sequence per pass: sliding-window layers keep
    /// `window + max_batch` positions rounded up to a multiple of 256 as llama.cpp's
    /// sliding-window cache does (see [`KvCache`]). Its
    /// [`bytes`](KvCacheSpec::bytes) are known before anything is allocated.
    pub fn kv_cache_spec(&self, n_seq: usize, context: usize, max_batch: usize) -> KvCacheSpec {
        KvCacheSpec::for_config(&self.config, self.kv_type, n_seq, context, max_batch)
    }

    /// A cache for `n_seq` sequences of up to `context` positions each, for batches of
    /// at most `max_batch` tokens per sequence ([`Self::kv_cache_spec`]); sizes of 0
    /// count as 1.
    pub fn new_kv_cache_for(&self, n_seq: usize, context: usize, max_batch: usize) -> KvCache {
        // The KV type was checked against the heads when it was set.
        KvCache::allocate(self.kv_cache_spec(n_seq.max(1), context.max(1), max_batch.max(1)))
    }

    /// A cache for `n_seq` sequences of up to `context` positions each, keeping every
    /// position in every layer (any batch size).
    pub fn new_kv_cache(&self, n_seq: usize, context: usize) -> KvCache {
        self.new_kv_cache_for(n_seq, context, context)
    }

    /// Scratch buffers for batches of up to `max_tokens` tokens over sequences of up to
    /// `context` positions.
    pub fn new_scratch(&self, max_tokens: usize, context: usize) -> Scratch {
        Scratch::new(&self.config, max_tokens, context)
    }

    /// Bytes of one cached position in every layer (keys and values, in this model's KV
    /// type); sliding-window layers stop growing at their window.
    pub fn kv_bytes_per_position(&self) -> usize {
        2 * self.kv_type.row_bytes(self.config.kv_dim()) * self.config.block_count
    }
}

/// A deliberate deviation from what the file says. Fidelity tests apply one and check
/// that their comparison with llama.cpp then fails: proof that they would catch that
/// mistake. Not for anything but tests.
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// Pair RoPE dimensions the other way (NeoX instead of normal and back).
    SwapRopeLayout,
    /// Leave out the RMSNorm of the Q and K heads.
    SkipQkNorm,
    /// RoPE base 10000 instead of the file's (1e6 when the file says 10000).
    WrongRopeBase,
    /// Leave out the Q, K and V biases.
    SkipQkvBias,
    /// LongRoPE's short factors where the long ones apply, and the other way round.
    SwapLongRopeFactors,
    /// Leave out the `rope_freqs` divisors (Llama 3 scaling).
    DropRopeFreqs,
}

impl Model {
    /// Applies `mutation` to this model (see [`Mutation`]); an error when the model has
    /// nothing it changes (no QK-norm to skip, ...), so a test cannot pass vacuously.
    #[doc(hidden)]
    pub fn mutate(&mut self, mutation: Mutation) -> Result<()> {
        let not_applicable = |what: &str| {
            Err(Error::new(ErrorKind::InvalidInput(format!(
                "mutation {mutation:?}: the model has no {what}"
            ))))
        };
        let c = &mut self.config;
        let w = &mut self.weights;
        match mutation {
            Mutation::SwapRopeLayout => {
                c.rope_layout = match c.rope_layout {
                    RopeLayout::Normal => RopeLayout::Neox,
                    RopeLayout::Neox => RopeLayout::Normal,
                };
            }
            Mutation::SkipQkNorm => {
                if !c.qk_norm {
                    return not_applicable("QK-norm");
                }
                c.qk_norm = false;
                for layer in &mut w.layers {
                    layer.q_norm = None;
                    layer.k_norm = None;
                }
            }
            Mutation::WrongRopeBase => {
                for layer in &mut c.layers {
                    layer.rope_freq_base = if layer.rope_freq_base == 10_000.0 {
                        1_000_000.0
                    } else {
                        10_000.0
                    };
                }
            }
            Mutation::SkipQkvBias => {
                if w.layers.iter().all(|l| l.qkv_bias.is_none()) {
                    return not_applicable("Q/K/V biases");
                }
                w.layers.iter_mut().for_each(|l| l.qkv_bias = None);
            }
            Mutation::SwapLongRopeFactors => match &mut w.rope_factors {
                Some((short, long)) => std::mem::swap(short, long),
                None => return not_applicable("LongRoPE factors"),
            },
            Mutation::DropRopeFreqs => {
                if w.rope_freqs.take().is_none() {
                    return not_applicable("rope_freqs");
                }
            }
        }
        Ok(())
    }
}
