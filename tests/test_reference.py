"""rustbp against an independent float64 NumPy reference (tests/_reference.py): every configuration the API
accepts on a small network, and a few large ones sized to run the core's blocked and threaded code
(gemm's packed kernels and rayon blocks, threaded activations and their derivatives, threaded optimizer
updates), which no small network reaches.

Tolerances are relative to each tensor's largest magnitude (see ``assert_close``). Float64 differs from
the reference only by evaluation order (gemm's blocking against NumPy's, 1 - a^2 against 1/cosh^2), a few
ulps per operation: weights agree to 1e-15 or so, except under Adam, which divides by sqrt(v) + eps, so a
gradient that nearly cancels carries its rounding into a step (up to 7e-12 seen on 2^20 weights). 1e-9
leaves margin for that, while a wrong formula, index or chunk is off by far more.
Float32 is checked against the same float64 reference: 2e-4 covers float32 rounding (eps 6e-8) summed
over the widths and steps here.
"""

from __future__ import annotations

import itertools
import zlib

import numpy as np
import pytest
import rustbp
from _reference import Reference, assert_close

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUT_LOSS = [(o, loss) for o in HIDDEN for loss in ("half_sse", "mse")] + [
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
]
# bias="none" has nothing to freeze: train_bias=False would repeat its train_bias=True cases.
BIAS = [("per_neuron", True), ("per_neuron", False), ("shared", True), ("shared", False), ("none", True)]
RTOL = {"float64": 1e-9, "float32": 2e-4}
LOSS_RTOL = {"float64": 1e-12, "float32": 1e-5}


def optimizer(name: str, dtype: str) -> rustbp.SGD | rustbp.Adam:
    """Settings that make every term of the update matter (non-default betas, weight decay)."""
    if name == "adam":
        # Adam divides by sqrt(v) + eps: with a gradient near float32 rounding noise (a near cancellation),
        # eps = 1e-8 would turn that noise into a step of about lr; 1e-4 keeps float32 comparable.
        return rustbp.Adam(lr=0.02, betas=(0.8, 0.99), eps=1e-8 if dtype == "float64" else 1e-4, weight_decay=0.01)
    return {
        "sgd": rustbp.SGD(lr=0.1),
        "momentum": rustbp.SGD(lr=0.05, momentum=0.9),
        "nesterov": rustbp.SGD(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.02),
        "weight_decay": rustbp.SGD(lr=0.1, weight_decay=0.1),
    }[name]


OPTIMIZERS = ["sgd", "momentum", "nesterov", "weight_decay", "adam"]


def targets(rng: np.random.Generator, output: str, shape: tuple[int, int]) -> np.ndarray:
    """Targets in the output's range: probability rows for softmax, (0, 1) for sigmoid, (-1, 1) for tanh."""
    if output == "softmax":
        e = np.exp(rng.normal(size=shape) * 2)
        return e / e.sum(axis=1, keepdims=True)
    if output == "sigmoid":
        return rng.uniform(0.05, 0.95, size=shape)
    if output == "tanh":
        return rng.uniform(-0.9, 0.9, size=shape)
    return rng.normal(size=shape)


def twins(rng, widths, dtype, **kw):
    """A rustbp network and the reference started from its weights."""
    net = rustbp.Network(*widths, dtype=dtype, seed=int(rng.integers(2**32)), **kw)
    return net, Reference(net.get_weights(), net.config)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize(("bias", "train_bias"), BIAS, ids=[f"{b}-{'trained' if t else 'frozen'}" for b, t in BIAS])
@pytest.mark.parametrize(("output", "loss"), OUTPUT_LOSS, ids=[f"{o}-{loss}" for o, loss in OUTPUT_LOSS])
@pytest.mark.parametrize("hidden", HIDDEN)
def test_every_configuration_trains_like_the_reference(hidden, output, loss, bias, train_bias, opt, dtype):
    rng = np.random.default_rng(zlib.crc32(f"{hidden} {output} {bias} {train_bias} {opt}".encode()))
    net, ref = twins(
        rng,
        (3, 5, 4),
        dtype,
        hidden_activation=hidden,
        output_activation=output,
        loss=loss,
        bias=bias,
        train_bias=train_bias,
        optimizer=optimizer(opt, dtype),
    )
    X, T = rng.normal(size=(6, 3)), targets(rng, output, (6, 4))
    Xc, Tc = X.astype(dtype), T.astype(dtype)  # the values the float32 network actually sees
    got, want = [], []
    # A batch (the general path), one 1-D sample (the one-sample path of small networks), two steps looped
    # in Rust, then one epoch of fit in batches of 4 and 2.
    got.append(net.train_step(X, T))
    want.append(ref.train_step(Xc, Tc))
    got.append(net.train_step(X[0], T[0]))
    want.append(ref.train_step(Xc[:1], Tc[:1]))
    got.extend(net.train(X, T, 2))
    want.extend(ref.train_step(Xc, Tc) for _ in range(2))
    got.append(float(net.fit(X, T, epochs=1, batch_size=4, shuffle=False)[0]))
    want.append((ref.train_step(Xc[:4], Tc[:4]) * 4 + ref.train_step(Xc[4:], Tc[4:]) * 2) / 6)
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL[dtype], atol=1e-300)
    weights = net.get_weights()
    assert all(v.dtype == np.dtype(dtype) for v in weights.values())
    assert_close(weights, ref.w, RTOL[dtype], "weights")
    if not train_bias:
        for k in ("b1", "b2"):
            if k in weights:
                np.testing.assert_array_equal(weights[k], ref.w[k].astype(dtype), err_msg=f"{k} is frozen")
    out = net.forward(X)
    assert out.shape == (6, 4) and out.dtype == np.dtype(dtype)
    assert_close({"o": out}, {"o": ref.forward(Xc)}, RTOL[dtype], "forward")
    assert net.forward(X[1]).shape == (4,)
    np.testing.assert_allclose(net.loss(X, T), ref.loss(Xc, Tc), rtol=LOSS_RTOL[dtype])


