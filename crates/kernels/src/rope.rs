//! Rotary position embedding as ggml's `rope_ext` computes it (ggml-cpu/ops.cpp
//! `ggml_compute_forward_rope_flt`, `ggml_rope_cache_init`, `rope_yarn`; ggml.c
//! `ggml_rope_yarn_corr_dims`).
//!
//! Pair `i` (of `n_dims / 2`) is rotated by `position * base^(-2i / n_dims)`, divided by
//! a per-pair frequency factor (LongRoPE) and scaled by `freq_scale`, blended with the
//! unscaled angle by YaRN's ramp when `ext_factor != 0`. The angle is computed exactly as
//! ggml does — `theta` multiplied by `base^(-2/n_dims)` once per pair in f32, not a
//! `powf` per pair — because the last bits of the angle decide the last bits of the
//! logits. Dimensions from `n_dims` to the head size are left as they are (partial
//! rotary).

/// Which dimensions form a rotated pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RopeOrdering {
    /// Adjacent dimensions `(2i, 2i + 1)` — ggml's `GGML_ROPE_TYPE_NORMAL`, used by
    /// llama-family models converted by llama.cpp (which permutes Q/K to match).
    Normal,
    /// Dimensions `(i, i + n_dims / 2)` — `GGML_ROPE_TYPE_NEOX`, used by Gemma, Qwen,
    /// Phi-3 and most recent architectures.
    Neox,
}

/// Parameters of one RoPE application (ggml's `rope_ext` arguments).
#[derive(Clone, Copy, Debug)]
pub struct RopeParams<'a> {
    /// Pair layout.
    pub ordering: RopeOrdering,
    /// Number of rotated dimensions per head (even, at most the head size).
    pub n_dims: usize,
    /// Frequency base (`rope.freq_base`).
    pub freq_base: f32,
    /// Position scale for linear / YaRN interpolation (1 / `rope.scaling.factor`).
    pub freq_scale: f32,
    /// Per-pair frequency divisors (`rope_freqs` tensor, LongRoPE); at least `n_dims / 2`.
    pub freq_factors: Option<&'a [f32]>,
    /// YaRN extrapolation mix (0 disables YaRN).
    pub ext_factor: f32,
    /// Magnitude scale applied to cos and sin.
    pub attn_factor: f32,
    /// YaRN low correction dimension parameter.
    pub beta_fast: f32,
    /// YaRN high correction dimension parameter.
    pub beta_slow: f32,
    /// Training context length (YaRN's correction dimensions depend on it).
    pub n_ctx_orig: usize,
}

impl RopeParams<'static> {
    /// Plain RoPE: `freq_scale` 1, no YaRN, no frequency factors, llama.cpp's default
    /// YaRN betas (32, 1).
    pub fn new(ordering: RopeOrdering, n_dims: usize, freq_base: f32) -> Self {
        RopeParams {
            ordering,
            n_dims,
            freq_base,
            freq_scale: 1.0,
            freq_factors: None,
            ext_factor: 0.0,
            attn_factor: 1.0,
            beta_fast: 32.0,
            beta_slow: 1.0,
            n_ctx_orig: 0,
        }
    }
}

impl RopeParams<'_> {
    fn validate(&self, head_dim: usize) {
        assert!(
            self.n_dims.is_multiple_of(2) && self.n_dims <= head_dim,
            "rope: n_dims {} must be even and at most the head size {head_dim}",
            self.n_dims
        );
        if let Some(f) = self.freq_factors {
            assert!(
                f.len() >= self.n_dims / 2,
                "rope: {} frequency factors for {} rotated dimensions",
                f.len(),
                self.n_dims
            );
        }
    }

    /// YaRN's correction range (ggml's `ggml_rope_yarn_corr_dims`).
    fn corr_dims(&self) -> [f32; 2] {
        let n_dims = self.n_dims as f32;
        let corr_dim = |n_rot: f32| {
            n_dims * (self.n_ctx_orig as f32 / (n_rot * 2.0 * std::f32::consts::PI)).ln()
                / (2.0 * self.freq_base.ln())
        };
        let start = corr_dim(self.beta_fast).floor();
        let end = corr_dim(self.beta_slow).ceil();
        [start.max(0.0), end.min(n_dims - 1.0)]
    }
}

