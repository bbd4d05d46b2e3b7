//! The automaton and the mask on small hand-made vocabularies: exact allowed sets at
//! chosen points, the trie walk against a token-by-token check, and random walks whose
//! every output must parse.

use serde_json::json;

use super::*;
use crate::automaton::MAX_WS;

const EOG: u32 = 0;

/// Token 0 is the end-of-generation token; the others are the given texts.
fn vocab(texts: &[&str]) -> Arc<Vocabulary> {
    let mut tokens = vec![Vec::new()];
    tokens.extend(texts.iter().map(|t| t.as_bytes().to_vec()));
    Arc::new(Vocabulary::new(tokens, vec![EOG]).unwrap())
}

/// Every single byte as a token (id = byte + 1), plus some multi-byte ones.
fn byte_vocab() -> Arc<Vocabulary> {
    let mut tokens: Vec<Vec<u8>> = vec![Vec::new()];
    tokens.extend((0..=255u8).map(|b| vec![b]));
    for text in [
        "{\"", "\":", "\": \"", "\",", "\"}", "},", "}]", "[{", "true", "false", "null", "name",
        "\"name\"", "\"age\"", "\"tags\"", ", ", "\n  ", "    ", "\\u", "00e9", "é", "中文", "-1",
        "0.5", "e+10", "123", "\",\"", "red", "\"red\"", "green", "\"}]}",
    ] {
        tokens.push(text.as_bytes().to_vec());
    }
    // Half of a UTF-8 character, as byte-level BPE vocabularies have.
    tokens.push(vec![0xe4, 0xb8]);
    Arc::new(Vocabulary::new(tokens, vec![EOG]).unwrap())
}

fn decoder(constraint: Constraint, vocab: &Arc<Vocabulary>) -> ConstrainedDecoder {
    ConstrainedDecoder::new(&constraint, Arc::clone(vocab)).unwrap()
}

fn schema(value: serde_json::Value) -> Constraint {
    Constraint::JsonSchema(value)
}

/// Ids of the allowed tokens.
fn allowed(d: &mut ConstrainedDecoder) -> Vec<u32> {
    let mut logits = vec![0.0f32; d.vocab.len()];
    d.mask_logits(&mut logits);
    logits
        .iter()
        .enumerate()
        .filter(|(_, l)| l.is_finite())
        .map(|(i, _)| i as u32)
        .collect()
}

/// The texts of the allowed tokens (EOG shown as "<eog>").
fn allowed_texts(d: &mut ConstrainedDecoder) -> Vec<String> {
    let vocab = Arc::clone(&d.vocab);
    allowed(d)
        .into_iter()
        .map(|t| {
            if t == EOG {
                "<eog>".into()
            } else {
                String::from_utf8_lossy(vocab.token_bytes(t)).into_owned()
            }
        })
        .collect()
}

/// Feeds text one byte token at a time (byte vocabularies only).
fn feed(d: &mut ConstrainedDecoder, text: &[u8]) -> Result<(), Error> {
    for &b in text {
        d.accept(u32::from(b) + 1)?;
    }
    Ok(())
}

/// The brute-force reference for one token: advance a copy of the state by its bytes.
fn token_ok(d: &mut ConstrainedDecoder, token: u32) -> bool {
    if d.vocab.is_end_of_generation(token) {
        return d.is_complete();
    }
    let bytes = d.vocab.token_bytes(token).to_vec();
    if bytes.is_empty() || d.finished {
        return false;
    }
    let mut current: Vec<u32> = d.tops[..d.state_len].to_vec();
    for b in bytes {
        let mut next = Vec::new();
        for &t in &current {
            automaton::step(&d.grammar, &mut d.arena, t, b, &mut next);
        }
        current = next;
    }
    d.arena.truncate(d.base);
    !current.is_empty()
}

/// xorshift64*: a tiny deterministic generator for the random walks.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

