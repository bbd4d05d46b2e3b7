//! Writing GGUF v3 files (for quantize, OTA deltas and test fixtures).
//!
//! The layout is the one llama.cpp's `gguf_write_to_buf` and gguf-py's `GGUFWriter`
//! produce: header, key/value pairs in insertion order, tensor infos in insertion order,
//! zero padding to the alignment, then each tensor's data padded to the alignment, with
//! tensor offsets packed back to back. A file read by [`crate::GgufFile`] and written back
//! with [`GgufWriter::from_file`] is therefore byte-identical when it was laid out that
//! way.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::reader::{DEFAULT_ALIGNMENT, MAGIC, MAX_ARRAY_DEPTH, tensor_n_bytes};
use crate::{Array, Error, GgmlType, GgufFile, Key, Metadata, TensorInfo, Value};

/// The GGUF version the writer produces.
pub const WRITE_VERSION: u32 = 3;

/// Tensor bytes handed to the writer: owned, or borrowed (from a mapped file, say).
#[derive(Debug)]
pub enum TensorBytes<'a> {
    Owned(Vec<u8>),
    Borrowed(&'a [u8]),
}

impl TensorBytes<'_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            TensorBytes::Owned(v) => v,
            TensorBytes::Borrowed(s) => s,
        }
    }
}

impl From<Vec<u8>> for TensorBytes<'_> {
    fn from(v: Vec<u8>) -> Self {
        TensorBytes::Owned(v)
    }
}

impl<'a> From<&'a [u8]> for TensorBytes<'a> {
    fn from(s: &'a [u8]) -> Self {
        TensorBytes::Borrowed(s)
    }
}

impl<'a> From<&'a Vec<u8>> for TensorBytes<'a> {
    fn from(s: &'a Vec<u8>) -> Self {
        TensorBytes::Borrowed(s)
    }
}

struct PendingTensor<'a> {
    name: String,
    dims: Vec<u64>,
    ggml_type: GgmlType,
    n_bytes: u64,
    data: TensorBytes<'a>,
}

/// Collects metadata and tensors, then writes them as one GGUF v3 file.
pub struct GgufWriter<'a> {
    metadata: Metadata,
    tensors: Vec<PendingTensor<'a>>,
    names: HashSet<String>,
    alignment: u64,
}

impl std::fmt::Debug for GgufWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GgufWriter")
            .field("n_metadata", &self.metadata.len())
            .field("n_tensors", &self.tensors.len())
            .field("alignment", &self.alignment)
            .finish()
    }
}

impl Default for GgufWriter<'_> {
    fn default() -> Self {
        GgufWriter::new()
    }
}

