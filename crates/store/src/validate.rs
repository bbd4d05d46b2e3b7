//! The last check before a file is installed: is it a GGUF file tern can read?
//!
//! Content is checked twice: the magic as soon as the first bytes arrive (so an HTML error
//! page fails at once), and here the whole header, metadata and tensor table with the GGUF
//! reader (which also checks that every tensor's data lies inside the file), before
//! anything is installed. A truncated or corrupt file never gets a name in the store.

use std::path::Path;

use crate::error::{Error, Result};

/// Fails unless `path` parses as a GGUF file.
pub(crate) fn check_gguf(path: &Path, source_name: &str) -> Result<()> {
    match tern_gguf::GgufFile::open(path) {
        Ok(_) => Ok(()),
        Err(tern_gguf::Error::BadMagic { found }) => Err(Error::NotGguf {
            source_name: source_name.into(),
            found: crate::fsutil::describe_prefix(&found),
        }),
        Err(error) => Err(Error::InvalidGguf {
            source_name: source_name.into(),
            reason: error.to_string(),
        }),
    }
}
