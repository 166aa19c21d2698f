"""Fuzzes rustbp's whole public API with hypothesis, in two kinds of case.

Chaos: random shapes, dtypes, values (NaN, inf, huge), argument types and combinations for Network, its
methods, SGD and Adam. Such a case passes when every call either returns a well-formed result or raises
one of the documented exceptions (ValueError, TypeError, MemoryError, rustbp.TrainingDivergedError, and
rustbp.GpuUnavailableError only where no GPU adapter exists), and the network's weights stay finite.

Differential: a valid random network (any activation, loss, bias mode, optimizer, dtype, device; widths
up to 70, so that two wide ones pass the GPU's fused-kernel limit of 2,560 parameters) and a sequence of
valid calls (forward, loss, train_step, train, fit with its options or a TrainingConfig, set_weights,
save/load, pickle, copy, ``to``, ``from_config``), each checked against the independent NumPy reference
of tests/_reference.py (values and shapes). Any exception on these valid inputs is a finding.

A Rust panic (pyo3's PanicException, a BaseException) or a crash fails either kind.

    python tests/fuzz.py --cases 10000             # `make fuzz`; prints cases, seed, time and findings
    python tests/fuzz.py --cases 200 --seed 1234   # replays the run that printed seed 1234

tests/test_fuzz.py runs a few hundred derandomized cases and a few hundred freshly seeded ones in a
subprocess, so that a crash fails that test instead of killing pytest.
"""

from __future__ import annotations

import argparse
import copy
import logging
import math
import os
import pickle
import random
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from dataclasses import replace
from typing import Any, Callable

import numpy as np
import rustbp
from _reference import Reference
from hypothesis import HealthCheck, given, seed, settings
from hypothesis import strategies as st


def _has_gpu() -> bool:
    try:
        return bool(rustbp.gpu_devices())
    except Exception:
        return False


HAS_GPU = _has_gpu()
_quiet = logging.getLogger("rustbp")
_quiet.addHandler(logging.NullHandler())
_quiet.propagate = False
# GpuUnavailableError is documented for device="gpu" where no adapter is found, and only there.
DOCUMENTED: tuple[type[BaseException], ...] = (
    ValueError,
    TypeError,
    MemoryError,
    rustbp.TrainingDivergedError,
    *(() if HAS_GPU else (rustbp.GpuUnavailableError,)),
)
ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity", "softmax"]
LOSSES = ["half_sse", "mse", "cross_entropy", "binary_cross_entropy"]
BIASES = ["per_neuron", "shared", "none"]

# -- values -----------------------------------------------------------------------------------------

SPECIAL = [0.0, -0.0, 1.0, -1.0, 1e-310, 1e38, 3.5e38, 1e300, -1e300, 1.7e308, math.inf, -math.inf, math.nan]
weird_objects = st.sampled_from([None, "abc", b"x", object(), [], {}, (), {1, 2}, 1j, "3", [["a"]], [1, [2]]])
numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True), st.sampled_from(SPECIAL), st.integers(-(2**70), 2**70)
)
# Integers where counts are expected: mostly small and valid, sometimes zero, negative, huge or not ints.
counts = st.one_of(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(-3, 0),
    st.sampled_from([2**62, 2**64, 2**100]),
    st.integers(1, 3).map(np.int64),
    st.sampled_from([True, 2.0, 2.5, "2", None, np.float64(2)]),
)
names = st.one_of(st.sampled_from(ACTIVATIONS + LOSSES + BIASES), st.text(max_size=8), weird_objects, st.integers())

DTYPES = [
    np.float64,
    np.float32,
    np.float16,
    np.longdouble,
    np.int8,
    np.int64,
    np.uint64,
    np.bool_,
    np.complex128,
    object,
    "U3",
    "datetime64[s]",
]


@st.composite
def arrays(draw: st.DrawFn, width: int, rows: int) -> object:
    """Something passed where an array of ``rows`` x ``width`` is expected: mostly a valid one (so that
    the calls also run), else anything from a wrong shape or dtype to a string."""
    if draw(st.integers(0, 5)) > 0:
        shape = draw(st.sampled_from([(rows, width), (rows, width), (width,)] if rows == 1 else [(rows, width)]))
        values = np.array(draw(st.lists(st.floats(-3, 3), min_size=int(np.prod(shape)), max_size=int(np.prod(shape)))))
        dtype = draw(st.sampled_from([np.float64, np.float32, np.float16, np.int64]))
        values = values.reshape(shape).astype(object)
    elif draw(st.integers(0, 5)) == 0:
        return draw(st.one_of(weird_objects, numbers))
    else:
        r = draw(st.integers(0, 4))
        shape = draw(st.sampled_from([(r, width), (width,), (r, width + 1), (r,), (), (1, r, width), (width, r)]))
        elements = numbers if draw(st.booleans()) else st.floats(-3, 3)
        size = int(np.prod(shape))
        values = np.array(draw(st.lists(elements, min_size=size, max_size=size)), dtype=object).reshape(shape)
        dtype = draw(st.sampled_from(DTYPES))
    try:
        with np.errstate(all="ignore"):
            a = values.astype(dtype)
    except (TypeError, ValueError, OverflowError):
        a = values
    layout = draw(st.integers(0, 7))
    if layout == 1 and a.ndim == 2:
        a = np.asfortranarray(a)
    elif layout == 2 and a.ndim >= 1:  # a non-contiguous view of the same values
        wide = np.repeat(a, 2, axis=-1)
        a = wide[..., ::2]
    elif layout == 3:
        return a.tolist()
    elif layout == 4 and a.dtype != object and a.nbytes:  # the same values at an odd address
        src, buf = a, np.zeros(a.nbytes + 1, dtype=np.uint8)[1:]
        a = np.frombuffer(buf, dtype=src.dtype).reshape(src.shape)
        a[...] = src
    elif layout == 5 and a.dtype.kind in "iuf":  # non-native byte order
        a = a.astype(a.dtype.newbyteorder())
    elif layout == 6:
        a.flags.writeable = False
    return a


