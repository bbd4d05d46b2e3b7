//! The one error type of the crate.
//!
//! GGUF files are untrusted input (downloaded, user-supplied, possibly truncated), so every
//! way a file can be wrong has its own variant, and every message names where and what:
//! the byte offset, the metadata key, the tensor, the bad value. Messages are lowercase
//! so callers can prefix them (`tern: cannot load model.gguf: <message>`).

use std::path::PathBuf;

use crate::GgmlType;

/// Everything that can go wrong reading, querying or writing a GGUF file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The file could not be opened, inspected or mapped.
    #[error("cannot read {}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// Writing a file failed.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file being written (empty when writing to a stream).
        path: PathBuf,
        /// The operating system's reason.
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error("not a gguf file: magic bytes are {found:02x?}, expected \"GGUF\"")]
    BadMagic {
        /// The bytes found (fewer than four when the file is shorter).
        found: Vec<u8>,
    },

    /// A version this reader does not handle (only 2 and 3 are read).
    #[error("unsupported gguf version {version} (tern reads versions 2 and 3)")]
    UnsupportedVersion {
        /// The version field, read little-endian.
        version: u32,
    },

    /// A big-endian (byte-swapped) file: gguf-py can write these, ggml cannot run them.
    #[error(
        "unsupported version: byte-swapped (big-endian) gguf file, version {version}; only little-endian files are read"
    )]
    BigEndian {
        /// The version once byte-swapped.
        version: u32,
    },

    /// The file ends inside a field.
    #[error("file truncated at offset {offset}: {what} needs {needed} bytes, {available} left")]
    Truncated {
        /// Where the field starts.
        offset: u64,
        /// What was being read.
        what: String,
        /// Bytes the field needs.
        needed: u64,
        /// Bytes left in the file.
        available: u64,
    },

    /// A count (tensors, key/value pairs) that the rest of the file cannot possibly hold.
    #[error(
        "{what} count {count} at offset {offset} is absurd: the {available} bytes left hold at most {max} (file truncated or corrupt)"
    )]
    AbsurdCount {
        /// What is counted.
        what: &'static str,
        /// The count read.
        count: u64,
        /// Where the count is.
        offset: u64,
        /// Bytes left after the count.
        available: u64,
        /// The largest count those bytes could hold.
        max: u64,
    },

    /// A string or array length larger than the bytes left in the file.
    #[error(
        "{what} at offset {offset} claims length {len}, larger than the {available} bytes left"
    )]
    LengthTooLarge {
        /// What was being read.
        what: String,
        /// Where the length field is.
        offset: u64,
        /// The claimed length (bytes for a string, elements for an array).
        len: u64,
        /// Bytes left after the length field.
        available: u64,
    },

    /// A string that is not UTF-8.
    #[error("{what} at offset {offset} is not valid utf-8")]
    InvalidUtf8 {
        /// What was being read.
        what: String,
        /// Where the string's bytes start.
        offset: u64,
    },

    /// A metadata value type id GGUF does not define.
    #[error("unknown metadata value type {type_id} for key {key:?} at offset {offset}")]
    UnknownValueType {
        /// The key whose value it is.
        key: String,
        /// The type id found.
        type_id: u32,
        /// Where the type id is.
        offset: u64,
    },

    /// Arrays nested deeper than [`crate::MAX_ARRAY_DEPTH`].
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels at offset {offset}")]
    NestingTooDeep {
        /// The key whose value it is.
        key: String,
        /// The limit.
        max: usize,
        /// Where the too-deep array starts.
        offset: u64,
    },

    /// A value handed to the writer with arrays nested deeper than the reader accepts.
    #[error("metadata key {key:?}: arrays nested deeper than {max} levels cannot be read back")]
    ValueTooDeep {
        /// The key.
        key: String,
        /// The limit ([`crate::MAX_ARRAY_DEPTH`]).
        max: usize,
    },

    /// The same metadata key twice (in a file, or added twice to a writer).
    #[error("duplicate metadata key {key:?}")]
    DuplicateKey {
        /// The key.
        key: String,
    },

    /// The same tensor name twice.
    #[error("duplicate tensor name {name:?}")]
    DuplicateTensor {
        /// The name.
        name: String,
    },

    /// `general.alignment` is zero or not a power of two.
    #[error("invalid alignment {value}: general.alignment must be a non-zero power of two")]
    BadAlignment {
        /// The value found.
        value: u64,
    },

    /// More dimensions than ggml supports (4).
    #[error("tensor {tensor:?} has {n_dims} dimensions, ggml supports at most {max}")]
    TooManyDims {
        /// The tensor.
        tensor: String,
        /// The dimension count found.
        n_dims: u32,
        /// The limit (`GGML_MAX_DIMS`).
        max: u32,
    },

    /// A dimension of size zero.
    #[error("tensor {tensor:?} has a zero dimension: {dims:?}")]
    ZeroDim {
        /// The tensor.
        tensor: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },

    /// Dimensions whose element count or byte size does not fit in 63 bits.
    #[error("tensor {tensor:?} is too large: dims {dims:?} overflow the element or byte count")]
    DimsOverflow {
        /// The tensor.
        tensor: String,
        /// Its dimensions.
        dims: Vec<u64>,
    },

    /// A tensor type id ggml does not define.
    #[error("tensor {tensor:?} has unknown ggml type id {type_id}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// The type id found.
        type_id: u32,
    },

    /// The row length is not a whole number of quantization blocks.
    #[error(
        "tensor {tensor:?}: row length {row_len} is not a multiple of the {ggml_type} block size {block_size}"
    )]
    RowNotBlockMultiple {
        /// The tensor.
        tensor: String,
        /// `dims[0]`.
        row_len: u64,
        /// Its type.
        ggml_type: GgmlType,
        /// Elements per block of that type.
        block_size: u64,
    },

    /// A tensor offset that is not a multiple of the file's alignment.
    #[error("tensor {tensor:?} has offset {offset}, not a multiple of the alignment {alignment}")]
    MisalignedOffset {
        /// The tensor.
        tensor: String,
        /// Its offset in the data section.
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// Tensor data that extends past the end of the file.
    #[error(
        "tensor {tensor:?} data spans bytes {start}..{end} of the file, past its end at {file_size}"
    )]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Absolute start offset (saturated on overflow).
        start: u64,
        /// Absolute end offset (saturated on overflow).
        end: u64,
        /// The file size.
        file_size: u64,
    },

    /// Two tensors whose data overlap.
    #[error(
        "tensors {first:?} (data bytes {first_start}..{first_end}) and {second:?} (from byte {second_start}) overlap"
    )]
    OverlappingTensors {
        /// The tensor that starts first.
        first: String,
        /// Its start, relative to the data section.
        first_start: u64,
        /// Its end, relative to the data section.
        first_end: u64,
        /// The tensor that starts inside it.
        second: String,
        /// Its start, relative to the data section.
        second_start: u64,
    },

    /// A required metadata key is absent. Holds the full key (`llama.context_length`).
    #[error("missing metadata key {0:?}")]
    MissingKey(String),

    /// A metadata value of the wrong type.
    #[error("metadata key {key:?}: expected {expected}, found {found}")]
    WrongType {
        /// The full key.
        key: String,
        /// The type the caller asked for.
        expected: &'static str,
        /// The type in the file.
        found: String,
    },

    /// An integer value that does not fit the requested type.
    #[error("metadata key {key:?}: value {value} does not fit in {expected}")]
    OutOfRange {
        /// The full key.
        key: String,
        /// The requested type.
        expected: &'static str,
        /// The value, as text.
        value: String,
    },

    /// A per-layer array whose length differs from the layer count.
    #[error("metadata key {key:?}: array has {found} entries, expected one per layer ({expected})")]
    PerLayerLength {
        /// The full key.
        key: String,
        /// The layer count.
        expected: usize,
        /// The array length.
        found: usize,
    },

    /// Tensor data handed to the writer whose size does not match its dims and type.
    #[error(
        "tensor {tensor:?}: data is {found} bytes, dims {dims:?} of {ggml_type} need {expected}"
    )]
    TensorSizeMismatch {
        /// The tensor.
        tensor: String,
        /// Its dims.
        dims: Vec<u64>,
        /// Its type.
        ggml_type: GgmlType,
        /// Bytes the dims and type need.
        expected: u64,
        /// Bytes given.
        found: u64,
    },
}
