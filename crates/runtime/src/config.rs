//! The runtime's configuration: the memory budget, the servable models and how each is
//! run, read from TOML (`examples/tern.toml` is the commented example).
//!
//! Unknown keys are errors (`deny_unknown_fields`), and every error names the key (its
//! path, e.g. `models[1].ctx_size`) and the line, so a typo in a config file is found
//! at once instead of silently falling back to a default. Parsing goes through private
//! `Raw*` structs whose fields carry their source spans, so checks made after parsing
//! (duplicate names, a preload of an unknown model) can still point at the line.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use tern_sampler::SamplingParams;
use toml::Spanned;

use crate::budget::Budget;

/// Default context size per sequence slot.
pub const DEFAULT_CTX_SIZE: usize = 2048;
/// Default number of sequences a model serves at once.
pub const DEFAULT_PARALLEL: usize = 4;
/// Default most tokens per forward pass (decode tokens plus prompt chunks).
pub const DEFAULT_BATCH_SIZE: usize = 256;
/// Default time an idle model stays loaded (Ollama's default).
pub const DEFAULT_KEEP_ALIVE: Duration = Duration::from_secs(5 * 60);
/// Default requests waiting per model beyond the ones being served.
pub const DEFAULT_QUEUE_CAPACITY: usize = 64;
/// Default time a load waits for memory held by busy models.
pub const DEFAULT_MEMORY_WAIT: Duration = Duration::from_secs(30);

/// Everything the runtime needs to know.
#[derive(Clone, Debug, PartialEq)]
pub struct RuntimeConfig {
    /// Bytes the loaded models may take together; `None` derives it from the machine
    /// (see [`crate::budget`]).
    pub memory_budget: Option<Budget>,
    /// The servable models.
    pub models: Vec<ModelEntry>,
    /// How long an idle model stays loaded unless its entry or the request says otherwise.
    pub default_keep_alive: Duration,
    /// Requests that may wait per model while its slots are busy; beyond, `QueueFull`.
    pub queue_capacity: usize,
    /// Models loaded at start-up, by name or alias.
    pub preload: Vec<String>,
    /// Compute threads the forward passes are split over, shared by all models (0:
    /// `TERN_THREADS` if set, else the physical cores this process may use).
    pub threads: usize,
    /// How long a load waits for memory that busy models hold before failing with
    /// `DoesNotFit` (a request's own timeout, when shorter, wins).
    pub memory_wait: Duration,
}

impl Default for RuntimeConfig {
    fn default() -> Self {
        RuntimeConfig {
            memory_budget: None,
            models: Vec::new(),
            default_keep_alive: DEFAULT_KEEP_ALIVE,
            queue_capacity: DEFAULT_QUEUE_CAPACITY,
            preload: Vec::new(),
            threads: 0,
            memory_wait: DEFAULT_MEMORY_WAIT,
        }
    }
}

/// One servable model.
#[derive(Clone, Debug, PartialEq)]
pub struct ModelEntry {
    /// The name requests use.
    pub name: String,
    /// Other names for it.
    pub aliases: Vec<String>,
    /// The GGUF file.
    pub path: PathBuf,
    /// Positions per sequence slot (prompt + generated tokens).
    pub ctx_size: usize,
    /// Sequence slots: requests served at once, batched into shared forward passes.
    pub parallel: usize,
    /// Most tokens per forward pass (one per decoding sequence plus prompt chunks).
    pub batch_size: usize,
    /// Element type of the KV cache.
    pub kv_type: KvType,
    /// Never evicted, never unloaded for idleness.
    pub pin: bool,
    /// How long it stays loaded when idle (`None`: the runtime's default).
    pub keep_alive: Option<KeepAlive>,
    /// Sampling defaults for this model; request parameters override them.
    pub sampling: SamplingDefaults,
}

