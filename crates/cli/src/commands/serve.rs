//! `tern serve`: the OpenAI- and Ollama-compatible HTTP server.
//!
//! Only wiring: settings from defaults < `--config FILE` (the runtime's TOML plus a
//! `[server]` table) < `TERN_API_KEY` < flags; the models from `--model` (resolved, and
//! pulled when needed, like every command's MODEL), the config file, or else every model
//! in the store; then `tern_server::serve` on the socket until SIGINT / SIGTERM.
//! Listening beyond loopback without API keys is refused unless `--allow-no-key`.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, bail};
use serde::Serialize;
use tern_runtime::{Budget, ModelEntry, Runtime, RuntimeConfig};
use tern_server::{AppState, RateLimit, ServerConfig, split_config_file};

use crate::cli::GlobalArgs;
use crate::exit::Failure;
use crate::kv::KvTypeArg;
use crate::model::{open_store, resolve_model};
use crate::output;

#[derive(Debug, clap::Args)]
pub struct Args {
    /// A model to serve (repeatable); without any, every model in the store (and in the
    /// config file) is servable and loaded on demand
    #[arg(short, long = "model", value_name = "MODEL")]
    pub models: Vec<String>,
    /// Address to listen on; anything but loopback needs API keys (or --allow-no-key)
    #[arg(long, value_name = "ADDRESS", default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0: any free port, printed at start)
    #[arg(long, value_name = "PORT", default_value_t = 11435)]
    pub port: u16,
    /// An accepted API key (repeatable); clients send `Authorization: Bearer KEY`
    #[arg(
        long = "api-key",
        value_name = "KEY",
        env = "TERN_API_KEY",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub api_keys: Vec<String>,
    /// Listen beyond loopback even without API keys (anyone who can reach the port can use it)
    #[arg(long)]
    pub allow_no_key: bool,
    /// Memory for loaded models: bytes with a unit (B, KB, MB, GB, KiB, MiB, GiB) or a
    /// percentage of RAM (default: available memory minus a safety margin)
    #[arg(long, value_name = "SIZE")]
    pub memory_budget: Option<String>,
    /// Context positions per sequence slot (default 2048)
    #[arg(long, value_name = "N")]
    pub ctx_size: Option<usize>,
    /// Sequences each model serves at once, batched together (default 4)
    #[arg(long, value_name = "N")]
    pub parallel: Option<usize>,
    /// Type of the cached keys and values of every model (f16, q8_0, q4_0; default: each
    /// model's `kv_type` in the config file, else f16)
    #[arg(long = "kv-type", value_name = "TYPE")]
    pub kv_type: Option<KvTypeArg>,
    /// Requests that may wait per model when its slots are busy; beyond, 429 (default 64)
    #[arg(long, value_name = "N")]
    pub queue_capacity: Option<usize>,
    /// Config file (TOML): models, budget, and a [server] table (see docs/SERVER.md)
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Compute threads the forward passes are split over, shared by all models
    /// (default: the physical cores this process may use)
    #[arg(short = 't', long, value_name = "N", env = "TERN_THREADS")]
    pub threads: Option<usize>,
    /// Requests per minute per API key (token bucket; default: unlimited)
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<f64>,
    /// Requests a key may make at once before the rate limit applies (default: the per-minute rate)
    #[arg(long, value_name = "N", requires = "rate_limit")]
    pub rate_burst: Option<u32>,
    /// Largest request body in bytes (default 4194304)
    #[arg(long, value_name = "BYTES")]
    pub max_body: Option<usize>,
    /// Largest max_tokens a request may ask for, and the default (default 4096)
    #[arg(long, value_name = "N")]
    pub max_tokens: Option<usize>,
    /// Largest prompt in tokens (default: the context size)
    #[arg(long, value_name = "N")]
    pub max_prompt_tokens: Option<usize>,
    /// Seconds one request may take, queue wait included (default 600)
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<f64>,
    /// Seconds in-flight requests get to finish after SIGTERM / SIGINT (default 30)
    #[arg(long, value_name = "SECONDS")]
    pub shutdown_timeout: Option<f64>,
    /// Allow browser calls from this origin (repeatable; `*` for any); CORS is off without it
    #[arg(long = "cors-origin", value_name = "ORIGIN")]
    pub cors_origins: Vec<String>,
}

