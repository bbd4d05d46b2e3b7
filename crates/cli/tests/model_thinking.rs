//! `--enable-thinking` reaches the chat template: on the synthetic Qwen3 model (Qwen3's
//! own template; scripts/synthetic/make-models.py) `false` renders the empty think block
//! that turns thinking off, and leaving it out keeps the template's default.

mod support;

use support::{json, tern};
use tern_testkit::data_dir;

fn run_json(extra: &[&str]) -> serde_json::Value {
    let home = tempfile::tempdir().unwrap();
    let model = data_dir().join("synthetic").join("qwen3-synthetic.gguf");
    assert!(
        model.exists(),
        "test data missing: {}\nhelp: run `python3 scripts/fetch-test-data.py`",
        model.display()
    );
    let mut command = tern(home.path());
    command
        .args(["run", "--json", "-n", "1", "--temperature", "0", "--model"])
        .arg(&model)
        .args(extra)
        .arg("Hi");
    json(&mut command)
}

#[test]
fn enable_thinking_reaches_the_chat_template() {
    let off = run_json(&["--enable-thinking", "false"]);
    let text = off["prompt_text"].as_str().unwrap();
    assert!(
        text.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{text:?}"
    );
    let default = run_json(&[]);
    let text = default["prompt_text"].as_str().unwrap();
    assert!(text.ends_with("<|im_start|>assistant\n"), "{text:?}");
    let on = run_json(&["--enable-thinking", "true"]);
    assert_eq!(on["prompt_text"], default["prompt_text"]);
}
