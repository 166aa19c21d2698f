"""How fast rustbp answers Ctrl-C: SIGINT is sent to a child process that is training, at a random moment,
and the time from the signal to the KeyboardInterrupt reaching Python is measured, many times.

    python scripts/ctrl_c_latency.py                  # 20 runs of each case
    python scripts/ctrl_c_latency.py --runs 100 --cases train-big
    python scripts/ctrl_c_latency.py --cases train-tiny-gpu,fit-big-gpu   # on the first GPU adapter

Both processes read CLOCK_MONOTONIC (time.monotonic), which is system-wide on Linux and macOS, so the
child's time of the exception minus the parent's time of the signal is the latency. The tests assert
what Ctrl-C does (tests/test_robustness.py); this script measures how fast, which depends on the machine.
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import time

CHILD = """
import sys, time
import numpy as np
import rustbp

method, size, device = sys.argv[1:]
rng = np.random.default_rng(0)
if size == "tiny":  # the article's 2-2-2 net: a step costs well under a microsecond
    X, T = np.array([[0.05, 0.10]] * 2), np.array([[0.01, 0.99]] * 2)
    net = rustbp.Network.article(device)
else:  # 256-512-64 at batch 64: a few milliseconds of gemm a step
    X, T = rng.normal(size=(128, 256)), rng.uniform(size=(128, 64))
    net = rustbp.Network(256, 512, 64, seed=1, optimizer=rustbp.SGD(lr=0.01), device=device)
half = len(X) // 2
print("ready", flush=True)
try:
    if method == "train":
        net.train(X[:half], T[:half], 10**8)
    else:
        net.fit(X, T, epochs=10**7, batch_size=half, shuffle=False)
except KeyboardInterrupt as e:
    print(time.monotonic(), getattr(e, "completed_steps", -1), flush=True)
"""

CASES = ["train-tiny", "train-big", "fit-tiny", "fit-big"]
GPU_CASES = [f"{case}-gpu" for case in CASES]


def measure(case: str) -> tuple[float, int]:
    """One run: (latency in seconds, completed_steps) of one SIGINT at a random moment of training."""
    method, size, *device = case.split("-")
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, method, size, *(device or ["cpu"])],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    if child.stdout.readline().strip() != "ready":
        raise RuntimeError(f"{case}: the child did not start: {child.communicate()[1]}")
    time.sleep(random.uniform(0.05, 0.3))  # into training, at no particular step
    sent = time.monotonic()
    os.kill(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=60)
    if child.returncode != 0 or not out.strip():
        raise RuntimeError(f"{case}: the child failed ({child.returncode}): {err}")
    caught, steps = out.split()
    return float(caught) - sent, int(steps)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="signals sent per case")
    parser.add_argument(
        "--cases", default=",".join(CASES), help=f"comma-separated, from {', '.join(CASES + GPU_CASES)}"
    )
    args = parser.parse_args(argv)
    header = f"{'case':<15} {'runs':>4} {'min':>8} {'median':>8} {'p90':>8} {'max':>8}"
    print(f"{header}   (ms, SIGINT to KeyboardInterrupt)")
    failed = 0
    for case in args.cases.split(","):
        latencies = []
        for _ in range(args.runs):
            latency, steps = measure(case)
            latencies.append(latency * 1e3)
            failed += steps < 1  # KeyboardInterrupt without completed_steps, or before any step
        row = [min(latencies), statistics.median(latencies), percentile(latencies, 0.9), max(latencies)]
        print(f"{case:<15} {len(latencies):>4} " + " ".join(f"{v:8.2f}" for v in row))
    if failed:
        print(f"{failed} runs stopped without a completed step")
    return int(failed > 0)


if __name__ == "__main__":
    sys.exit(main())