@st.composite
def optimizers(draw: st.DrawFn) -> object:
    """SGD or Adam with random settings (the constructor may reject them), or something else entirely."""
    which = draw(st.integers(0, 5))
    num = st.one_of(st.floats(0, 1, exclude_max=True), numbers, weird_objects)
    if which == 0:
        return draw(st.one_of(weird_objects, st.just(rustbp.SGD)))
    if which <= 2:
        sgd = (
            draw(st.one_of(st.floats(1e-3, 2), num)),
            draw(st.one_of(st.just(0.0), num)),
            draw(st.one_of(st.booleans(), weird_objects)),
            draw(st.one_of(st.just(0.0), num)),
        )
        return call(lambda: rustbp.SGD(lr=sgd[0], momentum=sgd[1], nesterov=sgd[2], weight_decay=sgd[3]))
    betas = draw(st.one_of(st.tuples(num, num), st.just((0.9, 0.999)), weird_objects, st.lists(num, max_size=3)))
    adam = (
        draw(st.one_of(st.floats(1e-4, 1), num)),
        draw(st.one_of(st.just(1e-8), num)),
        draw(st.one_of(st.just(0.0), num)),
    )
    return call(lambda: rustbp.Adam(lr=adam[0], betas=betas, eps=adam[1], weight_decay=adam[2]))


def check_weights(net: rustbp.Network) -> None:
    w = net.get_weights()
    assert w["w1"].shape == (net.n_hidden, net.n_in) and w["w2"].shape == (net.n_out, net.n_hidden)
    for k, v in w.items():
        assert np.isfinite(v).all(), f"{k} holds a non-finite value"


def call(f: Callable[[], Any]) -> Any:
    """Runs one API call; only the documented exceptions may come out."""
    try:
        return f()
    except DOCUMENTED:
        return None
    except (KeyboardInterrupt, AssertionError):
        raise
    except BaseException as e:  # PanicException derives from BaseException: turn it into a failure
        raise AssertionError(f"undocumented {type(e).__module__}.{type(e).__name__}: {e}") from e


def unpickle_tampered(net: rustbp.Network, changes: dict[str, Any]) -> None:
    state = net.__getstate__()
    if "updates" in changes:
        state["optimizer_state"] = (state["optimizer_state"][0], changes.pop("updates"))
    state.update(changes)
    copy_ = rustbp.Network.__new__(rustbp.Network)
    copy_.__setstate__(state)
    check_weights(copy_)


def in_child(f: Callable[[], Any], accept: Callable[[BaseException], bool], what: str) -> None:
    """Runs ``f`` in a forked child, where an exception ``accept`` takes is an answer; the child must exit
    cleanly within a minute: never hang, crash or fail otherwise."""
    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            f()
        except BaseException as e:
            if not accept(e):
                print(f"{what}: {e!r}", file=sys.stderr, flush=True)
                code = 1
        os._exit(code)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0, f"{what}: the child failed ({status})"
            return
        time.sleep(0.001)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    raise AssertionError(f"{what}: the child hung")


def forked_forward(net: rustbp.Network, x: Any) -> None:
    """A forked child uses the network (the GPU refused clearly); it must exit, never hang."""

    def accept(e: BaseException) -> bool:
        if isinstance(e, rustbp.GpuUnavailableError):
            return "forked" in str(e) or isinstance(e, DOCUMENTED)
        return isinstance(e, DOCUMENTED)

    in_child(lambda: net.forward(x), accept, "forked forward")


# Mostly small, sometimes wide: two wide layers side by side pass the GPU's fused kernel (2,560
# parameters at most).
widths_ = st.one_of(st.integers(1, 5), st.integers(1, 5), st.integers(1, 5), st.integers(50, 90))


@st.composite
def chaos_cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    """A network (from random, mostly valid arguments) and a few random calls on it."""
    valid = draw(st.integers(0, 3)) > 0
    widths = [draw(widths_) for _ in range(3)] if valid else [draw(counts) for _ in range(3)]
    kw: dict[str, Any] = {}
    for key, options in (
        ("hidden_activation", ACTIVATIONS[:4]),
        ("bias", BIASES),
        ("dtype", ["float64", "float32"]),
    ):
        if draw(st.booleans()):
            kw[key] = draw(st.sampled_from(options)) if valid else draw(st.one_of(st.sampled_from(options), names))
    if draw(st.booleans()):
        output, loss = draw(
            st.sampled_from(
                [
                    ("sigmoid", "half_sse"),
                    ("identity", "mse"),
                    ("softmax", "cross_entropy"),
                    ("sigmoid", "binary_cross_entropy"),
                    ("relu", "mse"),
                    ("tanh", "half_sse"),
                ]
            )
        )
        kw["output_activation"], kw["loss"] = (output, loss) if valid else (draw(names), draw(names))
    for key, strategy in (
        ("optimizer", optimizers()),
        ("train_bias", st.one_of(st.booleans(), weird_objects)),
        ("seed", st.one_of(st.integers(0, 2**64 - 1), st.integers(-5, 2**70), weird_objects)),
        ("device", st.sampled_from(["cpu", "gpu", "tpu", "", None, 0])),
    ):
        if draw(st.booleans()):
            kw[key] = draw(strategy)
    net = call(lambda: rustbp.Network(*widths, **kw))
    if net is None:
        return []
    n_in, n_out = net.n_in, net.n_out
    calls: list[Callable[[], Any]] = []
    for _ in range(draw(st.integers(1, 4))):
        ops = ["forward", "loss", "train_step", "train", "fit", "set_weights", "explain_step", "callbacks", "unpickle"]
        op = draw(st.sampled_from([*ops, "fork"] if hasattr(os, "fork") else ops))
        rows = 1 if op == "explain_step" else draw(st.integers(1, 4))
        x, t = draw(arrays(n_in, rows)), draw(arrays(n_out, rows))
        if op == "forward":
            calls.append(lambda x=x: net.forward(x))
        elif op == "loss":
            calls.append(lambda x=x, t=t: net.loss(x, t))
        elif op == "train_step":
            calls.append(lambda x=x, t=t: net.train_step(x, t))
        elif op == "explain_step":
            calls.append(lambda x=x, t=t: net.explain_step(x, t))
        elif op == "callbacks":
            cbs = draw(st.one_of(st.none(), weird_objects, st.lists(weird_objects, max_size=2)))
            calls.append(lambda x=x, t=t, c=cbs: net.fit(x, t, 1, callbacks=c))
        elif op == "unpickle":  # a tampered pickle: refused with a documented error, or a whole network
            changes = {
                "seed": draw(st.one_of(st.integers(-5, 2**65), weird_objects)),
                "device": draw(st.sampled_from(["cpu", "gpu", "tpu", 0])),
                "updates": draw(st.one_of(st.integers(-(2**64), 2**65), weird_objects)),
            }
            keep = draw(st.lists(st.sampled_from(sorted(changes)), max_size=3, unique=True))
            calls.append(lambda c={k: changes[k] for k in keep}: unpickle_tampered(net, c))
        elif op == "fork":
            calls.append(lambda x=x: forked_forward(net, x))
        elif op == "train":
            steps = draw(counts)
            calls.append(lambda x=x, t=t, s=steps: net.train(x, t, s))
        elif op == "fit":
            args = (
                draw(counts),
                draw(counts),
                draw(st.one_of(st.booleans(), weird_objects)),
                draw(st.one_of(st.none(), st.integers(-2, 2**65), weird_objects)),
            )
            calls.append(lambda x=x, t=t, a=args: net.fit(x, t, epochs=a[0], batch_size=a[1], shuffle=a[2], seed=a[3]))
        else:
            w: dict[Any, Any] = dict(net.get_weights())
            nan = np.full_like(w["w1"], np.nan)
            for key in draw(st.lists(st.sampled_from(["w1", "b1", "w2", "b2", "w3", 1]), max_size=2)):
                w[key] = draw(st.one_of(arrays(net.n_hidden, net.n_out), st.just(nan)))
            if draw(st.booleans()) and w:
                w.pop(draw(st.sampled_from(sorted(w, key=str))))
            weights = draw(st.one_of(st.just(w), weird_objects)) if draw(st.integers(0, 5)) == 0 else w
            calls.append(lambda w=weights: net.set_weights(w))
        calls.append(lambda: check_weights(net))
    return calls


