"""Configuration objects, fit's history, validation, early stopping and callbacks, logging and the
progress bar."""

from __future__ import annotations

import dataclasses
import logging
import sys
import types
from typing import ClassVar

import numpy as np
import pytest
import rustbp


def make(**kw):
    kw.setdefault("seed", 7)
    return rustbp.Network(4, 8, 3, **kw)


def classification(rng, n=60):
    X = rng.normal(size=(n, 4))
    return X, np.eye(3)[np.argmax(X[:, :3], axis=1)]


# -- configuration ------------------------------------------------------------------------------------
def test_network_config_round_trips_and_rebuilds_the_same_network():
    cfg = rustbp.NetworkConfig(
        4,
        8,
        3,
        hidden_activation="tanh",
        output_activation="softmax",
        loss="cross_entropy",
        optimizer=rustbp.Adam(lr=0.01),
        dtype="float32",
        seed=5,
    )
    net = rustbp.Network.from_config(cfg)
    assert net.config == cfg
    twin = rustbp.Network.from_config(net.config)
    np.testing.assert_array_equal(twin.get_weights()["w1"], net.get_weights()["w1"])
    # An unseeded network records the seed it drew, so its config rebuilds it too.
    drawn = make(seed=None)
    assert isinstance(drawn.config.seed, int)
    np.testing.assert_array_equal(
        rustbp.Network.from_config(drawn.config).get_weights()["w2"], drawn.get_weights()["w2"]
    )
    assert repr(cfg).startswith("NetworkConfig(n_in=4, n_hidden=8, n_out=3, hidden_activation='tanh'")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.n_in = 5  # type: ignore[misc]
    with pytest.raises(TypeError, match=r"config: expected a rustbp\.NetworkConfig"):
        rustbp.Network.from_config({"n_in": 4})


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"n_in": 0}, ValueError, "n_in: expected a positive integer below 2\\*\\*63, got 0"),
        ({"n_hidden": 2.5}, TypeError, "n_hidden"),
        (
            {"hidden_activation": "softmax"},
            ValueError,
            "hidden_activation: expected one of sigmoid, tanh, relu, identity",
        ),
        ({"output_activation": "gelu"}, ValueError, "output_activation: expected one of .*softmax"),
        (
            {"loss": "l1"},
            ValueError,
            "loss: expected one of half_sse, mse, cross_entropy, binary_cross_entropy, got 'l1'",
        ),
        (
            {"loss": "cross_entropy"},
            ValueError,
            "output_activation: expected softmax output with cross_entropy",
        ),
        ({"bias": "some"}, ValueError, "bias: expected one of per_neuron, shared, none"),
        ({"train_bias": 1}, TypeError, "train_bias: expected a bool"),
        ({"optimizer": "adam"}, TypeError, "optimizer: expected rustbp.SGD or rustbp.Adam"),
        ({"dtype": "float16"}, ValueError, "dtype: expected one of float64, float32"),
        ({"device": "tpu"}, ValueError, "device: expected one of cpu, gpu"),
        ({"seed": -1}, ValueError, "seed"),
    ],
)
def test_network_config_names_the_field_and_accepted_values(kwargs, error, pattern):
    args = {"n_in": 2, "n_hidden": 3, "n_out": 1, **kwargs}
    with pytest.raises(error, match=pattern):
        rustbp.NetworkConfig(**args)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"epochs": 0}, ValueError, "epochs: expected a positive integer below 2\\*\\*63, got 0"),
        ({"epochs": None}, TypeError, "epochs"),
        ({"batch_size": -1}, ValueError, "batch_size"),
        ({"batch_size": 2**64}, ValueError, "batch_size: expected a positive integer below 2"),  # found by fuzzing
        ({"validation_split": 1.0}, ValueError, r"validation_split: expected a number in \[0, 1\)"),
        ({"validation_split": "0.1"}, TypeError, "validation_split"),
        ({"patience": 0}, ValueError, "patience"),
        ({"min_delta": -0.1}, ValueError, "min_delta: expected a finite number >= 0"),
        ({"shuffle": "yes"}, TypeError, "shuffle: expected a bool"),
        ({"accuracy": 1}, TypeError, "accuracy"),
    ],
)
def test_training_config_names_the_field(kwargs, error, pattern):
    with pytest.raises(error, match=pattern):
        rustbp.TrainingConfig(**{"epochs": 3, **kwargs})


