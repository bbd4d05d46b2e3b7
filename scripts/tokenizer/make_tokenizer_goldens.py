#!/usr/bin/env python3
"""Reference token ids from llama.cpp's own tokenizer, for tern's tokenizer tests.

Runs llama.cpp's `llama-tokenize` (the reference build, commit 0c1e57098) on a broad
prompt set and writes, under tests/goldens/tokenizer/:

- prompts.json      the prompts (English, code, whitespace runs, tabs, newlines, emoji,
                    accents, CJK and other scripts, numbers, special-token text, empty
                    and lone-space prompts, Unicode edge cases);
- long_text.txt     a ~100 KB text (all prompts, repeated) for the speed and scale test;
- random_text.txt   ~60 KB of seeded random "soup": words, code points from many blocks
                    and planes, whitespace runs, special-token text and fragments of it;
- random/<vocab>.json  ids of the random text for more of llama.cpp's vocab-only files;
- <model>.json      special ids as llama.cpp reports them, ids per prompt in three
                    modes, the ids of the long text, and of the random text in the
                    "prompt" and "bare" modes.

Modes, as `llama-tokenize` maps them onto `llama_tokenize(text, add_special,
parse_special)`:
- "prompt":    add_special = the model's add_bos_token, parse_special = true (the tool's
               default; how `tern tokenize` and chat prompts see text);
- "literal":   add_special = add_bos_token, parse_special = false (`--no-parse-special`);
- "bare":      add_special = false, parse_special = false (`--no-bos --no-parse-special`,
               as llama.cpp's tokenizer tests).

The prompt is read verbatim from a file (`-f`, `--no-escape`), so no byte is altered.

Usage:
  .cache/venv/bin/python scripts/tokenizer/make_tokenizer_goldens.py \
      [--llama-tokenize /root/.cache/llama.cpp-reference/build/bin/llama-tokenize]
      [--only NAME...] [--random-only]

Each llama-tokenize run loads the vocabulary again: the whole set takes ~25 minutes.
"""
from __future__ import annotations

import argparse
import json
import pathlib
import random
import re
import subprocess
import sys
import tempfile

ROOT = pathlib.Path(__file__).resolve().parents[2]
OUT = ROOT / "tests" / "goldens" / "tokenizer"
DEFAULT_TOOL = "/root/.cache/llama.cpp-reference/build/bin/llama-tokenize"
LLAMA_CPP_COMMIT = "0c1e57098"

MODELS = {
    # golden name: path relative to the test-data directory (.cache)
    "smollm2-135m-instruct": "models/smollm2-135m-instruct-q4_1.gguf",
    "gemma-3-270m": "models/gemma-3-270m-q4_k_m.gguf",
    "qwen2-vocab": "llama.cpp/models/ggml-vocab-qwen2.gguf",
    # Phi-3's special tokens strip the whitespace after them (llama.cpp matches the
    # model name); its vocab-only file checks that with special-token parsing on.
    "phi-3-vocab": "llama.cpp/models/ggml-vocab-phi-3.gguf",
}

# Vocab-only files checked on the random text only (two runs each): the pre-tokenizers
# and families that llama.cpp's own .inp/.out tests leave out or cover lightly.
RANDOM_ONLY = ["gpt-neox", "aquila", "baichuan", "llama-bpe", "deepseek-llm", "deepseek-coder",
               "falcon", "starcoder", "command-r", "mpt", "refact", "gpt-2", "qwen35", "gemma-4"]

MODES = {
    "prompt": [],
    "literal": ["--no-parse-special"],
    "bare": ["--no-bos", "--no-parse-special"],
}

