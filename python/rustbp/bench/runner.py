"""``rustbp bench``: the speed comparison. Workloads, interleaved timing, the agreement check, the table,
the JSON file and the plot.

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
import importlib
import json
import operator
import os
import platform
import random
import shlex
import statistics
import sys
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable

import numpy as np

import rustbp

from . import native, numpy_net, torch_net
from .impls import Array, Impl, Params, Spec, Trainer, available, gpu_adapter, rustbp_name, short, threads_for

__all__ = ["Plan", "add_arguments", "main", "run_plan"]

#: Relative tolerance (plus a tiny absolute one) between a final loss and the float64 reference.
RTOL = {"float64": 1e-7, "float32": 2e-3}
ATOL = {"float64": 1e-12, "float32": 1e-6}

ARTICLE = Spec(2, 2, 2, loss="half_sse", bias="shared", train_bias=False, lr=0.5)
ARTICLE_TORCH = Spec(2, 2, 2, loss="mse", lr=0.5, momentum=0.9)
SWEEP = Spec(64, 2, 10, loss="mse", lr=0.1)
LARGE = Spec(784, 1024, 10, hidden="relu", output="softmax", loss="cross_entropy", lr=0.1, momentum=0.9)
DIGITS = Spec(64, 128, 10, hidden="relu", output="softmax", loss="cross_entropy", optimizer="adam", lr=1e-3)
#: The native reference's network at width n: n-n-n, sigmoid, half_sse, per-neuron biases, plain SGD.
NATIVE = Spec(2, 2, 2, loss="half_sse", lr=0.5)
#: The GPU's wide workload (float32, batch 8192), and the reduced one for a software adapter or --quick.
GPU_WIDE = Spec(784, 4096, 10, loss="half_sse", lr=0.1)
GPU_WIDE_FULL = (4096, 8192, 20)  # hidden width, batch, steps
GPU_WIDE_REDUCED = (256, 64, 3)
WORKLOADS = ("article", "sweep", "large", "digits", "native", "gpu")
#: The implementation families that compute on a GPU (their share of the peak is of the GPU's).
GPU_FAMILIES = ("rustbp-gpu", "torch-cuda")
ARTICLE_X = np.array([[0.05, 0.10]])
ARTICLE_T = np.array([[0.01, 0.99]])

ARTICLE_IMPLS = [
    "pure Python f64",
    "pure Python f64 (unrolled 2-2-2)",
    "NumPy f64",
    "PyTorch CPU f32",
    "PyTorch CPU f64",
    "PyTorch CUDA f32",
]
SWEEP_IMPLS = ["pure Python f64", "NumPy f32", "PyTorch CPU f32", "PyTorch CUDA f32"]
LARGE_IMPLS = [
    "NumPy f32",
    "NumPy f64",
    "PyTorch CPU f32",
    "PyTorch CPU f64",
    "PyTorch CPU f32 1 thread",
    "PyTorch CPU f64 1 thread",
    "PyTorch CUDA f32",
]
#: The pure Python network joins the sweep up to this many multiply-adds per step (~ a few ms).
PURE_MAX_WORK = 40_000


def rustbp_impls(dtypes: tuple[str, ...], loops: tuple[str, ...] = ("rust", "python")) -> list[str]:
    out = [rustbp_name(dt, loop, dev) for dev in ("cpu", "gpu") for dt in dtypes for loop in loops]
    return [n for n in out if "GPU" not in n or "(loop in Rust)" in n]


@dataclass
class Plan:
    """What one run measures. ``quick()`` and ``full()`` are the two the command offers."""

    reps: int = 5
    article_steps: int = 10_000
    article_torch_steps: int = 5000
    widths: tuple[int, ...] = tuple(2**k for k in range(1, 13))
    batches: tuple[int, ...] = (1, 64, 1024)
    budget_s: float = 0.25  # time per repetition of the slowest implementation at a sweep point
    large_steps: int = 10
    digits_max_epochs: int = 100
    workloads: tuple[str, ...] = ("article", "sweep", "large", "digits", "native")
    gpu: bool = True  # rustbp's GPU columns, when an adapter is found
    native_steps: int = 10_000_000  # steps of each timed run of the article's C++ programs
    native_widths: tuple[int, ...] = tuple(2**k for k in range(1, 9))  # n of the n-n-n native reference
    gpu_article_steps: int = 10_000
    peak_size: int = 2048  # of the matrix product that measures the peak
    digits_impls: tuple[str, ...] = (
        "NumPy f64",
        "PyTorch CPU f32",
        "PyTorch CPU f64",
        "scikit-learn MLPClassifier",
    )
    quick: bool = False

    @classmethod
    def full(cls) -> Plan:
        return cls()

    @classmethod
    def quick_plan(cls) -> Plan:
        return cls(
            reps=3,
            article_steps=1000,
            article_torch_steps=300,
            widths=(2, 256),
            batches=(1, 64),
            budget_s=0.01,
            large_steps=2,
            digits_max_epochs=60,
            digits_impls=("NumPy f64", "scikit-learn MLPClassifier"),
            native_steps=1_000_000,
            native_widths=(2, 16, 256),
            gpu_article_steps=1000,
            quick=True,
        )


@dataclass
class Result:
    impl: str
    dtype: str
    steps: int
    times_s: list[float]  # per repetition, for `steps` steps (or to the target accuracy)
    final_loss: float
    agrees: bool | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def median_s(self) -> float:
        return statistics.median(self.times_s)

    @property
    def per_step_s(self) -> float:
        return self.median_s / self.steps

    def as_dict(self) -> dict[str, Any]:
        return {
            "impl": self.impl,
            "dtype": self.dtype,
            "steps": self.steps,
            "median_s": self.median_s,
            "median_s_per_step": self.per_step_s,
            "min_s_per_step": min(self.times_s) / self.steps,
            "times_s": self.times_s,
            "final_loss": self.final_loss,
            "agrees": self.agrees,
            **self.extra,
        }


@dataclass
class Point:
    """One timed configuration: a network, a batch and a step count, with every implementation's result."""

    workload: str
    spec: Spec
    batch: int
    steps: int
    reference_loss: float
    results: list[Result]
    extra: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "spec": self.spec.as_dict(),
            "batch": self.batch,
            "steps": self.steps,
            "reference_loss": self.reference_loss,
            "results": [r.as_dict() for r in self.results],
            **self.extra,
        }

    def get(self, impl: str) -> Result | None:
        return next((r for r in self.results if r.impl == impl), None)