def test_fit_takes_a_training_config_or_arguments_not_both(rng):
    X, Y = classification(rng)
    cfg = rustbp.TrainingConfig(epochs=3, batch_size=16, seed=1)
    a, b = make(), make()
    np.testing.assert_array_equal(a.fit(X, Y, config=cfg), b.fit(X, Y, 3, batch_size=16, seed=1))
    with pytest.raises(TypeError, match="not both"):
        a.fit(X, Y, 3, config=cfg)
    with pytest.raises(TypeError, match=r"config: expected a rustbp\.TrainingConfig"):
        a.fit(X, Y, config={"epochs": 3})


# -- history ------------------------------------------------------------------------------------------
def test_history_records_metrics_and_acts_as_the_loss_array(rng):
    X, Y = classification(rng)
    net = make(output_activation="softmax", loss="cross_entropy", optimizer=rustbp.Adam(lr=0.05))
    h = net.fit(X, Y, 5, seed=0, validation_data=(X[:10], Y[:10]), accuracy=True)
    assert isinstance(h, rustbp.History) and h.epochs == len(h) == 5 and h.shape == (5,)
    assert set(h.history) == {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert h[0] == h.loss[0] and list(h) == h.loss.tolist() and np.asarray(h).dtype == np.float64
    assert h.mean() == h.loss.mean() and h.tolist() == h.loss.tolist() and h[1:].shape == (4,)
    with pytest.raises(AttributeError):
        h.no_such_method()
    assert h.loss[-1] < h.loss[0]
    # Accuracy is measured after each epoch: the final one is the network's.
    final = np.mean(np.argmax(net.forward(X), 1) == np.argmax(Y, 1))
    assert h.accuracy[-1] == final and h.val_loss[-1] == net.loss(X[:10], Y[:10])
    assert repr(h).startswith("History(epochs=5, loss=")
    regression = make().fit(X, Y, 2)
    assert regression.accuracy is None and regression.val_loss is None
    # By default a classifier records validation accuracy, but not the costlier training accuracy.
    default = make(output_activation="softmax", loss="cross_entropy").fit(X, Y, 2, validation_split=0.2)
    assert set(default.history) == {"loss", "val_loss", "val_accuracy"}
    assert set(make(output_activation="softmax", loss="cross_entropy").fit(X, Y, 2).history) == {"loss"}
    none = make(output_activation="softmax", loss="cross_entropy").fit(X, Y, 2, validation_split=0.2, accuracy=False)
    assert set(none.history) == {"loss", "val_loss"}


def test_fit_trains_alike_in_one_core_call_or_epoch_by_epoch(rng):
    # Plain fit is one core call; with a callback (or validation, logging...) fit runs epoch by epoch.
    X, Y = classification(rng)
    a, b, c = make(), make(), make()
    h = a.fit(X, Y, 4, seed=9)
    seen = []
    hb = b.fit(X, Y, 4, seed=9, callbacks=[lambda epoch, logs: seen.append(epoch)])
    assert seen == [0, 1, 2, 3]
    losses = [c._core.fit(X, Y, 1, 32, True, 9, e)[0] for e in range(4)]
    np.testing.assert_array_equal(h, losses)
    np.testing.assert_array_equal(hb, losses)
    for other in (b, c):
        np.testing.assert_array_equal(a.get_weights()["w1"], other.get_weights()["w1"])


def test_validation_split_holds_out_the_last_samples(rng):
    X, Y = classification(rng, 50)
    a, b = make(), make()
    ha = a.fit(X, Y, 3, seed=2, validation_split=0.2)
    hb = b.fit(X[:40], Y[:40], 3, seed=2, validation_data=(X[40:], Y[40:]))
    np.testing.assert_array_equal(ha.val_loss, hb.val_loss)
    np.testing.assert_array_equal(ha.loss, hb.loss)
    with pytest.raises(ValueError, match="not both"):
        a.fit(X, Y, 1, validation_split=0.2, validation_data=(X, Y))
    with pytest.raises(ValueError, match="validation_split"):
        a.fit(X[:1], Y[:1], 1, validation_split=0.5)
    with pytest.raises(ValueError, match=r"validation_data\[0\]: expected shape|X: expected shape"):
        a.fit(X, Y, 1, validation_data=(X[:, :2], Y))
    with pytest.raises(TypeError, match="validation_data"):
        a.fit(X, Y, 1, validation_data=X)


def test_early_stopping_stops_and_restores_the_best_weights(rng):
    X, Y = classification(rng)
    Xv, Yv = classification(rng, 30)
    snapshots = []
    net = make(optimizer=rustbp.SGD(lr=3.0))  # a large step, so the validation loss soon stops improving
    h = net.fit(
        X,
        Y,
        200,
        batch_size=4,
        seed=0,
        validation_data=(Xv, Yv),
        patience=3,
        callbacks=[lambda epoch, logs: snapshots.append(net.get_weights())],
    )
    assert h.stopped_early and h.epochs < 200
    assert h.epochs == h.best_epoch + 4, "stops after `patience` epochs without improvement"
    assert h.val_loss[h.best_epoch] == h.val_loss.min()
    np.testing.assert_array_equal(net.get_weights()["w1"], snapshots[h.best_epoch]["w1"])
    assert net.loss(Xv, Yv) == h.val_loss.min()

    kept = make(optimizer=rustbp.SGD(lr=3.0))
    h2 = kept.fit(X, Y, 200, batch_size=4, seed=0, validation_data=(Xv, Yv), patience=3, restore_best_weights=False)
    assert h2.epochs == h.epochs and kept.loss(Xv, Yv) == h2.val_loss[-1]


def test_min_delta_and_training_loss_monitor(rng):
    X, Y = classification(rng)
    h = make().fit(X, Y, 50, seed=0, patience=2, min_delta=10.0)
    assert h.epochs == 3 and h.best_epoch == 0, "no later epoch improves by 10"


def test_callbacks_see_every_epoch_and_can_stop(rng):
    X, Y = classification(rng)
    seen = []

    def stop_at_2(epoch, logs):
        seen.append((epoch, sorted(logs)))
        return epoch == 2

    h = make().fit(X, Y, 10, callbacks=[stop_at_2, lambda e, logs: None], validation_split=0.1)
    assert h.epochs == 3 and h.stopped_early
    assert seen == [(e, ["loss", "val_loss"]) for e in range(3)]
    with pytest.raises(TypeError, match="callbacks"):
        make().fit(X, Y, 1, callbacks=[1])


def test_divergence_in_fit_counts_steps_across_epochs():
    X, Y = np.array([[3.0, -2.0, 1.0, 0.5]] * 8), np.ones((8, 3))
    net = make(
        hidden_activation="identity",
        output_activation="identity",
        optimizer=rustbp.SGD(lr=5.0),
        dtype="float32",
    )
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.fit(X, Y, 100, batch_size=4, shuffle=False)
    err = info.value
    assert err.step >= 2 and len(err.losses) == err.step // 2, "one loss per completed epoch of 2 steps"


# -- logging and progress -----------------------------------------------------------------------------
def test_train_logs_the_loss_every_n_steps_like_the_article(caplog):
    net = rustbp.Network.article()
    with caplog.at_level(logging.INFO, logger="rustbp"):
        logged = net.train([0.05, 0.10], [0.01, 0.99], 10_000)
    lines = [r.getMessage() for r in caplog.records if r.name == "rustbp"]
    assert lines[0] == "step 0: loss 0.2983711087600027"
    assert lines[1] == "step 1000: loss 0.001114349453733746"
    assert len(lines) == 10
    # Chunking the Rust loop to log changes nothing: the same losses as one call without logging.
    quiet = rustbp.Network.article().train([0.05, 0.10], [0.01, 0.99], 10_000)
    np.testing.assert_array_equal(logged, quiet)
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="rustbp"):
        net.train([0.05, 0.10], [0.01, 0.99], 10, log_every=4)
    assert [r.getMessage().split(":")[0] for r in caplog.records] == ["step 0", "step 4", "step 8"]
    with pytest.raises(ValueError, match="log_every"):
        net.train([0.05, 0.10], [0.01, 0.99], 10, log_every=0)