impl ModelEntry {
    /// An entry with the default sizes.
    pub fn new(name: impl Into<String>, path: impl Into<PathBuf>) -> ModelEntry {
        ModelEntry {
            name: name.into(),
            aliases: Vec::new(),
            path: path.into(),
            ctx_size: DEFAULT_CTX_SIZE,
            parallel: DEFAULT_PARALLEL,
            batch_size: DEFAULT_BATCH_SIZE,
            kv_type: KvType::F16,
            pin: false,
            keep_alive: None,
            sampling: SamplingDefaults::default(),
        }
    }

    /// Whether `name` is this model's name or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.name == name || self.aliases.iter().any(|a| a == name)
    }
}

/// Element type of the KV cache (llama.cpp's `--cache-type-k/-v` names): `f16` (the
/// default), `q8_0` (about half the memory, perplexity within a fraction of a percent)
/// or `q4_0` (about a quarter, a visible quality loss; docs/RUNTIME.md has the numbers).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum KvType {
    /// Half precision, 2 bytes per value.
    #[default]
    #[serde(rename = "f16")]
    F16,
    /// 8-bit blocks: 34 bytes per 32 values.
    #[serde(rename = "q8_0")]
    Q8_0,
    /// 4-bit blocks: 18 bytes per 32 values.
    #[serde(rename = "q4_0")]
    Q4_0,
}

impl KvType {
    /// The engine's type.
    pub fn engine(self) -> tern_engine::KvType {
        match self {
            KvType::F16 => tern_engine::KvType::F16,
            KvType::Q8_0 => tern_engine::KvType::Q8_0,
            KvType::Q4_0 => tern_engine::KvType::Q4_0,
        }
    }
}

impl From<tern_engine::KvType> for KvType {
    fn from(t: tern_engine::KvType) -> Self {
        match t {
            tern_engine::KvType::F16 => KvType::F16,
            tern_engine::KvType::Q8_0 => KvType::Q8_0,
            tern_engine::KvType::Q4_0 => KvType::Q4_0,
        }
    }
}

/// How long an idle model stays loaded, with Ollama's meaning: a duration, zero to
/// unload as soon as the request is done, or forever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeepAlive {
    /// Unload after this long idle (zero: at once).
    For(Duration),
    /// Never unload for idleness.
    Forever,
}

impl KeepAlive {
    /// From a number of seconds, as Ollama's JSON allows: negative keeps forever.
    pub fn from_seconds(seconds: f64) -> Result<KeepAlive, String> {
        if seconds.is_nan() {
            return Err("keep_alive is not a number".into());
        }
        if seconds < 0.0 {
            return Ok(KeepAlive::Forever);
        }
        Duration::try_from_secs_f64(seconds)
            .map(KeepAlive::For)
            .map_err(|_| format!("keep_alive of {seconds} seconds is too long"))
    }
}

impl FromStr for KeepAlive {
    type Err = String;

    /// `"5m"`, `"30s"`, `"1h30m"`, `"500ms"`, `"0"`, a plain number of seconds, or a
    /// negative value (`"-1"`, `"-1m"`) for forever.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        if let Some(magnitude) = text.strip_prefix('-') {
            parse_duration(magnitude).map_err(|e| format!("invalid keep_alive {s:?}: {e}"))?;
            return Ok(KeepAlive::Forever);
        }
        parse_duration(text)
            .map(KeepAlive::For)
            .map_err(|e| format!("invalid keep_alive {s:?}: {e}"))
    }
}

impl fmt::Display for KeepAlive {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeepAlive::Forever => f.write_str("forever"),
            KeepAlive::For(d) => write!(f, "{}s", d.as_secs_f64()),
        }
    }
}

impl<'de> Deserialize<'de> for KeepAlive {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match NumberOrText::deserialize(deserializer)? {
            NumberOrText::Int(i) => KeepAlive::from_seconds(i as f64),
            NumberOrText::Float(f) => KeepAlive::from_seconds(f),
            NumberOrText::Text(t) => t.parse(),
        }
        .map_err(serde::de::Error::custom)
    }
}

