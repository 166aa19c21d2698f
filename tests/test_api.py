"""The public API contract: shapes, semantics of losses, biases and optimizers (against an independent
NumPy implementation), seeds, 1-D vs 2-D inputs, and clear errors for bad input."""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest
import rustbp
from rustbp.bench import numpy_net as ref

OUTPUTS = [
    ("sigmoid", "half_sse"),
    ("tanh", "mse"),
    ("identity", "half_sse"),
    ("relu", "mse"),
    ("softmax", "cross_entropy"),
]


def make(n_in=4, n_hidden=6, n_out=3, **kw):
    kw.setdefault("seed", 7)
    return rustbp.Network(n_in, n_hidden, n_out, **kw)


def targets(rng, loss, batch, n_out):
    if loss == "cross_entropy":
        return np.eye(n_out)[rng.integers(0, n_out, batch)]
    return rng.uniform(0.1, 0.9, (batch, n_out))


@pytest.mark.parametrize("bias", ["per_neuron", "shared", "none"])
def test_weight_shapes_follow_nn_linear(bias):
    w = make(bias=bias).get_weights()
    assert w["w1"].shape == (6, 4) and w["w2"].shape == (3, 6)
    if bias == "none":
        assert set(w) == {"w1", "w2"}
    else:
        expected = (6,) if bias == "per_neuron" else (1,)
        assert w["b1"].shape == expected and w["b2"].shape == ((3,) if bias == "per_neuron" else (1,))


def test_default_init_is_pytorch_uniform_and_seeded():
    a, b, c = make(64, 32, 5, seed=1), make(64, 32, 5, seed=1), make(64, 32, 5, seed=2)
    wa, wb, wc = a.get_weights(), b.get_weights(), c.get_weights()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k])
        assert not np.array_equal(wa[k], wc[k])
    assert np.abs(wa["w1"]).max() < 1 / 8 and np.abs(wa["w1"]).max() > 0.11  # bound 1/sqrt(64)
    assert np.abs(wa["b2"]).max() < 1 / np.sqrt(32)
    # Unseeded networks differ.
    assert not np.array_equal(make(seed=None).get_weights()["w1"], make(seed=None).get_weights()["w1"])


@pytest.mark.parametrize(
    ("hidden", "output_loss", "bias"),
    list(itertools.product(["sigmoid", "tanh", "relu", "identity"], OUTPUTS, ["per_neuron", "shared", "none"])),
)
def test_forward_loss_and_one_step_match_numpy(rng, hidden, output_loss, bias):
    output, loss = output_loss
    net = make(
        5, 7, 3, hidden_activation=hidden, output_activation=output, loss=loss, bias=bias, optimizer=rustbp.SGD(lr=0.3)
    )
    X = rng.normal(size=(9, 5))
    T = targets(rng, loss, 9, 3)
    w = net.get_weights()
    *_, o = ref.forward(w, X, hidden, output)
    np.testing.assert_allclose(net.forward(X), o, rtol=1e-12, atol=1e-14)
    value, g = ref.loss_and_grads(w, X, T, hidden, output, loss)
    assert net.loss(X, T) == pytest.approx(value, rel=1e-12)
    assert net.train_step(X, T) == pytest.approx(value, rel=1e-12)
    ref.SGD(0.3).step(w, g)
    for k, v in net.get_weights().items():
        np.testing.assert_allclose(v, w[k], rtol=1e-12, atol=1e-14, err_msg=k)


def test_loss_definitions():
    net = make(2, 3, 2, output_activation="identity", bias="none")
    X = np.array([[1.0, 2.0], [3.0, 4.0]])
    o = net.forward(X)
    T = o + np.array([[1.0, 2.0], [3.0, 0.0]])  # errors 1, 2, 3, 0
    assert net.loss(X, T) == pytest.approx(0.5 * (1 + 4 + 9) / 2)  # half_sse: per sample, mean over batch
    mse = make(2, 3, 2, output_activation="identity", bias="none", loss="mse")
    assert mse.loss(X, T) == pytest.approx((1 + 4 + 9) / 4)  # MSELoss: mean over elements
    ce = make(2, 3, 3, output_activation="softmax", loss="cross_entropy")
    p = ce.forward(X)
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    assert ce.loss(X, np.eye(3)[[0, 2]]) == pytest.approx(-(np.log(p[0, 0]) + np.log(p[1, 2])) / 2)


