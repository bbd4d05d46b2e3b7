#!/usr/bin/env python3
"""Goldens for the qwen2, qwen3, phi3 and llama3 fidelity tests, from the reference llama.cpp.

Why: tern must give llama.cpp's logits and greedy tokens on every architecture it runs.
Real weights exist here only for Qwen2.5-Coder-1.5B; the others are tiny synthetic
models (scripts/synthetic/make-models.py). This script runs generate.py's oracle
(scripts/goldens/oracle.cpp: the tools' defaults, 1 thread) on a handful of prompts per
model and writes `tests/goldens/<key>/{meta,prompts,logits,greedy}.json` in the format of
docs/GOLDENS.md (no perplexity: these tests are about the graph, not the quantization).

The phi3 model runs every prompt twice: with a 2048-token context (its original
context: LongRoPE's short factors) and with 4096 (past it: the long factors); the
second run's prompt ids start with `ctx4096/`.

    .cache/venv/bin/python scripts/goldens/architectures.py [--models KEY ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import generate as g  # noqa: E402  (the oracle build/run and the JSON writer)

DATA = Path(os.environ.get("TERN_TEST_DATA", g.REPO / ".cache"))

PROMPTS = [
    ("fox", "The quick brown fox jumps over the lazy dog"),
    ("hello", "Hello"),
    ("code", "def fibonacci(n):\n    if n < 2:\n        return n\n"),
    (
        # 60+ tokens: past phi3-synthetic's 32-token sliding window, which llama.cpp
        # ignores for phi3 (and tern must too).
        "paragraph",
        "A lighthouse keeper kept a log of every ship that passed the rocks. In winter "
        "the storms came from the north, and the lamp had to be trimmed twice a night. "
        "Years later, the log was found in a drawer, and its last entry read:",
    ),
    ("unicode", "Größe: 12 €, 東京タワー, Привет мир! 🙂"),
]

MODELS = {
    # key: (file under .cache/, context sizes to run)
    "qwen2-synthetic": ("synthetic/qwen2-synthetic.gguf", [2048]),
    "qwen3-synthetic": ("synthetic/qwen3-synthetic.gguf", [2048]),
    "phi3-synthetic": ("synthetic/phi3-synthetic.gguf", [2048, 4096]),
    "llama3-synthetic": ("synthetic/llama3-synthetic.gguf", [2048]),
    "qwen2.5-coder-1.5b-instruct-q4_k_m": ("models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf", [2048]),
}

QWEN_CHAT = (
    "chat",
    "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n<|im_start|>user\n"
    "Write a Python function that reverses a string.<|im_end|>\n<|im_start|>assistant\n",
)


def prompts_for(key: str) -> list[dict]:
    rows = list(PROMPTS)
    if key.startswith("qwen2.5"):
        rows = [p for p in rows if p[0] in ("fox", "code", "paragraph")] + [QWEN_CHAT]
    return [{"id": i, "text": t, "bytes": t.encode("utf-8")} for i, t in rows]


def generate_model(oracle: Path, ref: g.Reference, key: str, out_root: Path) -> None:
    rel, contexts = MODELS[key]
    model = DATA / rel
    if not model.exists():
        sys.exit(f"architectures: {model} is missing\nhelp: python3 scripts/fetch-test-data.py")
    prompts = prompts_for(key)
    rows_p, rows_l, rows_g = [], [], []
    base = None
    checks = {}
    for ctx in contexts:
        settings = ["--ctx", str(ctx), "--top-k", "40"]
        run = g.run_oracle(oracle, model, prompts, ["--threads", "1", *settings])
        base = base or run
        # llama.cpp's own spread: the same file without weight repacking (another
        # summation order of the same quantized matmuls) moves the logits this much.
        other = g.run_oracle(oracle, model, prompts, ["--threads", "1", "--no-repack", *settings])
        checks[f"no_repack_ctx{ctx}"] = g.compare_runs(run, other)
        for p, r in zip(prompts, run["results"], strict=True):
            pid = p["id"] if ctx == contexts[0] else f"ctx{ctx}/{p['id']}"
            rows_p.append({"id": pid, "text": p["text"], "n_tokens": len(r["tokens"]), "tokens": r["tokens"]})
            top = r["top"]
            rows_l.append(
                {
                    "id": pid,
                    "top1_margin": g.jf(top[0][1] - top[1][1]),
                    "top1_is_eog": top[0][0] in set(run["model"]["eog_ids"]),
                    "top": [[i, g.jf(v)] for i, v in top],
                }
            )
            steps = r["steps"]
            rows_g.append(
                {
                    "id": pid,
                    "n_ctx": r["n_ctx"],
                    "near_tie_step": g.first_near_tie(steps),
                    "min_margin": g.jf(min(g.margin(s) for s in steps)),
                    "tokens": [s["token"] for s in steps],
                    "text": b"".join(s["bytes"] for s in steps).decode("utf-8", errors="replace"),
                    "steps": [
                        {
                            "token": s["token"],
                            "logit": g.jf(s["logit"]),
                            "runner_up": s["runner_up"],
                            "runner_up_logit": g.jf(s["runner_up_logit"]),
                            "margin": g.jf(g.margin(s)),
                        }
                        for s in steps
                    ],
                }
            )
    header = {"model": key, "generated_by": "scripts/goldens/architectures.py", "see": "meta.json, docs/GOLDENS.md"}
    meta = {
        "format_version": g.FORMAT_VERSION,
        "model": {"key": key, "file": rel, "sha256": g.sha256_file(model), "size": model.stat().st_size, **base["model"]},
        "llama_cpp": {
            "commit": ref.commit(),
            "build": ref.build_flags(),
            "system_info": base["system_info"],
            "cpu_features_compiled": base["cpu_features"],
            "cpu": g.cpu_model(),
        },
        "oracle": {
            "source": "scripts/goldens/oracle.cpp",
            "source_sha256": g.sha256_file(HERE / "oracle.cpp"),
            "settings": base["settings"],
            "contexts": contexts,
        },
        "checks": checks,
    }
    files = {
        "prompts.json": {**header, "prompts": rows_p},
        "logits.json": {**header, "top_k": len(rows_l[0]["top"]), "prompts": rows_l},
        "greedy.json": {**header, "n_predict": len(rows_g[0]["steps"]), "prompts": rows_g},
    }
    out_dir = out_root / key
    meta_path = out_dir / "meta.json"
    generated_at = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    if meta_path.exists():  # keep the date when nothing changed, so reruns are no-ops
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        old_date = old.pop("generated_at", None)
        same = old == json.loads(g.dump(meta)) and all(
            (out_dir / n).exists() and (out_dir / n).read_text(encoding="utf-8") == g.dump(v) + "\n"
            for n, v in files.items()
        )
        if same and old_date:
            generated_at = old_date
    files["meta.json"] = {"generated_at": generated_at, **meta}
    for name, value in files.items():
        changed = g.write_if_changed(out_dir / name, g.dump(value) + "\n")
        g.log(f"  {'wrote' if changed else 'unchanged'} {out_dir / name}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--llama-cpp",
        default=os.environ.get("LLAMA_CPP_REFERENCE", str(Path.home() / ".cache" / "llama.cpp-reference")),
    )
    ap.add_argument("--models", nargs="*", help=f"keys (default: all of {list(MODELS)})")
    ap.add_argument("--out", default=str(g.GOLDENS))
    args = ap.parse_args()
    ref = g.Reference(Path(args.llama_cpp))
    oracle = g.build_oracle(ref, DATA / "goldens")
    for key in args.models or list(MODELS):
        if key not in MODELS:
            sys.exit(f"architectures: unknown model {key!r}; known: {list(MODELS)}")
        g.log(key)
        generate_model(oracle, ref, key, Path(args.out))


if __name__ == "__main__":
    main()