#[derive(Deserialize)]
#[serde(untagged)]
enum NumberOrText {
    Int(i64),
    Float(f64),
    Text(String),
}

/// A duration as Go and Ollama write them: numbers with units `ms`, `s`, `m`, `h`
/// (`"1h30m"`, `"2.5s"`); a bare number is seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text.is_empty() {
        return Err("empty duration".into());
    }
    if let Ok(seconds) = text.parse::<f64>() {
        return Duration::try_from_secs_f64(seconds).map_err(|e| e.to_string());
    }
    let mut total = 0.0f64;
    let mut rest = text;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or("a number without a unit (ms, s, m, h)")?;
        if digits == 0 {
            return Err(format!("expected a number at {rest:?}"));
        }
        let value: f64 = rest[..digits]
            .parse()
            .map_err(|_| format!("{:?} is not a number", &rest[..digits]))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let scale = match &rest[..unit_len] {
            "ms" => 0.001,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            other => return Err(format!("unknown unit {other:?} (use ms, s, m or h)")),
        };
        total += value * scale;
        rest = &rest[unit_len..];
    }
    Duration::try_from_secs_f64(total).map_err(|e| e.to_string())
}

/// Per-model sampling defaults; unset fields keep the engine's (llama.cpp's) defaults.
#[derive(Clone, Debug, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SamplingDefaults {
    pub temperature: Option<f32>,
    pub top_k: Option<usize>,
    pub top_p: Option<f32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub repeat_last_n: Option<usize>,
    pub frequency_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub seed: Option<u64>,
}

impl SamplingDefaults {
    /// The sampling parameters with these defaults applied.
    pub fn params(&self) -> SamplingParams {
        let d = SamplingParams::default();
        SamplingParams {
            temperature: self.temperature.unwrap_or(d.temperature),
            top_k: self.top_k.unwrap_or(d.top_k),
            top_p: self.top_p.unwrap_or(d.top_p),
            min_p: self.min_p.unwrap_or(d.min_p),
            repeat_penalty: self.repeat_penalty.unwrap_or(d.repeat_penalty),
            repeat_last_n: self.repeat_last_n.unwrap_or(d.repeat_last_n),
            frequency_penalty: self.frequency_penalty.unwrap_or(d.frequency_penalty),
            presence_penalty: self.presence_penalty.unwrap_or(d.presence_penalty),
            seed: self.seed.or(d.seed),
        }
    }
}

/// A configuration error: which key, where, and why.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.render())]
pub struct ConfigError {
    /// The key's path (`models[0].ctx_size`), empty when the whole file is at fault.
    pub key: String,
    /// 1-based line of the problem, when known.
    pub line: Option<usize>,
    /// 1-based column, when known.
    pub column: Option<usize>,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    fn render(&self) -> String {
        let place = match (self.line, self.column) {
            (Some(l), Some(c)) => format!("line {l}, column {c}: "),
            (Some(l), None) => format!("line {l}: "),
            _ => String::new(),
        };
        if self.key.is_empty() {
            format!("config {place}{}", self.message)
        } else {
            format!("config {place}key `{}`: {}", self.key, self.message)
        }
    }

    fn at(
        text: &str,
        key: impl Into<String>,
        span: Option<std::ops::Range<usize>>,
        message: impl Into<String>,
    ) -> Self {
        let (line, column) = match span {
            Some(span) => {
                let (l, c) = line_column(text, span.start);
                (Some(l), Some(c))
            }
            None => (None, None),
        };
        ConfigError {
            key: key.into(),
            line,
            column,
            message: message.into(),
        }
    }
}

