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