def test_chunked_train_numbers_a_divergence_from_the_start(caplog):
    args = {
        "hidden_activation": "identity",
        "output_activation": "identity",
        "optimizer": rustbp.SGD(lr=50.0),
        "dtype": "float32",
    }
    X, T = np.array([[3.0, -2.0, 1.0, 0.5]]), np.array([[1.0, 0.0, 1.0]])
    with pytest.raises(rustbp.TrainingDivergedError) as plain:
        make(**args).train(X, T, 1000)
    with (
        caplog.at_level(logging.INFO, logger="rustbp"),
        pytest.raises(rustbp.TrainingDivergedError) as chunked,
    ):
        make(**args).train(X, T, 1000, log_every=2)
    assert chunked.value.step == plain.value.step == 3, "in the second chunk of 2 steps"
    np.testing.assert_array_equal(chunked.value.losses, plain.value.losses)


def test_fit_logs_each_epoch(rng, caplog):
    X, Y = classification(rng)
    with caplog.at_level(logging.INFO, logger="rustbp"):
        make().fit(X, Y, 3, validation_split=0.25)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 3 and lines[0].startswith("epoch 1/3: loss=") and "val_loss=" in lines[0]


class FakeBar:
    instances: ClassVar[list[FakeBar]] = []

    def __init__(self, **kw):
        self.kw, self.n, self.closed, self.postfix = kw, 0, False, None
        FakeBar.instances.append(self)

    def update(self, n):
        self.n += n

    def set_postfix(self, values=None, refresh=True, **kw):
        self.postfix = values or kw

    def close(self):
        self.closed = True


