//! The typed API the engine multiplies with: weight matrices borrowed from the mmap,
//! activations quantized once per matmul the way ggml quantizes them, the matmul itself
//! and the embedding lookup.
//!
//! Layout follows ggml's `ggml_mul_mat(w, x)`: a weight matrix has `rows` output rows of
//! `cols` values each (ggml's `ne[1]` × `ne[0]`), stored row after row; activations are
//! `n_rows` token rows of `cols` values; the result is `n_rows` rows of `rows` values.

use tern_gguf::GgmlType;

use crate::error::KernelError;
use crate::quant::{self, row_bytes, row_kernels, vec_dot_type};

/// A weight matrix in its stored type, borrowed from the model file.
#[derive(Clone, Copy, Debug)]
pub struct WeightMatrix<'a> {
    /// The element type.
    pub ty: GgmlType,
    /// Output rows (ggml `ne[1]`).
    pub rows: usize,
    /// Values per row (ggml `ne[0]`), a whole number of blocks of `ty`.
    pub cols: usize,
    /// `rows` rows of `ty`, row-major, exactly `rows * row_bytes(ty, cols)` bytes.
    pub data: &'a [u8],
}

impl<'a> WeightMatrix<'a> {
    /// Checks that tern has kernels for `ty`, that a row is a whole number of blocks and
    /// that `data` has exactly the size the shape implies.
    pub fn try_new(
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<Self, KernelError> {
        if !quant::supported_weight_type(ty) {
            return Err(KernelError::UnsupportedType(ty));
        }
        let expected = row_bytes(ty, cols)?.saturating_mul(rows);
        if expected != data.len() {
            return Err(KernelError::SizeMismatch {
                ty,
                rows,
                cols,
                expected,
                actual: data.len(),
            });
        }
        Ok(WeightMatrix {
            ty,
            rows,
            cols,
            data,
        })
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        row_bytes(self.ty, self.cols).unwrap_or(0)
    }

    /// The bytes of row `r`.
    ///
    /// # Panics
    /// If `r >= self.rows`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let n = self.row_bytes();
        &self.data[r * n..(r + 1) * n]
    }

    /// Panics unless the public fields are consistent (they can be set without
    /// `try_new`); keeps the kernels from reading a malformed matrix.
    fn assert_consistent(&self) {
        let expected = row_bytes(self.ty, self.cols).map(|b| b.saturating_mul(self.rows));
        assert!(
            quant::supported_weight_type(self.ty) && expected == Ok(self.data.len()),
            "malformed WeightMatrix: {} {}×{} with {} bytes (build it with try_new)",
            self.ty,
            self.rows,
            self.cols,
            self.data.len()
        );
    }
}

/// Activation rows quantized to the type a weight type's dot product needs. The buffer
/// is kept between calls, so a decode loop allocates only until it has seen its largest
/// batch.
#[derive(Debug, Clone)]
pub struct QuantizedActivations {
    ty: GgmlType,
    cols: usize,
    n_rows: usize,
    row_bytes: usize,
    data: Vec<u8>,
}

impl Default for QuantizedActivations {
    fn default() -> Self {
        Self::new()
    }
}

impl QuantizedActivations {
    /// An empty buffer.
    pub fn new() -> Self {
        QuantizedActivations {
            ty: GgmlType::F32,
            cols: 0,
            n_rows: 0,
            row_bytes: 0,
            data: Vec::new(),
        }
    }

