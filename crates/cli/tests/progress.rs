//! Progress output of `tern pull` when stderr is not a terminal: plain lines (a start line
//! with the size, percentages, a done line), nothing with `-q`.

mod support;

use std::time::Duration;

use support::fixtures::tiny_gguf;
use support::server::{Route, TestServer};
use support::{run, tern};

#[test]
fn pull_prints_plain_progress_lines_without_a_terminal() {
    let home = tempfile::tempdir().unwrap();
    let server = TestServer::start();
    // 2 MB at 16 KiB per 30 ms: about 4 s, long enough for a percentage line.
    let body = tiny_gguf(500_000, 1);
    let size = indicatif::HumanBytes(body.len() as u64).to_string();
    server.route(
        "/slow.gguf",
        Route {
            delay_per_chunk: Some(Duration::from_millis(30)),
            ..Route::file(body)
        },
    );

    let (code, stdout, stderr) = run(tern(home.path()).args(["pull", &server.url("/slow.gguf")]));
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(stdout, "", "human output goes to stderr");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines[0], format!("slow.gguf ({size})"), "{stderr}");
    let percent = lines
        .iter()
        .filter(|l| l.starts_with("slow.gguf: ") && l.contains("% ("))
        .count();
    assert!(percent >= 1, "{stderr}");
    assert!(
        lines
            .iter()
            .any(|l| l.contains(&format!("of {size}")) && l.contains("/s, ETA ")),
        "{stderr}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with(&format!("slow.gguf: done, {size} in "))),
        "{stderr}"
    );
    assert!(
        lines.iter().any(|l| l.starts_with("verifying sha256")),
        "{stderr}"
    );
    assert!(
        lines.last().unwrap().starts_with("pulled slow:latest ("),
        "{stderr}"
    );

    let (code, _, stderr) =
        run(tern(home.path()).args(["-q", "pull", "--force", &server.url("/slow.gguf")]));
    assert_eq!((code, stderr.as_str()), (0, ""));
}
