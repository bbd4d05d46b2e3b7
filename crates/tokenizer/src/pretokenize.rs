//! Pre-tokenizers of byte-level BPE: the text is cut into words before merges run, by the
//! rules `tokenizer.ggml.pre` names.
//!
//! Follows llama.cpp `src/llama-vocab.cpp` (`llm_tokenizer_bpe`, the pattern list per
//! pre-tokenizer type) and `src/unicode.cpp` (`unicode_regex_split`). A pre-tokenizer is a
//! list of steps; each step cuts every piece of the previous step further, never across
//! its boundaries. The GPT-2, Llama 3 and Qwen 2 patterns (`\s+(?!\S)` needs a look-ahead
//! that the `regex` crate lacks) have hand-written splitters, as in llama.cpp, which are
//! also several times faster than a regex engine. The other patterns run on the `regex`
//! crate over the same "collapsed" text llama.cpp builds: every non-ASCII code point
//! replaced by one stand-in character per general-category class, so that `\p{L}` and
//! friends mean exactly llama.cpp's classes.

use std::ops::Range;

use crate::Error;
use crate::unicode::{self, Flags};

/// One cutting step.
#[derive(Debug)]
enum Step {
    /// `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)`
    Gpt2,
    /// Llama 3: case-insensitive contractions, `[^\r\n\p{L}\p{N}]?\p{L}+`, `\p{N}{1,3}`,
    /// ` ?[^\s\p{L}\p{N}]+[\r\n]*`, `\s*[\r\n]+`, `\s+(?!\S)`, `\s+`.
    Llama3,
    /// Qwen 2: as Llama 3 but one digit per piece.
    Qwen2,
    /// Qwen 3.5: as Qwen 2 with marks (`\p{M}`) counted with letters.
    Qwen35,
    /// `[^\n]+|[\n]+`: runs of newlines apart from the rest.
    Newlines,
    /// `\p{N}`: every number code point on its own.
    EachNumber,
    /// Any other pattern, run with the `regex` crate.
    Regex(Box<RegexStep>),
}

#[derive(Debug)]
struct RegexStep {
    regex: regex::Regex,
    /// Whether the pattern uses `\p{..}` classes and so runs on the collapsed text.
    collapsed: bool,
}

/// The pre-tokenizer of a byte-level BPE vocabulary.
#[derive(Debug)]
pub(crate) struct PreTokenizer {
    steps: Vec<Step>,
}

/// Options of the BPE model that depend on the pre-tokenizer name (llama.cpp sets them in
/// `llama_vocab::impl::load` next to the pre-tokenizer type).
#[derive(Debug, Clone, Copy)]
pub(crate) struct PreOptions {
    /// Words are byte-level encoded (GPT-2 style) before merging.
    pub byte_encode: bool,
    /// A word that is already a token is not merged (`ignore_merges`).
    pub ignore_merges: bool,
    /// Default of `add_bos` before the metadata key is read.
    pub add_bos: bool,
    /// Spaces are written as `▁` before merging (SentencePiece-style BPE).
    pub escape_whitespaces: bool,
    /// `clean_up_tokenization_spaces` in detokenization.
    pub clean_spaces: bool,
    /// Gemma 4's fix: a word made only of newlines that is a token stays whole.
    pub newline_words_whole: bool,
    /// The family's default BOS id does not apply (ChatGLM); metadata may still set one.
    pub no_default_bos: bool,
}

/// Bloom / Poro / Viking: words up to sentence punctuation (Latin, CJK, Devanagari,
/// Arabic) or whitespace.
const SENTENCE_PUNCTUATION: &str =
    " ?[^(\\s|.,!?\u{2026}\u{3002}\u{FF0C}\u{3001}\u{964}\u{6D4}\u{60C})]+";