PROMPTS: list[str] = [
    # empty and whitespace only
    "",
    " ",
    "  ",
    "   ",
    "\t",
    "\n",
    "\n\n",
    "\n\n\n\n\n",
    " \n",
    "\t\t\n \n",
    "\r\n",
    "a\r\nb\r\n",
    # English
    "Hello world",
    " Hello world",
    "Hello World!",
    "Hello, world! How are you today?",
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's fine, but we've seen THEY'RE wrong; don't you think? He'd know.",
    "What is the capital of France? The capital of France is Paris.",
    "Mr. O'Neil's cat—named “Whiskers”—isn't here… (or is it?)",
    "Once upon a time, in a land far, far away, there lived a small dragon who loved to read books about the stars.",
    "e.g. i.e. etc. vs. U.S.A. Ph.D. a.m.",
    "ALL CAPS SENTENCE WITH NUMBERS 123 AND SYMBOLS #$%&",
    # whitespace runs
    "word  word   word    word",
    "two  spaces",
    "ten          spaces",
    "trailing spaces   ",
    "   leading spaces",
    "tabs\tbetween\t\twords\t",
    "mixed \t \t whitespace",
    "line one\nline two\n\nline four\n\n\n\nline eight",
    "indented:\n    four spaces\n        eight spaces\n\ttab",
    " " * 100,
    "x" + " " * 33 + "y",
    "\n" * 40,
    "end with newline\n",
    "paragraph one.\n\nparagraph two.\n\n\n",
    # code
    "def fibonacci(n):\n    if n < 2:\n        return n\n    return fibonacci(n - 1) + fibonacci(n - 2)\n",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}\n",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); return 0; }",
    '{"name": "tern", "version": "0.1.0", "tags": ["llm", "edge"], "ok": true, "n": null}',
    "<html><body><div class=\"x\">Hi &amp; bye</div></body></html>",
    "SELECT id, name FROM users WHERE age >= 18 ORDER BY name DESC LIMIT 10;",
    "for (int i = 0; i < n; ++i) { a[i] += b[i] * c[i]; }",
    "x = [1,2,3]\ny = {k: v for k, v in zip('abc', x)}\nprint(y)",
    "    return self._cache.get(key, default)  # TODO: handle None",
    "https://example.com/path/to/page?query=1&other=two#anchor",
    "user@example.com, +1 (555) 123-4567",
    "$ cargo build --release && ./target/release/tern run smollm2 \"hi\"",
    "a_b_c __init__ --flag=value -x ~/path/./file.txt ../up",
    "// comment\n/* block */\n<!-- html -->\n# hash\n-- sql",
    # numbers
    "1234567890",
    "3.14159 2.71828 1e-10 -42 +7",
    "1,000,000 and 1 000 000 and 1.000.000",
    "2024-11-25 13:45:00 UTC",
    "Call 911 or 112; pay $19.99 (20% off) — 0.5x speed",
    "٠١٢٣٤٥٦٧٨٩ ०१२३ ①②③ ½ ¾ ⅛ Ⅻ",
    # accents and Latin scripts
    "Äpfel",
    "Äpfel und Birnen schmecken süß; Straße, Größe, Übermut.",
    "Voilà, l'élève a déjà reçu ça à Noël. Où est-ce?",
    "El niño comió piña en España. ¿Qué tal? ¡Olé!",
    "Tiếng Việt có dấu: Xin chào, cảm ơn bạn rất nhiều.",
    "Crème brûlée, naïve café, coöperate, façade, jalapeño",
    "e\u0301 vs \u00e9 (combining acute vs precomposed)",
    "Zażółć gęślą jaźń. Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "ﬁﬂ ligatures, ß, ŉ, ǅ titlecase",
    # other scripts
    "Привет, мир! Как дела?",
    "Γειά σου Κόσμε! αβγδε",
    "مرحبا بالعالم، كيف حالك؟",
    "שלום עולם",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "สวัสดีชาวโลก",
    "ሰላም ዓለም",
    "Բարև աշխարհ",
    "ᚠᚢᚦᚨᚱᚲ",
    # CJK
    "你好，世界！今天天气很好。",
    "我爱自然语言处理和机器学习。",
    "こんにちは、世界。ひらがなとカタカナとKanji漢字。",
    "東京は日本の首都です。",
    "안녕하세요 세계! 한국어 텍스트입니다.",
    "中文English混合text测试123",
    "𠀀𠀁𠀂 CJK extension B",
    "\u2ffc\u2ffd\u31ef (Unicode 15.1 additions)",
    "全角スペース\u3000と半角 space",
    # emoji and symbols
    "🦙",
    " this is 🦙.cpp",
    "I love pizza 🍕 and tacos 🌮!!",
    "👨‍👩‍👧‍👦 family, 🇫🇷🇯🇵 flags, 👍🏽 skin tone",
    "❤️ ☺️ ✔️ ⚠️ (variation selectors)",
    "😀😃😄😁😆😅😂🤣🥲☺️😊😇",
    "→ ← ↑ ↓ ∀∃∈∉ ∑∏√∞ ≤≥≠≈ ⊂⊃ ∧∨¬",
    "© ® ™ § ¶ † ‡ • … ‰ ′ ″ € £ ¥ ₹ ₿",
    "𝔘𝔫𝔦𝔠𝔬𝔡𝔢 𝕞𝕒𝕥𝕙 𝒮𝒸𝓇𝒾𝓅𝓉",
    "zero\u200bwidth\u200cjoiner\u200dand\ufeffbom",
    "nbsp\u00a0here and\u2028line sep\u2029para sep",
    "control\x01chars\x07here\x1b[0m",
    "private use \ue000\uf8ff",
    # special-token text
    "<|im_start|>user\nHello!<|im_end|>\n<|im_start|>assistant\n",
    "<|im_start|>system\nYou are helpful.<|im_end|>",
    "<|endoftext|>",
    "text<|endoftext|>more text",
    "<start_of_turn>user\nHello<end_of_turn>\n<start_of_turn>model\n",
    "<bos>Hi<eos>",
    "</s> and <s> and <unk> and <pad>",
    "<|im_start|><|im_end|><|im_start|>",
    "<<|im_end|>>",
    "<|im_start",
    "im_start|>",
    " <|im_start|> spaced <|im_end|> ",
    "<|user|>\nquestion<|end|>\n<|assistant|>\n",
    "<mask> [multimodal] <start_of_image>",
    "<|fim_prefix|>def f():<|fim_suffix|>\n<|fim_middle|>",
    "<repo_name>tern<file_sep>main.rs",
    "<unused0><unused99>",
    # long
    " ".join(["The model reads tokens and writes tokens, one at a time, until it stops."] * 30),
    "\n".join(f"{i}: item number {i} costs ${i * 3}.99" for i in range(60)),
]


