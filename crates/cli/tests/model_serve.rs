//! `tern serve` as users run it: the real binary on an ephemeral loopback port, exercised
//! by the official `openai` Python package and by Ollama-style NDJSON requests
//! (tests/python, run with the project venv's Python), then stopped with SIGTERM.

mod support;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use support::{run, tern};
use tern_testkit::{TestModel, model_path, repo_root};

const KEY: &str = "test-key-0123";

/// The venv's Python (`$TERN_PYTHON` when set), which has the `openai` package from
/// requirements-test.txt.
fn python() -> PathBuf {
    match std::env::var_os("TERN_PYTHON") {
        Some(python) => PathBuf::from(python),
        None => repo_root().join(".cache/venv/bin/python"),
    }
}

/// Kills the server if the test fails before stopping it.
struct Server(Child);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts `tern serve --json` with the SmolLM2 file and reads the address it printed.
fn start(home: &std::path::Path) -> (Server, String) {
    let mut command = tern(home);
    command
        .args(["serve", "--json", "--port", "0", "--api-key", KEY])
        .args([
            "--max-tokens",
            "256",
            "--ctx-size",
            "1024",
            "--parallel",
            "2",
        ])
        .args(["--threads", "1", "--shutdown-timeout", "20"])
        .arg("--model")
        .arg(model_path(TestModel::SmolLm2_135m));
    let (server, listening) = spawn(command);
    assert_eq!(
        listening["models"],
        serde_json::json!(["smollm2-135m-instruct-q4_1"])
    );
    (
        server,
        listening["listening"].as_str().expect("url").to_string(),
    )
}

