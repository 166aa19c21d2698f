"""Populations: member i is the network built with its seed and settings and given the same calls (bit for
bit on the CPU, the GPU members against the CPU to 1e-4), on every device; the options, errors, files."""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import threading
import time

import numpy as np
import pytest
import rustbp
from conftest import CPU32, CPU64, GPU, assert_close

ACTIVATIONS = ["sigmoid", "tanh", "relu", "identity"]
OUTPUTS = [("sigmoid", "half_sse"), ("identity", "mse"), ("softmax", "cross_entropy")]


def options(rng):
    """A random network configuration and per-member optimizer settings."""
    output, loss = OUTPUTS[rng.integers(len(OUTPUTS))]
    if rng.random() < 0.5:
        opt, per_member = rustbp.SGD(lr=0.05, momentum=float(rng.choice([0.0, 0.9]))), {"lr": "lr"}
    else:
        opt, per_member = rustbp.Adam(lr=0.01), {"lr": "lr", "eps": "eps"}
    return {
        "hidden_activation": ACTIVATIONS[rng.integers(4)], "output_activation": output, "loss": loss,
        "bias": str(rng.choice(["per_neuron", "shared", "none"])), "train_bias": bool(rng.random() < 0.8),
        "optimizer": opt,
    }, per_member  # fmt: skip


def data(rng, n, n_in, n_out, loss):
    x = rng.normal(size=(n, n_in))
    if loss == "cross_entropy":
        return x, rng.integers(0, n_out, n)
    return x, rng.uniform(size=(n, n_out))


def assert_same(net, member, exact, rtol=1e-4):
    for k, v in net.get_weights().items():
        if exact:
            np.testing.assert_array_equal(member.get_weights()[k], v, err_msg=k)
        else:
            assert_close(member.get_weights()[k], v, rtol, err_msg=k)


@pytest.mark.parametrize("case", range(6))
@pytest.mark.parametrize("device", [CPU64, CPU32, GPU], ids=str)
def test_member_i_is_the_network_with_its_seed_and_settings(device, case):
    from conftest import require

    require(device)
    rng = np.random.default_rng(case)
    n_in, n_hidden, n_out = (int(w) for w in rng.integers(1, 12, 3))
    n_out = max(n_out, 2)
    size = int(rng.integers(2, 6))
    kw, per_member = options(rng)
    lrs = list(np.round(rng.uniform(0.005, 0.05, size), 4))
    extra = {"lr": lrs} | ({"eps": [1e-8 * (i + 1) for i in range(size)]} if "eps" in per_member else {})
    pop = rustbp.Population(
        n_in, n_hidden, n_out, size, seed=100 * case, device=device.device, dtype=device.dtype, **kw, **extra
    )
    # The CPU network in the device's dtype is the reference (float32 for the GPU).
    ref_dtype = "float32" if device == GPU else device.dtype
    nets = []
    for i in range(size):
        opt = kw["optimizer"]
        opt = type(opt)(**{**opt.__dict__, **{k: v[i] for k, v in extra.items()}})
        nets.append(rustbp.Network(n_in, n_hidden, n_out, **{**kw, "optimizer": opt}, seed=100 * case + i,
                                   dtype=ref_dtype))  # fmt: skip
    x, t = data(rng, 13, n_in, n_out, kw["loss"])
    exact = device != GPU
    losses = pop.train(x[:5], t[:5], 3)
    one = pop.train(x[:1], t[:1], 7)  # one sample: tiny members train side by side in SIMD lanes
    history = pop.fit(x, t, 2, 4, seed=case)
    bagged = pop.fit(x, t, 1, 5, seed=case + 1, bootstrap=True)
    for i, net in enumerate(nets):
        want = net.train(x[:5], t[:5], 3)
        want_one = net.train(x[:1], t[:1], 7)
        fit = net.fit(x, t, 2, 4, seed=case)
        rows = rustbp.population.bootstrap_rows(len(x), case + 1, i)
        bag = net.fit(x[rows], t[rows], 1, 5, seed=case + 1)
        if exact:
            np.testing.assert_array_equal(losses[i], want)
            np.testing.assert_array_equal(one[i], want_one)
            np.testing.assert_array_equal(history.loss[i], fit.loss)
            np.testing.assert_array_equal(bagged.loss[i], bag.loss)
        else:
            assert_close(losses[i], want, 1e-4)
            assert_close(history.loss[i], fit.loss, 1e-4)
        assert_same(net, pop[i], exact)
        assert pop[i].optimizer == net.optimizer
    out = pop.forward(x)
    assert out.shape == (size, 13, n_out)
    for i, net in enumerate(nets):
        (np.testing.assert_array_equal if exact else assert_close)(out[i], net.forward(x), *([] if exact else [1e-4]))
    np.testing.assert_allclose(pop.predict_mean(x), out.mean(axis=0))
    assert pop.loss(x, t).shape == (size,)


