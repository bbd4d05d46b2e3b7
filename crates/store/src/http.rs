//! Resumable HTTP downloads into the store's `tmp/` directory.
//!
//! A download of URL `u` writes `tmp/http-<key(u)>.partial` and keeps what it learned about
//! the remote file (ETag, Last-Modified, total size) in `tmp/http-<key(u)>.json`. When the
//! connection drops, the same pull retries with `Range: bytes=<have>-` (and `If-Range` with
//! the validator, so a changed remote file restarts from zero rather than splicing two
//! versions); when the process is killed, the next pull of the same URL finds the partial
//! file and resumes the same way. A per-URL lock file keeps two pulls from writing the same
//! partial file. Semantics follow RFC 9110 §14 (range requests).

use std::fs::{self, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::blocking::{Client, Response};
use reqwest::header::{self, HeaderMap};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fsutil::{self, FileLock};
use crate::progress::Progress;

/// Attempts in a row that make no progress before a download gives up.
const MAX_STALLED_ATTEMPTS: u32 = 3;
/// How long one read may wait for data before the attempt counts as failed.
const READ_TIMEOUT: Duration = Duration::from_secs(60);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// What to download.
#[derive(Clone, Debug)]
pub(crate) struct HttpRequest {
    pub url: String,
    /// Sent as `Authorization: Bearer …` (Hugging Face tokens).
    pub bearer: Option<String>,
    /// The URL is a Hugging Face file (changes the advice on 401/403).
    pub hugging_face: bool,
    /// Shown in progress and error messages.
    pub label: String,
}

/// A finished download: the complete file, still in `tmp/`.
#[derive(Debug)]
pub(crate) struct Downloaded {
    pub path: PathBuf,
    meta_path: PathBuf,
    _lock: FileLock,
}

impl Downloaded {
    /// Forgets the download (after it was installed or rejected).
    pub(crate) fn discard(self) -> Result<()> {
        fsutil::remove_if_exists(&self.path)?;
        fsutil::remove_if_exists(&self.meta_path)
    }
}

/// What a previous attempt learned about the remote file.
#[derive(Debug, Default, Deserialize, Serialize)]
struct PartialMeta {
    url: String,
    etag: Option<String>,
    last_modified: Option<String>,
    total: Option<u64>,
}

/// Downloads `request` into `tmp_dir`, resuming a partial file left by an earlier attempt.
pub(crate) fn download(
    request: &HttpRequest,
    tmp_dir: &Path,
    locks_dir: &Path,
    progress: &dyn Progress,
) -> Result<Downloaded> {
    let key = fsutil::short_key(&request.url);
    let partial = tmp_dir.join(format!("http-{key}.partial"));
    let meta_path = tmp_dir.join(format!("http-{key}.json"));
    let lock = FileLock::acquire(&locks_dir.join(format!("http-{key}.lock")), || {
        progress.note(&format!("waiting for another download of {}", request.url));
    })?;
    fs::create_dir_all(tmp_dir).map_err(|e| Error::io("creating directory", tmp_dir, e))?;

    let mut meta = match fs::read(&meta_path) {
        Ok(bytes) => serde_json::from_slice::<PartialMeta>(&bytes).unwrap_or_default(),
        Err(_) => PartialMeta::default(),
    };
    if meta.url != request.url {
        // A partial file without (matching) metadata cannot be trusted to be a prefix of
        // this URL's content.
        fsutil::remove_if_exists(&partial)?;
        meta = PartialMeta {
            url: request.url.clone(),
            ..PartialMeta::default()
        };
    }

    let client = client_for(&request.url)?;
    let mut stalled = 0u32;
    loop {
        if stalled > 0 {
            std::thread::sleep(Duration::from_millis(250 << stalled.min(5)));
        }
        let have = fs::metadata(&partial).map(|m| m.len()).unwrap_or(0);
        if have > 0 && meta.total == Some(have) {
            break; // complete from an earlier attempt (killed before it was installed)
        }
        match attempt(
            &client, request, &partial, have, &mut meta, &meta_path, progress,
        ) {
            Ok(Attempt::Complete) => break,
            Ok(Attempt::Restart) => {
                fsutil::remove_if_exists(&partial)?;
            }
            Err(Retry { error, progressed }) => {
                if !is_transient(&error) {
                    progress.finish();
                    // What was received cannot be a prefix of the right file (or the file
                    // is gone): keep nothing a later pull could resume from.
                    fsutil::remove_if_exists(&partial)?;
                    fsutil::remove_if_exists(&meta_path)?;
                    return Err(error);
                }
                stalled = if progressed { 1 } else { stalled + 1 };
                if stalled >= MAX_STALLED_ATTEMPTS {
                    progress.finish();
                    return Err(error); // the partial file stays: a later pull resumes it
                }
                let reason = match &error {
                    Error::Network { reason, .. } => reason.clone(),
                    other => other.to_string(),
                };
                progress.note(&format!(
                    "{}: {reason}; retrying ({}/{MAX_STALLED_ATTEMPTS})",
                    request.label,
                    stalled + 1
                ));
            }
        }
    }
    progress.finish();
    Ok(Downloaded {
        path: partial,
        meta_path,
        _lock: lock,
    })
}

enum Attempt {
    Complete,
    /// The partial file cannot be resumed: start again from byte 0.
    Restart,
}

struct Retry {
    error: Error,
    /// Bytes arrived before the failure (the stall counter starts over).
    progressed: bool,
}

impl From<Error> for Retry {
    fn from(error: Error) -> Retry {
        Retry {
            error,
            progressed: false,
        }
    }
}

fn attempt(
    client: &Client,
    request: &HttpRequest,
    partial: &Path,
    have: u64,
    meta: &mut PartialMeta,
    meta_path: &Path,
    progress: &dyn Progress,
) -> Result<Attempt, Retry> {
    let url = &request.url;
    let mut builder = client.get(url);
    if let Some(token) = &request.bearer {
        builder = builder.bearer_auth(token);
    }
    if have > 0 {
        builder = builder.header(header::RANGE, format!("bytes={have}-"));
        // Only a strong validator may guard a range request.
        if let Some(etag) = meta.etag.as_ref().filter(|e| !e.starts_with("W/")) {
            builder = builder.header(header::IF_RANGE, etag.as_str());
        } else if let Some(date) = &meta.last_modified {
            builder = builder.header(header::IF_RANGE, date.as_str());
        }
    }
    let response = builder.send().map_err(|e| Error::Network {
        url: url.clone(),
        reason: short_reason(&e),
    })?;
    let status = response.status();
    let start = match status {
        StatusCode::OK => {
            if have > 0 {
                progress.note("the server does not resume this download: starting over");
            }
            0
        }
        StatusCode::PARTIAL_CONTENT => {
            let range = content_range(response.headers()).ok_or_else(|| Error::BadResponse {
                url: url.clone(),
                reason: "206 without a valid Content-Range".into(),
            })?;
            if range.start != have {
                progress.note("the server resumed at another offset: starting over");
                return Ok(Attempt::Restart);
            }
            progress.note(&format!("resuming at byte {have}"));
            meta.total = range.total;
            have
        }
        StatusCode::RANGE_NOT_SATISFIABLE => {
            let total = content_range(response.headers()).and_then(|r| r.total);
            if total == Some(have) {
                meta.total = total;
                return Ok(Attempt::Complete);
            }
            return Ok(Attempt::Restart);
        }
        StatusCode::NOT_FOUND => return Err(Error::NotFound { url: url.clone() }.into()),
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => {
            return Err(Error::Unauthorized {
                url: url.clone(),
                status: status.as_u16(),
                hugging_face: request.hugging_face,
                token_sent: request.bearer.is_some(),
            }
            .into());
        }
        _ => {
            return Err(Error::HttpStatus {
                url: url.clone(),
                status: status.as_u16(),
            }
            .into());
        }
    };
    if start == 0 {
        meta.total = response.content_length();
    }
    meta.etag = header_string(&response, header::ETAG);
    meta.last_modified = header_string(&response, header::LAST_MODIFIED);
    let meta_bytes = serde_json::to_vec(meta).map_err(|e| Error::Corrupt {
        path: meta_path.to_path_buf(),
        reason: e.to_string(),
    })?;
    fsutil::write_atomic(meta_path, &meta_bytes)?;
    copy_body(response, request, partial, start, meta.total, progress)
}

/// Streams the body to the partial file, appending at `start`.
fn copy_body(
    mut response: Response,
    request: &HttpRequest,
    partial: &Path,
    start: u64,
    total: Option<u64>,
    progress: &dyn Progress,
) -> Result<Attempt, Retry> {
    let url = &request.url;
    let mut file = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(start == 0)
        .open(partial)
        .map_err(|e| Error::io("opening", partial, e))?;
    file.set_len(start)
        .map_err(|e| Error::io("truncating", partial, e))?;
    file.seek(SeekFrom::Start(start))
        .map_err(|e| Error::io("seeking", partial, e))?;

    progress.begin(&request.label, total);
    progress.advance(start);
    let mut position = start;
    let mut magic_checked = start >= 4;
    let mut head = Vec::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let n = match response.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                let _ = file.sync_data();
                return Err(Retry {
                    error: Error::Network {
                        url: url.clone(),
                        reason: format!("connection lost at byte {position}: {e}"),
                    },
                    progressed: position > start,
                });
            }
        };
        if !magic_checked {
            head.extend_from_slice(&buffer[..n]);
            if head.len() >= 4 {
                check_magic(&head, url)?;
                magic_checked = true;
            }
        }
        file.write_all(&buffer[..n])
            .map_err(|e| Error::io("writing", partial, e))?;
        position += n as u64;
        if total.is_some_and(|t| position > t) {
            return Err(Error::BadResponse {
                url: url.clone(),
                reason: format!("more bytes than the {} announced", total.unwrap_or(0)),
            }
            .into());
        }
        progress.advance(position);
    }
    file.sync_all()
        .map_err(|e| Error::io("syncing", partial, e))?;
    if !magic_checked {
        check_magic(&head, url)?;
    }
    match total {
        Some(total) if position < total => Err(Retry {
            error: Error::Network {
                url: url.clone(),
                reason: format!("connection closed at byte {position} of {total}"),
            },
            progressed: position > start,
        }),
        _ => Ok(Attempt::Complete),
    }
}

