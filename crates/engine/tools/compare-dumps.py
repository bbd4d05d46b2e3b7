#!/usr/bin/env python3
"""Compare tern's activation dump with llama.cpp's, layer by layer.

    TERN_DUMP_ACTIVATIONS=/tmp/tern <any tern command or test feeding the same tokens>
    llama-dump MODEL.gguf /tmp/llama TOKEN_ID...        (crates/engine/tools/llama-dump.cpp)
    .cache/venv/bin/python crates/engine/tools/compare-dumps.py /tmp/tern /tmp/llama

For each layer and tensor name present in both (tern names its dumps as llama.cpp's
graph callbacks do: attn_norm, Qcur, Kcur, Vcur, kqv_out, attn_out, ffn_inp, ffn_out,
l_out), prints max |tern - llama.cpp| relative to the largest |llama.cpp| value, on the
rows both computed (llama.cpp's last layer keeps only the rows that need logits). The
first layer where the numbers jump is where to look. Uses tern's first pass only.
"""

import glob
import os
import sys

import numpy as np

NAMES = ["attn_norm", "Qcur", "Kcur", "Vcur", "kqv_out", "attn_out", "ffn_inp", "ffn_out", "l_out"]


def tern_tensors(directory):
    out = {}
    for line in open(os.path.join(directory, "index.tsv")):
        pass_no, name, layer, rows, width, _, _ = line.rstrip("\n").split("\t")
        if pass_no != "1":
            continue
        key = name if layer == "-1" else f"{name}-{layer}"
        out[key] = None
    for path in sorted(glob.glob(os.path.join(directory, "*.f32"))):
        base = os.path.basename(path)[:-4]
        name, layer = base.split("-", 1)[1].rsplit("-", 1)
        key = name if layer == "-1" else f"{name}-{layer}"
        if key in out and out[key] is None:
            out[key] = np.fromfile(path, dtype="<f4")
    return out


def llama_tensor(directory, key):
    # The last file of that name: after reshapes/permutes, ggml keeps the name (RoPE'd Q
    # and K are the "(view)" copies).
    views = sorted(glob.glob(os.path.join(directory, f"*-{key} (view).f32")))
    plain = sorted(glob.glob(os.path.join(directory, f"*-{key}.f32")))
    files = views or plain
    return np.fromfile(files[-1], dtype="<f4") if files else None


def main():
    tern_dir, llama_dir = sys.argv[1], sys.argv[2]
    tern = tern_tensors(tern_dir)
    layer = 0
    while f"l_out-{layer}" in tern:
        cells = []
        for name in NAMES:
            a, b = tern.get(f"{name}-{layer}"), llama_tensor(llama_dir, f"{name}-{layer}")
            if a is None or b is None:
                continue
            n = min(a.size, b.size)
            a, b = a[-n:], b[-n:]
            cells.append(f"{name} {np.abs(a - b).max() / max(np.abs(b).max(), 1e-30):.1e}")
        print(f"layer {layer:2d}: " + "  ".join(cells))
        layer += 1
    a, b = tern.get("result_output"), llama_tensor(llama_dir, "result_output")
    if a is not None and b is not None:
        n = min(a.size, b.size)
        print(f"logits: max |diff| {np.abs(a[-n:] - b[-n:]).max():.4f}, mean diff {(a[-n:] - b[-n:]).mean():+.4f}")


if __name__ == "__main__":
    main()
