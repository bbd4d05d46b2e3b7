//! Model references: every way a user can name a model, parsed once.
//!
//! The syntax (documented for users in docs/MODELS.md):
//! - `hf://org/repo/path/file.gguf`, with an optional revision either as
//!   `hf://org/repo@REV/file.gguf` (the form huggingface_hub's `HfFileSystem` uses) or as
//!   `hf://org/repo/file.gguf@REV`;
//! - `http://…` and `https://…` URLs;
//! - `pip:NAME==VER[#PATH][,NAME2==VER2[#PATH2]…]`: Python packages whose wheels carry
//!   the file (see [`crate::pip`] for how the data files are chosen);
//! - a local path: anything containing `/`, starting with `.` or `~`, or ending in `.gguf`;
//! - otherwise a name with an optional tag, `name[:tag]`: a store reference or a catalog
//!   model. Names and tags are case-insensitive and stored lowercase.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// A parsed model reference.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelRef {
    /// A GGUF file on the local disk, used in place.
    Path(PathBuf),
    /// `name[:tag]`: a store reference or a catalog model.
    Named { name: String, tag: Option<String> },
    /// A file in a Hugging Face repository.
    HuggingFace(HfRef),
    /// A plain `http://` or `https://` URL.
    Url(String),
    /// Python packages whose wheels carry the file.
    Pip(PipRef),
}

/// `hf://org/repo[@revision]/file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HfRef {
    /// `org/repo`.
    pub repo: String,
    /// Path of the file inside the repository.
    pub file: String,
    /// Branch, tag or commit; `main` when absent.
    pub revision: Option<String>,
}

/// One or more Python packages, joined in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipRef {
    pub packages: Vec<PipPackage>,
}

/// `NAME==VERSION[#member/path]`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PipPackage {
    pub name: String,
    pub version: String,
    /// An explicit member of the wheel; when absent the data files are chosen by rule.
    pub member: Option<String>,
}

impl ModelRef {
    /// Parses a reference as typed by a user.
    pub fn parse(text: &str) -> Result<ModelRef> {
        let text = text.trim();
        let invalid = |reason: &str| Error::InvalidReference {
            reference: text.to_string(),
            reason: reason.to_string(),
        };
        if text.is_empty() {
            return Err(invalid("empty"));
        }
        if let Some(rest) = text.strip_prefix("hf://") {
            return HfRef::parse(rest)
                .map(ModelRef::HuggingFace)
                .map_err(|r| invalid(&r));
        }
        if text.starts_with("http://") || text.starts_with("https://") {
            if text
                .split_once("://")
                .is_some_and(|(_, rest)| rest.is_empty())
            {
                return Err(invalid("the URL has no host"));
            }
            return Ok(ModelRef::Url(text.to_string()));
        }
        if let Some((scheme, _)) = text.split_once("://") {
            return Err(invalid(&format!(
                "unsupported scheme `{scheme}://` (use hf://, http://, https:// or pip:)"
            )));
        }
        if let Some(rest) = text.strip_prefix("pip:") {
            return PipRef::parse(rest)
                .map(ModelRef::Pip)
                .map_err(|r| invalid(&r));
        }
        if text.contains('/')
            || text.contains('\\')
            || text.starts_with('.')
            || text.starts_with('~')
            || text.to_ascii_lowercase().ends_with(".gguf")
        {
            return Ok(ModelRef::Path(expand_home(text)));
        }
        let (name, tag) = match text.split_once(':') {
            Some((name, tag)) => (name, Some(tag)),
            None => (text, None),
        };
        let name = name.to_ascii_lowercase();
        validate_name(&name).map_err(|r| invalid(&r))?;
        let tag = match tag {
            Some(tag) => {
                let tag = tag.to_ascii_lowercase();
                validate_tag(&tag).map_err(|r| invalid(&r))?;
                Some(tag)
            }
            None => None,
        };
        Ok(ModelRef::Named { name, tag })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ModelRef::Path(path) => write!(f, "{}", path.display()),
            ModelRef::Named {
                name,
                tag: Some(tag),
            } => write!(f, "{name}:{tag}"),
            ModelRef::Named { name, tag: None } => write!(f, "{name}"),
            ModelRef::HuggingFace(hf) => write!(f, "{hf}"),
            ModelRef::Url(url) => write!(f, "{url}"),
            ModelRef::Pip(pip) => write!(f, "{pip}"),
        }
    }
}