impl PreTokenizer {
    /// The pre-tokenizer and BPE options for a `tokenizer.ggml.pre` value (`None` or
    /// absent: llama.cpp's "default").
    pub(crate) fn for_name(name: Option<&str>) -> Result<(PreTokenizer, PreOptions), Error> {
        use Step::*;
        let mut options = PreOptions {
            byte_encode: true,
            ignore_merges: false,
            add_bos: false,
            escape_whitespaces: false,
            clean_spaces: true,
            newline_words_whole: false,
            no_default_bos: false,
        };
        let name = name.unwrap_or("default");
        let steps: Vec<Step> = match name {
            "default" => vec![
                regex_step(r"[\p{P}\$\+<=>\^~\|]+")?,
                Gpt2,
                regex_step(r"\p{N}+")?,
                regex_step("[0-9][0-9][0-9]")?,
            ],
            "llama3" | "llama-v3" | "llama-bpe" | "falcon3" | "falcon-h1" | "pixtral"
            | "midm-2.0" | "lfm2" | "jina-v5-nano" => {
                options.ignore_merges = true;
                options.add_bos = true;
                vec![Llama3]
            }
            "dbrx" | "smaug-bpe" => vec![Llama3],
            "chatglm-bpe" => {
                options.no_default_bos = true;
                vec![Llama3]
            }
            "glm4" | "glm5" => {
                options.no_default_bos = true;
                options.ignore_merges = true;
                vec![Llama3]
            }
            "poro-chat" => {
                options.clean_spaces = false;
                vec![regex_step(SENTENCE_PUNCTUATION)?]
            }
            "bloom" | "gpt3-finnish" => vec![regex_step(SENTENCE_PUNCTUATION)?],
            "viking" => {
                options.clean_spaces = false;
                vec![regex_step(SENTENCE_PUNCTUATION)?, EachNumber]
            }
            "deepseek-llm" => {
                options.clean_spaces = false;
                vec![
                    regex_step("[\r\n]")?,
                    regex_step(concat!(
                        "\\s?[A-Za-z\u{B5}\u{C0}-\u{D6}\u{D8}-\u{F6}\u{F8}-\u{1BA}\u{1BC}-\u{1BF}\u{1C4}-\u{293}",
                        "\u{295}-\u{2AF}\u{370}-\u{373}\u{376}\u{377}\u{37B}-\u{37D}\u{37F}\u{386}\u{388}-\u{38A}",
                        "\u{38C}\u{38E}-\u{3A1}\u{3A3}-\u{3F5}\u{3F7}-\u{481}\u{48A}-\u{52F}\u{531}-\u{556}",
                        "\u{10A0}-\u{10C5}\u{13A0}-\u{13F5}\u{13F8}-\u{13FD}\u{1C90}-\u{1CBA}\u{1CBD}-\u{1CBF}",
                        "\u{1D00}-\u{1D2B}\u{1D6B}-\u{1D77}\u{1D79}-\u{1D9A}\u{1E00}-\u{1F15}\u{1F18}-\u{1F1D}",
                        "\u{1F20}-\u{1F45}\u{1F48}-\u{1F4D}\u{1F50}-\u{1F57}\u{1F59}\u{1F5B}\u{1F5D}\u{1F5F}-",
                        "\u{1F7D}\u{1F80}-\u{1FB4}\u{1FB6}-\u{1FBC}\u{1FBE}\u{1FC2}-\u{1FC4}\u{1FC6}-\u{1FCC}",
                        "\u{1FD0}-\u{1FD3}\u{1FD6}-\u{1FDB}\u{1FE0}-\u{1FEC}\u{1FF2}-\u{1FF4}\u{1FF6}-\u{1FFC}",
                        "\u{2102}\u{2107}\u{210A}-\u{2113}\u{2115}\u{2119}-\u{211D}\u{2124}\u{2126}\u{2128}",
                        "\u{212A}-\u{212D}\u{212F}-\u{2134}\u{2139}\u{213C}-\u{213F}\u{2145}-\u{2149}\u{214E}",
                        "\u{2183}\u{2184}\u{2C00}-\u{2C7B}\u{2C7E}-\u{2CE4}\u{2CEB}-\u{2CEE}\u{2CF2}\u{2CF3}",
                        "\u{A640}-\u{A66D}\u{A680}-\u{A69B}\u{A722}-\u{A76F}\u{A771}-\u{A787}\u{A78B}-\u{A78E}",
                        "\u{AB70}-\u{ABBF}\u{FB00}-\u{FB06}\u{FB13}-\u{FB17}\u{FF21}-\u{FF3A}\u{FF41}-\u{FF5A}",
                        "\u{10400}-\u{1044F}\u{104B0}-\u{104D3}\u{104D8}-\u{104FB}\u{10C80}-\u{10CB2}\u{10CC0}-",
                        "\u{10CF2}\u{118A0}-\u{118DF}\u{1E900}-\u{1E943}]+",
                    ))?,
                    regex_step(
                        "\\s?[!-/:-~\u{FF01}-\u{FF0F}\u{FF1A}-\u{FF5E}\u{2018}-\u{201F}\u{3000}-\u{3002}]+",
                    )?,
                    regex_step(r"\s+$")?,
                    regex_step("[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+")?,
                    regex_step(r"\p{N}+")?,
                ]
            }
            "deepseek-coder" => {
                options.clean_spaces = false;
                vec![
                    regex_step("[\r\n]")?,
                    regex_step(r"\s?\p{L}+")?,
                    regex_step(r"\s?\p{P}+")?,
                    regex_step("[\u{4E00}-\u{9FA5}\u{800}-\u{4E00}\u{AC00}-\u{D7FF}]+")?,
                    EachNumber,
                ]
            }
            "falcon" => vec![
                regex_step(r"[\p{P}\$\+<=>\^~\|`]+")?,
                Gpt2,
                regex_step("[0-9][0-9][0-9]")?,
            ],
            "mpt" | "gpt-2" | "phi-2" | "jina-es" | "jina-de" | "gigachat" | "jina-v2-es"
            | "jina-v2-de" | "a.x-4.0" | "mellum" | "modern-bert" | "olmo" | "jais"
            | "trillion" | "granite-docling" | "exaone4" => vec![Gpt2],
            "starcoder" | "refact" | "codeshell" | "exaone" | "minerva-7b" | "mellum2" => {
                vec![EachNumber, Gpt2]
            }
            "command-r" | "smollm" => {
                options.clean_spaces = false;
                vec![EachNumber, Gpt2]
            }
            "stablelm2" | "hunyuan" | "solar-open" | "grok-2" | "megrez" => vec![Qwen2],
            "qwen2" | "deepseek-r1-qwen" | "kormo" | "f2llmv2" => {
                options.clean_spaces = false;
                vec![Qwen2]
            }
            "qwen35" => {
                options.clean_spaces = false;
                vec![Qwen35]
            }
            "gemma4" | "granite-embed-multi-311m" => {
                options.byte_encode = false;
                options.escape_whitespaces = true;
                options.newline_words_whole = true;
                vec![Newlines]
            }
            other => {
                return Err(Error::UnsupportedPreTokenizer(other.to_string()));
            }
        };
        Ok((PreTokenizer { steps }, options))
    }

