//! tern-tokenizer (being built).
