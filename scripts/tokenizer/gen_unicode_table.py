#!/usr/bin/env python3
"""Generate crates/tokenizer/src/unicode_table.rs: general-category flags per code point.

The pre-tokenizers of llama.cpp (src/unicode.cpp) classify code points by their Unicode
general category (\\p{L}, \\p{N}, \\p{P}, ...). llama.cpp's table (src/unicode-data.cpp) was
built from Unicode 15.1; an older or newer database classifies a few thousand recently
assigned code points differently, and then tokenization would differ. So this script
reads Unicode 15.1 through the pinned `unicodedata2==15.1.0` package (see
requirements-test.txt) and writes the ranges of equal category class.

Usage: .cache/venv/bin/python scripts/tokenizer/gen_unicode_table.py
"""
from __future__ import annotations

import pathlib
import sys

import unicodedata2

EXPECTED_VERSION = "15.1.0"
MAX_CODEPOINT = 0x110000

# Category classes (bit flags, as the Rust side `unicode::Flags` defines them).
UNDEFINED, NUMBER, LETTER, SEPARATOR, MARK, PUNCTUATION, SYMBOL, CONTROL = (
    0x01, 0x02, 0x04, 0x08, 0x10, 0x20, 0x40, 0x80)

CLASS_OF_CATEGORY = {
    "Cn": UNDEFINED,
    "Cc": CONTROL, "Cf": CONTROL, "Co": CONTROL, "Cs": CONTROL,
    "Ll": LETTER, "Lm": LETTER, "Lo": LETTER, "Lt": LETTER, "Lu": LETTER,
    "Mc": MARK, "Me": MARK, "Mn": MARK,
    "Nd": NUMBER, "Nl": NUMBER, "No": NUMBER,
    "Pc": PUNCTUATION, "Pd": PUNCTUATION, "Pe": PUNCTUATION, "Pf": PUNCTUATION,
    "Pi": PUNCTUATION, "Po": PUNCTUATION, "Ps": PUNCTUATION,
    "Sc": SYMBOL, "Sk": SYMBOL, "Sm": SYMBOL, "So": SYMBOL,
    "Zl": SEPARATOR, "Zp": SEPARATOR, "Zs": SEPARATOR,
}


def main() -> int:
    if unicodedata2.unidata_version != EXPECTED_VERSION:
        print(f"need Unicode {EXPECTED_VERSION}, unicodedata2 has {unicodedata2.unidata_version}",
              file=sys.stderr)
        return 1
    ranges: list[tuple[int, int]] = []
    for cp in range(MAX_CODEPOINT):
        flags = CLASS_OF_CATEGORY[unicodedata2.category(chr(cp))]
        if not ranges or ranges[-1][1] != flags:
            ranges.append((cp, flags))
    out = pathlib.Path(__file__).resolve().parents[2] / "crates/tokenizer/src/unicode_table.rs"
    lines = [
        "//! Unicode 15.1 general-category classes by code-point range (generated).",
        "//!",
        "//! Made by `scripts/tokenizer/gen_unicode_table.py`; do not edit. Each entry is",
        "//! `(first code point, class flags)`, valid up to the next entry's first code point.",
        "",
        "#[rustfmt::skip]",
        f"pub(crate) static CATEGORY_RANGES: [(u32, u8); {len(ranges)}] = [",
    ]
    row: list[str] = []
    for start, flags in ranges:
        row.append(f"(0x{start:06X}, 0x{flags:02X}),")
        if len(row) == 6:
            lines.append("    " + " ".join(row))
            row = []
    if row:
        lines.append("    " + " ".join(row))
    lines.append("];")
    out.write_text("\n".join(lines) + "\n")
    print(f"wrote {len(ranges)} ranges to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