    /// Quantizes `n_rows` rows of `cols` values from `x` (row-major) to
    /// `vec_dot_type(for_weight)`, as ggml does before a matmul with weights of type
    /// `for_weight`. The result can be reused for every matrix whose weights have the
    /// same activation type (e.g. the Q, K and V projections).
    ///
    /// # Panics
    /// If `for_weight` is not a supported weight type, if `x.len() != n_rows * cols`, or
    /// if `cols` is not a whole number of activation blocks. A [`WeightMatrix`] built
    /// with `try_new` guarantees the last for its own `cols`.
    pub fn quantize(&mut self, for_weight: GgmlType, x: &[f32], n_rows: usize, cols: usize) {
        let ty = vec_dot_type(for_weight)
            .unwrap_or_else(|| panic!("no kernels for weight type {for_weight}"));
        assert_eq!(
            x.len(),
            n_rows * cols,
            "activations: {n_rows} rows of {cols} values"
        );
        let row_bytes = match row_bytes(ty, cols) {
            Ok(n) => n,
            Err(e) => panic!("activations: {e}"),
        };
        let quantize_row = quant::quantizer(ty).expect("every activation type has a quantizer");
        self.ty = ty;
        self.cols = cols;
        self.n_rows = n_rows;
        self.row_bytes = row_bytes;
        self.data.resize(n_rows * row_bytes, 0);
        if cols == 0 {
            return;
        }
        for (x, out) in x
            .chunks_exact(cols)
            .zip(self.data.chunks_exact_mut(row_bytes))
        {
            quantize_row(x, out);
        }
    }

    /// The activation type the rows are stored in.
    pub fn ty(&self) -> GgmlType {
        self.ty
    }

    /// Values per row.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Number of rows (tokens).
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Whether these activations can be multiplied with weights of type `weight`.
    pub fn fits(&self, weight: GgmlType) -> bool {
        vec_dot_type(weight) == Some(self.ty)
    }

    /// The bytes of row `t`.
    ///
    /// # Panics
    /// If `t >= self.n_rows()`.
    pub fn row(&self, t: usize) -> &[u8] {
        &self.data[t * self.row_bytes..(t + 1) * self.row_bytes]
    }
}

/// `out[t * w.rows + r] = dot(w row r, x row t)` for every weight row `r` and activation
/// row `t`. Allocates nothing.
///
/// # Panics
/// If `x` was not quantized for `w.ty` (see [`QuantizedActivations::fits`]), if the
/// column counts differ, or if `out.len() != x.n_rows() * w.rows`.
pub fn matmul(w: &WeightMatrix<'_>, x: &QuantizedActivations, out: &mut [f32]) {
    w.assert_consistent();
    let kernels = row_kernels(w.ty).expect("checked by assert_consistent");
    assert_eq!(
        kernels.activation, x.ty,
        "activations quantized to {} but {} weights need {}",
        x.ty, w.ty, kernels.activation
    );
    assert_eq!(x.cols, w.cols, "activation and weight column counts differ");
    assert_eq!(out.len(), x.n_rows * w.rows, "matmul output length");
    if w.cols == 0 || w.rows == 0 {
        out.fill(0.0);
        return;
    }
    let w_row_bytes = w.row_bytes();
    // The loop over weight rows is the one the thread pool will split (each worker a
    // range of rows, as ggml-cpu splits `ne01`). Tokens are the inner loop so that a
    // weight row is read from memory once per matmul, not once per token.
    for (r, w_row) in w.data.chunks_exact(w_row_bytes).enumerate() {
        for t in 0..x.n_rows {
            out[t * w.rows + r] = (kernels.dot)(w_row, x.row(t));
        }
    }
}

/// Embedding lookup: `out` row `i` = row `ids[i]` of `w`, dequantized (ggml's
/// `ggml_get_rows`).
///
/// Returns an error, leaving `out` partly written, if an id is not a row of `w`.
///
/// # Panics
/// If `out.len() != ids.len() * w.cols`.
pub fn get_rows(w: &WeightMatrix<'_>, ids: &[u32], out: &mut [f32]) -> Result<(), KernelError> {
    w.assert_consistent();
    let kernels = row_kernels(w.ty).expect("checked by assert_consistent");
    assert_eq!(out.len(), ids.len() * w.cols, "get_rows output length");
    if w.cols == 0 {
        return ids.iter().try_for_each(|&id| check_id(id, w.rows));
    }
    for (&id, out) in ids.iter().zip(out.chunks_exact_mut(w.cols)) {
        check_id(id, w.rows)?;
        (kernels.dequantize)(w.row(id as usize), out);
    }
    Ok(())
}

