//! A small HTTP/1.1 file server on loopback for download tests.
//!
//! It serves byte buffers at paths, honours `Range: bytes=N-`, and can misbehave on
//! purpose: drop the connection after some bytes, trickle slowly, answer with a status,
//! demand a Bearer token, redirect. Every request is logged (path, Range, Authorization)
//! so tests can check what the client sent. Shared by the store's and the CLI's tests.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

/// How one path is served.
#[derive(Clone, Debug, Default)]
pub struct Route {
    pub body: Vec<u8>,
    /// Answer with this status and no file.
    pub status: Option<u16>,
    /// The first `n` requests send only this many bytes of their answer, then close.
    pub drop_after: Option<(usize, u64)>,
    /// Sleep this long after each 16 KiB chunk.
    pub delay_per_chunk: Option<Duration>,
    /// 401 unless `Authorization: Bearer <token>` is sent.
    pub bearer: Option<String>,
    /// Answer 302 to this location.
    pub redirect: Option<String>,
    /// Ignore Range headers (answer 200 with the whole body).
    pub ignore_range: bool,
}

impl Route {
    pub fn file(body: Vec<u8>) -> Route {
        Route {
            body,
            ..Route::default()
        }
    }
    pub fn status(status: u16) -> Route {
        Route {
            status: Some(status),
            body: b"<!DOCTYPE html><html>error</html>".to_vec(),
            ..Route::default()
        }
    }
}

/// One request as the server saw it.
#[derive(Clone, Debug)]
pub struct Logged {
    pub path: String,
    pub range: Option<String>,
    pub if_range: Option<String>,
    pub authorization: Option<String>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Route>,
    served: HashMap<String, usize>,
    log: Vec<Logged>,
}

pub struct TestServer {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start() -> TestServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (state2, stop2) = (state.clone(), stop.clone());
        thread::spawn(move || {
            for stream in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let state = state2.clone();
                thread::spawn(move || {
                    let _ = handle(stream, &state);
                });
            }
        });
        TestServer { addr, state, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn route(&self, path: &str, route: Route) {
        self.state
            .lock()
            .unwrap()
            .routes
            .insert(path.to_string(), route);
    }

    pub fn log(&self) -> Vec<Logged> {
        self.state.lock().unwrap().log.clone()
    }

    pub fn requests_to(&self, path: &str) -> Vec<Logged> {
        self.log().into_iter().filter(|l| l.path == path).collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr); // wake the accept loop
    }
}

fn handle(mut stream: TcpStream, state: &Mutex<State>) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    let mut headers = HashMap::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
        if let Some((name, value)) = line.split_once(':') {
            headers.insert(name.trim().to_ascii_lowercase(), value.trim().to_string());
        }
    }
    let (route, nth) = {
        let mut state = state.lock().unwrap();
        state.log.push(Logged {
            path: path.clone(),
            range: headers.get("range").cloned(),
            if_range: headers.get("if-range").cloned(),
            authorization: headers.get("authorization").cloned(),
        });
        let route = state.routes.get(&path).cloned();
        let served = state.served.entry(path.clone()).or_insert(0);
        *served += 1;
        (route, *served)
    };
    let Some(route) = route else {
        return respond(&mut stream, 404, &[], b"not found");
    };
    if let Some(token) = &route.bearer
        && headers.get("authorization") != Some(&format!("Bearer {token}"))
    {
        return respond(&mut stream, 401, &[], b"unauthorized");
    }
    if let Some(location) = &route.redirect {
        return respond(&mut stream, 302, &[("Location", location.clone())], b"");
    }
    if let Some(status) = route.status {
        return respond(
            &mut stream,
            status,
            &[("Content-Type", "text/html".into())],
            &route.body,
        );
    }
    let total = route.body.len() as u64;
    let start = match headers.get("range").and_then(|r| r.strip_prefix("bytes=")) {
        Some(range) if !route.ignore_range => {
            let start: u64 = range
                .trim_end_matches('-')
                .split('-')
                .next()
                .unwrap_or("0")
                .parse()
                .unwrap_or(0);
            if start >= total {
                return respond(
                    &mut stream,
                    416,
                    &[("Content-Range", format!("bytes */{total}"))],
                    b"",
                );
            }
            Some(start)
        }
        _ => None,
    };
    let etag = ("ETag", "\"tern-test-v1\"".to_string());
    let (status, extra, body) = match start {
        Some(start) => (
            206,
            vec![
                etag,
                (
                    "Content-Range",
                    format!("bytes {start}-{}/{total}", total - 1),
                ),
            ],
            &route.body[start as usize..],
        ),
        None => (200, vec![etag], &route.body[..]),
    };
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nAccept-Ranges: bytes\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in &extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let limit = match route.drop_after {
        Some((times, bytes)) if nth <= times => bytes.min(body.len() as u64) as usize,
        _ => body.len(),
    };
    for chunk in body[..limit].chunks(16 * 1024) {
        stream.write_all(chunk)?;
        if let Some(delay) = route.delay_per_chunk {
            stream.flush()?;
            thread::sleep(delay);
        }
    }
    stream.flush()?;
    if limit < body.len() {
        // Abort: close without sending the rest.
        stream.shutdown(std::net::Shutdown::Both)?;
    }
    Ok(())
}

fn respond(
    stream: &mut TcpStream,
    status: u16,
    extra: &[(&str, String)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head = format!(
        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n",
        body.len()
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}
