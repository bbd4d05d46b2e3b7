//! Small NEON building blocks shared by the aarch64 kernels, and [`I8Dot`], the 8-bit
//! dot product that Cortex-A76-class cores (the Raspberry Pi 5) do with one `sdot`
//! instruction and older cores (Cortex-A53/A72) with widening multiplies.
//!
//! Everything here is `#[inline(always)] unsafe fn` without `#[target_feature]` (the
//! layout of memchr's `vector.rs`, as in the x86_64 module): the functions are only ever
//! inlined into the entry points of [`super`], and the `dotprod` entry points are the
//! `#[target_feature(enable = "dotprod")]` functions that give `sdot` its feature. NEON
//! itself is part of the aarch64 baseline, so the plain-NEON entry points need no
//! feature at all. The contract of every function: it is inlined into an entry point
//! compiled with the features its instructions need (`dotprod` for [`Sdot`]), and
//! pointers are valid for the bytes the function says it reads or writes.
//!
//! Instructions that stable Rust 1.95 has no intrinsic for are written as inline `asm!`:
//! `sdot` (`vdotq_s32` is unstable, feature `stdarch_neon_dotprod`) and the f16
//! conversions `fcvtl`/`fcvtn`/`fcvt` (the intrinsics need the unstable `f16` type).
//! The conversions are base Armv8-A AdvSIMD, present on every aarch64 core (FEAT_FP16 is
//! only needed for f16 *arithmetic*), so the Cortex-A53 fallback uses them too.

use std::arch::aarch64::*;
use std::arch::asm;

/// An exact dot product of signed bytes into four i32 lanes: the sum of the four lanes
/// of `dot(acc, a, b)` is `Σ acc + Σ_i a[i] * b[i]`. Which products land in which lane
/// differs between the implementations, so callers only ever use the lane *total* of a
/// result (per block or per sub-block), never single lanes.
///
/// # Safety
/// The CPU must have the features of the implementation ([`Sdot`]: `dotprod`), i.e.
/// `dot` must be inlined into an entry point compiled with them.
pub(crate) trait I8Dot {
    /// `acc` plus the 16 products `a[i] * b[i]`, spread over the four lanes.
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t;
}

/// Armv8.2 dot product (FEAT_DotProd): `sdot` adds four byte products per lane in one
/// instruction. Cortex-A55/A75/A76 and later (Raspberry Pi 5).
///
/// The `asm!` is in the `#[inline(always)]` method itself, so it is assembled as part of
/// the function it is inlined into: a call from anywhere but a `dotprod` entry point (a
/// closure, say, which is a function of its own) fails to build with "instruction
/// requires: dotprod" instead of silently becoming a slow out-of-line call.
#[derive(Debug)]
pub(crate) struct Sdot;

/// Plain Armv8.0 NEON (Cortex-A53/A72, Raspberry Pi 3/4): `smull`/`smull2` multiply
/// bytes into i16 products (at most 128 · 128 = 16384, no overflow), `saddlp` and
/// `addp` add them in fours into the i32 lanes.
#[derive(Debug)]
pub(crate) struct Widen;

impl I8Dot for Sdot {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `sdot` only reads the three registers and writes `acc`; the caller
        // guarantees the CPU has FEAT_DotProd (trait contract), and the enclosing entry
        // point is compiled with `dotprod`, which lets the assembler accept it.
        unsafe {
            asm!(
                "sdot {acc:v}.4s, {a:v}.16b, {b:v}.16b",
                acc = inout(vreg) acc,
                a = in(vreg) a,
                b = in(vreg) b,
                options(pure, nomem, nostack, preserves_flags)
            );
        }
        acc
    }
}

impl I8Dot for Widen {
    #[inline(always)]
    unsafe fn dot(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
        // SAFETY: baseline NEON register operations only.
        // Lane `i` gets the products of bytes `4i .. 4i+4`, as `sdot` (and x86's
        // `vpdpbusd`) group them: the 32-value kernels need ggml's lane sums.
        unsafe {
            let low = vpaddlq_s16(vmull_s8(vget_low_s8(a), vget_low_s8(b)));
            let high = vpaddlq_s16(vmull_high_s8(a, b));
            vaddq_s32(acc, vpaddq_s32(low, high))
        }
    }
}