/// Generates by picking uniformly among allowed tokens, checking the mask against the
/// brute force at every step; returns the text, or None if `max_tokens` ran out.
fn random_walk(d: &mut ConstrainedDecoder, seed: u64, max_tokens: usize) -> Option<Vec<u8>> {
    let mut rng = Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1);
    let mut out = Vec::new();
    for _ in 0..max_tokens {
        let ids = allowed(d);
        let brute: Vec<u32> = (0..d.vocab.len() as u32)
            .filter(|&t| token_ok(d, t))
            .collect();
        assert_eq!(
            ids,
            brute,
            "mask differs from the brute force after {:?}",
            String::from_utf8_lossy(&out)
        );
        assert!(
            !ids.is_empty(),
            "dead end after {:?}",
            String::from_utf8_lossy(&out)
        );
        // Lean towards ending once possible, so walks finish.
        let token = if ids.contains(&EOG) && rng.next().is_multiple_of(4) {
            EOG
        } else {
            ids[(rng.next() % ids.len() as u64) as usize]
        };
        d.accept(token).unwrap();
        if token == EOG {
            return Some(out);
        }
        out.extend_from_slice(d.vocab.token_bytes(token));
    }
    None
}

#[test]
fn schema_object_start_allows_exactly_the_valid_tokens() {
    let v = vocab(&[
        "{",
        " ",
        "[",
        "\"",
        "1",
        "{\"",
        "{\"name",
        "{\"nam",
        "{\"x",
        "{\"age",
        "{}",
        "{\"name\":",
    ]);
    let s = json!({"type": "object", "properties": {"name": {"type": "string"}, "age": {"type": "integer"}}, "required": ["name"]});
    let mut d = decoder(schema(s), &v);
    // "age" is declared after "name", which is required: it cannot come first.
    assert_eq!(
        allowed_texts(&mut d),
        ["{", " ", "{\"", "{\"name", "{\"nam", "{\"name\":"]
    );
    assert!(!d.is_complete());
}

#[test]
fn end_of_generation_only_once_complete_then_only_whitespace_or_end() {
    let v = byte_vocab();
    let s = json!({"type": "object", "properties": {"a": {"type": "boolean"}}, "required": ["a"], "additionalProperties": false});
    let mut d = decoder(schema(s), &v);
    feed(&mut d, b"{\"a\": true").unwrap();
    assert!(!d.allows(EOG));
    assert!(!d.is_complete());
    feed(&mut d, b"}").unwrap();
    assert!(d.is_complete());
    let texts = allowed_texts(&mut d);
    assert!(
        texts
            .iter()
            .all(|t| t == "<eog>" || t.bytes().all(|b| b" \t\n\r".contains(&b))),
        "{texts:?}"
    );
    assert!(texts.contains(&"<eog>".to_string()) && texts.contains(&"\n  ".to_string()));
    d.accept(EOG).unwrap();
    assert_eq!(allowed(&mut d), [EOG]);
    assert!(matches!(
        d.accept(u32::from(b' ') + 1),
        Err(Error::TokenNotAllowed { .. })
    ));
}

#[test]
fn whitespace_runs_are_bounded() {
    let v = byte_vocab();
    let mut d = decoder(Constraint::Json { object_only: false }, &v);
    feed(&mut d, b"[").unwrap();
    for _ in 0..MAX_WS {
        assert!(d.allows(u32::from(b' ') + 1));
        feed(&mut d, b" ").unwrap();
    }
    assert!(!d.allows(u32::from(b' ') + 1));
    assert!(!d.allows(u32::from(b'\n') + 1));
    assert!(d.allows(u32::from(b'1') + 1));
    // After a value the count starts again.
    feed(&mut d, b"1 ").unwrap();
    assert!(d.allows(u32::from(b' ') + 1));
}

#[test]
fn object_only_json_starts_with_a_brace() {
    let v = byte_vocab();
    let mut d = decoder(Constraint::Json { object_only: true }, &v);
    assert!(d.allows(u32::from(b'{') + 1));
    assert!(!d.allows(u32::from(b'[') + 1));
    assert!(!d.allows(u32::from(b'1') + 1));
    let mut d = decoder(Constraint::Json { object_only: false }, &v);
    assert!(d.allows(u32::from(b'[') + 1));
}