def agree(loss: float, reference: float, dtype: str) -> bool:
    return bool(abs(loss - reference) <= ATOL[dtype] + RTOL[dtype] * abs(reference))


def interleave(
    impls: list[Impl], build: Callable[[Impl], Trainer], go: Callable[[Trainer], float], reps: int
) -> dict[str, tuple[list[float], float]]:
    """Times ``go(build(impl))`` for every implementation, ``reps`` rounds, in a new order each round;
    returns each one's times and the value of its last run. ``build`` is not timed."""
    out: dict[str, tuple[list[float], float]] = {i.name: ([], float("nan")) for i in impls}
    order = list(impls)
    for r in range(reps):
        # A fresh order every round: rotating a fixed one would give each implementation the same
        # predecessor every time, and a predecessor's lingering threads cost its successor up to 20%.
        random.Random(r).shuffle(order)
        for impl in order:
            trainer = build(impl)
            gc.collect()
            t0 = time.perf_counter()
            value = go(trainer)
            dt = time.perf_counter() - t0
            times, _ = out[impl.name]
            times.append(dt)
            out[impl.name] = (times, value)
    return out


def reference_loss(spec: Spec, w: Params, X: Array, T: Array, steps: int) -> float:
    """The last step's loss from an untimed float64 NumPy run: the value every implementation must match."""
    opt: numpy_net.SGD | numpy_net.Adam = (
        numpy_net.SGD(spec.lr, spec.momentum) if spec.optimizer == "sgd" else numpy_net.Adam(spec.lr)
    )
    net = numpy_net.NumpyNet(
        w, hidden=spec.hidden, output=spec.output, loss=spec.loss, train_bias=spec.train_bias, optimizer=opt
    )
    loss = float("nan")
    for _ in range(steps):
        loss = net.step(X, T)
    return loss


def time_point(
    workload: str,
    spec: Spec,
    w: Params,
    X: Array,
    T: Array,
    impls: list[Impl],
    reps: int,
    steps: int | None = None,
    budget_s: float = 0.0,
) -> Point:
    """Warms every implementation up, picks the step count (``steps``, or what fills ``budget_s`` for the
    slowest), times them interleaved and checks their final losses against the reference."""
    slowest = 0.0
    for impl in impls:
        tr = impl.build(spec, w, X, T)
        tr.train(1)
        t0 = time.perf_counter()
        tr.train(2)
        slowest = max(slowest, (time.perf_counter() - t0) / 2)
    if steps is None:
        steps = int(min(2000, max(3, budget_s / max(slowest, 1e-9))))
    n = steps

    def build(impl: Impl) -> Trainer:
        # One untimed step on every fresh trainer, so first-call costs (buffers, lazy set-up) stay out.
        tr = impl.build(spec, w, X, T)
        tr.train(1)
        return tr

    timed = interleave(impls, build, lambda tr: tr.train(n), reps)
    ref = reference_loss(spec, w, X, T, steps + 1)
    results = []
    for impl in impls:
        times, loss = timed[impl.name]
        device = {"device": "gpu" if impl.family in GPU_FAMILIES else "cpu"}
        results.append(Result(impl.name, impl.dtype, steps, times, loss, agree(loss, ref, impl.dtype), device))
    return Point(workload, spec, len(X), steps, ref, results)


