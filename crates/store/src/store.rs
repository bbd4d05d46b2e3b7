//! The on-disk store: content-addressed blobs and the named references that point at them.
//!
//! ```text
//! $TERN_HOME/                      (default ~/.tern)
//!   blobs/sha256-<hex>             model files, named by the sha256 of their bytes
//!   manifests/<name>/<tag>.json    one small JSON file per reference name:tag
//!   pins.json                      sha256 recorded at the first download of catalog
//!                                  variants whose hash the catalog does not pin
//!   tmp/                           partial downloads (resumed by the next pull)
//!   locks/                         lock files (flock), one per download and one for the store
//! ```
//!
//! Blobs are installed by rename from `tmp/` and manifests are written atomically, both
//! under `locks/store.lock`, so a reader sees a reference only once its blob is complete,
//! and `rm` never deletes a blob that a concurrent pull is about to reference.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::catalog::Catalog;
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::reference::ModelRef;

/// Where the store lives and how it reaches the outside world.
#[derive(Clone, Debug)]
pub struct StoreConfig {
    /// The store directory (`$TERN_HOME`, default `~/.tern`).
    pub home: PathBuf,
    /// Base URL for `hf://` references (`$HF_ENDPOINT`, default `https://huggingface.co`).
    pub hf_endpoint: String,
    /// Sent as a Bearer token to the Hugging Face endpoint (`$HF_TOKEN`).
    pub hf_token: Option<String>,
    /// The Python interpreter that runs pip (`$TERN_PYTHON`, default `python3`).
    pub python: OsString,
}

impl StoreConfig {
    /// A configuration for the store at `home`, with the defaults for everything else
    /// (no environment variables read).
    pub fn with_home(home: impl Into<PathBuf>) -> StoreConfig {
        StoreConfig {
            home: home.into(),
            hf_endpoint: "https://huggingface.co".into(),
            hf_token: None,
            python: "python3".into(),
        }
    }

    /// The configuration from the environment: `TERN_HOME` (or `HOME/.tern`),
    /// `HF_ENDPOINT`, `HF_TOKEN`, `TERN_PYTHON`. Empty variables count as unset.
    pub fn from_env() -> Result<StoreConfig> {
        let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty());
        let home = match var("TERN_HOME") {
            Some(home) => PathBuf::from(home),
            None => PathBuf::from(var("HOME").ok_or(Error::NoHome)?).join(".tern"),
        };
        let mut config = StoreConfig::with_home(home);
        if let Some(endpoint) = var("HF_ENDPOINT") {
            config.hf_endpoint = endpoint.to_string_lossy().into_owned();
        }
        config.hf_token = var("HF_TOKEN").map(|t| t.to_string_lossy().trim().to_string());
        if let Some(python) = var("TERN_PYTHON") {
            config.python = python;
        }
        Ok(config)
    }
}

/// A reference's record: which blob a `name:tag` means and where it came from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Format version of this file (1).
    pub schema: u32,
    pub name: String,
    pub tag: String,
    /// `sha256:<64 hex digits>`.
    pub digest: String,
    /// Bytes.
    pub size: u64,
    /// The reference the file was pulled from.
    pub source: String,
    /// When it was installed, in seconds since the Unix epoch.
    pub pulled_at: u64,
}

impl Manifest {
    /// The hex part of the digest.
    pub fn sha256(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }

    /// `name:tag`.
    pub fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

/// A model present in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Installed {
    pub manifest: Manifest,
    /// The blob file.
    pub path: PathBuf,
}

/// What `rm` did.
#[derive(Clone, Debug)]
pub struct Removed {
    pub manifest: Manifest,
    /// The blob was deleted too (no other reference used it).
    pub blob_removed: bool,
}

/// Disk use of the store.
#[derive(Clone, Copy, Debug)]
pub struct Usage {
    /// Bytes in `blobs/`.
    pub blobs: u64,
    /// Bytes of partial downloads in `tmp/`.
    pub partial: u64,
}

/// The model store.
#[derive(Debug)]
pub struct Store {
    pub(crate) config: StoreConfig,
}

impl Store {
    /// Opens (and creates when needed) the store described by `config`.
    pub fn open(config: StoreConfig) -> Result<Store> {
        let store = Store { config };
        for dir in [
            store.blobs_dir(),
            store.manifests_dir(),
            store.tmp_dir(),
            store.locks_dir(),
        ] {
            fs::create_dir_all(&dir).map_err(|e| Error::io("creating directory", &dir, e))?;
        }
        Ok(store)
    }

    /// The store directory.
    pub fn home(&self) -> &Path {
        &self.config.home
    }

