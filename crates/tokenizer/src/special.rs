//! Special-token text in prompts: cutting the text into plain fragments and special tokens
//! before the tokenizer proper runs.
//!
//! Follows llama.cpp `llama_vocab::impl::tokenizer_st_partition`: the special tokens
//! (control, user-defined, unknown) are taken longest text first, and each one takes every
//! non-overlapping occurrence, left to right, that still lies inside unclaimed text. So a
//! longer token wins over a shorter one wherever they overlap, even when the shorter one
//! starts earlier. Control and unknown tokens count only when special-token parsing is
//! asked for; user-defined tokens always do. Tokens marked left/right-strip swallow the
//! ASCII whitespace next to them (Phi-3).
//!
//! llama.cpp scans the text once per special token (6,400 scans for Gemma 3); here one
//! Aho-Corasick pass finds all occurrences, then they are claimed in llama.cpp's order.

use std::ops::Range;

use aho_corasick::{AhoCorasick, MatchKind};

use crate::Error;
use crate::vocab::{Attr, TokenTable};

/// A piece of the prompt after special-token partitioning.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fragment {
    /// Plain text to tokenize: a byte range of the prompt.
    Text(Range<usize>),
    /// A special token matched by its text.
    Token(u32),
}

#[derive(Debug)]
pub(crate) struct SpecialMatcher {
    automaton: Option<AhoCorasick>,
    /// Per pattern: token id, priority (0 = taken first), attributes.
    patterns: Vec<Pattern>,
}

#[derive(Clone, Copy, Debug)]
struct Pattern {
    id: u32,
    priority: u32,
    attr: Attr,
}

/// Byte states while claiming.
const FREE: u8 = 0;
const CLAIMED: u8 = 1;

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0B | 0x0C | b'\r')
}

impl SpecialMatcher {
    pub(crate) fn new(table: &TokenTable) -> Result<SpecialMatcher, Error> {
        let mut ids: Vec<u32> = (0..table.len() as u32)
            .filter(|&id| {
                table.attrs[id as usize].has(Attr::CONTROL | Attr::USER_DEFINED | Attr::UNKNOWN)
            })
            .collect();
        // Longest text first; llama.cpp's sort leaves equal lengths in no fixed order, ids
        // break the tie here.
        ids.sort_by(|&a, &b| {
            let len = |id: u32| table.texts.get(id as usize).map_or(0, str::len);
            len(b).cmp(&len(a)).then(a.cmp(&b))
        });
        let patterns: Vec<Pattern> = ids
            .iter()
            .enumerate()
            .map(|(priority, &id)| Pattern {
                id,
                priority: priority as u32,
                attr: table.attrs[id as usize],
            })
            .collect();
        let automaton = if ids.is_empty() {
            None
        } else {
            let texts = ids
                .iter()
                .map(|&id| table.texts.get(id as usize).unwrap_or_default().as_bytes());
            Some(
                AhoCorasick::builder()
                    .match_kind(MatchKind::Standard)
                    .build(texts)
                    .map_err(|e| Error::Internal(format!("special-token automaton: {e}")))?,
            )
        };
        Ok(SpecialMatcher {
            automaton,
            patterns,
        })
    }