def test_early_stopping_validation_and_callbacks_are_each_members_own(caplog):
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 3, 60)
    kw = {"hidden_activation": "tanh", "output_activation": "softmax", "loss": "cross_entropy"}
    pop = rustbp.Population(4, 6, 3, 4, lr=[0.01, 0.3, 3.0, 0.1], seed=1, **kw)
    nets = [pop[i] for i in range(4)]
    seen = []
    fit_kw = {"validation_data": (x[40:], y[40:]), "patience": 2, "seed": 5}
    with caplog.at_level(logging.INFO, logger="rustbp"):
        h = pop.fit(x[:40], y[:40], 30, 8, callbacks=[lambda e, logs: seen.append((e, logs))], **fit_kw)
    assert any("stopped early" in r.getMessage() for r in caplog.records)
    assert h.val_loss.shape == (4, h.epochs) and h.val_accuracy is not None
    for i, net in enumerate(nets):
        want = net.fit(x[:40], y[:40], 30, 8, **fit_kw)
        assert h[i].history == want.history
        assert (h[i].best_epoch, h[i].stopped_early) == (want.best_epoch, want.stopped_early)
        assert_same(net, pop[i], exact=True)
        assert np.isnan(h.loss[i, want.epochs :]).all()
    assert seen[0][1]["loss"].shape == (4,)
    best = int(np.nanargmin([row[e] for row, e in zip(h.val_loss, h.best_epoch)]))
    assert_same(pop[best], pop.best(), exact=True)


@pytest.mark.parametrize(
    "schedule", [rustbp.StepLR(step_size=2, gamma=0.5), rustbp.ReduceLROnPlateau(patience=1, factor=0.3)], ids=repr
)
@pytest.mark.parametrize("validation", [False, True])
def test_schedules_and_sample_weights_act_on_each_member_as_on_its_network(schedule, validation):
    rng = np.random.default_rng(6)
    x, y = rng.normal(size=(30, 4)), rng.integers(0, 3, 30)
    w = rng.integers(0, 4, 30).astype(float)
    kw = {"hidden_activation": "tanh", "output_activation": "softmax", "loss": "cross_entropy"}
    pop = rustbp.Population(4, 5, 3, 3, lr=[0.05, 0.1, 0.4], optimizer=rustbp.SGD(lr=0.1, momentum=0.5), seed=4, **kw)
    nets = list(pop)
    fit = {"lr_schedule": schedule, "sample_weight": w, "seed": 2, "patience": 2 if validation else None}
    if validation:
        fit["validation_data"] = (x[:8], y[:8])
    h = pop.fit(x, y, 6, 7, **fit)
    for i, net in enumerate(nets):
        want = net.fit(x, y, 6, 7, **fit)
        assert h[i].history == want.history, i
        assert_same(net, pop[i], exact=True)
        assert pop.optimizers[i] == net.optimizer == pop[i].optimizer
    assert h.lr is not None and h.lr.shape == (3, h.epochs)
    np.testing.assert_array_equal(h.lr[1, : h[1].epochs], h[1].lr)


