//! GGUF files: read (mmap, no copy of tensor data) and write.
//!
//! GGUF is the file format of llama.cpp: a header, typed key/value metadata, a tensor
//! table and an aligned data section (ggml `docs/gguf.md`). This crate holds the format
//! only — no math. Main types:
//!
//! - [`GgufFile`]: an opened file; [`GgufFile::open`] maps it read-only and validates
//!   every count, length, type, shape and offset up front, so later accessors cannot fail
//!   and no input can make it panic or allocate more than a small multiple of the file;
//! - [`Metadata`] with [`Value`]/[`Array`]: the key/value pairs parsed once into typed
//!   values, queried with [`Key`] (llama.cpp's key table) through typed getters;
//! - [`TensorInfo`]: name, dims (ggml order), [`GgmlType`], offset and size of a tensor;
//! - [`GgufWriter`]: builds GGUF v3 files, written atomically to a path.
//!
//! A mapped file must not be truncated or rewritten in place while open (SIGBUS): write
//! a new file and rename it over the old one, as [`GgufWriter::write_to_path`] does.

mod error;
mod file;
mod ggml_type;
mod key;
mod metadata;
mod reader;
mod tensor;
mod value;
mod writer;

pub use error::Error;
pub use file::GgufFile;
pub use ggml_type::GgmlType;
pub use key::{Architecture, Key, file_type_name};
pub use metadata::{Metadata, PerLayer};
pub use reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH};
pub use tensor::{MAX_DIMS, TensorInfo};
pub use value::{Array, Value, ValueType};
pub use writer::{GgufWriter, TensorBytes, WRITE_VERSION};