# -- differential cases -----------------------------------------------------------------------------
# Valid inputs only, every result compared with tests/_reference.py. Tolerances are relative to each
# tensor's largest magnitude: float64 agrees to rounding (1e-9 allows for Adam dividing a gradient's
# rounding by a small sqrt(v) + eps); float32 (and the GPU, which is float32) to 1e-3 over these few steps
# of moderate learning rates.
TOL = {"float64": 1e-9, "float32": 1e-3}
OUTPUT_LOSS = [(o, loss) for o in ACTIVATIONS[:4] for loss in ("half_sse", "mse")] + [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
]
NAMES = ("w1", "b1", "w2", "b2")


def close(got: Any, want: Any, tol: float, what: str, atol: float = 0.0) -> None:
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, the reference's {want.shape}"
    assert np.isfinite(got).all(), f"{what}: non-finite values {got}"
    scale = max(float(np.abs(want).max(initial=0.0)), 1e-30)
    err = float(np.abs(got - want).max(initial=0.0))
    assert err <= tol * scale + atol, (
        f"{what}: relative error {err / scale:.3g} > {tol:g} (absolute {err:.3g}, allowed {atol:.3g} more)"
        f"\ngot  {got}\nwant {want}"
    )


def same_network(got: rustbp.Network, want: rustbp.Network, what: str) -> None:
    """The same weights, optimizer state and update count, bit for bit."""
    w0, w1 = got.get_weights(), want.get_weights()
    assert w0.keys() == w1.keys(), what
    for k in w0:
        np.testing.assert_array_equal(w0[k], w1[k], err_msg=f"{what}: {k}")
    (s0, u0), (s1, u1) = got._core.get_optimizer_state(), want._core.get_optimizer_state()
    assert u0 == u1, f"{what}: {u0} updates, the other {u1}"
    for a, b in zip(s0, s1):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y, err_msg=f"{what}: optimizer state")


class Twin:
    """A rustbp network and the reference trained alongside it."""

    def __init__(self, net: rustbp.Network) -> None:
        self.net = net
        self.ref = Reference(net.get_weights(), net.config)
        self.tol = TOL[net.dtype]

    def sync(self) -> None:
        """Restarts the reference from the network's exact weights and optimizer state (after a conversion
        that rounds them, once the conversion itself has been checked)."""
        self.ref.w = {k: v.astype(np.float64) for k, v in self.net.get_weights().items()}
        state, updates = self.net._core.get_optimizer_state()
        opt = self.ref.optimizer
        for name, slots in zip(NAMES, state):
            if name not in self.ref.w or not slots:
                continue
            shape = self.ref.w[name].shape
            if hasattr(opt, "m"):
                opt.m[name], opt.v[name] = (a.astype(np.float64).reshape(shape) for a in slots)
            else:
                opt.buf[name] = slots[0].astype(np.float64).reshape(shape)
        if hasattr(opt, "t"):
            opt.t = updates
        self.tol = TOL[self.net.dtype]

    def cast(self, X: np.ndarray) -> np.ndarray:
        """The values the network computes with."""
        return np.asarray(X, dtype=self.net.dtype).astype(np.float64)

    def check_weights(self, what: str) -> None:
        w = self.net.get_weights()
        assert w.keys() == self.ref.w.keys(), f"{what}: {sorted(w)} vs {sorted(self.ref.w)}"
        # Adam divides a gradient by its own size. Where the exact gradient is 0 (a shared output bias
        # under softmax cross-entropy sums p - t, which is 0), each side's rounding noise (1e-16) becomes
        # an update of up to lr * noise / eps, which the two sides do not share.
        opt = self.ref.optimizer
        atol = opt.t * opt.lr * 1e-15 / opt.eps if hasattr(opt, "eps") else 0.0
        for k in w:
            assert w[k].dtype == np.dtype(self.net.dtype), f"{what}: {k} is {w[k].dtype}"
            close(w[k], self.ref.w[k], self.tol, f"{what}: {k}", atol)

    def swap(self, other: rustbp.Network, what: str, exact: bool = True) -> None:
        """Continues with ``other``, a copy of the network: same configuration, weights and state."""
        assert other.config == replace(self.net.config, seed=other.config.seed), f"{what}: {other.config}"
        if exact:
            same_network(other, self.net, what)
        else:
            assert self.net.get_weights().keys() == other.get_weights().keys(), what
        self.net = other


