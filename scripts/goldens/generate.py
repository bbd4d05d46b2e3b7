#!/usr/bin/env python3
"""Generate tern's fidelity goldens from the reference llama.cpp build.

Why: CI compares tern's tokens, logits, greedy continuations and perplexity against
llama.cpp without rebuilding llama.cpp, so the reference answers are committed under
tests/goldens/<model>/. This script makes them:

1. builds scripts/goldens/oracle.cpp with g++ against the reference libllama.so;
2. runs the oracle on every prompt of scripts/goldens/prompts.json (1 thread), and
   again with variations (2 threads, full-size SWA cache, no weight repacking) to
   record how much those settings move the numbers;
3. checks the oracle's greedy continuation against `llama-completion --temp 0
   --ignore-eos` on a few prompts, so the oracle is known to behave like the tool;
4. runs `llama-perplexity` on the committed long text;
5. writes meta.json, prompts.json, logits.json, greedy.json and perplexity.json per
   model (format and comparison rules: docs/GOLDENS.md).

A rerun on the same machine gives byte-identical files: `generated_at` is kept when
nothing else changed. Run with the project's venv:
    .cache/venv/bin/python scripts/goldens/generate.py [--models NAME ...]
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import math
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
GOLDENS = REPO / "tests" / "goldens"
NEAR_TIE = 0.1  # logits; the comparison threshold of docs/GOLDENS.md
FORMAT_VERSION = 1
# Short prompts also run in the variant checks (with every `long-` prompt).
VARIANT_SHORT_PROMPTS = ("short-word-hello", "code-python-fib", "chat-full-smollm2", "chat-full-gemma3")


def log(msg: str) -> None:
    print(f"[goldens] {msg}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------
# The reference build and its provenance


class Reference:
    def __init__(self, root: Path):
        self.root = root
        self.src = root / "src"
        self.build = root / "build"
        self.bin = self.build / "bin"
        missing = [
            p
            for p in (
                self.bin / "libllama.so",
                self.bin / "llama-completion",
                self.bin / "llama-perplexity",
                self.bin / "llama-tokenize",
                self.src / "include" / "llama.h",
                self.src / "ggml" / "include" / "ggml-cpu.h",
            )
            if not p.exists()
        ]
        if missing:
            sys.exit(
                "goldens: the reference llama.cpp build is incomplete, missing:\n  "
                + "\n  ".join(map(str, missing))
                + "\nhelp: build it with shared/tools/build-llamacpp.sh or set LLAMA_CPP_REFERENCE"
            )

    def commit(self) -> str:
        """The llama.cpp commit vendored in the llama-cpp-python sdist the build came from."""
        if os.environ.get("LLAMA_CPP_COMMIT"):
            return os.environ["LLAMA_CPP_COMMIT"]
        for sdist in sorted(self.root.glob("llama_cpp_python-*.tar.gz")):
            with tarfile.open(sdist) as tar:
                for member in tar:
                    if member.name.endswith(".git/modules/vendor/llama.cpp/HEAD"):
                        data = tar.extractfile(member)
                        if data is not None:
                            return data.read().decode().strip()
        return "unknown"

    def sdist(self) -> dict:
        for sdist in sorted(self.root.glob("llama_cpp_python-*.tar.gz")):
            return {"file": sdist.name, "sha256": sha256_file(sdist)}
        return {}

    def build_flags(self) -> dict:
        cache = (self.build / "CMakeCache.txt").read_text(errors="replace")
        flags = {}
        for line in cache.splitlines():
            m = re.match(r"^(GGML_[A-Z0-9_]+|CMAKE_BUILD_TYPE|BUILD_SHARED_LIBS):[A-Z]+=(.*)$", line)
            if m and (
                m.group(1)
                in (
                    "CMAKE_BUILD_TYPE",
                    "BUILD_SHARED_LIBS",
                    "GGML_NATIVE",
                    "GGML_CPU_REPACK",
                    "GGML_OPENMP",
                    "GGML_LLAMAFILE",
                    "GGML_BACKEND_DL",
                    "GGML_CPU_ALL_VARIANTS",
                )
                or m.group(1).startswith(("GGML_AVX", "GGML_F16C", "GGML_FMA", "GGML_BMI2"))
            ):
                flags[m.group(1)] = m.group(2)
        compiler = "unknown"
        for f in sorted(self.build.glob("CMakeFiles/*/CMakeCXXCompiler.cmake")):
            text = f.read_text()
            cid = re.search(r'set\(CMAKE_CXX_COMPILER_ID "([^"]*)"\)', text)
            ver = re.search(r'set\(CMAKE_CXX_COMPILER_VERSION "([^"]*)"\)', text)
            if cid and ver:
                compiler = f"{cid.group(1)} {ver.group(1)}"
        march = set()
        cc = self.build / "compile_commands.json"
        if cc.exists():
            march = set(re.findall(r"-march=[\w.-]+", cc.read_text()))
        return {"cmake": dict(sorted(flags.items())), "compiler": compiler, "march": sorted(march)}


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown"


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------
# The oracle


def build_oracle(ref: Reference, out_dir: Path) -> Path:
    source = HERE / "oracle.cpp"
    out_dir.mkdir(parents=True, exist_ok=True)
    exe = out_dir / "oracle"
    stamp = out_dir / "oracle.stamp"
    want = hashlib.sha256(
        source.read_bytes() + sha256_file(ref.bin / "libllama.so").encode() + str(ref.root).encode()
    ).hexdigest()
    if exe.exists() and stamp.exists() and stamp.read_text() == want:
        return exe
    cmd = [
        os.environ.get("CXX", "g++"),
        "-std=c++17",
        "-O2",
        "-Wall",
        "-Wextra",
        "-o",
        str(exe),
        str(source),
        f"-I{ref.src / 'include'}",
        f"-I{ref.src / 'ggml' / 'include'}",
        f"-L{ref.bin}",
        "-lllama",
        "-lggml",
        "-lggml-base",
        "-lggml-cpu",
        f"-Wl,-rpath,{ref.bin}",
    ]
    log("building the oracle: " + " ".join(cmd))
    subprocess.run(cmd, check=True)
    stamp.write_text(want)
    return exe


def run_oracle(exe: Path, model: Path, prompts: list[dict], extra: list[str], lib_dir: str | None = None) -> dict:
    with tempfile.NamedTemporaryFile("w", suffix=".tsv", delete=False) as f:
        for p in prompts:
            f.write(f"{p['id']}\t{p['bytes'].hex()}\n")
        tsv = f.name
    try:
        t0 = time.monotonic()
        env = dict(os.environ)
        if lib_dir:  # another build of the ggml libraries, found before the RUNPATH
            env["LD_LIBRARY_PATH"] = lib_dir
        out = subprocess.run(
            [str(exe), str(model), tsv, *extra], check=True, capture_output=True, env=env
        ).stdout
        log(f"  oracle {' '.join(extra) or '(defaults)'}: {time.monotonic() - t0:.1f} s")
    finally:
        os.unlink(tsv)
    data = json.loads(out)
    for r in data["results"]:
        r["top"] = [(int(i), f32(v)) for i, v in r["top"]]
        r["steps"] = [
            {
                "token": int(t),
                "logit": f32(lt),
                "runner_up": int(ru),
                "runner_up_logit": f32(rl),
                "bytes": bytes.fromhex(piece),
            }
            for t, lt, ru, rl, piece in r["steps"]
        ]
    return data


def f32(v) -> np.float32:
    if isinstance(v, str):  # the oracle writes infinities as strings
        return np.float32(float(v))
    return np.float32(v)


# ----------------------------------------------------------------------------------
# Output formatting: pretty-printed JSON whose leaves stay on one line, floats as the
# shortest decimal that reads back to the same float32.


class Raw(str):
    """A pre-formatted JSON number."""


def jf(v) -> Raw:
    v = np.float32(v)
    if not np.isfinite(v):
        raise ValueError(f"non-finite value {v} in goldens")
    return Raw(np.format_float_positional(v, unique=True, trim="-"))


def dump(obj, indent: int = 0, width: int = 120) -> str:
    pad = "  " * indent

    def scalar(x) -> str:
        if isinstance(x, Raw):
            return str(x)
        if isinstance(x, (np.floating,)):
            return str(jf(x))
        if isinstance(x, float):
            if not math.isfinite(x):
                raise ValueError("non-finite float")
            return repr(x)
        return json.dumps(x, ensure_ascii=False)

    def is_leaf(x) -> bool:
        if isinstance(x, dict):
            return all(not isinstance(v, (dict, list, tuple)) for v in x.values())
        if isinstance(x, (list, tuple)):
            return all(not isinstance(v, (dict, list, tuple)) for v in x)
        return True

    def inline(x) -> str:
        if isinstance(x, dict):
            return "{" + ", ".join(f"{json.dumps(k)}: {inline(v)}" for k, v in x.items()) + "}"
        if isinstance(x, (list, tuple)):
            return "[" + ", ".join(inline(v) for v in x) + "]"
        return scalar(x)

    if not isinstance(obj, (dict, list, tuple)):
        return scalar(obj)
    one = inline(obj)
    if is_leaf(obj) and len(one) + len(pad) <= width:
        return one
    inner = "  " * (indent + 1)
    if isinstance(obj, dict):
        if not obj:
            return "{}"
        items = [f"{inner}{json.dumps(k)}: {dump(v, indent + 1, width)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if not obj:
        return "[]"
    if is_leaf(obj):  # a long list of scalars: wrap, several per line
        lines, cur = [], ""
        for v in obj:
            s = scalar(v)
            if cur and len(inner) + len(cur) + len(s) + 2 > width:
                lines.append(cur + ",")
                cur = s
            else:
                cur = f"{cur}, {s}" if cur else s
        lines.append(cur)
        return "[\n" + "\n".join(inner + ln for ln in lines) + "\n" + pad + "]"
    items = [inner + dump(v, indent + 1, width) for v in obj]
    return "[\n" + ",\n".join(items) + "\n" + pad + "]"


# ----------------------------------------------------------------------------------
# Prompts


def load_prompt_set() -> dict:
    return json.loads((HERE / "prompts.json").read_text(encoding="utf-8"))


def prompts_for(prompt_set: dict, model_key: str) -> list[dict]:
    out = []
    for p in prompt_set["prompts"]:
        if "models" in p and model_key not in p["models"]:
            continue
        if "file" in p:
            data = (HERE / p["file"]).read_bytes()
        else:
            data = p["text"].encode("utf-8")
        out.append({**p, "bytes": data})
    return out


# ----------------------------------------------------------------------------------
# Comparisons between oracle runs and with llama.cpp's own tools


def margin(step: dict) -> np.float32:
    return np.float32(step["logit"] - step["runner_up_logit"])


def first_near_tie(steps: list[dict]) -> int | None:
    for i, s in enumerate(steps):
        if margin(s) < NEAR_TIE:
            return i
    return None


def compare_runs(base: dict, other: dict) -> dict:
    """How far a variant run moves tokens, top logits and greedy steps from the base."""
    max_top = 0.0
    max_step = 0.0
    differing, diverged = [], []
    for a, b in zip(base["results"], other["results"], strict=True):
        assert a["id"] == b["id"]
        if a["tokens"] != b["tokens"]:
            differing.append({"id": a["id"], "what": "prompt tokens"})
            continue
        bt = dict(b["top"])
        d_top = max((abs(float(v) - float(bt[i])) for i, v in a["top"] if i in bt), default=0.0)
        # Up to and including the first differing step both runs saw the same tokens,
        # so logits of the same token id compare; after it they do not.
        d_step = 0.0
        div = None
        for k, (sa, sb) in enumerate(zip(a["steps"], b["steps"])):
            la = {sa["token"]: sa["logit"], sa["runner_up"]: sa["runner_up_logit"]}
            lb = {sb["token"]: sb["logit"], sb["runner_up"]: sb["runner_up_logit"]}
            for t in la.keys() & lb.keys():
                d_step = max(d_step, abs(float(la[t]) - float(lb[t])))
            if sa["token"] != sb["token"]:
                div = k
                break
        max_top, max_step = max(max_top, d_top), max(max_step, d_step)
        if d_top > 0 or d_step > 0:
            differing.append({"id": a["id"], "max_abs_top_logit_diff": jf(d_top), "max_abs_step_logit_diff": jf(d_step)})
        if div is not None:
            tie = first_near_tie(a["steps"])
            diverged.append(
                {
                    "id": a["id"],
                    "step": div,
                    "base_margin_there": jf(margin(a["steps"][div])),
                    "after_base_near_tie": tie is not None and tie <= div,
                }
            )
    return {
        "identical": not differing and not diverged,
        "max_abs_top_logit_diff": jf(max_top),
        "max_abs_step_logit_diff_through_divergence": jf(max_step),
        "prompts_differing": differing,
        "greedy_divergences": diverged,
    }


def check_completion(ref: Reference, model: Path, prompt: dict, result: dict) -> dict:
    """Greedy text of `llama-completion --temp 0 --ignore-eos` equals the oracle's."""
    n_predict = len(result["steps"])
    with tempfile.NamedTemporaryFile("wb", suffix=".txt", delete=False) as f:
        # common's -f drops one trailing newline: add one so the prompt arrives intact.
        f.write(prompt["bytes"] + b"\n")
        path = f.name
    cmd = [
        str(ref.bin / "llama-completion"),
        "-m", str(model),
        "-f", path,
        "-n", str(n_predict),
        "--temp", "0",
        "--ignore-eos",
        "-c", str(result["n_ctx"]),
        "-b", str(max(2048, len(result["tokens"]))),
        "-t", "1",
        "-no-cnv",
        "--no-escape",
        "--no-display-prompt",
        "--simple-io",
        "--no-warmup",
    ]
    try:
        out = subprocess.run(cmd, check=True, capture_output=True).stdout
    finally:
        os.unlink(path)
    expected = b"".join(s["bytes"] for s in result["steps"])
    # llama-completion ends its output with "\n\n" (tools/completion/completion.cpp).
    got = out[:-2] if out.endswith(b"\n\n") else out
    return {
        "id": prompt["id"],
        "command": "llama-completion -f PROMPT " + " ".join(cmd[5:]),
        "match": got == expected,
    }


