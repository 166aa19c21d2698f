"""What a practitioner coming from scikit-learn or PyTorch expects: class indices as targets, shape errors
that say what to do, predict, changing the learning rate or optimizer mid-training without losing its
state, progress wherever the output goes, PyTorch dtypes, clear messages, and typed option strings."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
import textwrap
import types

import numpy as np
import pytest
import rustbp
from rustbp import training


def classifier(n_in=8, n_out=4, **kw):
    kw = {"hidden_activation": "relu", "output_activation": "softmax", "loss": "cross_entropy", "seed": 0, **kw}
    return rustbp.Network(n_in, 6, n_out, **kw)


def class_data(rng, n=40, n_in=8, n_out=4):
    return rng.normal(size=(n, n_in)), rng.integers(0, n_out, n)


# -- labels ----------------------------------------------------------------------------------------------
def test_class_indices_train_exactly_like_one_hot_rows(rng):
    X, y = class_data(rng)
    a, b = classifier(optimizer=rustbp.Adam(lr=0.01)), classifier(optimizer=rustbp.Adam(lr=0.01))
    onehot = np.eye(4)[y]
    assert a.loss(X, y) == b.loss(X, onehot)
    assert a.train_step(X, y) == b.train_step(X, onehot)
    np.testing.assert_array_equal(a.train(X, y, 5), b.train(X, onehot, 5))
    ha = a.fit(X, y, 3, batch_size=8, seed=0, validation_data=(X[:10], y[:10]))
    hb = b.fit(X, onehot, 3, batch_size=8, seed=0, validation_data=(X[:10], onehot[:10]))
    assert ha.history == hb.history
    # One sample: an integer scalar with a 1-D x, or a (1,) array with a (1, n_in) batch.
    assert a.loss(X[0], np.int64(y[0])) == b.loss(X[0], onehot[0])
    assert a.loss(X[:1], y[:1]) == b.loss(X[:1], onehot[:1])
    for dtype in (np.int8, np.uint16, np.int64):
        assert a.loss(X, y.astype(dtype)) == b.loss(X, onehot)
    # A list of integers one per sample also counts as indices; a one-hot row of one sample stays a row.
    assert a.loss(X[:3], y[:3].tolist()) == b.loss(X[:3], onehot[:3])
    assert a.loss(X[0], [0, 0, 1, 0]) == b.loss(X[0], np.eye(4)[2])


def test_digits_labels_are_accepted_as_they_come(rng):
    X, y = rng.random((1797, 64)), rng.integers(0, 10, 1797)  # digits' shapes: (1797, 64) and (1797,)
    net = rustbp.Network(64, 16, 10, output_activation="softmax", loss="cross_entropy", seed=0)
    assert net.fit(X, y, 1).epochs == 1


@pytest.mark.parametrize(
    ("targets", "pattern"),
    [
        (np.array([0, 1, 4, 2]), r"^T: class indices must be integers in \[0, 4\), got 4 at position 2$"),
        (np.array([0, -1, 2, 2]), r"^T: class indices must be integers in \[0, 4\), got -1 at position 1$"),
        (np.array([0.0, 1.0, 2.0, 1.0]), r"^T: expected shape \(4, 4\), one row per sample of X, or \(4,\) of "
         r"class indices, got \(4,\); class indices must be integers: T.astype\(int\)$"),
        (np.array([[0], [1], [2], [1]]), r"for class indices pass a 1-D array: T.ravel\(\)"),
        (np.full((4, 4), 0.3), r"^T: cross_entropy targets must be rows summing to 1 .*row 0 summing to 1.2"),
        (np.array([[1.5, -0.5, 0, 0]] * 4), r"^T: cross_entropy targets must be non-negative .* -0.5 at position "
         r"\[0, 1\]$"),
        (np.array([0, 1, 2]), r"^T: expected shape \(4, 4\), one row per sample of X, or \(4,\) of class indices, "
         r"got \(3,\)$"),
        (np.eye(4)[:3], r"^T: expected 4 rows, like X, got 3$"),
    ],
)  # fmt: skip
def test_bad_class_targets_say_what_is_wrong(targets, pattern):
    net = classifier()
    for call in (lambda: net.train_step(np.zeros((4, 8)), targets), lambda: net.loss(np.zeros((4, 8)), targets)):
        with pytest.raises(ValueError, match=pattern):
            call()


def test_soft_targets_within_tolerance_are_accepted(rng):
    net = classifier()
    X = rng.normal(size=(5, 8))
    soft = rng.dirichlet(np.ones(4), 5)
    assert np.isfinite(net.loss(X, soft))
    assert np.isfinite(net.loss(X, soft.astype(np.float32)))  # rounded to float32: sums off by ~1e-7
    # NaN is left to Rust, which says where it is.
    soft[1, 2] = np.nan
    with pytest.raises(ValueError, match=r"T: expected finite values, found NaN at position \[1, 2\]"):
        net.loss(X, soft)


def test_shape_errors_give_the_shape_as_given_and_the_fix():
    reg = rustbp.Network(3, 4, 1, output_activation="identity", loss="mse")
    with pytest.raises(ValueError, match=r"^Y: expected shape \(5, 1\), one row per sample of X, got \(5,\); "
                       r"reshape it to a column: Y.reshape\(-1, 1\)$"):  # fmt: skip
        reg.fit(np.zeros((5, 3)), np.zeros(5), 1)
    sig = rustbp.Network(3, 4, 10)
    with pytest.raises(ValueError, match=r"got \(1797,\); for class labels 0..9, one-hot encode them "
                       r"\(np.eye\(10\)\[Y\]\) or use .*cross_entropy"):  # fmt: skip
        sig.fit(np.zeros((1797, 3)), np.zeros(1797, dtype=int), 1)
    with pytest.raises(ValueError, match=r"^Y: expected 1797 rows, like X, got 1796$"):
        sig.fit(np.zeros((1797, 3)), np.zeros((1796, 10)), 1)
    # The train_step fast path: the core refuses, Python explains.
    with pytest.raises(ValueError, match=r"^T: expected shape \(2, 10\), .* got \(10, 2\); samples are rows"):
        sig.train_step(np.zeros((2, 3)), np.zeros((10, 2)))
    with pytest.raises(ValueError, match=r"^X: expected shape \(batch >= 1, 3\) or \(3,\), got \(3, 5\); samples"):
        sig.forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match=r"got \(2, 1, 3\); flatten each sample: X.reshape\(len\(X\), -1\)"):
        sig.train_step(np.zeros((2, 1, 3)), np.zeros((2, 10)))
    one = rustbp.Network(1, 4, 1)
    with pytest.raises(ValueError, match=r"got \(7,\); for 7 samples of one feature, reshape it to a column"):
        one.train(np.zeros(7), np.zeros((7, 1)), 1)
    with pytest.raises(ValueError, match=r"^validation_data\[1\]: expected 2 rows, like X, got 3$"):
        sig.fit(np.zeros((4, 3)), np.zeros((4, 10)), 1, validation_data=(np.zeros((2, 3)), np.zeros((3, 10))))


def test_predict_gives_classes_for_classifiers_and_outputs_otherwise(rng):
    X = rng.normal(size=(30, 8))
    soft = classifier()
    np.testing.assert_array_equal(soft.predict(X), np.argmax(soft.forward(X), axis=1))
    assert soft.predict(X[0]) == np.argmax(soft.forward(X[0]))
    binary = rustbp.Network(8, 5, 1, seed=3)  # one sigmoid output
    w = binary.get_weights()
    median = np.median(binary.forward(X))
    binary.set_weights({**w, "b2": w["b2"] - np.log(median / (1 - median))})  # half the outputs above 0.5
    out = binary.forward(X)[:, 0]
    np.testing.assert_array_equal(binary.predict(X), np.where(out >= 0.5, 1, 0))
    assert binary.predict(X).dtype == np.int64 and 10 < binary.predict(X).sum() < 20
    for net in (rustbp.Network(8, 5, 2, seed=3), rustbp.Network(8, 5, 1, output_activation="identity")):
        np.testing.assert_array_equal(net.predict(X), net.forward(X))


# -- learning rate and optimizer ------------------------------------------------------------------------------
def test_set_lr_continues_sgd_momentum_by_its_formula(rng):
    net = rustbp.Network(2, 3, 2, seed=0, optimizer=rustbp.SGD(lr=0.5, momentum=0.9))
    x, t = np.array([0.05, 0.10]), np.array([0.01, 0.99])
    before = [net.get_weights()]
    for _ in range(3):
        net.train_step(x, t)
        before.append(net.get_weights())
    net.set_lr(0.05)
    assert net.optimizer == rustbp.SGD(lr=0.05, momentum=0.9)
    grads = copy.deepcopy(net).explain_step(x, t)  # the gradient at the current weights
    net.train_step(x, t)
    for k in ("w1", "b1", "w2", "b2"):
        buffer = (before[2][k] - before[3][k]) / 0.5  # PyTorch's momentum buffer after 3 steps at lr 0.5
        expected = before[3][k] - 0.05 * (0.9 * buffer + grads[f"grad_{k}"])
        np.testing.assert_allclose(net.get_weights()[k], expected, rtol=1e-12, atol=1e-15)


def twin(net, optimizer):
    """A network built with ``optimizer`` that holds ``net``'s weights and optimizer state."""
    other = rustbp.Network(4, 5, 3, optimizer=optimizer, seed=9, dtype=net.dtype)
    other.set_weights(net.get_weights())
    other._core.set_optimizer_state(*net._core.get_optimizer_state())
    return other


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_changed_settings_keep_the_optimizer_state(rng, dtype):
    X, T = rng.normal(size=(8, 4)), rng.random((8, 3))
    net = rustbp.Network(4, 5, 3, optimizer=rustbp.Adam(lr=0.01), seed=1, dtype=dtype)
    net.train(X, T, 4)
    reference = twin(net, rustbp.Adam(lr=0.002))  # the same state under the new rate, from the start
    net.set_lr(0.002)
    np.testing.assert_array_equal(net.train(X, T, 3), reference.train(X, T, 3))
    assert net.dtype == dtype and net.config.seed == 1
    reference = twin(net, rustbp.Adam(lr=0.002, betas=(0.8, 0.99)))
    net.optimizer = rustbp.Adam(lr=0.002, betas=(0.8, 0.99))
    np.testing.assert_array_equal(net.train(X, T, 3), reference.train(X, T, 3))
    assert net.config.optimizer == rustbp.Adam(lr=0.002, betas=(0.8, 0.99))