def reference_fit(t: Twin, X: np.ndarray, Y: np.ndarray, epochs: int, batch: int, opts: dict[str, Any]) -> Any:
    """What fit (unshuffled) must record and leave: the History's metrics and the stopping decisions,
    computed with the reference. Returns (metrics, stopped_early, best_epoch) or None when a decision
    rests on a near tie that rounding could tip either way."""
    ref, Xc, Yc = t.ref, t.cast(X), t.cast(Y)
    val = opts.get("validation_data")
    if opts.get("validation_split"):
        n_train = int(len(Xc) * (1 - opts["validation_split"]))
        Xv, Yv = Xc[n_train:], Yc[n_train:]
        Xc, Yc = Xc[:n_train], Yc[:n_train]
    elif val is not None:
        Xv, Yv = t.cast(val[0]), t.cast(val[1])
    has_val = val is not None or bool(opts.get("validation_split"))
    accuracy = opts.get("accuracy")
    val_acc = has_val and (accuracy is True or (accuracy is None and ref.loss_name == "cross_entropy"))

    def acc(X_: np.ndarray, Y_: np.ndarray) -> tuple[float, int, int]:
        """Accuracy, how many rows sit on a near tie that rounding could tip, and the rows."""
        out = ref.forward(X_)
        if out.shape[1] == 1:
            ties = np.sum(abs(out[:, 0] - 0.5) < 1e-6)
            return float(np.mean((out[:, 0] >= 0.5) == (Y_[:, 0] >= 0.5))), int(ties), len(out)
        top = np.sort(out, axis=1)
        return float(np.mean(out.argmax(1) == Y_.argmax(1))), int(np.sum(top[:, -1] - top[:, -2] < 1e-6)), len(out)

    metrics: dict[str, list[Any]] = {}
    patience, min_delta = opts.get("patience"), opts.get("min_delta", 0.0)
    monitor = "val_loss" if has_val else "loss"
    best, wait, best_epoch, best_w, stopped = math.inf, 0, None, None, False
    for epoch in range(epochs):
        total = 0.0
        for i in range(0, len(Xc), batch):
            total += ref.train_step(Xc[i : i + batch], Yc[i : i + batch]) * len(Xc[i : i + batch])
        logs: dict[str, Any] = {"loss": total / len(Xc)}
        if accuracy is True:
            logs["accuracy"] = acc(Xc, Yc)
        if has_val:
            logs["val_loss"] = ref.loss(Xv, Yv)
            if val_acc:
                logs["val_accuracy"] = acc(Xv, Yv)
        for k, v in logs.items():
            metrics.setdefault(k, []).append(v)
        stop = opts.get("stop_after") == epoch
        if patience is not None:
            margin = logs[monitor] - (best - min_delta)
            if abs(margin) < 1e-9 * max(abs(logs[monitor]), 1e-300):
                return None
            if margin < 0:
                best, wait, best_epoch = logs[monitor], 0, epoch
                best_w = {k: v.copy() for k, v in ref.w.items()}
            else:
                wait += 1
                stop = stop or wait >= patience
        if stop:
            stopped = epoch + 1 < epochs
            break
    if best_w is not None and opts.get("restore_best_weights", True) and best_epoch != len(metrics["loss"]) - 1:
        ref.w = best_w
    return metrics, stopped, best_epoch


def check_fit(t: Twin, X: np.ndarray, Y: np.ndarray, epochs: int, batch: int, opts: dict[str, Any]) -> None:
    seen: list[tuple[int, dict[str, float]]] = []
    kw = {k: v for k, v in opts.items() if k != "stop_after"}
    if "stop_after" in opts:
        kw["callbacks"] = [lambda e, logs: seen.append((e, logs)) or e == opts["stop_after"]]
    elif opts.get("callbacks"):
        kw["callbacks"] = [lambda e, logs: seen.append((e, logs))]
    if kw.pop("config", False):
        history = t.net.fit(X, Y, config=rustbp.TrainingConfig(epochs=epochs, batch_size=batch, shuffle=False, **kw))
    else:
        history = t.net.fit(X, Y, epochs, batch_size=batch, shuffle=False, **kw)
    expected = reference_fit(t, X, Y, epochs, batch, opts)
    if expected is None:  # a near tie in early stopping: restart the reference from the network
        t.sync()
        return
    metrics, stopped, best_epoch = expected
    assert set(history.history) == set(metrics), f"fit recorded {sorted(history.history)}, want {sorted(metrics)}"
    for k, want in metrics.items():
        got = history.history[k]
        if k.endswith("accuracy"):
            assert len(got) == len(want), f"fit {k}: {got} vs {want}"
            for g, (w, ties, n) in zip(got, want):
                assert abs(g - w) * n <= ties + 1e-9, f"fit {k}: {got} vs {want}"
        else:
            close(got, want, t.tol, f"fit {k}")
    assert history.stopped_early == stopped and history.epochs == len(metrics["loss"])
    if opts.get("patience") is not None:
        assert history.best_epoch == best_epoch, f"best_epoch {history.best_epoch}, want {best_epoch}"
    if seen:
        assert [e for e, _ in seen] == list(range(history.epochs))
    assert isinstance(np.asarray(history), np.ndarray) and np.asarray(history).shape == (history.epochs,)
    t.check_weights("after fit")


