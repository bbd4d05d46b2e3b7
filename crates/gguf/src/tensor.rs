//! One entry of a GGUF file's tensor table.

use crate::GgmlType;

/// ggml's limit on tensor dimensions (`GGML_MAX_DIMS`, ggml.h).
pub const MAX_DIMS: u32 = 4;

/// A tensor's name, shape, type and place in the data section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// The tensor name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Dimensions in ggml order: `dims[0]` is the contiguous row length, `dims[1]` the
    /// number of rows of a matrix. At most [`MAX_DIMS`], each non-zero.
    pub dims: Vec<u64>,
    /// Element type.
    pub ggml_type: GgmlType,
    /// Start of the data, relative to the data section (see `GgufFile::data_offset`).
    pub offset: u64,
    /// Size of the data in bytes.
    pub n_bytes: u64,
}

impl TensorInfo {
    /// Number of elements (the product of the dims; 1 for a 0-dimensional tensor).
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().product()
    }

    /// Elements per row (`dims[0]`; 1 for a 0-dimensional tensor).
    pub fn row_len(&self) -> u64 {
        self.dims.first().copied().unwrap_or(1)
    }

    /// Number of rows: the product of every dim but the first.
    pub fn n_rows(&self) -> u64 {
        self.dims.iter().skip(1).product()
    }

    /// Bytes per row (`row_len` elements of `ggml_type`).
    pub fn row_n_bytes(&self) -> u64 {
        self.row_len() / self.ggml_type.block_size() as u64 * self.ggml_type.type_size() as u64
    }
}
