#!/usr/bin/env python3
"""Check that the committed goldens are complete, consistent and not stale.

Why: the goldens are made by generate.py on a machine with the reference llama.cpp;
CI has no llama.cpp. This check needs only Python and catches what would silently
weaken the fidelity tests: a prompt edited in scripts/goldens/prompts.json (or a text
under texts/, or oracle.cpp) without regenerating, a hand-edited golden whose numbers
no longer agree with each other, a missing model or file, too few long prompts.

    python3 scripts/goldens/check.py [GOLDENS_DIR]   # exit 0 and "N passed, 0 failed", or the problems
"""

from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GOLDENS = REPO / "tests" / "goldens"
FILES = ("meta.json", "prompts.json", "logits.json", "greedy.json", "perplexity.json")


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_model(goldens: Path, key: str, spec: dict, prompt_set: dict, fail) -> None:
    folder = goldens / key
    docs = {}
    for name in FILES:
        path = folder / name
        if not path.exists():
            fail(f"{key}: missing {path}")
            return
        docs[name] = json.loads(path.read_text(encoding="utf-8"))
    meta, prompts, logits, greedy, ppl = (docs[n] for n in FILES)

    # Not stale: the inputs the goldens were made from are the committed ones.
    if meta["oracle"]["source_sha256"] != sha256((HERE / "oracle.cpp").read_bytes()):
        fail(f"{key}: oracle.cpp changed since the goldens were made; rerun generate.py")
    wanted = [p for p in prompt_set["prompts"] if "models" not in p or key in p["models"]]
    have = {p["id"]: p for p in prompts["prompts"]}
    if [p["id"] for p in wanted] != [p["id"] for p in prompts["prompts"]]:
        fail(f"{key}: prompt ids differ from scripts/goldens/prompts.json; rerun generate.py")
    for p in wanted:
        text = (HERE / p["file"]).read_text(encoding="utf-8") if "file" in p else p["text"]
        if p["id"] in have and have[p["id"]]["text"] != text:
            fail(f"{key}: prompt {p['id']} text changed since the goldens were made; rerun generate.py")
    text = (HERE / prompt_set["perplexity_text"]).read_bytes()
    if ppl["text_sha256"] != sha256(text):
        fail(f"{key}: the perplexity text changed since the goldens were made; rerun generate.py")
    if meta["model"]["file"] != spec["file"]:
        fail(f"{key}: meta.json names model file {meta['model']['file']}, prompts.json {spec['file']}")

    # Complete and self-consistent.
    ids = [p["id"] for p in prompts["prompts"]]
    if [r["id"] for r in logits["prompts"]] != ids or [r["id"] for r in greedy["prompts"]] != ids:
        fail(f"{key}: prompts.json, logits.json and greedy.json list different prompts")
    long_min = prompt_set["long_min_tokens"]
    long_prompts = [p for p in prompts["prompts"] if p["id"].startswith("long-")]
    if len(long_prompts) < 3:
        fail(f"{key}: only {len(long_prompts)} long prompts, want at least 3")
    for p in prompts["prompts"]:
        if p["n_tokens"] != len(p["tokens"]):
            fail(f"{key}: {p['id']}: n_tokens {p['n_tokens']} but {len(p['tokens'])} token ids")
        if p["id"].startswith("long-") and p["n_tokens"] < long_min:
            fail(f"{key}: {p['id']}: {p['n_tokens']} tokens, long prompts need {long_min}")
        if meta["model"]["add_bos"] and p["tokens"][:1] != [meta["model"]["bos"]]:
            fail(f"{key}: {p['id']}: the model adds BOS but the prompt does not start with it")
    eog = set(meta["model"]["eog_ids"])
    for r in logits["prompts"]:
        values = [v for _, v in r["top"]]
        if len(r["top"]) != logits["top_k"] or values != sorted(values, reverse=True):
            fail(f"{key}: {r['id']}: top logits not {logits['top_k']} entries in descending order")
        if not math.isclose(r["top1_margin"], values[0] - values[1], abs_tol=1e-5):
            fail(f"{key}: {r['id']}: top1_margin does not match the logits")
        if r["top1_is_eog"] != (r["top"][0][0] in eog):
            fail(f"{key}: {r['id']}: top1_is_eog is wrong")
    for g in greedy["prompts"]:
        steps = g["steps"]
        if len(steps) != greedy["n_predict"] or g["tokens"] != [s["token"] for s in steps]:
            fail(f"{key}: {g['id']}: greedy tokens and steps disagree")
        tie = None
        for i, s in enumerate(steps):
            if not math.isclose(s["margin"], s["logit"] - s["runner_up_logit"], abs_tol=1e-5) or s["margin"] < 0:
                fail(f"{key}: {g['id']}: step {i}: margin does not match the logits")
            if s["token"] in eog or s["runner_up"] in eog:
                fail(f"{key}: {g['id']}: step {i}: an end-of-generation token despite --ignore-eos")
            if tie is None and s["margin"] < meta["comparison"]["greedy"]["near_tie_margin"]:
                tie = i
        if g["near_tie_step"] != tie:
            fail(f"{key}: {g['id']}: near_tie_step {g['near_tie_step']}, the margins say {tie}")
        first = logits["prompts"][ids.index(g["id"])]["top"]
        allowed = [i for i, _ in first if i not in eog][:1]
        if steps and [steps[0]["token"]] != allowed:
            fail(f"{key}: {g['id']}: greedy step 0 is not the best non-EOG token of logits.json")
    runs = {r["ctx"]: r for r in ppl["runs"]}
    if sorted(runs) != sorted(spec["perplexity_ctx"]):
        fail(f"{key}: perplexity runs at {sorted(runs)}, prompts.json asks for {spec['perplexity_ctx']}")
    for ctx, r in runs.items():
        if len(r["chunks"]) != r["n_chunks"] or r["n_chunks"] != ppl["n_tokens"] // ctx:
            fail(f"{key}: perplexity -c {ctx}: {len(r['chunks'])} chunks listed, {r['n_chunks']} run")
        if r["n_chunks"] < 4:
            fail(f"{key}: perplexity -c {ctx}: only {r['n_chunks']} chunks; the text is too short")
        if r["chunks"] and not math.isclose(r["chunks"][-1]["cumulative_ppl"], r["ppl"], rel_tol=1e-4):
            fail(f"{key}: perplexity -c {ctx}: the last running value is not the final PPL")


def main() -> int:
    goldens = Path(sys.argv[1]) if len(sys.argv) > 1 else GOLDENS
    prompt_set = json.loads((HERE / "prompts.json").read_text(encoding="utf-8"))
    problems: list[str] = []
    passed = 0
    for key, spec in prompt_set["models"].items():
        before = len(problems)
        check_model(goldens, key, spec, prompt_set, problems.append)
        passed += len(problems) == before
    for p in problems:
        print(f"goldens: {p}", file=sys.stderr)
    print(f"{passed} passed, {len(prompt_set['models']) - passed} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