@st.composite
def differential_cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    """A valid network and valid calls, each checked against the reference."""
    small = st.integers(1, 6)
    wide = st.one_of(small, small, small, st.integers(33, 70))
    n_in, n_hidden, n_out = draw(wide), draw(wide), draw(wide)
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    if output == "softmax":
        n_out = max(n_out, 2)
    dtype = draw(st.sampled_from(["float64", "float32"]))
    device = "gpu" if HAS_GPU and draw(st.integers(0, 7)) == 0 else "cpu"
    if device == "gpu":
        dtype = "float32"
    # Small enough steps for these widths and inputs in [-3, 3] never to diverge: a divergence here would
    # be the reference's too, and tells nothing.
    lr = draw(st.floats(1e-3, 0.3)) / max(n_in, n_hidden, n_out)
    if draw(st.booleans()):
        mu = draw(st.sampled_from([0.0, 0.5, 0.9]))
        opt: Any = rustbp.SGD(
            lr=lr,
            momentum=mu,
            nesterov=mu > 0 and draw(st.booleans()),
            weight_decay=draw(st.sampled_from([0.0, 0.0, 1e-3, 0.1])),
        )
    else:
        # float32's gradient rounding, divided by sqrt(v) + eps, must stay below the tolerance.
        eps = draw(st.sampled_from([1e-8, 1e-6, 1e-3])) if dtype == "float64" else draw(st.sampled_from([1e-3, 1e-2]))
        opt = rustbp.Adam(
            lr=lr / 5,
            betas=(draw(st.sampled_from([0.0, 0.8, 0.9])), draw(st.sampled_from([0.9, 0.999]))),
            eps=eps,
            weight_decay=draw(st.sampled_from([0.0, 1e-2])),
        )
    bias = draw(st.sampled_from(BIASES))
    kw = {
        "hidden_activation": draw(st.sampled_from(ACTIVATIONS[:4])),
        "output_activation": output,
        "loss": loss,
        "bias": bias,
        "train_bias": draw(st.booleans()),
        "optimizer": opt,
        "dtype": dtype,
        "device": device,
        "seed": draw(st.integers(0, 2**64 - 1)),  # not None: hypothesis replays a failure exactly
    }
    data = st.floats(-3, 3, allow_subnormal=True)

    def matrix(rows: int, cols: int) -> np.ndarray:
        return np.array(draw(st.lists(data, min_size=rows * cols, max_size=rows * cols))).reshape(rows, cols)

    def targets(rows: int) -> np.ndarray:
        if output == "softmax":
            e = np.exp(matrix(rows, n_out))
            return e / e.sum(axis=1, keepdims=True)
        return (
            np.clip(matrix(rows, n_out), -1 if output == "tanh" else 0, 1)
            if output != "identity"
            else matrix(rows, n_out)
        )

    calls: list[Callable[[], Any]] = []
    twin: list[Twin] = []

    def build() -> None:
        net = rustbp.Network(n_in, n_hidden, n_out, **kw)
        assert net.config == rustbp.NetworkConfig(n_in, n_hidden, n_out, **{**kw, "seed": net.config.seed})
        again = rustbp.Network.from_config(net.config)
        for k, v in net.get_weights().items():
            np.testing.assert_array_equal(again.get_weights()[k], v, err_msg=f"from_config: {k}")
        twin[:] = [Twin(net)]

    calls.append(build)
    for _ in range(draw(st.integers(1, 5))):
        op = draw(
            st.sampled_from(
                ["forward", "loss", "train_step", "train", "fit", "set_weights", "save", "pickle", "copy", "to"]
            )
        )
        rows = draw(st.integers(1, 6))
        X, T = matrix(rows, n_in), targets(rows)
        one = rows == 1 and draw(st.booleans())  # a 1-D sample
        x, tt = (X[0], T[0]) if one else (X, T)
        if op == "forward":

            def forward(x: np.ndarray = x, X: np.ndarray = X) -> None:
                t = twin[0]
                out = t.net.forward(x)
                assert out.dtype == np.dtype(t.net.dtype)
                close(out, t.ref.forward(t.cast(X))[0] if x.ndim == 1 else t.ref.forward(t.cast(X)), t.tol, "forward")

            calls.append(forward)
        elif op == "loss":
            calls.append(
                lambda X=X, T=T: close(
                    twin[0].net.loss(X, T), twin[0].ref.loss(twin[0].cast(X), twin[0].cast(T)), twin[0].tol, "loss"
                )
            )
        elif op == "train_step":

            def train_step(x: np.ndarray = x, tt: np.ndarray = tt, X: np.ndarray = X, T: np.ndarray = T) -> None:
                t = twin[0]
                got = t.net.train_step(x, tt)
                close(got, t.ref.train_step(t.cast(X), t.cast(T)), t.tol, "train_step loss")
                t.check_weights("after train_step")

            calls.append(train_step)
        elif op == "train":
            steps = draw(st.integers(1, 4))
            log = draw(st.sampled_from([None, 1, 3]))  # log_every with an INFO logger: the chunked path

            def train(X: np.ndarray = X, T: np.ndarray = T, steps: int = steps, log: int | None = log) -> None:
                t = twin[0]
                logger = logging.getLogger("rustbp")
                level = logger.level
                if log:
                    logger.setLevel(logging.INFO)  # records go to the NullHandler below, and no further
                try:
                    got = t.net.train(X, T, steps, log_every=log or 1000)
                finally:
                    logger.setLevel(level)
                assert got.shape == (steps,) and got.dtype == np.float64
                close(got, [t.ref.train_step(t.cast(X), t.cast(T)) for _ in range(steps)], t.tol, "train losses")
                t.check_weights("after train")

            calls.append(train)
        elif op == "fit":
            rows = draw(st.integers(2, 8))
            X, T = matrix(rows, n_in), targets(rows)
            opts: dict[str, Any] = {}
            option = draw(st.sampled_from(["plain", "config", "validation_data", "validation_split", "callbacks",
                                           "stop", "accuracy", "patience"]))  # fmt: skip
            if option == "config":
                opts["config"] = True
            elif option == "validation_data":
                opts["validation_data"] = (matrix(2, n_in), targets(2))
            elif option == "validation_split":
                opts["validation_split"] = draw(st.sampled_from([0.25, 0.5]))
            elif option == "callbacks":
                opts["callbacks"] = True
            elif option == "stop":
                opts["stop_after"] = draw(st.integers(0, 2))
            elif option == "accuracy":
                opts["accuracy"] = draw(st.sampled_from([True, False]))
                opts["validation_data"] = (matrix(3, n_in), targets(3))
            elif option == "patience":
                opts["patience"] = draw(st.integers(1, 2))
                opts["min_delta"] = draw(st.sampled_from([0.0, 1e-3]))
                opts["restore_best_weights"] = draw(st.booleans())
                if draw(st.booleans()):
                    opts["validation_data"] = (matrix(2, n_in), targets(2))
            epochs, batch = draw(st.integers(1, 4)), draw(st.integers(1, rows + 1))
            calls.append(lambda X=X, T=T, e=epochs, b=batch, o=opts: check_fit(twin[0], X, T, e, b, o))
        elif op == "set_weights":
            seed_ = draw(st.integers(0, 2**32 - 1))

            def set_weights(seed_: int = seed_) -> None:
                t = twin[0]
                rng = np.random.default_rng(seed_)
                # Within the initial range (1/sqrt(fan_in)), where the learning rates drawn above are stable.
                fan_in = {"w1": n_in, "b1": n_in, "w2": n_hidden, "b2": n_hidden}
                new = {k: rng.uniform(-1, 1, v.shape) / fan_in[k] ** 0.5 for k, v in t.net.get_weights().items()}
                t.net.set_weights(new)
                t.ref.w = {k: t.cast(v) for k, v in new.items()}  # the optimizer state is kept by both
                t.check_weights("after set_weights")

            calls.append(set_weights)
        elif op == "save":
            keep = draw(st.booleans())

            def save(keep: bool = keep) -> None:
                t = twin[0]
                with tempfile.TemporaryDirectory() as d:
                    path = os.path.join(d, "net.safetensors")
                    t.net.save(path, optimizer=keep)
                    loaded = rustbp.Network.load(path, device=t.net.device)
                assert loaded.config.n_in == n_in and loaded.dtype == t.net.dtype and loaded.device == t.net.device
                if keep:
                    t.swap(loaded, "save and load")
                else:  # the weights, with a fresh optimizer
                    t.swap(loaded, "save without optimizer state", exact=False)
                    t.ref = Reference(t.net.get_weights(), t.net.config)
                    t.check_weights("after load")

            calls.append(save)
        elif op == "pickle":
            calls.append(lambda: twin[0].swap(pickle.loads(pickle.dumps(twin[0].net)), "pickle"))
        elif op == "copy":
            calls.append(lambda: twin[0].swap(copy.deepcopy(twin[0].net), "deepcopy"))
        else:
            devices = ["cpu", "gpu"] if HAS_GPU else ["cpu"]
            target = draw(st.sampled_from(devices))
            new_dtype = "float32" if target == "gpu" else draw(st.sampled_from([None, "float64", "float32"]))

            def to(target: str = target, new_dtype: str | None = new_dtype) -> None:
                t = twin[0]
                moved = t.net.to(target, dtype=new_dtype)
                assert moved.device == target and moved.dtype == (
                    new_dtype or ("float32" if target == "gpu" else t.net.dtype)
                )
                for k, v in t.net.get_weights().items():
                    np.testing.assert_array_equal(moved.get_weights()[k], v.astype(moved.dtype), err_msg=f"to: {k}")
                t.net = moved
                t.sync()

            calls.append(to)
    return calls


