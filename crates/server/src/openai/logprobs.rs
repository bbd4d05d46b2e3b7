//! Log-probabilities in OpenAI's two shapes: Chat's `logprobs.content` list and the
//! legacy Completions `logprobs` object of parallel arrays.
//!
//! A token's text is the tokenizer's text for that id alone (from [`FileFacts`]); when
//! the file's tokenizer is unavailable, the text the token completed is used.

use serde_json::{Map, Value, json};
use tern_sampler::TokenLogprob;

use crate::generation::TokenInfo;
use crate::model_files::FileFacts;

fn token_text(id: u32, fallback: &str, facts: Option<&FileFacts>) -> String {
    facts
        .and_then(|f| f.token_text(id))
        .unwrap_or_else(|| fallback.to_string())
}

fn finite(logprob: f32) -> f64 {
    // JSON has no -inf; OpenAI reports -9999.0 for impossible tokens.
    if logprob.is_finite() {
        f64::from(logprob)
    } else {
        -9999.0
    }
}

/// One entry of Chat's `logprobs.content`.
pub fn chat_logprob(
    text: &str,
    id: u32,
    logprob: f32,
    top: &[TokenLogprob],
    facts: Option<&FileFacts>,
) -> Value {
    let token = token_text(id, text, facts);
    let top: Vec<Value> = top
        .iter()
        .map(|alt| {
            let text = token_text(alt.token, "", facts);
            json!({"token": text, "logprob": finite(alt.logprob), "bytes": text.as_bytes()})
        })
        .collect();
    json!({
        "token": token,
        "logprob": finite(logprob),
        "bytes": token.as_bytes(),
        "top_logprobs": top,
    })
}

/// Chat's `logprobs` object for a whole answer.
pub fn chat_logprobs(tokens: &[TokenInfo], facts: Option<&FileFacts>) -> Value {
    let content: Vec<Value> = tokens
        .iter()
        .map(|t| chat_logprob(&t.text, t.id, t.logprob, &t.top, facts))
        .collect();
    json!({"content": content, "refusal": null})
}

/// The legacy `logprobs` object; `offset` is the text length before these tokens.
pub fn completion_logprobs(
    tokens: &[TokenInfo],
    offset: usize,
    facts: Option<&FileFacts>,
) -> Value {
    let mut texts = Vec::with_capacity(tokens.len());
    let mut logprobs = Vec::with_capacity(tokens.len());
    let mut tops = Vec::with_capacity(tokens.len());
    let mut offsets = Vec::with_capacity(tokens.len());
    let mut position = offset;
    for t in tokens {
        texts.push(Value::from(token_text(t.id, &t.text, facts)));
        logprobs.push(Value::from(finite(t.logprob)));
        let mut top = Map::new();
        for alt in &t.top {
            top.insert(
                token_text(alt.token, "", facts),
                Value::from(finite(alt.logprob)),
            );
        }
        tops.push(Value::Object(top));
        offsets.push(Value::from(position));
        position += t.text.len();
    }
    json!({
        "tokens": texts,
        "token_logprobs": logprobs,
        "top_logprobs": tops,
        "text_offset": offsets,
    })
}
