//! Shared helpers of the integration tests: a byte-level builder for files the writer
//! refuses to produce, a small valid file, and the catalogue of malformed files (used by
//! `bad_input.rs`, `allocation.rs` and the fuzz seed corpus in `fuzz_corpus.rs`).

#![allow(dead_code)] // each test binary uses a different part

pub mod interop;

use tern_gguf::{Array, Error, GgmlType, GgufWriter, Value};

/// Builds GGUF bytes field by field, valid or not.
#[derive(Clone, Default)]
pub struct Raw {
    pub bytes: Vec<u8>,
}

impl Raw {
    /// Magic, version and counts.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Raw {
        Raw::default()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }

    pub fn raw(mut self, b: &[u8]) -> Raw {
        self.bytes.extend_from_slice(b);
        self
    }

    pub fn u32(self, v: u32) -> Raw {
        self.raw(&v.to_le_bytes())
    }

    pub fn u64(self, v: u64) -> Raw {
        self.raw(&v.to_le_bytes())
    }

    /// A GGUF string from raw bytes (need not be UTF-8).
    pub fn str_bytes(self, s: &[u8]) -> Raw {
        self.u64(s.len() as u64).raw(s)
    }

    pub fn str(self, s: &str) -> Raw {
        self.str_bytes(s.as_bytes())
    }

    /// A `u32` key/value pair.
    pub fn kv_u32(self, key: &str, v: u32) -> Raw {
        self.str(key).u32(4).u32(v)
    }

    /// A string key/value pair.
    pub fn kv_str(self, key: &str, v: &str) -> Raw {
        self.str(key).u32(8).str(v)
    }

    /// One tensor info with a raw type id.
    pub fn tensor(mut self, name: &str, dims: &[u64], type_id: u32, offset: u64) -> Raw {
        self = self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self = self.u64(d);
        }
        self.u32(type_id).u64(offset)
    }

    /// Zero bytes up to the next multiple of `alignment`.
    pub fn pad(mut self, alignment: usize) -> Raw {
        while !self.bytes.len().is_multiple_of(alignment) {
            self.bytes.push(0);
        }
        self
    }

    /// `n` data bytes.
    pub fn data(mut self, n: usize) -> Raw {
        self.bytes.extend((0..n).map(|i| i as u8));
        self
    }
}

/// A small valid file with a few values of every kind and three tensors.
pub fn valid_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    w.add_metadata("general.name", "tiny").unwrap();
    w.add_metadata("llama.block_count", 2u32).unwrap();
    w.add_metadata("llama.rope.freq_base", 10000.0f32).unwrap();
    w.add_metadata(
        "tokenizer.ggml.tokens",
        vec!["a".to_string(), "b".to_string()],
    )
    .unwrap();
    w.add_metadata("tokenizer.ggml.scores", vec![0.5f32, -1.0])
        .unwrap();
    w.add_metadata(
        "nested",
        Array::Array(vec![Array::I32(vec![1, 2]), Array::Bool(vec![true])]),
    )
    .unwrap();
    w.add_tensor("norm", &[8], GgmlType::F32, vec![1u8; 32])
        .unwrap();
    w.add_tensor("q4", &[32, 2], GgmlType::Q4_0, vec![2u8; 36])
        .unwrap();
    w.add_tensor("f16", &[3, 1, 1, 2], GgmlType::F16, vec![3u8; 12])
        .unwrap();
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

/// A malformed file, the error it must give, and words its message must contain.
pub struct Case {
    pub name: &'static str,
    pub bytes: Vec<u8>,
    pub matches: fn(&Error) -> bool,
    pub message: &'static [&'static str],
}

/// A valid header + one kv + one F32 tensor `t` of `dims`, data included.
fn one_tensor(dims: &[u64], type_id: u32, offset: u64, data: usize) -> Vec<u8> {
    Raw::header(3, 1, 1)
        .kv_str("general.architecture", "llama")
        .tensor("t", dims, type_id, offset)
        .pad(32)
        .data(data)
        .bytes
}

fn nested(depth: usize) -> Vec<u8> {
    let mut raw = Raw::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..depth {
        raw = raw.u32(9).u64(1);
    }
    raw.u32(0).u64(0).bytes
}