/// 1-based line and column (in characters) of byte `offset`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    memory_budget: Option<Spanned<Budget>>,
    #[serde(default)]
    models: Vec<RawModel>,
    default_keep_alive: Option<Spanned<KeepAlive>>,
    queue_capacity: Option<Spanned<usize>>,
    #[serde(default)]
    preload: Vec<Spanned<String>>,
    threads: Option<usize>,
    memory_wait: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawModel {
    name: Spanned<String>,
    #[serde(default)]
    aliases: Vec<Spanned<String>>,
    path: Spanned<PathBuf>,
    ctx_size: Option<Spanned<usize>>,
    parallel: Option<Spanned<usize>>,
    batch_size: Option<Spanned<usize>>,
    #[serde(default)]
    kv_type: KvType,
    #[serde(default)]
    pin: bool,
    keep_alive: Option<KeepAlive>,
    #[serde(default)]
    sampling: SamplingDefaults,
}

impl RuntimeConfig {
    /// Parses and checks a TOML configuration.
    pub fn from_toml_str(text: &str) -> Result<RuntimeConfig, ConfigError> {
        let deserializer = toml::Deserializer::parse(text)
            .map_err(|e| ConfigError::at(text, "", e.span(), e.message()))?;
        let raw: RawConfig = serde_path_to_error::deserialize(deserializer).map_err(|e| {
            // `Spanned` values add a private path segment; it is not a key of the file.
            let path = e
                .path()
                .to_string()
                .replace(".$__serde_spanned_private_value", "");
            let inner = e.into_inner();
            let key = if path == "." { String::new() } else { path };
            ConfigError::at(text, key, inner.span(), inner.message())
        })?;
        RuntimeConfig::from_raw(text, raw)
    }

