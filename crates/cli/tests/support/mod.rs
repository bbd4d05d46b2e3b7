//! Helpers for running the real `tern` binary in tests.

#![allow(dead_code)]

#[path = "../../../store/tests/support/fixtures.rs"]
pub mod fixtures;
#[path = "../../../store/tests/support/server.rs"]
pub mod server;

use std::path::Path;
use std::process::{Command, Output};

/// `tern` with a private store at `home` and no inherited model-related environment.
pub fn tern(home: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tern"));
    command
        .env("TERN_HOME", home)
        .env_remove("HF_TOKEN")
        .env_remove("HF_ENDPOINT")
        .env_remove("TERN_PYTHON")
        .env_remove("RUST_LOG")
        .env_remove("PIP_FIND_LINKS")
        .stdin(std::process::Stdio::null());
    command
}

/// Runs and returns (exit code, stdout, stderr).
pub fn run(command: &mut Command) -> (i32, String, String) {
    let Output {
        status,
        stdout,
        stderr,
    } = command.output().expect("run tern");
    (
        status.code().unwrap_or(-1),
        String::from_utf8_lossy(&stdout).into_owned(),
        String::from_utf8_lossy(&stderr).into_owned(),
    )
}

/// Runs, expects exit 0, returns stdout parsed as JSON.
pub fn json(command: &mut Command) -> serde_json::Value {
    let (code, stdout, stderr) = run(command);
    assert_eq!(code, 0, "stderr: {stderr}");
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("{e}: {stdout}"))
}

/// Asserts that a JSON object has exactly these keys: the `--json` formats are a contract
/// (docs/CLI.md), so a field added or removed without updating the docs fails here.
pub fn assert_keys(value: &serde_json::Value, keys: &[&str]) {
    let object = value
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {value}"));
    let mut found: Vec<&str> = object.keys().map(String::as_str).collect();
    let mut expected = keys.to_vec();
    found.sort_unstable();
    expected.sort_unstable();
    assert_eq!(found, expected, "fields of {value}");
}