/// The (cos, sin) of every rotated pair for one position, computed pair by pair in
/// ggml's order; `f` is called with (pair index, cos, sin).
fn for_each_angle(p: &RopeParams<'_>, position: i32, mut f: impl FnMut(usize, f32, f32)) {
    let theta_scale = p.freq_base.powf(-2.0 / p.n_dims as f32);
    let corr_dims = p.corr_dims();
    let mut theta = position as f32;
    for pair in 0..p.n_dims / 2 {
        let i0 = 2 * pair;
        let factor = p.freq_factors.map_or(1.0, |ff| ff[pair]);
        let theta_extrap = theta / factor;
        // rope_yarn
        let theta_interp = p.freq_scale * theta_extrap;
        let mut angle = theta_interp;
        let mut mscale = p.attn_factor;
        if p.ext_factor != 0.0 {
            let y = ((i0 / 2) as f32 - corr_dims[0]) / (corr_dims[1] - corr_dims[0]).max(0.001);
            let ramp_mix = (1.0 - y.clamp(0.0, 1.0)) * p.ext_factor;
            angle = theta_interp * (1.0 - ramp_mix) + theta_extrap * ramp_mix;
            mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale).ln();
        }
        f(pair, angle.cos() * mscale, angle.sin() * mscale);
        theta *= theta_scale;
    }
}

/// Fills `cache` with `(cos, sin)` of every rotated pair at `position` (`cache[2i]`,
/// `cache[2i + 1]`; length `n_dims`), as ggml's `ggml_rope_cache_init`. Compute it once
/// per token and apply it to the Q and K heads with [`rope_apply`].
///
/// # Panics
/// If `cache.len() != p.n_dims` or `n_dims` is odd, or there are too few frequency
/// factors.
pub fn rope_cache_init(p: &RopeParams<'_>, position: i32, cache: &mut [f32]) {
    p.validate(p.n_dims);
    assert_eq!(cache.len(), p.n_dims, "rope: cache length");
    for_each_angle(p, position, |pair, cos, sin| {
        cache[2 * pair] = cos;
        cache[2 * pair + 1] = sin;
    });
}

/// Rotates each head of `x` (heads of `head_dim` values, one after another) with the
/// angles in `cache` (from [`rope_cache_init`]; its length is the rotated dimension
/// count).
///
/// # Panics
/// If `x.len()` is not a multiple of `head_dim`, or `cache` is longer than a head or of
/// odd length.
pub fn rope_apply(x: &mut [f32], head_dim: usize, ordering: RopeOrdering, cache: &[f32]) {
    let n_dims = cache.len();
    assert!(
        n_dims.is_multiple_of(2) && n_dims <= head_dim,
        "rope: {n_dims} rotated dimensions for a head of {head_dim}"
    );
    assert!(
        head_dim > 0 && x.len().is_multiple_of(head_dim),
        "rope: {} values are not whole heads of {head_dim}",
        x.len()
    );
    for head in x.chunks_exact_mut(head_dim) {
        for pair in 0..n_dims / 2 {
            rotate(
                head,
                ordering,
                n_dims,
                pair,
                cache[2 * pair],
                cache[2 * pair + 1],
            );
        }
    }
}

/// RoPE in place on every head of `x` at `position`, computing the angles once and
/// applying them to all heads (no allocation).
///
/// # Panics
/// If `x.len()` is not a multiple of `head_dim`, `n_dims` is odd or larger than
/// `head_dim`, or there are too few frequency factors.
pub fn rope(x: &mut [f32], head_dim: usize, position: i32, p: &RopeParams<'_>) {
    p.validate(head_dim);
    assert!(
        head_dim > 0 && x.len().is_multiple_of(head_dim),
        "rope: {} values are not whole heads of {head_dim}",
        x.len()
    );
    for_each_angle(p, position, |pair, cos, sin| {
        for head in x.chunks_exact_mut(head_dim) {
            rotate(head, p.ordering, p.n_dims, pair, cos, sin);
        }
    });
}