    fn from_raw(text: &str, raw: RawConfig) -> Result<RuntimeConfig, ConfigError> {
        let err = |key: String, span: std::ops::Range<usize>, message: String| {
            Err(ConfigError::at(text, key, Some(span), message))
        };
        let mut config = RuntimeConfig {
            memory_budget: raw.memory_budget.map(Spanned::into_inner),
            threads: raw.threads.unwrap_or(0),
            ..RuntimeConfig::default()
        };
        if let Some(keep) = raw.default_keep_alive {
            config.default_keep_alive = match keep.get_ref() {
                KeepAlive::For(d) => *d,
                KeepAlive::Forever => Duration::MAX,
            };
        }
        if let Some(capacity) = raw.queue_capacity {
            if *capacity.get_ref() == 0 {
                return err(
                    "queue_capacity".into(),
                    capacity.span(),
                    "must be at least 1".into(),
                );
            }
            config.queue_capacity = capacity.into_inner();
        }
        if let Some(wait) = raw.memory_wait {
            config.memory_wait = match parse_duration(wait.get_ref()) {
                Ok(d) => d,
                Err(e) => return err("memory_wait".into(), wait.span(), e),
            };
        }
        let mut names: Vec<(String, std::ops::Range<usize>)> = Vec::new();
        for (i, model) in raw.models.into_iter().enumerate() {
            let key = |field: &str| format!("models[{i}].{field}");
            let mut entry =
                ModelEntry::new(model.name.get_ref().clone(), model.path.get_ref().clone());
            for name in std::iter::once(&model.name).chain(&model.aliases) {
                let field = if std::ptr::eq(name, &model.name) {
                    "name"
                } else {
                    "aliases"
                };
                if name.get_ref().trim().is_empty() {
                    return err(
                        key(field),
                        name.span(),
                        "a model name must not be empty".into(),
                    );
                }
                if let Some((_, first)) = names.iter().find(|(n, _)| n == name.get_ref()) {
                    let (line, _) = line_column(text, first.start);
                    return err(
                        key(field),
                        name.span(),
                        format!(
                            "{:?} already names another model (line {line})",
                            name.get_ref()
                        ),
                    );
                }
                names.push((name.get_ref().clone(), name.span()));
            }
            entry.aliases = model.aliases.iter().map(|a| a.get_ref().clone()).collect();
            if model.path.get_ref().as_os_str().is_empty() {
                return err(
                    key("path"),
                    model.path.span(),
                    "the model path is empty".into(),
                );
            }
            if let Some(ctx) = model.ctx_size {
                if *ctx.get_ref() < 16 {
                    return err(
                        key("ctx_size"),
                        ctx.span(),
                        format!("{} is below the minimum of 16", ctx.get_ref()),
                    );
                }
                entry.ctx_size = ctx.into_inner();
            }
            if let Some(parallel) = model.parallel {
                if !(1..=256).contains(parallel.get_ref()) {
                    return err(
                        key("parallel"),
                        parallel.span(),
                        format!("{} is not within 1..=256", parallel.get_ref()),
                    );
                }
                entry.parallel = parallel.into_inner();
            }
            if let Some(batch) = model.batch_size {
                if *batch.get_ref() <= entry.parallel {
                    return err(
                        key("batch_size"),
                        batch.span(),
                        format!(
                            "{} must exceed parallel ({}): each step needs one token per sequence plus room for prompts",
                            batch.get_ref(),
                            entry.parallel
                        ),
                    );
                }
                entry.batch_size = batch.into_inner();
            }
            entry.batch_size = entry.batch_size.max(entry.parallel + 1);
            entry.kv_type = model.kv_type;
            entry.pin = model.pin;
            entry.keep_alive = model.keep_alive;
            if let Err(e) = model.sampling.params().validate() {
                return err(key("sampling"), model.name.span(), e.to_string());
            }
            entry.sampling = model.sampling;
            config.models.push(entry);
        }
        for (i, name) in raw.preload.iter().enumerate() {
            if !config.models.iter().any(|m| m.answers_to(name.get_ref())) {
                return err(
                    format!("preload[{i}]"),
                    name.span(),
                    format!("no model is named {:?}", name.get_ref()),
                );
            }
        }
        config.preload = raw.preload.into_iter().map(Spanned::into_inner).collect();
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
memory_budget = "1.5GiB"
default_keep_alive = "10m"
queue_capacity = 8
preload = ["router"]
threads = 2

[[models]]
name = "router"
aliases = ["smol"]
path = "/models/smollm2.gguf"
ctx_size = 1024
parallel = 2
pin = true
keep_alive = -1

[models.sampling]
temperature = 0.2
seed = 7

[[models]]
name = "gemma"
path = "/models/gemma.gguf"
keep_alive = "30s"
kv_type = "q8_0"
"#;

    #[test]
    fn a_full_config() {
        let config = RuntimeConfig::from_toml_str(GOOD).unwrap();
        assert_eq!(config.memory_budget, Some(Budget::Bytes(3 << 29)));
        assert_eq!(config.default_keep_alive, Duration::from_secs(600));
        assert_eq!((config.queue_capacity, config.threads), (8, 2));
        assert_eq!(config.preload, ["router"]);
        let router = &config.models[0];
        assert_eq!(
            (router.ctx_size, router.parallel, router.pin),
            (1024, 2, true)
        );
        assert_eq!(router.keep_alive, Some(KeepAlive::Forever));
        assert!(router.answers_to("smol"));
        let params = router.sampling.params();
        assert_eq!(
            (params.temperature, params.seed, params.top_k),
            (0.2, Some(7), 40)
        );
        let gemma = &config.models[1];
        assert_eq!(gemma.ctx_size, DEFAULT_CTX_SIZE);
        assert_eq!((router.kv_type, gemma.kv_type), (KvType::F16, KvType::Q8_0));
        assert_eq!(gemma.kv_type.engine(), tern_engine::KvType::Q8_0);
        assert_eq!(
            gemma.keep_alive,
            Some(KeepAlive::For(Duration::from_secs(30)))
        );
        assert_eq!(config.memory_wait, DEFAULT_MEMORY_WAIT);
    }

    #[test]
    fn the_example_config_parses() {
        let text = include_str!("../../../examples/tern.toml");
        let config = RuntimeConfig::from_toml_str(text).unwrap();
        assert!(!config.models.is_empty());
    }

    fn error(text: &str) -> ConfigError {
        RuntimeConfig::from_toml_str(text).unwrap_err()
    }

    #[test]
    fn an_unknown_key_is_named_with_its_line() {
        let e = error("[[models]]\nname = \"a\"\npath = \"a.gguf\"\nctx_sise = 5\n");
        assert_eq!(e.line, Some(4), "{e}");
        assert!(e.to_string().contains("ctx_sise"), "{e}");
        assert!(e.to_string().contains("line 4"), "{e}");

        let e = error("memory_budgett = \"1GB\"\n");
        assert_eq!(e.line, Some(1), "{e}");
        assert!(e.to_string().contains("memory_budgett"), "{e}");
    }

    #[test]
    fn a_bad_value_is_named_with_its_key_and_line() {
        let e = error("queue_capacity = 4\nmemory_budget = \"12 parsecs\"\n");
        assert_eq!((e.key.as_str(), e.line), ("memory_budget", Some(2)), "{e}");
        assert!(e.to_string().contains("unknown unit"), "{e}");

        let e = error(
            "[[models]]\nname = \"a\"\npath = \"a.gguf\"\n\n[[models]]\nname = \"b\"\npath = \"b.gguf\"\nparallel = \"four\"\n",
        );
        assert_eq!(
            (e.key.as_str(), e.line),
            ("models[1].parallel", Some(8)),
            "{e}"
        );

        let e = error("[[models]]\nname = \"a\"\npath = \"a.gguf\"\nkv_type = \"q3\"\n");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("models[0].kv_type", Some(4)),
            "{e}"
        );

        let e = error("[[models]]\nname = \"a\"\npath = \"a.gguf\"\nkeep_alive = \"5 minutes\"\n");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("models[0].keep_alive", Some(4)),
            "{e}"
        );