def test_another_kind_of_optimizer_starts_afresh(rng):
    X, T = rng.normal(size=(8, 4)), rng.random((8, 3))
    net = rustbp.Network(4, 5, 3, optimizer=rustbp.Adam(lr=0.01), seed=1)
    net.train(X, T, 4)
    fresh = rustbp.Network(4, 5, 3, optimizer=rustbp.SGD(lr=0.1, momentum=0.5), seed=2)
    fresh.set_weights(net.get_weights())
    net.optimizer = rustbp.SGD(lr=0.1, momentum=0.5)
    np.testing.assert_array_equal(net.train(X, T, 3), fresh.train(X, T, 3))
    # Momentum switched on: its buffer starts at zero, as PyTorch's, so the first step is plain SGD.
    plain = rustbp.Network(4, 5, 3, optimizer=rustbp.SGD(lr=0.1), seed=3)
    plain.train(X, T, 2)
    reference = rustbp.Network(4, 5, 3, optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=4)
    reference.set_weights(plain.get_weights())
    plain.optimizer = rustbp.SGD(lr=0.1, momentum=0.9)
    np.testing.assert_array_equal(plain.train(X, T, 3), reference.train(X, T, 3))


def test_bad_learning_rates_and_optimizers_are_refused():
    net = rustbp.Network(2, 2, 2)
    with pytest.raises(ValueError, match="lr: expected a finite number > 0, got -1"):
        net.set_lr(-1)
    with pytest.raises(TypeError, match=r"optimizer: expected rustbp\.SGD or rustbp\.Adam, got str"):
        net.optimizer = "adam"
    assert net.optimizer == rustbp.SGD(lr=0.5)


