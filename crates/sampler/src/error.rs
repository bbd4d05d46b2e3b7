//! The crate's one error type: every failure names the bad field, keyword or token.

/// What went wrong in sampling setup, schema compilation or constrained decoding.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sampling parameter is out of its range.
    #[error("invalid sampling parameter `{field}`: {reason}")]
    InvalidParam {
        /// The field of `SamplingParams`, e.g. `top_p`.
        field: &'static str,
        /// Why the value is rejected, quoting it.
        reason: String,
    },
    /// The vocabulary handed in cannot be used (empty, or an end-of-generation id out of range).
    #[error("invalid vocabulary: {0}")]
    InvalidVocabulary(String),
    /// The JSON Schema uses a keyword the compiler does not implement.
    #[error("unsupported JSON Schema keyword `{keyword}` at {path}")]
    UnsupportedKeyword {
        /// The keyword, e.g. `pattern`.
        keyword: String,
        /// JSON pointer of the schema object that holds it (`#` is the root).
        path: String,
    },
    /// The JSON Schema uses a supported keyword in a way the compiler does not implement.
    #[error("unsupported JSON Schema at {path}: {reason}")]
    UnsupportedSchema {
        /// JSON pointer of the schema object.
        path: String,
        /// What is not supported, and what to use instead when there is something.
        reason: String,
    },
    /// The JSON Schema is malformed or can match no value at all.
    #[error("invalid JSON Schema at {path}: {reason}")]
    InvalidSchema {
        /// JSON pointer of the offending schema object.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// `accept` was given a token the constraint does not allow at this point.
    #[error("token {token} ({text:?}) is not allowed by the constraint here")]
    TokenNotAllowed {
        /// The token id.
        token: u32,
        /// Its bytes, lossily decoded, to make the message readable.
        text: String,
    },
    /// A token id is not in the vocabulary.
    #[error("token {token} is out of range for a vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The token id.
        token: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}
