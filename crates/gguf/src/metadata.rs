//! The key/value metadata of a GGUF file, parsed once, with typed getters.
//!
//! Getters take a [`Key`] and resolve `{arch}.…` names with the file's own
//! `general.architecture`, so model code never builds key strings. Absent keys are
//! `Ok(None)`; a value of the wrong type is an error naming the key and both types, so a
//! malformed file fails loudly instead of being read as a default. Integer getters accept
//! any integer type that converts losslessly (converters write `u32` and `i32`
//! interchangeably for the same key), as llama.cpp's `get_arr_n`/`get_key` do.

use std::collections::HashMap;

use crate::{Architecture, Array, Error, Key, Value};

/// Ordered metadata entries with an index by key.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

/// A value that is either one number for every layer or one per layer (llama.cpp's
/// `get_key_or_arr`, used for `head_count_kv`, `feed_forward_length`… in some files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PerLayer {
    /// The same value for every layer.
    Same(u32),
    /// One value per layer.
    Each(Vec<u32>),
}

impl PerLayer {
    /// The value for `layer`, `None` past the end of a per-layer array.
    pub fn get(&self, layer: usize) -> Option<u32> {
        match self {
            PerLayer::Same(v) => Some(*v),
            PerLayer::Each(values) => values.get(layer).copied(),
        }
    }
}

impl Metadata {
    /// Empty metadata.
    pub fn new() -> Metadata {
        Metadata::default()
    }

    /// Appends an entry; a key already present is an error.
    pub fn push(&mut self, key: String, value: Value) -> Result<(), Error> {
        if self.index.contains_key(&key) {
            return Err(Error::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, value));
        Ok(())
    }

    /// Replaces the value of `key` in place, or appends it when absent.
    pub fn set(&mut self, key: &str, value: Value) {
        match self.index.get(key) {
            Some(&i) => self.entries[i].1 = value,
            None => {
                self.index.insert(key.to_string(), self.entries.len());
                self.entries.push((key.to_string(), value));
            }
        }
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries in file order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// The value stored under exactly `key`.
    pub fn get_raw(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// `general.architecture` as an [`Architecture`].
    pub fn architecture(&self) -> Result<Architecture, Error> {
        Ok(Architecture::from_name(
            self.require_str(Key::GeneralArchitecture)?,
        ))
    }

    /// The architecture name, when present and a string.
    pub fn architecture_name(&self) -> Option<&str> {
        self.get_raw(Key::GeneralArchitecture.template())?.as_str()
    }

    /// The full name of `key` in this file (`{arch}` replaced by the file's
    /// architecture, or left as `{arch}` when the file names none).
    pub fn key_name(&self, key: Key) -> String {
        key.name(self.architecture_name().unwrap_or("{arch}"))
    }

    /// The value of `key`, `{arch}` resolved.
    pub fn get(&self, key: Key) -> Option<&Value> {
        if key.is_per_architecture() {
            self.get_raw(&key.name(self.architecture_name()?))
        } else {
            self.get_raw(key.template())
        }
    }

    fn wrong_type(&self, key: Key, expected: &'static str, found: &Value) -> Error {
        Error::WrongType {
            key: self.key_name(key),
            expected,
            found: found.type_description(),
        }
    }

    fn get_int<T: TryFrom<i128>>(
        &self,
        key: Key,
        expected: &'static str,
    ) -> Result<Option<T>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let Some(int) = value.as_i128() else {
            return Err(self.wrong_type(key, expected, value));
        };
        T::try_from(int).map(Some).map_err(|_| Error::OutOfRange {
            key: self.key_name(key),
            expected,
            value: int.to_string(),
        })
    }

    /// An integer that fits in `u32`.
    pub fn get_u32(&self, key: Key) -> Result<Option<u32>, Error> {
        self.get_int(key, "u32")
    }

    /// An integer that fits in `u64`.
    pub fn get_u64(&self, key: Key) -> Result<Option<u64>, Error> {
        self.get_int(key, "u64")
    }

    /// An integer that fits in `i32`.
    pub fn get_i32(&self, key: Key) -> Result<Option<i32>, Error> {
        self.get_int(key, "i32")
    }

    /// An integer that fits in `i64`.
    pub fn get_i64(&self, key: Key) -> Result<Option<i64>, Error> {
        self.get_int(key, "i64")
    }

    /// An `f32` or `f64` value, as `f32`.
    pub fn get_f32(&self, key: Key) -> Result<Option<f32>, Error> {
        Ok(self.get_f64_as(key, "f32")?.map(|v| v as f32))
    }

    /// An `f32` or `f64` value, as `f64`.
    pub fn get_f64(&self, key: Key) -> Result<Option<f64>, Error> {
        self.get_f64_as(key, "f64")
    }

    fn get_f64_as(&self, key: Key, expected: &'static str) -> Result<Option<f64>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        value
            .as_f64()
            .map(Some)
            .ok_or_else(|| self.wrong_type(key, expected, value))
    }

    /// A boolean.
    pub fn get_bool(&self, key: Key) -> Result<Option<bool>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(other) => Err(self.wrong_type(key, "bool", other)),
        }
    }

    /// A string.
    pub fn get_str(&self, key: Key) -> Result<Option<&str>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(other) => Err(self.wrong_type(key, "string", other)),
        }
    }

    /// An array of any element type.
    pub fn get_array(&self, key: Key) -> Result<Option<&Array>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(other) => Err(self.wrong_type(key, "array", other)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: Key) -> Result<Option<&[String]>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::String(v))) => Ok(Some(v)),
            Some(other) => Err(self.wrong_type(key, "array of string", other)),
        }
    }

    /// An array of `f32`.
    pub fn get_f32_array(&self, key: Key) -> Result<Option<&[f32]>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::F32(v))) => Ok(Some(v)),
            Some(other) => Err(self.wrong_type(key, "array of f32", other)),
        }
    }

    /// An array of `i32` (token types are stored this way).
    pub fn get_i32_array(&self, key: Key) -> Result<Option<&[i32]>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::I32(v))) => Ok(Some(v)),
            Some(other) => Err(self.wrong_type(key, "array of i32", other)),
        }
    }

    /// An array of `u8` (the SentencePiece precompiled charsmap is stored this way).
    pub fn get_u8_array(&self, key: Key) -> Result<Option<&[u8]>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(Array::U8(v))) => Ok(Some(v)),
            Some(other) => Err(self.wrong_type(key, "array of u8", other)),
        }
    }

    /// An array of integers of any type, each converted losslessly to `u32`.
    pub fn get_u32_array(&self, key: Key) -> Result<Option<Vec<u32>>, Error> {
        let Some(value) = self.get(key) else {
            return Ok(None);
        };
        let array = match value {
            Value::Array(a) if a.is_integer() => a,
            other => return Err(self.wrong_type(key, "array of integers", other)),
        };
        let mut out = Vec::with_capacity(array.len());
        for i in 0..array.len() {
            let int = array.int_at(i).unwrap_or_default();
            let v = u32::try_from(int).map_err(|_| Error::OutOfRange {
                key: format!("{}[{i}]", self.key_name(key)),
                expected: "u32",
                value: int.to_string(),
            })?;
            out.push(v);
        }
        Ok(Some(out))
    }

    /// One integer for every layer, or an array of integers with one per layer.
    pub fn get_u32_or_array(&self, key: Key) -> Result<Option<PerLayer>, Error> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(_)) => Ok(self.get_u32_array(key)?.map(PerLayer::Each)),
            Some(_) => Ok(self.get_u32(key)?.map(PerLayer::Same)),
        }
    }

    /// [`Metadata::get_u32_or_array`] expanded to exactly `n_layers` values; an array of
    /// another length is an error.
    pub fn get_u32_per_layer(&self, key: Key, n_layers: usize) -> Result<Option<Vec<u32>>, Error> {
        match self.get_u32_or_array(key)? {
            None => Ok(None),
            Some(PerLayer::Same(v)) => Ok(Some(vec![v; n_layers])),
            Some(PerLayer::Each(values)) if values.len() == n_layers => Ok(Some(values)),
            Some(PerLayer::Each(values)) => Err(Error::PerLayerLength {
                key: self.key_name(key),
                expected: n_layers,
                found: values.len(),
            }),
        }
    }

    fn missing(&self, key: Key) -> Error {
        if key.is_per_architecture() && self.architecture_name().is_none() {
            // The key cannot even be named without the architecture.
            return Error::MissingKey(Key::GeneralArchitecture.template().to_string());
        }
        Error::MissingKey(self.key_name(key))
    }

    /// The value of `key`, or [`Error::MissingKey`].
    pub fn require(&self, key: Key) -> Result<&Value, Error> {
        self.get(key).ok_or_else(|| self.missing(key))
    }
}

