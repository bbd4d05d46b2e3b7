//! Run-time dispatch between the kernel paths: one function [`Table`] per path (the
//! portable scalar reference, AVX2, AVX-512, AVX-512 VNNI, …), the one this process uses
//! chosen once, and a [`Kernels`] handle that calls through a table.
//!
//! The pattern is memchr's (`src/arch/`, `src/vector.rs`): the portable code is always
//! compiled; SIMD code lives in one module per ISA, compiled for its target features with
//! `#[target_feature]` (never only at compile time, so a default x86_64 build still uses
//! AVX2 or AVX-512 where the CPU has them); the CPU is detected once
//! ([`crate::cpu_features`]), `TERN_KERNELS` may force a path ([`crate::cpu`] documents
//! the values), and the table is cached in a `OnceLock` and logged once.
//!
//! Soundness: the SIMD functions in a table are `#[target_feature]` functions, stored as
//! `unsafe fn` pointers. [`table`] hands out a path's table only after checking that the
//! CPU has every feature the path is compiled for ([`KernelPath::is_supported_by`]), and
//! a [`Kernels`] can only be built from such a table. So every call through a
//! `Kernels` happens on a CPU that has the features, which is the whole safety contract
//! of those functions; each call site says so in its `SAFETY` comment.
//!
//! Tests and benchmarks use [`Kernels::for_path`] / [`Kernels::available`] to run every
//! path the machine has (AVX2 on an AVX-512 machine too), each against the scalar one.

#[cfg(target_arch = "aarch64")]
pub(crate) mod aarch64;
#[cfg(target_arch = "x86_64")]
pub(crate) mod x86_64;

use std::fmt;
use std::sync::OnceLock;

use half::f16;
use tern_gguf::GgmlType;

use crate::cpu::{KernelPath, cpu_features, kernel_path};
use crate::quant::{QuantizeFn, RowKernels};

/// `out = x / sqrt(mean(x²) + eps) * weight` (see [`crate::rms_norm`]).
pub(crate) type RmsNormFn = unsafe fn(&[f32], &[f32], f32, &mut [f32]);
/// [`RmsNormFn`] in place.
pub(crate) type RmsNormInPlaceFn = unsafe fn(&mut [f32], &[f32], f32);
/// An op over one slice in place.
pub(crate) type InPlaceFn = unsafe fn(&mut [f32]);
/// `out = f(x)` elementwise.
pub(crate) type UnaryFn = unsafe fn(&[f32], &mut [f32]);
/// `out = f(gate) * up` elementwise.
pub(crate) type GatedFn = unsafe fn(&[f32], &[f32], &mut [f32]);
/// A dot product of two f16 vectors.
pub(crate) type DotF16Fn = unsafe fn(&[f16], &[f16]) -> f32;
/// `y = f16(x * v + y)` (ggml's `ggml_vec_mad_f16`).
pub(crate) type MadF16Fn = unsafe fn(&mut [f16], &[f16], f32);
/// `y = f16(y * v)` (ggml's `ggml_vec_scale_f16`).
pub(crate) type ScaleF16Fn = unsafe fn(&mut [f16], f32);
/// f32 → f16 slice conversion.
pub(crate) type ToF16Fn = unsafe fn(&[f32], &mut [f16]);
/// f16 → f32 slice conversion.
pub(crate) type FromF16Fn = unsafe fn(&[f16], &mut [f32]);

/// The elementwise and row-wise ops of one path. Callers check the slice lengths; the
/// functions check them again where a mismatch could make them read out of bounds.
#[derive(Clone, Copy)]
pub(crate) struct OpTable {
    pub rms_norm: RmsNormFn,
    pub rms_norm_in_place: RmsNormInPlaceFn,
    pub softmax_in_place: InPlaceFn,
    pub silu: UnaryFn,
    pub swiglu: GatedFn,
    pub gelu_tanh: UnaryFn,
    pub geglu_tanh: GatedFn,
    pub vec_dot_f16: DotF16Fn,
    pub vec_dot_f16_ggml: DotF16Fn,
    pub vec_mad_f16: MadF16Fn,
    pub vec_scale_f16: ScaleF16Fn,
    pub f32_to_f16: ToF16Fn,
    pub f16_to_f32: FromF16Fn,
}