    /// The configuration it was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    pub(crate) fn blobs_dir(&self) -> PathBuf {
        self.config.home.join("blobs")
    }
    pub(crate) fn manifests_dir(&self) -> PathBuf {
        self.config.home.join("manifests")
    }
    pub(crate) fn tmp_dir(&self) -> PathBuf {
        self.config.home.join("tmp")
    }
    pub(crate) fn locks_dir(&self) -> PathBuf {
        self.config.home.join("locks")
    }

    /// Where the blob with this sha256 (hex) lives.
    pub fn blob_path(&self, sha256: &str) -> PathBuf {
        self.blobs_dir().join(format!("sha256-{sha256}"))
    }

    fn manifest_path(&self, name: &str, tag: &str) -> PathBuf {
        self.manifests_dir().join(name).join(format!("{tag}.json"))
    }

    /// Takes the store-wide lock that serializes reference changes.
    pub(crate) fn lock(&self) -> Result<FileLock> {
        FileLock::acquire(&self.locks_dir().join("store.lock"), || {})
    }

    /// Every installed model, sorted by name and tag.
    pub fn list(&self) -> Result<Vec<Installed>> {
        let mut out = Vec::new();
        let dir = self.manifests_dir();
        let names = fs::read_dir(&dir).map_err(|e| Error::io("listing", &dir, e))?;
        for name_entry in names.flatten() {
            let Ok(tags) = fs::read_dir(name_entry.path()) else {
                continue;
            };
            for tag_entry in tags.flatten() {
                let path = tag_entry.path();
                if path.extension().is_some_and(|e| e == "json")
                    && !tag_entry.file_name().to_string_lossy().starts_with('.')
                {
                    let manifest = read_manifest(&path)?;
                    out.push(Installed {
                        path: self.blob_path(manifest.sha256()),
                        manifest,
                    });
                }
            }
        }
        out.sort_by(|a, b| {
            (&a.manifest.name, &a.manifest.tag).cmp(&(&b.manifest.name, &b.manifest.tag))
        });
        Ok(out)
    }

    /// The installed model `name:tag`, if any.
    pub fn get(&self, name: &str, tag: &str) -> Result<Option<Installed>> {
        let path = self.manifest_path(name, tag);
        if !path.exists() {
            return Ok(None);
        }
        let manifest = read_manifest(&path)?;
        let blob = self.blob_path(manifest.sha256());
        if !blob.exists() {
            return Err(Error::Corrupt {
                path,
                reason: format!("its blob {} is missing", blob.display()),
            });
        }
        Ok(Some(Installed {
            manifest,
            path: blob,
        }))
    }

    /// The tag a name without tag means: the catalog's default tag, else the only
    /// installed tag of that name, else `latest`.
    pub fn default_tag(&self, name: &str) -> Result<String> {
        if let Some(model) = Catalog::builtin().get(name) {
            return Ok(model.default_tag.clone());
        }
        let tags: Vec<String> = self
            .list()?
            .into_iter()
            .filter(|i| i.manifest.name == name)
            .map(|i| i.manifest.tag)
            .collect();
        Ok(match tags.as_slice() {
            [only] => only.clone(),
            _ => "latest".into(),
        })
    }

    /// Writes the reference `manifest` (under the store lock, held by the caller).
    pub(crate) fn write_manifest(&self, manifest: &Manifest) -> Result<()> {
        let path = self.manifest_path(&manifest.name, &manifest.tag);
        let bytes = serde_json::to_vec_pretty(manifest).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&path, &bytes)
    }

    /// Removes the reference `text` (`name[:tag]`), and its blob when no other reference
    /// uses it.
    pub fn remove(&self, text: &str) -> Result<Removed> {
        let (name, tag) = match ModelRef::parse(text)? {
            ModelRef::Named {
                name,
                tag: Some(tag),
            } => (name, tag),
            ModelRef::Named { name, tag: None } => {
                let tag = self.default_tag(&name)?;
                (name, tag)
            }
            _ => {
                return Err(Error::InvalidReference {
                    reference: text.into(),
                    reason: "`rm` takes a store reference, name[:tag]".into(),
                });
            }
        };
        let _lock = self.lock()?;
        let path = self.manifest_path(&name, &tag);
        if !path.exists() {
            return Err(Error::NotInStore {
                reference: format!("{name}:{tag}"),
            });
        }
        let manifest = read_manifest(&path)?;
        fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
        if let Some(dir) = path.parent() {
            // Drop the name's directory once its last tag is gone (fails harmlessly
            // while other tags remain).
            let _ = fs::remove_dir(dir);
            fsutil::sync_dir(&self.manifests_dir())?;
        }
        let still_used = self
            .list()?
            .iter()
            .any(|i| i.manifest.digest == manifest.digest);
        let mut blob_removed = false;
        if !still_used {
            let blob = self.blob_path(manifest.sha256());
            fsutil::remove_if_exists(&blob)?;
            fsutil::sync_dir(&self.blobs_dir())?;
            blob_removed = true;
        }
        Ok(Removed {
            manifest,
            blob_removed,
        })
    }

    /// Bytes used by blobs and by partial downloads.
    pub fn usage(&self) -> Usage {
        Usage {
            blobs: fsutil::tree_size(&self.blobs_dir()),
            partial: fsutil::tree_size(&self.tmp_dir()),
        }
    }

    /// The sha256 recorded for a catalog variant at its first download.
    pub(crate) fn pinned(&self, reference: &str) -> Result<Option<String>> {
        Ok(self.read_pins()?.remove(reference))
    }

    /// Records the sha256 of a catalog variant's first download (store lock held).
    pub(crate) fn record_pin(&self, reference: &str, sha256: &str) -> Result<()> {
        let mut pins = self.read_pins()?;
        pins.insert(reference.to_string(), sha256.to_string());
        let path = self.pins_path();
        let bytes = serde_json::to_vec_pretty(&pins).map_err(|e| Error::Corrupt {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        fsutil::write_atomic(&path, &bytes)
    }

    fn pins_path(&self) -> PathBuf {
        self.config.home.join("pins.json")
    }

    fn read_pins(&self) -> Result<BTreeMap<String, String>> {
        let path = self.pins_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                path,
                reason: e.to_string(),
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(Error::io("reading", path, e)),
        }
    }
}

fn read_manifest(path: &Path) -> Result<Manifest> {
    let bytes = fs::read(path).map_err(|e| Error::io("reading", path, e))?;
    let manifest: Manifest = serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    if !crate::catalog::is_sha256_hex(manifest.sha256()) {
        return Err(Error::Corrupt {
            path: path.to_path_buf(),
            reason: format!("bad digest `{}`", manifest.digest),
        });
    }
    Ok(manifest)
}