def native_result(
    programs: native.Programs,
    name: str,
    label: str,
    dtype: str,
    point: Point,
    reps: int,
    timed_steps: int | None,
    args: tuple[object, ...] = (),
    stdin: str = "",
    expect: dict[int, float] | None = None,
    rtol: float = 1e-9,
    budget_s: float = 0.0,
) -> Result:
    """Checks native program ``name`` and times it: its loss after the point's steps must agree with the
    point's reference, and its losses at the steps of ``expect`` with those values (to ``rtol``); then
    ``reps`` runs of ``timed_steps`` steps (None: what fills ``budget_s``), each timed by the program."""
    check = programs.run(name, point.steps + 1, point.steps + 1, args, stdin)
    final = check.losses[point.steps]
    ok = agree(final, point.reference_loss, dtype)
    checks: dict[str, Any] = {"final_loss_agrees": ok}
    if expect:
        got = programs.run(name, max(expect) + 1, 1, args, stdin).losses
        worst = max(abs(got[s] - v) / abs(v) for s, v in expect.items())
        checks["losses"] = {"steps": sorted(expect), "worst_relative_error": worst, "rtol": rtol}
        ok = ok and worst <= rtol
    if timed_steps is None:
        timed_steps = int(min(10_000_000, max(100, budget_s * 1e9 / check.ns_per_step)))
    times = [
        programs.run(name, timed_steps, timed_steps, args, stdin).ns_per_step * timed_steps / 1e9 for _ in range(reps)
    ]
    extra = {
        "device": "cpu",
        "compile": shlex.join(programs.command(name)),
        "timed_by": "the program (steady clock)",
        **checks,
    }
    return Result(label, dtype, timed_steps, times, final, ok, extra)


def native_label(name: str, dtype: str) -> str:
    flags = "-O3, native" if name == "reference" else " ".join(native.FLAGS[name])
    return f"C++ {'loops' if name == 'reference' else 'per node'} {short(dtype)} ({flags})"


def start_weights(spec: Spec, seed: int = 0) -> Params:
    return spec.network("float64", seed=seed).get_weights()


def run_article(
    plan: Plan, impls: dict[str, Impl], say: Callable[[str], None], programs: native.Programs | None, notes: list[str]
) -> list[Point]:
    names = [n for n in ARTICLE_IMPLS + rustbp_impls(("float64", "float32")) if n in impls]
    chosen = [impls[n] for n in names]
    points = []
    w = rustbp.Network.article().get_weights()
    say(f"article: 2-2-2, one sample, 1 + {plan.article_steps} steps of SGD lr 0.5 ...")
    article = time_point("article", ARTICLE, w, ARTICLE_X, ARTICLE_T, chosen, plan.reps, plan.article_steps)
    points.append(article)
    chosen = [i for i in chosen if "unrolled" not in i.name]
    say(f"article, PyTorch setting: MSE, per-neuron biases, {plan.article_torch_steps} steps SGD momentum 0.9 ...")
    w = start_weights(ARTICLE_TORCH)
    torch_setting = time_point(
        "article-torch", ARTICLE_TORCH, w, ARTICLE_X, ARTICLE_T, chosen, plan.reps, plan.article_torch_steps
    )
    points.append(torch_setting)
    if programs is not None:
        say(f"article, C++ programs in the article's style: {plan.native_steps:,} steps a run ...")
        weights = native.numbers(w["w1"], w["b1"], w["w2"], w["b2"])
        for point, name, stdin, expect in (
            (article, "article", "", native.ARTICLE_LOSSES),
            (torch_setting, "article_torch", weights, None),
        ):
            try:
                point.results.append(
                    native_result(
                        programs,
                        name,
                        native_label(name, "float64"),
                        "float64",
                        point,
                        plan.reps,
                        plan.native_steps,
                        stdin=stdin,
                        expect=expect,
                    )
                )
            except native.NativeError as e:
                notes.append(f"{native_label(name, 'float64')}: skipped: {e}")
    return points


def run_sweep(plan: Plan, impls: dict[str, Impl], say: Callable[[str], None]) -> list[Point]:
    names = [n for n in SWEEP_IMPLS + rustbp_impls(("float32",)) + [rustbp_name("float64", "rust")] if n in impls]
    rng = np.random.default_rng(1)
    points = []
    for batch in plan.batches:
        X = rng.uniform(0, 1, (batch, SWEEP.n_in))
        T = rng.uniform(0.1, 0.9, (batch, SWEEP.n_out))
        for width in plan.widths:
            spec = Spec(**{**SWEEP.as_dict(), "n_hidden": width})
            chosen = [impls[n] for n in names if impls[n].family != "pure" or spec.work(batch) <= PURE_MAX_WORK]
            if threads_for(spec.work(batch)) > 1 and "PyTorch CPU f32 1 thread" in impls:
                chosen.append(impls["PyTorch CPU f32 1 thread"])
            say(f"sweep: 64-{width}-10, batch {batch} ...")
            points.append(time_point("sweep", spec, start_weights(spec), X, T, chosen, plan.reps, None, plan.budget_s))
    return points