def test_a_started_scheduler_is_refused_and_sample_weights_are_checked():
    pop = rustbp.Population(2, 3, 2, 2, seed=0)
    x, t = np.zeros((4, 2)), np.zeros((4, 2))
    with pytest.raises(TypeError, match="lr_schedule: a Population takes a schedule"):
        pop.fit(x, t, 1, lr_schedule=rustbp.StepLR(step_size=1).start(0.1))
    with pytest.raises(ValueError, match=r"sample_weight: expected shape \(4,\)"):
        pop.fit(x, t, 1, sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight"):
        pop.fit(x, t, 1, sample_weight=-np.ones(4))


def test_a_callback_returning_true_stops_every_member():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(20, 3)), rng.uniform(size=(20, 2))
    pop = rustbp.Population(3, 4, 2, 3, seed=0)
    h = pop.fit(x, y, 10, 5, callbacks=[lambda epoch, logs: epoch == 2])
    assert h.epochs == 3 and h.stopped_early.all()


def test_a_diverging_member_is_named_and_every_member_keeps_finite_weights():
    rng = np.random.default_rng(1)
    x, t = rng.normal(size=(8, 3)) * 10, rng.normal(size=(8, 2)) * 100
    kw = {"output_activation": "identity", "loss": "mse", "hidden_activation": "identity"}
    pop = rustbp.Population(3, 4, 2, 3, lr=[0.001, 50.0, 0.001], seed=2, **kw)
    calm = pop[2]
    with pytest.raises(rustbp.TrainingDivergedError, match="member 1") as info:
        pop.train(x, t, 200)
    assert info.value.member == 1 and info.value.step > 0
    calm.train(x, t, 200)
    assert_same(calm, pop[2], exact=True)
    for i in range(3):
        assert all(np.isfinite(v).all() for v in pop[i].get_weights().values())


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize(
    "kw",
    [
        {"bias": "shared", "train_bias": False, "optimizer": rustbp.SGD(lr=0.5)},  # the article's
        {"hidden_activation": "relu", "output_activation": "softmax", "loss": "cross_entropy",
         "optimizer": rustbp.SGD(lr=0.1, momentum=0.9, nesterov=True), "momentum": [0.5 + 0.02 * i for i in range(21)]},
        {"hidden_activation": "tanh", "output_activation": "identity", "loss": "mse",
         "optimizer": rustbp.Adam(lr=0.01), "eps": [1e-8 * (i + 1) for i in range(21)]},
    ],
    ids=["article", "softmax-nesterov", "tanh-adam"],
)  # fmt: skip
def test_tiny_members_on_one_sample_train_side_by_side_exactly_as_networks(kw, dtype):
    """21 members (a group of 16 lanes and one of 5) on one sample, each with its own rate: every loss and
    weight bit for bit the network's."""
    size, n_in, n_hidden, n_out = 21, 3, 4, 2
    lrs = [kw["optimizer"].lr * (1 + 0.05 * i) for i in range(size)]
    per_member = {k: v for k, v in kw.items() if isinstance(v, list)} | {"lr": lrs}
    options = {k: v for k, v in kw.items() if not isinstance(v, list)}
    pop = rustbp.Population(n_in, n_hidden, n_out, size, seed=5, dtype=dtype, **options, **per_member)
    x, t = np.array([[0.05, -0.4, 0.3]]), np.array([[0.9, 0.1]])
    got = pop.train(x, t, 300)
    for i in range(size):
        opt = type(kw["optimizer"])(**{**kw["optimizer"].__dict__, **{k: v[i] for k, v in per_member.items()}})
        net = rustbp.Network(n_in, n_hidden, n_out, seed=5 + i, dtype=dtype, **{**options, "optimizer": opt})
        np.testing.assert_array_equal(got[i], net.train(x, t, 300), err_msg=f"member {i}")
        assert_same(net, pop[i], exact=True)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("schedule", [None, rustbp.StepLR(step_size=2, gamma=0.5)], ids=repr)