/// Spawns a `tern serve --json` command and reads the object it prints once listening.
fn spawn(mut command: Command) -> (Server, serde_json::Value) {
    let mut child = command
        .env("TERN_THREADS", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start tern serve");
    let stdout = child.stdout.take().expect("stdout");
    let server = Server(child);
    // `--json` prints one pretty-printed object once the socket is bound.
    let mut text = String::new();
    let mut lines = BufReader::new(stdout).lines();
    let listening: serde_json::Value = loop {
        let line = lines
            .next()
            .expect("tern serve printed its address")
            .expect("read stdout");
        text.push_str(&line);
        if line == "}" {
            break serde_json::from_str(&text).expect("JSON");
        }
    };
    let url = listening["listening"].as_str().expect("url");
    assert!(url.starts_with("http://127.0.0.1:"), "{url}");
    (server, listening)
}

/// `GET path` over a fresh loopback connection: (status, body).
fn http_get(url: &str, path: &str, key: Option<&str>) -> (u16, String) {
    http(url, "GET", path, key, "")
}

/// One request over a fresh loopback connection: (status, body).
fn http(url: &str, method: &str, path: &str, key: Option<&str>, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let address = url.trim_start_matches("http://");
    let mut socket = std::net::TcpStream::connect(address).expect("connect");
    let auth = key.map_or_else(String::new, |k| format!("Authorization: Bearer {k}\r\n"));
    write!(
        socket,
        "{method} {path} HTTP/1.1\r\nHost: {address}\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .expect("send");
    let mut response = String::new();
    socket.read_to_string(&mut response).expect("read");
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = response.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, body.to_string())
}

/// Sends SIGTERM and expects a clean exit.
fn stop(server: &mut Server) {
    let pid = server.0.id().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let code = loop {
        if let Some(status) = server.0.try_wait().expect("wait") {
            break status.code();
        }
        assert!(
            Instant::now() < deadline,
            "tern serve did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(code, Some(0));
}

#[test]
fn openai_python_client_and_ollama_requests_against_tern_serve() {
    let home = tempfile::tempdir().expect("temp dir");
    let (mut server, url) = start(home.path());
    let output = Command::new(python())
        .args(["-m", "unittest", "discover", "-v", "-s"])
        .arg(repo_root().join("tests/python"))
        .arg("-p")
        .arg("test_*.py")
        .env("TERN_TEST_BASE_URL", &url)
        .env("TERN_TEST_API_KEY", KEY)
        .env("TERN_TEST_MODEL", "smollm2-135m-instruct-q4_1")
        .env_remove("OPENAI_API_KEY")
        .env_remove("OPENAI_BASE_URL")
        .stdin(Stdio::null())
        .output()
        .expect("run python");
    let report = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "python tests failed:\n{report}");
    // unittest reports "Ran N tests ... OK": make sure the tests really ran.
    let ran: usize = report
        .lines()
        .find_map(|l| l.strip_prefix("Ran ")?.split(' ').next()?.parse().ok())
        .expect("a test count");
    assert!(ran >= 18, "only {ran} Python tests ran:\n{report}");
    eprintln!("{report}");

    // `tern ps` reads /api/ps: the model is loaded and its statistics count the
    // requests the Python tests made.
    let (code, stdout, stderr) =
        run(tern(home.path()).args(["ps", "--json", "--url", &url, "--api-key", KEY]));
    assert_eq!(code, 0, "{stderr}");
    let ps: serde_json::Value = serde_json::from_str(&stdout).expect("ps JSON");
    let model = &ps["models"][0];
    assert_eq!(model["name"], "smollm2-135m-instruct-q4_1", "{stdout}");
    let stats = &model["stats"];
    assert!(stats["requests"].as_u64() >= Some(10), "{stdout}");
    assert!(stats["tokens_out"].as_u64() > Some(0), "{stdout}");
    assert_eq!(stats["loads"], 1, "{stdout}");
    assert!(stats["load_time_ms"].as_u64().is_some(), "{stdout}");
    assert!(stats["last_used"].as_str().is_some(), "{stdout}");
    let (code, table, stderr) =
        run(tern(home.path()).args(["ps", "--url", &url, "--api-key", KEY]));
    assert_eq!(code, 0, "{stderr}");
    assert!(table.starts_with("NAME"), "{table}");
    assert!(table.contains("smollm2-135m-instruct-q4_1"), "{table}");
    // Without the key the server refuses, and `tern ps` says so.
    let (code, _, stderr) = run(tern(home.path())
        .args(["ps", "--url", &url])
        .env_remove("TERN_API_KEY"));
    assert_ne!(code, 0);
    assert!(stderr.contains("401"), "{stderr}");

    // SIGTERM: a graceful stop, exit 0.
    stop(&mut server);
}

#[test]
fn listening_beyond_loopback_needs_an_api_key() {
    let home = tempfile::tempdir().expect("temp dir");
    let (code, _, stderr) = run(tern(home.path())
        .args(["serve", "--host", "0.0.0.0", "--port", "0"])
        .env_remove("TERN_API_KEY"));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("without API keys"), "{stderr}");
    assert!(stderr.contains("help:"), "{stderr}");
}

#[test]
fn a_config_file_sets_the_models_and_the_server_table() {
    let home = tempfile::tempdir().expect("temp dir");
    let config = home.path().join("tern.toml");
    let model = model_path(TestModel::SmolLm2_135m);
    std::fs::write(
        &config,
        format!(
            "memory_budget = \"1GiB\"\n\n[server]\napi_keys = [\n  \"from-the-file\",\n]\nmax_tokens = 64\n\n[[models]]\nname = \"small\"\npath = {:?}\nctx_size = 512\n",
            model.display().to_string()
        ),
    )
    .expect("write config");
    let mut command = tern(home.path());
    command
        .args(["serve", "--json", "--port", "0", "--config"])
        .arg(&config)
        .env_remove("TERN_API_KEY");
    let (mut server, listening) = spawn(command);
    assert_eq!(listening["models"], serde_json::json!(["small"]));
    let url = listening["listening"].as_str().expect("url");
    assert_eq!(http_get(url, "/v1/models", None).0, 401);
    assert_eq!(http_get(url, "/v1/models", Some("wrong")).0, 401);
    let (status, body) = http_get(url, "/v1/models", Some("from-the-file"));
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"id\":\"small\""), "{body}");
    assert_eq!(http_get(url, "/health", None).0, 200);
    // The table's max_tokens (64) is the limit.
    let request = r#"{"model": "small", "prompt": "Hi", "max_tokens": 65}"#;
    let (status, body) = http(
        url,
        "POST",
        "/v1/completions",
        Some("from-the-file"),
        request,
    );
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("at most 64"), "{body}");
    stop(&mut server);

    // A typo in the server table is an error naming the key and its line.
    std::fs::write(&config, "[server]\napi_key = \"x\"\n").expect("write config");
    let (code, _, stderr) = run(tern(home.path())
        .args(["serve", "--port", "0", "--config"])
        .arg(&config));
    assert_ne!(code, 0);
    assert!(
        stderr.contains("api_key") && stderr.contains("line 2"),
        "{stderr}"
    );
}
