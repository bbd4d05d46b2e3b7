//! The store's error type: one enum, each variant naming the thing that went wrong.
//!
//! Messages are lowercase and quote the offending value; [`Error::help`] gives the
//! line a user can act on (the CLI prints it as `help: …`), and [`Error::class`] the
//! broad category the CLI maps to an exit code.

use std::io;
use std::path::PathBuf;

/// Shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Broad categories of failure, for exit codes and retry decisions.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ErrorClass {
    /// The reference is malformed or names nothing known.
    Reference,
    /// A network transfer or remote server failed.
    Network,
    /// Content arrived but is not the model it should be (not GGUF, wrong checksum).
    Content,
    /// The external tool (Python / pip) failed.
    Tool,
    /// Local file-system trouble.
    Io,
}

/// Everything that can go wrong in the store.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A model reference could not be parsed.
    #[error("invalid model reference `{reference}`: {reason}")]
    InvalidReference { reference: String, reason: String },

    /// A name that is neither in the store nor in the catalog.
    #[error("unknown model `{name}`: not in the store and not in the catalog")]
    UnknownModel { name: String },

    /// A catalog model exists but has no such tag.
    #[error("model `{name}` has no tag `{tag}` (known tags: {available})")]
    UnknownTag {
        name: String,
        tag: String,
        available: String,
    },

    /// A named model is not installed (for commands that do not pull, like `rm`).
    #[error("model `{reference}` is not in the store")]
    NotInStore { reference: String },

    /// A local path that does not exist or is not a file.
    #[error("no model file at `{}`", path.display())]
    NoSuchFile { path: PathBuf },

    /// The server answered 404.
    #[error("not found (HTTP 404) at {url}")]
    NotFound { url: String },

    /// The server answered 401/403.
    #[error("access denied (HTTP {status}) at {url}")]
    Unauthorized {
        url: String,
        status: u16,
        hugging_face: bool,
        token_sent: bool,
    },

    /// Any other unexpected HTTP status.
    #[error("unexpected HTTP status {status} at {url}")]
    HttpStatus { url: String, status: u16 },

    /// The connection failed (DNS, connect, TLS, read) after the retries.
    #[error("download from {url} failed: {reason}")]
    Network { url: String, reason: String },

    /// The server's answer does not add up (bad Content-Range, more bytes than announced).
    #[error("bad response from {url}: {reason}")]
    BadResponse { url: String, reason: String },

    /// Content that does not start with the GGUF magic.
    #[error("{source_name} is not a GGUF file (it starts with {found})")]
    NotGguf { source_name: String, found: String },

    /// Content that starts like GGUF but does not parse.
    #[error("{source_name} is not a valid GGUF file: {reason}")]
    InvalidGguf { source_name: String, reason: String },

    /// The downloaded bytes do not have the expected sha256.
    #[error("checksum mismatch for {source_name}: expected sha256 {expected}, got {actual}")]
    ChecksumMismatch {
        source_name: String,
        expected: String,
        actual: String,
    },

    /// The Python interpreter could not be started.
    #[error("cannot run `{python}`: {reason}")]
    PythonMissing { python: String, reason: String },

    /// `pip download` failed.
    #[error("`pip download {spec}` failed ({status}): {output}")]
    Pip {
        spec: String,
        status: String,
        output: String,
    },

    /// A wheel was not found after `pip download`, or could not be read.
    #[error("wheel for `{package}`: {reason}")]
    Wheel { package: String, reason: String },

    /// Every source of a catalog model failed; each failure is listed.
    #[error("every source of `{reference}` failed:\n{}", list_failures(.failures))]
    AllSourcesFailed {
        reference: String,
        failures: Vec<(String, Error)>,
    },

    /// A store file (manifest, pins) is corrupt.
    #[error("corrupt store file `{}`: {reason}", path.display())]
    Corrupt { path: PathBuf, reason: String },

    /// No home directory to put the store in.
    #[error("cannot locate the store: neither TERN_HOME nor HOME is set")]
    NoHome,

    /// An I/O operation on a named path failed.
    #[error("{op} `{}`: {source}", path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

fn list_failures(failures: &[(String, Error)]) -> String {
    let lines: Vec<String> = failures
        .iter()
        .enumerate()
        .map(|(index, (source, error))| format!("  {}. {source}: {error}", index + 1))
        .collect();
    lines.join("\n")
}

impl Error {
    /// Wraps an I/O error with what was being done and to which path.
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            op,
            path: path.into(),
            source,
        }
    }

    /// The broad category, for exit codes.
    pub fn class(&self) -> ErrorClass {
        match self {
            Error::InvalidReference { .. }
            | Error::UnknownModel { .. }
            | Error::UnknownTag { .. }
            | Error::NotInStore { .. }
            | Error::NoSuchFile { .. } => ErrorClass::Reference,
            Error::NotFound { .. }
            | Error::Unauthorized { .. }
            | Error::HttpStatus { .. }
            | Error::Network { .. }
            | Error::BadResponse { .. } => ErrorClass::Network,
            Error::NotGguf { .. } | Error::InvalidGguf { .. } | Error::ChecksumMismatch { .. } => {
                ErrorClass::Content
            }
            Error::PythonMissing { .. } | Error::Pip { .. } | Error::Wheel { .. } => {
                ErrorClass::Tool
            }
            Error::AllSourcesFailed { failures, .. } => {
                // The class of the last failure: with a catalog model that is usually the
                // fallback source, the one the user can most likely fix.
                failures
                    .last()
                    .map_or(ErrorClass::Network, |(_, error)| error.class())
            }
            Error::Corrupt { .. } | Error::NoHome | Error::Io { .. } => ErrorClass::Io,
        }
    }

    /// A line telling the user what to do about it, when there is one.
    pub fn help(&self) -> Option<String> {
        match self {
            Error::UnknownModel { .. } | Error::UnknownTag { .. } => Some(
                "`tern models --catalog` lists the catalog; a local file needs a path \
                 (./model.gguf), a download a URL, hf:// or pip: reference"
                    .into(),
            ),
            Error::NotInStore { .. } => Some("`tern models` lists what is installed".into()),
            Error::Unauthorized {
                hugging_face: true,
                token_sent: false,
                ..
            } => Some(
                "the repository is gated or private: accept its license on Hugging Face and \
                 set HF_TOKEN to an access token"
                    .into(),
            ),
            Error::Unauthorized {
                hugging_face: true,
                token_sent: true,
                ..
            } => Some(
                "HF_TOKEN was sent and refused: check that the token is valid and that its \
                 account has accepted the repository's license"
                    .into(),
            ),
            Error::ChecksumMismatch { .. } => Some(
                "the file differs from the one the reference names; nothing was installed".into(),
            ),
            Error::PythonMissing { .. } => Some(
                "install Python 3 with pip, or set TERN_PYTHON to an interpreter that has pip"
                    .into(),
            ),
            Error::Network { .. } => Some(
                "check the network; an interrupted download resumes where it stopped when \
                 you pull again"
                    .into(),
            ),
            Error::AllSourcesFailed { failures, .. } => {
                failures.iter().rev().find_map(|(_, error)| error.help())
            }
            _ => None,
        }
    }
}
