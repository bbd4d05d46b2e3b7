//! Activation dumps, for finding where tern and llama.cpp part ways.
//!
//! With `TERN_DUMP_ACTIVATIONS=DIR` (or [`crate::Scratch::dump_activations`]) every
//! forward pass writes each intermediate tensor, named as llama.cpp's graph callbacks
//! name them (`attn_norm`, `Qcur`, `kqv_out`, `ffn_out`, `l_out`, …, see
//! `src/models/llama.cpp`), to `DIR/NNNN-name-LAYER.f32` (little-endian f32, row-major
//! `(tokens, width)`), and one line per tensor to `DIR/index.tsv`: pass, name, layer,
//! tokens, width, sum, sum of squares. llama.cpp's `llama-eval-callback` prints the same
//! sums per tensor, so the first layer whose sums differ is where to look.
//!
//! Dumping allocates and writes files; it is for debugging only.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

/// Writes tensors of forward passes to a directory.
#[derive(Debug)]
pub struct Dumper {
    dir: PathBuf,
    pass: usize,
    seq: usize,
}

impl Dumper {
    /// Dumps into `dir` (created when missing).
    pub fn new(dir: PathBuf) -> Self {
        Dumper {
            dir,
            pass: 0,
            seq: 0,
        }
    }

    /// A dumper into `$TERN_DUMP_ACTIVATIONS`, when set.
    pub fn from_env() -> Option<Self> {
        std::env::var_os("TERN_DUMP_ACTIVATIONS").map(|d| Dumper::new(PathBuf::from(d)))
    }

    /// Marks the start of a forward pass.
    pub fn next_pass(&mut self) {
        self.pass += 1;
    }

    /// Records `data`, `tokens` rows of `width` values, as `name` of `layer` (-1: none).
    pub fn record(&mut self, name: &str, layer: i32, data: &[f32], tokens: usize, width: usize) {
        let data = &data[..tokens * width];
        if let Err(e) = self.write(name, layer, data, tokens, width) {
            tracing::warn!(
                "cannot dump activation {name} to {}: {e}",
                self.dir.display()
            );
        }
    }

    fn write(
        &mut self,
        name: &str,
        layer: i32,
        data: &[f32],
        tokens: usize,
        width: usize,
    ) -> std::io::Result<()> {
        fs::create_dir_all(&self.dir)?;
        self.seq += 1;
        let file = self.dir.join(format!("{:05}-{name}-{layer}.f32", self.seq));
        let bytes: Vec<u8> = data.iter().flat_map(|v| v.to_le_bytes()).collect();
        fs::write(file, bytes)?;
        let sum: f64 = data.iter().map(|&v| v as f64).sum();
        let sum_sq: f64 = data.iter().map(|&v| (v as f64) * (v as f64)).sum();
        let mut index = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("index.tsv"))?;
        writeln!(
            index,
            "{}\t{name}\t{layer}\t{tokens}\t{width}\t{sum:.6}\t{sum_sq:.6}",
            self.pass
        )
    }
}
