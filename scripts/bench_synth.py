"""Benchmark: synthesizing the whole app vs merely importing both provider packages.

Runs, side by side and alternating, N times each (after one warm-up of each):
  ordinary  python -c "import cdktf_cdktf_provider_google, cdktf_cdktf_provider_kubernetes"
  synth     python main.py   (every stack of every shipped environment, lazy providers)
and prints the median wall time and the peak resident memory of the whole process
tree (Python plus the jsii node processes), sampled every 10 ms.

Targets: synth time <= 0.25 x ordinary import time, synth peak <= 1 GiB.
Usage: python scripts/bench_synth.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TIME_RATIO_TARGET = 0.25
MEMORY_TARGET_MIB = 1024


def tree_rss_kib(pid: int) -> int:
    total, pending, seen = 0, [pid], set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        try:
            with open(f"/proc/{current}/status") as status:
                total += next((int(line.split()[1]) for line in status if line.startswith("VmRSS:")), 0)
            for task in os.listdir(f"/proc/{current}/task"):
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
        except (FileNotFoundError, ProcessLookupError):
            continue
    return total


def measure(command: list[str], env: dict[str, str]) -> tuple[float, float]:
    """(seconds, peak MiB of the process tree)."""
    start = time.perf_counter()
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    peak = 0
    while process.poll() is None:
        peak = max(peak, tree_rss_kib(process.pid))
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        _, stderr = process.communicate()
        sys.exit(f"{' '.join(command)} failed:\n{stderr.decode()}")
    return elapsed, peak / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as outdir:
        env = {**os.environ, "CDKTF_OUTDIR": outdir}
        commands = {
            "ordinary import of both providers": [
                sys.executable,
                "-c",
                "import cdktf_cdktf_provider_google, cdktf_cdktf_provider_kubernetes",
            ],
            "synth of every stack (python main.py)": [sys.executable, "main.py"],
        }
        results: dict[str, list[tuple[float, float]]] = {name: [] for name in commands}
        for command in commands.values():
            measure(command, env)  # warm-up: page cache, and the one-off lazy tarball build
        for _ in range(args.runs):
            for name, command in commands.items():
                results[name].append(measure(command, env))

    medians = {name: (statistics.median(t for t, _ in runs), max(m for _, m in runs)) for name, runs in results.items()}
    (ordinary_s, _), (synth_s, synth_mib) = medians.values()
    print(f"{'':40} {'median s':>9} {'peak MiB':>9}   ({args.runs} runs each, {os.cpu_count()} cores)")
    for name, (seconds, mib) in medians.items():
        print(f"{name:40} {seconds:9.2f} {mib:9.0f}")
    ratio = synth_s / ordinary_s
    print(
        f"\nsynth / ordinary import time: {ratio:.2f} (target <= {TIME_RATIO_TARGET})"
        f" {'OK' if ratio <= TIME_RATIO_TARGET else 'MISSED'}"
    )
    print(
        f"synth peak memory: {synth_mib:.0f} MiB (target <= {MEMORY_TARGET_MIB})"
        f" {'OK' if synth_mib <= MEMORY_TARGET_MIB else 'MISSED'}"
    )


if __name__ == "__main__":
    main()
