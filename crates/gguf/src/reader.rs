//! Parsing a GGUF file from bytes, as untrusted input.
//!
//! Layout (ggml `docs/gguf.md`; llama.cpp `ggml/src/gguf.cpp`, `gguf_init_from_file_impl`):
//! magic `GGUF`, version u32, tensor count u64, key/value count u64, the key/value pairs,
//! the tensor infos, padding to the alignment, then the data section. All integers are
//! little-endian.
//!
//! Every length and count is checked against the bytes left before anything is allocated
//! for it, so a 100-byte file claiming 2^60 strings fails at once, and no pre-allocation
//! is larger than a small constant times the file size. Nothing here can panic on any
//! input: all arithmetic on file values is checked.

use std::collections::HashMap;

use crate::tensor::MAX_DIMS;
use crate::{Array, Error, GgmlType, Metadata, TensorInfo, Value, ValueType};

/// The magic at the start of every GGUF file.
pub const MAGIC: [u8; 4] = *b"GGUF";

/// The alignment of the data section and of every tensor when `general.alignment` is
/// absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// How many levels arrays may nest (an array of arrays of `u8` is 2 levels). GGUF sets no
/// limit, but recursion must stop somewhere on hostile input; llama.cpp itself reads no
/// nested arrays at all, gguf-py reads them.
pub const MAX_ARRAY_DEPTH: usize = 16;

/// Pre-allocation cap for vectors whose elements are larger than their encoding
/// (strings, nested arrays, tensor infos): beyond it they grow as they are read.
const PREALLOC_CAP: u64 = 4096;

/// Smallest encoding of one key/value pair: key length, value type, a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 4 + 1;
/// Smallest encoding of one tensor info: name length, dim count, type, offset.
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 4 + 4 + 8;

/// Everything read from the file except the data itself.
#[derive(Debug)]
pub(crate) struct Parsed {
    pub version: u32,
    pub metadata: Metadata,
    pub tensors: Vec<TensorInfo>,
    pub index: HashMap<String, usize>,
    pub data_offset: u64,
    pub alignment: u64,
}

struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn offset(&self) -> u64 {
        self.pos as u64
    }

    fn remaining(&self) -> u64 {
        (self.buf.len() - self.pos) as u64
    }

    fn take(&mut self, n: u64, what: &dyn Fn() -> String) -> Result<&'a [u8], Error> {
        if n > self.remaining() {
            return Err(Error::Truncated {
                offset: self.offset(),
                what: what(),
                needed: n,
                available: self.remaining(),
            });
        }
        // `n <= remaining <= usize::MAX`, so the cast and the slice are in range.
        let bytes = &self.buf[self.pos..self.pos + n as usize];
        self.pos += n as usize;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, what: &dyn Fn() -> String) -> Result<[u8; N], Error> {
        let bytes = self.take(N as u64, what)?;
        let mut out = [0u8; N];
        out.copy_from_slice(bytes);
        Ok(out)
    }

    fn u32(&mut self, what: &dyn Fn() -> String) -> Result<u32, Error> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn Fn() -> String) -> Result<u64, Error> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// A GGUF string: u64 byte length, then UTF-8 bytes.
    fn string(&mut self, what: &dyn Fn() -> String) -> Result<String, Error> {
        let len_offset = self.offset();
        let len = self.u64(&|| format!("length of {}", what()))?;
        if len > self.remaining() {
            return Err(Error::LengthTooLarge {
                what: what(),
                offset: len_offset,
                len,
                available: self.remaining(),
            });
        }
        let start = self.offset();
        let bytes = self.take(len, what)?;
        match std::str::from_utf8(bytes) {
            Ok(s) => Ok(s.to_string()),
            Err(_) => Err(Error::InvalidUtf8 {
                what: what(),
                offset: start,
            }),
        }
    }

    /// A count of items each at least `min_size` bytes, rejected when the bytes left
    /// cannot hold that many.
    fn count(&mut self, what: &'static str, min_size: u64) -> Result<u64, Error> {
        let offset = self.offset();
        let count = self.u64(&|| format!("{what} count"))?;
        let max = self.remaining() / min_size;
        if count > max {
            return Err(Error::AbsurdCount {
                what,
                count,
                offset,
                available: self.remaining(),
                max,
            });
        }
        Ok(count)
    }
}

