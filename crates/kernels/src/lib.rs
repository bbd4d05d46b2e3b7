//! tern-kernels: the numeric kernels of tern — ggml's block formats, dequantization,
//! quantization and dot products over them, the matmul and embedding lookup the engine
//! calls, and the elementwise ops of a transformer (RMSNorm, RoPE, softmax, SiLU, GELU).
//!
//! The arithmetic follows llama.cpp's CPU backend (ggml-quants.c, ggml-cpu/quants.c,
//! ops.cpp, vec.h) so that tern's logits match llama.cpp's as closely as the summation
//! order allows: activations are quantized to the same 8-bit formats before the dot
//! products, and the scalar code keeps ggml's reference order of operations.
//!
//! Layout: [`blocks`] (the block structs), [`quant`] (one module per format: the portable
//! scalar reference, which is also the fallback on CPUs without SIMD), [`mod@matmul`] (the
//! typed API, single- and multi-threaded), [`ops`] and [`mod@rope`], [`cpu`] (run-time CPU
//! detection and the choice of [`KernelPath`]), [`mod@attention`] (the exact inner loops
//! of the engine's KV-cache attention), [`arch`] (the per-path function tables
//! and the SIMD kernels, one module per ISA, chosen once per process; [`Kernels`] calls
//! through one table, which is how tests compare every path with the scalar one).
//!
//! Besides the mmap boundary of tern-gguf, this is the only crate of tern with `unsafe`
//! code: the block views in [`blocks`], the thread pool, and the SIMD kernels.

pub mod arch;
pub mod attention;
pub mod blocks;
pub mod cpu;
pub mod error;
pub mod matmul;
pub mod ops;
pub mod pool;
pub mod quant;
pub mod rope;

pub use arch::Kernels;
pub use cpu::{CpuFeatures, CpuInfo, KernelPath, cpu_features, cpu_info, kernel_path};
pub use error::KernelError;
pub use matmul::{QuantizedActivations, WeightMatrix, get_rows, matmul, matmul_with_pool};
pub use ops::{
    f16_to_f32_slice, f32_to_f16_slice, geglu_tanh, gelu_tanh, rms_norm, rms_norm_in_place, silu,
    softmax_in_place, swiglu, vec_dot_f16, vec_dot_f16_ggml, vec_mad_f16, vec_scale_f16,
};
pub use quant::{
    dequantize_row, quantize_activation_row, quantize_row, supported_weight_type, vec_dot,
    vec_dot_type,
};
pub use rope::{RopeOrdering, RopeParams, rope, rope_apply, rope_cache_init};
