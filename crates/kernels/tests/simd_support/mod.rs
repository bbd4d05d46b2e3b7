//! Shared helpers of the SIMD tests (`tests/simd_*.rs`): random rows of every block
//! format, activation rows, unaligned copies, and the list of SIMD paths to test.
//!
//! Two kinds of data:
//! - *random*: random quants and scales of realistic size; SIMD and scalar results are
//!   compared within a named bound, since they sum in different orders;
//! - *exact*: scales of ±1 or ±2 and activation quants in -1..=1, so every product and
//!   every partial sum is a small integer — then every summation order gives the same
//!   f32, so SIMD and scalar must agree bit for bit (and with the f64 dot of the
//!   dequantized rows, which the tests check first to make sure the premise holds). That
//!   is the test that catches a wrong nibble, bit, sub-scale or block.

#![allow(dead_code)]

use half::f16;
use tern_gguf::GgmlType;
use tern_kernels::{KernelPath, Kernels};

/// xorshift64*: deterministic, no dependency.
#[derive(Clone, Debug)]
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 56) as u8
    }
    /// Uniform in `lo..hi`.
    pub fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next_u64() % (hi - lo) as u64) as i64
    }
    /// Uniform in [-1, 1).
    pub fn unit(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
    pub fn sign(&mut self) -> f32 {
        if self.next_u64() & 1 == 0 { 1.0 } else { -1.0 }
    }
}

/// The SIMD paths to test: every non-scalar path of this build, with whether this CPU
/// can run it.
pub fn simd_paths() -> Vec<KernelPath> {
    KernelPath::ALL
        .into_iter()
        .filter(|&p| p != KernelPath::Scalar)
        .collect()
}

/// The kernels of `path`, or `None` (with a note on stderr) when this CPU lacks it.
pub fn kernels_or_skip(path: KernelPath) -> Option<Kernels> {
    let k = Kernels::for_path(path);
    if k.is_none() {
        eprintln!("skipped: this CPU cannot run the {path} kernels");
    }
    k
}

/// Copies `bytes` to a fresh buffer at byte offset `offset`, so kernels read from an
/// address with any alignment. Returns the buffer; the data is `buf[offset..]`.
pub fn unaligned(bytes: &[u8], offset: usize) -> Vec<u8> {
    let mut buf = vec![0xA5u8; offset + bytes.len()];
    buf[offset..].copy_from_slice(bytes);
    buf
}

fn put_f16(bytes: &mut [u8], at: usize, v: f32) {
    bytes[at..at + 2].copy_from_slice(&f16::from_f32(v).to_bits().to_le_bytes());
}

/// Offsets of the f16 scale fields of one block of `ty`.
fn scale_offsets(ty: GgmlType) -> &'static [usize] {
    use GgmlType as T;
    match ty {
        T::Q4_0 | T::Q5_0 | T::Q8_0 => &[0],
        T::Q4_1 | T::Q5_1 | T::Q4_K | T::Q5_K => &[0, 2],
        T::Q2_K => &[80, 82],
        T::Q3_K => &[108],
        T::Q6_K => &[208],
        _ => &[],
    }
}

/// A random weight row of `blocks` blocks of `ty`. `exact` picks power-of-two scales
/// (and, for the float types, small integers) so dot products are exact in f32.
pub fn weight_row(ty: GgmlType, blocks: usize, rng: &mut XorShift, exact: bool) -> Vec<u8> {
    use GgmlType as T;
    let n = blocks * ty.block_size();
    match ty {
        T::F32 => (0..n)
            .flat_map(|_| {
                let v = if exact {
                    rng.range(-8, 9) as f32
                } else {
                    rng.unit() * 2.0
                };
                v.to_le_bytes()
            })
            .collect(),
        T::F16 => (0..n)
            .flat_map(|_| {
                let v = if exact {
                    rng.range(-8, 9) as f32
                } else {
                    rng.unit() * 2.0
                };
                f16::from_f32(v).to_bits().to_le_bytes()
            })
            .collect(),
        T::BF16 => (0..n)
            .flat_map(|_| {
                let v = if exact {
                    rng.range(-8, 9) as f32
                } else {
                    rng.unit() * 2.0
                };
                ((v.to_bits() >> 16) as u16).to_le_bytes()
            })
            .collect(),
        _ => {
            let size = ty.type_size();
            let mut bytes: Vec<u8> = (0..blocks * size).map(|_| rng.byte()).collect();
            for b in 0..blocks {
                for &off in scale_offsets(ty) {
                    let v = if exact {
                        rng.sign() * rng.range(1, 3) as f32
                    } else {
                        rng.sign() * (0.001 + 0.02 * rng.unit().abs())
                    };
                    put_f16(&mut bytes, b * size + off, v);
                }
            }
            bytes
        }
    }
}

