//! Greedy continuation of a raw prompt, for quick manual checks:
//! `cargo run --release -p tern-engine --example smoke -- MODEL.gguf "prompt" [N]`.

use std::sync::Arc;

use tern_engine::{GenerateOptions, Model, ModelOptions, Session, SessionOptions};
use tern_sampler::SamplingParams;
use tern_tokenizer::Tokenizer;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let (path, prompt) = (&args[1], &args[2]);
    let n: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let model = Arc::new(Model::load(path, ModelOptions::default())?);
    let tokenizer = Arc::new(Tokenizer::from_gguf(model.file().metadata())?);
    let mut session = Session::new(model, Arc::clone(&tokenizer), SessionOptions::default())?;
    let tokens = session.tokenize_prompt(prompt);
    println!("prompt tokens: {tokens:?}");
    let options = GenerateOptions {
        sampling: SamplingParams::greedy(),
        max_tokens: Some(n),
        ignore_eos: true,
        ..Default::default()
    };
    let generation = session.generate(&tokens, options, |_| std::ops::ControlFlow::Continue(()))?;
    let secs = generation.generation_time.as_secs_f64();
    println!("tokens: {:?}", generation.tokens);
    println!("text: {:?}", generation.text);
    println!(
        "prompt {:.2}s, {} tokens in {:.2}s ({:.1} tok/s)",
        generation.prompt_time.as_secs_f64(),
        generation.tokens.len(),
        secs,
        generation.tokens.len() as f64 / secs
    );
    Ok(())
}
