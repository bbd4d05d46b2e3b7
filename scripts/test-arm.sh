#!/usr/bin/env bash
# The aarch64 kernel tests: cross-compile tern-kernels' tests for aarch64-unknown-linux-gnu
# and run them under qemu-user twice — as a Cortex-A76 (the Raspberry Pi 5's core: NEON
# with the dot product, path `neon-dotprod`) and as a Cortex-A53 (no dot product: the
# fallback path `neon`). Never qemu's default `max` CPU, which has every feature and hides
# dispatch bugs.
#
# Setup is idempotent and only does what is missing: the Debian packages
# gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and qemu-user (apt-get, as root or with
# sudo), and `rustup target add aarch64-unknown-linux-gnu`. When that setup is impossible
# on this machine (no apt/rustup, no root, no network) the script says so and exits 0:
# the ARM tests are skipped, not failed. Everything after the setup — the build and both
# test runs — fails the script when it fails.
#
# Each run sets TERN_TEST_EXPECT_PATH to the path that CPU must get; tests/neon.rs then
# asserts that `kernel_path()` chose it and that every path up to it was tested. Three
# short extra runs of that one test check that TERN_KERNELS forces a path on aarch64 too
# (`neon` and `scalar` on the A76; `neon-dotprod` on the A53 falls back to `neon`).
#
# Two tests of the suite cannot work under qemu-user and are skipped here (they run on
# x86_64 and on real Arm boards): `tern_kernels_env_forces_the_path` (tests/simd_dot.rs)
# re-executes its own test binary, which qemu-user cannot do without a binfmt_misc
# registration (the path forcing is covered by the extra runs above instead), and
# `drop_joins_the_workers` (tests/pool_drop.rs) counts the threads in /proc/self/task,
# where qemu-user's emulated threads linger for a moment after they were joined.
#
# Environment: CARGO_TARGET_DIR is honoured; ARM_TEST_TIMEOUT (seconds, default 1800)
# bounds each test binary's run under qemu, so a hang fails instead of blocking CI.
# Usage: scripts/test-arm.sh [test binary arguments, e.g. a test name filter]
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
TARGET=aarch64-unknown-linux-gnu
SYSROOT=/usr/aarch64-linux-gnu
TIMEOUT=${ARM_TEST_TIMEOUT:-1800}

step() { printf '\n==> %s\n' "$*"; }
skip() {
    printf '\n==> SKIPPED: aarch64 kernel tests: %s\n' "$*" >&2
    exit 0
}

# --- setup (idempotent) ----------------------------------------------------------------
missing=()
for package in gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user; do
    dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" ||
        missing+=("$package")
done
if ((${#missing[@]})); then
    command -v apt-get >/dev/null || skip "no apt-get to install ${missing[*]}"
    sudo_cmd=()
    if [[ $(id -u) -ne 0 ]]; then
        command -v sudo >/dev/null && sudo -n true 2>/dev/null ||
            skip "installing ${missing[*]} needs root (or passwordless sudo)"
        sudo_cmd=(sudo -n)
    fi
    step "apt-get install ${missing[*]}"
    "${sudo_cmd[@]}" apt-get update -qq ||
        skip "apt-get update failed: cannot install ${missing[*]}"
    DEBIAN_FRONTEND=noninteractive "${sudo_cmd[@]}" apt-get install -y -qq \
        --no-install-recommends "${missing[@]}" ||
        skip "apt-get install ${missing[*]} failed"
fi
has_target() {
    if command -v rustup >/dev/null; then
        rustup target list --installed | grep -qx "$TARGET"
    else
        compgen -G "$(rustc --print target-libdir --target "$TARGET" 2>/dev/null)/libstd-*.rlib" >/dev/null
    fi
}
if ! has_target; then
    command -v rustup >/dev/null || skip "no rustup to add the $TARGET standard library"
    step "rustup target add $TARGET"
    timeout 600 rustup target add "$TARGET" || skip "rustup target add $TARGET failed"
fi
for tool in aarch64-linux-gnu-gcc qemu-aarch64; do
    command -v "$tool" >/dev/null || skip "$tool not found after installing its package"
done

# The linker and default runner are in .cargo/config.toml; set them here too so the
# script does not depend on where cargo looks for its configuration.
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=aarch64-linux-gnu-gcc

# --- build once, run on two CPUs ---------------------------------------------------------
step "cargo test -p tern-kernels --target $TARGET --no-run"
cargo test -p tern-kernels --target "$TARGET" --no-run

QEMU_SKIP=(--skip tern_kernels_env_forces_the_path --skip drop_joins_the_workers)

# run_on CPU EXPECTED [TERN_KERNELS]: sets the runner and the expectations for one CPU.
run_on() {
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_RUNNER="timeout $TIMEOUT qemu-aarch64 -cpu $1 -L $SYSROOT"
    export TERN_TEST_EXPECT_PATH=$2
    if [[ -n ${3:-} ]]; then export TERN_KERNELS=$3; else unset TERN_KERNELS; fi
}

# The path check alone, with its output (the CPU's features and the chosen path) shown.
path_check() {
    local out
    if ! out=$(cargo test -p tern-kernels --target "$TARGET" --test neon \
        kernel_path_follows_the_cpu -- --nocapture 2>&1); then
        printf '%s\n' "$out" >&2
        echo "aarch64 path check FAILED: -cpu $1 with TERN_KERNELS=${TERN_KERNELS:-} must give $2" >&2
        exit 1
    fi
    printf '  %s\n' "$(grep -E '^cpu features' <<<"$out")"
}

summary=()
for cpu_path in cortex-a76:neon-dotprod cortex-a53:neon; do
    cpu=${cpu_path%%:*}
    expected=${cpu_path##*:}
    run_on "$cpu" "$expected"
    step "qemu-aarch64 -cpu $cpu: every tern-kernels test (must dispatch to $expected)"
    path_check "$cpu" "$expected"
    log=$(mktemp)
    if ! cargo test -p tern-kernels --target "$TARGET" --no-fail-fast -- "${QEMU_SKIP[@]}" "$@" \
        2>&1 | tee "$log"; then
        echo "aarch64 kernel tests FAILED under qemu -cpu $cpu" >&2
        rm -f "$log"
        exit 1
    fi
    count() { grep -cE "$1" "$log" || true; }
    passed=$(grep -E '^test result: ok' "$log" | sed -E 's/.* ([0-9]+) passed.*/\1/' |
        awk '{s += $1} END {print s + 0}')
    on_neon=$(count '^test [a-z0-9_]+::neon \.\.\. ok')
    on_dotprod=$(count '^test [a-z0-9_]+::neon_dotprod \.\.\. ok')
    rm -f "$log"
    if [[ $expected == neon-dotprod ]]; then
        summary+=("$cpu: $passed tests passed, among them the NEON kernels against the scalar ones: $on_neon on neon, $on_dotprod on neon-dotprod; dispatch chose $expected")
    else
        summary+=("$cpu: $passed tests passed, among them the NEON kernels against the scalar ones: $on_neon on neon (the $on_dotprod neon-dotprod tests returned early: no dotprod, as asserted); dispatch chose $expected")
    fi
done

step "TERN_KERNELS forces a path on aarch64"
for forced in cortex-a76:neon:neon cortex-a76:scalar:scalar cortex-a53:neon-dotprod:neon; do
    IFS=: read -r cpu value expected <<<"$forced"
    run_on "$cpu" "$expected" "$value"
    path_check "$cpu" "$expected"
done
unset TERN_KERNELS

step "aarch64 summary"
printf '  %s\n' "${summary[@]}"