def run_large(plan: Plan, impls: dict[str, Impl], say: Callable[[str], None]) -> list[Point]:
    names = [n for n in LARGE_IMPLS + rustbp_impls(("float32", "float64")) if n in impls]
    rng = np.random.default_rng(2)
    X = rng.uniform(0, 1, (256, LARGE.n_in))
    T = np.eye(LARGE.n_out)[rng.integers(0, LARGE.n_out, 256)]
    say(f"large: 784-1024-10, batch 256, {plan.large_steps} steps ...")
    chosen = [impls[n] for n in names]
    return [time_point("large", LARGE, start_weights(LARGE), X, T, chosen, plan.reps, plan.large_steps)]


def run_native(
    plan: Plan, impls: dict[str, Impl], say: Callable[[str], None], programs: native.Programs | None, notes: list[str]
) -> list[Point]:
    """rustbp at batch 1 against plain native loops (``native/reference.cpp``) on n-n-n nets, n in
    ``plan.native_widths``; both first checked to give the same losses over five steps."""
    if programs is None:
        return []
    rng = np.random.default_rng(4)
    points = []
    for n in plan.native_widths:
        spec = Spec(**{**NATIVE.as_dict(), "n_in": n, "n_hidden": n, "n_out": n})
        w = start_weights(spec)
        X, T = rng.uniform(0, 1, (1, n)), rng.uniform(0.1, 0.9, (1, n))
        say(f"native: {n}-{n}-{n}, batch 1, rustbp against plain C++ loops ...")
        chosen = [impls[rustbp_name(dt, "rust")] for dt in ("float64", "float32")]
        point = time_point("native", spec, w, X, T, chosen, plan.reps, None, plan.budget_s)
        stdin = native.numbers(w["w1"], w["b1"], w["w2"], w["b2"], X, T)
        ratios: dict[str, float] = {}
        for dt in ("float64", "float32"):
            net = spec.network(dt)
            net.set_weights(w)
            first = net.train(X.astype(dt), T.astype(dt), 5)
            label = native_label("reference", dt)
            try:
                result = native_result(
                    programs,
                    "reference",
                    label,
                    dt,
                    point,
                    plan.reps,
                    None,
                    (n, repr(spec.lr), short(dt)),
                    stdin,
                    expect=dict(enumerate(map(float, first))),
                    rtol=1e-9 if dt == "float64" else 1e-5,
                    budget_s=plan.budget_s,
                )
            except native.NativeError as e:
                notes.append(f"{label}: skipped: {e}")
                continue
            point.results.append(result)
            rb = point.get(rustbp_name(dt, "rust"))
            if rb is not None:
                ratios[dt] = rb.per_step_s / result.per_step_s
        point.extra["rustbp_over_native"] = ratios
        points.append(point)
    return points


def run_gpu(plan: Plan, impls: dict[str, Impl], say: Callable[[str], None], notes: list[str]) -> list[Point]:
    """rustbp's GPU path against PyTorch CUDA eager: the article's net (steps per second) and a wide net in
    float32 (samples per second; reduced on a software adapter or with --quick)."""
    gpu = rustbp_name("float32", "rust", "gpu")
    if gpu not in impls:
        notes.append("gpu workload: no rustbp GPU column (no adapter, or --no-gpu), skipped")
        return []
    torch = torch_net.load()
    missing = {}
    if "PyTorch CUDA f32" not in impls:
        missing["PyTorch CUDA f32"] = "PyTorch is not installed" if torch is None else "PyTorch sees no CUDA device"
    cuda = [impls[n] for n in ("PyTorch CUDA f32",) if n in impls]
    say(f"gpu: article 2-2-2, one sample, 1 + {plan.gpu_article_steps} steps of SGD lr 0.5 ...")
    chosen = [impls[gpu], impls[rustbp_name("float64", "rust")], *cuda]
    w = rustbp.Network.article().get_weights()
    article = time_point("gpu-article", ARTICLE, w, ARTICLE_X, ARTICLE_T, chosen, plan.reps, plan.gpu_article_steps)
    adapter = rustbp.Network(2, 2, 2, device="gpu").adapter
    software = adapter is not None and adapter.is_software
    reduced = software or plan.quick
    hidden, batch, steps = GPU_WIDE_REDUCED if reduced else GPU_WIDE_FULL
    spec = Spec(**{**GPU_WIDE.as_dict(), "n_hidden": hidden})
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, spec.n_in))
    T = np.eye(spec.n_out)[rng.integers(0, spec.n_out, batch)]
    # The CPU joins the reduced size only: the full one takes seconds a step there.
    chosen = [impls[gpu], *cuda] + ([impls[rustbp_name("float32", "rust")]] if reduced else [])
    size = f"{spec.n_in}-{hidden}-{spec.n_out}, batch {batch}"
    say(f"gpu: {size}, float32, {steps} steps{' (reduced)' if reduced else ''} ...")
    wide = time_point("gpu-wide", spec, start_weights(spec), X, T, chosen, plan.reps, steps)
    for p in (article, wide):
        p.extra.update({"missing": missing, "reduced": reduced and p is wide, "software_adapter": software})
    return [article, wide]


