#!/usr/bin/env bash
# The test command: `scripts/test.sh` runs every setup step and then the whole test suite.
#
# Every setup step is idempotent and cached, so a second run only re-runs the tests:
#   1. formatting and lints (the fast failures first);
#   2. system packages the tests need, installed with apt-get only when missing;
#   3. the Python venv at .cache/venv with requirements-test.txt (reinstalled only when
#      that file changes);
#   4. the real models and reference data (scripts/fetch-test-data.py; cached in .cache/);
#   5. the Rust tests: cargo nextest (tests in binaries named model_* one at a time, see
#      .config/nextest.toml), falling back to cargo test, then the doc tests.
# .ci/run calls exactly this script. See docs/TESTING.md.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
step() { printf '\n==> %s\n' "$*"; }

# --- 1. fast checks -------------------------------------------------------------------
step "cargo fmt --check"
cargo fmt --all --check
step "cargo clippy (warnings are errors)"
cargo clippy --workspace --all-targets --quiet -- -D warnings

# --- 2. system packages ---------------------------------------------------------------
# apt_install PACKAGE…: installs the packages that are missing (as root, or with sudo).
apt_install() {
    local missing=() package
    for package in "$@"; do
        dpkg -s "$package" >/dev/null 2>&1 || missing+=("$package")
    done
    ((${#missing[@]})) || return 0
    step "apt-get install ${missing[*]}"
    local sudo_cmd=()
    [[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
    "${sudo_cmd[@]}" apt-get update -qq
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq "${missing[@]}"
}
# Debian packages the tests need go here as they come (e.g. mosquitto for the fleet
# tests, chromium for the dashboard).
APT_PACKAGES=()
if ((${#APT_PACKAGES[@]})); then
    apt_install "${APT_PACKAGES[@]}"
fi

# --- 3. Python venv -------------------------------------------------------------------
VENV=.cache/venv
stamp="$VENV/.requirements.sha256"
want=$(sha256sum requirements-test.txt | cut -d' ' -f1)
if [[ ! -x $VENV/bin/python || ! -f $stamp || $(cat "$stamp") != "$want" ]]; then
    step "python venv ($VENV) with requirements-test.txt"
    if [[ ! -x $VENV/bin/python ]] && ! python3 -m venv "$VENV" >/dev/null 2>&1; then
        # Debian ships venv's pip bootstrap separately.
        rm -rf "$VENV"
        apt_install python3-venv
        python3 -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -r requirements-test.txt
    echo "$want" >"$stamp"
else
    step "python venv: up to date"
fi
export PATH="$PWD/$VENV/bin:$PATH"

# --- 4. test data ---------------------------------------------------------------------
step "test data (scripts/fetch-test-data.py)"
"$VENV/bin/python" scripts/fetch-test-data.py
step "goldens are current (scripts/goldens/check.py)"
"$VENV/bin/python" scripts/goldens/check.py

# --- hooks for later steps --------------------------------------------------------------
# Cross-architecture tests: aarch64 NEON kernels under qemu (Cortex-A76 and Cortex-A53).
step "aarch64 kernel tests (scripts/test-arm.sh)"; bash scripts/test-arm.sh
# Server client tests (OpenAI / Ollama clients against `tern serve`) go here.
# Services a test needs (e.g. a loopback MQTT broker) are started here, with a trap to
# stop them on exit.

# --- 5. tests -------------------------------------------------------------------------
# Tests run single-threaded inside each model test, as the machines have two cores.
export RAYON_NUM_THREADS=1 TERN_THREADS=1
if cargo nextest --version >/dev/null 2>&1; then
    step "cargo nextest run --workspace"
    cargo nextest run --workspace --no-fail-fast
else
    step "cargo test --workspace (cargo-nextest not installed)"
    cargo test --workspace --no-fail-fast -- --test-threads=1
fi
step "cargo test --doc --workspace"
cargo test --doc --workspace