# -- progress -------------------------------------------------------------------------------------------------
def test_verbose_prints_epoch_lines_when_stderr_is_not_a_terminal(rng, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    X, y = class_data(rng)
    seen = []
    history = classifier().fit(X, y, 3, verbose=True, validation_split=0.25, patience=5,
                               callbacks=[lambda epoch, logs: seen.append(epoch)])  # fmt: skip
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[0] for line in lines] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"]
    assert f"loss={history.loss[0]:.6g}" in lines[0] and "val_loss=" in lines[0]
    assert seen == [0, 1, 2], "callbacks count from 0"
    assert history.best_epoch == int(np.argmin(history.val_loss)), "best_epoch indexes the history arrays"
    classifier().fit(X, y, 2)
    assert capsys.readouterr().err == "", "quiet unless verbose"


def test_verbose_train_reports_every_log_every_steps(rng, capsys, monkeypatch):
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)
    X, y = class_data(rng)
    losses = classifier().train(X, y, 2500, log_every=1000, verbose=True)
    lines = capsys.readouterr().err.splitlines()
    assert lines == [f"step {n}/2500: loss={losses[n - 1]:.6g}" for n in (1000, 2000, 2500)]


def test_verbose_without_tqdm_on_a_terminal_prints_lines(rng, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    X, y = class_data(rng)
    classifier().fit(X, y, 2, verbose=True)
    assert len(capsys.readouterr().err.splitlines()) == 2


def test_verbose_in_jupyter_uses_tqdm_auto(rng, monkeypatch):
    bars = []

    class Bar:
        def __init__(self, **kw):
            self.n, self.kw = 0, kw
            bars.append(self)

        def set_postfix(self, logs, refresh=True):
            self.logs = logs

        def update(self, n):
            self.n += n

        def close(self):
            self.closed = True

    shell = types.SimpleNamespace(config={"IPKernelApp": {}})
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: shell))
    monkeypatch.setitem(sys.modules, "tqdm.auto", types.SimpleNamespace(tqdm=Bar))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: False)  # a kernel's stderr is no terminal
    X, y = class_data(rng)
    classifier().fit(X, y, 3, verbose=True)
    (bar,) = bars
    assert bar.n == bar.kw["total"] == 3 and bar.closed and "loss" in bar.logs
    assert training._in_notebook()
    monkeypatch.setitem(sys.modules, "IPython", types.SimpleNamespace(get_ipython=lambda: None))
    assert not training._in_notebook(), "plain IPython in a terminal is no notebook"


