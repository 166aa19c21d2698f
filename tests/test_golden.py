"""rustbp against PyTorch without PyTorch: short runs that PyTorch trained (autograd and torch.optim, float64)
from fixed weights, committed in tests/golden/ by scripts/golden_torch.py, replayed here: training steps for
every setting, and epochs of in-order mini-batches under each torch.optim.lr_scheduler schedule.

Float64 rustbp follows PyTorch operation by operation, so losses and weights agree to rounding (1e-15 or so
relative to each tensor's scale); 1e-10 leaves room for other CPUs' rounding and stays far below any real
difference in a formula.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import rustbp

FIXTURE = json.loads((Path(__file__).parent / "golden" / "torch_trajectories.json").read_text())
SCHEDULED = FIXTURE["scheduled"]
RTOL = 1e-10
OPTIMIZERS = {"sgd", "momentum", "nesterov", "weight_decay", "adam"}
SCHEDULES = {
    "StepLR": rustbp.StepLR,
    "ExponentialLR": rustbp.ExponentialLR,
    "CosineAnnealingLR": rustbp.CosineAnnealingLR,
    "ReduceLROnPlateau": rustbp.ReduceLROnPlateau,
}


def optimizer(spec):
    kw = {k: v for k, v in spec.items() if k != "name"}
    if spec["name"] == "adam":
        return rustbp.Adam(**{**kw, "betas": tuple(kw["betas"])})
    return rustbp.SGD(**kw)


def test_the_fixtures_cover_every_setting():
    cases = FIXTURE["cases"]
    assert {c["hidden"] for c in cases} == {"sigmoid", "tanh", "relu", "identity"}
    assert {(c["output"], c["loss"]) for c in cases} >= {("softmax", "cross_entropy"), ("relu", "mse")}
    assert {c["output"] for c in cases} == {"sigmoid", "tanh", "relu", "identity", "softmax"}
    assert {c["loss"] for c in cases} == {"half_sse", "mse", "cross_entropy", "binary_cross_entropy"}
    assert {c["opt"] for c in cases if c["loss"] == "binary_cross_entropy"} == set(OPTIMIZERS)
    assert {(c["bias"], c["train_bias"]) for c in cases} >= {("shared", True), ("shared", False), ("none", True)}
    assert {c["opt"] for c in cases} == set(OPTIMIZERS)
    assert {c["schedule"]["name"] for c in SCHEDULED} == set(SCHEDULES)
    # Targets at the ends 0 and 1, where BCELoss's log terms meet their limits.
    bce = [np.array(c["T"]) for c in cases + SCHEDULED if c["loss"] == "binary_cross_entropy"]
    assert all(t.min() == 0 and t.max() == 1 for t in bce)
    # The schedules change the rate within the epochs recorded, ReduceLROnPlateau included.
    assert all(len(set(c["lr"])) > 1 for c in SCHEDULED)


def network(case):
    net = rustbp.Network(
        *FIXTURE["widths"],
        hidden_activation=case["hidden"],
        output_activation=case["output"],
        loss=case["loss"],
        bias=case["bias"],
        train_bias=case["train_bias"],
        optimizer=optimizer(case["optimizer"]),
        seed=0,
    )
    net.set_weights({k: np.array(v) for k, v in case["weights"].items()})
    return net


def assert_weights(net, final):
    weights = net.get_weights()
    assert weights.keys() == final.keys()
    for k, want in final.items():
        want = np.array(want)
        assert weights[k].shape == want.shape, k
        err = np.abs(weights[k] - want).max() / max(np.abs(want).max(), 1e-300)
        assert err <= RTOL, f"{k}: relative error {err:.3g}"


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_rustbp_follows_the_pytorch_trajectory(case):
    net = network(case)
    X, T = np.array(case["X"]), np.array(case["T"])
    steps = FIXTURE["steps"]
    # Steps from Python and looped in Rust: the same trajectory.
    losses = [net.train_step(X, T), net.train_step(X, T), *net.train(X, T, steps - 2)]
    np.testing.assert_allclose(losses, case["losses"], rtol=RTOL)
    assert_weights(net, case["final"])


@pytest.mark.parametrize("per_epoch", [False, True], ids=["one_call", "per_epoch"])
@pytest.mark.parametrize("case", SCHEDULED, ids=[c["name"] for c in SCHEDULED])
def test_rustbp_follows_the_pytorch_schedule(case, per_epoch):
    net = network(case)
    spec = {k: v for k, v in case["schedule"].items() if k != "name"}
    schedule = SCHEDULES[case["schedule"]["name"]](**spec)
    # A callback makes fit go back to Python after every epoch; without one, the closed-form schedules'
    # rates are computed ahead and all epochs run in one core call.
    callbacks = [lambda epoch, logs: None] if per_epoch else ()
    history = net.fit(
        np.array(case["X"]),
        np.array(case["T"]),
        epochs=FIXTURE["epochs"],
        batch_size=FIXTURE["batch_size"],
        shuffle=False,
        lr_schedule=schedule,
        callbacks=callbacks,
    )
    np.testing.assert_allclose(history.loss, case["losses"], rtol=RTOL)
    np.testing.assert_allclose(history.history["lr"], case["lr"], rtol=RTOL)
    assert_weights(net, case["final"])
