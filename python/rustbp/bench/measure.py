"""``rustbp bench``'s measuring: the workloads' settings, the plan of a run, interleaved timing of the
implementations, and the agreement check against the float64 NumPy reference."""

from __future__ import annotations

import gc
import random
import shlex
import statistics
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Callable, Protocol, TypeVar

import numpy as np

from . import native, numpy_net
from .impls import Array, Impl, Params, Spec, Trainer, rustbp_name

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
#: The population workload's nets: many 64-32-10 on the digits, many copies of the article's 2-2-2.
POPULATION_DIGITS = Spec(64, 32, 10, hidden="relu", output="softmax", loss="cross_entropy", lr=0.1)
POPULATION_ARTICLE = ARTICLE
WORKLOADS = ("article", "sweep", "large", "digits", "native", "population", "gpu")
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
    # population is asked for by name: its 10^8 network-steps of the 2-2-2 alone take minutes per repetition.
    workloads: tuple[str, ...] = ("article", "sweep", "large", "digits", "native")
    gpu: bool = True  # rustbp's GPU columns, when an adapter is found
    native_steps: int = 10_000_000  # steps of each timed run of the article's C++ programs
    native_widths: tuple[int, ...] = tuple(2**k for k in range(1, 9))  # n of the n-n-n native reference
    gpu_article_steps: int = 10_000
    peak_size: int = 2048  # of the matrix product that measures the peak
    population_size: int = 128  # members of the digits population
    population_epochs: int = 5
    population_copies: int = 10_000  # members of the article's 2-2-2 population
    population_steps: int = 10_000
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
            population_size=16,
            population_epochs=1,
            population_copies=100,
            population_steps=1000,
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


class Named(Protocol):
    @property
    def name(self) -> str: ...


N = TypeVar("N", bound=Named)
R = TypeVar("R")


def interleave(
    impls: Sequence[N], build: Callable[[N], R], go: Callable[[R], float], reps: int
) -> dict[str, tuple[list[float], float]]:
    """Times ``go(build(impl))`` for every implementation, ``reps`` rounds, in a new order each round;
    returns each one's times and the value of its last run. ``build`` is not timed."""
    out: dict[str, tuple[list[float], float]] = {i.name: ([], float("nan")) for i in impls}
    order = list(impls)
    # The collector is run once here and kept off while timing, so that no collection falls inside a
    # timed run. Not run before each: a full collection walks every object (60 ms with PyTorch loaded)
    # and leaves the next run cold; rustbp's 2-2-2 then took 160 ns a step over 2,000 steps, not 100.
    gc.collect()
    enabled = gc.isenabled()
    gc.disable()
    try:
        for r in range(reps):
            # A fresh order every round: rotating a fixed one would give each implementation the same
            # predecessor every time, and a predecessor's lingering threads cost its successor up to 20%.
            random.Random(r).shuffle(order)
            for impl in order:
                trainer = build(impl)
                t0 = time.perf_counter()
                value = go(trainer)
                dt = time.perf_counter() - t0
                times, _ = out[impl.name]
                times.append(dt)
                out[impl.name] = (times, value)
    finally:
        if enabled:
            gc.enable()
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


def start_weights(spec: Spec, seed: int = 0) -> Params:
    return spec.network("float64", seed=seed).get_weights()