def test_estimators_print_each_epoch_when_verbose(rng, capsys):
    from rustbp.sklearn import NetworkClassifier

    X, y = class_data(rng)
    clf = NetworkClassifier(n_hidden=5, max_iter=3, verbose=True, random_state=0).fit(X, y)
    out = capsys.readouterr().out.splitlines()
    assert out == [f"Epoch {i + 1}, loss = {loss:.8f}" for i, loss in enumerate(clf.loss_curve_)]
    clf.partial_fit(X, y)
    assert capsys.readouterr().out.startswith("Epoch 4, loss = ")
    NetworkClassifier(n_hidden=5, max_iter=2, random_state=0).fit(X, y)
    assert capsys.readouterr().out == ""


# -- interchange ----------------------------------------------------------------------------------------------
def test_to_torch_defaults_to_pytorchs_dtype(rng):
    torch = pytest.importorskip("torch")
    net = rustbp.Network(5, 6, 3, hidden_activation="tanh", seed=0)  # float64
    X = rng.normal(size=(4, 5))
    module = net.to_torch()
    assert module[0].weight.dtype == torch.get_default_dtype() == torch.float32
    with torch.no_grad():
        out = module(torch.tensor(X, dtype=torch.float32)).numpy()
    np.testing.assert_allclose(out, net.forward(X), rtol=1e-5)
    exact = net.to_torch(dtype="float64")
    with torch.no_grad():
        np.testing.assert_allclose(exact(torch.from_numpy(X)).numpy(), net.forward(X), rtol=1e-12)
    assert net.to_torch(dtype=torch.float64)[2].weight.dtype == torch.float64
    with pytest.raises(ValueError, match="dtype: expected None, float32 or float64"):
        net.to_torch(dtype="float16")


def test_from_torch_on_raw_logits_warns_and_makes_a_softmax_classifier(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    torch.manual_seed(0)
    module = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 3))
    with pytest.warns(UserWarning, match=r"raw outputs .*'softmax'.*'cross_entropy'.*loss='mse'"):
        net = rustbp.Network.from_torch(module)
    assert (net.config.output_activation, net.config.loss) == ("softmax", "cross_entropy")
    X = rng.normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = torch.softmax(module(torch.from_numpy(X)), dim=-1).numpy()
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-5)
    quiet = rustbp.Network.from_torch(module, loss="cross_entropy")  # said: no warning
    assert quiet.config.output_activation == "softmax"
    regression = rustbp.Network.from_torch(module, loss="mse")
    assert regression.config.output_activation == "identity"
    with pytest.warns(UserWarning, match="regression output"):
        one = rustbp.Network.from_torch(nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1)))
    assert one.config.output_activation == "identity"


