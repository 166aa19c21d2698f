"""The public API on every device (conftest's ``device``: the CPU in float64 and in float32, the GPU in
float32): shapes, losses, biases and optimizers against an independent NumPy implementation, the
article's numbers, seeds, 1-D vs 2-D inputs, fit, moving and saving, and clear errors for bad input. On
the GPU every result is also checked against the CPU float32 network with the same seed and calls.

Tolerances against NumPy (float64, from the same inputs and weights): float64 networks as tight as
their rounding allows; float32 networks F32_RTOL unless a test says otherwise. GPU sizes are small:
lavapipe, CI's software GPU, computes at about 0.5 GFLOP/s and takes some 30 ms a call.
"""

from __future__ import annotations

import itertools
import logging
import pickle
import threading

import numpy as np
import pytest
import rustbp
from conftest import (
    ARTICLE,
    ARTICLE_E_AFTER_ONE_STEP,
    ARTICLE_FINAL,
    ARTICLE_LOSSES,
    ARTICLE_T,
    ARTICLE_X,
    CPU32,
    CPU64,
    DEVICES,
    F32_LOSS_FLOOR,
    GPU_RTOL,
    article,
    assert_close,
    assert_each_close,
    assert_same_run,
    gpu_reference,
    inputs,
    make_net,
    require,
    skip_on,
)
from rustbp.bench import numpy_net as ref

# float32 against float64 NumPy: float32 rounds each operation to 6e-8, and the compared values come out
# of a few dozen of them (hundreds for a shared bias's gradient sum). Measured over this file, on the CPU
# and the GPU: up to 7e-6 of an array's largest value (a shared bias after 20 momentum steps over 300
# rows), 2e-6 of a loss.
F32_RTOL = 3e-5

OUTPUTS = [
    ("sigmoid", "half_sse"),
    ("tanh", "mse"),
    ("identity", "half_sse"),
    ("relu", "mse"),
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
]


def rtol(device, float64):
    """The tolerance against NumPy: ``float64`` for float64 networks, F32_RTOL for float32 ones."""
    return float64 if device.dtype == "float64" else F32_RTOL


def assert_loss(device, got, want, float64, floor=0.0):
    """Losses against NumPy's: relative ``float64`` for float64 networks, F32_RTOL for float32 ones; with
    a floor (see ``assert_each_close``) of ``floor`` in float64, F32_LOSS_FLOOR in float32."""
    f32_floor = F32_LOSS_FLOOR if floor else 0.0
    assert_each_close(got, want, rtol(device, float64), floor if device.dtype == "float64" else f32_floor)


def targets(rng, loss, batch, n_out):
    if loss == "cross_entropy":
        return np.eye(n_out)[rng.integers(0, n_out, batch)]
    return rng.uniform(0.1, 0.9, (batch, n_out))


def as64(weights):
    return {k: v.astype(np.float64) for k, v in weights.items()}


# -- construction ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("bias", ["per_neuron", "shared", "none"])
def test_weight_shapes_follow_nn_linear(device, bias):
    net = make_net(device, 4, 6, 3, bias=bias)
    w = net.get_weights()
    assert (net.device, net.dtype) == (device.device, device.dtype)
    assert w["w1"].shape == (6, 4) and w["w2"].shape == (3, 6)
    assert all(v.dtype == device.dtype for v in w.values())
    if bias == "none":
        assert set(w) == {"w1", "w2"}
    else:
        expected = (6,) if bias == "per_neuron" else (1,)
        assert w["b1"].shape == expected and w["b2"].shape == ((3,) if bias == "per_neuron" else (1,))


def test_default_init_is_pytorch_uniform_and_seeded(device):
    a, b, c = (
        make_net(device, 64, 32, 5, seed=1),
        make_net(device, 64, 32, 5, seed=1),
        make_net(device, 64, 32, 5, seed=2),
    )
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
        assert not np.array_equal(wa[k], wc[k])
    assert np.abs(wa["w1"]).max() < 1 / 8 and np.abs(wa["w1"]).max() > 0.11  # bound 1/sqrt(64)
    assert np.abs(wa["b2"]).max() < 1 / np.sqrt(32)
    # Unseeded networks differ.
    assert not np.array_equal(
        make_net(device, 4, 6, 3, seed=None).get_weights()["w1"],
        make_net(device, 4, 6, 3, seed=None).get_weights()["w1"],
    )
    # A seed draws the same weights on every device, rounded to its dtype.
    for k, v in make_net(CPU64, 64, 32, 5, seed=1).get_weights().items():
        np.testing.assert_array_equal(wa[k], v.astype(device.dtype), err_msg=k)