def run_tool(tool: str, model: pathlib.Path, text: str, extra: list[str]) -> list[int]:
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        f.write(text.encode("utf-8"))
        path = f.name
    try:
        cmd = [tool, "-m", str(model), "-f", path, "--ids", "--log-disable", "--no-escape", *extra]
        out = subprocess.run(cmd, check=True, capture_output=True).stdout.decode("utf-8").strip()
    finally:
        pathlib.Path(path).unlink()
    return json.loads(out)


def vocab_info(tool: str, model: pathlib.Path) -> dict:
    """Special ids as llama.cpp reports them after loading (its `print_info` log)."""
    log = subprocess.run([tool, "-m", str(model), "-p", "x", "--ids", "-lv", "4"], check=True,
                         capture_output=True).stderr.decode("utf-8", "replace")
    info: dict = {"eog": []}
    for line in log.splitlines():
        m = re.search(r"print_info: (BOS|EOS|EOT|EOM|UNK|PAD) token += (\d+)", line)
        if m:
            info[m.group(1).lower()] = int(m.group(2))
        m = re.search(r"print_info: EOG token += (\d+)", line)
        if m:
            info["eog"].append(int(m.group(1)))
    if not info["eog"]:
        raise RuntimeError(f"no EOG tokens in the log of {model}")
    return info


def long_text() -> str:
    text = ""
    round_ = 0
    while len(text.encode("utf-8")) < 100_000:
        text += f"\n\n## Round {round_}\n\n" + "\n\n".join(PROMPTS)
        round_ += 1
    return text


def dump_one_case_per_line(golden: dict) -> str:
    """JSON with one case per line, so that a changed id shows as a one-line diff."""
    lines = ["{"]
    for key, value in golden.items():
        if key == "cases":
            lines.append('"cases": [')
            rows = [json.dumps(c, separators=(",", ":")) for c in value]
            lines.append(",\n".join(rows))
            lines.append("],")
        else:
            lines.append(f"{json.dumps(key)}: {json.dumps(value, separators=(',', ':'))},")
    lines[-1] = lines[-1].rstrip(",")
    lines.append("}")
    return "\n".join(lines) + "\n"


