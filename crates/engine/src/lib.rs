//! tern-engine (being built).
