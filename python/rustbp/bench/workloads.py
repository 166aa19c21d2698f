"""``rustbp bench``'s workloads: the article's net, the width sweep, the large net, digits to 97%, the
native programs, populations, the GPU set; the machine's peak and description."""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import platform
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any, Callable, cast

import numpy as np

import rustbp
from rustbp._types import Device, Dtype

from . import native, torch_net
from .impls import Array, Impl, Spec, Trainer, rustbp_name, short, threads_for
from .measure import (
    ARTICLE,
    ARTICLE_IMPLS,
    ARTICLE_T,
    ARTICLE_TORCH,
    ARTICLE_X,
    DIGITS,
    GPU_WIDE,
    GPU_WIDE_FULL,
    GPU_WIDE_REDUCED,
    LARGE,
    LARGE_IMPLS,
    NATIVE,
    POPULATION_ARTICLE,
    POPULATION_DIGITS,
    PURE_MAX_WORK,
    SWEEP,
    SWEEP_IMPLS,
    Plan,
    Point,
    Result,
    agree,
    interleave,
    native_result,
    rustbp_impls,
    start_weights,
    time_point,
)
from .report import native_label


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
    """rustbp's GPU path against PyTorch CUDA eager: the article's net (steps per second), the digits'
    64-32-10 on a batch of 32 (one network of the population workload, on the fused kernel), and a wide net
    in float32 (samples per second; reduced, as the small net's steps, on a software adapter or with
    --quick)."""
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
    spec, batch = POPULATION_DIGITS, 32
    X, T = rng.uniform(size=(batch, spec.n_in)), np.eye(spec.n_out)[rng.integers(0, spec.n_out, batch)]
    steps = 50 if reduced else 1000
    say(f"gpu: 64-32-10, batch {batch}, float32, {steps} steps ...")
    chosen = [impls[gpu], *cuda, impls[rustbp_name("float32", "rust")]]
    small = time_point("gpu-small", spec, start_weights(spec), X, T, chosen, plan.reps, steps)
    fused = rustbp.Network(spec.n_in, spec.n_hidden, spec.n_out, device="gpu")._core.uses_fused(batch)
    small.extra["fused_kernel"] = fused
    for p in (article, small, wide):
        p.extra.update({"missing": missing, "reduced": reduced and p is not article, "software_adapter": software})
    return [article, small, wide]


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


# -- populations -------------------------------------------------------------------------------------

POP_LOOP = {"float32": "rustbp f32 Network.fit loop", "float64": "rustbp f64 Network.train loop"}
POP = {"float32": "rustbp f32 Population.fit", "float64": "rustbp f64 Population.train"}
POP_GPU = "rustbp GPU f32 Population.fit"
#: How far a GPU member's final loss may be from its CPU network's: float32 rounding, grown over the run.
POP_GPU_RTOL = 1e-2
STACKED = {
    "cpu": "PyTorch CPU f32 stacked (baddbmm)",
    "cpu 1 thread": "PyTorch CPU f32 stacked (baddbmm) 1 thread",
    "cuda": "PyTorch CUDA f32 stacked (baddbmm)",
}
#: How far PyTorch's mean final loss may be from rustbp's: its mini-batches come in another order.
STACKED_RTOL = 0.25


@dataclass
class Way:
    """One way of training every member: ``build()`` sets up (untimed) and returns the timed run, which
    returns each member's final loss."""

    name: str
    dtype: str
    device: str  # cpu or gpu, as the peak is keyed
    build: Callable[[], Callable[[], Array]]


def population(spec: Spec, size: int, dtype: str, seed: int = 0, device: str = "cpu") -> rustbp.Population:
    """``size`` networks of ``spec``: member i is ``spec.network(dtype, seed=seed + i)`` on ``device``."""
    return rustbp.Population(
        spec.n_in, spec.n_hidden, spec.n_out, size, hidden_activation=spec.hidden, output_activation=spec.output,
        loss=spec.loss, bias=spec.bias, train_bias=spec.train_bias,
        optimizer=rustbp.SGD(lr=spec.lr, momentum=spec.momentum), dtype=cast(Dtype, dtype), seed=seed,
        device=cast(Device, device),
    )  # fmt: skip


def time_ways(ways: list[Way], reps: int) -> dict[str, tuple[list[float], Array]]:
    """Each way's times (interleaved, a new order each round) and its last run's final member losses."""
    finals: dict[str, Array] = {}

    def go(run: tuple[str, Callable[[], Array]]) -> float:
        finals[run[0]] = np.asarray(run[1](), dtype=np.float64)
        return float(np.mean(finals[run[0]]))

    timed = interleave(ways, lambda w: (w.name, w.build()), go, reps)
    return {name: (times, finals[name]) for name, (times, _) in timed.items()}