    /// Cuts `text` into fragments. `parse_special`: whether control and unknown token
    /// texts become tokens.
    pub(crate) fn partition(&self, text: &str, parse_special: bool, out: &mut Vec<Fragment>) {
        if text.is_empty() {
            return;
        }
        let Some(automaton) = &self.automaton else {
            out.push(Fragment::Text(0..text.len()));
            return;
        };
        let bytes = text.as_bytes();
        // (priority, start, end, pattern index)
        let mut found: Vec<(u32, usize, usize, usize)> = automaton
            .find_overlapping_iter(bytes)
            .filter_map(|m| {
                let index = m.pattern().as_usize();
                let pattern = self.patterns[index];
                let eligible = parse_special || !pattern.attr.has(Attr::CONTROL | Attr::UNKNOWN);
                eligible.then_some((pattern.priority, m.start(), m.end(), index))
            })
            .collect();
        if found.is_empty() {
            out.push(Fragment::Text(0..text.len()));
            return;
        }
        found.sort_unstable();
        let mut state = vec![FREE; bytes.len()];
        // Claimed tokens: (start, end, id).
        let mut claimed: Vec<(usize, usize, u32)> = Vec::new();
        for &(_, start, end, index) in &found {
            if state[start..end].iter().any(|&s| s != FREE) {
                continue;
            }
            state[start..end].fill(CLAIMED);
            let pattern = self.patterns[index];
            if pattern.attr.has(Attr::LSTRIP) {
                let mut i = start;
                while i > 0 && state[i - 1] == FREE && is_c_space(bytes[i - 1]) {
                    i -= 1;
                    state[i] = CLAIMED;
                }
            }
            if pattern.attr.has(Attr::RSTRIP) {
                let mut i = end;
                while i < bytes.len() && state[i] == FREE && is_c_space(bytes[i]) {
                    state[i] = CLAIMED;
                    i += 1;
                }
            }
            claimed.push((start, end, pattern.id));
        }
        claimed.sort_unstable();
        // Free runs become text fragments; stripped whitespace is dropped.
        let mut pos = 0;
        let push_free = |from: usize, to: usize, out: &mut Vec<Fragment>| {
            let mut i = from;
            while i < to {
                if state[i] == FREE {
                    let run_start = i;
                    while i < to && state[i] == FREE {
                        i += 1;
                    }
                    out.push(Fragment::Text(run_start..i));
                } else {
                    i += 1;
                }
            }
        };
        for (start, end, id) in claimed {
            push_free(pos, start, out);
            out.push(Fragment::Token(id));
            pos = end;
        }
        push_free(pos, bytes.len(), out);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vocab::{Family, Vocab};

    /// Tokens: 0 "a", 1 "abcd" (control), 2 "xab" (control), 3 "<u>" (user-defined),
    /// 4 "<|end|>" (control).
    fn table(name: Option<&str>) -> TokenTable {
        let vocab = Vocab {
            model: "gpt2".into(),
            tokens: ["a", "abcd", "xab", "<u>", "<|end|>"]
                .map(String::from)
                .to_vec(),
            token_types: Some(vec![1, 3, 3, 4, 3]),
            merges: Some(vec![]),
            name: name.map(String::from),
            ..Vocab::default()
        };
        TokenTable::build(&vocab, Family::Bpe, false).expect("table")
    }

    fn split(table: &TokenTable, text: &str, parse_special: bool) -> Vec<String> {
        let matcher = SpecialMatcher::new(table).expect("matcher");
        let mut out = Vec::new();
        matcher.partition(text, parse_special, &mut out);
        out.into_iter()
            .map(|f| match f {
                Fragment::Text(r) => format!("'{}'", &text[r]),
                Fragment::Token(id) => format!("#{id}"),
            })
            .collect()
    }

    #[test]
    fn longer_tokens_win_even_when_a_shorter_one_starts_first() {
        // "xab" starts first, but "abcd" is longer and is claimed before it.
        assert_eq!(split(&table(None), "xabcd", true), ["'x'", "#1"]);
        assert_eq!(split(&table(None), "xab abcd", true), ["#2", "' '", "#1"]);
    }

    #[test]
    fn control_tokens_need_special_parsing_user_defined_do_not() {
        assert_eq!(
            split(&table(None), "x<u>abcd", false),
            ["'x'", "#3", "'abcd'"]
        );
        assert_eq!(split(&table(None), "x<u>abcd", true), ["'x'", "#3", "#1"]);
    }

    #[test]
    fn phi3_special_tokens_swallow_following_whitespace() {
        let phi = table(Some("Phi3"));
        assert_eq!(
            split(&phi, "<|end|>\n  hi <|end|>", true),
            ["#4", "'hi '", "#4"]
        );
        assert_eq!(
            split(&table(None), "<|end|>\n  hi", true),
            ["#4", "'\n  hi'"]
        );
    }

    #[test]
    fn repeated_and_adjacent_tokens() {
        assert_eq!(
            split(&table(None), "<u><u>x<u>", false),
            ["#3", "#3", "'x'", "#3"]
        );
        assert_eq!(split(&table(None), "", true), Vec::<String>::new());
    }
}