@pytest.mark.parametrize("tty", [True, False])
def test_progress_bar_only_when_verbose_on_a_terminal(rng, monkeypatch, tty):
    monkeypatch.setitem(sys.modules, "tqdm", types.SimpleNamespace(tqdm=FakeBar))
    monkeypatch.setattr(sys.stderr, "isatty", lambda: tty)
    FakeBar.instances.clear()
    X, Y = classification(rng)
    net = make()
    net.fit(X, Y, 4, verbose=True)
    net.train(X, Y, 2500, verbose=True)
    net.fit(X, Y, 2)  # not verbose: no bar
    if not tty:
        assert FakeBar.instances == []
        return
    fit_bar, train_bar = FakeBar.instances
    assert fit_bar.kw["total"] == fit_bar.n == 4 and fit_bar.closed and "loss" in fit_bar.postfix
    assert fit_bar.kw["delay"] > 0, "short runs never show a bar"
    assert train_bar.kw["total"] == train_bar.n == 2500 and train_bar.closed


def test_progress_bar_is_optional(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm now raises ImportError
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    X, Y = classification(rng)
    assert make().fit(X, Y, 2, verbose=True).epochs == 2


def test_reprs_are_useful():
    assert repr(rustbp.TrainingConfig(epochs=3)).startswith("TrainingConfig(epochs=3, batch_size=32")
    assert repr(rustbp.SGD(lr=0.5)) == "SGD(lr=0.5, momentum=0.0, nesterov=False, weight_decay=0.0)"
    assert repr(rustbp.History(rustbp.TrainingConfig(epochs=1))) == "History(epochs=0)"


def test_fit_errors_name_its_targets_y():
    net = rustbp.Network(2, 3, 2)
    with pytest.raises(ValueError, match=r"^Y: expected 4 rows, like X, got 3$"):
        net.fit(np.zeros((4, 2)), np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match=r"^Y: expected finite values, found NaN at position \[1, 0\]"):
        net.fit(np.zeros((4, 2)), np.array([[0.0, 0.0], [np.nan, 0.0], [0.0, 0.0], [0.0, 0.0]]), 1)
    with pytest.raises(ValueError, match=r"^T: expected 4 rows, like X, got 3$"):
        net.train(np.zeros((4, 2)), np.zeros((3, 2)), 1)


# -- divergence and Ctrl-C on the paths that renumber them ---------------------------------------------
# fit epoch by epoch (validation, callbacks, INFO logging...) and train in chunks (INFO logging, a progress
# bar) call the core once per epoch or chunk, then renumber its errors as if it had been one call.


def growing(dtype, lr=0.3):
    """A linear network whose weights grow geometrically: it diverges within a few steps or epochs."""
    return make(hidden_activation="identity", output_activation="identity", optimizer=rustbp.SGD(lr=lr), dtype=dtype)


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("path", ["callback", "logging", "validation"])
def test_fit_epoch_by_epoch_reports_a_divergence_like_one_call(rng, caplog, dtype, path):
    X, Y = rng.normal(size=(10, 4)), rng.normal(size=(10, 3))
    one = growing(dtype)
    with pytest.raises(rustbp.TrainingDivergedError) as whole:
        one.fit(X, Y, 10_000, batch_size=3, seed=1)
    assert whole.value.step >= 8, "this setup diverges after two epochs of 4 steps"
    kw = {
        "callback": {"callbacks": [lambda epoch, logs: None]},
        "logging": {},
        "validation": {"validation_data": (X[:2], Y[:2])},
    }[path]
    by_epoch = growing(dtype)
    level = logging.INFO if path == "logging" else logging.WARNING
    with caplog.at_level(level, logger="rustbp"), pytest.raises(rustbp.TrainingDivergedError) as split:
        by_epoch.fit(X, Y, 10_000, batch_size=3, seed=1, **kw)
    assert split.value.step == whole.value.step
    np.testing.assert_array_equal(split.value.losses, whole.value.losses)
    assert len(split.value.losses) == whole.value.step // 4
    assert_same_weights(by_epoch, one)  # both kept the weights of the last finite step
    if path == "logging":
        assert len(caplog.records) == len(whole.value.losses), "one line per completed epoch"


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_chunked_train_reports_a_divergence_several_chunks_in_like_one_call(rng, caplog, dtype):
    X, T = rng.normal(size=(10, 4)), rng.normal(size=(10, 3))
    one = growing(dtype, lr=2.0)
    with pytest.raises(rustbp.TrainingDivergedError) as whole:
        one.train(X, T, 10_000)
    assert whole.value.step >= 5, "diverges in the third chunk of 2 or later"
    chunked = growing(dtype, lr=2.0)
    with caplog.at_level(logging.INFO, logger="rustbp"), pytest.raises(rustbp.TrainingDivergedError) as split:
        chunked.train(X, T, 10_000, log_every=2)
    assert split.value.step == whole.value.step
    np.testing.assert_array_equal(split.value.losses, whole.value.losses)
    assert len(split.value.losses) == whole.value.step
    assert_same_weights(chunked, one)
    assert len(caplog.records) == whole.value.step // 2, "one line per completed chunk"


class InterruptedCore:
    """Stands in for a network's core: call number ``call`` of ``train`` or ``fit`` runs ``steps`` steps
    for real, then raises KeyboardInterrupt as the core does on Ctrl-C (with ``completed_steps``, or
    without it when ``from_core`` is False: a signal raised by Python just after the core returned)."""

    def __init__(self, core, call, steps, from_core=True):
        self.core, self.call, self.steps, self.from_core, self.calls = core, call, steps, from_core, 0

    def __getattr__(self, name):
        return getattr(self.core, name)

    def _interrupt(self, run_steps):
        self.calls += 1
        if self.calls != self.call:
            return False
        run_steps()
        e = KeyboardInterrupt()
        if self.from_core:
            e.completed_steps = self.steps
        raise e

    def train(self, x, t, steps):
        self._interrupt(lambda: self.core.train(x, t, self.steps))
        return self.core.train(x, t, steps)

    def fit(self, x, y, epochs, batch_size, shuffle, seed, first_epoch=0):
        assert not shuffle, "the stand-in replays unshuffled batches"
        batches = [(x[i : i + batch_size], y[i : i + batch_size]) for i in range(0, len(x), batch_size)]
        self._interrupt(lambda: [self.core.train_step(*batches[s % len(batches)]) for s in range(self.steps)])
        return self.core.fit(x, y, epochs, batch_size, shuffle, seed, first_epoch)


def trained_steps(net, X, T, steps, batch_size):
    """Whether ``net`` holds exactly the weights of a fresh twin after ``steps`` unshuffled steps."""
    twin = make(optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    batches = [(X[i : i + batch_size], T[i : i + batch_size]) for i in range(0, len(X), batch_size)]
    for s in range(steps):
        twin.train_step(*batches[s % len(batches)])
    return all(np.array_equal(v, twin.get_weights()[k]) for k, v in net.get_weights().items())


@pytest.mark.parametrize("path", ["callback", "logging"])
def test_ctrl_c_in_fit_epoch_by_epoch_counts_the_steps_of_every_epoch(rng, caplog, path):
    X, Y = rng.normal(size=(12, 4)), rng.uniform(size=(12, 3))
    net = make(optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    net._core = InterruptedCore(net._core, call=4, steps=2)  # 3 epochs of 3 steps, then 2 steps of the 4th
    kw = {"callbacks": [lambda epoch, logs: None]} if path == "callback" else {}
    with caplog.at_level(logging.INFO, logger="rustbp"), pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, Y, 10, batch_size=4, shuffle=False, **kw)
    assert info.value.completed_steps == 11
    assert trained_steps(net, X, Y, 11, 4)


def test_ctrl_c_raised_after_a_completed_epoch_counts_that_epoch(rng):
    X, Y = rng.normal(size=(12, 4)), rng.uniform(size=(12, 3))
    net = make(optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    net._core = InterruptedCore(net._core, call=2, steps=3, from_core=False)  # 2 whole epochs of 3 steps
    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, Y, 10, batch_size=4, shuffle=False, callbacks=[lambda epoch, logs: None])
    assert trained_steps(net, X, Y, 6, 4)
    assert getattr(info.value, "completed_steps", None) == 6


def test_ctrl_c_in_chunked_train_counts_the_steps_of_every_chunk(rng, caplog):
    X, T = rng.normal(size=(4, 4)), rng.uniform(size=(4, 3))
    net = make(optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    net._core = InterruptedCore(net._core, call=3, steps=2)  # two chunks of 5 steps, then 2 steps
    with caplog.at_level(logging.INFO, logger="rustbp"), pytest.raises(KeyboardInterrupt) as info:
        net.train(X, T, 100, log_every=5)
    assert trained_steps(net, X, T, 12, 4)
    assert info.value.completed_steps == 12


def test_ctrl_c_raised_by_python_between_core_calls_counts_every_completed_step(rng, caplog):
    # In a callback after the second epoch (of 3 steps each), and just after train's third chunk returned:
    # no core call is running, so the count comes from the core's updates.
    X, Y = rng.normal(size=(12, 4)), rng.uniform(size=(12, 3))
    net = make(optimizer=rustbp.Adam(lr=0.01))

    def callback(epoch, logs):
        if epoch == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt) as info:
        net.fit(X, Y, 10, batch_size=4, shuffle=False, callbacks=[callback])
    assert info.value.completed_steps == 6
    net = make(optimizer=rustbp.SGD(lr=0.1, momentum=0.9))
    net._core = InterruptedCore(net._core, call=3, steps=5, from_core=False)
    with caplog.at_level(logging.INFO, logger="rustbp"), pytest.raises(KeyboardInterrupt) as info:
        net.train(X[:4], Y[:4], 100, log_every=5)
    assert info.value.completed_steps == 15
    assert trained_steps(net, X[:4], Y[:4], 15, 4)