impl HfRef {
    fn parse(rest: &str) -> Result<HfRef, String> {
        let mut parts = rest.splitn(3, '/');
        let (Some(org), Some(repo), Some(file)) = (parts.next(), parts.next(), parts.next()) else {
            return Err("expected hf://org/repo/file.gguf".into());
        };
        let (repo, revision_in_repo) = match repo.split_once('@') {
            Some((repo, revision)) => (repo, Some(revision)),
            None => (repo, None),
        };
        let (file, revision_in_file) = match file.rsplit_once('@') {
            Some((file, revision)) => (file, Some(revision)),
            None => (file, None),
        };
        if org.is_empty() || repo.is_empty() || file.is_empty() || file.ends_with('/') {
            return Err("expected hf://org/repo/file.gguf".into());
        }
        if file
            .split('/')
            .any(|segment| segment.is_empty() || segment == "..")
        {
            return Err(format!("bad file path `{file}`"));
        }
        let revision = match (revision_in_repo, revision_in_file) {
            (Some(_), Some(_)) => return Err("the revision is given twice".into()),
            (Some(revision), None) | (None, Some(revision)) if revision.is_empty() => {
                return Err("empty revision after `@`".into());
            }
            (revision, None) | (None, revision) => revision.map(str::to_string),
        };
        Ok(HfRef {
            repo: format!("{org}/{repo}"),
            file: file.to_string(),
            revision,
        })
    }

    /// The download URL under `endpoint`, as huggingface_hub builds it
    /// (`{endpoint}/{repo}/resolve/{revision}/{file}`, the revision percent-encoded whole
    /// so `refs/pr/1` stays one path segment).
    pub fn url(&self, endpoint: &str) -> String {
        let revision = self.revision.as_deref().unwrap_or("main");
        let file: Vec<String> = self.file.split('/').map(percent_encode).collect();
        format!(
            "{}/{}/resolve/{}/{}",
            endpoint.trim_end_matches('/'),
            self.repo,
            percent_encode(revision),
            file.join("/")
        )
    }
}

impl fmt::Display for HfRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.revision {
            Some(revision) => write!(f, "hf://{}@{revision}/{}", self.repo, self.file),
            None => write!(f, "hf://{}/{}", self.repo, self.file),
        }
    }
}

impl PipRef {
    fn parse(rest: &str) -> Result<PipRef, String> {
        let mut packages = Vec::new();
        for item in rest.split(',') {
            let item = item.trim();
            let (spec, member) = match item.split_once('#') {
                Some((spec, member)) if !member.is_empty() => (spec, Some(member.to_string())),
                Some(_) => return Err(format!("empty wheel path after `#` in `{item}`")),
                None => (item, None),
            };
            let Some((name, version)) = spec.split_once("==") else {
                return Err(format!(
                    "`{item}` is not NAME==VERSION (an exact version is required)"
                ));
            };
            let valid = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_.+!".contains(c))
            };
            if !valid(name) || !valid(version) {
                return Err(format!("`{spec}` is not a valid NAME==VERSION"));
            }
            packages.push(PipPackage {
                name: name.to_string(),
                version: version.to_string(),
                member,
            });
        }
        if packages.is_empty() {
            return Err("no package given".into());
        }
        Ok(PipRef { packages })
    }

    /// The arguments for `pip download`, one per package.
    pub fn requirements(&self) -> Vec<String> {
        self.packages
            .iter()
            .map(|p| format!("{}=={}", p.name, p.version))
            .collect()
    }
}

impl fmt::Display for PipRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let items: Vec<String> = self
            .packages
            .iter()
            .map(|p| match &p.member {
                Some(member) => format!("{}=={}#{member}", p.name, p.version),
                None => format!("{}=={}", p.name, p.version),
            })
            .collect();
        write!(f, "pip:{}", items.join(","))
    }
}

/// Store names: lowercase ASCII letters, digits, `.`, `-`, `_`; starting with a letter or
/// digit; at most 128 bytes. They become directory names, so nothing else is allowed.
pub fn validate_name(name: &str) -> Result<(), String> {
    validate_component(name, "name")
}

/// Tags follow the same rule as names.
pub fn validate_tag(tag: &str) -> Result<(), String> {
    validate_component(tag, "tag")
}

fn validate_component(text: &str, what: &str) -> Result<(), String> {
    if text.is_empty() {
        return Err(format!("empty {what}"));
    }
    if text.len() > 128 {
        return Err(format!("{what} longer than 128 characters"));
    }
    let first_ok = text
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric());
    let all_ok = text
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    if !first_ok || !all_ok {
        return Err(format!(
            "{what} `{text}` may only hold a-z, 0-9, `.`, `-`, `_` and must start with a letter \
             or digit"
        ));
    }
    Ok(())
}