/// The `--json` line printed once the socket is bound.
#[derive(Serialize)]
struct Listening {
    listening: String,
    models: Vec<String>,
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    if !(value.is_finite() && value > 0.0) {
        bail!("{flag} must be a positive number of seconds, not {value}");
    }
    Ok(Duration::from_secs_f64(value))
}

/// The runtime and server settings from the config file, the environment and the flags
/// (models aside).
fn settings(args: &Args) -> anyhow::Result<(RuntimeConfig, ServerConfig)> {
    let mut runtime = RuntimeConfig::default();
    let mut server = ServerConfig::default();
    if let Some(path) = &args.config {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading the config file {}", path.display()))?;
        let (server_settings, runtime_text) =
            split_config_file(&text).map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        runtime = RuntimeConfig::from_toml_str(&runtime_text)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
        server_settings
            .apply(&mut server)
            .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?;
    }
    // Flags and TERN_API_KEY (clap reads it) come on top of the file.
    server.api_keys.extend(
        args.api_keys
            .iter()
            .map(|k| k.trim().to_string())
            .filter(|k| !k.is_empty()),
    );
    if let Some(per_minute) = args.rate_limit {
        let burst = args
            .rate_burst
            .unwrap_or_else(|| (per_minute.ceil() as u32).max(1));
        server.rate_limit = Some(RateLimit {
            requests_per_minute: per_minute,
            burst,
        });
    }
    if let Some(bytes) = args.max_body {
        server.max_body_bytes = bytes;
    }
    if let Some(n) = args.max_tokens {
        server.max_tokens = n;
    }
    if let Some(n) = args.max_prompt_tokens {
        server.max_prompt_tokens = Some(n);
    }
    if let Some(s) = args.timeout {
        server.request_timeout = Some(seconds("--timeout", s)?);
    }
    if let Some(s) = args.shutdown_timeout {
        server.shutdown_timeout = seconds("--shutdown-timeout", s)?;
    }
    server
        .cors_origins
        .extend(args.cors_origins.iter().cloned());
    server
        .validate()
        .map_err(|e| anyhow::anyhow!("server settings: {e}"))?;

    if let Some(text) = &args.memory_budget {
        runtime.memory_budget = Some(text.parse::<Budget>()?);
    }
    if let Some(n) = args.queue_capacity {
        runtime.queue_capacity = n;
    }
    if let Some(n) = args.threads {
        runtime.threads = n;
    }
    Ok((runtime, server))
}

/// Adds the models of the command line (resolved, pulled when needed) or, without
/// `--model` and config file, every model in the store; then applies `--ctx-size`,
/// `--parallel` and `--kv-type` to every model.
fn add_models(args: &Args, global: &GlobalArgs, runtime: &mut RuntimeConfig) -> anyhow::Result<()> {
    for reference in &args.models {
        let resolved = resolve_model(global, Some(reference))?;
        let (name, alias) = match &resolved.installed {
            Some(installed) => (
                installed.manifest.reference(),
                Some(installed.manifest.name.clone()),
            ),
            // A file outside the store: named by its file name, the path as alias.
            None => (
                resolved
                    .path
                    .file_stem()
                    .map_or_else(|| reference.clone(), |s| s.to_string_lossy().into_owned()),
                None,
            ),
        };
        add_model(runtime, name, alias, Some(reference), resolved.path);
    }
    if args.models.is_empty() && args.config.is_none() {
        // Every model in the store is servable; loaded on first use.
        let store = open_store()?;
        for installed in store.list()? {
            let manifest = &installed.manifest;
            let default_tag = store.default_tag(&manifest.name).ok();
            let alias = (default_tag.as_deref() == Some(manifest.tag.as_str()))
                .then(|| manifest.name.clone());
            add_model(runtime, manifest.reference(), alias, None, installed.path);
        }
    }
    for entry in &mut runtime.models {
        if let Some(n) = args.ctx_size {
            entry.ctx_size = n;
        }
        if let Some(n) = args.parallel {
            entry.parallel = n;
        }
        if let Some(t) = args.kv_type {
            entry.kv_type = t.engine().into();
        }
    }
    Ok(())
}

