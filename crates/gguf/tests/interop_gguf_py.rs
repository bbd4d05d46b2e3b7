//! Interop with gguf-py, llama.cpp's Python package, both ways: a file written by gguf-py's
//! GGUFWriter is read here, and a file written here is read back by gguf-py's GGUFReader.
//! Both sides print/build the canonical JSON described in `scripts/gguf/interop.py`.
//!
//! Python is `$TERN_PYTHON`, else the project venv `<repo>/.cache/venv/bin/python` (made
//! by `scripts/fetch-test-data.py`, with gguf-py installed from requirements-test.txt).

mod common;

use std::path::PathBuf;

use common::interop::{ggml_view, interop, interop_args};
use serde_json::{Value as Json, json};
use tern_gguf::{Array, GgmlType, GgufFile, GgufWriter, Value, ValueType, file_type_name};

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn canon_array(a: &Array) -> Json {
    fn items<T: Copy>(v: &[T], f: impl Fn(T) -> Value) -> Vec<Json> {
        v.iter().map(|&x| canon(&f(x))).collect()
    }
    let items = match a {
        Array::U8(v) => items(v, Value::U8),
        Array::I8(v) => items(v, Value::I8),
        Array::U16(v) => items(v, Value::U16),
        Array::I16(v) => items(v, Value::I16),
        Array::U32(v) => items(v, Value::U32),
        Array::I32(v) => items(v, Value::I32),
        Array::U64(v) => items(v, Value::U64),
        Array::I64(v) => items(v, Value::I64),
        Array::F32(v) => items(v, Value::F32),
        Array::F64(v) => items(v, Value::F64),
        Array::Bool(v) => items(v, Value::Bool),
        Array::String(v) => v.iter().map(|s| canon(&Value::String(s.clone()))).collect(),
        Array::Array(v) => v.iter().map(canon_array).collect(),
    };
    json!({"type": "array", "elem": a.element_type().name(), "items": items})
}

fn canon(v: &Value) -> Json {
    let ty = v.value_type().name();
    match v {
        Value::U8(x) => json!({"type": ty, "value": x}),
        Value::I8(x) => json!({"type": ty, "value": x}),
        Value::U16(x) => json!({"type": ty, "value": x}),
        Value::I16(x) => json!({"type": ty, "value": x}),
        Value::U32(x) => json!({"type": ty, "value": x}),
        Value::I32(x) => json!({"type": ty, "value": x}),
        Value::U64(x) => json!({"type": ty, "value": x}),
        Value::I64(x) => json!({"type": ty, "value": x}),
        Value::F32(x) => json!({"type": ty, "value": hex(&x.to_le_bytes())}),
        Value::F64(x) => json!({"type": ty, "value": hex(&x.to_le_bytes())}),
        Value::Bool(x) => json!({"type": ty, "value": x}),
        Value::String(x) => json!({"type": ty, "value": x}),
        Value::Array(a) => canon_array(a),
    }
}

/// tern-gguf's view of a file in the canonical form.
fn canon_file(file: &GgufFile) -> Json {
    let metadata: Vec<Json> = file
        .metadata()
        .iter()
        .map(|(k, v)| json!([k, canon(v)]))
        .collect();
    let tensors: Vec<Json> = file
        .tensors()
        .iter()
        .map(|t| {
            json!({
                "name": t.name, "dims": t.dims, "type": t.ggml_type.id(),
                "offset": t.offset, "data": hex(file.tensor_data(t)),
            })
        })
        .collect();
    json!({
        "version": file.version(), "alignment": file.alignment(),
        "metadata": metadata, "tensors": tensors,
    })
}

fn tmp(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}-{}.gguf", std::process::id()))
}

#[test]
fn files_written_by_gguf_py_are_read() {
    let path = tmp("from-gguf-py");
    let written = interop("write", &path);
    let file = GgufFile::open(&path).unwrap();
    assert_eq!(canon_file(&file), written);
    // A few values checked directly, so the comparison above is not vacuous.
    let m = file.metadata();
    assert_eq!(m.get_raw("test.u64"), Some(&Value::U64(u64::MAX)));
    assert_eq!(m.get_raw("test.f32"), Some(&Value::F32(0.1)));
    assert_eq!(
        m.get_raw("test.nested_string"),
        Some(&Value::Array(Array::Array(vec![
            Array::String(vec!["x".into()]),
            Array::String(vec!["y".into(), "z".into()]),
        ])))
    );
    assert_eq!(file.alignment(), 64);
    let q8 = file.tensor("q8_0.weight").unwrap();
    assert_eq!(
        (q8.ggml_type, q8.dims.as_slice()),
        (GgmlType::Q8_0, &[64u64, 4][..])
    );
    assert_eq!(
        m.get_u32(tern_gguf::Key::ContextLength).unwrap(),
        Some(2048)
    );
    // tern writes gguf-py's layout byte for byte.
    let mut rewritten = Vec::new();
    GgufWriter::from_file(&file)
        .unwrap()
        .write_to(&mut rewritten)
        .unwrap();
    assert!(
        rewritten == std::fs::read(&path).unwrap(),
        "rewrite differs from gguf-py's file"
    );
    std::fs::remove_file(&path).unwrap();
}

