//! How long work reports its progress, without the store knowing how it is shown.
//!
//! The CLI implements [`Progress`] with a progress bar on a terminal and plain log lines
//! elsewhere; library users and tests pass [`Silent`].

/// Receives progress of a pull. Positions are absolute byte counts.
pub trait Progress: Send + Sync {
    /// A new phase starts (`label` says what); `total` is its size in bytes when known.
    fn begin(&self, label: &str, total: Option<u64>);
    /// The phase has reached `position` bytes.
    fn advance(&self, position: u64);
    /// A line of information for the user (a failed source, a resumed download).
    fn note(&self, message: &str);
    /// The current phase is over.
    fn finish(&self);
}

/// Reports nothing.
#[derive(Clone, Copy, Debug, Default)]
pub struct Silent;

impl Progress for Silent {
    fn begin(&self, _label: &str, _total: Option<u64>) {}
    fn advance(&self, _position: u64) {}
    fn note(&self, _message: &str) {}
    fn finish(&self) {}
}