/// Makes a valid store name out of arbitrary text (a file stem, a package name).
pub fn sanitize_name(text: &str) -> String {
    let mut out = String::new();
    for c in text.chars() {
        let c = c.to_ascii_lowercase();
        if c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c) {
            out.push(c);
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    let out = out.trim_start_matches(['.', '-', '_']).to_string();
    let mut out: String = out.chars().take(128).collect();
    if out.is_empty() {
        out.push_str("model");
    }
    out
}

fn expand_home(text: &str) -> PathBuf {
    if let Some(rest) = text.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    PathBuf::from(text)
}

/// Percent-encodes everything outside RFC 3986's unreserved set.
fn percent_encode(text: &str) -> String {
    let mut out = String::new();
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn named(name: &str, tag: Option<&str>) -> ModelRef {
        ModelRef::Named {
            name: name.into(),
            tag: tag.map(Into::into),
        }
    }

    #[test]
    fn names_and_tags() {
        assert_eq!(
            ModelRef::parse("smollm2-135m-instruct").unwrap(),
            named("smollm2-135m-instruct", None)
        );
        assert_eq!(
            ModelRef::parse("SmolLM2-135M-Instruct:Q4_1").unwrap(),
            named("smollm2-135m-instruct", Some("q4_1"))
        );
        assert_eq!(
            ModelRef::parse("qwen3-0.6b:latest").unwrap(),
            named("qwen3-0.6b", Some("latest"))
        );
        for bad in ["bad name", "-x", "x:", "x:y:z", "x:$", ":tag"] {
            let err = ModelRef::parse(bad).unwrap_err();
            assert!(
                matches!(err, Error::InvalidReference { .. }),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn paths() {
        for text in ["./m.gguf", "/tmp/x", "model.GGUF", "../a/b", "dir/file"] {
            assert_eq!(
                ModelRef::parse(text).unwrap(),
                ModelRef::Path(PathBuf::from(text)),
                "{text}"
            );
        }
    }

    #[test]
    fn urls_and_schemes() {
        assert_eq!(
            ModelRef::parse("https://example.com/a.gguf").unwrap(),
            ModelRef::Url("https://example.com/a.gguf".into())
        );
        let err = ModelRef::parse("ftp://example.com/a.gguf")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported scheme `ftp://`"), "{err}");
        assert!(ModelRef::parse("https://").is_err());
    }

    #[test]
    fn hugging_face() {
        let ModelRef::HuggingFace(hf) = ModelRef::parse(
            "hf://HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/smollm2-135m-instruct-q8_0.gguf",
        )
        .unwrap() else {
            panic!("not hf")
        };
        assert_eq!(hf.repo, "HuggingFaceTB/SmolLM2-135M-Instruct-GGUF");
        assert_eq!(hf.file, "smollm2-135m-instruct-q8_0.gguf");
        assert_eq!(hf.revision, None);
        assert_eq!(
            hf.url("https://huggingface.co/"),
            "https://huggingface.co/HuggingFaceTB/SmolLM2-135M-Instruct-GGUF/resolve/main/smollm2-135m-instruct-q8_0.gguf"
        );

        let ModelRef::HuggingFace(a) =
            ModelRef::parse("hf://org/repo@v1.0/sub dir/f.gguf").unwrap()
        else {
            panic!()
        };
        let ModelRef::HuggingFace(b) =
            ModelRef::parse("hf://org/repo/sub dir/f.gguf@v1.0").unwrap()
        else {
            panic!()
        };
        assert_eq!(a, b);
        assert_eq!(
            a.url("http://127.0.0.1:9"),
            "http://127.0.0.1:9/org/repo/resolve/v1.0/sub%20dir/f.gguf"
        );
        let ModelRef::HuggingFace(pr) = ModelRef::parse("hf://o/r@refs/pr/1/x.gguf").unwrap()
        else {
            panic!()
        };
        // `refs` is the revision here and `pr/1/x.gguf` the file: the HfFileSystem form
        // takes the revision up to the next `/`; the trailing form allows slashes.
        assert_eq!(pr.revision.as_deref(), Some("refs"));
        let ModelRef::HuggingFace(pr) = ModelRef::parse("hf://o/r/x.gguf@refs/pr/1").unwrap()
        else {
            panic!()
        };
        assert_eq!(
            pr.url("http://h"),
            "http://h/o/r/resolve/refs%2Fpr%2F1/x.gguf"
        );
        for bad in [
            "hf://org/repo",
            "hf://org//f.gguf",
            "hf://o/r@a/f.gguf@b",
            "hf://o/r/../x",
            "hf://o/r/f@",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn pip_packages() {
        let ModelRef::Pip(pip) =
            ModelRef::parse("pip:a-part1==1.0.0,a-part2==1.0.0#a/data/x.bin").unwrap()
        else {
            panic!()
        };
        assert_eq!(pip.packages.len(), 2);
        assert_eq!(pip.packages[1].member.as_deref(), Some("a/data/x.bin"));
        assert_eq!(pip.requirements(), ["a-part1==1.0.0", "a-part2==1.0.0"]);
        assert_eq!(
            pip.to_string(),
            "pip:a-part1==1.0.0,a-part2==1.0.0#a/data/x.bin"
        );
        for bad in [
            "pip:",
            "pip:pkg",
            "pip:pkg>=1",
            "pip:pkg==1#",
            "pip:p;rm==1",
        ] {
            let err = ModelRef::parse(bad).unwrap_err().to_string();
            assert!(err.starts_with("invalid model reference"), "{bad}: {err}");
        }
    }

    #[test]
    fn sanitized_names_are_valid() {
        for text in [
            "SmolLM2-135M-Instruct.Q4_1",
            "my model (v2)",
            "..",
            "",
            "___x",
        ] {
            let name = sanitize_name(text);
            validate_name(&name).unwrap_or_else(|e| panic!("{text} -> {name}: {e}"));
        }
        assert_eq!(
            sanitize_name("SmolLM2-135M-Instruct.Q4_1"),
            "smollm2-135m-instruct.q4_1"
        );
    }
}