        let e =
            error("[[models]]\nname = \"a\"\npath = \"a.gguf\"\n[models.sampling]\ntop_p = 3.0\n");
        assert_eq!(e.key, "models[0].sampling", "{e}");
        assert!(e.to_string().contains("top_p"), "{e}");
    }

    #[test]
    fn checks_after_parsing_point_at_the_line() {
        let e = error(
            "[[models]]\nname = \"a\"\npath = \"a.gguf\"\n[[models]]\nname = \"b\"\naliases = [\"a\"]\npath = \"b.gguf\"\n",
        );
        assert_eq!(
            (e.key.as_str(), e.line),
            ("models[1].aliases", Some(6)),
            "{e}"
        );
        assert!(e.to_string().contains("line 2"), "{e}");

        let e = error("preload = [\"nope\"]\n[[models]]\nname = \"a\"\npath = \"a.gguf\"\n");
        assert_eq!((e.key.as_str(), e.line), ("preload[0]", Some(1)), "{e}");

        let e =
            error("[[models]]\nname = \"a\"\npath = \"a.gguf\"\nparallel = 4\nbatch_size = 4\n");
        assert_eq!(
            (e.key.as_str(), e.line),
            ("models[0].batch_size", Some(5)),
            "{e}"
        );

        let e = error("[[models]]\nname = \"a\"\n");
        assert!(e.to_string().contains("path"), "{e}");
        let e = error("queue_capacity = \n");
        assert_eq!(e.line, Some(1), "{e}");
    }

    #[test]
    fn durations_and_keep_alive() {
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2.5s"), Ok(Duration::from_millis(2500)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert!(parse_duration("5 minutes").is_err());
        assert!(parse_duration("m").is_err());
        assert_eq!("0".parse(), Ok(KeepAlive::For(Duration::ZERO)));
        assert_eq!("-1".parse(), Ok(KeepAlive::Forever));
        assert_eq!("-5m".parse(), Ok(KeepAlive::Forever));
        assert_eq!(KeepAlive::from_seconds(-1.0), Ok(KeepAlive::Forever));
        assert_eq!(
            KeepAlive::from_seconds(2.0),
            Ok(KeepAlive::For(Duration::from_secs(2)))
        );
        assert!("soon".parse::<KeepAlive>().is_err());
    }
}