def test_tiny_members_fit_on_one_sample_batches_side_by_side_exactly_as_networks(dtype, schedule):
    """20 members (a group of 16 lanes and one of 4), each with its own rate and shuffles, in one-sample
    batches with validation, early stopping and a schedule, then bagged: histories and weights bit for
    bit."""
    rng = np.random.default_rng(11)
    x, y = rng.normal(size=(30, 3)), rng.integers(0, 2, 30)
    kw = {"hidden_activation": "tanh", "output_activation": "softmax", "loss": "cross_entropy", "dtype": dtype}
    lrs = [0.002 * (1 + i) for i in range(20)]
    pop = rustbp.Population(3, 5, 2, 20, optimizer=rustbp.SGD(lr=0.01, momentum=0.9), lr=lrs, seed=4, **kw)
    nets = [pop[i] for i in range(20)]
    fit_kw = {"validation_data": (x[20:], y[20:]), "patience": 2, "seed": 9, "lr_schedule": schedule}
    h = pop.fit(x[:20], y[:20], 12, 1, **fit_kw)
    bagged = pop.fit(x[:20], y[:20], 2, 1, seed=2, bootstrap=True)  # each member on its own resample
    for i, net in enumerate(nets):
        want = net.fit(x[:20], y[:20], 12, 1, **fit_kw)
        assert h[i].history == want.history, f"member {i}"
        rows = rustbp.population.bootstrap_rows(20, 2, i)
        assert bagged[i].history == net.fit(x[rows], y[rows], 2, 1, seed=2).history, f"member {i}"
        assert_same(net, pop[i], exact=True)
    assert h.stopped_early.any()


def test_ctrl_c_stops_tiny_members_side_by_side_at_a_whole_step():
    x, t = np.array([[0.05, 0.10]]), np.array([[0.01, 0.99]])
    pop = rustbp.Population(2, 2, 2, 40, optimizer=rustbp.SGD(lr=0.5, momentum=0.5), seed=0)
    fresh = [pop[i] for i in range(40)]
    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt) as info:
        pop.train(x, t, 10**7)  # more than fits in the time; the losses (3.2 GB) are touched only as written
    # Groups wait for a thread: one that had not started when the stop came holds 0 steps.
    completed, trained = info.value.completed_steps, 0
    for i, net in enumerate(fresh):
        updates = pop[i]._core.get_optimizer_state()[1]
        assert updates >= completed
        trained = max(trained, updates)
        if updates:
            net.train(x, t, updates)
        assert_same(net, pop[i], exact=True)
    assert trained > 0


def test_ctrl_c_stops_every_member_at_a_whole_step():
    rng = np.random.default_rng(2)
    x, t = rng.normal(size=(64, 16)), rng.uniform(size=(64, 8))
    pop = rustbp.Population(16, 32, 8, 4, optimizer=rustbp.SGD(lr=0.01, momentum=0.9), seed=3)
    fresh = [pop[i] for i in range(4)]
    threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
    with pytest.raises(KeyboardInterrupt) as info:
        pop.train(x, t, 10**6)
    done = [pop[i]._core.get_optimizer_state()[1] for i in range(4)]
    # The steps every member completed: the fewest any member took (0 when a member had not started).
    assert info.value.completed_steps == min(done)
    for i, (net, updates) in enumerate(zip(fresh, done)):
        if updates:
            net.train(x, t, updates)
        assert_same(net, pop[i], exact=True)


def test_weights_stack_on_a_member_axis_and_round_trip():
    pop = rustbp.Population(3, 5, 2, 4, seed=0, bias="shared")
    w = pop.get_weights()
    assert {k: v.shape for k, v in w.items()} == {"w1": (4, 5, 3), "b1": (4, 1), "w2": (4, 2, 5), "b2": (4, 1)}
    for i in range(4):
        for k, v in pop[i].get_weights().items():
            np.testing.assert_array_equal(w[k][i], v)
    w["w1"][2] += 1.0
    pop.set_weights(w)
    np.testing.assert_array_equal(pop[2].get_weights()["w1"], w["w1"][2])
    with pytest.raises(ValueError, match=r"w2: expected shape \[4, 2, 5\], got \[3, 2, 5\]"):
        pop.set_weights({**w, "w2": w["w2"][:3]})


