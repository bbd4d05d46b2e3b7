//! SmolLM2-135M-Instruct Q4_1 (llama) against llama.cpp's goldens: prompt tokens,
//! logits at the last prompt position, greedy continuations, perplexity; and generation
//! through a [`Session`]: a sensible chat answer and JSON-Schema-constrained output.

mod fidelity;

use std::ops::ControlFlow;
use std::sync::Arc;

use fidelity::{Fixture, compare, perplexity_prefix};
use tern_engine::session::{chat_prompt, sampler_vocabulary};
use tern_engine::{FinishReason, GenerateOptions, Session, SessionOptions};
use tern_sampler::{ConstrainedDecoder, Constraint, SamplingParams};
use tern_testkit::TestModel;
use tern_tokenizer::chat::{ChatTemplate, Message};

const KEY: &str = "smollm2-135m-instruct-q4_1";

/// Issue 4 asks for top-1 identical, top-10 logits within 0.1 and greedy continuations
/// matching on 90% of prompts. Measured (crates/engine/README.md, "Fidelity"): tern
/// computes llama.cpp's bits in every tensor, so on all 43 prompts (46 with the long
/// ones) top-1 43/43, top-10 max |Δ| 0.0000, greedy 43/43. The bounds are that, with a
/// hair of margin on the logits.
const TOP10_TOLERANCE: f32 = 0.001;
const GREEDY_PASS_RATE: f64 = 1.0;

fn fixture() -> Fixture {
    Fixture::load(TestModel::SmolLm2_135m, KEY)
}

#[test]
fn fidelity_against_llama_cpp() {
    let fixture = fixture();
    // Every prompt, the three `long-*` ones (2,300–2,900 tokens) included.
    let report = compare(&fixture, |_| true);
    report.print(KEY);
    assert!(report.prompts >= 40, "{} prompts", report.prompts);
    assert!(
        report.tokenization_mismatches.is_empty(),
        "{:?}",
        report.tokenization_mismatches
    );
    assert!(
        report.top1_mismatches.is_empty(),
        "{:?}",
        report.top1_mismatches
    );
    assert!(
        report.max_top10_diff <= TOP10_TOLERANCE,
        "top-10 logits differ by {}",
        report.max_top10_diff
    );
    assert!(
        report.greedy_pass_rate() >= GREEDY_PASS_RATE,
        "greedy: {:?}",
        report.greedy_failures
    );
}

#[test]
fn perplexity_matches_llama_perplexity_on_the_first_chunks() {
    let fixture = fixture();
    // 16 chunks (8,192 tokens): measured equal to llama-perplexity to 4 decimals
    // (every tensor has llama.cpp's bits); the bound leaves room for the last printed
    // digit of the reference only.
    let (ours, reference) = perplexity_prefix(&fixture, 512, 16);
    let relative = (ours - reference).abs() / reference;
    println!(
        "perplexity over 16 chunks of 512: tern {ours:.4}, llama.cpp {reference:.4} ({:.3}%)",
        100.0 * relative
    );
    assert!(relative < 1e-5, "tern {ours}, llama-perplexity {reference}");
}

fn session(fixture: &Fixture) -> Session {
    Session::new(
        Arc::clone(&fixture.model),
        Arc::clone(&fixture.tokenizer),
        SessionOptions::default(),
    )
    .unwrap()
}

#[test]
fn answers_a_simple_question() {
    let fixture = fixture();
    let mut session = session(&fixture);
    let template =
        ChatTemplate::from_gguf(fixture.model.file().metadata(), &fixture.tokenizer).unwrap();
    let prompt = chat_prompt(
        &template,
        &fixture.tokenizer,
        // Not France: on "What is the capital of France?" llama.cpp's greedy answer (and
        // so tern's, now that both compute the same bits) is French rambling without
        // "Paris"; on this one both answer "The capital of Germany is Berlin."
        &[Message::user("What is the capital of Germany?")],
    )
    .unwrap();
    let tokens = session.tokenize_prompt(&prompt);
    let options = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(48),
        ..Default::default()
    };
    let mut streamed = String::new();
    let answer = session
        .generate(&tokens, options, |piece| {
            streamed.push_str(piece);
            ControlFlow::Continue(())
        })
        .unwrap();
    println!("answer: {:?} ({:?})", answer.text, answer.finish_reason);
    assert!(answer.text.contains("Berlin"), "{:?}", answer.text);
    assert_eq!(
        streamed, answer.text,
        "the streamed pieces make up the answer"
    );
    assert_eq!(answer.finish_reason, FinishReason::EndOfGeneration);
}

#[test]
fn constrained_output_always_validates_against_the_schema() {
    let fixture = fixture();
    let schema = serde_json::json!({
        "type": "object",
        "properties": {
            "city": {"type": "string", "maxLength": 24},
            "country": {"type": "string", "enum": ["France", "Germany", "Italy", "Spain"]},
            "population_millions": {"type": "number"},
            "capital": {"type": "boolean"}
        },
        "required": ["city", "country", "capital"],
        "additionalProperties": false
    });
    let vocab = Arc::new(sampler_vocabulary(&fixture.tokenizer).unwrap());
    let template =
        ChatTemplate::from_gguf(fixture.model.file().metadata(), &fixture.tokenizer).unwrap();
    let question = Message::user(
        "Describe Paris as JSON with the keys city, country, population_millions and capital.",
    );
    let prompt = chat_prompt(&template, &fixture.tokenizer, &[question]).unwrap();
    let mut session = session(&fixture);
    let tokens = session.tokenize_prompt(&prompt);
    let seeds = 12;
    for seed in 0..seeds {
        let constraint =
            ConstrainedDecoder::new(&Constraint::JsonSchema(schema.clone()), Arc::clone(&vocab))
                .unwrap();
        let sampling = SamplingParams {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: Some(seed),
            ..Default::default()
        };
        let options = GenerateOptions {
            sampling,
            max_tokens: Some(96),
            constraint: Some(constraint),
            ..Default::default()
        };
        let out = session
            .generate(&tokens, options, |_| ControlFlow::Continue(()))
            .unwrap();
        assert_eq!(
            out.finish_reason,
            FinishReason::EndOfGeneration,
            "seed {seed}: {:?} did not finish",
            out.text
        );
        let value: serde_json::Value = serde_json::from_str(&out.text)
            .unwrap_or_else(|e| panic!("seed {seed}: {:?} is not JSON: {e}", out.text));
        let object = value
            .as_object()
            .unwrap_or_else(|| panic!("seed {seed}: {value} is not an object"));
        assert!(
            object.keys().all(
                |k| ["city", "country", "population_millions", "capital"].contains(&k.as_str())
            )
        );
        assert!(
            object["city"]
                .as_str()
                .is_some_and(|c| c.chars().count() <= 24),
            "seed {seed}: {value}"
        );
        assert!(
            ["France", "Germany", "Italy", "Spain"]
                .contains(&object["country"].as_str().unwrap_or(""))
        );
        assert!(object["capital"].is_boolean(), "seed {seed}: {value}");
        if let Some(p) = object.get("population_millions") {
            assert!(p.is_number(), "seed {seed}: {value}");
        }
    }
}
