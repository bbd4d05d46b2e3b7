//! Write → read → identical: every value type, nested arrays, several alignments, the
//! writer's own checks, and the atomic write to a path.

mod common;

use std::path::PathBuf;

use tern_gguf::{
    Array, DEFAULT_ALIGNMENT, Error, GgmlType, GgufFile, GgufWriter, MAX_ARRAY_DEPTH, Value,
};

fn write(w: &GgufWriter<'_>) -> Vec<u8> {
    let mut out = Vec::new();
    let n = w.write_to(&mut out).unwrap();
    assert_eq!(n, out.len() as u64);
    out
}

/// Deterministic bytes for a tensor.
fn pattern(n: usize, seed: u8) -> Vec<u8> {
    (0..n)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn tmp_dir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("gguf-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_value_type_round_trips() {
    let mut w = GgufWriter::new();
    let values = common::every_value();
    for (k, v) in &values {
        w.add_metadata(k.clone(), v.clone()).unwrap();
    }
    let bytes = write(&w);
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(file.version(), 3);
    let read: Vec<(String, Value)> = file
        .metadata()
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    assert_eq!(read, values);
    for (k, v) in &values {
        assert_eq!(file.metadata().get_raw(k), Some(v));
    }
    // Writing what was read gives the same bytes.
    assert_eq!(write(&GgufWriter::from_file(&file).unwrap()), bytes);
}

#[test]
fn tensors_round_trip_at_several_alignments() {
    let specs: [(&str, &[u64], GgmlType); 7] = [
        ("f32", &[5, 3], GgmlType::F32),
        ("f16", &[7], GgmlType::F16),
        ("bf16", &[2, 2, 2, 2], GgmlType::BF16),
        ("q8_0", &[64, 3], GgmlType::Q8_0),
        ("q4_1", &[32, 1, 2], GgmlType::Q4_1),
        ("q4_k", &[256, 2], GgmlType::Q4_K),
        ("q6_k", &[512], GgmlType::Q6_K),
    ];
    for alignment in [None, Some(1), Some(8), Some(64), Some(4096)] {
        let mut w = GgufWriter::new();
        w.add_metadata("general.architecture", "llama").unwrap();
        if let Some(a) = alignment {
            w.alignment(a).unwrap();
        }
        let mut datas = Vec::new();
        for (i, (name, dims, ty)) in specs.iter().enumerate() {
            let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
            datas.push(pattern(n, i as u8));
            w.add_tensor(*name, dims, *ty, datas[i].clone()).unwrap();
        }
        let file = GgufFile::from_bytes(write(&w)).unwrap();
        let a = alignment.unwrap_or(DEFAULT_ALIGNMENT);
        assert_eq!(file.alignment(), a);
        assert_eq!(
            file.metadata().get_raw("general.alignment"),
            alignment.map(|a| Value::U32(a as u32)).as_ref()
        );
        assert_eq!(file.data_offset() % a, 0);
        assert_eq!(file.tensors().len(), specs.len());
        for (i, (name, dims, ty)) in specs.iter().enumerate() {
            let t = &file.tensors()[i];
            assert_eq!(
                (t.name.as_str(), t.dims.as_slice(), t.ggml_type),
                (*name, *dims, *ty)
            );
            assert_eq!(t.offset % a, 0, "{name} at alignment {a}");
            assert_eq!(file.tensor(name), Some(t));
            assert_eq!(
                file.tensor_data(t),
                datas[i].as_slice(),
                "{name} at alignment {a}"
            );
        }
        assert_eq!(file.file_size() % a, 0, "the last tensor is padded too");
    }
}

#[test]
fn tensor_shape_helpers() {
    let mut w = GgufWriter::new();
    w.add_tensor("m", &[64, 3, 2], GgmlType::Q8_0, vec![0; 34 * 2 * 6])
        .unwrap();
    w.add_tensor("v", &[10], GgmlType::F32, vec![0; 40])
        .unwrap();
    let file = GgufFile::from_bytes(write(&w)).unwrap();
    let m = file.tensor("m").unwrap();
    assert_eq!(
        (m.n_elements(), m.row_len(), m.n_rows(), m.row_n_bytes()),
        (384, 64, 6, 68)
    );
    let v = file.tensor("v").unwrap();
    assert_eq!(
        (v.n_elements(), v.row_len(), v.n_rows(), v.n_bytes),
        (10, 10, 1, 40)
    );
    assert!(file.tensor("missing").is_none());
    assert_eq!(file.tensor_bytes("v").map(<[u8]>::len), Some(40));
}

#[test]
fn version_2_files_are_read() {
    let mut bytes = common::valid_file();
    bytes[4..8].copy_from_slice(&2u32.to_le_bytes());
    let file = GgufFile::from_bytes(bytes).unwrap();
    assert_eq!(file.version(), 2);
    assert_eq!(file.tensors().len(), 3);
}

#[test]
fn zero_tensor_file_without_padding_is_read() {
    let bytes = common::Raw::header(3, 0, 1).kv_u32("a", 1).bytes;
    let file = GgufFile::from_bytes(bytes.clone()).unwrap();
    assert_eq!(file.data_offset(), bytes.len() as u64);
    assert!(file.tensors().is_empty());
}

#[test]
fn writer_rejects_bad_input() {
    let mut w = GgufWriter::new();
    w.add_metadata("k", 1u8).unwrap();
    assert!(matches!(w.add_metadata("k", 2u8), Err(Error::DuplicateKey { key }) if key == "k"));

    w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]).unwrap();
    assert!(matches!(
        w.add_tensor("t", &[4], GgmlType::F32, vec![0; 16]),
        Err(Error::DuplicateTensor { name }) if name == "t"
    ));
    let err = w
        .add_tensor("short", &[4, 2], GgmlType::F32, vec![0; 16])
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::TensorSizeMismatch {
                expected: 32,
                found: 16,
                ..
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"short\""), "{err}");
    assert!(matches!(
        w.add_tensor("odd", &[31], GgmlType::Q8_0, vec![0; 34]),
        Err(Error::RowNotBlockMultiple { .. })
    ));
    assert!(matches!(
        w.add_tensor("flat", &[0], GgmlType::F32, Vec::new()),
        Err(Error::ZeroDim { .. })
    ));
    assert!(matches!(
        w.add_tensor("five", &[1, 1, 1, 1, 1], GgmlType::F32, vec![0; 4]),
        Err(Error::TooManyDims { n_dims: 5, .. })
    ));

    for bad in [0, 3, 48, 1 << 33] {
        assert!(matches!(w.alignment(bad), Err(Error::BadAlignment { value }) if value == bad));
    }
    let mut w2 = GgufWriter::new();
    assert!(matches!(
        w2.add_metadata("general.alignment", 24u32),
        Err(Error::BadAlignment { value: 24 })
    ));
    assert!(matches!(
        w2.add_metadata("general.alignment", "64"),
        Err(Error::WrongType { .. })
    ));
    assert!(matches!(
        w2.add_metadata("general.alignment", 64u64),
        Err(Error::WrongType {
            expected: "u32",
            ..
        })
    ));
    w2.add_metadata("general.alignment", 64u32).unwrap();
    assert_eq!(w2.current_alignment(), 64);

    let mut deep = Array::U8(vec![1]);
    for _ in 0..MAX_ARRAY_DEPTH {
        deep = Array::Array(vec![deep]);
    }
    assert!(matches!(
        w2.add_metadata("deep", deep.clone()),
        Err(Error::ValueTooDeep { .. })
    ));
    // One level less is the deepest the reader accepts, and it round-trips.
    let Array::Array(mut inner) = deep else {
        unreachable!()
    };
    let ok = inner.remove(0);
    assert_eq!(ok.depth(), MAX_ARRAY_DEPTH);
    w2.add_metadata("deepest", ok.clone()).unwrap();
    let file = GgufFile::from_bytes(write(&w2)).unwrap();
    assert_eq!(file.metadata().get_raw("deepest"), Some(&Value::Array(ok)));
}

