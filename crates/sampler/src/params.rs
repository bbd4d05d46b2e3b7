//! Sampling parameters: llama.cpp's defaults, validated once.

use crate::Error;

/// How the next token is chosen from the logits.
///
/// The defaults are llama.cpp's (`common/common.h`, `common_params_sampling`): temperature
/// 0.8, top-k 40, top-p 0.95, min-p 0.05, no repetition penalty over a window of 64, no
/// frequency or presence penalty, a random seed.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplingParams {
    /// Divides the logits before the final draw. `<= 0` means greedy: exact argmax, ties to
    /// the lowest token id.
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 turns the stage off.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`;
    /// 1.0 turns the stage off.
    pub top_p: f32,
    /// Drop tokens whose probability is below `min_p` times the most likely one's;
    /// 0.0 turns the stage off.
    pub min_p: f32,
    /// llama.cpp's repetition penalty: a token seen in the last `repeat_last_n` tokens of the
    /// history has a positive logit divided by it, a negative one multiplied. 1.0 is off.
    pub repeat_penalty: f32,
    /// How many of the most recent history tokens the repetition penalty looks at (0 = off).
    pub repeat_last_n: usize,
    /// OpenAI's frequency penalty: subtracted from a token's logit once per occurrence of
    /// the token in the whole history. 0.0 is off.
    pub frequency_penalty: f32,
    /// OpenAI's presence penalty: subtracted once from the logit of every token that occurs
    /// in the history at all. 0.0 is off.
    pub presence_penalty: f32,
    /// Seed of the random generator; the same seed, logits and history give the same
    /// tokens. `None` draws a seed from the operating system.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding: always the most likely token.
    pub fn greedy() -> Self {
        Self {
            temperature: 0.0,
            ..Self::default()
        }
    }

    /// True when the parameters select the argmax rather than drawing at random.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0
    }

    /// Checks every field, naming the first bad one. llama.cpp rejects the same values
    /// (`common_sampler_init`): a repetition penalty must be finite and positive, the
    /// other penalties finite.
    pub fn validate(&self) -> Result<(), Error> {
        fn bad(field: &'static str, reason: String) -> Result<(), Error> {
            Err(Error::InvalidParam { field, reason })
        }
        if !self.temperature.is_finite() {
            return bad(
                "temperature",
                format!("{} is not a finite number", self.temperature),
            );
        }
        if !(0.0..=1.0).contains(&self.top_p) {
            return bad("top_p", format!("{} is not within 0.0..=1.0", self.top_p));
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", format!("{} is not within 0.0..=1.0", self.min_p));
        }
        if !self.repeat_penalty.is_finite() || self.repeat_penalty <= 0.0 {
            return bad(
                "repeat_penalty",
                format!("{} must be finite and greater than 0", self.repeat_penalty),
            );
        }
        if !self.frequency_penalty.is_finite() {
            return bad(
                "frequency_penalty",
                format!("{} is not a finite number", self.frequency_penalty),
            );
        }
        if !self.presence_penalty.is_finite() {
            return bad(
                "presence_penalty",
                format!("{} is not a finite number", self.presence_penalty),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_llama_cpp_defaults() {
        let p = SamplingParams::default();
        assert_eq!(
            (p.temperature, p.top_k, p.top_p, p.min_p),
            (0.8, 40, 0.95, 0.05)
        );
        assert_eq!((p.repeat_penalty, p.repeat_last_n), (1.0, 64));
        assert_eq!(
            (p.frequency_penalty, p.presence_penalty, p.seed),
            (0.0, 0.0, None)
        );
        assert!(p.validate().is_ok());
        assert!(!p.is_greedy());
        assert!(SamplingParams::greedy().is_greedy());
    }

    #[test]
    fn validate_names_the_bad_field() {
        let cases: [(SamplingParams, &str); 7] = [
            (
                SamplingParams {
                    temperature: f32::NAN,
                    ..Default::default()
                },
                "temperature",
            ),
            (
                SamplingParams {
                    top_p: 1.5,
                    ..Default::default()
                },
                "top_p",
            ),
            (
                SamplingParams {
                    min_p: -0.1,
                    ..Default::default()
                },
                "min_p",
            ),
            (
                SamplingParams {
                    repeat_penalty: 0.0,
                    ..Default::default()
                },
                "repeat_penalty",
            ),
            (
                SamplingParams {
                    repeat_penalty: f32::INFINITY,
                    ..Default::default()
                },
                "repeat_penalty",
            ),
            (
                SamplingParams {
                    frequency_penalty: f32::NAN,
                    ..Default::default()
                },
                "frequency_penalty",
            ),
            (
                SamplingParams {
                    presence_penalty: f32::INFINITY,
                    ..Default::default()
                },
                "presence_penalty",
            ),
        ];
        for (params, field) in cases {
            match params.validate() {
                Err(Error::InvalidParam { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(
                        Error::InvalidParam { field: f, reason }
                            .to_string()
                            .contains(field)
                    );
                }
                other => panic!("{field}: expected an error, got {other:?}"),
            }
        }
    }
}
