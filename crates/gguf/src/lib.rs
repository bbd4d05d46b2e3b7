//! GGUF files: read (mmap) and write.
//!
//! No math lives here: only the file format, its typed metadata and the tensor table.

mod ggml_type;

pub use ggml_type::GgmlType;