def random_text(seed: int = 1, size: int = 60_000) -> str:
    """Seeded random text that mixes everything the tokenizers treat specially."""
    rng = random.Random(seed)
    pieces = [" ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", "\u00a0", "\u3000", "'s", "'LL", "'Re",
              "123", "4567", "½", "٣", "<|im_start|>", "<|im_end|>", "<start_of_turn>",
              "<end_of_turn>", "</s>", "<s>", "<bos>", "<|endoftext|>", "<|end|>", "<unk>", "<", "|",
              ">", "▁", "Ġ", "\u200d", "\ufe0f", "e\u0301", "🦙", "👨‍👩‍👧", "🇫🇷", "中文", "日本語",
              "한국어", "ä", "ß", "İ", "ﬁ", "\x00", "\x7f", "\x1b"]
    blocks = [(0x20, 0x7E), (0xA0, 0x24F), (0x370, 0x3FF), (0x400, 0x4FF), (0x590, 0x6FF),
              (0x900, 0x97F), (0xE00, 0xE7F), (0x1100, 0x11FF), (0x2000, 0x206F), (0x2190, 0x2BFF),
              (0x3000, 0x30FF), (0x4E00, 0x9FFF), (0xAC00, 0xD7A3), (0xE000, 0xE0FF), (0xFB00, 0xFDFF),
              (0xFE00, 0xFFEF), (0x10000, 0x1007F), (0x1D400, 0x1D7FF), (0x1F300, 0x1FAFF),
              (0x20000, 0x2A6DF), (0xE0000, 0xE007F), (0x2FF0, 0x2FFF), (0x31E0, 0x31EF)]
    out, n = [], 0
    while n < size:
        r = rng.random()
        if r < 0.3:
            piece = rng.choice(pieces)
        elif r < 0.6:
            piece = "".join(chr(rng.randint(0x61, 0x7A)) for _ in range(rng.randint(1, 12)))
        else:
            lo, hi = rng.choice(blocks)
            cps = (rng.randint(lo, hi) for _ in range(rng.randint(1, 6)))
            piece = "".join(chr(c) for c in cps if not 0xD800 <= c <= 0xDFFF)
        out.append(piece)
        n += len(piece.encode("utf-8"))
    return "".join(out)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--llama-tokenize", default=DEFAULT_TOOL)
    parser.add_argument("--data-dir", default=str(ROOT / ".cache"))
    parser.add_argument("--only", nargs="*", choices=sorted(MODELS), help="regenerate these models only")
    parser.add_argument("--random-only", action="store_true",
                        help="only the random-text goldens of the vocab-only files (random/)")
    args = parser.parse_args()

    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "prompts.json").write_text(json.dumps(PROMPTS, ensure_ascii=False, indent=1) + "\n")
    long = long_text()
    (OUT / "long_text.txt").write_bytes(long.encode("utf-8"))
    soup = random_text()
    (OUT / "random_text.txt").write_bytes(soup.encode("utf-8"))

    random_dir = OUT / "random"
    random_dir.mkdir(exist_ok=True)
    for name in RANDOM_ONLY:
        if args.only:
            break
        rel = f"llama.cpp/models/ggml-vocab-{name}.gguf"
        model = pathlib.Path(args.data_dir) / rel
        golden = {"model": rel, "llama_cpp": LLAMA_CPP_COMMIT, "modes": {m: MODES[m] for m in ("prompt", "bare")},
                  "random_text": {m: run_tool(args.llama_tokenize, model, soup, MODES[m]) for m in ("prompt", "bare")}}
        (random_dir / f"{name}.json").write_text(json.dumps(golden, separators=(",", ":")) + "\n")
        print(f"random/{name}: {len(golden['random_text']['prompt'])} tokens")
    if args.random_only:
        return 0

    for name, rel in MODELS.items():
        if args.only and name not in args.only:
            continue
        model = pathlib.Path(args.data_dir) / rel
        cases = []
        for i, prompt in enumerate(PROMPTS):
            for mode, flags in MODES.items():
                ids = run_tool(args.llama_tokenize, model, prompt, flags)
                cases.append({"prompt": i, "mode": mode, "ids": ids})
        golden = {
            "model": rel,
            "llama_cpp": LLAMA_CPP_COMMIT,
            "tool": "llama-tokenize -f FILE --ids --log-disable --no-escape [mode flags]",
            "modes": MODES,
            "vocab": vocab_info(args.llama_tokenize, model),
            "cases": cases,
            "long_text": {"mode": "prompt", "ids": run_tool(args.llama_tokenize, model, long, [])},
            "random_text": {mode: run_tool(args.llama_tokenize, model, soup, MODES[mode])
                            for mode in ("prompt", "bare")},
        }
        (OUT / f"{name}.json").write_text(dump_one_case_per_line(golden))
        print(f"{name}: {len(cases)} cases, long text {len(golden['long_text']['ids'])} tokens")
    return 0


if __name__ == "__main__":
    sys.exit(main())
