//! Sentence embeddings from a model's final hidden states: the mean over the input's
//! tokens, scaled to unit L2 norm — llama.cpp's `--pooling mean` followed by the
//! normalisation llama-server applies to `/v1/embeddings` (`tools/server`,
//! `send_embedding` with `common_embd_normalize(..., 2)`).

/// The L2-normalised mean of `rows` rows of `width` values (`hidden` holds them one after
/// another). A zero vector stays zero; no rows give an empty vector.
pub fn mean_pool_normalize(hidden: &[f32], width: usize) -> Vec<f32> {
    if width == 0 || hidden.len() < width {
        return Vec::new();
    }
    let rows = hidden.len() / width;
    let mut mean = vec![0.0f64; width];
    for row in hidden.chunks_exact(width) {
        for (m, &v) in mean.iter_mut().zip(row) {
            *m += f64::from(v);
        }
    }
    let norm = mean
        .iter()
        .map(|m| (m / rows as f64).powi(2))
        .sum::<f64>()
        .sqrt();
    let scale = if norm > 0.0 {
        1.0 / (norm * rows as f64)
    } else {
        0.0
    };
    mean.iter().map(|m| (m * scale) as f32).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mean_then_unit_length() {
        // Rows (1, 2) and (3, 6): mean (2, 4), norm sqrt(20).
        let v = mean_pool_normalize(&[1.0, 2.0, 3.0, 6.0], 2);
        let n = 20f32.sqrt();
        assert!(
            (v[0] - 2.0 / n).abs() < 1e-6 && (v[1] - 4.0 / n).abs() < 1e-6,
            "{v:?}"
        );
        let length: f32 = v.iter().map(|x| x * x).sum();
        assert!((length - 1.0).abs() < 1e-6);
        assert_eq!(mean_pool_normalize(&[0.0, 0.0], 2), vec![0.0, 0.0]);
        assert!(mean_pool_normalize(&[], 2).is_empty());
    }
}
