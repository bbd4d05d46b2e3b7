#!/usr/bin/env bash
# compare-llamacpp.sh MODEL [-t 1,2] [-r 5] [-p 512] [-n 128] [--rounds 3] [--out DIR]
#
# Side-by-side speed and memory of tern and llama.cpp on the same GGUF file, same thread
# counts, same test sizes: llama-bench and `tern bench` run alternately (see
# scripts/compare-llamacpp.py for what is measured and how), and the ratios are printed.
# Results for docs/PERFORMANCE.md come from here.
#
# llama-bench: $LLAMA_BENCH if set, else $LLAMA_CPP_DIR/build/bin/llama-bench (default
# ~/.cache/llama.cpp-reference), else llama.cpp is downloaded and built there (the same
# idempotent steps as the team's build-llamacpp.sh: the llama-cpp-python 0.3.36 source
# package, verified, built natively with -DGGML_NATIVE=ON). tern is built in release.
#
# A benchmark, never a test: it takes minutes, wants a quiet machine, and refuses to run
# under CI (CI is set).
set -euo pipefail

usage() {
    sed -n '2,2p' "$0" | sed 's/^# //'
    exit 2
}

if [[ -n ${CI:-} ]]; then
    echo "compare-llamacpp: not in CI (a benchmark needs a quiet machine and minutes)" >&2
    exit 2
fi

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
MODEL=""
PASS=()
OUT=""
while (($#)); do
    case $1 in
        -t | -r | -p | -n | --rounds)
            (($# >= 2)) || usage
            PASS+=("$1" "$2")
            shift 2
            ;;
        --out)
            (($# >= 2)) || usage
            OUT=$2
            shift 2
            ;;
        -h | --help) usage ;;
        -*)
            echo "compare-llamacpp: unknown option $1" >&2
            usage
            ;;
        *)
            [[ -z $MODEL ]] || usage
            MODEL=$1
            shift
            ;;
    esac
done
[[ -n $MODEL ]] || usage
[[ -f $MODEL ]] || {
    echo "compare-llamacpp: no such file: $MODEL" >&2
    exit 1
}

# --- llama.cpp ------------------------------------------------------------------------
LLAMA_CPP_DIR=${LLAMA_CPP_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/llama.cpp-reference}

# The reference build, step by step; each step is skipped when its result is there, and
# a lock keeps two invocations from building at once.
build_llamacpp() {
    local cache=$1 ver=0.3.36
    local sha=832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e
    local sdist="$cache/llama_cpp_python-$ver.tar.gz" src="$cache/src" build="$cache/build"
    mkdir -p "$cache"
    exec 9>"$cache/.build.lock"
    flock 9
    if ! command -v cmake >/dev/null || ! command -v ninja >/dev/null; then
        python3 -m pip install --quiet cmake ninja
    fi
    if [[ ! -f $sdist ]] || ! echo "$sha  $sdist" | sha256sum -c --quiet - 2>/dev/null; then
        rm -f "$sdist"
        python3 -m pip download --no-deps --no-binary llama-cpp-python -d "$cache" "llama-cpp-python==$ver"
        echo "$sha  $sdist" | sha256sum -c -
    fi
    if [[ ! -f $src/.extracted-$ver ]]; then
        rm -rf "$src"
        mkdir -p "$src"
        tar -xzf "$sdist" -C "$src" --strip-components=3 "llama_cpp_python-$ver/vendor/llama.cpp"
        touch "$src/.extracted-$ver"
    fi
    if [[ ! -f $build/build.ninja ]]; then
        cmake -S "$src" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
            -DGGML_NATIVE=ON -DLLAMA_CURL=OFF -DBUILD_SHARED_LIBS=ON \
            -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
            -DLLAMA_BUILD_SERVER=OFF -DLLAMA_OPENSSL=OFF -DLLAMA_BUILD_UI=OFF \
            -DLLAMA_USE_PREBUILT_UI=OFF -DLLAMA_BUILD_APP=OFF
    fi
    nice -n 19 cmake --build "$build" --config Release -j "${JOBS:-$(nproc)}" --target llama-bench
    flock -u 9
}

if [[ -n ${LLAMA_BENCH:-} ]]; then
    [[ -x $LLAMA_BENCH ]] || {
        echo "compare-llamacpp: LLAMA_BENCH=$LLAMA_BENCH is not executable" >&2
        exit 1
    }
elif [[ -x $LLAMA_CPP_DIR/build/bin/llama-bench ]]; then
    LLAMA_BENCH=$LLAMA_CPP_DIR/build/bin/llama-bench
else
    echo "compare-llamacpp: building llama-bench in $LLAMA_CPP_DIR" >&2
    build_llamacpp "$LLAMA_CPP_DIR"
    LLAMA_BENCH=$LLAMA_CPP_DIR/build/bin/llama-bench
fi

# --- tern -----------------------------------------------------------------------------
echo "compare-llamacpp: building tern (release)" >&2
(cd "$ROOT" && cargo build --release --quiet -p tern-cli)
TERN=${CARGO_TARGET_DIR:-$ROOT/target}/release/tern
[[ $TERN == /* ]] || TERN=$ROOT/$TERN

OUT=${OUT:-${TMPDIR:-/tmp}/tern-compare/$(basename "$MODEL" .gguf)-$(date +%Y%m%dT%H%M%S)}
COMMIT=$(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
git -C "$ROOT" diff --quiet HEAD -- crates 2>/dev/null || COMMIT="$COMMIT (+ uncommitted changes under crates/)"
echo "compare-llamacpp: tern at $COMMIT, llama-bench $LLAMA_BENCH" >&2
exec python3 "$ROOT/scripts/compare-llamacpp.py" --tern "$TERN" --llama-bench "$LLAMA_BENCH" \
    --model "$MODEL" --out "$OUT" --label "tern $COMMIT" "${PASS[@]}"