/// Adds a model unless its name is taken (the same model named twice); aliases that
/// would clash with another model's name are left out.
fn add_model(
    runtime: &mut RuntimeConfig,
    name: String,
    alias: Option<String>,
    reference: Option<&String>,
    path: PathBuf,
) {
    let taken = |runtime: &RuntimeConfig, n: &str| runtime.models.iter().any(|m| m.answers_to(n));
    if taken(runtime, &name) {
        return;
    }
    let mut entry = ModelEntry::new(name.clone(), path);
    for alias in alias.into_iter().chain(reference.cloned()) {
        if alias != name && !taken(runtime, &alias) && !entry.aliases.contains(&alias) {
            entry.aliases.push(alias);
        }
    }
    runtime.models.push(entry);
}

/// Loopback addresses and `localhost` are private to this machine.
fn is_loopback(host: &str) -> bool {
    host.eq_ignore_ascii_case("localhost")
        || host
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

pub fn run(args: Args, global: &GlobalArgs) -> anyhow::Result<()> {
    let (mut runtime_config, server_config) = settings(&args)?;
    if !is_loopback(&args.host) && !args.allow_no_key && server_config.api_keys.is_empty() {
        return Err(Failure {
            code: crate::exit::USAGE,
            message: format!(
                "refusing to listen on {} without API keys: anyone who can reach it could use the models",
                args.host
            ),
            help: Some(
                "set --api-key KEY (or TERN_API_KEY, or api_keys in the config's [server] table), listen on 127.0.0.1, or pass --allow-no-key"
                    .into(),
            ),
        }
        .into());
    }
    add_models(&args, global, &mut runtime_config)?;
    let names: Vec<String> = runtime_config
        .models
        .iter()
        .map(|m| m.name.clone())
        .collect();
    if names.is_empty() {
        output::say(
            global,
            "no models to serve yet: pull one with `tern pull` or pass --model",
        );
    }
    let executor = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    executor.block_on(async move {
        let runtime = Runtime::new(runtime_config)?;
        let store = open_store().ok().map(std::sync::Arc::new);
        let state = match store {
            Some(store) => AppState::with_store(runtime, server_config, store),
            None => AppState::new(runtime, server_config),
        };
        let address = format!("{}:{}", args.host.trim_matches(['[', ']']), args.port);
        let listener = tokio::net::TcpListener::bind(&address)
            .await
            .with_context(|| format!("listening on {address}"))?;
        let local: SocketAddr = listener.local_addr().context("reading the bound address")?;
        let url = format!("http://{local}");
        output::say(
            global,
            format!("listening on {url} ({} models)", names.len()),
        );
        if global.json {
            output::print_json(&Listening {
                listening: url,
                models: names,
            })?;
        }
        tern_server::serve(listener, state, tern_server::shutdown_signal())
            .await
            .context("serving")?;
        anyhow::Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for host in ["127.0.0.1", "127.1.2.3", "::1", "[::1]", "localhost"] {
            assert!(is_loopback(host), "{host}");
        }
        for host in ["0.0.0.0", "::", "192.168.1.2", "example.com"] {
            assert!(!is_loopback(host), "{host}");
        }
    }
}
