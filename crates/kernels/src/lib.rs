//! tern-kernels (being built).