# -- binary cross-entropy -----------------------------------------------------------------------------------
def test_binary_cross_entropy_learns_a_binary_classifier_and_predicts_classes(rng):
    X = rng.normal(size=(80, 2))
    y = (X[:, 0] + X[:, 1] > 0).astype(np.float64).reshape(-1, 1)
    net = rustbp.Network(2, 8, 1, hidden_activation="tanh", loss="binary_cross_entropy", seed=0,
                         optimizer=rustbp.Adam(lr=0.05))  # fmt: skip
    history = net.fit(X, y, 40, batch_size=16, seed=0)
    assert history.loss[-1] < 0.2 < history.loss[0]
    assert (net.predict(X) == y.ravel()).mean() >= 0.95
    assert net.predict(X[0]) in (0, 1)


def test_binary_cross_entropy_stays_finite_where_the_sigmoid_saturates():
    net = rustbp.Network(1, 1, 1, hidden_activation="identity", loss="binary_cross_entropy", seed=0,
                         optimizer=rustbp.SGD(lr=0.1))  # fmt: skip
    net.set_weights({"w1": [[1.0]], "b1": [0.0], "w2": [[1.0]], "b2": [0.0]})
    X = np.array([[-800.0], [40.0]])
    assert net.forward(X).ravel().tolist() == [0.0, 1.0]  # where -t ln(o) - (1 - t) ln(1 - o) is inf
    # ln(1 + e^z) - z t: 800 for z = -800, t = 1; 40 - 40 + e^-40 for z = 40, t = 1; the mean of the two.
    assert net.loss(X, [[1.0], [1.0]]) == pytest.approx((800 + np.exp(-40)) / 2, rel=1e-15)
    net.train_step(X, [[1.0], [1.0]])
    assert all(np.isfinite(v).all() for v in net.get_weights().values())


@pytest.mark.parametrize(
    ("targets", "pattern"),
    [
        (
            np.array([[0.5], [1.5]]),
            r"^[TY]: binary_cross_entropy targets must be probabilities in \[0, 1\], got 1.5 at position \[1, 0\]$",
        ),
        (np.array([[-0.25], [1.0]]), r"got -0.25 at position \[0, 0\]$"),
    ],
)
def test_binary_cross_entropy_targets_must_be_probabilities(targets, pattern):
    net = rustbp.Network(2, 3, 1, loss="binary_cross_entropy", seed=0)
    X = np.zeros((2, 2))
    for call in (net.loss, net.train_step, lambda x, t: net.fit(x, t, 1), lambda x, t: net.train(x, t, 1)):
        with pytest.raises(ValueError, match=pattern):
            call(X, targets)
    assert net.loss(X, [[0.0], [1.0]]) > 0  # the ends are allowed


def test_explain_step_shows_the_sigmoids_cancelling_for_binary_cross_entropy(rng):
    net = rustbp.Network(3, 4, 2, loss="binary_cross_entropy", seed=1)
    x, t = rng.normal(size=3), np.array([0.0, 0.7])
    step = net.explain_step(x, t)
    o = step["out_output"]
    np.testing.assert_allclose(step["delta_output"], (o - t) / 2, rtol=1e-14)
    np.testing.assert_allclose(step["dE_dout_output"] * step["dout_dnet_output"], step["delta_output"], rtol=1e-12)
    np.testing.assert_allclose(step["E_output"], -(t * np.log(o) + (1 - t) * np.log(1 - o)) / 2, rtol=1e-12)
    assert step["E_output"].sum() == pytest.approx(step["loss"], rel=1e-14)
    text = "\n".join(step.formulas())
    assert "delta_o1 = (out_o1 - T1) / 2" in text and "BCELoss" in text
    with pytest.raises(
        ValueError, match=r"^t: binary_cross_entropy targets must be probabilities in \[0, 1\], got 2.0"
    ):
        net.explain_step(x, [0.0, 2.0])


def test_from_torch_with_binary_cross_entropy_takes_the_logits_sigmoid(rng):
    torch = pytest.importorskip("torch")
    nn = torch.nn
    module = nn.Sequential(nn.Linear(4, 6), nn.ReLU(), nn.Linear(6, 1))
    net = rustbp.Network.from_torch(module, loss="binary_cross_entropy")  # said: no warning
    assert (net.config.output_activation, net.config.loss) == ("sigmoid", "binary_cross_entropy")
    X = rng.normal(size=(5, 4)).astype(np.float32)
    with torch.no_grad():
        expected = torch.sigmoid(module(torch.from_numpy(X))).numpy()
    np.testing.assert_allclose(net.forward(X), expected, rtol=1e-5)