def tokenize_count(ref: Reference, model: Path, data: bytes) -> list[int]:
    out = subprocess.run(
        [str(ref.bin / "llama-tokenize"), "-m", str(model), "--stdin", "--ids", "--no-parse-special", "--log-disable"],
        input=data,
        check=True,
        capture_output=True,
    ).stdout.decode()
    return json.loads(out.strip().splitlines()[-1])


def run_perplexity(ref: Reference, model: Path, text: Path, ctx: int) -> dict:
    cmd = [
        str(ref.bin / "llama-perplexity"),
        "-m", str(model),
        "-f", str(text),
        "-c", str(ctx),
        "-t", "1",
        "--ppl-output-type", "1",
    ]
    t0 = time.monotonic()
    proc = subprocess.run(cmd, check=True, capture_output=True)
    log(f"  llama-perplexity -c {ctx}: {time.monotonic() - t0:.1f} s")
    stdout, stderr = proc.stdout.decode(), proc.stderr.decode()
    m = re.search(r"calculating perplexity over (\d+) chunks, n_ctx=(\d+), batch_size=(\d+), n_seq=(\d+)", stderr)
    final = re.search(r"Final estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)", stderr)
    if not m or not final:
        sys.exit(f"goldens: cannot parse llama-perplexity output for -c {ctx}:\n{stderr[-2000:]}")
    n_chunks, n_ctx, n_batch, n_seq = map(int, m.groups())
    scored = n_ctx - n_ctx // 2 - 1
    rows = []
    for line in stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0].isdigit():
            rows.append((float(parts[1]), float(parts[2])))
    if len(rows) != n_chunks:
        sys.exit(f"goldens: llama-perplexity printed {len(rows)} chunk lines, expected {n_chunks}")
    chunks = []
    for i, (cum_ppl, cum_nll) in enumerate(rows):
        # The tool prints running values; the mean NLL of chunk i alone follows from
        # two consecutive running means (each chunk scores the same number of tokens).
        prev = rows[i - 1][1] * i if i else 0.0
        chunk_nll = cum_nll * (i + 1) - prev
        chunks.append(
            {
                "chunk": i,
                "cumulative_ppl": cum_ppl,
                "cumulative_mean_nll": cum_nll,
                "chunk_ppl": round(math.exp(chunk_nll), 4),
            }
        )
    return {
        "command": "llama-perplexity -m MODEL -f TEXT " + " ".join(cmd[5:]),
        "ctx": n_ctx,
        "batch": n_batch,
        "ubatch": 512,
        "n_seq": n_seq,
        "threads": 1,
        "n_chunks": n_chunks,
        "scored_tokens_per_chunk": scored,
        "ppl": float(final.group(1)),
        "ppl_stderr": float(final.group(2)),
        "chunks": chunks,
    }


