//! Log output: `tracing` events to stderr, drawn around any progress bar.
//!
//! The level comes from `RUST_LOG` when set (full `tracing-subscriber` filter syntax),
//! else from the flags: errors only with `-q`, warnings by default, then `-v` info, `-vv`
//! debug, `-vvv` trace.

use std::io::{self, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::cli::GlobalArgs;

pub fn init(global: &GlobalArgs) {
    let level = match (global.quiet, global.verbose) {
        (true, _) => "error",
        (false, 0) => "warn",
        (false, 1) => "info",
        (false, 2) => "debug",
        (false, _) => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(level));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(ProgressAwareStderr)
        .with_target(global.verbose >= 2)
        .try_init();
}

/// Writes to stderr, suspending the active progress bar so lines do not garble it
/// (indicatif's `suspend`).
#[derive(Clone, Copy, Debug)]
struct ProgressAwareStderr;

impl Write for ProgressAwareStderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        crate::progress::suspend(|| io::stderr().write_all(buf))?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

impl<'a> MakeWriter<'a> for ProgressAwareStderr {
    type Writer = ProgressAwareStderr;

    fn make_writer(&'a self) -> Self::Writer {
        *self
    }
}
