"""The native programs of the comparison, compiled at bench time with the system's C++ compiler (``$CXX``,
else ``c++``, ``g++`` or ``clang++`` on PATH) into a temporary folder:

- ``article.cpp``: the article's C++ program in its style (one object per node), at ``-O2``;
- ``article_torch.cpp``: the article's PyTorch setting (MSE, trained per-neuron biases, SGD momentum 0.9)
  written the same way, at ``-O2``;
- ``reference.cpp``: plain loops over an n-n-n network at batch 1, at ``-O3 -march=native``: the bar for
  rustbp's one-sample step at each width.

Every program takes ``STEPS EVERY`` first, prints ``loss STEP VALUE`` for every EVERY-th step and the last,
then ``ns_per_step VALUE``, its loop timed inside with a steady clock, printing excluded.
"""

from __future__ import annotations

import math
import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["ARTICLE_LOSSES", "FLAGS", "NativeError", "Programs", "Run", "find_compiler", "numbers"]

SOURCES = Path(__file__).parent / "native"
#: Optimisation flags per program: the article's own build, and the best a compiler does for the reference.
FLAGS = {"article": ["-O2"], "article_torch": ["-O2"], "reference": ["-O3", "-march=native"]}
#: The article's printed losses (E_total in the forward pass of each step): what its program must print.
ARTICLE_LOSSES = {
    0: 0.2983711087600027,
    1000: 0.001114349453733746,
    2000: 0.00044486770391326887,
    3000: 0.00025152360241099405,
    4000: 0.00016427727363225536,
    5000: 0.00011622569943793622,
    6000: 8.653979465934606e-05,
    7000: 6.676957838285888e-05,
    8000: 5.288555201099971e-05,
    9000: 4.2742284255545085e-05,
    9999: 3.510854812251261e-05,
}


class NativeError(RuntimeError):
    """A native program failed to compile or to run; the message carries the compiler's or program's words."""


@dataclass(frozen=True)
class Run:
    """What one run of a program printed: the kept losses by step, and the time per step of its loop."""

    losses: dict[int, float]
    ns_per_step: float


def find_compiler() -> list[str] | None:
    """The C++ compiler command: ``$CXX`` when set, else the first of c++, g++, clang++ on PATH, else None."""
    cxx = os.environ.get("CXX", "").strip()
    if cxx:
        return shlex.split(cxx)
    for name in ("c++", "g++", "clang++"):
        path = shutil.which(name)
        if path:
            return [path]
    return None


class Programs:
    """The native programs, each compiled on first use into a temporary folder that ``close`` removes."""

    def __init__(self, compiler: list[str]) -> None:
        self.compiler = compiler
        self._dir = tempfile.TemporaryDirectory(prefix="rustbp-bench-")
        self._built: dict[str, Path] = {}

    def __repr__(self) -> str:
        return f"Programs({shlex.join(self.compiler)}, built={sorted(self._built)})"

    def __enter__(self) -> Programs:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._dir.cleanup()

    def version(self) -> str:
        """The first line of the compiler's ``--version``; NativeError when it does not run."""
        cmd = [*self.compiler, "--version"]
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=60)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeError(f"{shlex.join(cmd)}: {e}") from e
        text = (out.stdout or out.stderr).strip()
        if out.returncode != 0 or not text:
            raise NativeError(f"{shlex.join(cmd)} failed ({out.returncode}): {out.stderr.strip()}")
        return text.splitlines()[0]

    def command(self, name: str, exe: str | None = None, source: str | None = None) -> list[str]:
        """The compile command of ``name`` (with short paths unless given: for the record)."""
        return [*self.compiler, "-std=c++17", *FLAGS[name], "-o", exe or name, source or f"{name}.cpp"]

    def build(self, name: str) -> Path:
        """Compiles ``native/<name>.cpp`` (once) and returns the executable."""
        if name not in FLAGS:
            raise ValueError(f"name: expected one of {sorted(FLAGS)}, got {name!r}")
        if name not in self._built:
            exe = Path(self._dir.name) / (name + (".exe" if os.name == "nt" else ""))
            cmd = self.command(name, str(exe), str(SOURCES / f"{name}.cpp"))
            try:
                out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=300)
            except (OSError, subprocess.SubprocessError) as e:
                raise NativeError(f"{shlex.join(cmd)}: {e}") from e
            if out.returncode != 0:
                raise NativeError(f"{shlex.join(cmd)} failed ({out.returncode}): {out.stderr.strip()[-2000:]}")
            self._built[name] = exe
        return self._built[name]

    def run(self, name: str, steps: int, every: int, args: tuple[object, ...] = (), stdin: str = "") -> Run:
        """Runs ``name`` for ``steps`` steps, keeping every ``every``-th loss (and the last)."""
        if steps < 1 or every < 1:
            raise ValueError(f"steps, every: expected at least 1, got {steps}, {every}")
        cmd = [str(self.build(name)), str(steps), str(every), *map(str, args)]
        try:
            out = subprocess.run(cmd, input=stdin, capture_output=True, text=True, check=False, timeout=600)
        except (OSError, subprocess.SubprocessError) as e:
            raise NativeError(f"{name}: {e}") from e
        if out.returncode != 0:
            raise NativeError(f"{name} {shlex.join(cmd[1:])} failed ({out.returncode}): {out.stderr.strip()}")
        losses: dict[int, float] = {}
        ns = float("nan")
        for line in out.stdout.splitlines():
            key, *vals = line.split()
            if key == "loss":
                losses[int(vals[0])] = float(vals[1])
            elif key == "ns_per_step":
                ns = float(vals[0])
        if not losses or math.isnan(ns):
            raise NativeError(f"{name}: no losses or no time in its output: {out.stdout[:500]!r}")
        return Run(losses, ns)


def numbers(*arrays: object) -> str:
    """Arrays as the decimal text the programs read on stdin, every float64 exactly (17 digits)."""
    return " ".join(f"{v:.17g}" for a in arrays for v in np.asarray(a, dtype=np.float64).ravel().tolist())
