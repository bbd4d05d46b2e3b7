#!/usr/bin/env python3
"""Runs `tern bench` and llama.cpp's `llama-bench` side by side and prints the ratios.

Called by scripts/compare-llamacpp.sh (which finds or builds both binaries); usable on
its own with --tern and --llama-bench. Standard library only.

Per round and thread count, the two engines run one after the other on the same file
with the same settings, the order flipping every round (tern, llama, llama, tern, …), so
a change in the machine's load hits both. Each run is a separate process doing the
`ppP` and `tgN` tests with `-r` repetitions; its peak RSS comes from wait4(2) (the
kernel's maxrss of that child, the same measure for both). Then a cold start is timed
per engine: a fresh process that loads the model and processes one P-token prompt
without warm-up (`-n 0 -r 1 --no-warmup`), wall time from exec to exit — load plus
first token, as a user of either tool meets it.

Reported per test and thread count: the median over rounds of each engine's mean t/s,
their ratio (tern ÷ llama.cpp), and the median of the per-round ratios (paired, less
sensitive to load drifting between rounds). Ratios, not absolute numbers, are the
result: these machines are shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list[str], stdout_path: Path, stderr_path: Path) -> tuple[int, float, int]:
    """Runs cmd; returns (exit code, wall seconds, peak RSS in bytes of that process)."""
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    # Linux reports ru_maxrss in KiB.
    return proc.returncode, wall, usage.ru_maxrss * 1024


def check(code: int, what: str, stderr_path: Path) -> None:
    if code != 0:
        tail = stderr_path.read_text(errors="replace")[-3000:]
        sys.exit(f"compare-llamacpp: {what} failed (exit {code}); stderr ends with:\n{tail}")


def test_name(n_prompt: int, n_gen: int) -> str:
    return f"pp{n_prompt}" if n_prompt > 0 else f"tg{n_gen}"


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tern", required=True, help="the tern binary")
    ap.add_argument("--llama-bench", required=True, help="llama.cpp's llama-bench binary")
    ap.add_argument("--model", required=True, help="the GGUF file both engines run")
    ap.add_argument("-t", "--threads", default="1,2", help="thread counts, comma-separated")
    ap.add_argument("-r", "--repetitions", type=int, default=5)
    ap.add_argument("-p", "--n-prompt", type=int, default=512)
    ap.add_argument("-n", "--n-gen", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds per thread count")
    ap.add_argument("--out", default=None, help="directory for the raw outputs")
    ap.add_argument("--label", default="", help="what tern build this is (printed with the results)")
    args = ap.parse_args()

    threads = [int(t) for t in args.threads.split(",") if t]
    model = str(Path(args.model).resolve())
    out = Path(args.out or f"bench-results/{Path(model).stem}-{time.strftime('%Y%m%dT%H%M%S')}")
    out.mkdir(parents=True, exist_ok=True)
    p, n, r = args.n_prompt, args.n_gen, args.repetitions
    tests = [test_name(p, 0)] * (p > 0) + [test_name(0, n)] * (n > 0)
    if not tests:
        sys.exit("compare-llamacpp: nothing to measure (-p 0 and -n 0)")

    def tern_cmd(t: int, cold: bool) -> list[str]:
        if cold:
            return [args.tern, "bench", model, "-p", str(max(p, 1)), "-n", "0", "-r", "1", "--no-warmup", "-t", str(t), "--json"]
        return [args.tern, "bench", model, "-p", str(p), "-n", str(n), "-r", str(r), "-t", str(t), "--json"]

    def llama_cmd(t: int, cold: bool) -> list[str]:
        if cold:
            return [args.llama_bench, "-m", model, "-p", str(max(p, 1)), "-n", "0", "-r", "1", "--no-warmup", "-t", str(t), "-o", "json"]
        return [args.llama_bench, "-m", model, "-p", str(p), "-n", str(n), "-r", str(r), "-t", str(t), "-o", "json"]

    # results[engine][threads] = list of per-round records
    results: dict[str, dict[int, list[dict]]] = {"tern": {t: [] for t in threads}, "llama": {t: [] for t in threads}}
    loads: list[tuple[float, float, float]] = []
    commands = {"tern": " ".join(tern_cmd(threads[0], False)), "llama": " ".join(llama_cmd(threads[0], False))}

    for rnd in range(1, args.rounds + 1):
        load_before = os.getloadavg()
        order = ["tern", "llama"] if rnd % 2 == 1 else ["llama", "tern"]
        for t in threads:
            for engine in order:
                record: dict = {}
                for cold in (False, True):
                    cmd = tern_cmd(t, cold) if engine == "tern" else llama_cmd(t, cold)
                    stem = out / f"{engine}-t{t}-round{rnd}{'-cold' if cold else ''}"
                    print(f"[round {rnd}/{args.rounds}] {engine} -t {t}{' (cold start)' if cold else ''}", file=sys.stderr, flush=True)
                    code, wall, rss = run(cmd, stem.with_suffix(".json"), stem.with_suffix(".err"))
                    check(code, " ".join(cmd), stem.with_suffix(".err"))
                    doc = json.loads(stem.with_suffix(".json").read_text())
                    if cold:
                        record["cold_wall_s"] = wall
                        if engine == "tern":
                            record["cold_load_ms"] = doc["load_ms"]
                            record["cold_first_token_ms"] = doc["first_token_ms"]
                    else:
                        record["peak_rss"] = rss
                        record["wall_s"] = wall
                        entries = doc["tests"] if engine == "tern" else doc
                        record["ts"] = {test_name(e["n_prompt"], e["n_gen"]): e["avg_ts"] for e in entries}
                        if engine == "tern":
                            record["threads_used"] = {test_name(e["n_prompt"], e["n_gen"]): e["threads_used"] for e in entries}
                            record["kernel_path"] = doc["kernel_path"]
                            record["internal_peak_rss"] = doc["peak_rss_bytes"]
                results[engine][t].append(record)
        loads.append(load_before)

    # ---- summary ----
    summary: dict = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"),
        "cpu": cpu_model(),
        "avx512": "avx512f" in cpu_flags(),
        "model": model,
        "tern": args.label,
        "settings": {"n_prompt": p, "n_gen": n, "repetitions": r, "rounds": args.rounds, "threads": threads},
        "loadavg_before_rounds": loads,
        "commands": commands,
        "rows": [],
        "memory": [],
        "cold_start": [],
    }
    lines = []
    lines.append(f"model: {model}; {args.label}; llama-bench: {args.llama_bench}")
    lines.append(f"cpu: {summary['cpu']} (AVX-512: {'yes' if summary['avx512'] else 'no'}); "
                 f"load average before each round (1/5/15 min): "
                 + "; ".join("/".join(f"{x:.1f}" for x in l) for l in loads))
    lines.append(f"settings: -p {p} -n {n} -r {r}, {args.rounds} alternating rounds; raw outputs in {out}")
    lines.append("")
    lines.append("| test | threads | llama.cpp t/s | tern t/s | ratio | paired ratio (min–max) |")
    lines.append("|---|---:|---:|---:|---:|---|")
    for test in tests:
        for t in threads:
            llama = [rec["ts"][test] for rec in results["llama"][t]]
            tern = [rec["ts"][test] for rec in results["tern"][t]]
            used = {rec["threads_used"][test] for rec in results["tern"][t]}
            paired = [a / b for a, b in zip(tern, llama)]
            ml, mt = median(llama), median(tern)
            ratio = mt / ml if ml else None
            note = "" if used == {t} else f" (tern ran on {'/'.join(map(str, sorted(used)))} thread)"
            lines.append(
                f"| {test} | {t}{note} | {fmt(ml, '.2f')} | {fmt(mt, '.2f')} | {fmt(ratio, '.2f')}× | "
                f"{fmt(median(paired), '.2f')}× ({fmt(min(paired), '.2f')}–{fmt(max(paired), '.2f')}) |"
            )
            summary["rows"].append({"test": test, "threads": t, "tern_threads_used": sorted(used),
                                    "llama_ts": llama, "tern_ts": tern,
                                    "llama_ts_median": ml, "tern_ts_median": mt, "ratio": ratio,
                                    "paired_ratios": paired})
    lines.append("")
    lines.append("| threads | llama.cpp peak RSS | tern peak RSS | tern ÷ llama.cpp | llama.cpp start→first token | tern start→first token | tern load + first token (internal) | tern ÷ llama.cpp (start→first token) |")
    lines.append("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in threads:
        rl = median([rec["peak_rss"] for rec in results["llama"][t]])
        rt = median([rec["peak_rss"] for rec in results["tern"][t]])
        cl = median([rec["cold_wall_s"] * 1e3 for rec in results["llama"][t]])
        ct = median([rec["cold_wall_s"] * 1e3 for rec in results["tern"][t]])
        ci = median([rec["cold_load_ms"] + rec["cold_first_token_ms"] for rec in results["tern"][t]])
        lines.append(
            f"| {t} | {rl / 2**20:.1f} MiB | {rt / 2**20:.1f} MiB | {rt / rl:.2f} | {cl:.0f} ms | {ct:.0f} ms | {ci:.0f} ms | {ct / cl:.2f} |"
        )
        summary["memory"].append({"threads": t, "llama_peak_rss": rl, "tern_peak_rss": rt, "ratio": rt / rl})
        summary["cold_start"].append({"threads": t, "llama_ms": cl, "tern_ms": ct, "tern_internal_ms": ci, "ratio": ct / cl})
    text = "\n".join(lines)
    print(text)
    (out / "summary.md").write_text(text + "\n")
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
