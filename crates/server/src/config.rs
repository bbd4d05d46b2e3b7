//! The server's settings: API keys, rate limits, request limits, CORS and timeouts.
//!
//! They come from the `[server]` table of the config file that also describes the
//! runtime's models ([`ServerSettings::from_config_file`]), then from flags and
//! `TERN_API_KEY` (the CLI applies those on top). [`split_config_file`] hands the rest of
//! the file to the runtime's parser with the `[server]` lines blanked, so the runtime's
//! error messages keep pointing at the right line.

use std::time::Duration;

use serde::Deserialize;

/// Default largest request body: 4 MiB.
pub const DEFAULT_MAX_BODY_BYTES: usize = 4 << 20;
/// Default largest `max_tokens` a request may ask for (and the value used when it asks
/// for none).
pub const DEFAULT_MAX_TOKENS: usize = 4096;
/// Default time one request may take, queue wait included.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(600);
/// Default time in-flight requests get to finish after SIGTERM / SIGINT.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(30);

/// What the server enforces, validated once.
#[derive(Clone, Debug, PartialEq)]
pub struct ServerConfig {
    /// Keys accepted as `Authorization: Bearer <key>`. Empty: no authentication.
    pub api_keys: Vec<String>,
    /// A token bucket per API key (one shared bucket when there are no keys).
    pub rate_limit: Option<RateLimit>,
    /// Largest request body in bytes (413 beyond).
    pub max_body_bytes: usize,
    /// Largest prompt in tokens after templating (400 beyond); `None`: the model's
    /// context is the only limit.
    pub max_prompt_tokens: Option<usize>,
    /// Largest `max_tokens` (400 beyond); also the value used when a request gives none.
    pub max_tokens: usize,
    /// Per-request deadline, queue wait included (504 after it).
    pub request_timeout: Option<Duration>,
    /// Origins allowed by CORS; empty: no CORS headers at all. `*` allows any origin.
    pub cors_origins: Vec<String>,
    /// How long in-flight requests get to finish on shutdown.
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            api_keys: Vec::new(),
            rate_limit: None,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_prompt_tokens: None,
            max_tokens: DEFAULT_MAX_TOKENS,
            request_timeout: Some(DEFAULT_REQUEST_TIMEOUT),
            cors_origins: Vec::new(),
            shutdown_timeout: DEFAULT_SHUTDOWN_TIMEOUT,
        }
    }
}

/// A token bucket: `requests_per_minute` tokens added per minute, at most `burst` saved.
#[derive(Clone, Copy, Debug, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_minute: f64,
    pub burst: u32,
}

impl RateLimit {
    /// Checks the numbers are usable.
    pub fn validate(&self) -> Result<(), String> {
        if !(self.requests_per_minute.is_finite() && self.requests_per_minute > 0.0) {
            return Err(format!(
                "rate_limit.requests_per_minute must be a positive number, not {}",
                self.requests_per_minute
            ));
        }
        if self.burst == 0 {
            return Err("rate_limit.burst must be at least 1".into());
        }
        Ok(())
    }
}

/// The `[server]` table of a config file; every key optional.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub rate_limit: Option<RateLimit>,
    pub max_body_bytes: Option<usize>,
    pub max_prompt_tokens: Option<usize>,
    pub max_tokens: Option<usize>,
    /// Seconds.
    pub request_timeout: Option<f64>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// Seconds.
    pub shutdown_timeout: Option<f64>,
}

#[derive(Deserialize)]
struct FileWithServer {
    #[serde(default)]
    server: ServerSettings,
    // The runtime's keys are checked by the runtime's own parser.
    #[serde(flatten)]
    _rest: toml::Table,
}

impl ServerSettings {
    /// Reads the `[server]` table of a config file (absent: all defaults).
    pub fn from_config_file(text: &str) -> Result<ServerSettings, String> {
        let file: FileWithServer = toml::from_str(text).map_err(|e| {
            let message = e.to_string();
            format!("config: {}", message.trim_end())
        })?;
        Ok(file.server)
    }

    /// Applies the settings over `config`, validating them.
    pub fn apply(self, config: &mut ServerConfig) -> Result<(), String> {
        config.api_keys.extend(self.api_keys);
        if let Some(limit) = self.rate_limit {
            limit.validate().map_err(|e| format!("[server] {e}"))?;
            config.rate_limit = Some(limit);
        }
        if let Some(bytes) = self.max_body_bytes {
            config.max_body_bytes = bytes;
        }
        if self.max_prompt_tokens.is_some() {
            config.max_prompt_tokens = self.max_prompt_tokens;
        }
        if let Some(tokens) = self.max_tokens {
            config.max_tokens = tokens;
        }
        if let Some(seconds) = self.request_timeout {
            config.request_timeout = Some(seconds_setting("request_timeout", seconds)?);
        }
        config.cors_origins.extend(self.cors_origins);
        if let Some(seconds) = self.shutdown_timeout {
            config.shutdown_timeout = seconds_setting("shutdown_timeout", seconds)?;
        }
        config.validate()
    }
}

fn seconds_setting(key: &str, seconds: f64) -> Result<Duration, String> {
    if !(seconds.is_finite() && seconds > 0.0) {
        return Err(format!(
            "[server] {key} must be a positive number of seconds, not {seconds}"
        ));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("[server] {key}: {e}"))
}

