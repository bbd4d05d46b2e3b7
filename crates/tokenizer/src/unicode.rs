//! Code-point classes and the GPT-2 byte↔character map, as llama.cpp's pre-tokenizers use
//! them (llama.cpp `src/unicode.cpp`: `unicode_cpt_flags_from_cpt`, `unicode_byte_to_utf8`).
//!
//! The general-category table is Unicode 15.1 (the version llama.cpp's table was built
//! from), generated into `unicode_table.rs` by `scripts/tokenizer/gen_unicode_table.py`.
//! Lookups go through a two-level table built once, so classifying a code point costs two
//! array reads.

use std::sync::OnceLock;

use crate::unicode_table::CATEGORY_RANGES;

/// Classes of one code point: one general-category class bit plus the whitespace bit.
///
/// The value 0 means "outside the text being split" (llama.cpp's `_get_flags` returns empty
/// flags past the end of a fragment), which no real code point has.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Flags(u16);

impl Flags {
    pub const UNDEFINED: u16 = 0x01;
    pub const NUMBER: u16 = 0x02;
    pub const LETTER: u16 = 0x04;
    // 0x08 separator (\p{Z}) and 0x80 control (\p{C}) are in the table, unused here.
    pub const MARK: u16 = 0x10;
    pub const PUNCTUATION: u16 = 0x20;
    pub const SYMBOL: u16 = 0x40;
    pub const CATEGORIES: u16 = 0xFF;
    pub const WHITESPACE: u16 = 0x100;

    /// Flags of a position outside the fragment.
    pub const NONE: Flags = Flags(0);

    pub fn is_number(self) -> bool {
        self.0 & Self::NUMBER != 0
    }
    pub fn is_letter(self) -> bool {
        self.0 & Self::LETTER != 0
    }
    pub fn is_mark(self) -> bool {
        self.0 & Self::MARK != 0
    }
    pub fn is_whitespace(self) -> bool {
        self.0 & Self::WHITESPACE != 0
    }
    /// True for every code point inside the fragment (llama.cpp's `as_uint() != 0`).
    pub fn is_some(self) -> bool {
        self.0 != 0
    }
    /// The general-category class alone.
    pub fn category(self) -> u16 {
        self.0 & Self::CATEGORIES
    }
}

/// Unicode White_Space (PropList.txt), the set llama.cpp marks as `\s`.
fn is_white_space(cp: u32) -> bool {
    matches!(
        cp,
        0x09..=0x0D | 0x20 | 0x85 | 0xA0 | 0x1680 | 0x2000..=0x200A | 0x2028 | 0x2029 | 0x202F | 0x205F | 0x3000
    )
}

const BLOCK_BITS: u32 = 8;
const BLOCK_SIZE: usize = 1 << BLOCK_BITS;
const MAX_CODEPOINT: u32 = 0x11_0000;

/// Two-level lookup: `blocks[index[cp >> 8]][cp & 0xFF]`, identical blocks shared.
struct Table {
    index: Vec<u16>,
    blocks: Vec<[u16; BLOCK_SIZE]>,
}

fn table() -> &'static Table {
    static TABLE: OnceLock<Table> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut flat = vec![0u16; MAX_CODEPOINT as usize];
        for (i, &(start, class)) in CATEGORY_RANGES.iter().enumerate() {
            let end = CATEGORY_RANGES.get(i + 1).map_or(MAX_CODEPOINT, |r| r.0);
            for cp in start..end {
                flat[cp as usize] = u16::from(class);
            }
        }
        for (cp, flags) in flat.iter_mut().enumerate() {
            if is_white_space(cp as u32) {
                *flags |= Flags::WHITESPACE;
            }
        }
        let mut index = Vec::with_capacity(flat.len() / BLOCK_SIZE);
        let mut blocks: Vec<[u16; BLOCK_SIZE]> = Vec::new();
        let mut seen = rustc_hash::FxHashMap::default();
        for chunk in flat.chunks_exact(BLOCK_SIZE) {
            let mut block = [0u16; BLOCK_SIZE];
            block.copy_from_slice(chunk);
            let next = blocks.len();
            let id = *seen.entry(block).or_insert_with(|| {
                blocks.push(block);
                next
            });
            index.push(id as u16);
        }
        Table { index, blocks }
    })
}

