//! tern-kernels: the numeric kernels of tern — block formats, dequantization, dot
//! products and matmul over quantized weights, and the elementwise ops of a transformer.
//!
//! Every kernel has a portable scalar version (the reference, and the fallback on CPUs
//! without SIMD); SIMD versions per ISA are chosen once at run time ([`cpu::kernel_path`]).

pub mod cpu;

pub use cpu::{CpuFeatures, CpuInfo, KernelPath, cpu_features, cpu_info, kernel_path};
pub mod pool;