#[test]
fn strings_escapes_surrogates_and_utf8() {
    let v = byte_vocab();
    let any = || Constraint::Json { object_only: false };
    let ok = |text: &[u8]| {
        let mut d = decoder(any(), &v);
        feed(&mut d, text).is_ok() && d.is_complete()
    };
    assert!(ok(b"\"a\\n\\\"\\u00e9\\/\""));
    assert!(ok("\"é中😀\"".as_bytes()));
    assert!(ok(b"\"\\ud83d\\ude00\""));
    // A lone low surrogate is refused at its second digit, a high one without its pair at
    // the quote; both are invalid to serde_json.
    let mut d = decoder(any(), &v);
    assert!(feed(&mut d, b"\"\\ude").is_err());
    let mut d = decoder(any(), &v);
    feed(&mut d, b"\"\\ud83d").unwrap();
    assert!(feed(&mut d, b"\"").is_err());
    assert!(feed(&mut d, b"\\u0041").is_err());
    // Raw control characters and broken UTF-8 are refused.
    for bad in [
        &b"\"\x01"[..],
        b"\"\xc3a",
        b"\"\xc0\x80",
        b"\"\xed\xa0\x80",
        b"\"\xf5",
        b"\"\\x",
    ] {
        let mut d = decoder(any(), &v);
        assert!(feed(&mut d, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn partial_utf8_tokens_inside_strings() {
    let v = byte_vocab();
    let half = v.len() as u32 - 1; // bytes e4 b8 (first two of "中")
    let mut d = decoder(Constraint::Json { object_only: false }, &v);
    assert!(!d.allows(half));
    feed(&mut d, b"\"").unwrap();
    assert!(d.allows(half));
    d.accept(half).unwrap();
    assert!(!d.allows(u32::from(b'"') + 1));
    assert!(d.allows(0xad + 1));
    feed(&mut d, &[0xad, b'"']).unwrap();
    assert!(d.is_complete());
}

#[test]
fn numbers_follow_the_json_grammar_and_its_bounds() {
    let v = byte_vocab();
    let check = |constraint: Constraint, text: &str| {
        let mut d = decoder(constraint, &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    let number = || schema(json!({"type": "number"}));
    let integer = || schema(json!({"type": "integer"}));
    for good in ["0", "-0", "12", "-3.25", "1e5", "6.02E+23", "1.5e-07"] {
        assert!(check(number(), good), "{good}");
    }
    for bad in [
        "01",
        "1.",
        "-",
        ".5",
        "1e",
        "+1",
        "1e123",
        "12345678901234567",
    ] {
        assert!(!check(number(), bad), "{bad}");
    }
    assert!(check(integer(), "-42"));
    for bad in ["1.0", "1e3", "1E3"] {
        assert!(!check(integer(), bad), "{bad}");
    }
}

#[test]
fn string_lengths_count_characters() {
    let v = byte_vocab();
    let s = || schema(json!({"type": "string", "minLength": 2, "maxLength": 3}));
    let check = |text: &str| {
        let mut d = decoder(s(), &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    assert!(check("\"ab\""));
    assert!(check("\"é中😀\""));
    assert!(check("\"a\\u00e9\""));
    assert!(check("\"\\ud83d\\ude00x\""));
    assert!(!check("\"a\""));
    assert!(!check("\"abcd\""));
    assert!(!check("\"ééé\\n\""));
}

#[test]
fn enums_consts_and_number_literals() {
    let v = byte_vocab();
    let s = json!({"enum": ["red", "green", 1, 12, null, {"k": [true]}]});
    let check = |text: &str| {
        let mut d = decoder(schema(s.clone()), &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    for good in [
        "\"red\"",
        "\"green\"",
        "1",
        "12",
        "null",
        "{\"k\":[true]}",
        " 12 ",
    ] {
        assert!(check(good), "{good}");
    }
    for bad in ["\"re\"", "\"blue\"", "2", "123", "true", "{\"k\": [true]}"] {
        assert!(!check(bad), "{bad}");
    }
    // After "1", both the end and "2" are open.
    let mut d = decoder(schema(s.clone()), &v);
    feed(&mut d, b"1").unwrap();
    assert!(d.allows(EOG) && d.allows(u32::from(b'2') + 1) && !d.allows(u32::from(b'3') + 1));
    let mut d = decoder(schema(json!({"const": "x"})), &v);
    assert_eq!(
        allowed_texts(&mut d)
            .iter()
            .filter(|t| !t.trim().is_empty())
            .collect::<Vec<_>>(),
        ["\""]
    );
}

#[test]
fn array_lengths_and_optional_properties_in_order() {
    let v = byte_vocab();
    let s = json!({
        "type": "object",
        "properties": {
            "a": {"type": "integer"},
            "b": {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
            "c": {"type": "string"}
        },
        "required": ["b"]
    });
    let check = |text: &str| {
        let mut d = decoder(schema(s.clone()), &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    for good in [
        "{\"b\":[1]}",
        "{\"a\":1,\"b\":[1,2]}",
        "{\"b\":[1],\"c\":\"x\"}",
        "{ \"a\" : 1 , \"b\" : [ 1 ] }",
    ] {
        assert!(check(good), "{good}");
    }
    for bad in [
        "{}",
        "{\"a\":1}",
        "{\"b\":[]}",
        "{\"b\":[1,2,3]}",
        "{\"b\":[1],\"a\":1}",
        "{\"b\":[1],}",
        "{\"b\":[1],\"d\":1}",
        "{\"b\":[1],\"b\":[1]}",
    ] {
        assert!(!check(bad), "{bad}");
    }
}

#[test]
fn an_object_schema_without_properties_allows_any_object() {
    let v = byte_vocab();
    let check = |s: serde_json::Value, text: &str| {
        let mut d = decoder(schema(s), &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    assert!(check(
        json!({"type": "object"}),
        "{\"x\": [1, {\"y\": null}]}"
    ));
    assert!(!check(json!({"type": "object"}), "[1]"));
    // Closed, it allows only the empty object.
    let closed = json!({"type": "object", "additionalProperties": false});
    assert!(check(closed.clone(), "{ }"));
    assert!(!check(closed, "{\"x\": 1}"));
}

#[test]
fn alternatives_that_converge_are_kept_once() {
    let v = byte_vocab();
    let s = json!({"anyOf": [{"type": "integer"}, {"type": "integer", "title": "another"}, {"type": "string"}]});
    let mut d = decoder(schema(s), &v);
    assert_eq!(d.state_len, 3);
    feed(&mut d, b"1").unwrap();
    // Both integer alternatives are now the same number frame.
    assert_eq!(d.state_len, 1);
    assert!(d.is_complete());
}

#[test]
fn any_of_and_recursive_refs() {
    let v = byte_vocab();
    let s = json!({
        "$defs": {"node": {"type": "object", "properties": {"v": {"anyOf": [{"type": "integer"}, {"type": "string"}]}, "kids": {"type": "array", "items": {"$ref": "#/$defs/node"}}}, "required": ["v"], "additionalProperties": false}},
        "$ref": "#/$defs/node"
    });
    let check = |text: &str| {
        let mut d = decoder(schema(s.clone()), &v);
        feed(&mut d, text.as_bytes()).is_ok() && d.is_complete()
    };
    assert!(check(
        "{\"v\":1,\"kids\":[{\"v\":\"x\",\"kids\":[{\"v\":2}]}]}"
    ));
    assert!(!check("{\"v\":true}"));
    assert!(!check("{\"v\":1,\"kids\":[{}]}"));
}

#[test]
fn rejected_tokens_leave_the_state_unchanged() {
    let v = byte_vocab();
    let mut d = decoder(
        schema(json!({"type": "array", "items": {"type": "boolean"}})),
        &v,
    );
    feed(&mut d, b"[tr").unwrap();
    let before = allowed(&mut d);
    let err = d.accept(u32::from(b'x') + 1).unwrap_err();
    assert!(err.to_string().contains("not allowed"), "{err}");
    assert!(matches!(
        d.accept(9999),
        Err(Error::TokenOutOfRange { token: 9999, .. })
    ));
    assert_eq!(allowed(&mut d), before);
    feed(&mut d, b"ue]").unwrap();
    assert!(d.is_complete());
}

#[test]
fn random_walks_always_parse_and_match_the_brute_force() {
    let v = byte_vocab();
    let schemas = [
        Constraint::Json { object_only: false },
        Constraint::Json { object_only: true },
        schema(json!({"type": "array", "items": {"enum": ["red", "green", 3]}, "maxItems": 4})),
        schema(
            json!({"type": "object", "properties": {"name": {"type": "string", "maxLength": 6}, "n": {"type": ["number", "null"]}}, "required": ["n"]}),
        ),
    ];
    let mut finished = 0;
    for (k, constraint) in schemas.iter().enumerate() {
        for seed in 0..40 {
            let mut d = decoder(constraint.clone(), &v);
            let Some(out) = random_walk(&mut d, seed * 31 + k as u64, 400) else {
                continue;
            };
            finished += 1;
            let parsed: Result<serde_json::Value, _> = serde_json::from_slice(&out);
            assert!(
                parsed.is_ok(),
                "{:?}: {:?}",
                String::from_utf8_lossy(&out),
                parsed
            );
            if k == 1 {
                assert!(parsed.unwrap().is_object());
            }
        }
    }
    // Uniform choice over a byte vocabulary often nests deeply; most walks still end.
    assert!(finished >= 80, "only {finished} of 160 walks finished");
}