@dataclass
class Digits:
    """scikit-learn's bundled 8x8 digits, scaled to [0, 1], split 3:1 into training and test sets."""

    X: Array
    Y: Array  # one-hot
    y: Array
    X_test: Array
    y_test: Array

    @classmethod
    def load(cls) -> Digits:
        datasets = importlib.import_module("sklearn.datasets")
        d = datasets.load_digits()
        X, y = np.asarray(d.data, dtype=np.float64) / 16.0, np.asarray(d.target)
        order = np.random.default_rng(0).permutation(len(X))
        n_test = len(X) // 4
        test, train = order[:n_test], order[n_test:]
        return cls(X[train], np.eye(10)[y[train]], y[train], X[test], y[test])


def to_accuracy(tr: Trainer, data: Digits, orders: list[Array], target: float) -> tuple[int, float, float]:
    """Trains epoch by epoch (each in the given order, batches of 32) until the test accuracy reaches
    ``target``; returns the epochs used, the last epoch's mean loss and the accuracy reached."""
    loss, acc = float("nan"), 0.0
    for e, order in enumerate(orders):
        loss = tr.epoch(data.X[order], data.Y[order], data.y[order], 32)
        acc = float(np.mean(tr.predict(data.X_test) == data.y_test))
        if acc >= target:
            return e + 1, loss, acc
    return len(orders), loss, acc


def run_digits(plan: Plan, impls: dict[str, Impl], say: Callable[[str], None]) -> list[Point]:
    names = [n for n in [*plan.digits_impls, *rustbp_impls(("float32", "float64"))] if n in impls]
    data = Digits.load()
    rng = np.random.default_rng(3)
    orders = [rng.permutation(len(data.X)) for _ in range(plan.digits_max_epochs)]
    w = start_weights(DIGITS)
    chosen = [impls[n] for n in names]
    say(
        f"digits: 64-128-10 (relu, softmax), Adam lr 1e-3, batch 32, to 97% test accuracy, "
        f"{len(data.X)} training samples ..."
    )
    outcome: dict[str, tuple[int, float, float]] = {}

    def go(tr: Trainer, name: list[str]) -> float:
        epochs, loss, acc = to_accuracy(tr, data, orders, 0.97)
        outcome[name[0]] = (epochs, loss, acc)
        return loss

    current = [""]

    def build(i: Impl) -> Trainer:
        current[0] = i.name
        return i.build(DIGITS, w, data.X[:32], data.Y[:32])

    for impl in chosen:  # warm-up: one epoch each
        impl.build(DIGITS, w, data.X[:32], data.Y[:32]).epoch(data.X, data.Y, data.y, 32)
    timed = interleave(chosen, build, lambda tr: go(tr, current), plan.reps)
    ref_name = "NumPy f64"
    ref_epochs, ref_loss, _ = outcome.get(ref_name, (0, float("nan"), 0.0))
    results = []
    for impl in chosen:
        times, loss = timed[impl.name]
        epochs, _, acc = outcome[impl.name]
        ok: bool | None = None
        if impl.family != "sklearn" and ref_name in outcome:
            # Same weights and batches: float64 takes the same epochs to 97% and ends at the same loss;
            # float32 rounding grows over hundreds of Adam steps through ReLU kinks, so it may cross 97%
            # one epoch apart, and its loss is compared loosely.
            if impl.dtype == "float64":
                ok = epochs == ref_epochs and agree(loss, ref_loss, "float64")
            else:
                ok = abs(epochs - ref_epochs) <= 1 and (epochs != ref_epochs or abs(loss - ref_loss) <= 0.05 * ref_loss)
        extra = {"epochs": epochs, "test_accuracy": acc, "reached": acc >= 0.97}
        results.append(Result(impl.name, impl.dtype, 1, times, loss, ok, extra))
    return [Point("digits", DIGITS, 32, ref_epochs, ref_loss, results)]


# -- the machine's peak ------------------------------------------------------------------------------