def digits_rows() -> tuple[Array, Array]:
    """All of scikit-learn's digits, X / 16 and one-hot targets, in float32."""
    d = importlib.import_module("sklearn.datasets").load_digits()
    X = np.asarray(d.data, dtype=np.float32) / 16
    return X, np.eye(10, dtype=np.float32)[np.asarray(d.target)]


def stacked_agrees(torch: Any, device: str, X: Array, Y: Array, steps: int = 3) -> bool:
    """The stacked PyTorch model and a population, from the same weights, on one batch: every member's
    loss at every step equal to float32 rounding (so the timed model computes the same training)."""
    pop = population(POPULATION_DIGITS, 4, "float32")
    w, lr = pop.get_weights(), POPULATION_DIGITS.lr
    net = torch_net.StackedTorchNet(torch, w, lr=lr, dtype="float32", device=device.split()[0])
    want = pop.train(X, Y, steps)
    x, y = net.tensor(X), net.tensor(Y)
    got = np.stack([net.step(x, y).cpu().numpy() for _ in range(steps)], axis=1)
    return bool(np.allclose(got, want, rtol=1e-4, atol=1e-6))


def run_population_digits(
    plan: Plan, torch: Any, devices: list[str], missing: dict[str, str], say: Callable[[str], None], gpu: bool
) -> Point:
    """``plan.population_size`` networks 64-32-10 on the digits, ``plan.population_epochs`` epochs at batch
    32: a Python loop of ``Network.fit``, one ``Population.fit`` (and with ``gpu`` one on rustbp's GPU), and
    PyTorch's stacked model per device. Every member sees the same mini-batch order (rustbp's seeded
    shuffle; PyTorch: NumPy's)."""
    spec, size, epochs = POPULATION_DIGITS, plan.population_size, plan.population_epochs
    X, Y = digits_rows()
    n, batch, seed = len(X), 32, 0
    steps = epochs * math.ceil(n / batch)

    def loop(size: int, epochs: int) -> Callable[[], Array]:
        nets = [spec.network("float32", seed=i) for i in range(size)]
        return lambda: np.array([net.fit(X, Y, epochs, batch, seed=seed).history["loss"][-1] for net in nets])

    def fit(size: int, epochs: int, device: str = "cpu") -> Callable[[], Array]:
        pop = population(spec, size, "float32", device=device)
        return lambda: pop.fit(X, Y, epochs, batch, seed=seed).loss[:, -1]

    def stacked(device: str, size: int, epochs: int) -> Callable[[], Array]:
        w = population(spec, size, "float32").get_weights()
        net = torch_net.StackedTorchNet(torch, w, lr=spec.lr, dtype="float32", device=device.split()[0])
        # As the other PyTorch columns: rustbp's thread rule for the whole stacked step, or one thread
        # (on a shared machine, idle-spinning threads can cost more than they give).
        torch.set_num_threads(1 if device == "cpu 1 thread" else threads_for(size * spec.work(batch)))
        x, y = net.tensor(X), net.tensor(Y)
        orders = [np.random.default_rng([seed, e]).permutation(n) for e in range(epochs)]
        return lambda: net.fit(x, y, orders, batch)

    makers: list[tuple[str, str, Callable[[int, int], Callable[[], Array]]]] = [
        (POP_LOOP["float32"], "cpu", loop),
        (POP["float32"], "cpu", fit),
    ]
    if gpu:
        makers.append((POP_GPU, "gpu", partial(fit, device="gpu")))
    makers += [(STACKED[d], "gpu" if d == "cuda" else "cpu", partial(stacked, d)) for d in devices]
    say(
        f"population: {size} networks 64-32-10 (relu, softmax), SGD lr 0.1, float32, digits ({n} samples), "
        f"{epochs} epochs at batch {batch} ..."
    )
    for _, _, make in makers:  # warm-up: threads, pages, kernels
        make(min(size, 4), 1)()
    ways = [Way(name, "float32", device, partial(make, size, epochs)) for name, device, make in makers]
    timed = time_ways(ways, plan.reps)
    _, ref = timed[POP_LOOP["float32"]]
    ref_loss = float(np.mean(ref))
    results = []
    for w in ways:
        times, finals = timed[w.name]
        loss = float(np.mean(finals))
        extra: dict[str, Any] = {"device": w.device, "members": size}
        if w.name == POP["float32"]:
            # rustbp promises member i is bit for bit the network with seed i given the same calls.
            extra["members_identical_to_loop"] = int(np.sum(finals == ref))
            ok: bool | None = bool(np.array_equal(finals, ref))
        elif w.name == POP_GPU:
            # Each member within float32 rounding, grown over the run, of its network on the CPU.
            extra["final_loss_within"] = POP_GPU_RTOL
            ok = bool(np.allclose(finals, ref, rtol=POP_GPU_RTOL))
        elif w.name in STACKED.values():
            device = next(d for d, name in STACKED.items() if name == w.name)
            same_step = stacked_agrees(torch, device, X[:batch], Y[:batch])
            in_range = bool(np.all(np.isfinite(finals))) and abs(loss - ref_loss) <= STACKED_RTOL * ref_loss
            extra.update({"same_steps_as_population": same_step, "final_loss_within": STACKED_RTOL})
            ok = same_step and in_range
        else:
            ok = None  # the reference
        results.append(Result(w.name, "float32", size * steps, times, loss, ok, extra))
    point = Point("population-digits", spec, batch, steps, ref_loss, results)
    point.extra.update(
        {
            "members": size,
            "epochs": epochs,
            "samples": n,
            "order": "every member the same order each epoch: rustbp's seeded shuffle, PyTorch NumPy's",
            "missing": missing,
            "speed_up": speed_ups(point, POP["float32"]),
        }
    )
    return point


