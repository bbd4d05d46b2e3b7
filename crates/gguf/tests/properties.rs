//! Property tests: random metadata and tensors round-trip exactly; truncated, mutated and
//! random files never panic and, when accepted, satisfy every invariant `open` promises.

mod common;

use proptest::collection::vec;
use proptest::prelude::*;
use tern_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value};

fn float32() -> impl Strategy<Value = f32> {
    // Every bit pattern, NaNs with payloads included: the round trip is bit-exact.
    any::<u32>().prop_map(f32::from_bits)
}

fn float64() -> impl Strategy<Value = f64> {
    any::<u64>().prop_map(f64::from_bits)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![".{0,12}", "[a-z._]{0,8}", Just(String::new())]
}

fn flat_array() -> impl Strategy<Value = Array> {
    prop_oneof![
        vec(any::<u8>(), 0..8).prop_map(Array::U8),
        vec(any::<i8>(), 0..8).prop_map(Array::I8),
        vec(any::<u16>(), 0..8).prop_map(Array::U16),
        vec(any::<i16>(), 0..8).prop_map(Array::I16),
        vec(any::<u32>(), 0..8).prop_map(Array::U32),
        vec(any::<i32>(), 0..8).prop_map(Array::I32),
        vec(any::<u64>(), 0..8).prop_map(Array::U64),
        vec(any::<i64>(), 0..8).prop_map(Array::I64),
        vec(float32(), 0..8).prop_map(Array::F32),
        vec(float64(), 0..8).prop_map(Array::F64),
        vec(any::<bool>(), 0..8).prop_map(Array::Bool),
        vec(text(), 0..6).prop_map(Array::String),
    ]
}

fn array() -> impl Strategy<Value = Array> {
    flat_array().prop_recursive(3, 24, 4, |inner| vec(inner, 0..4).prop_map(Array::Array))
}

fn value() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u8>().prop_map(Value::U8),
        any::<i8>().prop_map(Value::I8),
        any::<u16>().prop_map(Value::U16),
        any::<i16>().prop_map(Value::I16),
        any::<u32>().prop_map(Value::U32),
        any::<i32>().prop_map(Value::I32),
        any::<u64>().prop_map(Value::U64),
        any::<i64>().prop_map(Value::I64),
        float32().prop_map(Value::F32),
        float64().prop_map(Value::F64),
        any::<bool>().prop_map(Value::Bool),
        text().prop_map(Value::String),
        array().prop_map(Value::Array),
    ]
}

const TYPES: [GgmlType; 8] = [
    GgmlType::F32,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::Q8_0,
    GgmlType::Q4_0,
    GgmlType::Q5_1,
    GgmlType::Q4_K,
    GgmlType::I8,
];

/// (type, dims) with the row a whole number of blocks.
fn tensor_shape() -> impl Strategy<Value = (GgmlType, Vec<u64>)> {
    (0..TYPES.len(), 1u64..4, vec(1u64..4, 0..3)).prop_map(|(t, blocks, rest)| {
        let ty = TYPES[t];
        let mut dims = vec![blocks * ty.block_size() as u64];
        dims.extend(rest);
        (ty, dims)
    })
}

#[derive(Debug, Clone)]
struct Spec {
    alignment: Option<u64>,
    metadata: Vec<(String, Value)>,
    tensors: Vec<(GgmlType, Vec<u64>, u8)>,
}

fn spec() -> impl Strategy<Value = Spec> {
    (
        prop_oneof![Just(None), (0u32..9).prop_map(|p| Some(1u64 << p))],
        vec(value(), 0..8),
        vec((tensor_shape(), any::<u8>()), 0..5),
    )
        .prop_map(|(alignment, values, tensors)| Spec {
            alignment,
            metadata: values
                .into_iter()
                .enumerate()
                .map(|(i, v)| (format!("k{i}.x"), v))
                .collect(),
            tensors: tensors
                .into_iter()
                .map(|((t, d), seed)| (t, d, seed))
                .collect(),
        })
}

fn tensor_bytes(ty: GgmlType, dims: &[u64], seed: u8) -> Vec<u8> {
    let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
    (0..n).map(|i| (i as u8) ^ seed).collect()
}