def measure_peak(size: int, repeats: int = 3) -> dict[str, float]:
    """GFLOP/s of a size x size matrix product (2 size^3 flops), best of ``repeats`` after a warm-up: NumPy
    in float32 and float64, and, as "gpu float32", PyTorch CUDA's (TF32 off) when there is one."""
    rng = np.random.default_rng(0)
    out: dict[str, float] = {}

    def best(product: Callable[[], object]) -> float:
        product()  # warm-up: threads, pages, kernels
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            product()
            times.append(time.perf_counter() - t0)
        return 2 * size**3 / min(times) / 1e9

    for dt in ("float32", "float64"):
        a, b = rng.standard_normal((size, size)).astype(dt), rng.standard_normal((size, size)).astype(dt)
        out[dt] = best(partial(np.matmul, a, b))
    torch = torch_net.load()
    if torch is not None and torch.cuda.is_available():
        torch.backends.cuda.matmul.allow_tf32 = False
        ta, tb = torch.randn(size, size, device="cuda"), torch.randn(size, size, device="cuda")
        out["gpu float32"] = best(lambda: ((ta @ tb), torch.cuda.synchronize()))
    return out


def annotate(points: list[Point], peak: dict[str, float]) -> None:
    """Adds each result's GFLOP/s (2 flops per multiply-add of ``Spec.work``) and its fraction of the peak of
    its dtype and device (None where this run has no peak for it, such as a wgpu adapter)."""
    for p in points:
        if p.workload == "digits":  # timed to an accuracy, not per step
            continue
        flops = 2 * p.spec.work(p.batch)
        for r in p.results:
            gflops = flops / r.per_step_s / 1e9
            key = r.dtype if r.extra.get("device") == "cpu" else f"gpu {r.dtype}"
            r.extra["gflops"] = gflops
            r.extra["peak_fraction"] = gflops / peak[key] if key in peak else None


# -- report ------------------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info: dict[str, Any] = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "platform": platform.platform(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "rustbp": rustbp.__version__,
        "rayon_threads": os.environ.get("RAYON_NUM_THREADS", f"default ({os.cpu_count()})"),
        "load_average_at_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }
    for mod in ("torch", "sklearn", "matplotlib"):
        try:
            m = importlib.import_module(mod)
            info[mod] = str(m.__version__)
            if mod == "torch":
                info["torch_threads"] = int(m.get_num_threads())
        except ImportError:
            info[mod] = None
    return info


def fmt_time(s: float) -> str:
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def check_mark(r: Result) -> str:
    return "-" if r.agrees is None else ("ok" if r.agrees else "MISMATCH")