def run_population_article(plan: Plan, say: Callable[[str], None]) -> Point:
    """``plan.population_copies`` copies of the article's 2-2-2 from random starts (member i seeded i),
    ``plan.population_steps`` steps each on the article's sample: a loop of ``Network.train`` calls
    against one ``Population.train``, both float64."""
    spec, size, steps = POPULATION_ARTICLE, plan.population_copies, plan.population_steps

    def loop(size: int, steps: int) -> Callable[[], Array]:
        nets = [spec.network("float64", seed=i) for i in range(size)]
        return lambda: np.array([net.train(ARTICLE_X, ARTICLE_T, steps)[-1] for net in nets])

    def train(size: int, steps: int) -> Callable[[], Array]:
        pop = population(spec, size, "float64")
        # A copy: the column alone, not the (size, steps) losses it is a view of.
        return lambda: pop.train(ARTICLE_X, ARTICLE_T, steps)[:, -1].copy()

    say(f"population: {size:,} copies of the article's 2-2-2 from random starts, {steps:,} steps each ...")
    makers = [(POP_LOOP["float64"], loop), (POP["float64"], train)]
    for _, make in makers:
        make(min(size, 4), 10)()
    ways = [Way(name, "float64", "cpu", partial(make, size, steps)) for name, make in makers]
    timed = time_ways(ways, plan.reps)
    _, ref = timed[POP_LOOP["float64"]]
    results = []
    for w in ways:
        times, finals = timed[w.name]
        ok = bool(np.array_equal(finals, ref)) if w.name == POP["float64"] else None
        extra = {"device": "cpu", "members": size, "members_identical_to_loop": int(np.sum(finals == ref))}
        results.append(Result(w.name, "float64", size * steps, times, float(np.mean(finals)), ok, extra))
    point = Point("population-article", spec, 1, steps, float(np.mean(ref)), results)
    point.extra.update({"members": size, "speed_up": speed_ups(point, POP["float64"])})
    return point


def speed_ups(point: Point, of: str) -> dict[str, float]:
    """``of``'s speed-up over every other result of the point (their time over its)."""
    mine = point.get(of)
    if mine is None:
        return {}
    return {r.impl: r.per_step_s / mine.per_step_s for r in point.results if r.impl != of}


def run_population(plan: Plan, impls: dict[str, Impl], say: Callable[[str], None], notes: list[str]) -> list[Point]:
    """Many networks trained as one (``rustbp.Population``) against a Python loop over the networks and
    PyTorch's stacked model; time per network-step = total time / (members x steps)."""
    torch = torch_net.load()
    devices: list[str] = []
    missing: dict[str, str] = {}
    if torch is None:
        missing = {name: "PyTorch is not installed" for name in STACKED.values()}
    else:
        devices = ["cpu", "cpu 1 thread"] + (["cuda"] if torch.cuda.is_available() else [])
        if "cuda" not in devices:
            missing[STACKED["cuda"]] = "PyTorch sees no CUDA device"
    points = []
    if importlib.util.find_spec("sklearn") is None:
        notes.append("population on the digits: scikit-learn is not installed (it holds the data set), skipped")
    else:
        gpu = any(impl.family == "rustbp-gpu" for impl in impls.values())
        points.append(run_population_digits(plan, torch, devices, missing, say, gpu))
    points.append(run_population_article(plan, say))
    notes.append(
        f"populations: members run side by side on the core's thread pool ({os.cpu_count()} cores here); tiny "
        "members on one sample (the 2-2-2) go 16 to a group, one per SIMD lane, while larger ones (the digits) "
        "each run the network's own kernels (no product spans members), so there a population gains what the "
        "cores and the saved per-call costs give; on the GPU, members of up to 2,560 parameters (the digits' "
        "64-32-10 among them) train side by side, one workgroup each, a step of the group one launch; the "
        "population goals are the product's targets"
    )
    return points


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
