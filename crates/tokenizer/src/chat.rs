//! Chat templates: messages to prompt text, rendered from the model's Jinja template as
//! Hugging Face transformers renders it.
//!
//! transformers compiles `tokenizer.chat_template` with Jinja2 (`_compile_jinja_template`):
//! `trim_blocks` and `lstrip_blocks` on, the `loopcontrols` extension, a `tojson` filter that
//! is plain `json.dumps` (key order kept, no HTML escaping, non-ASCII kept), and the globals
//! `raise_exception(message)` and `strftime_now(format)`. It renders with `messages`,
//! `tools` and `documents` (none unless given), `add_generation_prompt`, the special tokens
//! (`bos_token`, `eos_token`) and any extra keyword (e.g. `enable_thinking`). This module
//! does the same with minijinja plus `minijinja-contrib`'s Python string/dict methods
//! (`.startswith`, `.split`, `.items`…), and is tested byte for byte against Jinja2
//! renders made by `scripts/tokenizer/make_template_goldens.py`.
//!
//! llama.cpp differs on purpose in two ways that tern does not copy: it renders with its
//! own Jinja engine, and its non-Jinja built-in ChatML path does not insert SmolLM2's
//! default system prompt (the template does, so tern does too).
//!
//! # The ChatML fallback
//!
//! A model whose GGUF has no `tokenizer.chat_template` (Gemma 3 270M, a base model) gets
//! [`CHATML_FALLBACK`], the format llama.cpp also falls back to:
//!
//! ```text
//! <|im_start|>{role}\n{content}<|im_end|>\n      (for every message, in order)
//! <|im_start|>assistant\n                        (when add_generation_prompt)
//! ```
//!
//! No default system prompt is added and no BOS text is written (the tokenizer adds BOS
//! when the model asks for it). For a vocabulary without `<|im_start|>` these markers are
//! plain text: a base model has no chat format of its own to follow.

use std::time::{SystemTime, UNIX_EPOCH};

use minijinja::value::{Kwargs, Value, ValueKind};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::{Error, Tokenizer};

/// The template used when a model has none (see the module documentation).
pub const CHATML_FALLBACK: &str = "{%- for message in messages -%}\
{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' -}}\
{%- endfor -%}\
{%- if add_generation_prompt -%}{{- '<|im_start|>assistant\\n' -}}{%- endif -%}";

/// One chat message. Fields beyond `role` and `content` (e.g. `tool_calls`, `name`,
/// `reasoning_content`) go in `extra` and reach the template as message attributes.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// "system", "user", "assistant", "tool"…
    pub role: String,
    /// The message text (`null` in JSON reads as empty, as OpenAI clients send it for
    /// tool-call-only assistant messages).
    #[serde(default, deserialize_with = "null_as_empty")]
    pub content: String,
    /// Other attributes, passed to the template unchanged.
    #[serde(flatten)]
    pub extra: serde_json::Map<String, serde_json::Value>,
}

fn null_as_empty<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(deserializer)?.unwrap_or_default())
}

impl Message {
    /// A message with a role and text.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Message {
        Message {
            role: role.into(),
            content: content.into(),
            extra: serde_json::Map::new(),
        }
    }
    /// A system message.
    pub fn system(content: impl Into<String>) -> Message {
        Message::new("system", content)
    }
    /// A user message.
    pub fn user(content: impl Into<String>) -> Message {
        Message::new("user", content)
    }
    /// An assistant message.
    pub fn assistant(content: impl Into<String>) -> Message {
        Message::new("assistant", content)
    }
}

/// A compiled chat template.
#[derive(Debug)]
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
    fallback: bool,
}

const TEMPLATE_NAME: &str = "chat_template";

impl ChatTemplate {
    /// The GGUF's `tokenizer.chat_template`, or [`CHATML_FALLBACK`] when it has none.
    /// `bos_token` / `eos_token` are the texts of the tokenizer's BOS / EOS tokens.
    pub fn from_gguf(
        meta: &tern_gguf::Metadata,
        tokenizer: &Tokenizer,
    ) -> Result<ChatTemplate, Error> {
        let source = crate::gguf::chat_template(meta)?;
        ChatTemplate::for_tokenizer(source.as_deref(), tokenizer)
    }

    /// The template `source` (or the fallback when `None`) with the tokenizer's BOS / EOS
    /// texts.
    pub fn for_tokenizer(
        source: Option<&str>,
        tokenizer: &Tokenizer,
    ) -> Result<ChatTemplate, Error> {
        let bos = tokenizer.bos().map_or("", |id| tokenizer.token_text(id));
        let eos = tokenizer.eos().map_or("", |id| tokenizer.token_text(id));
        match source {
            Some(source) => ChatTemplate::new(source, bos, eos),
            None => {
                let mut template = ChatTemplate::new(CHATML_FALLBACK, bos, eos)?;
                template.fallback = true;
                Ok(template)
            }
        }
    }

