#!/usr/bin/env python3
"""Needle in a haystack: can the model find one fact hidden in a long context?

Builds a prompt of about --ctx tokens from a long public-domain text
(scripts/goldens/texts/jargon-file-4.4.7-intro.txt), hides one sentence carrying a
random code word at several depths (0.1 = near the start, 0.9 = near the end), asks
for the code word as the last user turn, and runs `tern run --json` greedily on it,
one process per (KV type, depth). Reports per run whether the answer contains the
code word, the prompt length in tokens, prompt tokens/s, the KV cache the run
allocated, and the process's peak RSS (wait4's maxrss).

A small model failing to retrieve is a limit of that model, not of tern: the point
is that the whole context is read and attended to, at the trained length, within a
known memory. Benchmarks are never run in CI (this refuses when CI is set).

Usage:
  scripts/long-context/needle.py MODEL.gguf [--ctx 8192] [--depths 0.1,0.5,0.9]
      [--kv-types f16,q8_0] [--threads 2] [--seed 1] [--tern target/release/tern]
      [--json OUT.json]

Standard library only. The code words are drawn from --seed, so nothing about the
answer is fixed in this script.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HAYSTACK = ROOT / "scripts/goldens/texts/jargon-file-4.4.7-intro.txt"

# Parts of the code word; the word itself is random per seed.
COLOURS = ["amber", "cobalt", "crimson", "jade", "ochre", "saffron", "teal", "violet"]
ANIMALS = ["badger", "heron", "kestrel", "lynx", "marten", "otter", "puffin", "stoat"]
PLACES = ["Tromsø", "Valparaíso", "Hobart", "Tbilisi", "Windhoek", "Ushuaia", "Nuuk"]

# Room left in the context for the question, the template and the answer.
ANSWER_TOKENS = 24
RESERVE = 160


def tokens_of(tern: str, model: str, text: str) -> int:
    out = subprocess.run(
        [tern, "tokenize", model, "--json", "-q", text],
        check=True, capture_output=True, text=True,
    ).stdout
    return len(json.loads(out)["tokens"])


def paragraphs() -> list[str]:
    text = HAYSTACK.read_text()
    paras = [re.sub(r"\s+", " ", p).strip() for p in re.split(r"\n\s*\n", text)]
    return [p for p in paras if len(p) > 40]


def haystack(tern: str, model: str, n_tokens: int) -> list[str]:
    """The first paragraphs of the text holding about n_tokens tokens (measured with the
    model's own tokenizer, scaled from a first estimate and then trimmed)."""
    paras = paragraphs()
    sample = " ".join(paras[:40])
    chars_per_token = len(sample) / tokens_of(tern, model, sample)
    chosen: list[str] = []
    chars = 0
    for p in paras:
        if chars + len(p) > n_tokens * chars_per_token:
            break
        chosen.append(p)
        chars += len(p) + 2
    else:
        sys.exit(f"needle: {HAYSTACK.name} is too short for {n_tokens} tokens")
    # The estimate is rough (the sample's ratio is not the whole text's): measure, then
    # add or drop paragraphs until the haystack is the largest that fits.
    rest = paras[len(chosen):]
    while rest and tokens_of(tern, model, "\n\n".join(chosen + rest[:1])) <= n_tokens:
        chosen.append(rest.pop(0))
    while chosen and tokens_of(tern, model, "\n\n".join(chosen)) > n_tokens:
        chosen.pop()
    return chosen


def run_one(args, model: str, kv: str, messages: list[dict], ctx: int) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(messages, f)
        path = f.name
    cmd = [
        args.tern, "run", model, "--messages", path, "--json",
        "--temperature", "0", "-n", str(ANSWER_TOKENS), "--ctx-size", str(ctx),
        "--kv-type", kv, "--threads", str(args.threads),
    ]
    # Output to files, so the child never blocks on a pipe and wait4 can reap it
    # itself (its rusage is this run's peak RSS).
    with tempfile.TemporaryFile() as out_f, tempfile.TemporaryFile() as err_f:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out_f, stderr=err_f, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        out_f.seek(0)
        err_f.seek(0)
        out, err = out_f.read(), err_f.read()
    code = os.waitstatus_to_exitcode(status)
    os.unlink(path)
    if code != 0:
        sys.exit(f"needle: {' '.join(cmd)} failed ({code}):\n{err.decode()[-3000:]}")
    report = json.loads(out)
    kv_line = next((l for l in err.decode().splitlines() if "KV cache:" in l), "")
    return {"report": report, "wall_s": wall, "kv_line": kv_line, "usage": usage}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("model")
    p.add_argument("--ctx", type=int, default=8192)
    p.add_argument("--depths", default="0.1,0.5,0.9")
    p.add_argument("--kv-types", default="f16,q8_0")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--tern", default=str(ROOT / "target/release/tern"))
    p.add_argument("--json", dest="json_out")
    args = p.parse_args()
    if os.environ.get("CI"):
        sys.exit("needle: a benchmark; not run in CI")

    rng = random.Random(args.seed)
    hay = haystack(args.tern, args.model, args.ctx - RESERVE - ANSWER_TOKENS)
    results = []
    for depth in [float(d) for d in args.depths.split(",")]:
        word = f"{rng.choice(COLOURS)}-{rng.choice(ANIMALS)}-{rng.randrange(10, 100)}"
        place = rng.choice(PLACES)
        needle = f"(The secret code word for the warehouse in {place} is {word}.)"
        at = round(depth * len(hay))
        document = "\n\n".join(hay[:at] + [needle] + hay[at:])
        question = (
            f"{document}\n\n---\nIn the text above, what is the secret code word for the "
            f"warehouse in {place}? Answer with the code word only."
        )
        messages = [{"role": "user", "content": question}]
        for kv in args.kv_types.split(","):
            r = run_one(args, args.model, kv, messages, args.ctx)
            rep = r["report"]
            t = rep["timings"]
            found = word.lower() in rep["text"].lower()
            row = {
                "depth": depth, "kv_type": kv, "word": word, "found": found,
                "answer": rep["text"].strip(), "prompt_tokens": len(rep["prompt_tokens"]),
                "prompt_tokens_per_second": t["prompt_tokens_per_second"],
                "prompt_ms": t["prompt_ms"], "load_ms": t["load_ms"], "wall_s": r["wall_s"],
                "kv_cache": r["kv_line"].split("KV cache:", 1)[-1].strip(),
                "peak_rss_bytes": r["usage"].ru_maxrss * 1024,
            }
            results.append(row)
            rss = f"{row['peak_rss_bytes'] / 2**20:.1f} MiB"
            print(
                f"depth {depth:.2f} kv {kv:5s} prompt {row['prompt_tokens']:5d} tok "
                f"{row['prompt_tokens_per_second']:7.1f} tok/s  peak RSS {rss:>10s}  "
                f"{'FOUND' if found else 'missed'}  answer {row['answer'][:60]!r}  "
                f"(KV {row['kv_cache']})",
                flush=True,
            )
    found = sum(r["found"] for r in results)
    print(f"needle: {found}/{len(results)} retrieved; model {Path(args.model).name}, ctx {args.ctx}, "
          f"{args.threads} threads")
    if args.json_out:
        Path(args.json_out).write_text(json.dumps({
            "model": args.model, "ctx": args.ctx, "threads": args.threads,
            "seed": args.seed, "date": time.strftime("%Y-%m-%d"), "results": results,
        }, indent=2) + "\n")


if __name__ == "__main__":
    main()
