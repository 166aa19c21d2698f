"""Learning-rate schedules: their rates against PyTorch's closed-form formulas written out here (and
against torch.optim.lr_scheduler itself when PyTorch is installed), and their use in fit and in the
scikit-learn estimators."""

from __future__ import annotations

import math

import numpy as np
import pytest
import rustbp

EPOCHS = 40


def rates(schedule, lr, losses=None):
    s = schedule.start(lr)
    out = [s.lr]
    for e in range(EPOCHS):
        out.append(s.step(None if losses is None else losses[e]))
    return out


@pytest.mark.parametrize(
    ("schedule", "formula"),
    [
        (rustbp.StepLR(step_size=3, gamma=0.5), lambda e, lr: lr * 0.5 ** (e // 3)),
        (rustbp.StepLR(step_size=1), lambda e, lr: lr * 0.1**e),
        (rustbp.ExponentialLR(gamma=0.9), lambda e, lr: lr * 0.9**e),
        (
            rustbp.CosineAnnealingLR(T_max=7, eta_min=0.01),
            lambda e, lr: 0.01 + (lr - 0.01) * (1 + math.cos(math.pi * e / 7)) / 2,
        ),
        (rustbp.CosineAnnealingLR(T_max=10), lambda e, lr: lr * (1 + math.cos(math.pi * e / 10)) / 2),
    ],
    ids=["step", "step-default-gamma", "exponential", "cosine-eta-min", "cosine"],
)
def test_rates_follow_the_closed_form_formulas(schedule, formula):
    # Beyond T_max the cosine goes back up, as PyTorch's does; the closed form covers that too.
    expected = [formula(e, 0.3) for e in range(EPOCHS + 1)]
    np.testing.assert_allclose(rates(schedule, 0.3), expected, rtol=1e-12, atol=1e-15)


def test_reduce_on_plateau_follows_pytorchs_rules():
    # patience 2: the third epoch in a row without an improvement over the best cuts the rate.
    flat = [1.0] * 8
    got = rates(rustbp.ReduceLROnPlateau(patience=2), 1.0, flat + [0.5] * (EPOCHS - 8))[:12]
    # epoch 1 sets the best; epochs 2, 3, 4 are bad -> cut after epoch 4; 5, 6, 7 bad -> cut after 7;
    # epoch 8 is bad again (1.0), epoch 9 improves (0.5), 10 and 11 are bad.
    assert got == pytest.approx([1.0, 1.0, 1.0, 1.0, 0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.01, 0.01], rel=1e-15)
    # A relative threshold of 1e-4: 0.99995 is not better than 1.0, 0.9998 is.
    s = rustbp.ReduceLROnPlateau(patience=0).start(1.0)
    assert [s.step(1.0), s.step(0.99995), s.step(0.9998)] == [1.0, 0.1, 0.1]
    # Absolute threshold, max mode, cooldown, min_lr.
    s = rustbp.ReduceLROnPlateau(mode="max", patience=0, threshold=0.5, threshold_mode="abs", cooldown=2,
                                 min_lr=0.05, factor=0.5).start(0.4)  # fmt: skip
    got = [s.step(m) for m in (1.0, 1.4, 1.6, 1.6, 1.6, 1.6, 1.6, 1.6)]
    # 1.0 best; 1.4 not > 1.5: cut to 0.2, cooldown 2; two epochs in cooldown; then bad: cut to 0.1...
    assert got == [0.4, 0.2, 0.2, 0.2, 0.1, 0.1, 0.1, 0.05]
    # Changes smaller than eps are skipped: the rate stays at min_lr.
    s = rustbp.ReduceLROnPlateau(patience=0, min_lr=0.1).start(0.1)
    assert [s.step(1.0), s.step(2.0), s.step(3.0)] == [0.1, 0.1, 0.1]


def test_rates_match_torch_lr_scheduler():
    torch = pytest.importorskip("torch")
    sched = torch.optim.lr_scheduler
    losses = list(np.random.default_rng(0).permutation(np.repeat(np.linspace(1, 0.5, 10), 4)))
    cases = [
        (rustbp.StepLR(4, 0.7), lambda o: sched.StepLR(o, 4, 0.7)),
        (rustbp.ExponentialLR(0.95), lambda o: sched.ExponentialLR(o, 0.95)),
        (rustbp.CosineAnnealingLR(9, 0.001), lambda o: sched.CosineAnnealingLR(o, 9, 0.001)),
        (
            rustbp.ReduceLROnPlateau(patience=2, cooldown=1),
            lambda o: sched.ReduceLROnPlateau(o, patience=2, cooldown=1),
        ),
    ]
    for ours, make in cases:
        opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
        theirs = make(opt)
        expected = [opt.param_groups[0]["lr"]]
        for e in range(EPOCHS):
            opt.step()  # PyTorch's order; with no gradient it changes nothing
            theirs.step(losses[e]) if isinstance(ours, rustbp.ReduceLROnPlateau) else theirs.step()
            expected.append(opt.param_groups[0]["lr"])
        assert rates(ours, 0.1, losses) == expected, ours


def data(rng, n=48):
    X = rng.normal(size=(n, 4))
    return X, np.eye(3)[rng.integers(0, 3, n)]


def net(optimizer=None):
    return rustbp.Network(4, 6, 3, hidden_activation="tanh", output_activation="softmax", loss="cross_entropy",
                          optimizer=optimizer or rustbp.SGD(lr=0.2, momentum=0.9), seed=1)  # fmt: skip


@pytest.mark.parametrize("optimizer", [rustbp.SGD(lr=0.2, momentum=0.9), rustbp.Adam(lr=0.01)], ids=["sgd", "adam"])
def test_fit_with_a_schedule_trains_as_a_loop_that_sets_each_epochs_rate(rng, optimizer):
    X, Y = data(rng)
    a, b = net(optimizer), net(optimizer)
    schedule = rustbp.StepLR(step_size=2, gamma=0.5)
    history = a.fit(X, Y, 6, batch_size=16, shuffle=False, lr_schedule=schedule)
    expected = [optimizer.lr * 0.5 ** (e // 2) for e in range(6)]
    np.testing.assert_allclose(history.history["lr"], expected, rtol=1e-15)
    for lr in expected:  # the same epochs, one fit call each, with the rate set by hand
        b.set_lr(lr)
        b.fit(X, Y, 1, batch_size=16, shuffle=False)
    for k, w in a.get_weights().items():
        np.testing.assert_array_equal(w, b.get_weights()[k])
    assert a.optimizer.lr == optimizer.lr * 0.5**3, "the network keeps the rate of the epoch after the last"


def test_reduce_on_plateau_in_fit_watches_the_monitored_loss(rng):
    X, Y = data(rng)
    schedule = rustbp.ReduceLROnPlateau(factor=0.5, patience=0)
    history = net().fit(X, Y, 8, validation_split=0.25, seed=0, lr_schedule=schedule)
    s = schedule.start(0.2)
    expected = [s.lr] + [s.step(v) for v in history.val_loss[:-1]]
    assert history.history["lr"] == expected
    history = net().fit(X, Y, 8, seed=0, lr_schedule=schedule)  # no validation: the training loss
    s = schedule.start(0.2)
    assert history.history["lr"] == [s.lr] + [s.step(v) for v in history.loss[:-1]]


def test_a_started_scheduler_goes_on_across_fit_calls(rng):
    X, Y = data(rng)
    scheduler = rustbp.ExponentialLR(0.5).start(0.2)
    a = net()
    a.fit(X, Y, 2, seed=0, lr_schedule=scheduler)
    h = a.fit(X, Y, 2, seed=0, lr_schedule=scheduler)
    assert h.history["lr"] == [0.2 * 0.25, 0.2 * 0.125] and scheduler.epoch == 4
    assert a.optimizer.lr == 0.2 * 0.5**4


def test_estimators_take_a_schedule(rng):
    from rustbp.sklearn import NetworkClassifier, NetworkRegressor

    X, y = rng.normal(size=(40, 3)), rng.integers(0, 2, 40)
    clf = NetworkClassifier(n_hidden=5, max_iter=3, lr=0.01, lr_schedule=rustbp.ExponentialLR(0.5), random_state=0)
    clf.fit(X, y)
    assert clf.network_.optimizer.lr == pytest.approx(0.01 * 0.5**3, rel=1e-15)
    clf.fit(X, y)  # a new fit starts from lr again
    assert clf.network_.optimizer.lr == pytest.approx(0.01 * 0.5**3, rel=1e-15)
    reg = NetworkRegressor(n_hidden=5, lr=0.01, lr_schedule=rustbp.StepLR(2, 0.1), random_state=0)
    for _ in range(4):  # partial_fit: one epoch per call, one scheduler across the calls
        reg.partial_fit(X, X[:, 0])
    assert reg.network_.optimizer.lr == pytest.approx(0.01 * 0.1**2, rel=1e-15)
    assert reg.lr_scheduler_.epoch == 4


@pytest.mark.parametrize(
    ("make", "error", "pattern"),
    [
        (lambda: rustbp.StepLR(0), ValueError, "step_size"),
        (lambda: rustbp.StepLR(2, gamma=-1.0), ValueError, "gamma"),
        (lambda: rustbp.ExponentialLR(float("nan")), ValueError, "gamma"),
        (lambda: rustbp.CosineAnnealingLR(0), ValueError, "T_max"),
        (lambda: rustbp.CosineAnnealingLR(5, eta_min=-1.0), ValueError, "eta_min"),
        (lambda: rustbp.ReduceLROnPlateau(mode="low"), ValueError, "mode: expected one of min, max"),
        (lambda: rustbp.ReduceLROnPlateau(factor=1.0), ValueError, "factor"),
        (lambda: rustbp.ReduceLROnPlateau(patience=-1), ValueError, "patience"),
        (lambda: rustbp.ReduceLROnPlateau(threshold_mode="pct"), ValueError, "threshold_mode"),
        (lambda: rustbp.ReduceLROnPlateau().start(1.0).step(), ValueError, "loss"),
        (lambda: rustbp.StepLR(2).start(0.0), ValueError, "lr"),
        (lambda: net().fit(np.zeros((2, 4)), [0, 1], 1, lr_schedule=0.5), TypeError, "lr_schedule"),
    ],
)
def test_bad_schedules_name_the_argument(make, error, pattern):
    with pytest.raises(error, match=pattern):
        make()


class _CountingCore:
    """The network's core, counting its fit calls."""

    def __init__(self, core):
        self.core, self.fits = core, 0

    def fit(self, *args, **kwargs):
        self.fits += 1
        return self.core.fit(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.core, name)


@pytest.mark.parametrize(
    "schedule",
    [rustbp.StepLR(2, gamma=0.3), rustbp.ExponentialLR(0.7), rustbp.CosineAnnealingLR(3, eta_min=0.01)],
    ids=["step", "exponential", "cosine"],
)
def test_closed_form_schedules_run_in_one_core_call_like_the_per_epoch_loop(device, rng, schedule):
    X, Y = data(rng, 20)
    kw = dict(hidden_activation="tanh", output_activation="softmax", loss="cross_entropy", seed=1,
              optimizer=rustbp.Adam(lr=0.05), device=device.device, dtype=device.dtype)  # fmt: skip
    one, loop = rustbp.Network(4, 6, 3, **kw), rustbp.Network(4, 6, 3, **kw)
    one._core = counted = _CountingCore(one._core)
    s_one, s_loop = schedule.start(0.05), schedule.start(0.05)
    h_one = one.fit(X, Y, 7, batch_size=8, seed=3, lr_schedule=s_one)
    # A callback makes fit go back to Python after every epoch: one core call each, the rate set between.
    h_loop = loop.fit(X, Y, 7, batch_size=8, seed=3, lr_schedule=s_loop, callbacks=[lambda epoch, logs: None])
    assert counted.fits == 1
    assert h_one.history == h_loop.history  # losses and rates, bit for bit
    for k, w in one.get_weights().items():
        np.testing.assert_array_equal(w, loop.get_weights()[k], err_msg=k)
    assert one.optimizer == loop.optimizer and one.optimizer.lr == s_one.lr == s_loop.lr
    assert s_one.epoch == s_loop.epoch == 7
    state_one, state_loop = one._core.get_optimizer_state(), loop._core.get_optimizer_state()
    assert state_one[1] == state_loop[1]
    for a, b in zip(state_one[0], state_loop[0]):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


def test_a_diverging_scheduled_fit_leaves_the_scheduler_at_the_failing_epoch(rng):
    X = rng.normal(size=(8, 4)) * 100
    Y = rng.normal(size=(8, 3)) * 100
    # The rate grows tenfold each epoch until the weights blow up.
    net = rustbp.Network(4, 6, 3, output_activation="identity", optimizer=rustbp.SGD(lr=1e-6), seed=0)
    scheduler = rustbp.ExponentialLR(10.0).start(1e-6)
    with pytest.raises(rustbp.TrainingDivergedError) as e:
        net.fit(X, Y, 40, batch_size=8, shuffle=False, lr_schedule=scheduler)
    failed = len(e.value.losses)  # completed epochs, one step each
    assert 0 < failed < 40 and e.value.step == failed
    assert scheduler.epoch == failed and net.optimizer.lr == scheduler.lr == pytest.approx(1e-6 * 10.0**failed)
