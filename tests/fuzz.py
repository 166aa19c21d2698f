"""Fuzzes rustbp's whole public API with hypothesis: random shapes, dtypes, values (NaN, inf, huge),
argument types and combinations for Network, its methods, SGD and Adam.

A case passes when every call either returns a well-formed result or raises one of the documented
exceptions (ValueError, TypeError, MemoryError, rustbp.TrainingDivergedError, and
rustbp.GpuUnavailableError for device="gpu" without an adapter), and the network's
weights stay finite. A Rust panic (pyo3's PanicException, a BaseException) or a crash fails it.

    python tests/fuzz.py --cases 10000      # `make fuzz`; prints cases, time and findings

tests/test_fuzz.py runs a few hundred derandomized cases of it in a subprocess, so that a crash
fails that test instead of killing pytest.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
import traceback
from typing import Any, Callable

import numpy as np
import rustbp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

# GpuUnavailableError: device="gpu" where no adapter is found.
DOCUMENTED = (ValueError, TypeError, MemoryError, rustbp.TrainingDivergedError, rustbp.GpuUnavailableError)
ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity", "softmax"]
LOSSES = ["half_sse", "mse", "cross_entropy"]
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


@st.composite
def cases(draw: st.DrawFn) -> list[Callable[[], Any]]:
    """A network (from random, mostly valid arguments) and a few random calls on it."""
    valid = draw(st.integers(0, 3)) > 0
    widths = [draw(st.integers(1, 5)) for _ in range(3)] if valid else [draw(counts) for _ in range(3)]
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
        op = draw(st.sampled_from(["forward", "loss", "train_step", "train", "fit", "set_weights", "explain_step"]))
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


def run_case(case: list[Callable[[], Any]]) -> None:
    for f in case:
        result = call(f)
        if isinstance(result, np.ndarray):
            assert result.dtype in (np.float32, np.float64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000, help="number of hypothesis examples")
    parser.add_argument("--derandomize", action="store_true", help="the same cases every run (for CI)")
    args = parser.parse_args(argv)
    ran = [0]

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
        run_case(case)

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
        f"fuzz: {ran[0]} cases in {time.perf_counter() - start:.1f} s, {findings} findings "
        f"(rustbp {rustbp.__version__}, numpy {np.__version__})"
    )
    return findings


if __name__ == "__main__":
    sys.exit(main())
