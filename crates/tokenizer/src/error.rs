//! The crate's error type: every failure names the key, value or template at fault.

/// Why a tokenizer or chat template could not be built or used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `tokenizer.ggml.model` names a tokenizer family this crate does not implement.
    #[error(
        "unsupported tokenizer model {0:?} (supported: \"gpt2\" byte-level BPE, \"llama\" SentencePiece)"
    )]
    UnsupportedModel(String),
    /// `tokenizer.ggml.pre` names a pre-tokenizer this crate does not implement.
    #[error("unsupported pre-tokenizer {0:?} (tokenizer.ggml.pre)")]
    UnsupportedPreTokenizer(String),
    /// A required metadata key is absent.
    #[error("missing metadata key {0}")]
    MissingKey(&'static str),
    /// A metadata value is present but unusable.
    #[error("invalid metadata {key}: {reason}")]
    InvalidMetadata {
        /// The key.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The GGUF reader failed to give a value (wrong type, out of range).
    #[error("reading tokenizer metadata: {0}")]
    Gguf(#[from] tern_gguf::Error),
    /// A chat template failed to parse or render.
    #[error("chat template: {0}")]
    Template(String),
    /// An invariant of this crate broke (a bug, reported instead of panicking).
    #[error("internal tokenizer error: {0}")]
    Internal(String),
}

impl From<minijinja::Error> for Error {
    fn from(e: minijinja::Error) -> Self {
        // The alternate form includes the template source location and the cause chain.
        let mut message = e.to_string();
        let mut source = std::error::Error::source(&e);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        Error::Template(message)
    }
}