# -- the math against NumPy -------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("hidden", "output_loss", "bias"),
    list(itertools.product(["sigmoid", "tanh", "relu", "identity"], OUTPUTS, ["per_neuron", "shared", "none"])),
)
def test_forward_loss_and_one_step_match_numpy(device, rng, hidden, output_loss, bias):
    output, loss = output_loss
    kw = dict(hidden_activation=hidden, output_activation=output, loss=loss, bias=bias, optimizer=rustbp.SGD(lr=0.3))
    net, gpu_ref = make_net(device, 5, 7, 3, **kw), gpu_reference(device, 5, 7, 3, **kw)
    X = inputs(rng, device, (9, 5))
    T = targets(rng, loss, 9, 3)
    w = as64(net.get_weights())
    *_, o = ref.forward(w, X, hidden, output)
    value, g = ref.loss_and_grads(w, X, T, hidden, output, loss)
    out, loss_value, step_loss = net.forward(X), net.loss(X, T), net.train_step(X, T)
    if device == CPU64:
        np.testing.assert_allclose(out, o, rtol=1e-12, atol=1e-14)
    else:
        assert_close(out, o, F32_RTOL)
    assert_loss(device, loss_value, value, 1e-12)
    assert_loss(device, step_loss, value, 1e-12)
    ref.SGD(0.3).step(w, g)
    for k, v in net.get_weights().items():
        if device == CPU64:
            np.testing.assert_allclose(v, w[k], rtol=1e-12, atol=1e-14, err_msg=k)
        else:
            assert_close(v, w[k], F32_RTOL, err_msg=k)
    if gpu_ref is not None:
        assert_close(out, gpu_ref.forward(X), GPU_RTOL)
        assert_each_close(loss_value, gpu_ref.loss(X, T), GPU_RTOL)
        assert_each_close(step_loss, gpu_ref.train_step(X, T), GPU_RTOL)
        assert_same_run(net, gpu_ref, GPU_RTOL)


def test_loss_definitions(device):
    # The values are exact sums of a few squares (or logs): float32 rounds them to 1e-7 of their size.
    rel = rtol(device, 1e-12)
    net = make_net(device, 2, 3, 2, output_activation="identity", bias="none")
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    o = net.forward(X).astype(np.float64)
    T = o + np.array([[1.0, 2.0], [3.0, 0.0]])  # errors 1, 2, 3, 0
    assert net.loss(X, T) == pytest.approx(0.5 * (1 + 4 + 9) / 2, rel=rel)  # half_sse: per sample, mean over batch
    mse = make_net(device, 2, 3, 2, output_activation="identity", bias="none", loss="mse")
    assert mse.loss(X, T) == pytest.approx((1 + 4 + 9) / 4, rel=rel)  # MSELoss: mean over elements
    ce = make_net(device, 2, 3, 3, output_activation="softmax", loss="cross_entropy")
    p = ce.forward(X).astype(np.float64)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=rel)
    assert ce.loss(X, np.eye(3)[[0, 2]]) == pytest.approx(-(np.log(p[0, 0]) + np.log(p[1, 2])) / 2, rel=rel)
    # BCELoss: the mean over elements of -(t ln o + (1 - t) ln(1 - o)).
    bce = make_net(device, 2, 3, 2, loss="binary_cross_entropy")
    o = bce.forward(X).astype(np.float64)
    T = np.array([[0.0, 1.0], [0.25, 0.5]])
    want = -(T * np.log(o) + (1 - T) * np.log(1 - o)).mean()
    assert bce.loss(X, T) == pytest.approx(want, rel=rtol(device, 1e-12))


# NumPy optimizers hold state: each test builds its own.
OPTIMIZERS = [
    (rustbp.SGD(lr=0.1, momentum=0.9), lambda: ref.SGD(0.1, 0.9)),
    (rustbp.SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01), lambda: ref.SGD(0.1, 0.8, True, 0.01)),
    (rustbp.SGD(lr=0.2, weight_decay=0.1), lambda: ref.SGD(0.2, weight_decay=0.1)),
    (rustbp.Adam(lr=0.01), lambda: ref.Adam(0.01)),
    (
        rustbp.Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01),
        lambda: ref.Adam(0.05, (0.8, 0.99), 1e-6, 0.01),
    ),
]


@pytest.mark.parametrize(("opt", "make_reference"), OPTIMIZERS, ids=[repr(o) for o, _ in OPTIMIZERS])
def test_optimizer_trajectories_match_numpy(device, rng, opt, make_reference):
    reference = make_reference()
    net = make_net(device, 4, 8, 2, hidden_activation="tanh", optimizer=opt)
    gpu_ref = gpu_reference(device, 4, 8, 2, hidden_activation="tanh", optimizer=opt)
    X, T = inputs(rng, device, (6, 4)), rng.uniform(size=(6, 2))
    w = as64(net.get_weights())
    for _ in range(20):
        value, g = ref.loss_and_grads(w, X, T, "tanh")
        reference.step(w, g)
        loss = net.train_step(X, T)
        assert_loss(device, loss, value, 1e-10)
        if gpu_ref is not None:
            assert_each_close(loss, gpu_ref.train_step(X, T), GPU_RTOL)
    for k, v in net.get_weights().items():
        if device == CPU64:
            np.testing.assert_allclose(v, w[k], rtol=1e-10, atol=1e-13, err_msg=k)
        else:
            assert_close(v, w[k], F32_RTOL, err_msg=k)
    if gpu_ref is not None:
        assert_same_run(net, gpu_ref, GPU_RTOL)