/// A random activation row for weights of type `ty`: random values quantized by the
/// scalar reference (`exact == false`), or blocks built directly with scales of 1 or 2
/// and quants in -1..=1 (`exact == true`).
pub fn activation_row(ty: GgmlType, blocks: usize, rng: &mut XorShift, exact: bool) -> Vec<u8> {
    use GgmlType as T;
    let act = tern_kernels::vec_dot_type(ty).expect("supported weight type");
    let n = blocks * ty.block_size();
    if !exact {
        let x: Vec<f32> = (0..n).map(|_| rng.unit() * 3.0).collect();
        let mut out = vec![0u8; n / act.block_size() * act.type_size()];
        Kernels::scalar()
            .quantize_activation_row(act, &x, &mut out)
            .expect("quantize");
        return out;
    }
    match act {
        T::F32 | T::F16 | T::BF16 => weight_row(act, n / act.block_size(), rng, true),
        T::Q8_0 | T::Q8_1 => {
            let mut out = Vec::new();
            for _ in 0..n / 32 {
                let d = rng.range(1, 3) as f32;
                let qs: Vec<i8> = (0..32).map(|_| rng.range(-1, 2) as i8).collect();
                out.extend(f16::from_f32(d).to_bits().to_le_bytes());
                if act == T::Q8_1 {
                    let sum: i32 = qs.iter().map(|&q| q as i32).sum();
                    out.extend(f16::from_f32(d * sum as f32).to_bits().to_le_bytes());
                }
                out.extend(qs.iter().map(|&q| q as u8));
            }
            out
        }
        T::Q8_K => {
            let mut out = Vec::new();
            for _ in 0..n / 256 {
                let d = rng.range(1, 3) as f32;
                let qs: Vec<i8> = (0..256).map(|_| rng.range(-1, 2) as i8).collect();
                out.extend(d.to_le_bytes());
                out.extend(qs.iter().map(|&q| q as u8));
                for g in qs.chunks(16) {
                    let s: i32 = g.iter().map(|&q| q as i32).sum();
                    out.extend((s as i16).to_le_bytes());
                }
            }
            out
        }
        other => panic!("no activation generator for {other}"),
    }
}

/// `Σ|w_i| · |a_i|` and `max|w_i| · Σ|a_i|` of a weight and an activation row, from the
/// scalar dequantizers: together a bound on the magnitude of every partial sum a dot
/// product of the two can form (the second covers the minimum terms of Q4_1/Q5_1/K-quants).
pub fn magnitude(ty: GgmlType, w: &[u8], a: &[u8], n: usize) -> f64 {
    let act = tern_kernels::vec_dot_type(ty).expect("supported");
    let mut wf = vec![0.0f32; n];
    let mut af = vec![0.0f32; n];
    tern_kernels::dequantize_row(ty, w, &mut wf).expect("dequantize weights");
    tern_kernels::dequantize_row(act, a, &mut af).expect("dequantize activations");
    let wmax = wf.iter().fold(0.0f64, |m, &v| m.max(v.abs() as f64));
    let sum_abs: f64 = wf
        .iter()
        .zip(&af)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum();
    let a_abs: f64 = af.iter().map(|&y| y.abs() as f64).sum();
    sum_abs + wmax * a_abs
}

/// Random f32 values in [-scale, scale].
pub fn values(n: usize, rng: &mut XorShift, scale: f32) -> Vec<f32> {
    (0..n).map(|_| rng.unit() * scale).collect()
}

/// The weight types with kernels, each with the block counts worth testing.
pub const WEIGHT_TYPES: [GgmlType; 13] = [
    GgmlType::Q4_0,
    GgmlType::Q4_1,
    GgmlType::Q5_0,
    GgmlType::Q5_1,
    GgmlType::Q8_0,
    GgmlType::Q2_K,
    GgmlType::Q3_K,
    GgmlType::Q4_K,
    GgmlType::Q5_K,
    GgmlType::Q6_K,
    GgmlType::F16,
    GgmlType::BF16,
    GgmlType::F32,
];