#[test]
fn write_to_path_is_atomic_and_leaves_no_temp_files() {
    let dir = tmp_dir("atomic");
    let path = dir.join("model.gguf");

    let mut first = GgufWriter::new();
    first.add_metadata("general.name", "first").unwrap();
    first
        .add_tensor("t", &[8], GgmlType::F32, pattern(32, 1))
        .unwrap();
    let n = first.write_to_path(&path).unwrap();
    assert_eq!(n, std::fs::metadata(&path).unwrap().len());
    assert_eq!(std::fs::read(&path).unwrap(), write(&first));

    // Replace the file while the old one is mapped: the old map keeps the old bytes,
    // because the new file is renamed over the old name, not written into it.
    let old = GgufFile::open(&path).unwrap();
    let mut second = GgufWriter::new();
    second.add_metadata("general.name", "second").unwrap();
    second
        .add_tensor("t", &[8], GgmlType::F32, pattern(32, 2))
        .unwrap();
    second.write_to_path(&path).unwrap();
    assert_eq!(
        old.metadata().get_raw("general.name"),
        Some(&Value::from("first"))
    );
    assert_eq!(old.tensor_bytes("t").unwrap(), pattern(32, 1).as_slice());
    let new = GgufFile::open(&path).unwrap();
    assert_eq!(
        new.metadata().get_raw("general.name"),
        Some(&Value::from("second"))
    );
    assert_eq!(new.tensor_bytes("t").unwrap(), pattern(32, 2).as_slice());

    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        names,
        vec![std::ffi::OsString::from("model.gguf")],
        "temp files left behind"
    );

    let missing = dir.join("no/such/dir/model.gguf");
    match second.write_to_path(&missing) {
        Err(e @ Error::Write { .. }) => assert!(e.to_string().contains("no/such/dir"), "{e}"),
        other => panic!("expected a write error, got {other:?}"),
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn open_reports_missing_and_empty_files() {
    let dir = tmp_dir("open");
    match GgufFile::open(dir.join("absent.gguf")) {
        Err(e @ Error::Io { .. }) => assert!(e.to_string().contains("absent.gguf"), "{e}"),
        other => panic!("expected an io error, got {other:?}"),
    }
    std::fs::write(dir.join("empty.gguf"), b"").unwrap();
    assert!(matches!(
        GgufFile::open(dir.join("empty.gguf")),
        Err(Error::Truncated { .. })
    ));
    std::fs::remove_dir_all(&dir).unwrap();
}