# ----------------------------------------------------------------------------------
# Writing


def write_if_changed(path: Path, text: str) -> bool:
    if path.exists() and path.read_text(encoding="utf-8") == text:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return True


def generate_model(ref: Reference, oracle: Path, prompt_set: dict, model_key: str, models_dir: Path, args) -> None:
    spec = prompt_set["models"][model_key]
    model = models_dir / spec["file"]
    if not model.exists():
        sys.exit(f"goldens: model missing: {model}\nhelp: run `python3 scripts/fetch-test-data.py`")
    log(f"{model_key}: {model}")
    prompts = prompts_for(prompt_set, model_key)
    base = run_oracle(oracle, model, prompts, ["--threads", "1"])
    results = base["results"]

    long_min = prompt_set["long_min_tokens"]
    for p, r in zip(prompts, results, strict=True):
        if p["id"].startswith("long-") and len(r["tokens"]) < long_min:
            sys.exit(f"goldens: prompt {p['id']} has {len(r['tokens'])} tokens on {model_key}, needs {long_min}")

    def variant(extra: list[str], only_long: bool = False, lib_dir: str | None = None) -> dict:
        # A few short prompts and every long one: the long ones are where settings
        # matter (split-KV decoding, the sliding-window ring), and 2-thread runs are
        # very slow on a machine whose cores are busy with other work.
        keep = [
            i
            for i, p in enumerate(prompts)
            if p["id"].startswith("long-") or (not only_long and p["id"] in VARIANT_SHORT_PROMPTS)
        ]
        other = run_oracle(oracle, model, [prompts[i] for i in keep], extra, lib_dir)
        subset = {**base, "results": [results[i] for i in keep]}
        return {"prompts": [prompts[i]["id"] for i in keep], **compare_runs(subset, other)}

    checks: dict = {}
    if not args.quick:
        checks["threads_2"] = variant(["--threads", "2"])
        checks["no_repack"] = variant(["--threads", "1", "--no-repack"])
        if base["model"]["n_swa"] > 0:
            checks["swa_full"] = variant(["--threads", "1", "--swa-full"], only_long=True)
    if args.ggml_cpu_lib:
        checks["ggml_cpu_lib"] = {
            "dir": args.ggml_cpu_lib,
            **variant(["--threads", "1"], lib_dir=args.ggml_cpu_lib),
        }
    by_id = {p["id"]: (p, r) for p, r in zip(prompts, results)}
    completion_ids = [i for i in args.completion_check if i in by_id]
    completion_ids += [p["id"] for p in prompts if p["id"].startswith("chat-full-")]
    checks["llama_completion"] = [check_completion(ref, model, *by_id[i]) for i in completion_ids]
    bad = [c["id"] for c in checks["llama_completion"] if not c["match"]]
    if bad:
        sys.exit(f"goldens: the oracle's greedy text differs from llama-completion on {bad} ({model_key})")

    # -- prompts.json / logits.json / greedy.json
    prompt_rows, logit_rows, greedy_rows = [], [], []
    eog = set(base["model"]["eog_ids"])
    for p, r in zip(prompts, results, strict=True):
        row = {"id": p["id"]}
        if "file" in p:
            row["file"] = "scripts/goldens/" + p["file"]
        if "note" in p:
            row["note"] = p["note"]
        row["text"] = p["bytes"].decode("utf-8")
        row["n_tokens"] = len(r["tokens"])
        row["tokens"] = r["tokens"]
        prompt_rows.append(row)
        top = r["top"]
        logit_rows.append(
            {
                "id": p["id"],
                "top1_margin": jf(top[0][1] - top[1][1]),
                "top1_is_eog": top[0][0] in eog,
                "top": [[i, jf(v)] for i, v in top],
            }
        )
        steps = r["steps"]
        tie = first_near_tie(steps)
        greedy_rows.append(
            {
                "id": p["id"],
                "n_ctx": r["n_ctx"],
                "near_tie_step": tie,
                "min_margin": jf(min(margin(s) for s in steps)),
                "tokens": [s["token"] for s in steps],
                "text": b"".join(s["bytes"] for s in steps).decode("utf-8", errors="replace"),
                "steps": [
                    {
                        "token": s["token"],
                        "logit": jf(s["logit"]),
                        "runner_up": s["runner_up"],
                        "runner_up_logit": jf(s["runner_up_logit"]),
                        "margin": jf(margin(s)),
                    }
                    for s in steps
                ],
            }
        )

    # -- perplexity.json
    text_path = HERE / prompt_set["perplexity_text"]
    text = text_path.read_bytes()
    # common's -f (which llama-perplexity uses) drops one trailing newline.
    fed = text[:-1] if text.endswith(b"\n") else text
    ids = tokenize_count(ref, model, fed)
    perplexity = {
        "text": "scripts/goldens/" + prompt_set["perplexity_text"],
        "text_sha256": hashlib.sha256(text).hexdigest(),
        "input": "the file's bytes with one trailing newline removed (common/arg.cpp -f)",
        "tokenize": {"add_special": True, "parse_special": False},
        "n_tokens": len(ids),
        "tokens_sha256": hashlib.sha256(",".join(map(str, ids)).encode()).hexdigest(),
        "first_tokens": ids[:16],
        "runs": [] if args.skip_perplexity else [run_perplexity(ref, model, text_path, c) for c in spec["perplexity_ctx"]],
    }

    # -- stats for the engine tests
    ties = [g for g in greedy_rows if g["near_tie_step"] is not None]
    stats = {
        "n_prompts": len(prompts),
        "n_long_prompts": sum(p["id"].startswith("long-") for p in prompts),
        "longest_prompt_tokens": max(len(r["tokens"]) for r in results),
        "greedy_prompts_without_near_tie": len(prompts) - len(ties),
        "greedy_prompts_with_near_tie": len(ties),
        "greedy_near_tie_at_step_0": sum(g["near_tie_step"] == 0 for g in ties),
        "greedy_identical_steps_required_total": sum(
            g["near_tie_step"] if g["near_tie_step"] is not None else len(g["steps"]) for g in greedy_rows
        ),
        "greedy_near_ties": [{"id": g["id"], "step": g["near_tie_step"], "margin": g["steps"][g["near_tie_step"]]["margin"]} for g in ties],
        "smallest_margin": jf(min(float(g["min_margin"]) for g in greedy_rows)),
        "logits_top1_margin_under_0.1": [r["id"] for r in logit_rows if float(r["top1_margin"]) < NEAR_TIE],
        "logits_top1_is_eog": [r["id"] for r in logit_rows if r["top1_is_eog"]],
    }

    meta = {
        "format_version": FORMAT_VERSION,
        "model": {
            "key": model_key,
            "file": spec["file"],
            "sha256": sha256_file(model),
            "size": model.stat().st_size,
            **base["model"],
        },
        "llama_cpp": {
            "commit": ref.commit(),
            "source": ref.sdist(),
            "build": ref.build_flags(),
            "system_info": base["system_info"],
            "cpu_features_compiled": base["cpu_features"],
            "cpu": cpu_model(),
        },
        "oracle": {
            "source": "scripts/goldens/oracle.cpp",
            "source_sha256": sha256_file(HERE / "oracle.cpp"),
            "settings": base["settings"],
        },
        "comparison": {
            "prompt_tokens": "identical",
            "logits": {"top_k_compared": 10, "max_abs_diff": NEAR_TIE, "top1": "identical unless top1_margin < 0.1"},
            "greedy": {
                "near_tie_margin": NEAR_TIE,
                "rule": "steps before near_tie_step identical; at near_tie_step the token is the chosen "
                "one or the runner-up; later steps not compared",
                "min_fraction_of_prompts": 0.9,
            },
            "perplexity": {"max_relative_diff": 0.005},
        },
        "stats": stats,
        "checks": checks,
    }

    out_dir = Path(args.out) / model_key
    header = {"model": model_key, "generated_by": "scripts/goldens/generate.py", "see": "meta.json, docs/GOLDENS.md"}
    files = {
        "prompts.json": {**header, "prompts": prompt_rows},
        "logits.json": {**header, "top_k": len(logit_rows[0]["top"]), "prompts": logit_rows},
        "greedy.json": {**header, "n_predict": len(greedy_rows[0]["steps"]), "prompts": greedy_rows},
        "perplexity.json": {**header, **perplexity},
    }
    # Keep the date when nothing else changed, so a rerun gives identical files.
    meta_path = out_dir / "meta.json"
    today = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    generated_at = today
    if meta_path.exists():
        old = json.loads(meta_path.read_text(encoding="utf-8"))
        old_date = old.pop("generated_at", None)
        new_cmp = json.loads(dump(meta))
        unchanged = old == new_cmp and all(
            (out_dir / n).exists() and (out_dir / n).read_text(encoding="utf-8") == dump(v) + "\n"
            for n, v in files.items()
        )
        if unchanged and old_date:
            generated_at = old_date
    files["meta.json"] = {"generated_at": generated_at, **meta}
    for name, value in files.items():
        changed = write_if_changed(out_dir / name, dump(value) + "\n")
        log(f"  {'wrote' if changed else 'unchanged'} {out_dir / name}")
    log(
        f"  {model_key}: {len(prompts)} prompts, near ties in {len(ties)}, "
        f"smallest margin {stats['smallest_margin']}, checks: "
        + ", ".join(f"{k}={'identical' if v.get('identical') else 'differs'}" for k, v in checks.items() if isinstance(v, dict))
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--llama-cpp",
        default=os.environ.get("LLAMA_CPP_REFERENCE", str(Path.home() / ".cache" / "llama.cpp-reference")),
        help="reference llama.cpp folder with src/ and build/ (default: $LLAMA_CPP_REFERENCE or ~/.cache/llama.cpp-reference)",
    )
    default_data = Path(os.environ.get("TERN_TEST_DATA", REPO / ".cache"))
    ap.add_argument("--models-dir", default=str(default_data / "models"))
    ap.add_argument("--models", nargs="*", help="model keys of prompts.json (default: all)")
    ap.add_argument("--out", default=str(GOLDENS), help="output folder (default: tests/goldens)")
    ap.add_argument("--skip-perplexity", action="store_true", help="leave out llama-perplexity (faster, for trying prompts)")
    ap.add_argument("--quick", action="store_true", help="skip the variant runs (threads, repack, SWA)")
    ap.add_argument(
        "--completion-check",
        nargs="*",
        default=["short-word-hello", "code-python-fib", "uni-emoji", "long-kjv-genesis"],
        help="prompt ids also run through llama-completion (chat-full-* are always added)",
    )
    ap.add_argument(
        "--ggml-cpu-lib",
        help="a folder with another build of libggml-cpu.so (e.g. without AVX-512): also run the "
        "variant prompts against it and record the differences as checks.ggml_cpu_lib",
    )
    args = ap.parse_args()

    ref = Reference(Path(args.llama_cpp))
    oracle = build_oracle(ref, default_data / "goldens")
    prompt_set = load_prompt_set()
    keys = args.models or list(prompt_set["models"])
    unknown = [k for k in keys if k not in prompt_set["models"]]
    if unknown:
        sys.exit(f"goldens: unknown model keys {unknown}; prompts.json has {list(prompt_set['models'])}")
    t0 = time.monotonic()
    for key in keys:
        generate_model(ref, oracle, prompt_set, key, Path(args.models_dir), args)
    log(f"done in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()