@st.composite
def valid_setups(
    draw: st.DrawFn, gpu_odds: int = 5
) -> tuple[tuple[int, int, int], dict[str, Any], np.ndarray, np.ndarray]:
    """A valid small network's widths and options (its optimizer's rate never diverges, see
    differential_cases), on the GPU once in ``gpu_odds + 1`` where there is one, and a batch for it."""
    n_in, n_hidden, n_out = draw(st.integers(1, 9)), draw(st.integers(1, 9)), draw(st.integers(1, 9))
    output, loss = draw(st.sampled_from(OUTPUT_LOSS))
    n_out = max(n_out, 2) if output == "softmax" else n_out
    device = "gpu" if HAS_GPU and draw(st.integers(0, gpu_odds)) == 0 else "cpu"
    dtype = "float32" if device == "gpu" else draw(st.sampled_from(["float64", "float32"]))
    lr = draw(st.floats(1e-3, 0.3)) / max(n_in, n_hidden, n_out) / 2
    mu = draw(st.sampled_from([0.0, 0.9]))
    opt: Any = rustbp.SGD(lr=lr, momentum=mu) if draw(st.booleans()) else rustbp.Adam(lr=lr)
    kw = {
        "hidden_activation": draw(st.sampled_from(ACTIVATIONS[:4])), "output_activation": output, "loss": loss,
        "bias": draw(st.sampled_from(BIASES)), "train_bias": draw(st.booleans()), "optimizer": opt,
        "dtype": dtype, "device": device,
    }  # fmt: skip
    rng = np.random.default_rng(draw(st.integers(0, 2**32)))
    rows = draw(st.integers(1, 9))
    X = rng.uniform(-3, 3, (rows, n_in))
    if output == "softmax":
        T = rng.dirichlet(np.ones(n_out), rows) if n_out > 1 else np.ones((rows, 1))
    else:
        T = {"tanh": rng.uniform(-1, 1, (rows, n_out)), "identity": rng.normal(size=(rows, n_out))}.get(
            output, rng.uniform(0, 1, (rows, n_out))
        )
    return (n_in, n_hidden, n_out), kw, X, T