/// Parses everything but the tensor data, and checks every tensor's data lies inside
/// `buf`.
pub(crate) fn parse(buf: &[u8]) -> Result<Parsed, Error> {
    let mut c = Cursor { buf, pos: 0 };
    let head = &buf[..buf.len().min(4)];
    if head != &MAGIC[..head.len()] {
        return Err(Error::BadMagic {
            found: head.to_vec(),
        });
    }
    c.take(4, &|| "magic".to_string())?;
    let version = c.u32(&|| "version".to_string())?;
    if version & 0xffff == 0 && (1..=3).contains(&version.swap_bytes()) {
        // The low half is zero: a small version number written big-endian (gguf-py's
        // reader tells byte order apart the same way).
        return Err(Error::BigEndian {
            version: version.swap_bytes(),
        });
    }
    if !(2..=3).contains(&version) {
        return Err(Error::UnsupportedVersion { version });
    }
    let n_tensors = c.count("tensor", MIN_TENSOR_INFO_BYTES)?;
    let n_kv = c.count("key/value", MIN_KV_BYTES)?;

    let mut metadata = Metadata::new();
    for i in 0..n_kv {
        let key = c.string(&|| format!("key of metadata entry {i}"))?;
        let type_offset = c.offset();
        let type_id = c.u32(&|| format!("value type of key {key:?}"))?;
        let Some(value_type) = ValueType::from_id(type_id) else {
            return Err(Error::UnknownValueType {
                key,
                type_id,
                offset: type_offset,
            });
        };
        let value = read_value(&mut c, value_type, &key, 0)?;
        metadata.push(key, value)?;
    }

    let alignment = alignment_of(&metadata)?;

    let mut tensors = Vec::with_capacity(n_tensors.min(PREALLOC_CAP) as usize);
    let mut index = HashMap::with_capacity(n_tensors.min(PREALLOC_CAP) as usize);
    for i in 0..n_tensors {
        let info = read_tensor_info(&mut c, i, alignment)?;
        if index.contains_key(&info.name) {
            return Err(Error::DuplicateTensor { name: info.name });
        }
        index.insert(info.name.clone(), tensors.len());
        tensors.push(info);
    }

    // The data section starts at the next multiple of the alignment.
    let end_of_infos = c.offset();
    let padded = end_of_infos.div_ceil(alignment).checked_mul(alignment);
    let file_size = buf.len() as u64;
    let data_offset = match padded {
        Some(p) if p <= file_size => p,
        // A file with no tensors needs no data section, and some writers stop right
        // after the tensor infos.
        _ if tensors.is_empty() => file_size,
        _ => {
            return Err(Error::Truncated {
                offset: end_of_infos,
                what: format!("padding to the data section (alignment {alignment})"),
                needed: padded.map_or(u64::MAX, |p| p - end_of_infos),
                available: file_size - end_of_infos,
            });
        }
    };

    check_tensor_bounds(&tensors, data_offset, file_size)?;

    Ok(Parsed {
        version,
        metadata,
        tensors,
        index,
        data_offset,
        alignment,
    })
}

fn alignment_of(metadata: &Metadata) -> Result<u64, Error> {
    let key = crate::Key::GeneralAlignment.template();
    // A u32, as the spec and llama.cpp (`gguf_init_from_file_impl`) require.
    match metadata.get_raw(key) {
        None => Ok(DEFAULT_ALIGNMENT),
        Some(Value::U32(a)) if a.is_power_of_two() => Ok(u64::from(*a)),
        Some(Value::U32(a)) => Err(Error::BadAlignment {
            value: u64::from(*a),
        }),
        Some(other) => Err(Error::WrongType {
            key: key.to_string(),
            expected: "u32",
            found: other.type_description(),
        }),
    }
}

