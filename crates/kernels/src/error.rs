//! The error type of tern-kernels: what can be wrong with a tensor handed to a kernel.
//!
//! Shapes that the caller controls (slice lengths that must agree) are checked with
//! assertions; these errors are for what comes from files and requests: tensor types,
//! tensor sizes and row ids.

use tern_gguf::GgmlType;

/// A tensor or request the kernels cannot work with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KernelError {
    /// The tensor type has no kernels in tern (yet).
    #[error("tensor type {0} is not supported by tern's kernels")]
    UnsupportedType(GgmlType),
    /// A row is not a whole number of blocks of its type.
    #[error("a {ty} row of {cols} values is not a whole number of {block_size}-value blocks")]
    RowNotBlockAligned {
        ty: GgmlType,
        cols: usize,
        block_size: usize,
    },
    /// The data does not have the size the shape and type imply.
    #[error("a {ty} matrix of {rows}×{cols} takes {expected} bytes, but {actual} were given")]
    SizeMismatch {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        actual: usize,
    },
    /// A row id (a token id, for an embedding lookup) past the end of the matrix.
    #[error("row {id} is out of range for a matrix of {rows} rows")]
    RowOutOfRange { id: u32, rows: usize },
}
