"""``rustbp bench``: the speed comparison's command line and run: the workloads (``workloads.py``), timed
and checked (``measure.py``), reported as tables (``report.py``), a JSON file and a plot (``plot.py``).

Method: every implementation starts from the same float64 weights; each is warmed up first; then the
implementations run in turn, in a new seeded random order every repetition, and each time is the median
of the repetitions. After timing, every implementation's final loss is compared with an untimed float64 NumPy
run of the same steps, to a tolerance fitting its dtype; a mismatch is printed in capitals, recorded in
the JSON and makes the command exit with status 1.

The native C++ programs (``native.py``) run after the in-process implementations, each repetition one
process that times its own loop with a steady clock; before their times count, their losses are checked
(the article's printed losses, rustbp's first steps, the float64 reference). Every step's arithmetic is
also given as GFLOP/s (2 flops per multiply-add of forward, backward and update) and as a fraction of the
machine's peak, NumPy's 2048x2048 matrix product in the same dtype measured in the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Callable

from . import native
from .impls import Impl, available, gpu_adapter
from .measure import ATOL, RTOL, WORKLOADS, Plan, Point
from .report import report
from .workloads import (
    annotate,
    machine,
    measure_peak,
    run_article,
    run_digits,
    run_gpu,
    run_large,
    run_native,
    run_population,
    run_sweep,
)

__all__ = ["Plan", "add_arguments", "main", "run_plan"]


def run_plan(plan: Plan, out_dir: Path, stem: str = "bench", say: Callable[[str], None] = print) -> int:
    """Runs ``plan``; writes ``<stem>.json`` and (with matplotlib) ``<stem>.png`` into ``out_dir``.
    Returns 1 when an implementation's final loss disagrees with the reference, else 0."""
    notes: list[str] = []
    gpu = gpu_adapter(notes) if plan.gpu else None
    if not plan.gpu:
        notes.append("rustbp GPU: its columns were turned off (--no-gpu)")
    impls = available(gpu is not None, notes)
    info = machine()
    programs = None
    if any(wl in plan.workloads for wl in ("article", "native")):
        compiler = native.find_compiler()
        if compiler is None:
            notes.append("C++: no compiler (c++, g++, clang++ or $CXX), the native columns are skipped")
        else:
            programs = native.Programs(compiler)
            try:
                info["cxx"] = programs.version()
            except native.NativeError as e:
                notes.append(f"C++: {e}; the native columns are skipped")
                programs.close()
                programs = None
    # Move everything the imports made out of the collector's way, so the collection before each point's
    # timed runs (which keeps earlier garbage out of their time) costs little.
    gc.collect()
    gc.freeze()
    try:
        return _run(plan, out_dir, stem, say, gpu, impls, info, notes, programs)
    finally:
        gc.unfreeze()
        if programs is not None:
            programs.close()