    /// Compiles a template.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate, Error> {
        let mut env = Environment::new();
        env.set_syntax(
            minijinja::syntax::SyntaxConfig::builder()
                .trim_blocks(true)
                .lstrip_blocks(true)
                .build()
                .map_err(Error::from)?,
        );
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_filter("tojson", tojson);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_template_owned(TEMPLATE_NAME, source.to_string())?;
        Ok(ChatTemplate {
            env,
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            fallback: false,
        })
    }

    /// Renders the conversation. `extra` adds or overrides template variables (e.g.
    /// `enable_thinking`, `tools`, `date_string`).
    pub fn render(
        &self,
        messages: &[Message],
        add_generation_prompt: bool,
        extra: &serde_json::Map<String, serde_json::Value>,
    ) -> Result<String, Error> {
        let mut context = serde_json::Map::new();
        context.insert(
            "messages".into(),
            serde_json::to_value(messages).map_err(|e| Error::Template(e.to_string()))?,
        );
        context.insert("tools".into(), serde_json::Value::Null);
        context.insert("documents".into(), serde_json::Value::Null);
        context.insert("add_generation_prompt".into(), add_generation_prompt.into());
        context.insert("bos_token".into(), self.bos_token.clone().into());
        context.insert("eos_token".into(), self.eos_token.clone().into());
        for (key, value) in extra {
            context.insert(key.clone(), value.clone());
        }
        let template = self.env.get_template(TEMPLATE_NAME)?;
        Ok(template.render(Value::from(minijinja::value::Serde(&context)))?)
    }

    /// Whether this is the ChatML fallback (the model has no template).
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// The template source.
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// `raise_exception(message)`: fails the render with the template's message.
fn raise_exception(message: String) -> Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson` as transformers defines it: `json.dumps(x, ensure_ascii=False, indent=indent,
/// separators=separators, sort_keys=sort_keys)`.
fn tojson(value: &Value, kwargs: Kwargs) -> Result<Value, minijinja::Error> {
    let indent: Option<Value> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    let separators: Option<Value> = kwargs.get("separators")?;
    let ensure_ascii: Option<bool> = kwargs.get("ensure_ascii")?;
    kwargs.assert_all_used()?;
    let indent = match indent {
        None => None,
        Some(v) if v.is_none() => None,
        Some(v) => match v.as_str() {
            Some(s) => Some(s.to_string()),
            None => Some(" ".repeat(v.as_usize().unwrap_or(0))),
        },
    };
    let (item_sep, key_sep) = match separators {
        Some(v) if !v.is_none() => {
            let parts: Vec<Value> = v.try_iter()?.collect();
            match parts.as_slice() {
                [a, b] => (a.to_string(), b.to_string()),
                _ => {
                    return Err(minijinja::Error::new(
                        ErrorKind::InvalidOperation,
                        "separators must be a pair",
                    ));
                }
            }
        }
        _ => (
            if indent.is_some() {
                ",".to_string()
            } else {
                ", ".to_string()
            },
            ": ".to_string(),
        ),
    };
    let style = JsonStyle {
        indent,
        item_sep,
        key_sep,
        sort_keys: sort_keys.unwrap_or(false),
        ensure_ascii: ensure_ascii.unwrap_or(false),
    };
    let mut out = String::new();
    style.write(value, 0, &mut out)?;
    Ok(Value::from_safe_string(out))
}

struct JsonStyle {
    indent: Option<String>,
    item_sep: String,
    key_sep: String,
    sort_keys: bool,
    ensure_ascii: bool,
}

impl JsonStyle {
    fn newline(&self, depth: usize, out: &mut String) {
        if let Some(indent) = &self.indent {
            out.push('\n');
            for _ in 0..depth {
                out.push_str(indent);
            }
        }
    }

    fn write(&self, value: &Value, depth: usize, out: &mut String) -> Result<(), minijinja::Error> {
        match value.kind() {
            ValueKind::Undefined | ValueKind::None => out.push_str("null"),
            ValueKind::Bool => out.push_str(if value.is_true() { "true" } else { "false" }),
            ValueKind::Number => {
                if value.is_integer() {
                    out.push_str(&value.to_string());
                } else {
                    out.push_str(&python_float_repr(f64::try_from(value.clone())?));
                }
            }
            ValueKind::String => self.write_str(value.as_str().unwrap_or_default(), out),
            ValueKind::Seq | ValueKind::Iterable => {
                let items: Vec<Value> = value.try_iter()?.collect();
                if items.is_empty() {
                    out.push_str("[]");
                    return Ok(());
                }
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    self.write(item, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push(']');
            }
            ValueKind::Map => {
                let mut keys: Vec<Value> = value.try_iter()?.collect();
                if keys.is_empty() {
                    out.push_str("{}");
                    return Ok(());
                }
                if self.sort_keys {
                    keys.sort();
                }
                out.push('{');
                for (i, key) in keys.iter().enumerate() {
                    if i > 0 {
                        out.push_str(&self.item_sep);
                    }
                    self.newline(depth + 1, out);
                    // json.dumps turns non-string keys into strings.
                    let key_text = match key.kind() {
                        ValueKind::String => key.as_str().unwrap_or_default().to_string(),
                        ValueKind::None => "null".to_string(),
                        ValueKind::Bool => {
                            (if key.is_true() { "true" } else { "false" }).to_string()
                        }
                        _ => key.to_string(),
                    };
                    self.write_str(&key_text, out);
                    out.push_str(&self.key_sep);
                    self.write(&value.get_item(key)?, depth + 1, out)?;
                }
                self.newline(depth, out);
                out.push('}');
            }
            _ => self.write_str(&value.to_string(), out),
        }
        Ok(())
    }

    /// Python's JSON string escaping.
    fn write_str(&self, s: &str, out: &mut String) {
        out.push('"');
        for c in s.chars() {
            match c {
                '"' => out.push_str("\\\""),
                '\\' => out.push_str("\\\\"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\u{08}' => out.push_str("\\b"),
                '\u{0C}' => out.push_str("\\f"),
                c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
                c if self.ensure_ascii && (c as u32) > 0x7E => {
                    let mut buf = [0u16; 2];
                    for unit in c.encode_utf16(&mut buf) {
                        out.push_str(&format!("\\u{unit:04x}"));
                    }
                }
                c => out.push(c),
            }
        }
        out.push('"');
    }
}

/// Python's `repr(float)`: shortest round-trip digits, positional notation for decimal
/// exponents in [-4, 16), scientific (`1e+16`, `1.5e-07`) otherwise.
fn python_float_repr(v: f64) -> String {
    if v.is_nan() {
        return "NaN".into();
    }
    if v.is_infinite() {
        return if v > 0.0 {
            "Infinity".into()
        } else {
            "-Infinity".into()
        };
    }
    let sci = format!("{v:e}"); // e.g. "-1.2345e-7", shortest round-trip digits
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((&sci, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = mantissa
        .strip_prefix('-')
        .map_or(("", mantissa), |m| ("-", m));
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    if (-4..16).contains(&exponent) {
        let point = exponent + 1; // digits before the decimal point
        let body = if point <= 0 {
            format!("0.{}{}", "0".repeat((-point) as usize), digits)
        } else if point as usize >= digits.len() {
            format!("{}{}.0", digits, "0".repeat(point as usize - digits.len()))
        } else {
            format!(
                "{}.{}",
                &digits[..point as usize],
                &digits[point as usize..]
            )
        };
        format!("{sign}{body}")
    } else {
        let rest = &digits[1..];
        let mantissa = if rest.is_empty() {
            digits[..1].to_string()
        } else {
            format!("{}.{}", &digits[..1], rest)
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        format!("{sign}{mantissa}e{exp_sign}{:02}", exponent.abs())
    }
}

/// `strftime_now(format)`: the current time (UTC) formatted as Python's `strftime`, for
/// the directives templates use (`%d %b %Y`, `%Y-%m-%d`, `%B`, `%A`, `%H:%M:%S`…).
fn strftime_now(format: String) -> Result<Value, minijinja::Error> {
    let seconds = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    Ok(Value::from(strftime(&format, seconds)))
}

const MONTHS: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];
const WEEKDAYS: [&str; 7] = [
    "Monday",
    "Tuesday",
    "Wednesday",
    "Thursday",
    "Friday",
    "Saturday",
    "Sunday",
];

/// Formats a Unix time (UTC) with a subset of C `strftime` directives; unknown directives
/// are kept as written, as Python does on glibc.
pub(crate) fn strftime(format: &str, unix_seconds: i64) -> String {
    let days = unix_seconds.div_euclid(86_400);
    let secs = unix_seconds.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    let weekday = (days + 3).rem_euclid(7) as usize; // 1970-01-01 was a Thursday
    let day_of_year = days - days_from_civil(year, 1, 1) + 1;
    let (hour, minute, second) = (secs / 3600, secs / 60 % 60, secs % 60);
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('d') => out.push_str(&format!("{day:02}")),
            Some('m') => out.push_str(&format!("{month:02}")),
            Some('Y') => out.push_str(&format!("{year}")),
            Some('y') => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            Some('B') => out.push_str(MONTHS[(month - 1) as usize]),
            Some('b') | Some('h') => out.push_str(&MONTHS[(month - 1) as usize][..3]),
            Some('A') => out.push_str(WEEKDAYS[weekday]),
            Some('a') => out.push_str(&WEEKDAYS[weekday][..3]),
            Some('H') => out.push_str(&format!("{hour:02}")),
            Some('I') => out.push_str(&format!(
                "{:02}",
                if hour % 12 == 0 { 12 } else { hour % 12 }
            )),
            Some('p') => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            Some('M') => out.push_str(&format!("{minute:02}")),
            Some('S') => out.push_str(&format!("{second:02}")),
            Some('j') => out.push_str(&format!("{day_of_year:03}")),
            Some('e') => out.push_str(&format!("{day:>2}")),
            Some('%') => out.push('%'),
            Some(other) => {
                out.push('%');
                out.push(other);
            }
            None => out.push('%'),
        }
    }
    out
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_matches_known_dates() {
        // 2024-07-26 00:00:00 UTC was a Friday.
        assert_eq!(strftime("%d %b %Y", 1_721_952_000), "26 Jul 2024");
        assert_eq!(
            strftime("%A %B %e, %Y %H:%M:%S %j %%", 1_721_952_000 + 3_723),
            "Friday July 26, 2024 01:02:03 208 %"
        );
        assert_eq!(strftime("%Y-%m-%d", 0), "1970-01-01");
        assert_eq!(strftime("%Y-%m-%d %a", 951_782_400), "2000-02-29 Tue");
    }

    #[test]
    fn python_float_repr_matches_python() {
        for (v, expected) in [
            (1.0, "1.0"),
            (0.1, "0.1"),
            (-2.5, "-2.5"),
            (1e16, "1e+16"),
            (1.5e-7, "1.5e-07"),
            (0.0001, "0.0001"),
            (123456.789, "123456.789"),
            (1e15, "1000000000000000.0"),
        ] {
            assert_eq!(python_float_repr(v), expected, "{v}");
        }
    }

    #[test]
    fn tojson_is_python_json_dumps() {
        let t = ChatTemplate::new("{{ x | tojson }}|{{ x | tojson(indent=2) }}", "", "")
            .expect("compiles");
        let mut extra = serde_json::Map::new();
        extra.insert(
            "x".into(),
            serde_json::json!({"b": 1, "a": [true, null, "é<\n"], "c": 0.5}),
        );
        let out = t.render(&[], false, &extra).expect("renders");
        assert_eq!(
            out,
            "{\"b\": 1, \"a\": [true, null, \"é<\\n\"], \"c\": 0.5}|{\n  \"b\": 1,\n  \"a\": [\n    true,\n    null,\n    \"é<\\n\"\n  ],\n  \"c\": 0.5\n}"
        );
    }

    #[test]
    fn raise_exception_fails_the_render_with_its_message() {
        let t =
            ChatTemplate::new("{{ raise_exception('no system role') }}", "", "").expect("compiles");
        let err = t.render(&[], false, &serde_json::Map::new()).unwrap_err();
        assert!(err.to_string().contains("no system role"), "{err}");
    }

    #[test]
    fn shareable_across_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
        assert_send_sync::<crate::Tokenizer>();
    }

    #[test]
    fn null_content_reads_as_empty() {
        let m: Message =
            serde_json::from_str(r#"{"role": "assistant", "content": null, "tool_calls": []}"#)
                .expect("parses");
        assert_eq!(m.content, "");
        let m: Message = serde_json::from_str(r#"{"role": "assistant"}"#).expect("parses");
        assert_eq!(m.content, "");
    }

    #[test]
    fn fallback_is_chatml() {
        let mut t = ChatTemplate::new(CHATML_FALLBACK, "<bos>", "<eos>").expect("compiles");
        t.fallback = true;
        let out = t
            .render(
                &[
                    Message::system("S"),
                    Message::user("Hi"),
                    Message::assistant("Yo"),
                ],
                true,
                &serde_json::Map::new(),
            )
            .expect("renders");
        assert_eq!(
            out,
            "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nYo<|im_end|>\n<|im_start|>assistant\n"
        );
        assert!(t.is_fallback());
    }
}