OPTIMIZERS = [
    (rustbp.SGD(lr=0.1, momentum=0.9), ref.SGD(0.1, 0.9)),
    (rustbp.SGD(lr=0.1, momentum=0.8, nesterov=True, weight_decay=0.01), ref.SGD(0.1, 0.8, True, 0.01)),
    (rustbp.SGD(lr=0.2, weight_decay=0.1), ref.SGD(0.2, weight_decay=0.1)),
    (rustbp.Adam(lr=0.01), ref.Adam(0.01)),
    (rustbp.Adam(lr=0.05, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01), ref.Adam(0.05, (0.8, 0.99), 1e-6, 0.01)),
]


@pytest.mark.parametrize(("opt", "reference"), OPTIMIZERS, ids=repr)
def test_optimizer_trajectories_match_numpy(rng, opt, reference):
    net = make(4, 8, 2, hidden_activation="tanh", optimizer=opt)
    X, T = rng.normal(size=(6, 4)), rng.uniform(size=(6, 2))
    w = net.get_weights()
    for step in range(20):
        value, g = ref.loss_and_grads(w, X, T, "tanh")
        reference.step(w, g)
        assert net.train_step(X, T) == pytest.approx(value, rel=1e-10), step
    for k, v in net.get_weights().items():
        np.testing.assert_allclose(v, w[k], rtol=1e-10, atol=1e-13, err_msg=k)


def test_frozen_biases_stay_put(rng):
    net = make(bias="per_neuron", train_bias=False)
    before = net.get_weights()
    net.train(rng.normal(size=(5, 4)), rng.uniform(size=(5, 3)), 10)
    after = net.get_weights()
    np.testing.assert_array_equal(before["b1"], after["b1"])
    np.testing.assert_array_equal(before["b2"], after["b2"])
    assert not np.array_equal(before["w1"], after["w1"])


def test_one_and_two_dimensional_inputs(rng):
    net = make()
    X = rng.normal(size=(3, 4))
    batch = net.forward(X)
    assert batch.shape == (3, 3)
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


def test_float32_networks_compute_in_float32(rng):
    net = make(dtype="float32")
    X = rng.normal(size=(3, 4))
    assert net.forward(X).dtype == np.float32
    assert net.get_weights()["w1"].dtype == np.float32
    ref64 = make(dtype="float64")
    np.testing.assert_allclose(net.forward(X), ref64.forward(X), rtol=1e-6)
    l32 = net.train(X, np.full((3, 3), 0.5), 30)
    l64 = ref64.train(X, np.full((3, 3), 0.5), 30)
    np.testing.assert_allclose(l32, l64, rtol=1e-5)


def test_train_returns_losses_before_each_update(rng):
    net = make()
    X, T = rng.normal(size=(4, 4)), rng.uniform(size=(4, 3))
    twin = make()
    losses = net.train(X, T, 5)
    assert losses.shape == (5,)
    for i in range(5):
        assert twin.loss(X, T) == losses[i]
        twin.train_step(X, T)