def _run(
    plan: Plan,
    out_dir: Path,
    stem: str,
    say: Callable[[str], None],
    gpu: str | None,
    impls: dict[str, Impl],
    info: dict[str, Any],
    notes: list[str],
    programs: native.Programs | None,
) -> int:
    say(
        f"rustbp {info['rustbp']} bench on {info['cpu']} ({info['cores']} cores), Python {info['python']}, "
        f"NumPy {info['numpy']}, PyTorch {info['torch']} ({info.get('torch_threads', '-')} threads)"
    )
    if gpu:
        say(f"rustbp GPU adapter: {gpu}")
    info["gpu_adapter"] = gpu
    if programs is not None:
        say(f"C++ compiler: {info['cxx']}")
    runners: dict[str, Callable[[Plan, dict[str, Impl], Callable[[str], None]], list[Point]]] = {
        "article": partial(run_article, programs=programs, notes=notes),
        "sweep": run_sweep,
        "large": run_large,
        "digits": run_digits,
        "native": partial(run_native, programs=programs, notes=notes),
        "population": partial(run_population, notes=notes),
        "gpu": partial(run_gpu, notes=notes),
    }
    peak = measure_peak(plan.peak_size)
    say("peak: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peak.items()) + f" ({plan.peak_size}^2 products)")
    points: list[Point] = []
    for wl in plan.workloads:
        if wl == "digits" and "scikit-learn MLPClassifier" not in impls:
            continue
        t0 = time.perf_counter()
        points += runners[wl](plan, impls, say)
        say(f"  ({wl}: {time.perf_counter() - t0:.1f} s)")
    if hasattr(os, "getloadavg"):
        info["load_average_at_end"] = list(os.getloadavg())
        notes.append(
            f"load average (1, 5, 15 min) at start {info['load_average_at_start']}, at end "
            f"{info['load_average_at_end']}: other processes shared these {info['cores']} cores"
        )
    annotate(points, peak)
    found = report(points, notes, say)
    out_dir.mkdir(parents=True, exist_ok=True)
    doc = {
        "command": "python -m rustbp bench" + (" --quick" if plan.quick else ""),
        "machine": info,
        "plan": {k: v for k, v in vars(plan).items()},
        "method": __doc__,
        "tolerance": {"rtol": RTOL, "atol": ATOL},
        "peak_gflops": {**peak, "size": plan.peak_size},
        "notes": notes,
        "targets": found,
        "points": [p.as_dict() for p in points],
    }
    json_path = out_dir / f"{stem}.json"
    json_path.write_text(json.dumps(doc, indent=1) + "\n")
    say(f"\nwrote {json_path}")
    sweep = [p for p in points if p.workload == "sweep"]
    if sweep:
        try:
            from . import plot
        except ImportError:
            say("note: matplotlib is not installed, no plot (pip install 'rustbp[bench]')")
        else:
            png = out_dir / f"{stem}.png"
            plot.sweep_plot([p.as_dict() for p in sweep], png, f"{info['cpu']}, {info['cores']} cores")
            say(f"wrote {png}")
    return 1 if any(r.agrees is False for p in points for r in p.results) else 0


def _ints(s: str) -> tuple[int, ...]:
    return tuple(int(v) for v in s.split(","))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true", help="a reduced set, well under a minute")
    parser.add_argument(
        "--gpu",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="rustbp's GPU columns when an adapter is found (--no-gpu: none, e.g. on a software adapter)",
    )
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"), help="folder for the JSON and PNG")
    parser.add_argument(
        "--workloads",
        default=None,
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all but gpu and population; gpu: "
        "rustbp's GPU against PyTorch CUDA; population: rustbp.Population against a loop and PyTorch stacked)",
    )
    parser.add_argument("--reps", type=int, default=None, help="repetitions per measurement (default 5)")
    parser.add_argument("--widths", type=_ints, default=None, help="hidden widths of the sweep, e.g. 2,64,1024")
    parser.add_argument("--batches", type=_ints, default=None, help="batch sizes of the sweep, e.g. 1,64")
    parser.add_argument("--article-steps", type=int, default=None, help="steps of the article workloads")
    parser.add_argument(
        "--native-steps", type=int, default=None, help="steps of each timed run of the article's C++ programs"
    )
    parser.add_argument("--native-widths", type=_ints, default=None, help="n of the n-n-n native reference, e.g. 2,64")
    parser.add_argument(
        "--peak-size", type=int, default=None, help="n of the n x n matrix product that measures the peak (2048)"
    )
    parser.add_argument(
        "--population-size", type=int, default=None, help="members of the population on the digits (128)"
    )
    parser.add_argument(
        "--population-epochs", type=int, default=None, help="epochs of the population on the digits (5)"
    )
    parser.add_argument(
        "--population-copies", type=int, default=None, help="members of the article's 2-2-2 population (10000)"
    )
    parser.add_argument(
        "--population-steps", type=int, default=None, help="steps of the article's 2-2-2 population (10000)"
    )
    parser.add_argument("--stem", default=None, help="file name of the JSON and PNG (default bench, bench-quick)")
    parser.add_argument(
        "--budget",
        type=float,
        default=None,
        dest="budget_s",
        help="seconds per repetition of the slowest implementation at a sweep point",
    )


def main(args: argparse.Namespace) -> int:
    plan = Plan.quick_plan() if args.quick else Plan.full()
    if args.workloads:
        plan.workloads = tuple(args.workloads.split(","))
        unknown = set(plan.workloads) - set(WORKLOADS)
        if unknown:
            raise SystemExit(f"--workloads: expected some of {', '.join(WORKLOADS)}, got unknown {sorted(unknown)}")
    plan.gpu = args.gpu
    for name in (
        "reps",
        "widths",
        "batches",
        "article_steps",
        "budget_s",
        "native_steps",
        "native_widths",
        "peak_size",
        "population_size",
        "population_epochs",
        "population_copies",
        "population_steps",
    ):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    if args.article_steps is not None:
        plan.article_torch_steps = args.article_steps
    stem = args.stem or ("bench-quick" if args.quick else "bench")
    code = run_plan(plan, args.out, stem)
    sys.stdout.flush()
    return code