fn check_magic(head: &[u8], url: &str) -> Result<()> {
    if head.starts_with(b"GGUF") {
        Ok(())
    } else {
        Err(Error::NotGguf {
            source_name: url.to_string(),
            found: fsutil::describe_prefix(head),
        })
    }
}

/// Whether another attempt can help.
fn is_transient(error: &Error) -> bool {
    match error {
        Error::Network { .. } => true,
        Error::HttpStatus { status, .. } => *status >= 500 || *status == 408 || *status == 429,
        _ => false,
    }
}

struct ContentRange {
    start: u64,
    total: Option<u64>,
}

/// Parses `bytes START-END/TOTAL` or `bytes */TOTAL`.
fn content_range(headers: &HeaderMap) -> Option<ContentRange> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let rest = value.trim().strip_prefix("bytes ")?;
    let (range, total) = rest.split_once('/')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    if range == "*" {
        return Some(ContentRange {
            start: u64::MAX,
            total,
        });
    }
    let (start, _end) = range.split_once('-')?;
    Some(ContentRange {
        start: start.parse().ok()?,
        total,
    })
}

fn header_string(response: &Response, name: header::HeaderName) -> Option<String> {
    response
        .headers()
        .get(name)?
        .to_str()
        .ok()
        .map(str::to_string)
}

