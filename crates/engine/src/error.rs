//! The engine's error type: what went wrong, naming the file, key, tensor or token.

use std::fmt;

/// Result with the engine's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// An engine error. [`Error::kind`] tells which.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
}

/// What went wrong.
#[derive(Debug)]
#[non_exhaustive]
pub enum ErrorKind {
    /// The model file could not be opened or parsed.
    File(String),
    /// The file's `general.architecture` is not one the engine runs.
    UnsupportedArchitecture(String),
    /// Required metadata keys are absent (all of them listed).
    MissingMetadata(Vec<String>),
    /// A metadata value is out of range or inconsistent.
    InvalidMetadata { key: String, reason: String },
    /// A required tensor is absent.
    MissingTensor(String),
    /// A tensor has other dimensions than the configuration implies.
    TensorShape {
        name: String,
        expected: Vec<u64>,
        found: Vec<u64>,
    },
    /// A tensor's element type has no kernel.
    UnsupportedTensorType { name: String, ty: String },
    /// The batch does not fit the cache or the scratch buffers, or is inconsistent.
    InvalidBatch(String),
    /// A sequence reached the cache's capacity (the context size).
    ContextFull { seq: u32, capacity: usize },
    /// The tokenizer or chat template failed.
    Tokenizer(String),
    /// The sampler or constrained decoder failed.
    Sampler(String),
    /// Bad input from the caller (a token id out of range, an empty prompt, ...).
    InvalidInput(String),
}

impl Error {
    /// An error of `kind`.
    pub fn new(kind: ErrorKind) -> Self {
        Error { kind, source: None }
    }

    /// An error of `kind` caused by `source`.
    pub fn with_source(
        kind: ErrorKind,
        source: impl std::error::Error + Send + Sync + 'static,
    ) -> Self {
        Error {
            kind,
            source: Some(Box::new(source)),
        }
    }

    /// What went wrong.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.kind {
            ErrorKind::File(m) => write!(f, "cannot load model: {m}")?,
            ErrorKind::UnsupportedArchitecture(a) => write!(
                f,
                "unsupported model architecture {a:?} (tern runs: {})",
                crate::config::Architecture::SUPPORTED.join(", ")
            )?,
            ErrorKind::MissingMetadata(keys) => {
                write!(f, "model metadata lacks required keys: {}", keys.join(", "))?
            }
            ErrorKind::InvalidMetadata { key, reason } => {
                write!(f, "invalid model metadata {key}: {reason}")?
            }
            ErrorKind::MissingTensor(n) => write!(f, "model lacks tensor {n:?}")?,
            ErrorKind::TensorShape {
                name,
                expected,
                found,
            } => write!(
                f,
                "tensor {name:?} has dimensions {found:?}, expected {expected:?}"
            )?,
            ErrorKind::UnsupportedTensorType { name, ty } => write!(
                f,
                "tensor {name:?} has type {ty}, which tern cannot compute with"
            )?,
            ErrorKind::InvalidBatch(m) => write!(f, "invalid batch: {m}")?,
            ErrorKind::ContextFull { seq, capacity } => write!(
                f,
                "sequence {seq} is full: the context holds {capacity} tokens (raise --ctx-size)"
            )?,
            ErrorKind::Tokenizer(m) => write!(f, "tokenizer: {m}")?,
            ErrorKind::Sampler(m) => write!(f, "sampler: {m}")?,
            ErrorKind::InvalidInput(m) => write!(f, "{m}")?,
        }
        if let Some(source) = &self.source {
            write!(f, ": {source}")?;
        }
        Ok(())
    }
}

/// The cause is part of the message (see `Display`), so it is not also returned as
/// `source()`: error reports that print the chain would say it twice.
impl std::error::Error for Error {}