/// Everything one kernel path provides.
pub(crate) struct Table {
    /// Which path this is.
    pub path: KernelPath,
    /// Row kernels (dot product, matrix-vector, batched matmul) for a weight type.
    pub weights: fn(GgmlType) -> Option<RowKernels>,
    /// The activation quantizers (Q8_0, Q8_1, Q8_K); other types use the scalar ones.
    pub quantize_q8_0: QuantizeFn,
    pub quantize_q8_1: QuantizeFn,
    pub quantize_q8_k: QuantizeFn,
    /// The elementwise ops.
    pub ops: OpTable,
    /// The KV-cache attention loops.
    pub attention: crate::attention::AttentionTable,
    /// Optional extensions this table uses beyond its path's features (for logs).
    pub extras: fn() -> &'static str,
}

fn no_extras() -> &'static str {
    ""
}

/// The scalar reference: the portable code of [`crate::quant`] and [`crate::ops`].
static SCALAR: Table = Table {
    path: KernelPath::Scalar,
    weights: crate::quant::scalar_row_kernels,
    quantize_q8_0: crate::quant::scalar_quantize_q8_0,
    quantize_q8_1: crate::quant::scalar_quantize_q8_1,
    quantize_q8_k: crate::quant::scalar_quantize_q8_k,
    ops: crate::ops::SCALAR_OPS,
    attention: crate::attention::SCALAR_ATTENTION,
    extras: no_extras,
};

/// The table of `path`, if this CPU and build can run it.
pub(crate) fn table(path: KernelPath) -> Option<&'static Table> {
    if !path.is_supported_by(cpu_features()) {
        return None;
    }
    match path {
        KernelPath::Scalar => Some(&SCALAR),
        #[cfg(target_arch = "x86_64")]
        KernelPath::Avx2 | KernelPath::Avx512 | KernelPath::Avx512Vnni => x86_64::table(path),
        #[cfg(target_arch = "aarch64")]
        KernelPath::Neon | KernelPath::NeonDotprod => aarch64::table(path),
        #[allow(unreachable_patterns)]
        _ => None,
    }
}

/// A handle on one path's kernels. [`Kernels::current`] is the one the free functions
/// of this crate ([`crate::matmul`], [`crate::rms_norm`], …) use; tests and benchmarks
/// build one per available path to compare them.
#[derive(Clone, Copy)]
pub struct Kernels {
    pub(crate) table: &'static Table,
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("path", &self.table.path)
            .field("extras", &(self.table.extras)())
            .finish()
    }
}

impl Kernels {
    /// The kernels of this process: the path chosen by [`crate::kernel_path`] (CPU
    /// detection and `TERN_KERNELS`), looked up once and logged at debug level.
    #[inline]
    pub fn current() -> Kernels {
        static CURRENT: OnceLock<Kernels> = OnceLock::new();
        *CURRENT.get_or_init(|| {
            let path = kernel_path();
            let kernels = Kernels::for_path(path).unwrap_or(Kernels { table: &SCALAR });
            tracing::debug!(
                kernel_path = %kernels.path(),
                extras = (kernels.table.extras)(),
                "kernel table selected"
            );
            kernels
        })
    }

    /// The kernels of `path`, or `None` when this CPU or build cannot run them.
    pub fn for_path(path: KernelPath) -> Option<Kernels> {
        table(path).map(|table| Kernels { table })
    }

    /// The scalar reference kernels (always available).
    pub fn scalar() -> Kernels {
        Kernels { table: &SCALAR }
    }

    /// Every path this CPU and build can run, the scalar reference first.
    pub fn available() -> Vec<Kernels> {
        KernelPath::ALL
            .into_iter()
            .filter_map(Kernels::for_path)
            .collect()
    }

    /// Which path these kernels are.
    pub fn path(&self) -> KernelPath {
        self.table.path
    }

    /// Optional CPU extensions these kernels use beyond their path's baseline, e.g.
    /// `"avx512bf16"` (empty when none).
    pub fn extras(&self) -> &'static str {
        (self.table.extras)()
    }

    /// The row kernels for weights of type `ty`.
    pub(crate) fn row_kernels(&self, ty: GgmlType) -> Option<RowKernels> {
        (self.table.weights)(ty)
    }

    /// The quantizer this path uses for type `ty`: its SIMD activation quantizers, the
    /// scalar reference for everything else.
    pub(crate) fn quantizer(&self, ty: GgmlType) -> Option<QuantizeFn> {
        match ty {
            GgmlType::Q8_0 => Some(self.table.quantize_q8_0),
            GgmlType::Q8_1 => Some(self.table.quantize_q8_1),
            GgmlType::Q8_K => Some(self.table.quantize_q8_k),
            _ => crate::quant::quantizer(ty),
        }
    }
}
