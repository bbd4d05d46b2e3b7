//! Where tests find the real models and reference data.
//!
//! `scripts/fetch-test-data.py` puts them under `<repo>/.cache` (or `$TERN_TEST_DATA`);
//! the test command runs it first. A test that needs a file that is missing fails with
//! the command that fetches it, rather than skipping: a skipped test proves nothing.

use std::path::{Path, PathBuf};

/// The real models the suite runs against (see docs/MODELS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TestModel {
    /// SmolLM2-135M-Instruct, Q4_1 (llama architecture, BPE tokenizer). The default model.
    SmolLm2_135m,
    /// Gemma 3 270M base, Q4_K_M (gemma3 architecture, SentencePiece tokenizer).
    Gemma3_270m,
    /// Qwen2.5-Coder-1.5B-Instruct, Q4_K_M (qwen2). Fetched only with `--qwen`.
    Qwen25Coder1_5b,
}

impl TestModel {
    pub fn file_name(self) -> &'static str {
        match self {
            TestModel::SmolLm2_135m => "smollm2-135m-instruct-q4_1.gguf",
            TestModel::Gemma3_270m => "gemma-3-270m-q4_k_m.gguf",
            TestModel::Qwen25Coder1_5b => "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
        }
    }
}

/// The repository root (the workspace directory).
pub fn repo_root() -> PathBuf {
    // crates/testkit -> repository root
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .expect("repo root")
}

/// The test data directory: `$TERN_TEST_DATA` or `<repo>/.cache`.
pub fn data_dir() -> PathBuf {
    match std::env::var_os("TERN_TEST_DATA") {
        Some(dir) => PathBuf::from(dir),
        None => repo_root().join(".cache"),
    }
}

/// Path of a real model file; panics with the fetch command when it is missing.
pub fn model_path(model: TestModel) -> PathBuf {
    let path = data_dir().join("models").join(model.file_name());
    require(
        &path,
        if model == TestModel::Qwen25Coder1_5b {
            " --qwen"
        } else {
            ""
        },
    );
    path
}

/// llama.cpp's `models/` folder (vocab-only GGUFs, `.inp`/`.out` tokenizer tests,
/// `templates/`), as shipped in the llama-cpp-python source package.
pub fn llamacpp_models_dir() -> PathBuf {
    let path = data_dir().join("llama.cpp").join("models");
    require(&path.join(".complete"), "");
    path
}

/// Committed golden files made by the scripts in `scripts/goldens/`.
pub fn goldens_dir() -> PathBuf {
    repo_root().join("tests").join("goldens")
}

fn require(path: &Path, flag: &str) {
    assert!(
        path.exists(),
        "test data missing: {}\nhelp: run `python3 scripts/fetch-test-data.py{flag}` (the test command does)",
        path.display()
    );
}