fn read_value(c: &mut Cursor<'_>, ty: ValueType, key: &str, depth: usize) -> Result<Value, Error> {
    let what = || format!("value of key {key:?}");
    Ok(match ty {
        ValueType::U8 => Value::U8(c.array::<1>(&what)?[0]),
        ValueType::I8 => Value::I8(i8::from_le_bytes(c.array(&what)?)),
        ValueType::U16 => Value::U16(u16::from_le_bytes(c.array(&what)?)),
        ValueType::I16 => Value::I16(i16::from_le_bytes(c.array(&what)?)),
        ValueType::U32 => Value::U32(u32::from_le_bytes(c.array(&what)?)),
        ValueType::I32 => Value::I32(i32::from_le_bytes(c.array(&what)?)),
        ValueType::U64 => Value::U64(u64::from_le_bytes(c.array(&what)?)),
        ValueType::I64 => Value::I64(i64::from_le_bytes(c.array(&what)?)),
        ValueType::F32 => Value::F32(f32::from_le_bytes(c.array(&what)?)),
        ValueType::F64 => Value::F64(f64::from_le_bytes(c.array(&what)?)),
        // Any non-zero byte is true, as gguf-py and ggml read it.
        ValueType::Bool => Value::Bool(c.array::<1>(&what)?[0] != 0),
        ValueType::String => Value::String(c.string(&what)?),
        ValueType::Array => Value::Array(read_array(c, key, depth)?),
    })
}

/// Fixed-size elements decoded from little-endian bytes.
fn fixed<const N: usize, T>(bytes: &[u8], decode: fn([u8; N]) -> T) -> Vec<T> {
    bytes
        .chunks_exact(N)
        .map(|chunk| {
            let mut b = [0u8; N];
            b.copy_from_slice(chunk);
            decode(b)
        })
        .collect()
}

fn read_array(c: &mut Cursor<'_>, key: &str, depth: usize) -> Result<Array, Error> {
    let start = c.offset();
    if depth >= MAX_ARRAY_DEPTH {
        return Err(Error::NestingTooDeep {
            key: key.to_string(),
            max: MAX_ARRAY_DEPTH,
            offset: start,
        });
    }
    let type_id = c.u32(&|| format!("array element type of key {key:?}"))?;
    let Some(ty) = ValueType::from_id(type_id) else {
        return Err(Error::UnknownValueType {
            key: key.to_string(),
            type_id,
            offset: start,
        });
    };
    let len_offset = c.offset();
    let len = c.u64(&|| format!("array length of key {key:?}"))?;
    let fits = len
        .checked_mul(ty.min_size())
        .is_some_and(|bytes| bytes <= c.remaining());
    if !fits {
        return Err(Error::LengthTooLarge {
            what: format!("array of {ty} for key {key:?}"),
            offset: len_offset,
            len,
            available: c.remaining(),
        });
    }
    let what = || format!("array of {ty} for key {key:?}");
    // The length check above makes `len * size` fit in the bytes left.
    let mut bytes = |size: u64| c.take(len * size, &what);
    Ok(match ty {
        ValueType::U8 => Array::U8(bytes(1)?.to_vec()),
        ValueType::I8 => Array::I8(fixed(bytes(1)?, i8::from_le_bytes)),
        ValueType::U16 => Array::U16(fixed(bytes(2)?, u16::from_le_bytes)),
        ValueType::I16 => Array::I16(fixed(bytes(2)?, i16::from_le_bytes)),
        ValueType::U32 => Array::U32(fixed(bytes(4)?, u32::from_le_bytes)),
        ValueType::I32 => Array::I32(fixed(bytes(4)?, i32::from_le_bytes)),
        ValueType::U64 => Array::U64(fixed(bytes(8)?, u64::from_le_bytes)),
        ValueType::I64 => Array::I64(fixed(bytes(8)?, i64::from_le_bytes)),
        ValueType::F32 => Array::F32(fixed(bytes(4)?, f32::from_le_bytes)),
        ValueType::F64 => Array::F64(fixed(bytes(8)?, f64::from_le_bytes)),
        ValueType::Bool => Array::Bool(bytes(1)?.iter().map(|&b| b != 0).collect()),
        ValueType::String => {
            let mut items = Vec::with_capacity(len.min(PREALLOC_CAP) as usize);
            for i in 0..len {
                items.push(c.string(&|| format!("string {i} of array {key:?}"))?);
            }
            Array::String(items)
        }
        ValueType::Array => {
            let mut items = Vec::with_capacity(len.min(PREALLOC_CAP) as usize);
            for _ in 0..len {
                items.push(read_array(c, key, depth + 1)?);
            }
            Array::Array(items)
        }
    })
}