    /// Cuts `text` into words, appended to `words` as byte ranges of `text`.
    pub(crate) fn split(&self, text: &str, words: &mut Vec<Range<usize>>) {
        if text.is_empty() {
            return;
        }
        let cpts: Vec<u32> = text.chars().map(u32::from).collect();
        let flags: Vec<Flags> = cpts.iter().map(|&c| unicode::flags(c)).collect();
        let mut pieces = vec![cpts.len()];
        let mut next = Vec::with_capacity(cpts.len() / 3 + 1);
        for step in &self.steps {
            next.clear();
            let mut start = 0;
            for &len in &pieces {
                let seg = Segment {
                    cpts: &cpts[start..start + len],
                    flags: &flags[start..start + len],
                };
                match step {
                    Step::Gpt2 => split_gpt2(seg, &mut next),
                    Step::Llama3 => split_llama3(seg, Digits::UpToThree, false, &mut next),
                    Step::Qwen2 => split_llama3(seg, Digits::One, false, &mut next),
                    Step::Qwen35 => split_llama3(seg, Digits::One, true, &mut next),
                    Step::Newlines => split_newlines(seg, &mut next),
                    Step::EachNumber => split_each_number(seg, &mut next),
                    Step::Regex(r) => split_regex(r, seg, &mut next),
                }
                start += len;
            }
            std::mem::swap(&mut pieces, &mut next);
        }
        // Code-point lengths to byte ranges.
        let mut byte = 0usize;
        let mut chars = text.chars();
        for len in pieces {
            let begin = byte;
            for _ in 0..len {
                byte += chars.next().map_or(0, char::len_utf8);
            }
            words.push(begin..byte);
        }
    }
}