fn check_id(id: u32, rows: usize) -> Result<(), KernelError> {
    if (id as usize) < rows {
        Ok(())
    } else {
        Err(KernelError::RowOutOfRange { id, rows })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f32_bytes(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn try_new_names_the_problem() {
        let data = [0u8; 18 * 4];
        assert!(WeightMatrix::try_new(GgmlType::Q4_0, 2, 64, &data).is_ok());
        let e = WeightMatrix::try_new(GgmlType::IQ2_XXS, 1, 256, &data).unwrap_err();
        assert_eq!(e, KernelError::UnsupportedType(GgmlType::IQ2_XXS));
        assert_eq!(
            e.to_string(),
            "tensor type iq2_xxs is not supported by tern's kernels"
        );
        let e = WeightMatrix::try_new(GgmlType::Q4_0, 1, 48, &data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a q4_0 row of 48 values is not a whole number of 32-value blocks"
        );
        let e = WeightMatrix::try_new(GgmlType::Q4_0, 3, 64, &data).unwrap_err();
        assert_eq!(
            e.to_string(),
            "a q4_0 matrix of 3×64 takes 108 bytes, but 72 were given"
        );
        // Sizes that overflow do not wrap around to something that matches.
        let e = WeightMatrix::try_new(GgmlType::F32, usize::MAX, 4, &data).unwrap_err();
        assert!(matches!(e, KernelError::SizeMismatch { .. }), "{e}");
    }

    #[test]
    fn f32_matmul_of_odd_shapes_matches_f64() {
        let (rows, cols, tokens) = (5, 7, 3);
        let w: Vec<f32> = (0..rows * cols).map(|i| (i as f32 * 0.37).sin()).collect();
        let x: Vec<f32> = (0..tokens * cols)
            .map(|i| (i as f32 * 0.71).cos())
            .collect();
        let data = f32_bytes(&w);
        let m = WeightMatrix::try_new(GgmlType::F32, rows, cols, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::F32, &x, tokens, cols);
        assert!(acts.fits(GgmlType::F32) && !acts.fits(GgmlType::F16));
        let mut out = vec![0.0; rows * tokens];
        matmul(&m, &acts, &mut out);
        for t in 0..tokens {
            for r in 0..rows {
                let want: f64 = (0..cols)
                    .map(|i| w[r * cols + i] as f64 * x[t * cols + i] as f64)
                    .sum();
                let got = out[t * rows + r] as f64;
                assert!((got - want).abs() < 1e-6, "t{t} r{r}: {got} vs {want}");
            }
        }
        let mut emb = vec![0.0; 2 * cols];
        get_rows(&m, &[4, 1], &mut emb).unwrap();
        assert_eq!(&emb[..cols], &w[4 * cols..5 * cols]);
        assert_eq!(&emb[cols..], &w[cols..2 * cols]);
    }

    #[test]
    fn empty_batches_are_fine() {
        let data = f32_bytes(&[1.0; 6]);
        let m = WeightMatrix::try_new(GgmlType::F32, 2, 3, &data).unwrap();
        let mut acts = QuantizedActivations::default();
        acts.quantize(GgmlType::F32, &[], 0, 3);
        let mut out: [f32; 0] = [];
        matmul(&m, &acts, &mut out);
        get_rows(&m, &[], &mut out).unwrap();
        // A matrix without rows: nothing to compute, every id out of range.
        let none = WeightMatrix::try_new(GgmlType::Q8_0, 0, 64, &[]).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::Q8_0, &[1.0; 128], 2, 64);
        matmul(&none, &acts, &mut out);
        assert!(get_rows(&none, &[0], &mut [0.0; 64]).is_err());
    }

    #[test]
    #[should_panic(expected = "activations quantized to q8_0 but q4_1 weights need q8_1")]
    fn matmul_rejects_activations_of_the_wrong_type() {
        let data = [0u8; 20];
        let m = WeightMatrix::try_new(GgmlType::Q4_1, 1, 32, &data).unwrap();
        let mut acts = QuantizedActivations::new();
        acts.quantize(GgmlType::Q4_0, &[0.5; 32], 1, 32);
        matmul(&m, &acts, &mut [0.0]);
    }

    #[test]
    #[should_panic(expected = "not a whole number of 256-value blocks")]
    fn k_quant_activations_need_whole_super_blocks() {
        QuantizedActivations::new().quantize(GgmlType::Q4_K, &[0.0; 64], 1, 64);
    }
}