@st.composite
def population_cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    """A valid population and valid calls, member i checked bit for bit against the network built with its
    seed and learning rate and given the same calls (on the CPU and the GPU alike)."""
    (n_in, n_hidden, n_out), kw, X, T = draw(valid_setups())
    opt, rows = kw["optimizer"], len(X)
    # Past 16 members: tiny members train side by side in groups of 16 lanes.
    size = draw(st.sampled_from([1, 2, 4, 16, 17]))
    lrs = [opt.lr * draw(st.sampled_from([0.5, 1.0, 2.0])) for _ in range(size)]
    seed0 = draw(st.integers(0, 2**32))
    ops = draw(
        st.lists(st.sampled_from(["train", "fit", "bootstrap", "forward", "loss", "pickle"]), min_size=1, max_size=4)
    )
    # One-row batches often: tiny members then fit side by side in lanes too.
    fit_seed, epochs = draw(st.integers(0, 2**32)), draw(st.integers(1, 3))
    batch = draw(st.one_of(st.just(1), st.integers(1, rows)))
    steps = draw(st.integers(1, 40))

    def run() -> None:
        pop = rustbp.Population(n_in, n_hidden, n_out, size, lr=lrs, seed=seed0, **kw)
        nets = [rustbp.Network(n_in, n_hidden, n_out, **{**kw, "optimizer": replace(opt, lr=lrs[i])}, seed=seed0 + i)
                for i in range(size)]  # fmt: skip
        for op in ops:
            if op == "train":
                got, want = pop.train(X, T, steps), [n.train(X, T, steps) for n in nets]
            elif op in ("fit", "bootstrap"):
                got = pop.fit(X, T, epochs, batch, seed=fit_seed, bootstrap=op == "bootstrap").loss
                picks = [rustbp.population.bootstrap_rows(rows, fit_seed, i) if op == "bootstrap" else slice(None)
                         for i in range(size)]  # fmt: skip
                want = [n.fit(X[p], T[p], epochs, batch, seed=fit_seed).loss for n, p in zip(nets, picks)]
            elif op == "forward":
                got, want = pop.forward(X), [n.forward(X) for n in nets]
            elif op == "loss":
                got, want = pop.loss(X, T), [n.loss(X, T) for n in nets]
            else:
                pop = pickle.loads(pickle.dumps(pop))
                continue
            for i in range(size):
                np.testing.assert_array_equal(got[i], want[i], err_msg=f"population {op}: member {i}")
        for i, net in enumerate(nets):
            for k, v in net.get_weights().items():
                np.testing.assert_array_equal(pop[i].get_weights()[k], v, err_msg=f"population: member {i} {k}")

    return [run]


# -- hostile moments ----------------------------------------------------------------------------------
# What real programs do around a valid network: Ctrl-C at a random moment of training, copies taken while
# another thread trains, and work in a forked child under a memory limit. Whatever a network reports of
# itself afterwards (its update count, completed_steps) must be what it holds: it equals a twin given that
# many steps alone, bit for bit.