/// A short reason for a failed request: what failed (connect, timeout) and the innermost
/// cause, without reqwest's outer "error sending request for url (…)" (the URL is in the
/// message already).
fn short_reason(error: &reqwest::Error) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(cause) = innermost.source() {
        innermost = cause;
    }
    let kind = if error.is_timeout() {
        "timed out: "
    } else if error.is_connect() {
        "cannot connect: "
    } else {
        ""
    };
    format!("{kind}{innermost}")
}

/// A client for `url`. Loopback addresses bypass any configured proxy: a proxy cannot reach
/// this machine's loopback interface, and tests serve from there.
fn client_for(url: &str) -> Result<Client> {
    static PROVIDER: OnceLock<()> = OnceLock::new();
    PROVIDER.get_or_init(|| {
        // Another part of the process may have installed the same provider first; either
        // way one is installed afterwards.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
    let host = url.split_once("://").map_or("", |(_, rest)| rest);
    let loopback = ["127.", "localhost", "[::1]"]
        .iter()
        .any(|p| host.starts_with(p));
    let mut builder = Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(READ_TIMEOUT)
        .user_agent(concat!("tern/", env!("CARGO_PKG_VERSION")));
    if loopback {
        builder = builder.no_proxy();
    }
    builder.build().map_err(|e| Error::Network {
        url: url.to_string(),
        reason: short_reason(&e),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn content_ranges_parse() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 100-199/1000"),
        );
        let r = content_range(&headers).unwrap();
        assert_eq!((r.start, r.total), (100, Some(1000)));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */1000"),
        );
        assert_eq!(content_range(&headers).unwrap().total, Some(1000));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 5-9/*"),
        );
        assert_eq!(content_range(&headers).unwrap().total, None);
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("items 1-2/3"),
        );
        assert!(content_range(&headers).is_none());
    }

    #[test]
    fn only_network_and_server_errors_are_retried() {
        let url = String::from("http://x");
        assert!(is_transient(&Error::Network {
            url: url.clone(),
            reason: String::new()
        }));
        assert!(is_transient(&Error::HttpStatus {
            url: url.clone(),
            status: 503
        }));
        assert!(!is_transient(&Error::NotFound { url: url.clone() }));
        assert!(!is_transient(&Error::NotGguf {
            source_name: url,
            found: String::new()
        }));
    }
}