def fmt_percent(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return f"{100 * fraction:.2g}%" if fraction < 0.1 else f"{100 * fraction:.0f}%"


def fmt_peak(r: Result) -> str:
    """GFLOP/s and the percentage of the peak, or blanks where they do not apply."""
    g = r.extra.get("gflops")
    return f"{g:>9.3g} {fmt_percent(r.extra.get('peak_fraction')):>7}" if g is not None else f"{'-':>9} {'-':>7}"


def table(point: Point, baseline: str) -> str:
    """One workload's rows: time per step, steps per second, GFLOP/s and % of peak, ratio to ``baseline``,
    final loss, check; then the columns this machine could not run, as n/a."""
    base = point.get(baseline)
    digits = point.workload == "digits"
    head = "time to 97%" if digits else "time/step"
    lines = [
        f"  {'implementation':<30} {head:>12} {'steps/s' if not digits else 'epochs':>10} {'GFLOP/s':>9} "
        f"{'% peak':>7} {'vs ' + baseline:>34} {'final loss':>22}  check"
    ]
    for r in sorted(point.results, key=lambda r: r.per_step_s):
        v = r.per_step_s / base.per_step_s if base else None
        ratio = "-" if v is None else f"{v:,.1f}x" if v >= 1 else f"{v:.2g}x"
        second = f"{r.extra['epochs']:>10}" if digits else f"{1 / r.per_step_s:>10,.0f}"
        loss = f"{r.final_loss:.16g}" + ("" if not digits else f" acc {r.extra['test_accuracy']:.3f}")
        lines.append(
            f"  {r.impl:<30} {fmt_time(r.per_step_s):>12} {second} {fmt_peak(r)} {ratio:>34} {loss:>22}  "
            f"{check_mark(r)}"
        )
    for name, why in point.extra.get("missing", {}).items():
        lines.append(f"  {name:<30} {'n/a':>12}  ({why})")
    return "\n".join(lines)


def native_table(points: list[Point]) -> str:
    """The native workload: per width and dtype, rustbp's time per step (loop in Rust) and the plain C++
    loops', rustbp's over C++'s, and each one's percentage of the peak in that dtype."""
    head = ("rustbp", "C++", "ratio", "% rustbp", "% C++")
    lines = [
        "  time per step (median); ratio = rustbp / C++; % = of the peak in that dtype",
        f"  {'':>5} {'float64':^54} {'float32':^54}",
        f"  {'n':>5} " + " ".join(f"{h:>10}" for h in head * 2),
    ]
    for p in points:
        cells = []
        for dt in ("float64", "float32"):
            rb, nat = p.get(rustbp_name(dt, "rust")), p.get(native_label("reference", dt))
            cells += [(fmt_time(r.per_step_s) + ("" if r.agrees else "!")) if r else "-" for r in (rb, nat)]
            cells.append(f"{rb.per_step_s / nat.per_step_s:.2f}" if rb and nat else "-")
            cells += [fmt_percent(r.extra.get("peak_fraction")) if r else "-" for r in (rb, nat)]
        lines.append(f"  {p.spec.n_hidden:>5} " + " ".join(f"{c:>10}" for c in cells))
    return "\n".join(lines)


def sweep_table(points: list[Point]) -> str:
    names: list[str] = []
    for p in points:
        names += [r.impl for r in p.results if r.impl not in names]
    cols = [
        n.replace("rustbp ", "rb ")
        .replace("PyTorch ", "pt ")
        .replace(" (loop in Rust)", "")
        .replace(" (Python loop)", " pyloop")
        .replace("pure Python", "pure")
        for n in names
    ]
    lines = [
        "  time per step (median); rb = rustbp, pt = PyTorch;",
        "  last column: rb f32 (loop in Rust) / the faster pt f32",
        f"  {'batch':>5} {'hidden':>6} " + " ".join(f"{c:>13}" for c in cols) + f" {'rb/pt':>6}",
    ]
    for p in points:
        cells = []
        for n in names:
            r = p.get(n)
            cells.append(f"{(fmt_time(r.per_step_s) + ('' if r.agrees else '!')) if r else '':>13}")
        rb, pt, pt1 = (
            p.get(rustbp_name("float32", "rust")),
            p.get("PyTorch CPU f32"),
            p.get("PyTorch CPU f32 1 thread"),
        )
        best = min((r.per_step_s for r in (pt, pt1) if r), default=None)
        ratio = f"{rb.per_step_s / best:.2f}" if rb and best else "-"
        lines.append(f"  {p.batch:>5} {p.spec.n_hidden:>6} " + " ".join(cells) + f" {ratio:>6}")
    return "\n".join(lines)


def targets(points: list[Point]) -> list[dict[str, Any]]:
    """rustbp's performance goals, as measured in this run."""
    by = {p.workload: p for p in points if p.workload != "sweep"}
    out: list[dict[str, Any]] = []

    def ratio(wl: str, num: str, den: str) -> float | None:
        """num's time over den's; a PyTorch CPU ``den`` means its faster thread setting."""
        p = by.get(wl)
        a, b = (p.get(num), p.get(den)) if p else (None, None)
        if p and b and den.startswith("PyTorch CPU"):
            b1 = p.get(den + " 1 thread")
            b = b1 if b1 and b1.per_step_s < b.per_step_s else b
        return a.per_step_s / b.per_step_s if a and b else None

    def add(what: str, value: float | None, goal: str, ok: Callable[[float], bool], unit: str = "x") -> None:
        out.append(
            {
                "target": what,
                "measured": value,
                "unit": unit,
                "goal": goal,
                "met": None if value is None else bool(ok(value)),
            }
        )

    rb64 = rustbp_name("float64", "rust")
    for wl in ("article", "article-torch"):
        v = ratio(wl, "PyTorch CPU f32", rb64)
        add(
            f"{wl}: rustbp f64 loop in Rust, speed-up over PyTorch CPU f32",
            v,
            ">= 3000x",
            lambda v: v >= 3000,
        )
        for pure in ("pure Python f64", "pure Python f64 (unrolled 2-2-2)"):
            v = ratio(wl, pure, rb64)
            if v is not None:
                add(f"{wl}: rustbp f64 loop in Rust, speed-up over {pure}", v, ">= 40x", lambda v: v >= 40)
    p = by.get("article")
    r = p.get(rustbp_name("float64", "python")) if p else None
    add(
        "article: rustbp f64 train_step per call (Python loop)",
        r.per_step_s * 1e6 if r else None,
        "<= 1.5 us",
        lambda v: v <= 1.5,
        "us",
    )
    for dt in ("f32", "f64"):
        v = ratio("large", rustbp_name("float32" if dt == "f32" else "float64", "rust"), f"PyTorch CPU {dt}")
        goal = 0.9 if dt == "f32" else 1.0
        add(
            f"784-1024-10 batch 256: rustbp {dt} step time / best PyTorch CPU {dt}",
            v,
            f"<= {goal}x",
            partial(operator.ge, goal),
        )
    sweep = [p for p in points if p.workload == "sweep"]
    worst: float | None = None
    where = ""
    for p in sweep:
        a, b = p.get(rustbp_name("float32", "rust")), p.get("PyTorch CPU f32")
        b1 = p.get("PyTorch CPU f32 1 thread")
        b = b1 if b and b1 and b1.per_step_s < b.per_step_s else b
        if a and b and (worst is None or a.per_step_s / b.per_step_s > worst):
            worst, where = a.per_step_s / b.per_step_s, f" (worst: hidden {p.spec.n_hidden}, batch {p.batch})"
    add(f"width sweep: worst rustbp f32 / best PyTorch CPU f32{where}", worst, "<= 1.0x", lambda v: v <= 1.0)
    for dt in ("float32", "float64"):
        v = ratio("digits", rustbp_name(dt, "rust"), "scikit-learn MLPClassifier")
        add(f"digits to 97%: rustbp {dt} fit time / scikit-learn's", v, "<= 0.25x", lambda v: v <= 0.25)
    return out


def report(points: list[Point], notes: list[str], say: Callable[[str], None]) -> list[dict[str, Any]]:
    baseline = rustbp_name("float64", "rust")
    titles = {
        "article": "The article: 2-2-2, one sample, SGD lr 0.5, half_sse, shared biases not trained",
        "article-torch": ("The article's PyTorch setting: 2-2-2, MSE, per-neuron biases, SGD lr 0.5 momentum 0.9"),
        "large": "784-1024-10, batch 256, ReLU + softmax cross-entropy, SGD lr 0.1 momentum 0.9",
        "digits": "scikit-learn's digits, 64-128-10: time to 97% test accuracy (Adam, batch 32)",
        "gpu-article": "GPU: the article's 2-2-2, one sample, SGD lr 0.5, half_sse, shared biases not trained",
        "gpu-wide": "GPU: a wide net in float32, sigmoid, half_sse, SGD lr 0.1 (PyTorch with TF32 off)",
    }
    for p in points:
        if p.workload in ("sweep", "native"):
            continue
        title = titles[p.workload]
        if p.workload.startswith("gpu"):
            base = rustbp_name("float32", "rust", "gpu")
            size = f"{p.spec.n_in}-{p.spec.n_hidden}-{p.spec.n_out}, batch {p.batch}"
            title += f": {size}" + (" (reduced)" if p.extra.get("reduced") else "")
        else:
            base = rustbp_name("float32", "rust") if p.workload == "digits" else baseline
        say(
            f"\n{title}: {p.steps} "
            f"{'epochs (NumPy f64)' if p.workload == 'digits' else 'steps'}, "
            f"float64 reference loss {p.reference_loss:.16g}"
        )
        say(table(p, base))
    sweep = [p for p in points if p.workload == "sweep"]
    if sweep:
        say("\nWidth sweep: 64-H-10, sigmoid, MSE, SGD lr 0.1 (! = loss mismatch)")
        say(sweep_table(sweep))
    nat = [p for p in points if p.workload == "native"]
    if nat:
        say("\nrustbp at batch 1 against plain C++ loops: n-n-n, sigmoid, half_sse, SGD lr 0.5 (! = loss mismatch)")
        say(native_table(nat))
    found = targets(points)
    say("\nPerformance goals, as measured in this run")
    for t in found:
        v = t["measured"]
        shown = "not measured" if v is None else (f"{v:,.2f} {t['unit']}" if t["unit"] == "us" else f"{v:,.3g}x")
        mark = {None: "-", True: "reached", False: "not reached"}[t["met"]]
        say(f"  {t['target']:<80} {shown:>14}  goal {t['goal']:<10} {mark}")
    bad = [(p, r) for p in points for r in p.results if r.agrees is False]
    if bad:
        say("\n" + "!" * 100)
        for p, r in bad:
            say(
                f"!!! LOSS MISMATCH: {r.impl} on {p.workload} (hidden {p.spec.n_hidden}, "
                f"batch {p.batch}) ended at "
                f"{r.final_loss:.16g}, the float64 reference at {p.reference_loss:.16g}: ITS MATH DIFFERS"
            )
        say("!" * 100)
    for n in notes:
        say(f"note: {n}")
    return found


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
    # Move everything the imports made out of the collector's way, so the collection before each timed
    # run (which keeps one implementation's garbage out of the next one's time) costs little.
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
        help=f"comma-separated subset of {','.join(WORKLOADS)} (default: all but gpu; gpu: rustbp's GPU against "
        "PyTorch CUDA)",
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
    ):
        if getattr(args, name) is not None:
            setattr(plan, name, getattr(args, name))
    if args.article_steps is not None:
        plan.article_torch_steps = args.article_steps
    stem = args.stem or ("bench-quick" if args.quick else "bench")
    code = run_plan(plan, args.out, stem)
    sys.stdout.flush()
    return code