def replay(make: Callable[[], rustbp.Network], X: np.ndarray, T: np.ndarray, steps: int, batch: int | None) -> Any:
    """A twin given ``steps`` steps alone: of ``train`` on (X, T), or of an unshuffled ``fit`` in batches of
    ``batch`` rows (whole epochs, then single steps)."""
    twin = make()
    if batch is None:
        if steps:
            twin.train(X, T, steps)
        return twin
    starts = range(0, len(X), batch)
    if steps >= len(starts):
        twin.fit(X, T, epochs=steps // len(starts), batch_size=batch, shuffle=False)
    for i in starts[: steps % len(starts)]:
        twin.train_step(X[i : i + batch], T[i : i + batch])
    return twin


def interrupted(make: Callable[[], rustbp.Network], X: np.ndarray, T: np.ndarray, steps: int, batch: int,
                delay: float, fit: bool) -> None:  # fmt: skip
    """SIGINT after ``delay`` seconds of ``train`` or an unshuffled ``fit``: the network holds exactly the
    steps it counts, and a KeyboardInterrupt's ``completed_steps`` is that count."""
    net = make()
    timer = threading.Timer(delay, os.kill, (os.getpid(), signal.SIGINT))
    reported: int | None = None
    try:
        try:
            timer.start()
            try:
                if fit:
                    net.fit(X, T, epochs=-(-steps // -(-len(X) // batch)), batch_size=batch, shuffle=False)
                else:
                    net.train(X, T, steps)
            except rustbp.TrainingDivergedError:
                pass  # rates safe for a few steps may not be for 100,000; it keeps its last finite step
        finally:
            timer.cancel()
            timer.join()
        time.sleep(0.001)  # a signal sent just now is raised here
    except KeyboardInterrupt as e:
        reported = getattr(e, "completed_steps", None)
    done = net._core.get_optimizer_state()[1]
    if reported is not None:
        assert done == reported, f"completed_steps {reported}, but the network took {done} steps"
    same_network(net, replay(make, X, T, done, batch if fit else None), f"interrupted after {done} steps")


def copies_while_training(make: Callable[[], rustbp.Network], X: np.ndarray, T: np.ndarray, steps: int,
                          kinds: list[str]) -> None:  # fmt: skip
    """Copies of every kind taken while another thread trains: each is a whole network of one step."""
    net, errors, done = make(), [], threading.Event()

    def busy(e: RuntimeError) -> bool:
        return "busy" in str(e)

    def train() -> None:
        try:
            for _ in range(steps):
                while True:
                    try:
                        net.train_step(X, T)
                        break
                    except RuntimeError as e:
                        if not busy(e):
                            raise
        except rustbp.TrainingDivergedError:
            pass  # the copies still hold whole steps
        except BaseException as e:
            errors.append(e)
        finally:
            done.set()

    def take(kind: str) -> rustbp.Network:
        if kind == "copy":
            return copy.deepcopy(net)
        if kind == "pickle":
            return pickle.loads(pickle.dumps(net))
        if kind == "to":
            return net.to(net.device)
        with tempfile.TemporaryDirectory() as d:
            net.save(os.path.join(d, "net.safetensors"))
            return rustbp.Network.load(os.path.join(d, "net.safetensors"), device=net.device)

    trainer = threading.Thread(target=train)
    trainer.start()
    copies = []
    for i in range(200):
        if done.is_set() and i >= len(kinds):
            break
        try:
            copies.append(take(kinds[i % len(kinds)]))
        except RuntimeError as e:
            if not busy(e):
                raise
    trainer.join()
    if errors:
        raise errors[0]
    twin = make()
    for c in sorted(copies, key=lambda c: c._core.get_optimizer_state()[1]):
        while twin._core.get_optimizer_state()[1] < c._core.get_optimizer_state()[1]:
            twin.train_step(X, T)
        same_network(c, twin, "a copy taken while another thread trained")


def memory_limited(op: Callable[[], Any], margin: int, what: str) -> None:
    """``op`` in a forked child whose address space may grow only ``margin`` bytes: it works or raises
    MemoryError (ValueError for sizes refused before any allocation); never aborts."""

    def limited() -> None:
        with open("/proc/self/status") as f:
            size = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmSize"))
        resource.setrlimit(resource.RLIMIT_AS, (size + margin, resource.getrlimit(resource.RLIMIT_AS)[1]))
        op()

    in_child(limited, lambda e: isinstance(e, (MemoryError, ValueError)), f"{what} under a limit of +{margin} bytes")


@st.composite
def hostile_cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    (n_in, n_hidden, n_out), kw, X, T = draw(valid_setups(gpu_odds=3))
    seed_ = draw(st.integers(0, 2**32))

    def make() -> rustbp.Network:
        return rustbp.Network(n_in, n_hidden, n_out, **kw, seed=seed_)

    which = draw(
        st.sampled_from(
            ["interrupt", "copies", "memory"] if os.path.exists("/proc/self/status") else ["interrupt", "copies"]
        )
    )
    if which == "interrupt":
        # Long enough to be interrupted mostly (lavapipe runs some 10,000 small steps a second).
        steps, delay = draw(st.integers(1, 100_000 if kw["device"] == "cpu" else 2_000)), draw(st.floats(0, 0.02))
        fit, batch = draw(st.booleans()), draw(st.integers(1, len(X)))
        return [lambda: interrupted(make, X, T, steps, batch, delay, fit)]
    if which == "copies":
        kinds = draw(st.lists(st.sampled_from(["copy", "pickle", "to", "save"]), min_size=1, max_size=4))
        steps = draw(st.integers(1, 30))
        return [lambda: copies_while_training(make, X, T, steps, kinds)]
    # Sizes past the limit: the network's own allocation, the input's copy, the losses, a population.
    # The limit leaves room for the fixed-size allocations of a call (Rust aborts where one of those
    # fails); those sized by the caller must fail cleanly.
    big = draw(st.integers(10**8, 10**10))
    margin = draw(st.integers(2**26, 2**29))
    width = max(1, big // (n_in + n_out))
    op = draw(st.sampled_from(["network", "forward", "train", "population", "get_weights"]))
    cpu = {**kw, "device": "cpu"}  # the GPU is not for forked children
    ops: dict[str, Callable[[], Any]] = {
        "network": lambda: rustbp.Network(n_in, width, n_out, **cpu),
        "forward": lambda: rustbp.Network(n_in, n_hidden, n_out, **cpu).forward(
            np.lib.stride_tricks.as_strided(np.zeros(1), shape=(big // n_in + 1, n_in), strides=(0, 0))
        ),
        "train": lambda: rustbp.Network(n_in, n_hidden, n_out, **cpu).train(X, T, big * 1000),
        "population": lambda: rustbp.Population(n_in, n_hidden, n_out, big // (n_in * n_hidden + 1) + 1, **cpu),
        "get_weights": lambda: rustbp.Network(n_in, max(1, width // 4), n_out, **cpu).get_weights(),
    }
    what = f"{op} of {(n_in, n_hidden, n_out)} ({big=}, {kw['dtype']})"
    return [lambda: memory_limited(ops[op], margin, what)]


@st.composite
def cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    kind = draw(st.integers(0, 8))
    if kind < 4:
        return draw(chaos_cases())
    strategy = {7: population_cases, 8: hostile_cases}.get(kind, differential_cases)
    return [strict(f) for f in draw(strategy())]


def strict(f: Callable[[], Any]) -> Callable[[], Any]:
    """A call on valid input: any exception, documented or not, is a finding."""

    def run() -> Any:
        try:
            return f()
        except AssertionError:
            raise
        except BaseException as e:
            if isinstance(e, KeyboardInterrupt):
                raise
            raise AssertionError(f"{type(e).__module__}.{type(e).__name__} on valid input: {e}") from e

    return run


def run_case(case: list[Callable[[], Any]]) -> None:
    for f in case:
        result = call(f)
        if isinstance(result, np.ndarray):
            assert result.dtype in (np.float32, np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="number of hypothesis examples")
    parser.add_argument("--derandomize", action="store_true", help="the same cases every run (for CI)")
    parser.add_argument("--seed", type=int, help="hypothesis's seed, to replay a run (default: a fresh one)")
    args = parser.parse_args(argv)
    ran = [0]
    run_seed = random.randrange(2**32) if args.seed is None else args.seed
    print(f"fuzz: seed {'(derandomized)' if args.derandomize else run_seed}, GPU adapter: {HAS_GPU}", flush=True)

    @settings(
        max_examples=args.cases,
        deadline=None,
        database=None,
        derandomize=args.derandomize,
        suppress_health_check=list(HealthCheck),
        print_blob=True,
    )
    @given(cases())
    def fuzz(case: list[Callable[[], Any]]) -> None:
        ran[0] += 1
        if ran[0] % 1000 == 0:  # progress for long runs, which a finding or Ctrl-C may cut short
            print(f"fuzz: {ran[0]} cases, {time.perf_counter() - start:.0f} s", flush=True)
        run_case(case)

    if not args.derandomize:
        fuzz = seed(run_seed)(fuzz)

    start = time.perf_counter()
    try:
        fuzz()
        findings = 0
    except BaseException as e:  # a PanicException is a BaseException; report anything but Ctrl-C
        if isinstance(e, KeyboardInterrupt):
            raise
        traceback.print_exc()
        findings = 1
    print(
        f"fuzz: {ran[0]} cases in {time.perf_counter() - start:.1f} s, {findings} findings, seed "
        f"{'(derandomized)' if args.derandomize else run_seed} "
        f"(rustbp {rustbp.__version__}, numpy {np.__version__})"
    )
    return findings


if __name__ == "__main__":
    sys.exit(main())
