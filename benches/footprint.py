"""Footprint of rustbp beside PyTorch: wheel size (``make wheel`` first), installed size, and the time of
``import`` as ``python -X importtime`` reports it (the fastest of several fresh interpreters, since a
busy machine only ever adds time). Usage: ``python benches/footprint.py [runs]``."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def import_ms(module: str, runs: int) -> float:
    """Cumulative import time of ``module`` in ms, the minimum over ``runs`` fresh interpreters."""
    best = float("inf")
    for _ in range(runs):
        err = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"import {module}"],
            capture_output=True, text=True, check=True, cwd="/",
        ).stderr  # fmt: skip
        for line in err.splitlines():
            fields = line.split("|")
            if len(fields) == 3 and fields[2].strip() == module and fields[2].startswith(" " + module):
                best = min(best, int(fields[1]) / 1000)
    return best


def installed_mb(package: str) -> float | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations)))
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 2**20


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 10
    wheels = sorted((ROOT / "dist").glob("rustbp-*.whl"))
    if wheels:
        print(f"rustbp wheel: {wheels[-1].stat().st_size / 2**20:.2f} MiB ({wheels[-1].name})")
    print(f"rustbp installed: {installed_mb('rustbp'):.1f} MiB")
    numpy_ms, rustbp_ms = import_ms("numpy", runs), import_ms("rustbp", runs)
    print(f"import numpy: {numpy_ms:.0f} ms; import rustbp: {rustbp_ms:.0f} ms, numpy included")
    if importlib.util.find_spec("torch") is not None:
        nvidia = installed_mb("nvidia") or 0.0
        print(f"torch installed: {installed_mb('torch'):.0f} MiB, plus {nvidia:.0f} MiB of nvidia libraries")
        print(f"import torch: {import_ms('torch', max(3, runs // 3)):.0f} ms")


if __name__ == "__main__":
    main()
