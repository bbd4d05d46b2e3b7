//! Running `scripts/gguf/interop.py` (gguf-py and ggml's C reader) from tests.
//!
//! Python is `$TERN_PYTHON`, else the project venv `<repo>/.cache/venv/bin/python` (made
//! by `scripts/fetch-test-data.py`, with gguf-py installed from requirements-test.txt).

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value as Json, json};
use tern_gguf::GgufFile;

pub fn python() -> PathBuf {
    match std::env::var_os("TERN_PYTHON") {
        Some(p) => PathBuf::from(p),
        None => tern_testkit::repo_root().join(".cache/venv/bin/python"),
    }
}

pub fn interop(command: &str, file: &Path) -> Json {
    interop_args(&[command.as_ref(), file.as_os_str()])
}

pub fn interop_args(args: &[&std::ffi::OsStr]) -> Json {
    let command = args[0].to_string_lossy().into_owned();
    let script = tern_testkit::repo_root().join("scripts/gguf/interop.py");
    let python = python();
    let out = Command::new(&python)
        .arg(&script)
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run {}: {e}\nhelp: run `python3 scripts/fetch-test-data.py` or set TERN_PYTHON",
                python.display()
            )
        });
    assert!(
        out.status.success(),
        "interop.py {command} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("interop.py prints JSON")
}

/// tern's view of a file's header in the form `interop.py ggml` prints ggml's.
pub fn ggml_view(file: &GgufFile) -> Json {
    let keys: Vec<Json> = file
        .metadata()
        .iter()
        .map(|(k, v)| json!([k, v.type_description()]))
        .collect();
    let tensors: Vec<Json> = file
        .tensors()
        .iter()
        .map(|t| json!({"name": t.name, "type": t.ggml_type.id(), "offset": t.offset, "n_bytes": t.n_bytes}))
        .collect();
    json!({
        "version": file.version(), "alignment": file.alignment(),
        "data_offset": file.data_offset(), "keys": keys, "tensors": tensors,
    })
}