def test_fit_batches_shuffles_reproducibly(rng):
    X, Y = rng.normal(size=(37, 4)), rng.uniform(size=(37, 3))
    a, b, c = make(), make(), make()
    la = a.fit(X, Y, epochs=3, batch_size=8, seed=5)
    lb = b.fit(X, Y, epochs=3, batch_size=8, seed=5)
    assert la.shape == (3,)
    np.testing.assert_array_equal(la, lb)
    np.testing.assert_array_equal(a.get_weights()["w1"], b.get_weights()["w1"])
    c.fit(X, Y, epochs=3, batch_size=8, seed=6)
    assert not np.array_equal(a.get_weights()["w1"], c.get_weights()["w1"])
    # Unshuffled, an epoch is the sample-weighted mean of train_step over consecutive batches.
    d, e = make(), make()
    epoch = d.fit(X, Y, epochs=1, batch_size=10, shuffle=False)[0]
    steps = [e.train_step(X[i : i + 10], Y[i : i + 10]) * len(X[i : i + 10]) for i in range(0, 37, 10)]
    assert epoch == pytest.approx(sum(steps) / 37, rel=1e-14)


def test_set_weights_round_trips_and_checks(rng):
    net = make()
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


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"hidden_activation": "swish"}, ValueError, "hidden_activation: expected one of sigmoid, tanh"),
        ({"output_activation": "gelu"}, ValueError, "output_activation"),
        ({"loss": "l1"}, ValueError, "loss: expected one of half_sse, mse, cross_entropy"),
        ({"bias": "some"}, ValueError, "bias: expected one of per_neuron, shared, none"),
        ({"dtype": "float16"}, ValueError, "dtype: expected one of float64, float32"),
        ({"device": "tpu"}, ValueError, "device: expected one of cpu, gpu"),
        ({"output_activation": "softmax"}, ValueError, "cross_entropy"),
        ({"loss": "cross_entropy"}, ValueError, "softmax"),
        ({"optimizer": "sgd"}, TypeError, "optimizer"),
        ({"seed": -1}, ValueError, "seed"),
        ({"hidden_activation": 3}, TypeError, "hidden_activation"),
    ],
)
def test_bad_configuration_names_the_argument(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        make(**kwargs)


@pytest.mark.parametrize(
    ("widths", "error"),
    [((0, 2, 2), ValueError), ((2, -1, 2), ValueError), ((2, 2.5, 2), TypeError), ((True, 2, 2), TypeError)],
)
def test_bad_widths(widths, error):
    with pytest.raises(error, match=r"n_in|n_hidden|n_out"):
        rustbp.Network(*widths)


def test_too_large_network_is_refused_before_allocating():
    with pytest.raises((MemoryError, ValueError)):
        rustbp.Network(1 << 20, 1 << 20, 1)


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
    with pytest.raises(ValueError, match=pattern):
        make_opt()


def test_bad_arrays_name_the_argument_and_position():
    net = make()
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


def test_divergence_raises_and_keeps_the_last_finite_weights():
    net = make(
        2,
        4,
        1,
        hidden_activation="identity",
        output_activation="identity",
        optimizer=rustbp.SGD(lr=50.0),
        dtype="float32",
    )
    X, T = np.array([[3.0, -2.0]]), np.array([[1.0]])
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.train(X, T, 1000)
    err = info.value
    assert isinstance(err, FloatingPointError)
    assert 0 < err.step < 1000 and len(err.losses) == err.step
    assert all(np.isfinite(v).all() for v in net.get_weights().values())
    # The network is exactly where the last completed step left it.
    replay = make(
        2,
        4,
        1,
        hidden_activation="identity",
        output_activation="identity",
        optimizer=rustbp.SGD(lr=50.0),
        dtype="float32",
    )
    np.testing.assert_array_equal(replay.train(X, T, err.step), err.losses)
    for k, v in replay.get_weights().items():
        np.testing.assert_array_equal(v, net.get_weights()[k])


def test_forward_from_many_threads(rng):
    net = make(16, 64, 8)
    X = rng.normal(size=(256, 16))
    want = net.forward(X)
    results, errors = [], []

    def worker():
        try:
            for _ in range(20):
                results.append(net.forward(X))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(results) == 160 and all(np.array_equal(r, want) for r in results)


def test_repr_names_the_configuration():
    r = repr(make(optimizer=rustbp.Adam(lr=0.01), dtype="float32"))
    assert r.startswith("Network(4, 6, 3,") and "Adam(lr=0.01" in r and "float32" in r