/// Every kind of bad input the reader must reject, each with its own error.
pub fn bad_cases() -> Vec<Case> {
    let valid = valid_file();
    vec![
        Case {
            name: "empty_file",
            bytes: Vec::new(),
            matches: |e| matches!(e, Error::Truncated { offset: 0, .. }),
            message: &["truncated at offset 0", "magic"],
        },
        Case {
            name: "bad_magic",
            bytes: b"GGML\x03\0\0\0".to_vec(),
            matches: |e| matches!(e, Error::BadMagic { .. }),
            message: &["not a gguf file", "magic"],
        },
        Case {
            name: "version_1",
            bytes: Raw::header(1, 0, 0).bytes,
            matches: |e| matches!(e, Error::UnsupportedVersion { version: 1 }),
            message: &["unsupported gguf version 1"],
        },
        Case {
            name: "version_4",
            bytes: Raw::header(4, 0, 0).bytes,
            matches: |e| matches!(e, Error::UnsupportedVersion { version: 4 }),
            message: &["unsupported gguf version 4"],
        },
        Case {
            name: "big_endian",
            bytes: Raw::default()
                .raw(b"GGUF")
                .raw(&3u32.to_be_bytes())
                .raw(&0u64.to_be_bytes())
                .bytes,
            matches: |e| matches!(e, Error::BigEndian { version: 3 }),
            message: &["unsupported version", "big-endian"],
        },
        Case {
            name: "truncated_header",
            bytes: valid[..12].to_vec(),
            matches: |e| matches!(e, Error::Truncated { offset: 8, .. }),
            message: &["truncated at offset 8", "tensor count"],
        },
        Case {
            name: "truncated_value",
            bytes: Raw::header(3, 0, 1)
                .str("general.block")
                .u32(4)
                .raw(&[1, 2])
                .bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::Truncated {
                        needed: 4,
                        available: 2,
                        ..
                    }
                )
            },
            message: &["truncated", "\"general.block\""],
        },
        Case {
            name: "truncated_tensor_info",
            bytes: Raw::header(3, 1, 0).str("w").u32(2).u64(32).bytes,
            matches: |e| matches!(e, Error::Truncated { .. }),
            message: &["truncated", "dimension 1 of tensor \"w\""],
        },
        Case {
            name: "absurd_tensor_count",
            bytes: Raw::header(3, u64::MAX, 0).bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::AbsurdCount {
                        what: "tensor",
                        count: u64::MAX,
                        ..
                    }
                )
            },
            message: &["tensor count 18446744073709551615 at offset 8 is absurd"],
        },
        Case {
            name: "absurd_kv_count",
            bytes: Raw::header(3, 0, 1 << 40).raw(&[0; 64]).bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::AbsurdCount {
                        what: "key/value",
                        ..
                    }
                )
            },
            message: &["key/value count 1099511627776 at offset 16 is absurd"],
        },
        Case {
            name: "key_length_too_large",
            bytes: Raw::header(3, 0, 1)
                .u64(1 << 40)
                .raw(b"abc")
                .raw(&[0; 16])
                .bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::LengthTooLarge {
                        len: 1099511627776,
                        ..
                    }
                )
            },
            message: &[
                "key of metadata entry 0",
                "length 1099511627776",
                "bytes left",
            ],
        },
        Case {
            name: "string_value_too_long",
            bytes: Raw::header(3, 0, 1)
                .str("general.name")
                .u32(8)
                .u64(1000)
                .raw(b"short")
                .bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::LengthTooLarge {
                        len: 1000,
                        available: 5,
                        ..
                    }
                )
            },
            message: &["\"general.name\"", "length 1000", "5 bytes left"],
        },
        Case {
            name: "array_length_too_large",
            bytes: Raw::header(3, 0, 1)
                .str("scores")
                .u32(9)
                .u32(6)
                .u64(u64::MAX / 2)
                .raw(&[0; 16])
                .bytes,
            matches: |e| matches!(e, Error::LengthTooLarge { .. }),
            message: &["array of f32 for key \"scores\"", "9223372036854775807"],
        },
        Case {
            name: "string_array_too_large",
            bytes: Raw::header(3, 0, 1)
                .str("tokens")
                .u32(9)
                .u32(8)
                .u64(1_000_000_000)
                .str("a")
                .bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::LengthTooLarge {
                        len: 1_000_000_000,
                        ..
                    }
                )
            },
            message: &["array of string for key \"tokens\""],
        },
        Case {
            name: "unknown_value_type",
            bytes: Raw::header(3, 0, 1).str("k").u32(13).u32(0).bytes,
            matches: |e| matches!(e, Error::UnknownValueType { type_id: 13, .. }),
            message: &["unknown metadata value type 13", "\"k\""],
        },
        Case {
            name: "unknown_array_element_type",
            bytes: Raw::header(3, 0, 1).str("k").u32(9).u32(99).u64(0).bytes,
            matches: |e| matches!(e, Error::UnknownValueType { type_id: 99, .. }),
            message: &["unknown metadata value type 99", "\"k\""],
        },
        Case {
            name: "nesting_too_deep",
            bytes: nested(40),
            matches: |e| matches!(e, Error::NestingTooDeep { .. }),
            message: &["\"deep\"", "nested deeper than 16"],
        },
        Case {
            name: "duplicate_key",
            bytes: Raw::header(3, 0, 2).kv_u32("a.b", 1).kv_u32("a.b", 2).bytes,
            matches: |e| matches!(e, Error::DuplicateKey { key } if key == "a.b"),
            message: &["duplicate metadata key \"a.b\""],
        },
        Case {
            name: "invalid_utf8_key",
            bytes: Raw::header(3, 0, 1)
                .str_bytes(b"bad\xff")
                .u32(4)
                .u32(0)
                .bytes,
            matches: |e| matches!(e, Error::InvalidUtf8 { offset: 32, .. }),
            message: &["key of metadata entry 0", "offset 32", "utf-8"],
        },
        Case {
            name: "invalid_utf8_value",
            bytes: Raw::header(3, 0, 1)
                .str("general.name")
                .u32(8)
                .str_bytes(b"\xc3\x28")
                .bytes,
            matches: |e| matches!(e, Error::InvalidUtf8 { .. }),
            message: &["value of key \"general.name\"", "utf-8"],
        },
        Case {
            name: "invalid_utf8_tensor_name",
            bytes: Raw::header(3, 1, 0)
                .str_bytes(b"\x80w")
                .u32(1)
                .u64(8)
                .u32(0)
                .u64(0)
                .pad(32)
                .data(32)
                .bytes,
            matches: |e| matches!(e, Error::InvalidUtf8 { .. }),
            message: &["name of tensor 0", "utf-8"],
        },
        Case {
            name: "alignment_zero",
            bytes: Raw::header(3, 0, 1).kv_u32("general.alignment", 0).bytes,
            matches: |e| matches!(e, Error::BadAlignment { value: 0 }),
            message: &["invalid alignment 0", "power of two"],
        },
        Case {
            name: "alignment_not_power_of_two",
            bytes: Raw::header(3, 0, 1).kv_u32("general.alignment", 48).bytes,
            matches: |e| matches!(e, Error::BadAlignment { value: 48 }),
            message: &["invalid alignment 48"],
        },
        Case {
            name: "alignment_wrong_type",
            bytes: Raw::header(3, 0, 1).kv_str("general.alignment", "32").bytes,
            matches: |e| matches!(e, Error::WrongType { .. }),
            message: &["\"general.alignment\"", "expected u32, found string"],
        },
        Case {
            name: "alignment_not_u32",
            bytes: Raw::header(3, 0, 1)
                .str("general.alignment")
                .u32(10)
                .u64(64)
                .bytes,
            matches: |e| {
                matches!(
                    e,
                    Error::WrongType {
                        expected: "u32",
                        ..
                    }
                )
            },
            message: &["\"general.alignment\"", "expected u32, found u64"],
        },
        Case {
            name: "too_many_dims",
            bytes: one_tensor(&[1, 1, 1, 1, 2], 0, 0, 8),
            matches: |e| matches!(e, Error::TooManyDims { n_dims: 5, .. }),
            message: &["tensor \"t\" has 5 dimensions", "at most 4"],
        },
        Case {
            name: "zero_dim",
            bytes: one_tensor(&[4, 0], 0, 0, 0),
            matches: |e| matches!(e, Error::ZeroDim { .. }),
            message: &["tensor \"t\" has a zero dimension", "[4, 0]"],
        },
        Case {
            name: "overflowing_dims",
            bytes: one_tensor(&[1 << 32, 1 << 32], 0, 0, 0),
            matches: |e| matches!(e, Error::DimsOverflow { .. }),
            message: &["tensor \"t\" is too large", "overflow"],
        },
        Case {
            name: "overflowing_bytes",
            bytes: one_tensor(&[1 << 31, 1 << 31], 28, 0, 0),
            matches: |e| matches!(e, Error::DimsOverflow { .. }),
            message: &["tensor \"t\" is too large"],
        },
        Case {
            name: "unknown_tensor_type",
            bytes: one_tensor(&[32], 4, 0, 32),
            matches: |e| matches!(e, Error::UnknownTensorType { type_id: 4, .. }),
            message: &["tensor \"t\" has unknown ggml type id 4"],
        },
        Case {
            name: "row_not_block_multiple",
            bytes: one_tensor(&[33, 2], GgmlType::Q4_0.id(), 0, 64),
            matches: |e| {
                matches!(
                    e,
                    Error::RowNotBlockMultiple {
                        row_len: 33,
                        block_size: 32,
                        ..
                    }
                )
            },
            message: &["tensor \"t\"", "row length 33", "q4_0 block size 32"],
        },
        Case {
            name: "data_past_end",
            bytes: one_tensor(&[16], 0, 0, 60),
            matches: |e| matches!(e, Error::TensorOutOfBounds { .. }),
            message: &["tensor \"t\" data spans bytes", "past its end"],
        },
        Case {
            name: "offset_past_end",
            bytes: one_tensor(&[8], 0, u64::MAX - 31, 32),
            matches: |e| matches!(e, Error::TensorOutOfBounds { end: u64::MAX, .. }),
            message: &["tensor \"t\"", "past its end"],
        },
        Case {
            name: "missing_data_padding",
            bytes: Raw::header(3, 1, 0).tensor("t", &[8], 0, 0).bytes,
            matches: |e| matches!(e, Error::Truncated { .. }),
            message: &["truncated", "padding to the data section"],
        },
        Case {
            name: "misaligned_offset",
            bytes: one_tensor(&[8], 0, 4, 64),
            matches: |e| {
                matches!(
                    e,
                    Error::MisalignedOffset {
                        offset: 4,
                        alignment: 32,
                        ..
                    }
                )
            },
            message: &["tensor \"t\" has offset 4", "alignment 32"],
        },
        Case {
            name: "overlapping_tensors",
            bytes: Raw::header(3, 2, 0)
                .tensor("a", &[16], 0, 0)
                .tensor("b", &[8], 0, 32)
                .pad(32)
                .data(96)
                .bytes,
            matches: |e| matches!(e, Error::OverlappingTensors { .. }),
            message: &["tensors \"a\"", "\"b\"", "overlap"],
        },
        Case {
            name: "duplicate_tensor_name",
            bytes: Raw::header(3, 2, 0)
                .tensor("w", &[8], 0, 0)
                .tensor("w", &[8], 0, 32)
                .pad(32)
                .data(64)
                .bytes,
            matches: |e| matches!(e, Error::DuplicateTensor { name } if name == "w"),
            message: &["duplicate tensor name \"w\""],
        },
    ]
}

