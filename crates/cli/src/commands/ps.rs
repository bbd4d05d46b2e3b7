//! `tern ps`: the models a running `tern serve` holds in memory, with their usage
//! statistics — requests, tokens in and out, loads, load time, evictions and why, last
//! use — read from its `/api/ps` (as `ollama ps` reads Ollama's).
//!
//! `--json` prints the server's answer as is (the `models` list of `/api/ps`).

use std::time::Duration;

use anyhow::{Context, bail};
use serde::Deserialize;
use serde_json::Value;

use crate::cli::GlobalArgs;
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// The server to ask
    #[arg(
        long,
        value_name = "URL",
        env = "TERN_URL",
        default_value = "http://127.0.0.1:11435"
    )]
    pub url: String,
    /// API key, when the server requires one (default: the first of TERN_API_KEY)
    #[arg(long, value_name = "KEY")]
    pub api_key: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Ps {
    models: Vec<Value>,
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let url = format!("{}/api/ps", args.url.trim_end_matches('/'));
    let key = args.api_key.or_else(|| {
        std::env::var("TERN_API_KEY")
            .ok()
            .and_then(|keys| keys.split(',').next().map(|k| k.trim().to_string()))
            .filter(|k| !k.is_empty())
    });
    // The workspace's reqwest has rustls without a crypto provider (see Cargo.toml).
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .context("HTTP client")?;
    let mut request = client.get(&url);
    if let Some(key) = key {
        request = request.bearer_auth(key);
    }
    let response = request.send().with_context(|| {
        format!(
            "cannot reach a tern server at {} (is `tern serve` running?)",
            args.url
        )
    })?;
    let status = response.status();
    let body = response.text().context("reading the answer")?;
    if !status.is_success() {
        let message = serde_json::from_str::<Value>(&body)
            .ok()
            .and_then(|v| v["error"].as_str().map(str::to_string))
            .unwrap_or(body);
        bail!("{url}: {status}: {message}");
    }
    let ps: Ps =
        serde_json::from_str(&body).with_context(|| format!("{url}: not an /api/ps answer"))?;
    if global.json {
        return output::print_json(&serde_json::json!({ "models": ps.models }));
    }
    print!("{}", table(&ps.models));
    Ok(())
}

/// The human table: one row per model.
fn table(models: &[Value]) -> String {
    if models.is_empty() {
        return "no model loaded\n".to_string();
    }
    let header = [
        "NAME",
        "STATE",
        "SIZE",
        "CONTEXT",
        "UNTIL",
        "REQUESTS",
        "TOKENS IN/OUT",
        "LOADS",
        "LOAD TIME",
        "EVICTIONS",
        "LAST USED",
    ];
    let rows: Vec<Vec<String>> = models.iter().map(row).collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let mut line = |cells: Vec<String>| {
        let padded: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        out.push_str(padded.join("  ").trim_end());
        out.push('\n');
    };
    line(header.iter().map(|h| h.to_string()).collect());
    for row in rows {
        line(row);
    }
    out
}

fn row(m: &Value) -> Vec<String> {
    let s = &m["stats"];
    let num = |v: &Value| v.as_u64().map_or("-".to_string(), |n| n.to_string());
    let size = m["size_measured"]
        .as_u64()
        .or_else(|| m["size"].as_u64())
        .map_or("-".to_string(), format_size);
    let until = if m["pinned"].as_bool() == Some(true) {
        "pinned".to_string()
    } else {
        m["expires_at"]
            .as_str()
            .map_or("forever".to_string(), short_time)
    };
    let evictions = match s["evictions"].as_array().and_then(|e| e.last()) {
        Some(last) => format!(
            "{} (last: {})",
            num(&s["eviction_count"]),
            last["reason"].as_str().unwrap_or("?")
        ),
        None => num(&s["eviction_count"]),
    };
    vec![
        m["name"].as_str().unwrap_or("?").to_string(),
        m["state"].as_str().unwrap_or("?").to_string(),
        size,
        num(&m["context_length"]),
        until,
        num(&s["requests"]),
        format!("{}/{}", num(&s["tokens_in"]), num(&s["tokens_out"])),
        num(&s["loads"]),
        s["load_time_ms"]
            .as_u64()
            .map_or("-".to_string(), |ms| format!("{ms} ms")),
        evictions,
        s["last_used"].as_str().map_or("-".to_string(), short_time),
    ]
}

/// `2026-11-25T17:03:04.123456789Z` → `2026-11-25 17:03:04`.
fn short_time(t: &str) -> String {
    let t = t.split('.').next().unwrap_or(t).trim_end_matches('Z');
    t.replacen('T', " ", 1)
}

fn format_size(bytes: u64) -> String {
    const MIB: f64 = 1024.0 * 1024.0;
    if bytes as f64 >= 1024.0 * MIB {
        format!("{:.1} GiB", bytes as f64 / (1024.0 * MIB))
    } else {
        format!("{:.0} MiB", bytes as f64 / MIB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_shows_stats_and_the_last_eviction_reason() {
        let models = vec![json!({
            "name": "router", "state": "ready", "size": 150_000_000u64,
            "size_measured": 140_000_000u64, "context_length": 2048, "pinned": true,
            "expires_at": null,
            "stats": {"requests": 12, "tokens_in": 340, "tokens_out": 1200, "loads": 2,
                      "load_time_ms": 310, "last_used": "2026-11-25T17:03:04.5Z",
                      "eviction_count": 1,
                      "evictions": [{"at": "2026-11-25T17:00:00.0Z", "reason": "keep-alive expired"}]}
        })];
        let text = table(&models);
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("NAME"), "{text}");
        for want in [
            "router",
            "ready",
            "134 MiB",
            "2048",
            "pinned",
            "12",
            "340/1200",
            "310 ms",
            "1 (last: keep-alive expired)",
            "2026-11-25 17:03:04",
        ] {
            assert!(lines[1].contains(want), "{want:?} missing in {text}");
        }
        assert_eq!(table(&[]), "no model loaded\n");
    }
}