# 784-256-10 uses one sample: Adam divides each gradient by its own running size, so a gradient whose
# batch sum nearly cancels (some of dw1 = dz1^T X's 784 x 256 sums do) has its float32 rounding noise,
# which differs with the summation order, amplified to +-lr per step. With one sample dw1 has no sums.
@pytest.mark.parametrize(
    "opt",
    [rustbp.SGD(lr=0.1), rustbp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3), rustbp.Adam(lr=1e-3)],
    ids=["sgd", "nesterov", "adam"],
)
@pytest.mark.parametrize(("widths", "batch"), [((2, 2, 2), 1), ((64, 128, 10), 16), ((784, 256, 10), 1)])
def test_a_hundred_steps_in_rust_match_numpy(device, rng, widths, batch, opt):
    net, gpu_ref = (
        make_net(device, *widths, optimizer=opt, seed=3),
        gpu_reference(device, *widths, optimizer=opt, seed=3),
    )
    X, T = inputs(rng, device, (batch, widths[0])), rng.uniform(0.1, 0.9, (batch, widths[2]))
    reference = ref.NumpyNet(net.get_weights(), optimizer=ref_optimizer(opt))
    want = [reference.step(X, T) for _ in range(100)]
    losses = net.train(X, T, 100)
    assert losses.shape == (100,) and losses.dtype == np.float64
    assert_loss(device, losses, want, 1e-10, floor=1e-12)
    for k, v in net.get_weights().items():
        assert_close(v, reference.w[k], rtol(device, 1e-12), err_msg=k)
    if gpu_ref is not None:
        assert_each_close(losses, gpu_ref.train(X, T, 100), GPU_RTOL, floor=F32_LOSS_FLOOR)
        assert_same_run(net, gpu_ref, GPU_RTOL)


def ref_optimizer(opt):
    """The NumPy optimizer with the settings of ``opt``."""
    if isinstance(opt, rustbp.Adam):
        return ref.Adam(opt.lr, opt.betas, opt.eps, opt.weight_decay)
    return ref.SGD(opt.lr, opt.momentum, opt.nesterov, opt.weight_decay)


@pytest.mark.parametrize(
    ("hidden", "output", "loss"),
    [
        ("sigmoid", "sigmoid", "half_sse"),
        ("tanh", "tanh", "mse"),
        ("relu", "identity", "half_sse"),
        ("identity", "relu", "mse"),
        ("tanh", "softmax", "cross_entropy"),
        ("relu", "sigmoid", "binary_cross_entropy"),
    ],
)
@pytest.mark.parametrize(
    ("bias", "train_bias"), [("per_neuron", True), ("shared", True), ("none", True), ("per_neuron", False)]
)
# On the GPU, widths up to 32 train with the fused kernel (many steps per dispatch), wider ones tiled.
@pytest.mark.parametrize(("widths", "batch"), [((5, 7, 4), 6), ((40, 9, 4), 300)], ids=["fused", "tiled"])
def test_twenty_momentum_steps_match_numpy(device, rng, hidden, output, loss, bias, train_bias, widths, batch):
    # SGD with momentum, not Adam: with softmax and cross-entropy a shared output bias has a gradient of
    # exactly zero, whose rounding noise Adam would blow up to +-lr per step (see the test above).
    kw = dict(
        hidden_activation=hidden,
        output_activation=output,
        loss=loss,
        bias=bias,
        train_bias=train_bias,
        optimizer=rustbp.SGD(lr=0.1, momentum=0.9),
        seed=3,
    )
    net, gpu_ref = make_net(device, *widths, **kw), gpu_reference(device, *widths, **kw)
    X, T = inputs(rng, device, (batch, widths[0])), targets(rng, loss, batch, widths[2])
    reference = ref.NumpyNet(
        net.get_weights(), hidden=hidden, output=output, loss=loss, train_bias=train_bias, optimizer=ref.SGD(0.1, 0.9)
    )
    out = net.forward(X)
    assert_close(out, reference.forward(X), rtol(device, 1e-12))
    want = [reference.step(X, T) for _ in range(20)]
    if gpu_ref is not None:
        assert_close(out, gpu_ref.forward(X), GPU_RTOL)
        assert_each_close(net.loss(X, T), gpu_ref.loss(X, T), GPU_RTOL)
    losses = net.train(X, T, 20)
    assert_loss(device, losses, want, 1e-10, floor=1e-12)
    for k, v in net.get_weights().items():
        assert_close(v, reference.w[k], rtol(device, 1e-12), err_msg=k)
    if gpu_ref is not None:
        assert_each_close(losses, gpu_ref.train(X, T, 20), GPU_RTOL, floor=F32_LOSS_FLOOR)
        assert_same_run(net, gpu_ref, GPU_RTOL)


