//! Exit codes and the error message format (documented in docs/CLI.md).
//!
//! Errors print as `tern: <what>: <why>` on stderr, followed by `help: <what to do>` when
//! there is something to do. A closed stdout (`tern models --json | head -1`) is not an
//! error: the command stops and exits 0.

use std::fmt;
use std::io::{self, Write};
use std::process::ExitCode;

use tern_store::ErrorClass;

/// Success.
pub const SUCCESS: u8 = 0;
/// Any failure without a more specific code (file-system trouble, bad data).
pub const FAILURE: u8 = 1;
/// The command line could not be parsed.
pub const USAGE: u8 = 2;
/// The model reference is malformed or names nothing known (not in the store, not in the
/// catalog, no such file).
pub const MODEL_REFERENCE: u8 = 3;
/// A download failed: network, HTTP status (404, 401…).
pub const NETWORK: u8 = 4;
/// The content is not a usable model: not GGUF, corrupt GGUF, checksum mismatch.
pub const BAD_MODEL: u8 = 5;
/// An external tool failed: Python or pip for `pip:` references.
pub const TOOL: u8 = 6;
/// The command needs a part of tern that has not been built yet.
#[allow(dead_code)] // no command needs it today; the code stays documented in docs/CLI.md
pub const NOT_IMPLEMENTED: u8 = 7;

/// A failure with a chosen exit code, for cases no library error describes.
#[derive(Debug)]
pub struct Failure {
    pub code: u8,
    pub message: String,
    pub help: Option<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

/// Handles a command-line parse error (or `--help` / `--version`, which clap reports the
/// same way).
pub fn usage_error(error: &clap::Error) -> ExitCode {
    let _ = error.print();
    ExitCode::from(if error.exit_code() == 0 {
        SUCCESS
    } else {
        USAGE
    })
}

/// Turns a command's result into the process exit code, printing the error.
pub fn finish(result: anyhow::Result<()>) -> ExitCode {
    let Err(error) = result else {
        return ExitCode::from(SUCCESS);
    };
    if is_broken_pipe(&error) {
        return ExitCode::from(SUCCESS);
    }
    let (code, help) = classify(&error);
    crate::progress::clear();
    let mut stderr = io::stderr().lock();
    let _ = writeln!(stderr, "tern: {}", message(&error));
    if let Some(help) = help {
        let _ = writeln!(stderr, "help: {help}");
    }
    ExitCode::from(code)
}

/// The exit code and help line for an error: the outermost error that has an opinion.
pub fn classify(error: &anyhow::Error) -> (u8, Option<String>) {
    for cause in error.chain() {
        if let Some(failure) = cause.downcast_ref::<Failure>() {
            return (failure.code, failure.help.clone());
        }
        if let Some(store) = cause.downcast_ref::<tern_store::Error>() {
            let code = match store.class() {
                ErrorClass::Reference => MODEL_REFERENCE,
                ErrorClass::Network => NETWORK,
                ErrorClass::Content => BAD_MODEL,
                ErrorClass::Tool => TOOL,
                _ => FAILURE,
            };
            return (code, store.help());
        }
        if cause.downcast_ref::<tern_gguf::Error>().is_some() {
            return (BAD_MODEL, None);
        }
    }
    (FAILURE, None)
}

/// `what: why: why…`, skipping causes whose text the previous message already contains
/// (library errors often quote their source).
fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.contains(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        cause
            .downcast_ref::<io::Error>()
            .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    #[test]
    fn store_errors_map_to_their_codes_and_help() {
        let error = anyhow::Error::new(tern_store::Error::UnknownModel { name: "x".into() })
            .context("model `x`");
        let (code, help) = classify(&error);
        assert_eq!(code, MODEL_REFERENCE);
        assert!(help.unwrap().contains("tern models --catalog"));
        assert_eq!(
            message(&error),
            "model `x`: unknown model `x`: not in the store and not in the catalog"
        );

        let error = anyhow::Error::new(tern_store::Error::NotFound {
            url: "http://h/f".into(),
        });
        assert_eq!(classify(&error).0, NETWORK);
        let error = anyhow::Error::new(tern_store::Error::ChecksumMismatch {
            source_name: "s".into(),
            expected: "a".into(),
            actual: "b".into(),
        });
        assert_eq!(classify(&error).0, BAD_MODEL);
    }

    #[test]
    fn failures_carry_their_code_and_broken_pipes_are_success() {
        let error = anyhow::Error::new(Failure {
            code: NOT_IMPLEMENTED,
            message: "m".into(),
            help: Some("h".into()),
        });
        assert_eq!(classify(&error), (NOT_IMPLEMENTED, Some("h".into())));
        let pipe: anyhow::Result<()> =
            Err(io::Error::from(io::ErrorKind::BrokenPipe)).context("writing the list");
        assert_eq!(finish(pipe), ExitCode::from(SUCCESS));
    }

    #[test]
    fn repeated_causes_are_printed_once() {
        let inner = io::Error::other("disk full");
        let error = anyhow::Error::new(tern_store::Error::Io {
            op: "writing",
            path: "/x".into(),
            source: inner,
        })
        .context("pulling m");
        assert_eq!(message(&error), "pulling m: writing `/x`: disk full");
    }
}
