#!/usr/bin/env python3
"""Tiny synthetic GGUF models of the architectures with no real weights here.

Why: Qwen3, Phi-3 / Phi-4-mini and Llama 3.2 files cannot be fetched on these machines,
yet tern must run them exactly as llama.cpp does. These models have random weights but
everything else real: the tokenizer metadata of llama.cpp's vocab-only files
(`ggml-vocab-{qwen2,phi-3,llama-bpe}.gguf`), a real chat template, and exactly the
tensor names, shapes, types and metadata keys llama.cpp's converter writes for each
architecture (convert_hf_to_gguf.py: `conversion/qwen.py`, `conversion/phi.py`,
`conversion/llama.py`, `conversion/base.py`), quantized by llama-quantize to Q4_K_M
(Q4_K and Q6_K layer matrices). Random weights are scaled so that the logits spread
(standard deviation >= 2 across the vocabulary): with flat logits every comparison
would pass.

Two steps:

* `--regenerate` (needs the reference llama.cpp's llama-quantize; never in CI): writes
  each model in F32, quantizes it with `llama-quantize ... Q4_K_M` (embeddings and
  output kept F16, whose 100+ MB would not belong in git), and commits only the
  quantized layer matrices to `tests/synthetic/<name>.tensors.gguf` (~100 KB each),
  plus the sha256 of every assembled model to `tests/synthetic/SHA256SUMS`.
* assemble (the default; numpy and gguf-py only, run by scripts/fetch-test-data.py):
  rebuilds each model from the vocab file, the same seeded random tensors (F16
  embeddings, F32 norms, biases and RoPE factors) and the committed quantized matrices
  into `.cache/synthetic/<name>.gguf`, and checks its sha256: the file llama.cpp's
  goldens were made from, byte for byte.

    .cache/venv/bin/python scripts/synthetic/make-models.py [--regenerate] [--out DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import math
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
COMMITTED = REPO / "tests" / "synthetic"
DATA = Path(os.environ.get("TERN_TEST_DATA", REPO / ".cache"))

try:
    import gguf
except ImportError:  # pragma: no cover - the venv has it
    sys.exit("synthetic: gguf-py is missing; run with .cache/venv/bin/python")

F32, F16 = gguf.GGMLQuantizationType.F32, gguf.GGMLQuantizationType.F16


@dataclass
class Spec:
    """One synthetic model: the converter's hyper-parameters plus what varies by arch."""

    name: str
    arch: str
    vocab: str  # llama.cpp models/ggml-vocab-*.gguf
    template: str  # llama.cpp models/templates/*.jinja
    seed: int
    context_length: int
    rope_freq_base: float
    embedding_length: int = 256  # K-quant rows need multiples of 256
    feed_forward_length: int = 256
    block_count: int = 2
    head_count: int = 4
    head_count_kv: int = 2
    head_dim: int = 64
    rms_eps: float = 1e-6
    tied: bool = True
    qkv_bias: bool = False
    qk_norm: bool = False
    fused: bool = False  # phi3: attn_qkv and ffn_up holding gate+up
    write_head_dim: bool = False  # qwen3's converter writes key/value_length
    write_vocab_size: bool = False  # llama's converter writes vocab_size
    rope_dims: int | None = None  # partial rotary (phi3); written when set
    extra: dict = field(default_factory=dict)