/// One piece of the previous step: positions outside it read as "nothing".
#[derive(Clone, Copy)]
struct Segment<'a> {
    cpts: &'a [u32],
    flags: &'a [Flags],
}

const OUT: u32 = u32::MAX;

impl Segment<'_> {
    fn cpt(&self, pos: usize) -> u32 {
        self.cpts.get(pos).copied().unwrap_or(OUT)
    }
    fn flags(&self, pos: usize) -> Flags {
        self.flags.get(pos).copied().unwrap_or(Flags::NONE)
    }
    fn len(&self) -> usize {
        self.cpts.len()
    }
}

/// Emits pieces of a segment as code-point lengths; zero-length pieces are dropped.
struct Cutter<'o> {
    prev_end: usize,
    out: &'o mut Vec<usize>,
}

impl Cutter<'_> {
    fn cut(&mut self, end: usize) {
        if end > self.prev_end {
            self.out.push(end - self.prev_end);
        }
        self.prev_end = end;
    }
}

fn is_cr_or_lf(c: u32) -> bool {
    c == '\r' as u32 || c == '\n' as u32
}

/// Length of an English contraction (`'s`, `'t`, `'re`, `'ve`, `'m`, `'ll`, `'d`) at
/// `pos`, or 0. `fold_case` makes it case-insensitive, as the Llama 3 / Qwen patterns are
/// (no non-ASCII code point lowercases to one of these letters, so ASCII folding is exact).
fn contraction_len(seg: &Segment<'_>, pos: usize, fold_case: bool) -> usize {
    if seg.cpt(pos) != '\'' as u32 || pos + 1 >= seg.len() {
        return 0;
    }
    let fold = |c: u32| -> u32 {
        if fold_case && (b'A' as u32..=b'Z' as u32).contains(&c) {
            c + 32
        } else {
            c
        }
    };
    let next = fold(seg.cpt(pos + 1));
    if [b's', b't', b'm', b'd']
        .iter()
        .any(|&b| next == u32::from(b))
    {
        return 2;
    }
    if pos + 2 < seg.len() {
        let next2 = fold(seg.cpt(pos + 2));
        let pair = |a: u8, b: u8| next == u32::from(a) && next2 == u32::from(b);
        if pair(b'r', b'e') || pair(b'v', b'e') || pair(b'l', b'l') {
            return 3;
        }
    }
    0
}

/// Runs of whitespace at `pos`: (count, end of the last `\r`/`\n` in the run or 0).
fn whitespace_run(seg: &Segment<'_>, pos: usize) -> (usize, usize) {
    let mut count = 0;
    let mut last_newline_end = 0;
    while seg.flags(pos + count).is_whitespace() {
        if is_cr_or_lf(seg.cpt(pos + count)) {
            last_newline_end = pos + count + 1;
        }
        count += 1;
    }
    (count, last_newline_end)
}