# -- sample weights -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_integer_sample_weights_train_like_repeated_rows(rng, dtype):
    X, y = class_data(rng, 12)
    w = np.array([2, 0, 1, 3, 1, 0, 1, 2, 1, 1, 0, 4])
    weighted, repeated = classifier(dtype=dtype), classifier(dtype=dtype)
    # Whole-set batches: the weighted mean loss over the rows is the mean over the repeated rows.
    h_w = weighted.fit(X, y, 5, batch_size=len(X), seed=0, sample_weight=w)
    h_r = repeated.fit(np.repeat(X, w, axis=0), np.repeat(y, w), 5, batch_size=w.sum(), seed=0)
    rtol = 1e-12 if dtype == "float64" else 1e-5
    np.testing.assert_allclose(h_w.loss, h_r.loss, rtol=rtol)
    for k, v in weighted.get_weights().items():
        np.testing.assert_allclose(v, repeated.get_weights()[k], rtol=rtol, atol=rtol, err_msg=k)


def test_equal_sample_weights_train_bit_for_bit_as_none(rng):
    X, y = class_data(rng, 30)
    plain, ones, fives = classifier(), classifier(), classifier()
    h = plain.fit(X, y, 3, batch_size=8, seed=1)
    assert ones.fit(X, y, 3, batch_size=8, seed=1, sample_weight=np.ones(30)).history == h.history
    assert fives.fit(X, y, 3, batch_size=8, seed=1, sample_weight=[5] * 30).history == h.history
    for k, v in plain.get_weights().items():
        np.testing.assert_array_equal(v, ones.get_weights()[k])
        np.testing.assert_array_equal(v, fives.get_weights()[k])


def test_sample_weights_split_with_validation_and_count_in_mini_batches(rng):
    X, y = class_data(rng, 20)
    w = rng.uniform(0.5, 2, 20)
    # validation_split keeps the first 16 rows and their weights.
    a, b = classifier(), classifier()
    ha = a.fit(X, y, 2, batch_size=5, seed=2, validation_split=0.2, sample_weight=w)
    hb = b.fit(X[:16], y[:16], 2, batch_size=5, seed=2, validation_data=(X[16:], y[16:]), sample_weight=w[:16])
    assert ha.history == hb.history
    # Weights matter in mini-batches: a zero weight removes a row's pull.
    c, d = classifier(), classifier()
    assert c.fit(X, y, 2, batch_size=5, seed=2, sample_weight=w).history != d.fit(X, y, 2, batch_size=5, seed=2).history


@pytest.mark.parametrize(
    ("weights", "error", "pattern"),
    [
        (np.ones(5), ValueError, r"sample_weight: expected shape \(6,\), one weight per sample of X, got \(5,\)"),
        (np.ones((6, 1)), ValueError, r"sample_weight: expected shape \(6,\)"),
        ([1, 1, -1, 1, 1, 1], ValueError, "sample_weight: expected weights >= 0, got -1"),
        (np.zeros(6), ValueError, "sample_weight: expected weights with a positive, finite sum"),
        ([1, 1, np.nan, 1, 1, 1], ValueError, r"sample_weight: expected finite values, found NaN at position \[2, 0\]"),
        ("heavy", TypeError, "sample_weight"),
    ],
)
def test_bad_sample_weights_name_the_argument(rng, weights, error, pattern):
    X, y = class_data(rng, 6)
    net = classifier()
    before = net.get_weights()
    with pytest.raises(error, match=pattern):
        net.fit(X, y, 1, sample_weight=weights)
    for k, v in before.items():
        np.testing.assert_array_equal(v, net.get_weights()[k])


def test_gpu_networks_refuse_sample_weights_and_say_what_to_do(rng):
    from conftest import GPU, require

    require(GPU)
    X, y = class_data(rng, 6)
    net = classifier(device="gpu")
    with pytest.raises(NotImplementedError, match=r"^sample_weight: sample weights are not implemented on the GPU"):
        net.fit(X, y, 1, sample_weight=np.arange(6))
    net.fit(X, y, 1, sample_weight=np.ones(6))  # equal weights are no weights