def test_frozen_biases_stay_put(device, rng):
    net = make_net(device, 4, 6, 3, bias="per_neuron", train_bias=False)
    before = net.get_weights()
    net.train(rng.normal(size=(5, 4)), rng.uniform(size=(5, 3)), 10)
    after = net.get_weights()
    np.testing.assert_array_equal(before["b1"], after["b1"])
    np.testing.assert_array_equal(before["b2"], after["b2"])
    assert not np.array_equal(before["w1"], after["w1"])


@pytest.mark.parametrize("opt", [rustbp.SGD(lr=0.05, momentum=0.9), rustbp.Adam(lr=0.01, betas=(0.9, 0.9))])
def test_a_dead_units_optimizer_state_decays_to_zero_not_into_subnormals(device, rng, opt):
    # A ReLU unit that never fires gets zero gradients: its momentum (or moments) decay geometrically and,
    # kept as they are, would end stuck among the subnormals, on which x86 computes a hundred times slower.
    net = make_net(device, 3, 4, 2, hidden_activation="relu", optimizer=opt)
    X, T = rng.uniform(0.5, 1, size=(4, 3)), rng.uniform(size=(4, 2))
    net.train(X, T, 5)  # the state fills
    first = np.asarray(net._core.get_optimizer_state()[0][0][0]).reshape(4, 3)
    unit = int(np.argmax(np.abs(first).sum(axis=1)))
    assert first[unit].any(), "a unit with state to decay"
    w = net.get_weights()
    w["w1"][unit], w["b1"][unit] = 0.0, -1.0  # it never fires again; set_weights keeps the state
    net.set_weights(w)
    net.train(X, T, 8000)
    buffers, _ = net._core.get_optimizer_state()
    tiny = np.finfo(device.dtype).tiny
    for name, slots in zip(("w1", "b1", "w2", "b2"), buffers):
        for s in map(np.asarray, slots):
            assert not ((s != 0) & (np.abs(s) < tiny)).any(), f"{name}: subnormal state {s}"
            if name in ("w1", "b1"):
                assert (s.reshape(4, -1)[unit] == 0).all(), f"{name}: the dead unit's state is not zero: {s}"


def test_one_and_two_dimensional_inputs(device, rng):
    net = make_net(device, 4, 6, 3)
    X = rng.normal(size=(3, 4))
    batch = net.forward(X)
    assert batch.shape == (3, 3) and batch.dtype == device.dtype
    for i in range(3):
        single = net.forward(X[i])
        assert single.shape == (3,)
        np.testing.assert_allclose(single, batch[i], rtol=1e-14)
    assert net.forward(X[:1]).shape == (1, 3)
    # Lists, integer arrays and non-contiguous views are converted, not rejected.
    np.testing.assert_allclose(net.forward(X.tolist()), batch)
    np.testing.assert_allclose(net.forward(np.asfortranarray(X)), batch)
    wide = np.zeros((3, 8))
    wide[:, ::2] = X
    np.testing.assert_allclose(net.forward(wide[:, ::2]), batch)
    np.testing.assert_allclose(net.forward(np.ones((2, 4), dtype=np.int64)), net.forward(np.ones((2, 4))))
    assert isinstance(net.train_step(X[0], [0.1, 0.2, 0.3]), float)


@skip_on({"cpu-float64": "a float64 network is the reference here"})
def test_float32_networks_compute_in_float32(device, rng):
    net = make_net(device, 4, 6, 3)
    X = rng.normal(size=(3, 4))
    assert net.forward(X).dtype == np.float32
    assert net.get_weights()["w1"].dtype == np.float32
    ref64 = make_net(CPU64, 4, 6, 3)
    np.testing.assert_allclose(net.forward(X), ref64.forward(X), rtol=1e-6)
    l32 = net.train(X, np.full((3, 3), 0.5), 30)
    l64 = ref64.train(X, np.full((3, 3), 0.5), 30)
    np.testing.assert_allclose(l32, l64, rtol=1e-5)


def test_train_returns_losses_before_each_update(device, rng):
    net, twin = make_net(device, 4, 6, 3), make_net(device, 4, 6, 3)
    X, T = rng.normal(size=(4, 4)), rng.uniform(size=(4, 3))
    losses = net.train(X, T, 5)
    assert losses.shape == (5,)
    for i in range(5):
        assert twin.loss(X, T) == losses[i]
        twin.train_step(X, T)