def test_members_come_and_go_as_networks():
    nets = [rustbp.Network(2, 3, 1, seed=i, optimizer=rustbp.SGD(lr=0.1 * (i + 1))) for i in range(3)]
    pop = rustbp.Population.from_networks(nets)
    assert pop.size == 3 and [o.lr for o in pop.optimizers] == pytest.approx([0.1, 0.2, 0.3])
    assert_same(nets[1], pop[1], exact=True)
    assert_same(nets[2], pop[-1], exact=True)
    pop[0] = nets[2]
    assert_same(nets[2], pop[0], exact=True) and pop.optimizers[0] == nets[2].optimizer
    with pytest.raises(ValueError, match="member 1"):
        rustbp.Population.from_networks([nets[0], rustbp.Network(2, 4, 1)])
    with pytest.raises(ValueError, match="networks: expected networks of one device and dtype"):
        rustbp.Population.from_networks([nets[0], rustbp.Network(2, 3, 1, dtype="float32")])
    with pytest.raises(IndexError, match=r"index: expected an integer in \[-3, 3\), got 3"):
        pop[3]
    with pytest.raises(ValueError, match=r"expected networks like member 0 .*, got member 1: 2-5-1"):
        pop[1] = rustbp.Network(2, 5, 1)


def test_to_moves_every_member():
    from conftest import require

    require(GPU)
    rng = np.random.default_rng(5)
    x, t = rng.normal(size=(6, 3)), rng.uniform(size=(6, 2))
    pop = rustbp.Population(3, 4, 2, 3, optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=1, dtype="float32")
    pop.train(x, t, 2)
    gpu = pop.to("gpu")
    assert (gpu.device, gpu.dtype, gpu.size) == ("gpu", "float32", 3)
    assert_close(gpu.train(x, t, 3), pop.train(x, t, 3), 1e-5)
    assert_close(gpu.to("cpu", "float64").get_weights()["w1"], pop.get_weights()["w1"], 1e-5)


def test_gpu_members_too_large_for_the_fused_kernel_train_side_by_side_as_alone():
    """64-48-10 has 3,610 parameters, more than the fused kernel holds: the members train through the tiled
    kernels, each dispatch over all of them, and each equals its GPU network alone bit for bit."""
    from conftest import require

    require(GPU)
    rng = np.random.default_rng(8)
    x, y = rng.normal(size=(50, 64)), rng.integers(0, 10, 50)
    kw = {"hidden_activation": "relu", "output_activation": "softmax", "loss": "cross_entropy"}
    opt = rustbp.SGD(lr=0.05, momentum=0.9)
    pop = rustbp.Population(64, 48, 10, 3, optimizer=opt, lr=[0.02, 0.05, 0.1], seed=4, device="gpu", **kw)
    nets = [pop[i] for i in range(3)]
    assert nets[0].device == "gpu"
    losses = pop.train(x[:20], y[:20], 4)
    history = pop.fit(x, y, 2, 16, seed=1, bootstrap=True)
    # Early stopping: members that have stopped sit out while the others go on side by side.
    stops = {"validation_data": (x[:12] + 0.5, y[:12]), "patience": 1, "seed": 2}
    stopping = pop.fit(x, y, 8, 16, **stops)
    for i, net in enumerate(nets):
        np.testing.assert_array_equal(losses[i], net.train(x[:20], y[:20], 4))
        rows = rustbp.population.bootstrap_rows(len(x), 1, i)
        np.testing.assert_array_equal(history.loss[i], net.fit(x[rows], y[rows], 2, 16, seed=1).loss)
        alone = net.fit(x, y, 8, 16, **stops)
        assert stopping[i].history == alone.history and stopping[i].best_epoch == alone.best_epoch
        assert_same(net, pop[i], exact=True)
    assert len({h.epochs for h in stopping}) > 1, "every member stopped at the same epoch"  # some sat out


