"""rustbp against PyTorch without PyTorch: short runs that PyTorch trained (autograd and torch.optim, float64)
from fixed weights, committed in tests/golden/ by scripts/golden_torch.py, replayed here.

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
RTOL = 1e-10


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
    assert {c["loss"] for c in cases} == {"half_sse", "mse", "cross_entropy"}
    assert {(c["bias"], c["train_bias"]) for c in cases} >= {("shared", True), ("shared", False), ("none", True)}
    assert {c["opt"] for c in cases} == {"sgd", "momentum", "nesterov", "weight_decay", "adam"}


@pytest.mark.parametrize("case", FIXTURE["cases"], ids=[c["name"] for c in FIXTURE["cases"]])
def test_rustbp_follows_the_pytorch_trajectory(case):
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
    X, T = np.array(case["X"]), np.array(case["T"])
    steps = FIXTURE["steps"]
    # Steps from Python and looped in Rust: the same trajectory.
    losses = [net.train_step(X, T), net.train_step(X, T), *net.train(X, T, steps - 2)]
    np.testing.assert_allclose(losses, case["losses"], rtol=RTOL)
    weights = net.get_weights()
    assert weights.keys() == case["final"].keys()
    for k, want in case["final"].items():
        want = np.array(want)
        assert weights[k].shape == want.shape, k
        err = np.abs(weights[k] - want).max() / max(np.abs(want).max(), 1e-300)
        assert err <= RTOL, f"{k}: relative error {err:.3g}"