macro_rules! require_variants {
    ($($require:ident => $get:ident -> $t:ty,)*) => {
        impl Metadata {
            $(
                #[doc = concat!("[`Metadata::", stringify!($get), "`], with [`Error::MissingKey`] when absent.")]
                pub fn $require(&self, key: Key) -> Result<$t, Error> {
                    self.$get(key)?.ok_or_else(|| self.missing(key))
                }
            )*
        }
    };
}

require_variants! {
    require_u32 => get_u32 -> u32,
    require_u64 => get_u64 -> u64,
    require_i32 => get_i32 -> i32,
    require_i64 => get_i64 -> i64,
    require_f32 => get_f32 -> f32,
    require_f64 => get_f64 -> f64,
    require_bool => get_bool -> bool,
    require_str => get_str -> &str,
    require_array => get_array -> &Array,
    require_str_array => get_str_array -> &[String],
    require_f32_array => get_f32_array -> &[f32],
    require_i32_array => get_i32_array -> &[i32],
    require_u8_array => get_u8_array -> &[u8],
    require_u32_array => get_u32_array -> Vec<u32>,
    require_u32_or_array => get_u32_or_array -> PerLayer,
}

impl Metadata {
    /// [`Metadata::get_u32_per_layer`], with [`Error::MissingKey`] when absent.
    pub fn require_u32_per_layer(&self, key: Key, n_layers: usize) -> Result<Vec<u32>, Error> {
        self.get_u32_per_layer(key, n_layers)?
            .ok_or_else(|| self.missing(key))
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a str, &'a Value);
    type IntoIter = std::iter::Map<
        std::slice::Iter<'a, (String, Value)>,
        fn(&'a (String, Value)) -> (&'a str, &'a Value),
    >;

    fn into_iter(self) -> Self::IntoIter {
        fn pair(e: &(String, Value)) -> (&str, &Value) {
            (e.0.as_str(), &e.1)
        }
        self.entries.iter().map(pair)
    }
}