#[test]
fn files_written_here_are_read_by_gguf_py() {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "gemma3").unwrap();
    w.alignment(128).unwrap();
    for (k, v) in common::every_value() {
        w.add_metadata(k, v).unwrap();
    }
    let specs: [(&str, &[u64], GgmlType); 5] = [
        ("a.f32", &[6, 2], GgmlType::F32),
        ("b.f16", &[8], GgmlType::F16),
        ("c.q8_0", &[32, 3], GgmlType::Q8_0),
        ("d.q4_k", &[256], GgmlType::Q4_K),
        ("e.bf16", &[2, 2, 2], GgmlType::BF16),
    ];
    for (i, (name, dims, ty)) in specs.iter().enumerate() {
        let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        let data: Vec<u8> = (0..n).map(|j| (j * 7 + i) as u8).collect();
        w.add_tensor(*name, dims, *ty, data).unwrap();
    }
    let path = tmp("to-gguf-py");
    w.write_to_path(&path).unwrap();
    let file = GgufFile::open(&path).unwrap();
    let read_by_python = interop("dump", &path);
    assert_eq!(read_by_python, canon_file(&file));
    assert_eq!(read_by_python["metadata"].as_array().unwrap().len(), 32);
    assert_eq!(read_by_python["tensors"][3]["type"], json!(12), "q4_K id");
    std::fs::remove_file(&path).unwrap();
}

/// The ggml type table agrees with gguf-py's `GGML_QUANT_SIZES` for every type both know.
#[test]
fn ggml_type_sizes_match_gguf_py() {
    let table = interop_args(&["sizes".as_ref()]);
    let table = table.as_object().unwrap();
    let mut compared = 0;
    for t in GgmlType::ALL {
        let Some(entry) = table.get(&t.id().to_string()) else {
            continue;
        };
        let (block, bytes) = (entry[1].as_u64().unwrap(), entry[2].as_u64().unwrap());
        if t == GgmlType::Q8_1 {
            // gguf-py still has the old f32 d/s layout (40 bytes); ggml's block_q8_1
            // holds two f16 (ggml-common.h: 4 + 32 = 36), and ggml is the reference.
            assert_eq!((block, bytes), (32, 40), "gguf-py's q8_1 changed: revisit");
            continue;
        }
        assert_eq!(
            (t.block_size() as u64, t.type_size() as u64),
            (block, bytes),
            "{t}"
        );
        assert_eq!(
            entry[0].as_str().unwrap().to_lowercase(),
            t.name().to_lowercase()
        );
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} types compared");
    for id in table.keys() {
        let id: u32 = id.parse().unwrap();
        assert!(
            GgmlType::from_id(id).is_some(),
            "gguf-py knows type {id}, tern does not"
        );
    }
}

/// `file_type_name` agrees with gguf-py's `LlamaFileType` (`MOSTLY_Q4_K_M` -> `Q4_K_M`).
#[test]
fn file_type_names_match_gguf_py() {
    let table = interop_args(&["file_types".as_ref()]);
    let mut compared = 0;
    for (id, name) in table.as_object().unwrap() {
        let id: u32 = id.parse().unwrap();
        let name = name.as_str().unwrap();
        if name == "GUESSED" {
            assert_eq!(file_type_name(id), None, "1024 marks a guess, not a type");
            continue;
        }
        let short = name
            .trim_start_matches("MOSTLY_")
            .trim_start_matches("ALL_");
        assert_eq!(file_type_name(id), Some(short), "file type {id}");
        compared += 1;
    }
    assert!(compared >= 30, "only {compared} file types compared");
}

fn ggml_compatible_file(alignment: Option<u64>) -> GgufWriter<'static> {
    let mut w = GgufWriter::new();
    w.add_metadata("general.architecture", "llama").unwrap();
    if let Some(a) = alignment {
        w.alignment(a).unwrap();
    }
    // ggml reads every value type but arrays of arrays.
    for (k, v) in common::every_value() {
        if v.as_array()
            .is_none_or(|a| a.element_type() != ValueType::Array)
        {
            w.add_metadata(k, v).unwrap();
        }
    }
    let specs: [(&str, &[u64], GgmlType); 4] = [
        ("token_embd.weight", &[64, 10], GgmlType::Q8_0),
        ("output_norm.weight", &[64], GgmlType::F32),
        ("blk.0.ffn_down.weight", &[256, 3], GgmlType::Q6_K),
        ("blk.0.attn_q.weight", &[32, 5], GgmlType::Q5_0),
    ];
    for (name, dims, ty) in specs {
        let n = ty.bytes_for(dims.iter().product()).unwrap() as usize;
        w.add_tensor(name, dims, ty, vec![0x11; n]).unwrap();
    }
    w
}

/// llama.cpp's own C reader (`gguf_init_from_file`, stricter than gguf-py: packed tensor
/// offsets, a `u32` alignment) accepts tern's files and sees the same header.
#[test]
fn files_written_here_are_read_by_ggml() {
    for alignment in [None, Some(1), Some(64), Some(4096)] {
        let path = tmp(&format!("to-ggml-{}", alignment.unwrap_or(0)));
        ggml_compatible_file(alignment)
            .write_to_path(&path)
            .unwrap();
        let file = GgufFile::open(&path).unwrap();
        let seen = interop("ggml", &path);
        assert_eq!(seen, ggml_view(&file), "alignment {alignment:?}");
        assert_eq!(seen["tensors"].as_array().unwrap().len(), 4);
        std::fs::remove_file(&path).unwrap();
    }
}

/// Arrays of arrays are valid GGUF (gguf-py writes and reads them, so does tern) but ggml
/// rejects them: model metadata must not use them.
#[test]
fn ggml_rejects_nested_arrays_that_tern_reads() {
    let mut w = ggml_compatible_file(None);
    w.add_metadata("nested", Array::Array(vec![Array::U8(vec![1])]))
        .unwrap();
    let path = tmp("nested-to-ggml");
    w.write_to_path(&path).unwrap();
    assert!(GgufFile::open(&path).is_ok());
    assert_eq!(
        interop("ggml", &path),
        json!({"error": "gguf_init_from_file failed"})
    );
    std::fs::remove_file(&path).unwrap();
}