# -- fit ----------------------------------------------------------------------------------------------------
def test_fit_batches_shuffles_reproducibly(device, rng):
    X, Y = rng.normal(size=(37, 4)), rng.uniform(size=(37, 3))
    a, b, c = (make_net(device, 4, 6, 3) for _ in range(3))
    la = a.fit(X, Y, epochs=3, batch_size=8, seed=5)
    lb = b.fit(X, Y, epochs=3, batch_size=8, seed=5)
    assert la.shape == (3,)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(a.get_weights()["w1"], b.get_weights()["w1"])
    c.fit(X, Y, epochs=3, batch_size=8, seed=6)
    assert not np.array_equal(a.get_weights()["w1"], c.get_weights()["w1"])
    # Unshuffled, an epoch is the sample-weighted mean of train_step over consecutive batches.
    d, e = make_net(device, 4, 6, 3), make_net(device, 4, 6, 3)
    epoch = d.fit(X, Y, epochs=1, batch_size=10, shuffle=False)[0]
    steps = [e.train_step(X[i : i + 10], Y[i : i + 10]) * len(X[i : i + 10]) for i in range(0, 37, 10)]
    assert epoch == pytest.approx(sum(steps) / 37, rel=rtol(device, 1e-14))
    assert_same_run(d, e, rtol(device, 1e-14))


