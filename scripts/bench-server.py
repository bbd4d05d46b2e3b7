#!/usr/bin/env python3
"""Serving benchmark: tern serve and llama-server side by side on the same model.

Why: issue 7 asks for aggregate generated tokens/s and time to first token with 1, 4 and
8 concurrent streams, against llama-server with the same model, threads and number of
slots. Machines here are shared and noisy, so the two servers are measured alternately
(tern, llama, llama, tern, ...) for several rounds and the medians and paired ratios are
reported, as scripts/compare-llamacpp.py does for the engine.

Each measurement: start the server (threads `-t`, slots = the largest stream count,
context per slot `--ctx`), warm it up with one request, then for each stream count N run
N clients at once, each sending `--requests` streaming chat completions one after the
other (greedy, `ignore_eos`, exactly `--max-tokens` tokens, a different short prompt
per client). Per request: time to first token (first content delta) and tokens. Per N:
aggregate generated tokens / wall time, p50 / p99 TTFT. Then the server is stopped.

Standard library only (threads + http.client), loopback only. A benchmark, not a test:
    .cache/venv/bin/python scripts/bench-server.py MODEL.gguf [--tern PATH]
        [--llama-server PATH] [-t 2] [--streams 1,4,8] [--rounds 3] [--json OUT]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PROMPTS = [
    "Write a short story about a lighthouse keeper.",
    "Explain how a bicycle stays upright.",
    "List some facts about the Moon.",
    "Describe a walk through a forest in autumn.",
    "What makes a good cup of tea?",
    "Tell me about the history of maps.",
    "How do bees make honey?",
    "Describe the city of Lisbon.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_ready(port: int, proc: subprocess.Popen, timeout: float = 300) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            sys.exit(f"bench-server: server exited with {proc.returncode}")
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/health")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit("bench-server: server did not become ready")


def stream_one(port: int, model: str, prompt: str, max_tokens: int) -> tuple[float, int, float]:
    """One streaming chat completion; returns (ttft seconds, tokens, total seconds)."""
    body = json.dumps({
        "model": model,
        "messages": [{"role": "user", "content": prompt}],
        "max_tokens": max_tokens,
        "temperature": 0,
        "ignore_eos": True,
        "stream": True,
        "stream_options": {"include_usage": True},
    })
    start = time.perf_counter()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=600)
    conn.request("POST", "/v1/chat/completions", body, {"Content-Type": "application/json"})
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    ttft = None
    tokens = 0
    deltas = 0
    for raw in response:
        line = raw.decode().strip()
        if not line.startswith("data:"):
            continue
        data = line[5:].strip()
        if data == "[DONE]":
            break
        event = json.loads(data)
        usage = event.get("usage")
        if usage:
            tokens = usage.get("completion_tokens", tokens)
        for choice in event.get("choices", []):
            if choice.get("delta", {}).get("content"):
                deltas += 1
                if ttft is None:
                    ttft = time.perf_counter() - start
    total = time.perf_counter() - start
    conn.close()
    return (ttft if ttft is not None else total), (tokens or deltas), total


def run_load(port: int, model: str, streams: int, requests: int, max_tokens: int) -> dict:
    results: list[tuple[float, int, float]] = []
    errors: list[str] = []
    lock = threading.Lock()

    def client(index: int) -> None:
        for r in range(requests):
            prompt = PROMPTS[(index + r) % len(PROMPTS)]
            try:
                outcome = stream_one(port, model, prompt, max_tokens)
            except Exception as e:  # noqa: BLE001 - reported, counted as a failure
                with lock:
                    errors.append(str(e))
                continue
            with lock:
                results.append(outcome)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(streams)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ttfts = sorted(r[0] for r in results)
    tokens = sum(r[1] for r in results)

    def pct(p: float) -> float:
        if not ttfts:
            return float("nan")
        return ttfts[min(len(ttfts) - 1, int(round(p * (len(ttfts) - 1))))]

    return {
        "streams": streams,
        "requests": len(results),
        "errors": len(errors),
        "tokens": tokens,
        "wall_s": wall,
        "tok_s": tokens / wall if wall > 0 else 0.0,
        "ttft_p50_ms": pct(0.5) * 1000,
        "ttft_p99_ms": pct(0.99) * 1000,
    }


def start_server(kind: str, binary: str, model_path: str, port: int, threads: int,
                 slots: int, ctx: int) -> subprocess.Popen:
    env = dict(os.environ)
    if kind == "tern":
        cmd = [binary, "serve", "--model", model_path, "--port", str(port), "--threads",
               str(threads), "--parallel", str(slots), "--ctx-size", str(ctx)]
    else:
        # llama-server splits -c over its slots.
        cmd = [binary, "-m", model_path, "--port", str(port), "--host", "127.0.0.1", "-t",
               str(threads), "-np", str(slots), "-c", str(ctx * slots), "--no-webui"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)


def served_model_name(kind: str, port: int, model_path: str) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", "/v1/models")
    data = json.loads(conn.getresponse().read())
    ids = [m["id"] for m in data.get("data", [])]
    return ids[0] if ids else Path(model_path).stem


def measure(kind: str, binary: str, args: argparse.Namespace, streams: list[int]) -> list[dict]:
    port = free_port()
    proc = start_server(kind, binary, args.model, port, args.threads, max(streams), args.ctx)
    try:
        wait_ready(port, proc)
        model = served_model_name(kind, port, args.model)
        stream_one(port, model, "Hello", 8)  # warm-up: load, page in the weights
        return [run_load(port, model, n, args.requests, args.max_tokens) for n in streams]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("model")
    parser.add_argument("--tern", default=os.environ.get("TERN_BIN", str(ROOT / "target/release/tern")))
    parser.add_argument("--llama-server", default=os.environ.get(
        "LLAMA_SERVER", str(Path.home() / ".cache/llama.cpp-reference/build/bin/llama-server")))
    parser.add_argument("-t", "--threads", type=int, default=2)
    parser.add_argument("--streams", default="1,4,8")
    parser.add_argument("--requests", type=int, default=2, help="requests per client")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--ctx", type=int, default=1024, help="context per slot")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--json", help="write every measurement here")
    args = parser.parse_args()
    if os.environ.get("CI"):
        sys.exit("bench-server: not in CI (a benchmark needs a quiet machine and minutes)")
    streams = [int(s) for s in args.streams.split(",") if s]
    runs: dict[str, list[list[dict]]] = {"tern": [], "llama": []}
    for r in range(args.rounds):
        order = ["tern", "llama"] if r % 2 == 0 else ["llama", "tern"]
        for kind in order:
            binary = args.tern if kind == "tern" else args.llama_server
            result = measure(kind, binary, args, streams)
            runs[kind].append(result)
            for m in result:
                print(f"round {r} {kind:5} streams {m['streams']}: {m['tok_s']:.1f} tok/s, "
                      f"TTFT p50 {m['ttft_p50_ms']:.0f} ms p99 {m['ttft_p99_ms']:.0f} ms, "
                      f"{m['errors']} errors", file=sys.stderr)
    print(f"\nmodel {Path(args.model).name}, {args.threads} threads, {max(streams)} slots, "
          f"{args.max_tokens} tokens per request, {args.requests} requests per client, "
          f"median of {args.rounds} rounds\n")
    print("| streams | tern tok/s | llama-server tok/s | ratio (paired median) | "
          "tern TTFT p50 / p99 ms | llama-server TTFT p50 / p99 ms | errors |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    summary = []
    for i, n in enumerate(streams):
        t = [run[i] for run in runs["tern"]]
        ll = [run[i] for run in runs["llama"]]
        ratios = [a["tok_s"] / b["tok_s"] for a, b in zip(t, ll) if b["tok_s"] > 0]
        med = lambda xs, k: statistics.median(x[k] for x in xs)
        row = {
            "streams": n,
            "tern_tok_s": med(t, "tok_s"),
            "llama_tok_s": med(ll, "tok_s"),
            "ratio": statistics.median(ratios) if ratios else float("nan"),
            "tern_ttft_p50_ms": med(t, "ttft_p50_ms"),
            "tern_ttft_p99_ms": med(t, "ttft_p99_ms"),
            "llama_ttft_p50_ms": med(ll, "ttft_p50_ms"),
            "llama_ttft_p99_ms": med(ll, "ttft_p99_ms"),
            "errors": sum(x["errors"] for x in t + ll),
        }
        summary.append(row)
        print(f"| {n} | {row['tern_tok_s']:.1f} | {row['llama_tok_s']:.1f} | {row['ratio']:.2f} | "
              f"{row['tern_ttft_p50_ms']:.0f} / {row['tern_ttft_p99_ms']:.0f} | "
              f"{row['llama_ttft_p50_ms']:.0f} / {row['llama_ttft_p99_ms']:.0f} | {row['errors']} |")
    base = summary[0]["tern_tok_s"] if summary else 0
    for row in summary[1:]:
        print(f"tern scaling {row['streams']} streams / {summary[0]['streams']}: "
              f"{row['tern_tok_s'] / base:.2f}x" if base else "")
    if args.json:
        Path(args.json).write_text(json.dumps({"args": vars(args), "runs": runs,
                                               "summary": summary}, indent=1))


if __name__ == "__main__":
    main()