fn build(spec: &Spec) -> Vec<u8> {
    let mut w = GgufWriter::new();
    if let Some(a) = spec.alignment {
        w.alignment(a).unwrap();
    }
    for (k, v) in &spec.metadata {
        w.add_metadata(k.clone(), v.clone()).unwrap();
    }
    for (i, (ty, dims, seed)) in spec.tensors.iter().enumerate() {
        w.add_tensor(format!("t{i}"), dims, *ty, tensor_bytes(*ty, dims, *seed))
            .unwrap();
    }
    let mut out = Vec::new();
    w.write_to(&mut out).unwrap();
    out
}

/// What `open` promises of any file it accepts.
fn check_invariants(file: &GgufFile) {
    let a = file.alignment();
    assert!(a.is_power_of_two());
    assert!(file.data_offset() <= file.file_size());
    let mut spans = Vec::new();
    for t in file.tensors() {
        assert!(t.dims.len() <= 4 && t.dims.iter().all(|&d| d > 0));
        assert_eq!(t.offset % a, 0);
        assert_eq!(t.row_len() % t.ggml_type.block_size() as u64, 0);
        assert_eq!(Some(t.n_bytes), t.ggml_type.bytes_for(t.n_elements()));
        assert_eq!(file.tensor_data(t).len() as u64, t.n_bytes);
        assert_eq!(file.tensor(&t.name), Some(t));
        spans.push((t.offset, t.offset + t.n_bytes));
    }
    spans.sort();
    assert!(
        spans.windows(2).all(|w| w[0].1 <= w[1].0),
        "overlap accepted"
    );
    // Every accepted value can be written back and read to the same thing.
    let mut out = Vec::new();
    GgufWriter::from_file(file)
        .unwrap()
        .write_to(&mut out)
        .unwrap();
    let again = GgufFile::from_bytes(out).unwrap();
    assert_eq!(again.metadata().len(), file.metadata().len());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn random_files_round_trip(spec in spec()) {
        let bytes = build(&spec);
        let file = GgufFile::from_bytes(bytes.clone()).unwrap();
        let keys: Vec<&str> = file.metadata().iter().map(|(k, _)| k).collect();
        let mut expected: Vec<&str> = Vec::new();
        if spec.alignment.is_some() {
            expected.push("general.alignment");
        }
        expected.extend(spec.metadata.iter().map(|(k, _)| k.as_str()));
        prop_assert_eq!(keys, expected);
        for (k, v) in &spec.metadata {
            let read = file.metadata().get_raw(k).unwrap();
            prop_assert_eq!(read.value_type(), v.value_type());
            prop_assert_eq!(format!("{read:?}"), format!("{v:?}"));
        }
        prop_assert_eq!(file.tensors().len(), spec.tensors.len());
        for (i, (ty, dims, seed)) in spec.tensors.iter().enumerate() {
            let t = file.tensor(&format!("t{i}")).unwrap();
            prop_assert_eq!(t.ggml_type, *ty);
            prop_assert_eq!(&t.dims, dims);
            let data = tensor_bytes(*ty, dims, *seed);
            prop_assert_eq!(file.tensor_data(t), data.as_slice());
        }
        check_invariants(&file);
        // Bit-exact: writing what was read gives the same bytes (NaN payloads included).
        let mut again = Vec::new();
        GgufWriter::from_file(&file).unwrap().write_to(&mut again).unwrap();
        prop_assert_eq!(again, bytes);
    }

    #[test]
    fn truncated_files_fail_cleanly(spec in spec(), cut in any::<prop::sample::Index>()) {
        let bytes = build(&spec);
        let len = cut.index(bytes.len());
        if let Ok(file) = GgufFile::from_bytes(bytes[..len].to_vec()) {
            check_invariants(&file);
        }
    }

    #[test]
    fn mutated_files_never_panic(
        spec in spec(),
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = build(&spec);
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        if let Ok(file) = GgufFile::from_bytes(bytes) {
            check_invariants(&file);
        }
    }

    #[test]
    fn mutated_fixed_file_never_panics(
        edits in vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let mut bytes = common::valid_file();
        for (at, byte) in edits {
            let i = at.index(bytes.len());
            bytes[i] = byte;
        }
        let len = cut.index(bytes.len() + 1);
        if let Ok(file) = GgufFile::from_bytes(bytes[..len].to_vec()) {
            check_invariants(&file);
        }
    }

    #[test]
    fn random_bytes_after_the_magic_never_panic(tail in vec(any::<u8>(), 0..256), version in 2u32..4) {
        let mut bytes = b"GGUF".to_vec();
        bytes.extend_from_slice(&version.to_le_bytes());
        bytes.extend(tail);
        if let Ok(file) = GgufFile::from_bytes(bytes) {
            check_invariants(&file);
        }
    }
}