/// Four f16 values (as bits) widened to f32 (exact).
#[inline(always)]
pub(crate) unsafe fn f16x4_to_f32(h: uint16x4_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl` is base AdvSIMD and only reads and writes registers.
    unsafe {
        asm!(
            "fcvtl {out:v}.4s, {h:v}.4h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// The upper four f16 values of `h` widened to f32 (exact).
#[inline(always)]
pub(crate) unsafe fn f16x4_high_to_f32(h: uint16x8_t) -> float32x4_t {
    let out: float32x4_t;
    // SAFETY: `fcvtl2` is base AdvSIMD and only reads and writes registers.
    unsafe {
        asm!(
            "fcvtl2 {out:v}.4s, {h:v}.8h",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Four f32 values rounded to f16 bits. `fcvtn` rounds with the FPCR rounding mode,
/// which is round-to-nearest-even on Linux and never changed by Rust code — the rounding
/// of `half::f16::from_f32` and of ggml's `GGML_FP32_TO_FP16`. (NaN payloads may differ
/// from the software conversion's; a NaN stays a NaN.)
#[inline(always)]
pub(crate) unsafe fn f32_to_f16x4(v: float32x4_t) -> uint16x4_t {
    let out: uint16x4_t;
    // SAFETY: `fcvtn` is base AdvSIMD and only reads and writes registers (and the
    // FPCR rounding mode, which it only reads).
    unsafe {
        asm!(
            "fcvtn {out:v}.4h, {v:v}.4s",
            out = lateout(vreg) out,
            v = in(vreg) v,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// Eight f32 values (`low` then `high`) rounded to f16 bits, as [`f32_to_f16x4`].
#[inline(always)]
pub(crate) unsafe fn f32x8_to_f16(low: float32x4_t, high: float32x4_t) -> uint16x8_t {
    // SAFETY: `fcvtn2` writes the upper half and keeps the lower one, which is why
    // `out` is an in-out operand; register operations only.
    unsafe {
        let mut out = vcombine_u16(f32_to_f16x4(low), vdup_n_u16(0));
        asm!(
            "fcvtn2 {out:v}.8h, {v:v}.4s",
            out = inout(vreg) out,
            v = in(vreg) high,
            options(pure, nomem, nostack, preserves_flags)
        );
        out
    }
}

/// One f16 value (as bits) as f32 (exact) — the block scales of ggml's formats. The
/// scalar `F16Le::to_f32` decodes the bits in software; this is one instruction.
#[inline(always)]
pub(crate) unsafe fn f16_to_f32(bits: [u8; 2]) -> f32 {
    let h = u16::from_le_bytes(bits) as i16;
    let out: f32;
    // SAFETY: `fcvt` is base floating point and only reads and writes registers.
    unsafe {
        asm!(
            "fcvt {out:s}, {h:h}",
            out = lateout(vreg) out,
            h = in(vreg) h,
            options(pure, nomem, nostack, preserves_flags)
        );
    }
    out
}

/// 16 bytes from `p` (any alignment).
#[inline(always)]
pub(crate) unsafe fn load_u8(p: *const u8) -> uint8x16_t {
    // SAFETY: the caller guarantees 16 readable bytes; byte loads need no alignment.
    unsafe { vld1q_u8(p) }
}

/// 16 signed bytes from `p` (any alignment).
#[inline(always)]
pub(crate) unsafe fn load_i8(p: *const i8) -> int8x16_t {
    // SAFETY: the caller guarantees 16 readable bytes; byte loads need no alignment.
    unsafe { vld1q_s8(p) }
}

/// Four little-endian f32 values from `p`, a byte pointer with any alignment (rows in a
/// memory-mapped file are not aligned to 4).
#[inline(always)]
pub(crate) unsafe fn load_f32_bytes(p: *const u8) -> float32x4_t {
    // SAFETY: the caller guarantees 16 readable bytes; a byte load has no alignment
    // requirement, and aarch64 Linux is little-endian, so the reinterpretation gives
    // the little-endian values.
    unsafe { vreinterpretq_f32_u8(vld1q_u8(p)) }
}

/// Eight little-endian f16 values (as bits) from `p`, a byte pointer with any
/// alignment.
#[inline(always)]
pub(crate) unsafe fn load_f16_bytes(p: *const u8) -> uint16x8_t {
    // SAFETY: as in `load_f32_bytes`.
    unsafe { vreinterpretq_u16_u8(vld1q_u8(p)) }
}

/// Bytes `0xFF` where bit `j` of `bits` is set, `0x00` elsewhere, for `j` in `0..16`:
/// the fifth bits of 16 values of a Q5_0 / Q5_1 block, as a byte mask.
#[inline(always)]
pub(crate) unsafe fn bit_mask_16(bits: u16) -> uint8x16_t {
    const LANE_BITS: [u8; 16] = [1, 2, 4, 8, 16, 32, 64, 128, 1, 2, 4, 8, 16, 32, 64, 128];
    // SAFETY: register operations; `LANE_BITS` is 16 bytes.
    unsafe {
        let [low, high] = bits.to_le_bytes();
        let spread = vcombine_u8(vdup_n_u8(low), vdup_n_u8(high));
        vtstq_u8(spread, vld1q_u8(LANE_BITS.as_ptr()))
    }
}