# -- large networks: the blocked and threaded paths ---------------------------------------------------------
# Thresholds (src/linalg.rs, activation.rs, optim.rs): products from 2048 multiply-adds go to gemm, from 2^24
# to rayon blocks; activations and their derivatives over 2^18 values or more run threaded; optimizer
# updates of tensors of 2^19 values or more run threaded in chunks of 2^14.

LARGE = {
    # The benchmark's network: forward and weight-gradient products of 205M multiply-adds (threaded),
    # the hidden delta product of 2.6M (gemm, one thread), 256 x 1024 = 2^18 hidden activations.
    "784-1024-10-relu-softmax": ((784, 1024, 10), 256, "relu", "softmax", "cross_entropy", "momentum"),
    # 2^18 hidden and 2^18 output values: every activation threaded on both layers, and its derivative;
    # products of 134M multiply-adds (threaded) and 8.4M (gemm on one thread).
    "32-512-512-sigmoid-softmax": ((32, 512, 512), 512, "sigmoid", "softmax", "cross_entropy", "sgd"),
    "32-512-512-tanh-tanh": ((32, 512, 512), 512, "tanh", "tanh", "mse", "nesterov"),
    "32-512-512-relu-sigmoid": ((32, 512, 512), 512, "relu", "sigmoid", "half_sse", "weight_decay"),
    "32-512-512-identity-relu": ((32, 512, 512), 512, "identity", "relu", "mse", "adam"),
}


# float32 at this size only for the benchmark's network, to keep the run short.
LARGE_RUNS = [(name, "float64") for name in LARGE] + [("784-1024-10-relu-softmax", "float32")]


@pytest.mark.parametrize(("name", "dtype"), LARGE_RUNS, ids=[f"{n}-{d}" for n, d in LARGE_RUNS])
def test_large_networks_train_like_the_reference(name, dtype):
    widths, batch, hidden, output, loss, opt = LARGE[name]
    rng = np.random.default_rng(7)
    net, ref = twins(
        rng, widths, dtype, hidden_activation=hidden, output_activation=output, loss=loss,
        optimizer=optimizer(opt, dtype),
    )  # fmt: skip
    X, T = rng.normal(size=(batch, widths[0])), targets(rng, output, (batch, widths[2]))
    Xc, Tc = X.astype(dtype), T.astype(dtype)
    got = [net.train_step(X, T), *net.train(X, T, 1)]
    want = [ref.train_step(Xc, Tc) for _ in range(2)]
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL[dtype])
    assert_close(net.get_weights(), ref.w, RTOL[dtype], "weights")
    assert_close({"o": net.forward(X)}, {"o": ref.forward(Xc)}, RTOL[dtype], "forward")


@pytest.mark.parametrize(
    ("opt", "dtype"), [*itertools.product(OPTIMIZERS, ["float64"]), ("adam", "float32"), ("momentum", "float32")]
)
def test_optimizers_on_a_layer_of_2_20_weights_match_the_reference(opt, dtype):
    # w1 holds 2^20 values: the threaded update (64 chunks) for every optimizer's state layout (none,
    # momentum, Adam's two moments); w2 and the biases take the one-thread update in the same step.
    rng = np.random.default_rng(11)
    net, ref = twins(rng, (1024, 1024, 8), dtype, hidden_activation="tanh", optimizer=optimizer(opt, dtype))
    X, T = rng.normal(size=(8, 1024)), targets(rng, "sigmoid", (8, 8))
    Xc, Tc = X.astype(dtype), T.astype(dtype)
    got = net.train(X, T, 3)
    want = [ref.train_step(Xc, Tc) for _ in range(3)]
    np.testing.assert_allclose(got, want, rtol=LOSS_RTOL[dtype])
    assert_close(net.get_weights(), ref.w, RTOL[dtype], "weights")
    state, updates = net._core.get_optimizer_state()
    assert updates == 3
    if opt == "adam":
        got_state = {"m": state[0][0], "v": state[0][1]}
        want_state = {"m": ref.optimizer.m["w1"].ravel(), "v": ref.optimizer.v["w1"].ravel()}
    elif opt in ("momentum", "nesterov"):
        got_state, want_state = {"buf": state[0][0]}, {"buf": ref.optimizer.buf["w1"].ravel()}
    else:
        got_state, want_state = {}, {}
        assert state[0] == []
    assert_close(got_state, want_state, RTOL[dtype], "w1's optimizer state")