impl<'a> GgufWriter<'a> {
    /// An empty file with the default alignment (32).
    pub fn new() -> GgufWriter<'a> {
        GgufWriter {
            metadata: Metadata::new(),
            tensors: Vec::new(),
            names: HashSet::new(),
            alignment: DEFAULT_ALIGNMENT,
        }
    }

    /// A writer holding every key and tensor of `file`, tensor data borrowed from it.
    pub fn from_file(file: &'a GgufFile) -> Result<GgufWriter<'a>, Error> {
        let mut writer = GgufWriter::new();
        for (key, value) in file.metadata().iter() {
            writer.add_metadata(key, value.clone())?;
        }
        for t in file.tensors() {
            writer.add_tensor(t.name.clone(), &t.dims, t.ggml_type, file.tensor_data(t))?;
        }
        Ok(writer)
    }

    /// Sets the alignment of the data section and tensors, and records it as
    /// `general.alignment` (a `u32`). Must be a non-zero power of two.
    pub fn alignment(&mut self, alignment: u64) -> Result<(), Error> {
        let value = u32::try_from(alignment)
            .ok()
            .filter(|a| a.is_power_of_two())
            .ok_or(Error::BadAlignment { value: alignment })?;
        self.alignment = alignment;
        self.metadata
            .set(Key::GeneralAlignment.template(), Value::U32(value));
        Ok(())
    }

    /// The alignment the file will be written with.
    pub fn current_alignment(&self) -> u64 {
        self.alignment
    }

    /// Appends a key/value pair. A key added twice is an error; so is a
    /// `general.alignment` that is not a non-zero power of two.
    pub fn add_metadata(
        &mut self,
        key: impl Into<String>,
        value: impl Into<Value>,
    ) -> Result<(), Error> {
        let key = key.into();
        let value = value.into();
        if let Value::Array(a) = &value
            && a.depth() > MAX_ARRAY_DEPTH
        {
            return Err(Error::ValueTooDeep {
                key,
                max: MAX_ARRAY_DEPTH,
            });
        }
        if key == Key::GeneralAlignment.template() {
            if self.metadata.get_raw(&key).is_some() {
                return Err(Error::DuplicateKey { key });
            }
            // A u32, as the reader (and llama.cpp) require.
            self.alignment = match value {
                Value::U32(a) if a.is_power_of_two() => u64::from(a),
                Value::U32(a) => {
                    return Err(Error::BadAlignment {
                        value: u64::from(a),
                    });
                }
                other => {
                    return Err(Error::WrongType {
                        key,
                        expected: "u32",
                        found: other.type_description(),
                    });
                }
            };
        }
        self.metadata.push(key, value)
    }

    /// The metadata added so far.
    pub fn metadata(&self) -> &Metadata {
        &self.metadata
    }

    /// Appends a tensor. `dims` are in ggml order (`dims[0]` is the row length); `data`
    /// must be exactly the size `dims` and `ggml_type` imply.
    pub fn add_tensor(
        &mut self,
        name: impl Into<String>,
        dims: &[u64],
        ggml_type: GgmlType,
        data: impl Into<TensorBytes<'a>>,
    ) -> Result<(), Error> {
        let name = name.into();
        let data = data.into();
        let n_bytes = tensor_n_bytes(&name, dims, ggml_type)?;
        let found = data.as_slice().len() as u64;
        if found != n_bytes {
            return Err(Error::TensorSizeMismatch {
                tensor: name,
                dims: dims.to_vec(),
                ggml_type,
                expected: n_bytes,
                found,
            });
        }
        if !self.names.insert(name.clone()) {
            return Err(Error::DuplicateTensor { name });
        }
        self.tensors.push(PendingTensor {
            name,
            dims: dims.to_vec(),
            ggml_type,
            n_bytes,
            data,
        });
        Ok(())
    }

    /// The tensor table as it will be written (offsets packed at the alignment).
    pub fn tensor_infos(&self) -> Vec<TensorInfo> {
        let mut offset = 0u64;
        self.tensors
            .iter()
            .map(|t| {
                let info = TensorInfo {
                    name: t.name.clone(),
                    dims: t.dims.clone(),
                    ggml_type: t.ggml_type,
                    offset,
                    n_bytes: t.n_bytes,
                };
                offset += t.n_bytes.next_multiple_of(self.alignment);
                info
            })
            .collect()
    }

    /// Writes the file to `out`; returns the number of bytes written.
    pub fn write_to(&self, out: impl Write) -> Result<u64, Error> {
        self.write_stream(out).map_err(|source| Error::Write {
            path: PathBuf::new(),
            source,
        })
    }

    fn write_stream(&self, out: impl Write) -> io::Result<u64> {
        let mut w = Counting {
            inner: out,
            written: 0,
        };
        w.write_all(&MAGIC)?;
        w.write_all(&WRITE_VERSION.to_le_bytes())?;
        w.write_all(&(self.tensors.len() as u64).to_le_bytes())?;
        w.write_all(&(self.metadata.len() as u64).to_le_bytes())?;
        for (key, value) in self.metadata.iter() {
            write_str(&mut w, key)?;
            w.write_all(&value.value_type().id().to_le_bytes())?;
            write_value(&mut w, value)?;
        }
        for info in self.tensor_infos() {
            write_str(&mut w, &info.name)?;
            w.write_all(&(info.dims.len() as u32).to_le_bytes())?;
            for d in &info.dims {
                w.write_all(&d.to_le_bytes())?;
            }
            w.write_all(&info.ggml_type.id().to_le_bytes())?;
            w.write_all(&info.offset.to_le_bytes())?;
        }
        pad(&mut w, self.alignment)?;
        for t in &self.tensors {
            w.write_all(t.data.as_slice())?;
            pad(&mut w, self.alignment)?;
        }
        w.flush()?;
        Ok(w.written)
    }

    /// Writes the file to `path` atomically: a temp file in the same directory, fsync,
    /// rename over `path`, fsync of the directory. A crash leaves either the old file or
    /// the new one, never a torn one, and a live mmap of the old file stays valid.
    pub fn write_to_path(&self, path: impl AsRef<Path>) -> Result<u64, Error> {
        let path = path.as_ref();
        let fail = |source| Error::Write {
            path: path.to_path_buf(),
            source,
        };
        let file_name = path.file_name().ok_or_else(|| {
            fail(io::Error::new(
                io::ErrorKind::InvalidInput,
                "path has no file name",
            ))
        })?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        let tmp = dir.join(format!(
            ".{}.tmp-{}-{}",
            file_name.to_string_lossy(),
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let result = (|| -> io::Result<u64> {
            let file = File::options().write(true).create_new(true).open(&tmp)?;
            let mut buffered = BufWriter::with_capacity(1 << 20, file);
            let written = self.write_stream(&mut buffered)?;
            let file = buffered.into_inner().map_err(|e| e.into_error())?;
            file.sync_all()?;
            drop(file);
            fs::rename(&tmp, path)?;
            sync_dir(&dir)?;
            Ok(written)
        })();
        if result.is_err() {
            // Best effort: the temp file is useless now; a failure to remove it changes
            // nothing for the caller, who gets the original error.
            let _ = fs::remove_file(&tmp);
        }
        result.map_err(fail)
    }
}

#[cfg(unix)]
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(not(unix))]
fn sync_dir(_dir: &Path) -> io::Result<()> {
    // Directories cannot be opened for syncing here; rename is as durable as it gets.
    Ok(())
}

struct Counting<W> {
    inner: W,
    written: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn pad<W: Write>(w: &mut Counting<W>, alignment: u64) -> io::Result<()> {
    const ZEROS: [u8; 256] = [0; 256];
    let mut missing = w.written.next_multiple_of(alignment) - w.written;
    while missing > 0 {
        let n = missing.min(ZEROS.len() as u64) as usize;
        w.write_all(&ZEROS[..n])?;
        missing -= n as u64;
    }
    Ok(())
}

fn write_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    w.write_all(&(s.len() as u64).to_le_bytes())?;
    w.write_all(s.as_bytes())
}

fn write_value(w: &mut impl Write, value: &Value) -> io::Result<()> {
    match value {
        Value::U8(v) => w.write_all(&v.to_le_bytes()),
        Value::I8(v) => w.write_all(&v.to_le_bytes()),
        Value::U16(v) => w.write_all(&v.to_le_bytes()),
        Value::I16(v) => w.write_all(&v.to_le_bytes()),
        Value::U32(v) => w.write_all(&v.to_le_bytes()),
        Value::I32(v) => w.write_all(&v.to_le_bytes()),
        Value::U64(v) => w.write_all(&v.to_le_bytes()),
        Value::I64(v) => w.write_all(&v.to_le_bytes()),
        Value::F32(v) => w.write_all(&v.to_le_bytes()),
        Value::F64(v) => w.write_all(&v.to_le_bytes()),
        Value::Bool(v) => w.write_all(&[u8::from(*v)]),
        Value::String(s) => write_str(w, s),
        Value::Array(a) => write_array(w, a),
    }
}

fn write_array(w: &mut impl Write, array: &Array) -> io::Result<()> {
    w.write_all(&array.element_type().id().to_le_bytes())?;
    w.write_all(&(array.len() as u64).to_le_bytes())?;
    macro_rules! each_le {
        ($v:expr) => {{
            // One buffer per array rather than one write call per element.
            let mut bytes = Vec::with_capacity(std::mem::size_of_val($v.as_slice()));
            for x in $v {
                bytes.extend_from_slice(&x.to_le_bytes());
            }
            w.write_all(&bytes)
        }};
    }
    match array {
        Array::U8(v) => w.write_all(v),
        Array::I8(v) => each_le!(v),
        Array::U16(v) => each_le!(v),
        Array::I16(v) => each_le!(v),
        Array::U32(v) => each_le!(v),
        Array::I32(v) => each_le!(v),
        Array::U64(v) => each_le!(v),
        Array::I64(v) => each_le!(v),
        Array::F32(v) => each_le!(v),
        Array::F64(v) => each_le!(v),
        Array::Bool(v) => {
            let bytes: Vec<u8> = v.iter().map(|&b| u8::from(b)).collect();
            w.write_all(&bytes)
        }
        Array::String(v) => v.iter().try_for_each(|s| write_str(w, s)),
        Array::Array(v) => v.iter().try_for_each(|a| write_array(w, a)),
    }
}