/// The classes of a code point (llama.cpp `unicode_cpt_flags_from_cpt`).
pub(crate) fn flags(cp: u32) -> Flags {
    if cp >= MAX_CODEPOINT {
        return Flags(Flags::UNDEFINED);
    }
    let t = table();
    let block = t.index[(cp >> BLOCK_BITS) as usize] as usize;
    Flags(t.blocks[block][(cp as usize) & (BLOCK_SIZE - 1)])
}

/// The character GPT-2's byte-level BPE writes for a byte: printable Latin-1 bytes stand
/// for themselves, the others are shifted to U+0100 upwards in byte order (the
/// `bytes_to_unicode` table of OpenAI's GPT-2 encoder, as llama.cpp's
/// `unicode_byte_to_utf8_map`).
pub(crate) fn byte_to_char(byte: u8) -> char {
    byte_table().0[byte as usize]
}

/// The byte a GPT-2 byte-level character stands for, if it is one of the 256.
pub(crate) fn char_to_byte(c: char) -> Option<u8> {
    let cp = c as u32;
    if cp < 0x100 {
        let b = cp as u8;
        if is_printable_latin1(b) {
            Some(b)
        } else {
            None
        }
    } else {
        byte_table().1.get(&c).copied()
    }
}

fn is_printable_latin1(b: u8) -> bool {
    matches!(b, 0x21..=0x7E | 0xA1..=0xAC | 0xAE..=0xFF)
}

type ByteTable = ([char; 256], rustc_hash::FxHashMap<char, u8>);

fn byte_table() -> &'static ByteTable {
    static TABLE: OnceLock<ByteTable> = OnceLock::new();
    TABLE.get_or_init(|| {
        let mut to_char = ['\0'; 256];
        let mut shifted = rustc_hash::FxHashMap::default();
        let mut next = 0u32;
        for b in 0..=255u8 {
            if is_printable_latin1(b) {
                to_char[b as usize] = char::from(b);
            } else {
                // 256 + n stays below the surrogate range, so the conversion cannot fail.
                let c = char::from_u32(256 + next).unwrap_or('\u{FFFD}');
                to_char[b as usize] = c;
                shifted.insert(c, b);
                next += 1;
            }
        }
        (to_char, shifted)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classes_of_known_code_points() {
        assert!(flags('a' as u32).is_letter());
        assert!(flags('7' as u32).is_number());
        assert!(flags(' ' as u32).is_whitespace());
        assert!(flags('\n' as u32).is_whitespace());
        assert_eq!(flags('!' as u32).category(), Flags::PUNCTUATION);
        assert_eq!(flags('$' as u32).category(), Flags::SYMBOL);
        assert!(flags('é' as u32).is_letter());
        assert!(flags('中' as u32).is_letter());
        assert!(flags(0x0301).is_mark());
        assert!(flags(0x3000).is_whitespace());
        assert_eq!(flags('🦙' as u32).category(), Flags::SYMBOL);
        // Assigned in Unicode 15.1 (CJK ideographic description characters): llama.cpp's
        // table has them as symbols, older databases as unassigned.
        assert_eq!(flags(0x2FFC).category(), Flags::SYMBOL);
        assert_eq!(
            flags(0xE000).category(),
            0x80,
            "private use is a control class"
        );
        assert_eq!(flags(0x10FFFF).category(), Flags::UNDEFINED);
    }

    #[test]
    fn gpt2_byte_map_round_trips() {
        assert_eq!(byte_to_char(b' '), 'Ġ');
        assert_eq!(byte_to_char(b'\n'), 'Ċ');
        assert_eq!(byte_to_char(b'a'), 'a');
        for b in 0..=255u8 {
            assert_eq!(char_to_byte(byte_to_char(b)), Some(b));
        }
        assert_eq!(char_to_byte(' '), None);
    }
}
