//! An open GGUF file: the parsed header and a read-only view of the bytes.
//!
//! `open` memory-maps the file, so weights are never copied: `tensor_data` hands out
//! slices of the map and the OS pages them in on use. The map is only sound while nobody
//! truncates or rewrites the file in place (that raises SIGBUS); tern's own writers never
//! do (see `GgufWriter::write_to_path`: temp file, fsync, rename).

use std::collections::HashMap;
use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::reader::{self, Parsed};
use crate::{Error, Metadata, TensorInfo};

/// Where the file's bytes live.
enum Storage {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

impl Storage {
    fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mapped(map) => map,
            Storage::Owned(bytes) => bytes,
        }
    }
}

/// A parsed GGUF file whose tensor data stays in the file (or in the owned buffer).
pub struct GgufFile {
    storage: Storage,
    version: u32,
    metadata: Metadata,
    tensors: Vec<TensorInfo>,
    index: HashMap<String, usize>,
    data_offset: u64,
    alignment: u64,
}

impl std::fmt::Debug for GgufFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufFile")
            .field("version", &self.version)
            .field("file_size", &self.file_size())
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("data_offset", &self.data_offset)
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl GgufFile {
    /// Maps `path` read-only and parses it. Tensor data is not read, only bounds-checked.
    pub fn open(path: impl AsRef<Path>) -> Result<GgufFile, Error> {
        let path = path.as_ref();
        let io = |source| Error::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let len = file.metadata().map_err(io)?.len();
        let storage = if len == 0 {
            // Mapping zero bytes fails on some systems; an empty file is simply empty.
            Storage::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only and private to this value. Its contents can
            // still change if another process rewrites the file in place; tern never does
            // (writers go through a temp file and rename), and the crate docs warn users.
            let map = unsafe { Mmap::map(&file) }.map_err(io)?;
            Storage::Mapped(map)
        };
        GgufFile::from_storage(storage)
    }

    /// Parses a file held in memory (tests, fuzzing, data received over the network).
    pub fn from_bytes(bytes: Vec<u8>) -> Result<GgufFile, Error> {
        GgufFile::from_storage(Storage::Owned(bytes))
    }

    fn from_storage(storage: Storage) -> Result<GgufFile, Error> {
        let Parsed {
            version,
            metadata,
            tensors,
            index,
            data_offset,
            alignment,
        } = reader::parse(storage.bytes())?;
        Ok(GgufFile {
            storage,
            version,
            metadata,
            tensors,
            index,
            data_offset,
            alignment,
        })
    }

    /// The GGUF version (2 or 3).
    pub fn version(&self) -> u32 {
        self.version
    }

    /// The key/value metadata.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// The tensor table, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.tensors
    }

    /// The tensor called `name`.
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index.get(name).map(|&i| &self.tensors[i])
    }

    /// The bytes of tensor `t`, borrowed from the map. Bounds were checked at open for
    /// every tensor of this file; a `TensorInfo` from another file whose range does not
    /// fit this one yields an empty slice.
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = self.data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match (start, end) {
            (Some(start), Some(end)) => usize::try_from(start)
                .ok()
                .zip(usize::try_from(end).ok())
                .and_then(|(s, e)| self.storage.bytes().get(s..e))
                .unwrap_or(&[]),
            _ => &[],
        }
    }

    /// The bytes of the tensor called `name`.
    pub fn tensor_bytes(&self, name: &str) -> Option<&[u8]> {
        self.tensor(name).map(|t| self.tensor_data(t))
    }

    /// Size of the whole file in bytes.
    pub fn file_size(&self) -> u64 {
        self.storage.bytes().len() as u64
    }

    /// Where the data section starts, from the start of the file.
    pub fn data_offset(&self) -> u64 {
        self.data_offset
    }

    /// The alignment of the data section and of each tensor's offset.
    pub fn alignment(&self) -> u64 {
        self.alignment
    }

    /// Whether the bytes are memory-mapped (from [`GgufFile::open`]) rather than owned.
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mapped(_))
    }

    /// The whole file.
    pub fn as_bytes(&self) -> &[u8] {
        self.storage.bytes()
    }
}