SPECS = [
    Spec(
        name="qwen2-synthetic",
        arch="qwen2",
        vocab="ggml-vocab-qwen2.gguf",
        template="Qwen-Qwen2.5-7B-Instruct.jinja",
        seed=2,
        context_length=32768,
        rope_freq_base=1_000_000.0,
        tied=False,
        qkv_bias=True,
    ),
    Spec(
        name="qwen3-synthetic",
        arch="qwen3",
        vocab="ggml-vocab-qwen2.gguf",  # Qwen3 ships Qwen2's tokenizer
        template="Qwen-Qwen3-0.6B.jinja",
        seed=3,
        context_length=40960,
        rope_freq_base=1_000_000.0,
        tied=True,
        qk_norm=True,
        write_head_dim=True,
    ),
    Spec(
        # Phi-4-mini's shape in small: tied embeddings, partial rotary (0.75 of the
        # head), LongRoPE over an original context of 2048 (so 4096-token contexts use
        # the long factors), a sliding window in the file that llama.cpp ignores.
        name="phi3-synthetic",
        arch="phi3",
        vocab="ggml-vocab-phi-3.gguf",
        template="microsoft-Phi-3.5-mini-instruct.jinja",
        seed=4,
        context_length=8192,
        rope_freq_base=10_000.0,
        rms_eps=1e-5,
        tied=True,
        fused=True,
        rope_dims=48,
        extra={"original_context": 2048, "sliding_window": 32},
    ),
    Spec(
        # Llama 3.2's shape in small: tied embeddings, rope base 500000, and the llama3
        # RoPE scaling that the converter turns into a `rope_freqs` tensor. A small
        # original context (256) makes the scaled pairs ones that turn fast enough to
        # matter over a few dozen positions.
        name="llama3-synthetic",
        arch="llama",
        vocab="ggml-vocab-llama-bpe.gguf",
        template="meta-llama-Llama-3.2-3B-Instruct.jinja",
        seed=5,
        context_length=131072,
        rope_freq_base=500_000.0,
        rms_eps=1e-5,
        tied=True,
        write_vocab_size=True,
        rope_dims=64,
        extra={"llama3": {"factor": 32.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original": 256}},
    ),
]


def llama3_rope_freqs(spec: Spec) -> np.ndarray:
    """conversion/llama.py `generate_extra_tensors` for rope_type llama3."""
    p = spec.extra["llama3"]
    dim = spec.head_dim
    freqs = 1.0 / (spec.rope_freq_base ** (np.arange(0, dim, 2, dtype=np.float32) / dim))
    low_wavelen = p["original"] / p["low_freq_factor"]
    high_wavelen = p["original"] / p["high_freq_factor"]
    out = []
    for f in freqs:
        wavelen = 2 * math.pi / f
        if wavelen < high_wavelen:
            out.append(1.0)
        elif wavelen > low_wavelen:
            out.append(p["factor"])
        else:
            smooth = (p["original"] / wavelen - p["low_freq_factor"]) / (p["high_freq_factor"] - p["low_freq_factor"])
            out.append(1 / ((1 - smooth) / p["factor"] + smooth))
    return np.array(out, dtype=np.float32)


def tensors(spec: Spec, n_vocab: int) -> list[tuple[str, np.ndarray, gguf.GGMLQuantizationType]]:
    """Every tensor, in the converter's order, as (name, values, type before llama-quantize).

    Shapes are numpy (rows, cols), i.e. ggml's [cols, rows]."""
    rng = np.random.default_rng(spec.seed)
    d, ff, hd = spec.embedding_length, spec.feed_forward_length, spec.head_dim
    q_dim, kv_dim = spec.head_count * hd, spec.head_count_kv * hd

    def matrix(rows: int, cols: int, gain: float = 1.0) -> np.ndarray:
        return (rng.standard_normal((rows, cols), dtype=np.float32) * np.float32(gain / math.sqrt(cols))).astype(np.float32)

    def norm(n: int) -> np.ndarray:
        return (1.0 + 0.2 * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    def bias(n: int, scale: float) -> np.ndarray:
        return (scale * rng.standard_normal(n, dtype=np.float32)).astype(np.float32)

    # Small embeddings: the layers' outputs, not the token's own embedding, dominate the
    # residual stream (with tied embeddings a large one makes every model repeat its
    # input token), and the logits still spread: std ~ sqrt(d) * 0.15 = 2.4.
    embd = (np.float32(0.15) * rng.standard_normal((n_vocab, d), dtype=np.float32)).astype(np.float32)
    out = [("token_embd.weight", embd, F16)]
    if spec.arch == "llama" and "llama3" in spec.extra:
        out.append(("rope_freqs.weight", llama3_rope_freqs(spec), F32))
    for il in range(spec.block_count):
        p = f"blk.{il}."
        out.append((p + "attn_norm.weight", norm(d), F32))
        if spec.fused:
            qkv = np.concatenate([matrix(q_dim, d, 2.0), matrix(kv_dim, d, 2.0), matrix(kv_dim, d)])
            out.append((p + "attn_qkv.weight", qkv, F32))
        else:
            out.append((p + "attn_q.weight", matrix(q_dim, d, 2.0), F32))
            if spec.qkv_bias:
                out.append((p + "attn_q.bias", bias(q_dim, 0.5), F32))
            out.append((p + "attn_k.weight", matrix(kv_dim, d, 2.0), F32))
            if spec.qkv_bias:
                out.append((p + "attn_k.bias", bias(kv_dim, 1.0), F32))
            out.append((p + "attn_v.weight", matrix(kv_dim, d), F32))
            if spec.qkv_bias:
                out.append((p + "attn_v.bias", bias(kv_dim, 0.3), F32))
        out.append((p + "attn_output.weight", matrix(d, q_dim, 1.5), F32))
        if spec.qk_norm:
            out.append((p + "attn_k_norm.weight", norm(hd), F32))
            out.append((p + "attn_q_norm.weight", norm(hd), F32))
        out.append((p + "ffn_norm.weight", norm(d), F32))
        if spec.fused:
            gate_up = np.concatenate([matrix(ff, d, 1.5), matrix(ff, d)])
            out.append((p + "ffn_up.weight", gate_up, F32))
        else:
            out.append((p + "ffn_gate.weight", matrix(ff, d, 1.5), F32))
            out.append((p + "ffn_up.weight", matrix(ff, d), F32))
        out.append((p + "ffn_down.weight", matrix(d, ff, 1.5), F32))
    if spec.fused:
        # conversion/phi.py writes them after the layers (generate_extra_tensors). The
        # short factors stay near 1; the long ones grow to 64 like Phi-3's.
        pairs = spec.rope_dims // 2
        out.append(("rope_factors_long.weight", np.geomspace(1.0, 64.0, pairs).astype(np.float32), F32))
        out.append(("rope_factors_short.weight", np.linspace(1.0, 2.5, pairs).astype(np.float32), F32))
    out.append(("output_norm.weight", norm(d), F32))
    if not spec.tied:
        # Logits = normed x · W: with rows of norm ~3 the logits spread with std ~3.
        out.append(("output.weight", matrix(n_vocab, d, 3.0), F16))
    return out


def field_value(f):
    """A reader field's value in the form GGUFWriter.add_key_value takes."""
    vtype = f.types[0]
    if vtype == gguf.GGUFValueType.ARRAY:
        sub = f.types[1]
        if sub == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data], vtype, sub
        return [f.parts[i][0].item() for i in f.data], vtype, sub
    if vtype == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8"), vtype, None
    return f.parts[f.data[0]][0].item(), vtype, None


def write_model(spec: Spec, path: Path, models_dir: Path, quantized: dict | None) -> None:
    """Writes the model; `quantized` maps tensor names to (raw bytes, type, ggml shape)
    that replace the F32 values (None: the F32 model llama-quantize starts from)."""
    vocab = gguf.GGUFReader(models_dir / spec.vocab)
    n_vocab = len(vocab.fields["tokenizer.ggml.tokens"].data)
    w = gguf.GGUFWriter(str(path), spec.arch)
    w.add_name(spec.name)
    w.add_block_count(spec.block_count)
    w.add_context_length(spec.context_length)
    w.add_embedding_length(spec.embedding_length)
    w.add_feed_forward_length(spec.feed_forward_length)
    w.add_head_count(spec.head_count)
    w.add_head_count_kv(spec.head_count_kv)
    w.add_rope_freq_base(spec.rope_freq_base)
    w.add_layer_norm_rms_eps(spec.rms_eps)
    if spec.write_head_dim:
        w.add_key_length(spec.head_dim)
        w.add_value_length(spec.head_dim)
    if spec.write_vocab_size:
        w.add_vocab_size(n_vocab)
    if spec.rope_dims is not None:
        w.add_rope_dimension_count(spec.rope_dims)
    if "original_context" in spec.extra:
        # conversion/phi.py `set_gguf_parameters` / `generate_extra_tensors`.
        orig = spec.extra["original_context"]
        w.add_rope_scaling_orig_ctx_len(orig)
        scale = spec.context_length / orig
        w.add_rope_scaling_attn_factors(math.sqrt(1 + math.log(scale) / math.log(orig)))
        w.add_sliding_window(spec.extra["sliding_window"])
    w.add_file_type(gguf.LlamaFileType.MOSTLY_Q4_K_M if quantized else gguf.LlamaFileType.ALL_F32)
    if quantized:
        w.add_quantization_version(gguf.GGML_QUANT_VERSION)
    for name, f in vocab.fields.items():
        if name.startswith("tokenizer."):
            if name == "tokenizer.chat_template":
                continue
            value, vtype, sub = field_value(f)
            w.add_key_value(name, value, vtype, sub)
    template = (models_dir / "templates" / spec.template).read_text(encoding="utf-8")
    w.add_chat_template(template)

    for name, values, ty in tensors(spec, n_vocab):
        if quantized is not None and name in quantized:
            data, qtype, shape = quantized[name]
            w.add_tensor(name, rows_of_bytes(data, shape), raw_dtype=qtype)
        elif quantized is not None and ty == F16:
            w.add_tensor(name, values.astype(np.float16))
        else:
            w.add_tensor(name, values)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def rows_of_bytes(data: np.ndarray, shape: list[int]) -> np.ndarray:
    """Quantized bytes as (rows, bytes per row): gguf-py derives the shape from it."""
    rows = int(np.prod(shape[1:])) if len(shape) > 1 else 1
    return data.reshape(rows, -1)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_quantized(path: Path) -> dict:
    reader = gguf.GGUFReader(path)
    return {
        t.name: (np.array(t.data).view(np.uint8).copy(), gguf.GGMLQuantizationType(t.tensor_type), [int(x) for x in t.shape])
        for t in reader.tensors
    }


def regenerate(spec: Spec, models_dir: Path, out_dir: Path, quantize: Path) -> str:
    """F32 model → llama-quantize Q4_K_M → committed quantized matrices → assembled model."""
    with tempfile.TemporaryDirectory() as tmp:
        f32 = Path(tmp) / "f32.gguf"
        q = Path(tmp) / "q.gguf"
        write_model(spec, f32, models_dir, None)
        subprocess.run(
            [str(quantize), "--token-embedding-type", "f16", "--output-tensor-type", "f16", str(f32), str(q), "Q4_K_M"],
            check=True,
            capture_output=True,
        )
        full = read_quantized(q)
    # Keep the quantized matrices; everything F16/F32 is regenerated from the seed.
    kept = {n: v for n, v in full.items() if v[1] not in (F16, F32)}
    committed = COMMITTED / f"{spec.name}.tensors.gguf"
    COMMITTED.mkdir(parents=True, exist_ok=True)
    w = gguf.GGUFWriter(str(committed), spec.arch)
    for name in sorted(kept):
        data, qtype, shape = kept[name]
        w.add_tensor(name, rows_of_bytes(data, shape), raw_dtype=qtype)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    path = assemble(spec, models_dir, out_dir, expected=None)
    # The assembled file must hold exactly llama-quantize's tensors.
    ours = read_quantized(path)
    for name, (data, qtype, shape) in full.items():
        o = ours[name]
        if o[1] != qtype or o[2] != shape or not np.array_equal(o[0], data):
            sys.exit(f"synthetic: {spec.name}: tensor {name} differs from llama-quantize's output")
    return sha256_file(path)


def assemble(spec: Spec, models_dir: Path, out_dir: Path, expected: str | None) -> Path:
    committed = COMMITTED / f"{spec.name}.tensors.gguf"
    if not committed.exists():
        sys.exit(f"synthetic: {committed} is missing; run make-models.py --regenerate")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.name}.gguf"
    if expected and path.exists() and sha256_file(path) == expected:
        return path
    tmp = path.with_suffix(".tmp")
    write_model(spec, tmp, models_dir, read_quantized(committed))
    got = sha256_file(tmp)
    if expected and got != expected:
        tmp.unlink()
        sys.exit(
            f"synthetic: {spec.name}: assembled sha256 {got}, expected {expected}\n"
            "help: numpy or gguf-py differ from requirements-test.txt, or the committed files changed"
        )
    tmp.replace(path)
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--regenerate", action="store_true", help="quantize again with llama-quantize (not in CI)")
    ap.add_argument("--out", default=str(DATA / "synthetic"), help="where the assembled models go")
    ap.add_argument("--models-dir", default=str(DATA / "llama.cpp" / "models"), help="llama.cpp's models/ folder")
    ap.add_argument(
        "--llama-cpp",
        default=os.environ.get("LLAMA_CPP_REFERENCE", str(Path.home() / ".cache" / "llama.cpp-reference")),
    )
    ap.add_argument("--only", nargs="*", help="model names (default: all)")
    args = ap.parse_args()
    models_dir, out_dir = Path(args.models_dir), Path(args.out)
    specs = [s for s in SPECS if not args.only or s.name in args.only]
    sums_path = COMMITTED / "SHA256SUMS"
    sums = {}
    if sums_path.exists():
        for line in sums_path.read_text().splitlines():
            digest, name = line.split()
            sums[name] = digest
    if args.regenerate:
        quantize = Path(args.llama_cpp) / "build" / "bin" / "llama-quantize"
        for spec in specs:
            sums[f"{spec.name}.gguf"] = regenerate(spec, models_dir, out_dir, quantize)
            print(f"[synthetic] {spec.name}: regenerated", file=sys.stderr)
        sums_path.write_text("".join(f"{d}  {n}\n" for n, d in sorted(sums.items())))
        return
    for spec in specs:
        expected = sums.get(f"{spec.name}.gguf")
        if expected is None:
            sys.exit(f"synthetic: no sha256 for {spec.name} in {sums_path}; run --regenerate")
        path = assemble(spec, models_dir, out_dir, expected)
        print(f"[synthetic] {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
