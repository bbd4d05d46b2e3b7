//! Stop strings for streaming output.
//!
//! Text arrives a token piece at a time, and a stop string may span several pieces. The
//! matcher emits everything that can no longer be part of a stop string, holds back only
//! the longest tail that is still a prefix of one, and cuts the text right before the
//! first stop string found (OpenAI semantics: the stop string itself is not returned).

/// Which stop string ended the text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stopped {
    /// Its index in the list given to [`StopMatcher::new`].
    pub index: usize,
    /// The stop string.
    pub stop: String,
}

/// Finds stop strings across token boundaries in streamed text.
#[derive(Debug, Clone)]
pub struct StopMatcher {
    stops: Vec<String>,
    /// Text received but not yet emitted: a possible start of a stop string.
    held: String,
    stopped: Option<Stopped>,
}

impl StopMatcher {
    /// A matcher for these stop strings; empty strings are ignored.
    pub fn new<S: AsRef<str>>(stops: &[S]) -> Self {
        let stops = stops
            .iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        Self {
            stops,
            held: String::new(),
            stopped: None,
        }
    }

    /// Feeds the next piece of text. Returns the text that is safe to emit now and, once a
    /// stop string has been seen, which one. After a stop, further pieces are dropped.
    pub fn push(&mut self, piece: &str) -> (String, Option<Stopped>) {
        if self.stopped.is_some() {
            return (String::new(), self.stopped.clone());
        }
        self.held.push_str(piece);
        // Earliest match wins; at equal positions the first listed stop string.
        let mut first: Option<(usize, usize)> = None;
        for (index, stop) in self.stops.iter().enumerate() {
            if let Some(at) = self.held.find(stop.as_str())
                && first.is_none_or(|(best, _)| at < best)
            {
                first = Some((at, index));
            }
        }
        if let Some((at, index)) = first {
            let emit = self.held[..at].to_owned();
            self.held.clear();
            self.stopped = Some(Stopped {
                index,
                stop: self.stops[index].clone(),
            });
            return (emit, self.stopped.clone());
        }
        let keep = self.partial_match_len();
        let split = self.held.len() - keep;
        let emit = self.held[..split].to_owned();
        self.held.drain(..split);
        (emit, None)
    }

    /// The end of the stream: returns the held-back text (no stop string was completed).
    pub fn finish(&mut self) -> String {
        std::mem::take(&mut self.held)
    }

    /// The stop string seen, if any.
    pub fn stopped(&self) -> Option<&Stopped> {
        self.stopped.as_ref()
    }

    /// Length of the longest tail of `held` (on a character boundary) that is a proper
    /// prefix of some stop string.
    fn partial_match_len(&self) -> usize {
        let mut best = 0;
        for stop in &self.stops {
            let longest = (stop.len() - 1).min(self.held.len());
            for len in (best + 1..=longest).rev() {
                let start = self.held.len() - len;
                if self.held.is_char_boundary(start)
                    && stop.as_bytes().starts_with(&self.held.as_bytes()[start..])
                {
                    best = len;
                    break;
                }
            }
        }
        best
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the pieces, returning everything emitted (including `finish`) and the stop.
    fn run(stops: &[&str], pieces: &[&str]) -> (String, Vec<String>, Option<usize>) {
        let mut m = StopMatcher::new(stops);
        let mut out = String::new();
        let mut emitted = Vec::new();
        let mut stop = None;
        for piece in pieces {
            let (text, s) = m.push(piece);
            out.push_str(&text);
            emitted.push(text);
            if let Some(s) = s {
                stop = Some(s.index);
            }
        }
        out.push_str(&m.finish());
        (out, emitted, stop)
    }

    #[test]
    fn stops_inside_one_piece() {
        let (out, _, stop) = run(&["END"], &["hello END world"]);
        assert_eq!((out.as_str(), stop), ("hello ", Some(0)));
    }

    #[test]
    fn stops_across_token_boundaries_holding_back_only_the_partial_match() {
        let (out, emitted, stop) = run(
            &["</answer>"],
            &["The result", " is 4</", "ans", "wer> trailing"],
        );
        assert_eq!(out, "The result is 4");
        assert_eq!(stop, Some(0));
        // "</" and "</ans" were held back, nothing else.
        assert_eq!(emitted, ["The result", " is 4", "", ""]);
    }

    #[test]
    fn a_false_start_is_released_without_loss() {
        let (out, emitted, stop) = run(&["\n\nUser:"], &["a\n", "\nUs", "ed it", "\n"]);
        assert_eq!(stop, None);
        assert_eq!(out, "a\n\nUsed it\n");
        assert_eq!(emitted, ["a", "", "\n\nUsed it", ""]);
    }

    #[test]
    fn the_earliest_stop_wins_and_later_text_is_dropped() {
        let (out, _, stop) = run(&["world", "lo w"], &["hel", "lo wor", "ld"]);
        assert_eq!((out.as_str(), stop), ("hel", Some(1)));
        let mut m = StopMatcher::new(&["x"]);
        assert_eq!(m.push("axb").0, "a");
        assert_eq!(
            m.push("more"),
            (
                String::new(),
                Some(Stopped {
                    index: 0,
                    stop: "x".into()
                })
            )
        );
        assert_eq!(m.finish(), "");
    }

    #[test]
    fn multibyte_text_is_split_on_character_boundaries() {
        // "é" is a prefix byte-wise of nothing; "→" shares its first byte with "⇒".
        let (out, emitted, stop) = run(&["⇒stop"], &["caf", "é →", " ⇒st", "op!"]);
        assert_eq!((out.as_str(), stop), ("café → ", Some(0)));
        assert_eq!(emitted, ["caf", "é →", " ", ""]);
    }

    #[test]
    fn without_stops_everything_passes_through() {
        let (out, emitted, stop) = run(&[], &["a", "b"]);
        assert_eq!((out.as_str(), stop), ("ab", None));
        assert_eq!(emitted, ["a", "b"]);
        let (out, _, stop) = run(&[""], &["a"]);
        assert_eq!((out.as_str(), stop), ("a", None));
    }
}