# -- messages -----------------------------------------------------------------------------------------------
def test_hidden_activation_error_lists_only_what_it_accepts():
    with pytest.raises(
        ValueError, match=r"^hidden_activation: expected one of sigmoid, tanh, relu, identity, got 'x'$"
    ):
        rustbp.Network(2, 2, 2, hidden_activation="x")
    with pytest.raises(ValueError, match=r"^hidden_activation: expected one of sigmoid, tanh, relu, identity, got "):
        rustbp.Network(2, 2, 2, hidden_activation="softmax")


def test_estimator_errors_name_the_public_class():
    from rustbp.sklearn import NetworkClassifier, NetworkRegressor

    with pytest.raises(TypeError, match=r"^NetworkClassifier.__init__\(\) got an unexpected keyword argument 'foo'"):
        NetworkClassifier(foo=1)
    with pytest.raises(TypeError, match=r"^NetworkRegressor.__init__\(\) takes"):
        NetworkRegressor(3, 4)
    assert NetworkRegressor(n_hidden=7).get_params()["n_hidden"] == 7


def test_save_into_a_missing_folder_names_the_folder(tmp_path):
    net = rustbp.Network(2, 2, 2)
    missing = tmp_path / "nope"
    with pytest.raises(FileNotFoundError) as info:
        net.save(missing / "net.safetensors")
    assert info.value.filename == str(missing) and ".tmp" not in str(info.value)
    (tmp_path / "file").write_text("")
    with pytest.raises(NotADirectoryError, match="Not a folder"):
        net.save(tmp_path / "file" / "net.safetensors")
    assert sorted(os.listdir(tmp_path)) == ["file"]


# -- types ----------------------------------------------------------------------------------------------------
def test_mypy_catches_a_misspelt_option(tmp_path):
    pytest.importorskip("mypy")
    snippet = tmp_path / "snippet.py"
    snippet.write_text(textwrap.dedent("""\
        import numpy as np
        import rustbp
        ok = rustbp.Network(2, 3, 1, hidden_activation="relu", loss="mse", dtype="float32")
        cfg = rustbp.NetworkConfig(2, 3, 1, output_activation="identity", bias="shared", dtype=np.float32)
        bad = rustbp.Network(2, 3, 1, hidden_activation="relux")
        worse = rustbp.NetworkConfig(2, 3, 1, loss="l1")
        ok_too = rustbp.Population(2, 3, 1, 4, dtype=np.dtype("float64")).to("cpu", np.float32)
    """))  # fmt: skip
    python = os.path.join(os.path.dirname(rustbp.__file__), os.pardir)
    result = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--cache-dir", os.devnull, str(snippet)],
        capture_output=True, text=True, env={**os.environ, "MYPYPATH": os.path.abspath(python)}, check=False,
    )  # fmt: skip
    errors = [line for line in result.stdout.splitlines() if ": error:" in line]
    assert len(errors) == 2, result.stdout + result.stderr
    assert "snippet.py:5:" in errors[0] and "'relux'" in errors[0]
    assert "snippet.py:6:" in errors[1] and "'l1'" in errors[1]


@pytest.mark.parametrize("given", [np.float32, np.dtype("float32"), "float32"])
def test_a_numpy_dtype_is_taken_as_its_name(given, rng):
    X = rng.random((5, 2))
    net = rustbp.Network(2, 3, 1, dtype=given, seed=1)
    assert net.dtype == "float32" and net.config.dtype == "float32"
    assert net.forward(X).dtype == np.float32
    assert rustbp.Network(2, 3, 1, seed=1).to("cpu", given).dtype == "float32"
    pop = rustbp.Population(2, 3, 1, 3, dtype=given, seed=1)
    assert pop.dtype == "float32"
    np.testing.assert_array_equal(pop[0].forward(X), net.forward(X))
    assert rustbp.NetworkConfig(2, 3, 1, dtype=given) == rustbp.NetworkConfig(2, 3, 1, dtype="float32")


@pytest.mark.parametrize(
    ("given", "kind", "message"),
    [
        (np.int32, ValueError, "dtype: expected one of float64, float32, got 'int32'"),
        (np.dtype("float16"), ValueError, "dtype: expected one of float64, float32, got 'float16'"),
        (3, TypeError, "dtype: expected a string, one of float64, float32; got int"),
    ],
)
def test_a_dtype_of_another_kind_is_refused_by_name(given, kind, message):
    with pytest.raises(kind, match=message):
        rustbp.Network(2, 3, 1, dtype=given)
