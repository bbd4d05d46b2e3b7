//! tern-sampler: everything between a row of logits and the next token.
//!
//! - [`Sampler`] with [`SamplingParams`]: greedy, temperature, top-k, top-p, min-p,
//!   repetition / frequency / presence penalties and a seeded generator, in llama.cpp's
//!   default chain order.
//! - [`StopMatcher`]: stop strings across token boundaries for streaming.
//! - [`ConstrainedDecoder`] over a [`Vocabulary`]: masks the logits so that the output is
//!   valid JSON, or valid against a JSON Schema ([`Constraint`]), by construction.
//!
//! The crate knows tokens only as ids and their decoded bytes; the engine depends on it,
//! never the other way round.
//!
//! # Using it per request
//!
//! ```
//! use std::sync::Arc;
//! use tern_sampler::{ConstrainedDecoder, Constraint, Sampler, SamplingParams, Vocabulary};
//!
//! // Once per model: each token's bytes (control tokens empty) and the EOG ids.
//! let texts = ["", "{", "}", "\"a\"", ":", "1", ","];
//! let tokens: Vec<Vec<u8>> = texts.iter().map(|t| t.as_bytes().to_vec()).collect();
//! let vocab = Arc::new(Vocabulary::new(tokens, vec![0]).unwrap());
//!
//! // Per request.
//! let mut decoder = ConstrainedDecoder::new(&Constraint::Json { object_only: true }, vocab.clone()).unwrap();
//! let mut sampler = Sampler::new(SamplingParams { seed: Some(1), ..Default::default() }, vocab.len()).unwrap();
//! let mut history = Vec::new();
//! for _ in 0..1000 {
//!     let mut logits = vec![0.0f32; vocab.len()]; // from the model
//!     decoder.mask_logits(&mut logits);
//!     let token = sampler.sample(&logits, &history);
//!     decoder.accept(token).unwrap();
//!     history.push(token);
//!     if vocab.is_end_of_generation(token) {
//!         break;
//!     }
//! }
//! assert!(decoder.is_complete());
//! ```
//!
//! # JSON Schema support
//!
//! Implemented: `type` (`object`, `array`, `string`, `number`, `integer`, `boolean`,
//! `null`, or a list of them), `enum`, `const`, `properties`, `required`,
//! `additionalProperties` (`false`, `true` or absent), `items` (one schema), `minItems`,
//! `maxItems`, `minLength`, `maxLength` (in characters), `anyOf`, `oneOf` (when its
//! alternatives cannot match values of the same JSON type), `$ref` to local definitions
//! (`#/$defs/…`, `#/definitions/…`, `#`, recursion included), and the annotations
//! `title`, `description`, `default`, `examples`, `$schema`, `$id`, `$comment`,
//! `deprecated`, `readOnly`, `writeOnly`. Any other keyword (`pattern`, `format`,
//! `minimum`, `allOf`, …) is refused with [`Error::UnsupportedKeyword`] naming it and its
//! location, since ignoring an assertion would let invalid output through.
//!
//! What the decoder generates is a subset of what the schema allows, chosen so that every
//! output is valid and generation always ends:
//! - properties come in the order the schema declares them, and no property outside
//!   `properties` (plus open objects' `required` names) is generated; an object schema
//!   with neither `properties` nor `required` (and not closed) allows any object;
//! - at most 20 whitespace bytes between two JSON tokens and after the value;
//! - numbers have at most 16 integer digits, 16 fraction digits and 2 exponent digits
//!   (every output parses as a finite double); `integer` has neither fraction nor exponent;
//! - object keys and string values are written as plain UTF-8 with JSON's escapes;
//!   `enum`/`const` values exactly as serde_json serialises them (compact);
//! - free-form values (`{}`, `Constraint::Json`) nest at most 32 deep, schema values 128.

mod automaton;
mod constrained;
mod error;
mod params;
mod sampler;
mod schema;
mod stop;
mod vocab;

pub use constrained::{ConstrainedDecoder, Constraint};
pub use error::Error;
pub use params::SamplingParams;
pub use sampler::{Sampled, Sampler, TokenLogprob};
pub use stop::{StopMatcher, Stopped};
pub use vocab::Vocabulary;