/// A value of every type, arrays of every element type (empty ones too), nested arrays.
pub fn every_value() -> Vec<(String, Value)> {
    let values = vec![
        Value::U8(200),
        Value::I8(-100),
        Value::U16(60000),
        Value::I16(-30000),
        Value::U32(4_000_000_000),
        Value::I32(-2_000_000_000),
        Value::U64(u64::MAX),
        Value::I64(i64::MIN),
        Value::F32(-1.5e-5),
        Value::F64(std::f64::consts::PI),
        Value::Bool(true),
        Value::Bool(false),
        Value::String(String::new()),
        Value::String("héllo ▁wörld \u{1F600}\n\0".to_string()),
        Value::Array(Array::U8(vec![0, 1, 255])),
        Value::Array(Array::I8(vec![-128, 127])),
        Value::Array(Array::U16(vec![1, 65535])),
        Value::Array(Array::I16(vec![-1, 1])),
        Value::Array(Array::U32(vec![7; 5])),
        Value::Array(Array::I32(vec![-7, 0, 7])),
        Value::Array(Array::U64(vec![u64::MAX, 0])),
        Value::Array(Array::I64(vec![i64::MAX])),
        Value::Array(Array::F32(vec![0.0, -0.0, f32::INFINITY, 1e-30])),
        Value::Array(Array::F64(vec![f64::MIN_POSITIVE])),
        Value::Array(Array::Bool(vec![true, false, true])),
        Value::Array(Array::String(vec!["".into(), "a".into(), "Ġthe".into()])),
        Value::Array(Array::F32(Vec::new())),
        Value::Array(Array::String(Vec::new())),
        Value::Array(Array::Array(Vec::new())),
        Value::Array(Array::Array(vec![
            Array::U32(vec![1, 2, 3]),
            Array::String(vec!["x".into()]),
            Array::Array(vec![Array::F64(vec![0.25]), Array::Bool(Vec::new())]),
        ])),
    ];
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| (format!("test.value_{i}"), v))
        .collect()
}