#[inline]
fn rotate(
    head: &mut [f32],
    ordering: RopeOrdering,
    n_dims: usize,
    pair: usize,
    cos: f32,
    sin: f32,
) {
    let (a, b) = match ordering {
        RopeOrdering::Normal => (2 * pair, 2 * pair + 1),
        RopeOrdering::Neox => (pair, pair + n_dims / 2),
    };
    let (x0, x1) = (head[a], head[b]);
    // As the goldens' build computes ggml's `rotate_pairs` (ggml-cpu/ops.cpp): GCC
    // contracts `x0*cos - x1*sin` and `x0*sin + x1*cos` into fused multiply-adds of the
    // first product with the second one rounded (measured on llama.cpp's RoPE outputs:
    // every element of SmolLM2's Q and K agrees this way, and only this way).
    head[a] = x0.mul_add(cos, -(x1 * sin));
    head[b] = x0.mul_add(sin, x1 * cos);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: u64) -> Vec<f32> {
        let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) as f32
            })
            .collect()
    }

    /// RoPE in f64 straight from the definition (YaRN included), independent of the
    /// f32 angle recurrence.
    fn rope64(x: &[f32], head_dim: usize, position: i32, p: &RopeParams<'_>) -> Vec<f64> {
        let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
        let n_dims = p.n_dims as f64;
        let corr = |beta: f64| {
            n_dims * (p.n_ctx_orig as f64 / (beta * 2.0 * std::f64::consts::PI)).ln()
                / (2.0 * (p.freq_base as f64).ln())
        };
        let low = corr(p.beta_fast as f64).floor().max(0.0);
        let high = corr(p.beta_slow as f64).ceil().min(n_dims - 1.0);
        for head in out.chunks_exact_mut(head_dim) {
            for i in 0..p.n_dims / 2 {
                let ff = p.freq_factors.map_or(1.0, |f| f[i] as f64);
                let extrap =
                    position as f64 * (p.freq_base as f64).powf(-2.0 * i as f64 / n_dims) / ff;
                let interp = p.freq_scale as f64 * extrap;
                let (mut angle, mut mscale) = (interp, p.attn_factor as f64);
                if p.ext_factor != 0.0 {
                    let y = (i as f64 - low) / (high - low).max(0.001);
                    let mix = (1.0 - y.clamp(0.0, 1.0)) * p.ext_factor as f64;
                    angle = interp * (1.0 - mix) + extrap * mix;
                    mscale *= 1.0 + 0.1 * (1.0 / p.freq_scale as f64).ln();
                }
                let (a, b) = match p.ordering {
                    RopeOrdering::Normal => (2 * i, 2 * i + 1),
                    RopeOrdering::Neox => (i, i + p.n_dims / 2),
                };
                let (x0, x1) = (head[a], head[b]);
                head[a] = (x0 * angle.cos() - x1 * angle.sin()) * mscale;
                head[b] = (x0 * angle.sin() + x1 * angle.cos()) * mscale;
            }
        }
        out
    }

    /// Checks `rope` against [`rope64`]. ggml's f32 angle recurrence multiplies by the
    /// rounded `base^(-2/n_dims)` once per pair, so pair `i`'s angle carries a relative
    /// error of about `(i + 2)` f32 ulps; cos/sin and the rotation add a few more ulps of
    /// the pair's length. The tolerance of each value is that, per pair.
    fn check(x: &[f32], head_dim: usize, position: i32, p: &RopeParams<'_>) -> Vec<f32> {
        let mut got = x.to_vec();
        rope(&mut got, head_dim, position, p);
        let want = rope64(x, head_dim, position, p);
        let eps = f32::EPSILON as f64;
        let mscale = p.attn_factor as f64 * if p.ext_factor != 0.0 { 1.5 } else { 1.0 };
        for (h, head) in x.chunks_exact(head_dim).enumerate() {
            for i in 0..p.n_dims / 2 {
                let (a, b) = match p.ordering {
                    RopeOrdering::Normal => (2 * i, 2 * i + 1),
                    RopeOrdering::Neox => (i, i + p.n_dims / 2),
                };
                let ff = p.freq_factors.map_or(1.0, |f| f[i] as f64);
                let angle = position.unsigned_abs() as f64
                    * (p.freq_base as f64).powf(-2.0 * i as f64 / p.n_dims as f64)
                    / ff
                    * (p.freq_scale as f64).max(1.0);
                let length = (head[a] as f64).hypot(head[b] as f64);
                let tol = mscale * length * (angle * (i as f64 + 2.0) * eps + 4.0 * eps) + 1e-30;
                for d in [a, b] {
                    let (g, w) = (got[h * head_dim + d] as f64, want[h * head_dim + d]);
                    assert!(
                        (g - w).abs() <= tol,
                        "{:?} pos {position} head {h} dim {d}: got {g}, f64 {w}, error {:.2e} > \
                         tolerance {tol:.2e}",
                        p.ordering,
                        (g - w).abs()
                    );
                }
            }
        }
        // Dimensions past n_dims are untouched, bit for bit.
        for (h, (g, x)) in got
            .chunks_exact(head_dim)
            .zip(x.chunks_exact(head_dim))
            .enumerate()
        {
            assert_eq!(
                g[p.n_dims..],
                x[p.n_dims..],
                "head {h}: unrotated tail changed"
            );
        }
        // The cache + apply path gives the same bits.
        let mut cache = vec![0.0; p.n_dims];
        rope_cache_init(p, position, &mut cache);
        let mut via_cache = x.to_vec();
        rope_apply(&mut via_cache, head_dim, p.ordering, &cache);
        assert_eq!(
            via_cache, got,
            "rope and rope_cache_init + rope_apply differ"
        );
        got
    }

    #[test]
    fn both_orderings_match_f64() {
        for ordering in [RopeOrdering::Normal, RopeOrdering::Neox] {
            for (head_dim, n_heads, base) in
                [(64, 9, 100_000.0), (256, 4, 1_000_000.0), (2, 1, 10_000.0)]
            {
                let x = values(head_dim * n_heads, head_dim as u64);
                let p = RopeParams::new(ordering, head_dim, base);
                for position in [0, 1, 7, 511, 2047] {
                    check(&x, head_dim, position, &p);
                }
                let mut at_zero = x.clone();
                rope(&mut at_zero, head_dim, 0, &p);
                assert_eq!(at_zero, x, "position 0 is the identity");
            }
        }
    }

    #[test]
    fn orderings_pair_different_dimensions() {
        // A unit vector in dimension 0 rotates into dimension 1 (normal) or n_dims / 2
        // (NeoX).
        let mut x = vec![0.0f32; 8];
        x[0] = 1.0;
        let mut normal = x.clone();
        rope(
            &mut normal,
            8,
            1,
            &RopeParams::new(RopeOrdering::Normal, 8, 10_000.0),
        );
        assert!(normal[1] > 0.8 && normal[4] == 0.0, "{normal:?}");
        let mut neox = x.clone();
        rope(
            &mut neox,
            8,
            1,
            &RopeParams::new(RopeOrdering::Neox, 8, 10_000.0),
        );
        assert!(neox[4] > 0.8 && neox[1] == 0.0, "{neox:?}");
        assert!((normal[0] - 1f32.cos()).abs() < 1e-7 && (normal[1] - 1f32.sin()).abs() < 1e-7);
    }

    #[test]
    fn partial_rotary_and_freq_factors() {
        let factors: Vec<f32> = (0..16).map(|i| 1.0 + i as f32 * 0.75).collect();
        for ordering in [RopeOrdering::Normal, RopeOrdering::Neox] {
            let head_dim = 96;
            let x = values(head_dim * 3, 42);
            let mut p = RopeParams::new(ordering, 32, 10_000.0);
            for position in [3, 100, 4000] {
                let plain = check(&x, head_dim, position, &p);
                p.freq_factors = Some(&factors);
                let scaled = check(&x, head_dim, position, &p);
                assert_ne!(plain, scaled, "frequency factors had no effect");
                p.freq_factors = None;
            }
        }
    }

    #[test]
    fn linear_scaling_and_yarn_match_f64() {
        for ordering in [RopeOrdering::Normal, RopeOrdering::Neox] {
            let x = values(128 * 2, 5);
            let mut p = RopeParams::new(ordering, 128, 500_000.0);
            p.freq_scale = 0.25;
            check(&x, 128, 1234, &p);
            p.ext_factor = 1.0;
            p.n_ctx_orig = 8192;
            p.attn_factor = 1.0;
            let yarn = check(&x, 128, 1234, &p);
            // YaRN's magnitude scale 1 + 0.1 ln(4) shows in the norm.
            let norm = |v: &[f32]| v.iter().map(|&a| (a as f64).powi(2)).sum::<f64>().sqrt();
            let ratio = norm(&yarn) / norm(&x);
            assert!(
                (ratio - (1.0 + 0.1 * 4f64.ln())).abs() < 1e-5,
                "norm ratio {ratio}"
            );
        }
    }
}
