"""The article's worked example, reproduced through the Python API and the demo to 1e-9 or better."""

from __future__ import annotations

import math
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
import rustbp
from conftest import ARTICLE, ARTICLE_E_AFTER_ONE_STEP, ARTICLE_FINAL, ARTICLE_LOSSES, ARTICLE_T, ARTICLE_X

TOL = 1e-12


def test_article_network_configuration():
    net = rustbp.Network.article()
    w = net.get_weights()
    np.testing.assert_array_equal(w["w1"], [[0.15, 0.20], [0.25, 0.30]])
    np.testing.assert_array_equal(w["w2"], [[0.40, 0.45], [0.50, 0.55]])
    np.testing.assert_array_equal(w["b1"], [0.35])
    np.testing.assert_array_equal(w["b2"], [0.60])
    assert net.dtype == "float64"
    assert net.optimizer == rustbp.SGD(lr=0.5)
    assert "bias='shared'" in repr(net) and "train_bias=False" in repr(net)


def test_explain_step_reproduces_every_number_of_the_first_step():
    net = rustbp.Network.article()
    s = net.explain_step(ARTICLE_X, ARTICLE_T, apply=True)
    for name, want in ARTICLE.items():
        assert s[name] == pytest.approx(want, abs=TOL, rel=0), name
    # The generic arrays say the same as the article's names.
    np.testing.assert_allclose(s["grad_w2"].ravel(), [ARTICLE[f"dE_dw{k}"] for k in range(5, 9)], rtol=0, atol=TOL)
    np.testing.assert_allclose(s["w1_after"].ravel(), [ARTICLE[f"w{k}_new"] for k in range(1, 5)], rtol=0, atol=TOL)
    assert "grad_b1" not in s, "the article's biases are not trained"
    np.testing.assert_array_equal(s["b2_after"], [0.60])
    # With apply=True, explain_step is a real training step: the network moved.
    assert net.loss(ARTICLE_X, ARTICLE_T) == pytest.approx(ARTICLE_E_AFTER_ONE_STEP, abs=TOL, rel=0)


def test_deltas_are_the_chain_rule_products_of_the_article():
    s = rustbp.Network.article().explain_step(ARTICLE_X, ARTICLE_T)
    for k, t in ((1, 0.01), (2, 0.99)):
        o = s[f"out_o{k}"]
        assert s[f"delta_o{k}"] == pytest.approx((o - t) * o * (1 - o), abs=1e-15)
    assert s["dE_dw5"] == pytest.approx(s["delta_o1"] * s["out_h1"], abs=1e-15)


def test_ten_thousand_steps_match_the_article():
    net = rustbp.Network.article()
    losses = net.train(ARTICLE_X, ARTICLE_T, 10_000)
    assert losses.shape == (10_000,) and losses.dtype == np.float64
    for step, want in ARTICLE_LOSSES.items():
        assert losses[step] == pytest.approx(want, abs=TOL, rel=0), step
    out = net.forward(ARTICLE_X)
    assert net.loss(ARTICLE_X, ARTICLE_T) == pytest.approx(ARTICLE_FINAL["E_total"], abs=TOL, rel=0)
    assert out[0] == pytest.approx(ARTICLE_FINAL["out_o1"], abs=TOL, rel=0)
    assert out[1] == pytest.approx(ARTICLE_FINAL["out_o2"], abs=TOL, rel=0)


def test_train_step_loop_equals_train():
    a, b = rustbp.Network.article(), rustbp.Network.article()
    stepped = [a.train_step(ARTICLE_X, ARTICLE_T) for _ in range(100)]
    np.testing.assert_array_equal(stepped, b.train(ARTICLE_X, ARTICLE_T, 100))
    np.testing.assert_array_equal(a.get_weights()["w1"], b.get_weights()["w1"])


def _numbers(text: str) -> list[float]:
    return [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", text)]


CONSOLE_SCRIPT = shutil.which("rustbp", path=os.path.dirname(sys.executable))


@pytest.mark.parametrize(
    "command",
    [
        [sys.executable, "-m", "rustbp", "demo"],
        pytest.param([CONSOLE_SCRIPT, "demo"], marks=pytest.mark.skipif(not CONSOLE_SCRIPT, reason="not installed")),
    ],
    ids=["python -m rustbp", "rustbp"],
)
def test_demo_prints_the_articles_numbers(command):
    text = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    printed = _numbers(text)
    expected = [
        *ARTICLE.values(),
        ARTICLE_E_AFTER_ONE_STEP,
        *ARTICLE_LOSSES.values(),
        *ARTICLE_FINAL.values(),
    ]
    for want in expected:
        assert any(math.isclose(p, want, rel_tol=1e-9) for p in printed), f"{want!r} not in the demo's output"
    assert "E_total" in text and "dE/dw8" in text and "step 9999" in text
