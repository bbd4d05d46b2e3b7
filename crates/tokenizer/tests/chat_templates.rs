//! Chat templates rendered byte for byte as Hugging Face transformers renders them.
//!
//! `scripts/tokenizer/make_template_goldens.py` rendered SmolLM2's template (from its
//! GGUF) and the Qwen3, Qwen2.5, Phi-3.5-mini, Llama 3.1/3.2/3.3 and Gemma templates of
//! llama.cpp's `models/templates/` with Python Jinja2 configured as transformers does,
//! over several conversations, with and without the generation prompt and with
//! template variables (`enable_thinking`, tools, `date_string`). Each golden file holds
//! the template source and the expected text (or the exception the template raises).

use tern_tokenizer::chat::{ChatTemplate, Message};

#[derive(serde::Deserialize)]
struct Golden {
    name: String,
    bos_token: String,
    eos_token: String,
    template: String,
    cases: Vec<Case>,
}

#[derive(serde::Deserialize)]
struct Case {
    conversation: String,
    messages: Vec<Message>,
    add_generation_prompt: bool,
    extra: serde_json::Map<String, serde_json::Value>,
    expected: Option<String>,
    error: Option<String>,
}

fn goldens() -> Vec<Golden> {
    let dir = tern_testkit::goldens_dir().join("templates");
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    paths.sort();
    paths
        .iter()
        .map(|p| {
            serde_json::from_str(&std::fs::read_to_string(p).expect("read golden"))
                .expect("golden json")
        })
        .collect()
}

fn check(golden: &Golden) -> usize {
    let template = ChatTemplate::new(&golden.template, &golden.bos_token, &golden.eos_token)
        .unwrap_or_else(|e| panic!("{}: {e}", golden.name));
    assert!(!template.is_fallback());
    let mut failures = Vec::new();
    for case in &golden.cases {
        let label = format!(
            "{} / {} / generation prompt {} / {:?}",
            golden.name,
            case.conversation,
            case.add_generation_prompt,
            serde_json::Value::Object(case.extra.clone()).to_string()
        );
        let result = template.render(&case.messages, case.add_generation_prompt, &case.extra);
        match (&case.expected, &case.error, result) {
            (Some(expected), _, Ok(text)) if text == *expected => {}
            (Some(expected), _, Ok(text)) => failures.push(format!(
                "{label}:\n  got      {text:?}\n  expected {expected:?}"
            )),
            (Some(_), _, Err(e)) => failures.push(format!("{label}: failed: {e}")),
            (None, Some(message), Err(e)) if e.to_string().contains(message.as_str()) => {}
            (None, Some(message), other) => failures.push(format!(
                "{label}: expected the error {message:?}, got {other:?}"
            )),
            (None, None, _) => failures.push(format!("{label}: golden case without expectation")),
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} cases differ:\n{}",
        failures.len(),
        golden.cases.len(),
        failures.join("\n")
    );
    golden.cases.len()
}

#[test]
fn every_reference_render_is_reproduced() {
    let goldens = goldens();
    let names: Vec<&str> = goldens.iter().map(|g| g.name.as_str()).collect();
    for required in [
        "smollm2",
        "qwen3",
        "phi-3.5-mini",
        "llama-3.1",
        "llama-3.2",
        "llama-3.3",
        "gemma",
    ] {
        assert!(
            names.contains(&required),
            "no golden for {required}: {names:?}"
        );
    }
    let total: usize = goldens.iter().map(check).sum();
    assert!(total >= 100, "only {total} cases");
}

#[test]
fn qwen3_thinking_switch_changes_the_generation_prompt() {
    let golden = goldens()
        .into_iter()
        .find(|g| g.name == "qwen3")
        .expect("qwen3 golden");
    let template = ChatTemplate::new(&golden.template, "", &golden.eos_token).expect("compiles");
    let messages = [Message::user("Hi")];
    let mut off = serde_json::Map::new();
    off.insert("enable_thinking".into(), false.into());
    let with_off = template.render(&messages, true, &off).expect("renders");
    let default = template
        .render(&messages, true, &serde_json::Map::new())
        .expect("renders");
    assert!(
        with_off.ends_with("<|im_start|>assistant\n<think>\n\n</think>\n\n"),
        "{with_off:?}"
    );
    assert!(default.ends_with("<|im_start|>assistant\n"), "{default:?}");
}

#[test]
fn smollm2_template_inserts_its_default_system_prompt() {
    let golden = goldens()
        .into_iter()
        .find(|g| g.name == "smollm2")
        .expect("smollm2 golden");
    let template = ChatTemplate::new(&golden.template, &golden.bos_token, &golden.eos_token)
        .expect("compiles");
    let text = template
        .render(&[Message::user("Hi")], true, &serde_json::Map::new())
        .expect("renders");
    assert_eq!(
        text,
        "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n\
         <|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n"
    );
}

#[test]
fn messages_deserialize_from_openai_style_json() {
    let messages: Vec<Message> = serde_json::from_str(
        r#"[{"role": "system", "content": "S"}, {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]"#,
    )
    .expect("parses");
    assert_eq!(messages[0], Message::system("S"));
    assert_eq!(messages[1].extra["tool_calls"][0]["id"], "1");
}

#[test]
fn llama32_date_comes_from_strftime_now_when_not_given() {
    let golden = goldens()
        .into_iter()
        .find(|g| g.name == "llama-3.2")
        .expect("llama-3.2 golden");
    let template = ChatTemplate::new(&golden.template, &golden.bos_token, &golden.eos_token)
        .expect("compiles");
    let case = golden
        .cases
        .iter()
        .find(|c| c.conversation == "single_user" && c.add_generation_prompt)
        .expect("case");
    let text = template
        .render(&case.messages, true, &serde_json::Map::new())
        .expect("renders");
    let expected = case.expected.as_deref().expect("expected text");
    // Llama 3.2's template asks `strftime_now` for today's date when none is given;
    // everything but the date is as in the reference (rendered with a fixed date).
    let line = text
        .lines()
        .find(|l| l.starts_with("Today Date: "))
        .expect("date line");
    assert_eq!(text.replace(line, "Today Date: 26 Jul 2024"), expected);
    let date = line.trim_start_matches("Today Date: ");
    let parts: Vec<&str> = date.split(' ').collect();
    assert_eq!(parts.len(), 3, "{date}");
    assert!(
        parts[0].len() == 2 && parts[0].parse::<u32>().is_ok_and(|d| (1..=31).contains(&d)),
        "{date}"
    );
    let months = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    assert!(months.contains(&parts[1]), "{date}");
    assert!(parts[2].parse::<u32>().is_ok_and(|y| y >= 2025), "{date}");
}