impl ServerConfig {
    /// Checks the settings once, before the server starts.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(key) = self.api_keys.iter().find(|k| k.trim().is_empty()) {
            return Err(format!("an API key is empty ({key:?})"));
        }
        if let Some(limit) = &self.rate_limit {
            limit.validate()?;
        }
        if self.max_body_bytes < 1024 {
            return Err(format!(
                "max_body_bytes of {} is too small (at least 1024)",
                self.max_body_bytes
            ));
        }
        if self.max_tokens == 0 {
            return Err("max_tokens must be at least 1".into());
        }
        if self.max_prompt_tokens == Some(0) {
            return Err("max_prompt_tokens must be at least 1".into());
        }
        Ok(())
    }
}

/// Splits a config file: the `[server]` settings, and the text the runtime parses, in
/// which the `[server]` table's lines are blanked (so line numbers stay right).
pub fn split_config_file(text: &str) -> Result<(ServerSettings, String), String> {
    let settings = ServerSettings::from_config_file(text)?;
    let mut runtime_text = String::with_capacity(text.len());
    let mut in_server = false;
    // Bracket depth inside the server table's values, so that a line of a multi-line
    // array that starts with `[` is not taken for a table header.
    let mut depth: i32 = 0;
    for line in text.split_inclusive('\n') {
        let trimmed = line.trim_start();
        if depth == 0 && trimmed.starts_with('[') {
            in_server = is_server_header(trimmed);
        }
        if in_server {
            depth += bracket_delta(line);
            // Keep the line break so later lines keep their numbers.
            if line.ends_with('\n') {
                runtime_text.push('\n');
            }
        } else {
            runtime_text.push_str(line);
        }
    }
    Ok((settings, runtime_text))
}

/// `[server]` (with optional spaces and a trailing comment).
fn is_server_header(line: &str) -> bool {
    let Some(rest) = line.strip_prefix('[') else {
        return false;
    };
    if rest.starts_with('[') {
        return false;
    }
    let Some(end) = rest.find(']') else {
        return false;
    };
    rest[..end].trim() == "server"
}

/// Net `[` minus `]` outside strings and comments on one line (TOML basic and literal
/// strings; the server table holds no multi-line strings).
fn bracket_delta(line: &str) -> i32 {
    let mut delta = 0;
    let mut in_basic = false;
    let mut in_literal = false;
    let mut escaped = false;
    for c in line.chars() {
        if in_basic {
            match (escaped, c) {
                (true, _) => escaped = false,
                (false, '\\') => escaped = true,
                (false, '"') => in_basic = false,
                _ => {}
            }
            continue;
        }
        if in_literal {
            if c == '\'' {
                in_literal = false;
            }
            continue;
        }
        match c {
            '"' => in_basic = true,
            '\'' => in_literal = true,
            '#' => break,
            '[' => delta += 1,
            ']' => delta -= 1,
            _ => {}
        }
    }
    delta
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = r#"memory_budget = "1GiB"

[server]
api_keys = [
  "k1", # first
  "k]2",
]
rate_limit = { requests_per_minute = 60, burst = 5 }
max_tokens = 512

[[models]]
name = "small"
path = "/m.gguf"
"#;

    #[test]
    fn server_table_is_read_and_blanked_for_the_runtime() {
        let (settings, runtime) = split_config_file(FILE).unwrap();
        assert_eq!(settings.api_keys, ["k1", "k]2"]);
        assert_eq!(
            settings.rate_limit,
            Some(RateLimit {
                requests_per_minute: 60.0,
                burst: 5
            })
        );
        assert_eq!(settings.max_tokens, Some(512));
        assert_eq!(runtime.lines().count(), FILE.lines().count());
        assert!(!runtime.contains("server") && !runtime.contains("k1"));
        // The runtime's lines keep their numbers.
        let line_of = |text: &str, needle: &str| text.lines().position(|l| l.contains(needle));
        assert_eq!(
            line_of(&runtime, "name = \"small\""),
            line_of(FILE, "name = \"small\"")
        );
        assert!(runtime.contains("[[models]]") && runtime.contains("memory_budget"));
    }

    #[test]
    fn unknown_server_keys_are_errors_naming_the_key() {
        let error = split_config_file("[server]\napi_key = \"x\"\n").unwrap_err();
        assert!(error.contains("api_key"), "{error}");
        assert!(error.contains("line 2"), "{error}");
    }

    #[test]
    fn settings_are_validated() {
        let mut config = ServerConfig::default();
        let bad = ServerSettings {
            rate_limit: Some(RateLimit {
                requests_per_minute: 0.0,
                burst: 1,
            }),
            ..Default::default()
        };
        assert!(
            bad.apply(&mut config)
                .unwrap_err()
                .contains("requests_per_minute")
        );
        let mut config = ServerConfig::default();
        let bad = ServerSettings {
            api_keys: vec![" ".into()],
            ..Default::default()
        };
        assert!(bad.apply(&mut config).unwrap_err().contains("empty"));
        let mut config = ServerConfig::default();
        let bad = ServerSettings {
            request_timeout: Some(-1.0),
            ..Default::default()
        };
        assert!(
            bad.apply(&mut config)
                .unwrap_err()
                .contains("request_timeout")
        );
    }
}