@pytest.mark.parametrize("widths", [(3, 8, 2), (40, 16, 3)], ids=["fused", "tiled"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_is_the_same_run_in_every_dtype(device, rng, widths, shuffle):
    """The batches and their order depend on the seed only: float64 and float32 networks, on either
    device, run the same epochs (to their dtype's rounding), and the GPU's equal the CPU float32 ones."""
    kw = dict(optimizer=rustbp.SGD(lr=0.1, momentum=0.5), seed=3)
    net, net64 = make_net(device, *widths, **kw), make_net(CPU64, *widths, **kw)
    gpu_ref = gpu_reference(device, *widths, **kw)
    X, Y = inputs(rng, device, (50, widths[0])), rng.uniform(0.1, 0.9, (50, widths[2]))
    history = net.fit(X, Y, epochs=4, batch_size=16, shuffle=shuffle, seed=9)
    assert_loss(device, history.loss, net64.fit(X, Y, epochs=4, batch_size=16, shuffle=shuffle, seed=9).loss, 0)
    assert_same_run(net, net64, rtol(device, 0))
    if gpu_ref is not None:
        assert_each_close(
            history.loss, gpu_ref.fit(X, Y, epochs=4, batch_size=16, shuffle=shuffle, seed=9).loss, GPU_RTOL
        )
        assert_same_run(net, gpu_ref, GPU_RTOL)


@pytest.mark.parametrize("between_epochs", ["callback", "validation", "logging"])
def test_fit_epoch_by_epoch_is_the_one_call_run(device, rng, caplog, between_epochs):
    """Validation, callbacks or INFO logging make fit run the core one epoch at a time, each epoch
    shuffled by its number: the same run as one call looped in the core."""
    kw = dict(optimizer=rustbp.Adam(lr=0.01))
    X, Y = rng.normal(size=(30, 4)), rng.uniform(0.1, 0.9, (30, 3))
    one_call = make_net(device, 4, 6, 3, **kw)
    whole = one_call.fit(X, Y, epochs=3, batch_size=8, seed=4)
    seen = []
    extra = {
        "callback": dict(callbacks=[lambda epoch, logs: seen.append((epoch, logs["loss"]))]),
        "validation": dict(validation_data=(X[:5], Y[:5])),
        "logging": {},
    }[between_epochs]
    if between_epochs == "logging":
        caplog.set_level(logging.INFO, logger="rustbp")
    nets = [make_net(device, 4, 6, 3, **kw)]
    gpu_ref = gpu_reference(device, 4, 6, 3, **kw)
    nets += [gpu_ref] if gpu_ref is not None else []
    runs = [n.fit(X, Y, epochs=3, batch_size=8, seed=4, **extra) for n in nets]
    np.testing.assert_array_equal(runs[0].loss, whole.loss)
    assert_same_run(nets[0], one_call, 0)
    if between_epochs == "callback":
        assert seen[:3] == [(e, whole.loss[e]) for e in range(3)]
    if between_epochs == "validation":
        assert runs[0].val_loss[-1] == nets[0].loss(X[:5], Y[:5])
    if between_epochs == "logging":
        assert sum("epoch " in r.getMessage() for r in caplog.records) == 3 * len(nets)
    if gpu_ref is not None:
        assert_each_close(runs[0].loss, runs[1].loss, GPU_RTOL)
        assert_same_run(nets[0], gpu_ref, GPU_RTOL)


# -- the article ----------------------------------------------------------------------------------------
# The article's numbers are float64's. A float32 network rounds its outputs to 6e-8, and near the end of
# the 10,000 steps E_total = 3.5e-5 is the square of t - o = 0.006, so each ulp of an output moves it by
# 1e-5 of its size. Measured: float32 losses differ from the article's by up to 1.8e-5 (E_total after the
# run 3.510157e-05 on the CPU, 3.510158e-05 on the GPU, for 3.510188e-05), the GPU's from the CPU float32
# ones by up to 2.1e-5. ARTICLE_F32_RTOL allows some 3 ulp. The first step's numbers come out of a few
# operations each: they differ by up to 1.2e-7 of their size (ARTICLE_STEP_F32_RTOL allows 4 times that).
ARTICLE_F32_RTOL = 5e-5
ARTICLE_STEP_F32_RTOL = 5e-7


def assert_article(device, got, want, name, f32_rtol=ARTICLE_F32_RTOL):
    """One of the article's numbers: to 1e-12 in float64, ``f32_rtol`` of its size in float32."""
    if device.dtype == "float64":
        assert got == pytest.approx(want, abs=1e-12, rel=0), name
    else:
        assert_each_close(got, want, f32_rtol)


def test_article_net_trains_to_the_articles_loss(device):
    net = article(device)
    assert (net.device, net.dtype) == (device.device, device.dtype)
    losses = net.train(ARTICLE_X, ARTICLE_T, 10_000)
    assert losses.shape == (10_000,)
    for step, want in ARTICLE_LOSSES.items():
        assert_article(device, losses[step], want, step)
    out = net.forward(ARTICLE_X)
    assert out.shape == (2,)
    assert_article(device, net.loss(ARTICLE_X, ARTICLE_T), ARTICLE_FINAL["E_total"], "E_total")
    assert_article(device, out[0], ARTICLE_FINAL["out_o1"], "out_o1")
    assert_article(device, out[1], ARTICLE_FINAL["out_o2"], "out_o2")
    if device.device == "gpu":
        gpu_ref = article(CPU32)
        assert_each_close(losses, gpu_ref.train(ARTICLE_X, ARTICLE_T, 10_000), ARTICLE_F32_RTOL)
        assert_close(out, gpu_ref.forward(ARTICLE_X), GPU_RTOL)


def test_explain_step_gives_the_articles_numbers(device):
    net = article(device)
    s = net.explain_step(ARTICLE_X, ARTICLE_T, apply=True)
    for name, want in ARTICLE.items():
        assert_article(device, s[name], want, name, ARTICLE_STEP_F32_RTOL)
    # Applied, the update is the network's: the next forward pass is the article's second one.
    assert_article(device, net.get_weights()["w1"][0, 0], ARTICLE["w1_new"], "w1", ARTICLE_STEP_F32_RTOL)
    E_next = net.loss(ARTICLE_X, ARTICLE_T)
    assert_article(device, E_next, ARTICLE_E_AFTER_ONE_STEP, "E_total after one step", ARTICLE_STEP_F32_RTOL)
    if device.device == "gpu":
        want = article(CPU32).explain_step(ARTICLE_X, ARTICLE_T)
        assert want.keys() == s.keys()
        for name in want:
            assert_close(s[name], want[name], GPU_RTOL, err_msg=name)


# -- weights, moving, saving ------------------------------------------------------------------------------
def test_set_weights_round_trips_and_checks(device):
    net = make_net(device, 4, 6, 3)
    w = {k: v + 0.5 for k, v in net.get_weights().items()}
    net.set_weights(w)
    for k, v in net.get_weights().items():
        np.testing.assert_array_equal(v, w[k])
    with pytest.raises(ValueError, match=r"w1.*\[6, 4\]"):
        net.set_weights({**w, "w1": np.zeros((4, 6))})
    bad = w["w2"].copy()
    bad[1, 2] = np.inf
    with pytest.raises(ValueError, match=r"w2.*position \[1, 2\]"):
        net.set_weights({**w, "w2": bad})
    with pytest.raises(ValueError, match="missing"):
        net.set_weights({"w1": w["w1"]})
    with pytest.raises(ValueError, match="unknown keys"):
        net.set_weights({**w, "w3": w["w1"]})
    for k, v in net.get_weights().items():
        np.testing.assert_array_equal(v, w[k], err_msg="a rejected set_weights changes nothing")


@pytest.mark.parametrize("target", DEVICES, ids=str)
def test_to_moves_weights_and_optimizer_state(device, target, rng):
    require(target)
    X, T = inputs(rng, CPU32, (6, 4)), rng.uniform(0.1, 0.9, (6, 3))
    net = make_net(device, 4, 6, 3, optimizer=rustbp.Adam(lr=0.01), seed=2)
    net.train(X, T, 3)
    moved = net.to(target.device, dtype=target.dtype)
    assert (moved.device, moved.dtype, moved.config.seed) == (target.device, target.dtype, 2)
    for k, v in net.get_weights().items():
        np.testing.assert_array_equal(moved.get_weights()[k], v.astype(target.dtype), err_msg=k)
    # Adam's moments and its step count (3: the bias correction depends on it) came along: the moved
    # network continues the run as the original does, exactly on the same device and dtype, else to
    # float32's rounding.
    same = (device.device, device.dtype) == (target.device, target.dtype)
    tol = 0 if same else F32_RTOL
    assert_each_close(moved.train(X, T, 5), net.train(X, T, 5), tol)
    assert_same_run(moved, net, tol)
    # Without a dtype, the CPU keeps the network's and the GPU computes in float32.
    assert net.to("cpu").dtype == device.dtype
    assert target.device == "cpu" or net.to("gpu").dtype == "float32"
    back = moved.to("cpu")
    assert (back.device, back.dtype) == ("cpu", target.dtype)
    assert_same_run(back, moved, 0)
    with pytest.raises(ValueError, match="float32"):
        net.to("gpu", dtype="float64")
    with pytest.raises(ValueError, match="device"):
        net.to("tpu")


def test_networks_save_load_and_pickle(device, rng, tmp_path):
    X, T = inputs(rng, device, (6, 4)), rng.uniform(0.1, 0.9, (6, 3))
    net = make_net(device, 4, 6, 3, optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=4)
    net.train(X, T, 3)
    path = tmp_path / "net.safetensors"
    net.save(path)
    on_cpu, here = rustbp.Network.load(path), rustbp.Network.load(path, device=device.device)
    unpickled = pickle.loads(pickle.dumps(net))
    assert (on_cpu.device, on_cpu.dtype) == ("cpu", device.dtype)
    assert (here.device, here.dtype, unpickled.device, unpickled.dtype) == (device.device, device.dtype) * 2
    want = net.train(X, T, 4)  # the momentum buffers were saved: every copy continues the same run
    for copy in (here, unpickled, on_cpu):
        # On the device it was saved from, the run continues bit for bit; a GPU network's CPU copy
        # continues it to GPU_RTOL.
        tol = 0 if copy.device == device.device else GPU_RTOL
        assert_each_close(copy.train(X, T, 4), want, tol)
        assert_same_run(copy, net, tol)


# -- errors -------------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"hidden_activation": "swish"}, ValueError, "hidden_activation: expected one of sigmoid, tanh"),
        ({"output_activation": "gelu"}, ValueError, "output_activation"),
        ({"loss": "l1"}, ValueError, "loss: expected one of half_sse, mse, cross_entropy, binary_cross_entropy"),
        ({"bias": "some"}, ValueError, "bias: expected one of per_neuron, shared, none"),
        ({"dtype": "float16"}, ValueError, "dtype: expected one of float64, float32"),
        ({"device": "tpu"}, ValueError, "device: expected one of cpu, gpu"),
        ({"output_activation": "softmax"}, ValueError, "cross_entropy"),
        ({"loss": "cross_entropy"}, ValueError, "softmax"),
        (
            {"output_activation": "tanh", "loss": "binary_cross_entropy"},
            ValueError,
            "output_activation: expected sigmoid output with binary_cross_entropy",
        ),
        ({"output_activation": "softmax", "loss": "binary_cross_entropy"}, ValueError, "loss: expected softmax"),
        ({"optimizer": "sgd"}, TypeError, "optimizer"),
        ({"seed": -1}, ValueError, "seed"),
        ({"hidden_activation": 3}, TypeError, "hidden_activation"),
    ],
)
def test_bad_configuration_names_the_argument(device, kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        make_net(device, 4, 6, 3, **kwargs)


@pytest.mark.parametrize(
    ("widths", "error"),
    [((0, 2, 2), ValueError), ((2, -1, 2), ValueError), ((2, 2.5, 2), TypeError), ((True, 2, 2), TypeError)],
)
def test_bad_widths(device, widths, error):
    with pytest.raises(error, match=r"n_in|n_hidden|n_out"):
        make_net(device, *widths)


def test_too_large_network_is_refused_before_allocating(device):
    with pytest.raises((MemoryError, ValueError)):
        make_net(device, 1 << 20, 1 << 20, 1)


@pytest.mark.parametrize(
    ("make_opt", "pattern"),
    [
        (lambda: rustbp.SGD(lr=0), "lr"),
        (lambda: rustbp.SGD(lr=float("nan")), "lr"),
        (lambda: rustbp.SGD(lr=0.1, momentum=1.0), "momentum"),
        (lambda: rustbp.SGD(lr=0.1, nesterov=True), "nesterov"),
        (lambda: rustbp.SGD(lr=0.1, weight_decay=-1), "weight_decay"),
        (lambda: rustbp.Adam(betas=(0.9, 1.0)), r"betas\[1\]"),
        (lambda: rustbp.Adam(eps=0), "eps"),
    ],
)
def test_bad_optimizer_settings(make_opt, pattern):
    # Optimizers are plain settings, checked before any network or device exists.
    with pytest.raises(ValueError, match=pattern):
        make_opt()


def test_bad_arrays_name_the_argument_and_position(device):
    net = make_net(device, 4, 6, 3)
    with pytest.raises(ValueError, match=r"X: expected shape \(batch >= 1, 4\)"):
        net.forward(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="X"):
        net.forward(np.zeros((0, 4)))
    with pytest.raises(ValueError, match="X"):
        net.forward(np.zeros((1, 2, 4)))
    X = np.zeros((3, 4))
    X[2, 1] = np.nan
    with pytest.raises(ValueError, match=r"X: expected finite values, found NaN at position \[2, 1\]"):
        net.forward(X)
    with pytest.raises(ValueError, match=r"T: .*3 rows"):
        net.train_step(np.zeros((3, 4)), np.zeros((2, 3)))
    T = np.zeros((1, 3))
    T[0, 2] = -np.inf
    with pytest.raises(ValueError, match=r"T: .*position \[0, 2\]"):
        net.train(np.zeros(4), T, 3)
    for bad in ("abc", None, object(), [["a", "b", "c", "d"]], np.zeros(4, dtype=complex)):
        with pytest.raises(TypeError, match="X"):
            net.forward(bad)
    for name, call in (
        ("steps", lambda: net.train(X[:2], T[:1].repeat(2, 0), 0)),
        ("epochs", lambda: net.fit(np.zeros((2, 4)), np.zeros((2, 3)), 0)),
        ("batch_size", lambda: net.fit(np.zeros((2, 4)), np.zeros((2, 3)), 1, batch_size=-2)),
    ):
        with pytest.raises(ValueError, match=name):
            call()


def test_fit_errors_name_its_targets_y(device):
    net = make_net(device, 2, 3, 2)
    with pytest.raises(ValueError, match=r"^Y: expected 4 rows, like X, got 3$"):
        net.fit(np.zeros((4, 2)), np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match=r"^Y: expected finite values"):
        net.fit(np.zeros((4, 2)), np.full((4, 2), np.inf), 1)


def test_step_counts_too_large_for_memory_are_memory_errors(device):
    # Found by `make fuzz` with GPU networks: these were Rust panics (capacity overflow).
    net = make_net(device, 2, 3, 2)
    X = np.zeros((2, 2))
    with pytest.raises(MemoryError, match="losses"):
        net.train(X, X, 2**62)
    with pytest.raises(MemoryError, match="losses"):
        net.fit(X, X, 2**62)
    assert net.forward(X).shape == (2, 2)  # still usable


# -- divergence ---------------------------------------------------------------------------------------------
def test_divergence_raises_and_keeps_the_last_finite_weights(device):
    kw = dict(hidden_activation="identity", output_activation="identity", optimizer=rustbp.SGD(lr=50.0))
    net = make_net(device, 2, 4, 1, **kw)
    X, T = np.array([[3.0, -2.0]]), np.array([[1.0]])
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.train(X, T, 1000)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert 0 < err.step < 1000 and len(err.losses) == err.step
    assert all(np.isfinite(v).all() for v in net.get_weights().values())
    # The network is exactly where the last completed step left it.
    replay = make_net(device, 2, 4, 1, **kw)
    np.testing.assert_array_equal(replay.train(X, T, err.step), err.losses)
    assert_same_run(replay, net, 0)


@skip_on({"cpu-float64": "float64 holds these updates (about 1e44): the overflow needs float32's range"})
@pytest.mark.parametrize("widths", [(2, 3, 2), (40, 50, 3)], ids=["fused", "tiled"])
@pytest.mark.parametrize("opt", [rustbp.SGD(lr=1e38), rustbp.SGD(lr=1e38, momentum=0.9), rustbp.Adam(lr=1e38)])
def test_an_update_to_non_finite_weights_diverges(device, widths, opt):
    # The step's loss is finite but its update overflows: found by `make fuzz`, where the GPU kept the
    # infinite weights. The step is refused and the weights stay those before it.
    kw = dict(optimizer=opt, hidden_activation="identity", output_activation="identity", loss="mse")
    net = make_net(device, *widths, **kw)
    before = net.get_weights()
    X, T = np.full((1, widths[0]), 1e3), np.full((1, widths[2]), -1e3)
    for call in (lambda: net.train_step(X, T), lambda: net.train(X, T, 3), lambda: net.fit(X, T, 2)):
        with pytest.raises(rustbp.TrainingDivergedError, match="weights became non-finite") as info:
            call()
        assert info.value.step == 0
    for k, v in net.get_weights().items():
        np.testing.assert_array_equal(v, before[k])


# -- threads and repr -----------------------------------------------------------------------------------------
def test_forward_from_many_threads(device, rng):
    net = make_net(device, 16, 64, 8)
    X = rng.normal(size=(256, 16))
    want = net.forward(X)
    calls = 20 if device.device == "cpu" else 3  # some 30 ms a call on lavapipe
    results, errors = [], []

    def worker():
        try:
            for _ in range(calls):
                results.append(net.forward(X))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if device.device == "gpu":
        # A GPU network serves one call at a time: a call from another thread meanwhile is refused clearly
        # (and ends that worker); the calls it serves are right.
        assert results and all(isinstance(e, RuntimeError) and "busy" in str(e) for e in errors)
    else:
        assert not errors and len(results) == 8 * calls
    assert all(np.array_equal(r, want) for r in results)


def test_repr_names_the_configuration(device):
    r = repr(make_net(device, 4, 6, 3, optimizer=rustbp.Adam(lr=0.01)))
    assert r.startswith("Network(4, 6, 3,") and "Adam(lr=0.01" in r
    assert f"dtype={device.dtype!r}" in r and f"device={device.device!r}" in r
