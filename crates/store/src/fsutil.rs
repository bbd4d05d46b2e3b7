//! File-system helpers for crash safety: atomic writes, directory fsync, file locks, hashing.
//!
//! The install protocol everywhere is: write a temporary file in the same directory tree,
//! fsync it, rename it over the target, fsync the directory. A process killed at any point
//! leaves either the old state or the new one, never a half-written file under a final name.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::progress::Progress;

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, directory fsync).
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let tmp = dir.join(format!(".{file_name}.tmp-{}", std::process::id()));
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()
    })();
    if let Err(e) = result {
        let _ = fs::remove_file(&tmp);
        return Err(Error::io("writing", &tmp, e));
    }
    rename_durable(&tmp, path)
}

/// Renames `from` to `to` and fsyncs the destination directory.
pub(crate) fn rename_durable(from: &Path, to: &Path) -> Result<()> {
    fs::rename(from, to).map_err(|e| Error::io("renaming into place", to, e))?;
    if let Some(dir) = to.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Fsyncs a directory so a rename or removal in it survives a power loss.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| Error::io("syncing directory", dir, e))
}

/// Removes a file, ignoring "not found".
pub(crate) fn remove_if_exists(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(Error::io("removing", path, e)),
        _ => Ok(()),
    }
}

/// An exclusive advisory lock (flock), released when dropped or when the process dies.
#[derive(Debug)]
pub(crate) struct FileLock {
    _file: File,
}

impl FileLock {
    /// Takes the lock at `path`, calling `on_wait` once if another process holds it.
    pub(crate) fn acquire(path: &Path, on_wait: impl FnOnce()) -> Result<FileLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir).map_err(|e| Error::io("creating directory", dir, e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| Error::io("opening lock file", path, e))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                on_wait();
                file.lock().map_err(|e| Error::io("locking", path, e))?;
            }
            Err(fs::TryLockError::Error(e)) => return Err(Error::io("locking", path, e)),
        }
        Ok(FileLock { _file: file })
    }
}

/// Lowercase hex of `bytes`.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short stable key for a string (URLs, package specs): 32 hex digits of its sha256.
pub(crate) fn short_key(text: &str) -> String {
    let digest = Sha256::digest(text.as_bytes());
    hex(&digest[..16])
}

/// Sha256 of a file, reporting progress as it reads.
pub(crate) fn sha256_file(path: &Path, progress: &dyn Progress) -> Result<String> {
    let mut file = File::open(path).map_err(|e| Error::io("opening", path, e))?;
    let total = file.metadata().map(|m| m.len()).ok();
    progress.begin("verifying sha256", total);
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut done = 0u64;
    loop {
        let n = file
            .read(&mut buffer)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        done += n as u64;
        progress.advance(done);
    }
    progress.finish();
    Ok(hex(&hasher.finalize()))
}

/// Total size of the regular files under `dir` (0 when it does not exist).
pub(crate) fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|entry| match entry.file_type() {
            Ok(t) if t.is_dir() => tree_size(&entry.path()),
            Ok(t) if t.is_file() => entry.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}

/// Bytes in the files under `dirs`, counting a file name found in several places once (at
/// its largest): pip downloads into a temporary directory and then copies into the
/// destination, and this follows the download without counting the copy twice.
pub(crate) fn distinct_file_bytes(dirs: &[&Path]) -> u64 {
    fn walk(dir: &Path, sizes: &mut std::collections::HashMap<std::ffi::OsString, u64>) {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            match entry.file_type() {
                Ok(t) if t.is_dir() => walk(&entry.path(), sizes),
                Ok(t) if t.is_file() => {
                    let size = entry.metadata().map(|m| m.len()).unwrap_or(0);
                    let slot = sizes.entry(entry.file_name()).or_insert(0);
                    *slot = (*slot).max(size);
                }
                _ => {}
            }
        }
    }
    let mut sizes = std::collections::HashMap::new();
    for dir in dirs {
        walk(dir, &mut sizes);
    }
    sizes.values().sum()
}

/// Describes the first bytes of non-GGUF content for an error message.
pub(crate) fn describe_prefix(bytes: &[u8]) -> String {
    let shown = &bytes[..bytes.len().min(16)];
    if shown.is_empty() {
        return "nothing (the content is empty)".into();
    }
    if shown.iter().all(|b| b.is_ascii_graphic() || *b == b' ') {
        format!("`{}`", String::from_utf8_lossy(shown))
    } else {
        format!("bytes {}", hex(shown))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_and_leaves_no_temp() {
        let dir = std::env::temp_dir().join(format!("tern-fsutil-{}", std::process::id()));
        let path = dir.join("a.json");
        write_atomic(&path, b"one").unwrap();
        write_atomic(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn prefixes_are_described() {
        assert_eq!(
            describe_prefix(b"<!DOCTYPE html><html>"),
            "`<!DOCTYPE html><`"
        );
        assert_eq!(describe_prefix(&[0, 1, 2]), "bytes 000102");
        assert_eq!(describe_prefix(b""), "nothing (the content is empty)");
    }

    #[test]
    fn lock_excludes_a_second_holder() {
        let dir = std::env::temp_dir().join(format!("tern-lock-{}", std::process::id()));
        let path = dir.join("x.lock");
        let first = FileLock::acquire(&path, || panic!("free lock waited")).unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        let p = path.clone();
        let waiter = std::thread::spawn(move || {
            let _second = FileLock::acquire(&p, || tx.send("waiting").unwrap()).unwrap();
        });
        assert_eq!(
            rx.recv_timeout(std::time::Duration::from_secs(10)).unwrap(),
            "waiting"
        );
        drop(first);
        waiter.join().unwrap();
        fs::remove_dir_all(&dir).unwrap();
    }
}