@pytest.mark.parametrize("how", ["pickle", "save"])
def test_populations_resume_exactly_after_pickle_and_save(tmp_path, how):
    rng = np.random.default_rng(4)
    x, t = rng.normal(size=(10, 3)), rng.uniform(size=(10, 2))
    pop = rustbp.Population(3, 4, 2, 3, optimizer=rustbp.Adam(lr=0.01), lr=[0.01, 0.02, 0.03], seed=9)
    pop.train(x, t, 5)
    if how == "pickle":
        back = pickle.loads(pickle.dumps(pop))
    else:
        pop.save(tmp_path / "pop.npz")
        back = rustbp.Population.load(tmp_path / "pop.npz")
    np.testing.assert_array_equal(back.train(x, t, 3), pop.train(x, t, 3))
    assert back.optimizers == pop.optimizers
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a rustbp population file"):
        rustbp.Population.load(tmp_path / "bad.npz")


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": [0.1, 0.2, 0.3]}, ValueError, r"lr: expected one value or 4 values \(one per member\), got 3 values"),
        ({"momentum": "x"}, TypeError, "momentum: expected one value or a sequence"),
        ({"lr": {"a": 1}}, TypeError, "lr: expected one value or a sequence"),
        ({"lr": [[0.1, 0.2]] * 4}, TypeError, "lr: expected one value or a sequence"),
        ({"eps": 1e-8}, ValueError, "eps: SGD has no eps"),
        ({"lr": [0.1, 0.2, -1.0, 0.3]}, ValueError, "lr: expected a finite number > 0"),
        ({"seeds": [1, 2]}, ValueError, r"seeds: expected one seed per member \(4\), got 2 seeds"),
        ({"seeds": [1, 2, 3, 4], "seed": 1}, TypeError, "seeds: pass either seed"),
        ({"size": 0}, ValueError, "size: expected a positive integer"),
    ],
)
def test_bad_arguments_name_themselves(kwargs, error, message):
    kwargs = {"size": 4} | kwargs
    with pytest.raises(error, match=message):
        rustbp.Population(2, 3, 2, **kwargs)


def test_bad_calls_name_their_argument():
    pop = rustbp.Population(2, 3, 2, 2, seed=0)
    with pytest.raises(ValueError, match="X"):
        pop.forward(np.zeros((3, 5)))
    with pytest.raises(ValueError, match="T"):
        pop.train(np.zeros((3, 2)), np.zeros((2, 2)), 1)
    with pytest.raises(TypeError, match="bootstrap"):
        pop.fit(np.zeros((3, 2)), np.zeros((3, 2)), 1, bootstrap=1)
    with pytest.raises(ValueError, match="by: the last fit recorded no val_loss"):
        pop.fit(np.zeros((3, 2)), np.zeros((3, 2)), 1)
        pop.best()
    with pytest.raises(TypeError, match="index: expected an integer"):
        pop["a"]


def test_a_pickle_taken_while_another_thread_trains_holds_one_moment():
    # Every member is copied under one lock: a pickle never pairs member 0 after k steps with member 1
    # after k + 1, which copying member by member between two of the trainer's calls would.
    X, T = np.linspace(-1, 1, 12).reshape(4, 3), np.linspace(0.1, 0.9, 8).reshape(4, 2)
    make = lambda: rustbp.Population(3, 4, 2, 3, seed=2, lr=[0.1, 0.2, 0.3])  # noqa: E731
    pop, done, pickles = make(), threading.Event(), []

    def train() -> None:
        for _ in range(60):
            while True:
                try:
                    pop.train(X, T, 1)
                    break
                except RuntimeError:  # the pickler holds the lock at that instant
                    pass
            time.sleep(0.0002)  # a moment for the pickler between two steps, not for a whole pickle
        done.set()

    trainer = threading.Thread(target=train)
    trainer.start()
    while not done.is_set():
        with contextlib.suppress(RuntimeError):  # the trainer holds the lock at that instant
            pickles.append(pickle.dumps(pop))
    trainer.join()
    twin, steps = make(), 0
    updates = lambda net: net._core.get_optimizer_state()[1]  # noqa: E731
    assert pickles, "no pickle was taken while training"
    for copy in sorted((pickle.loads(p) for p in pickles), key=lambda p: updates(p[0])):
        counts = {updates(m) for m in copy}
        assert len(counts) == 1, f"members from different steps: {counts}"
        k = counts.pop()
        if k > steps:
            twin.train(X, T, k - steps)
        steps = k
        for i in range(3):
            for name, w in twin[i].get_weights().items():
                np.testing.assert_array_equal(copy[i].get_weights()[name], w, err_msg=f"member {i} {name}")