fn read_tensor_info(c: &mut Cursor<'_>, i: u64, alignment: u64) -> Result<TensorInfo, Error> {
    let name = c.string(&|| format!("name of tensor {i}"))?;
    let n_dims = c.u32(&|| format!("dimension count of tensor {name:?}"))?;
    if n_dims > MAX_DIMS {
        return Err(Error::TooManyDims {
            tensor: name,
            n_dims,
            max: MAX_DIMS,
        });
    }
    let mut dims = Vec::with_capacity(n_dims as usize);
    for d in 0..n_dims {
        dims.push(c.u64(&|| format!("dimension {d} of tensor {name:?}"))?);
    }
    let type_id = c.u32(&|| format!("type of tensor {name:?}"))?;
    let offset = c.u64(&|| format!("offset of tensor {name:?}"))?;
    let Some(ggml_type) = GgmlType::from_id(type_id) else {
        return Err(Error::UnknownTensorType {
            tensor: name,
            type_id,
        });
    };
    let n_bytes = tensor_n_bytes(&name, &dims, ggml_type)?;
    if !offset.is_multiple_of(alignment) {
        return Err(Error::MisalignedOffset {
            tensor: name,
            offset,
            alignment,
        });
    }
    Ok(TensorInfo {
        name,
        dims,
        ggml_type,
        offset,
        n_bytes,
    })
}

/// The byte size of a tensor of `dims` and `ggml_type`, after checking the dims: none
/// zero, the element and byte counts within `i64` (ggml's `int64_t ne`), the row a whole
/// number of blocks. Shared by the reader and the writer.
pub(crate) fn tensor_n_bytes(name: &str, dims: &[u64], ggml_type: GgmlType) -> Result<u64, Error> {
    if dims.len() > MAX_DIMS as usize {
        return Err(Error::TooManyDims {
            tensor: name.to_string(),
            n_dims: dims.len() as u32,
            max: MAX_DIMS,
        });
    }
    if dims.contains(&0) {
        return Err(Error::ZeroDim {
            tensor: name.to_string(),
            dims: dims.to_vec(),
        });
    }
    let overflow = || Error::DimsOverflow {
        tensor: name.to_string(),
        dims: dims.to_vec(),
    };
    let n_elements = dims
        .iter()
        .try_fold(1u64, |acc, &d| acc.checked_mul(d))
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(overflow)?;
    let row_len = dims.first().copied().unwrap_or(1);
    let block_size = ggml_type.block_size() as u64;
    if !row_len.is_multiple_of(block_size) {
        return Err(Error::RowNotBlockMultiple {
            tensor: name.to_string(),
            row_len,
            ggml_type,
            block_size,
        });
    }
    ggml_type
        .bytes_for(n_elements)
        .filter(|&n| n <= i64::MAX as u64)
        .ok_or_else(overflow)
}

fn check_tensor_bounds(
    tensors: &[TensorInfo],
    data_offset: u64,
    file_size: u64,
) -> Result<(), Error> {
    for t in tensors {
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.n_bytes));
        match end {
            Some(end) if end <= file_size => {}
            _ => {
                return Err(Error::TensorOutOfBounds {
                    tensor: t.name.clone(),
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_size,
                });
            }
        }
    }
    let mut by_offset: Vec<&TensorInfo> = tensors.iter().collect();
    by_offset.sort_by_key(|t| t.offset);
    for pair in by_offset.windows(2) {
        let (a, b) = (pair[0], pair[1]);
        // In bounds, so `offset + n_bytes` cannot overflow.
        let a_end = a.offset + a.n_bytes;
        if b.offset < a_end {
            return Err(Error::OverlappingTensors {
                first: a.name.clone(),
                first_start: a.offset,
                first_end: a_end,
                second: b.name.clone(),
                second_start: b.offset,
            });
        }
    }
    Ok(())
}