/// llama.cpp `unicode_regex_split_custom_gpt2`.
fn split_gpt2(seg: Segment<'_>, out: &mut Vec<usize>) {
    let mut cut = Cutter { prev_end: 0, out };
    let mut pos = 0;
    while pos < seg.len() {
        let cpt = seg.cpt(pos);
        let flags = seg.flags(pos);
        let n = contraction_len(&seg, pos, false);
        if n > 0 {
            pos += n;
            cut.cut(pos);
            continue;
        }
        let space = cpt == ' ' as u32;
        let mut f2 = if space { seg.flags(pos + 1) } else { flags };
        // <space>?\p{L}+  /  <space>?\p{N}+  /  <space>?[^\s\p{L}\p{N}]+
        let class: Option<fn(Flags) -> bool> = if f2.is_letter() {
            Some(Flags::is_letter)
        } else if f2.is_number() {
            Some(Flags::is_number)
        } else if !(f2.is_whitespace() || f2.is_letter() || f2.is_number()) && f2.is_some() {
            Some(|f: Flags| !(f.is_whitespace() || f.is_letter() || f.is_number()) && f.is_some())
        } else {
            None
        };
        if let Some(in_class) = class {
            pos += usize::from(space);
            while in_class(f2) {
                pos += 1;
                f2 = seg.flags(pos);
            }
            cut.cut(pos);
            continue;
        }
        let (spaces, _) = whitespace_run(&seg, pos);
        if spaces > 1 && seg.cpt(pos + spaces) != OUT {
            // \s+(?!\S): leave the last whitespace to prefix the next word.
            pos += spaces - 1;
            cut.cut(pos);
            continue;
        }
        if spaces > 0 {
            pos += spaces;
            cut.cut(pos);
            continue;
        }
        pos += 1;
        cut.cut(pos);
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Digits {
    UpToThree,
    One,
}

/// llama.cpp `unicode_regex_split_custom_llama3` / `_qwen2` / `_qwen35`.
fn split_llama3(seg: Segment<'_>, digits: Digits, marks_are_letters: bool, out: &mut Vec<usize>) {
    let wordish = |f: Flags| f.is_letter() || (marks_are_letters && f.is_mark());
    let mut cut = Cutter { prev_end: 0, out };
    let mut pos = 0;
    while pos < seg.len() {
        let cpt = seg.cpt(pos);
        let flags = seg.flags(pos);
        let n = contraction_len(&seg, pos, true);
        if n > 0 {
            pos += n;
            cut.cut(pos);
            continue;
        }
        // [^\r\n\p{L}\p{N}]?\p{L}+
        if !(is_cr_or_lf(cpt) || flags.is_number())
            && (wordish(flags) || wordish(seg.flags(pos + 1)))
        {
            pos += 1;
            while wordish(seg.flags(pos)) {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }
        // \p{N}{1,3} or \p{N}
        if flags.is_number() {
            match digits {
                Digits::UpToThree => {
                    let mut group_start = pos;
                    while seg.flags(pos).is_number() {
                        pos += 1;
                        if pos - group_start >= 3 {
                            cut.cut(pos);
                            group_start = pos;
                        }
                    }
                }
                Digits::One => pos += 1,
            }
            cut.cut(pos);
            continue;
        }
        // <space>?[^\s\p{L}\p{N}]+[\r\n]*  (llama.cpp tests the first code point's flags
        // for "inside the fragment", the following ones' for the class)
        let other = |f: Flags| !(f.is_whitespace() || wordish(f) || f.is_number());
        let space = cpt == ' ' as u32;
        let mut f2 = if space { seg.flags(pos + 1) } else { flags };
        if other(f2) && flags.is_some() {
            pos += usize::from(space);
            while other(f2) && f2.is_some() {
                pos += 1;
                f2 = seg.flags(pos);
            }
            while is_cr_or_lf(seg.cpt(pos)) {
                pos += 1;
            }
            cut.cut(pos);
            continue;
        }
        let (spaces, last_newline_end) = whitespace_run(&seg, pos);
        if last_newline_end > 0 {
            // \s*[\r\n]+
            pos = last_newline_end;
            cut.cut(pos);
            continue;
        }
        if spaces > 1 && seg.cpt(pos + spaces) != OUT {
            pos += spaces - 1;
            cut.cut(pos);
            continue;
        }
        if spaces > 0 {
            pos += spaces;
            cut.cut(pos);
            continue;
        }
        pos += 1;
        cut.cut(pos);
    }
}

/// llama.cpp `unicode_regex_split_custom_newlines`.
fn split_newlines(seg: Segment<'_>, out: &mut Vec<usize>) {
    let newline = '\n' as u32;
    let mut pos = 0;
    while pos < seg.len() {
        let is_newline = seg.cpt(pos) == newline;
        let run_start = pos;
        while pos < seg.len() && (seg.cpt(pos) == newline) == is_newline {
            pos += 1;
        }
        out.push(pos - run_start);
    }
}

/// `\p{N}` as a splitting pattern: each number code point alone, the text between kept.
fn split_each_number(seg: Segment<'_>, out: &mut Vec<usize>) {
    let mut cut = Cutter { prev_end: 0, out };
    for pos in 0..seg.len() {
        if seg.flags(pos).is_number() {
            cut.cut(pos);
            cut.cut(pos + 1);
        }
    }
    cut.cut(seg.len());
}

/// Stand-ins of the collapsed text (llama.cpp uses bytes 0xD0..0xD5; private-use code
/// points keep the text valid UTF-8 for the `regex` crate).
const COLLAPSED_OTHER: char = '\u{E0D0}';
fn collapsed_class_char(category: u16) -> Option<char> {
    match category {
        Flags::NUMBER => Some('\u{E0D1}'),
        Flags::LETTER => Some('\u{E0D2}'),
        Flags::PUNCTUATION => Some('\u{E0D3}'),
        Flags::MARK => Some('\u{E0D4}'),
        Flags::SYMBOL => Some('\u{E0D5}'),
        _ => None,
    }
}

/// `\p{..}` names llama.cpp collapses, with their stand-in and ASCII members (as a class
/// body in `regex` syntax).
fn collapsed_class(name: &str) -> Option<(char, &'static str)> {
    let category = match name {
        "N" => Flags::NUMBER,
        "L" | "Lu" | "Ll" | "Lt" | "Lm" | "Lo" => Flags::LETTER,
        "P" => Flags::PUNCTUATION,
        "M" => Flags::MARK,
        "S" => Flags::SYMBOL,
        _ => return None,
    };
    let ascii = match category {
        Flags::NUMBER => "0-9",
        Flags::LETTER => "A-Za-z",
        Flags::PUNCTUATION => r"!-#%-*,-/:-;?-@\[-\]_\{\}",
        Flags::SYMBOL => r"\$\+<->\^`\|\~",
        _ => "",
    };
    Some((collapsed_class_char(category)?, ascii))
}

/// C-locale `\s` (the only whitespace left once non-ASCII whitespace is written as \v).
const ASCII_SPACE_CLASS: &str = r"\t\n\x0B\x0C\r\x20";

fn regex_step(pattern: &str) -> Result<Step, Error> {
    let (translated, collapsed) = translate_pattern(pattern);
    let regex = regex::Regex::new(&translated)
        .map_err(|e| Error::Internal(format!("pre-tokenizer pattern {pattern:?}: {e}")))?;
    Ok(Step::Regex(Box::new(RegexStep { regex, collapsed })))
}

/// Rewrites a llama.cpp (ECMAScript) pattern for the `regex` crate: `\p{..}` becomes the
/// collapsed class (as llama.cpp's `unicode_regex_split` does), `\s` and `\d` their ASCII
/// meaning, and characters that are set operators in `regex` classes are escaped.
fn translate_pattern(pattern: &str) -> (String, bool) {
    let mut out = String::with_capacity(pattern.len() * 2);
    let mut collapsed = false;
    let mut inside = false;
    let mut chars = pattern.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '[' if !inside => {
                inside = true;
                out.push('[');
            }
            ']' if inside => {
                inside = false;
                out.push(']');
            }
            '\\' => {
                let Some(e) = chars.next() else {
                    out.push_str(r"\\");
                    break;
                };
                match e {
                    'p' if chars.peek() == Some(&'{') => {
                        chars.next();
                        let name: String = chars.by_ref().take_while(|&x| x != '}').collect();
                        if let Some((stand_in, ascii)) = collapsed_class(&name) {
                            collapsed = true;
                            if !inside {
                                out.push('[');
                            }
                            out.push_str(&format!(r"\x{{{:X}}}", stand_in as u32));
                            out.push_str(ascii);
                            if !inside {
                                out.push(']');
                            }
                        } else {
                            out.push_str(&format!(r"\p{{{name}}}"));
                        }
                    }
                    's' if inside => out.push_str(ASCII_SPACE_CLASS),
                    's' => out.push_str(&format!("[{ASCII_SPACE_CLASS}]")),
                    'd' if inside => out.push_str("0-9"),
                    'd' => out.push_str("[0-9]"),
                    other => {
                        out.push('\\');
                        out.push(other);
                    }
                }
            }
            '&' | '~' if inside => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    (out, collapsed)
}

/// llama.cpp `unicode_regex_split_stl` on the collapsed or whitespace-normalised text:
/// matches and the gaps between them become pieces.
fn split_regex(step: &RegexStep, seg: Segment<'_>, out: &mut Vec<usize>) {
    let mut text = String::with_capacity(seg.len());
    // Byte offset in `text` of each code point, plus the end.
    let mut offsets = Vec::with_capacity(seg.len() + 1);
    for (i, &cp) in seg.cpts.iter().enumerate() {
        offsets.push(text.len());
        let flags = seg.flags[i];
        let c = if cp < 0x80 {
            char::from(cp as u8)
        } else if flags.is_whitespace() {
            '\u{0B}'
        } else if step.collapsed {
            collapsed_class_char(flags.category()).unwrap_or(COLLAPSED_OTHER)
        } else {
            char::from_u32(cp).unwrap_or('\u{FFFD}')
        };
        text.push(c);
    }
    offsets.push(text.len());
    let to_cpt = |byte: usize| offsets.partition_point(|&o| o < byte);
    let mut cut = Cutter { prev_end: 0, out };
    for m in step.regex.find_iter(&text) {
        if m.start() == m.end() {
            continue;
        }
        cut.cut(to_cpt(m.start()));
        cut.cut(to_cpt(m.end()));
    }
    cut.cut(seg.len());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(name: &str, text: &str) -> Vec<String> {
        let (pre, _) = PreTokenizer::for_name(Some(name)).expect("known pre-tokenizer");
        let mut ranges = Vec::new();
        pre.split(text, &mut ranges);
        ranges.into_iter().map(|r| text[r].to_string()).collect()
    }

    #[test]
    fn gpt2_keeps_a_space_for_the_next_word() {
        assert_eq!(
            words("gpt-2", "Hello world  x's 123!!\n"),
            ["Hello", " world", " ", " x", "'s", " 123", "!!", "\n"]
        );
    }

    #[test]
    fn smollm_splits_every_digit() {
        assert_eq!(
            words("smollm", "in 2024 ok"),
            ["in", " ", "2", "0", "2", "4", " ok"]
        );
    }

    #[test]
    fn llama3_groups_digits_by_three_and_newlines() {
        assert_eq!(
            words("llama-bpe", "12345 I'M\n\n  x"),
            ["123", "45", " I", "'M", "\n\n", " ", " x"]
        );
    }

    #[test]
    fn qwen2_one_digit_and_punctuation_with_newlines() {
        assert_eq!(
            words("qwen2", "a1, b.\n\nc"),
            ["a", "1", ",", " b", ".\n\n", "c"]
        );
    }

    #[test]
    fn regex_steps_use_collapsed_classes() {
        // deepseek-coder: CJK runs and letters with an optional leading space.
        assert_eq!(
            words("deepseek-coder", "ab 中文 é1"),
            ["ab", " ", "中文", " é", "1"]
        );
    }

    #[test]
    fn unknown_pre_tokenizer_is_an_error_naming_it() {
        let err = PreTokenizer::for_name(Some("made-up")).unwrap_err();
        assert!(err.to_string().contains("made-up"), "{err}");
    }

    #[test]
    fn translation_of_patterns() {
        let (p, collapsed) = translate_pattern(r"\s?\p{L}+");
        assert!(collapsed);
        assert_eq!(p, r"[\t\n\x0B\x0C\r\x20]?[\x{E0D2}A-Za-z]+");
    }
}
