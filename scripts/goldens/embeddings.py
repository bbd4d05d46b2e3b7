#!/usr/bin/env python3
"""Embedding goldens: what llama-server's `/v1/embeddings` answers with mean pooling.

Why: issue 7 checks tern's `/v1/embeddings` (the L2-normalised mean of the final hidden
states) against llama-server started with `--embeddings --pooling mean` on the same
model. CI has no llama.cpp, so this script asks the reference build once and commits the
vectors to tests/goldens/embeddings/<model>.json; crates/runtime/tests/model_embeddings.rs
compares against them.

Run with the project's venv (the reference build in ~/.cache/llama.cpp-reference):
    .cache/venv/bin/python scripts/goldens/embeddings.py
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("LLAMA_CPP_BIN", Path.home() / ".cache/llama.cpp-reference/build/bin"))
MODELS = ["smollm2-135m-instruct-q4_1", "gemma-3-270m-q4_k_m"]
INPUTS = [
    "The capital of France is Paris.",
    "def add(a, b):\n    return a + b",
    "Wie spät ist es? 今何時ですか",
    "A short one",
    "Tern: a local-first LLM runtime for edge hardware, serving small models over "
    "OpenAI- and Ollama-compatible APIs from one binary on a Raspberry Pi.",
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post(port: int, path: str, body: dict) -> dict:
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}{path}",
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return json.load(response)


def embed(model: str) -> dict:
    path = ROOT / ".cache/models" / f"{model}.gguf"
    port = free_port()
    server = subprocess.Popen(
        [str(BIN / "llama-server"), "-m", str(path), "--embeddings", "--pooling", "mean",
         "-t", "1", "-c", "2048", "--port", str(port), "--host", "127.0.0.1"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(600):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=1) as r:
                    if r.status == 200:
                        break
            except OSError:
                time.sleep(0.1)
        else:
            sys.exit(f"llama-server did not come up for {model}")
        vectors = []
        for text in INPUTS:
            # One input per request: every vector is then computed alone, as tern does.
            answer = post(port, "/v1/embeddings", {"input": text, "model": model})
            tokens = post(port, "/tokenize", {"content": text, "add_special": True})["tokens"]
            vectors.append({
                "input": text,
                "tokens": tokens,
                "embedding": answer["data"][0]["embedding"],
            })
        return {
            "model": model,
            "reference": "llama-server --embeddings --pooling mean -t 1 (embd-normalize 2: L2)",
            "items": vectors,
        }
    finally:
        server.terminate()
        server.wait(timeout=30)


def main() -> None:
    out_dir = ROOT / "tests/goldens/embeddings"
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in MODELS:
        golden = embed(model)
        (out_dir / f"{model}.json").write_text(json.dumps(golden, indent=1) + "\n")
        print(f"{model}: {len(golden['items'])} vectors of {len(golden['items'][0]['embedding'])}")


if __name__ == "__main__":
    main()
