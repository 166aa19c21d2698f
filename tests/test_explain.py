"""``Network.explain_step``'s ``Step``: the article's chain-rule factors, checked against the article and
against finite differences of the loss; the formulas, the pictures, the demo and its HTML page."""

from __future__ import annotations

import math
import os
import pickle
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest
import rustbp
from conftest import ARTICLE, ARTICLE_E_AFTER_ONE_STEP, ARTICLE_LOSSES, ARTICLE_T, ARTICLE_X

TOL = 1e-12

# The factors of the article's derivation, as /work/shared/article.md prints them ("The chain rule,
# factor by factor").
ARTICLE_FACTORS = {
    "E_o1": 0.274811083176155,
    "E_o2": 0.023560025583847746,
    "dE/dout_o1": 0.7413650695523157,
    "dE/dout_o2": -0.21707153467853746,
    "dout_o1/dnet_o1": 0.18681560180895948,
    "dout_o2/dnet_o2": 0.17551005281727122,
    "delta_o1": 0.13849856162855698,
    "delta_o2": -0.03809823651655623,
    "dnet_o1/dw5": 0.5932699921071872,
    "dE_o1/dout_h1": 0.05539942465142279,
    "dE_o2/dout_h1": -0.019049118258278114,
    "dE/dout_h1": 0.03635030639314468,
    "dE_o1/dout_h2": 0.06232435273285064,
    "dE_o2/dout_h2": -0.02095403008410593,
    "dE/dout_h2": 0.04137032264874471,
    "dout_h1/dnet_h1": 0.24130070857232525,
    "dout_h2/dnet_h2": 0.2406134172492184,
    "delta_h1": 0.008771354689486937,
    "delta_h2": 0.009954254705217202,
    "dnet_h1/dw1": 0.05,
}

ACTIVATIONS = ("sigmoid", "tanh", "relu", "identity")
CONFIGS = [(h, o, loss) for h in ACTIVATIONS for o in ACTIVATIONS for loss in ("half_sse", "mse")] + [
    (h, "softmax", "cross_entropy") for h in ACTIVATIONS
]


def article_step(**kwargs):
    return rustbp.Network.article().explain_step(ARTICLE_X, ARTICLE_T, **kwargs)


# -- the step leaves the network alone ---------------------------------------------------------------
def test_explain_step_does_not_train_unless_asked():
    net = rustbp.Network.article()
    before = net.get_weights()
    first = net.explain_step(ARTICLE_X, ARTICLE_T)
    again = net.explain_step(ARTICLE_X, ARTICLE_T)
    assert isinstance(first, rustbp.Step) and isinstance(first, dict)
    assert first["E_total"] == again["E_total"] == 0.2983711087600027
    assert not first.applied
    for k, v in before.items():
        np.testing.assert_array_equal(net.get_weights()[k], v)
    # The trace still holds the weights the update would give.
    for k in range(1, 9):
        assert first[f"w{k}_new"] == pytest.approx(ARTICLE[f"w{k}_new"], abs=TOL, rel=0)
    applied = net.explain_step(ARTICLE_X, ARTICLE_T, apply=True)
    assert applied.applied
    assert net.loss(ARTICLE_X, ARTICLE_T) == pytest.approx(ARTICLE_E_AFTER_ONE_STEP, abs=TOL, rel=0)
    with pytest.raises(TypeError, match="apply: expected a bool, got str"):
        net.explain_step(ARTICLE_X, ARTICLE_T, apply="yes")


@pytest.mark.parametrize(
    "optimizer",
    [rustbp.SGD(lr=0.1, momentum=0.9), rustbp.SGD(lr=0.1, momentum=0.9, nesterov=True), rustbp.Adam(lr=0.01)],
    ids=["momentum", "nesterov", "adam"],
)
def test_explain_step_restores_the_optimizer_state(rng, optimizer):
    net = rustbp.Network(3, 4, 2, optimizer=optimizer, seed=1)
    X, T = rng.random((8, 3)), rng.random((8, 2))
    net.train(X, T, 3)  # a state worth keeping: momentum buffers, Adam's moments and step count
    twin = pickle.loads(pickle.dumps(net))
    for _ in range(2):
        net.explain_step(X[0], T[0])
    np.testing.assert_array_equal(net.train(X, T, 5), twin.train(X, T, 5))
    np.testing.assert_array_equal(net.get_weights()["w1"], twin.get_weights()["w1"])


def test_explain_step_checks_its_arguments():
    net = rustbp.Network.article()
    with pytest.raises(ValueError, match="x: expected shape"):
        net.explain_step(np.ones((2, 2)), np.ones((2, 2)))
    with pytest.raises(TypeError, match="t: expected a numeric array"):
        net.explain_step(ARTICLE_X, "0.01, 0.99")
    assert net.loss(ARTICLE_X, ARTICLE_T) == 0.2983711087600027, "a refused step changes nothing"


# -- the factors -------------------------------------------------------------------------------------
def test_factors_equal_the_article():
    s = article_step()
    for name, want in ARTICLE_FACTORS.items():
        assert s[name] == pytest.approx(want, abs=TOL, rel=0), name
    assert s["E_o1"] + s["E_o2"] == pytest.approx(s["E_total"], abs=TOL, rel=0)
    # The article's names are entries of the arrays: w1..w4 are w1[0,0], w1[0,1], w1[1,0], w1[1,1].
    assert s["dnet_h1/dw2"] == s["dnet_dw1"][0, 1] == 0.10
    assert s["dnet_o2/dw7"] == s["dnet_dw2"][1, 0] == pytest.approx(ARTICLE["out_h1"], abs=TOL)
    assert s["dE_o2/dout_h1"] == s["dE_dout_hidden_terms"][1, 0]
    np.testing.assert_array_equal(s["w2_before"], [[0.40, 0.45], [0.50, 0.55]])


def _chain(s):
    """The gradients as products of the Step's factors (no core numbers but the trace's out values)."""
    dout_dnet = s["dout_dnet_output"]
    # For softmax the Jacobian: every output depends on every net input.
    delta_o = dout_dnet.T @ s["dE_dout_output"] if dout_dnet.ndim == 2 else s["dE_dout_output"] * dout_dnet
    de_dout_h = (delta_o[:, None] * s["w2_before"]).sum(axis=0)
    delta_h = de_dout_h * s["dout_dnet_hidden"]
    return {
        "delta_output": delta_o,
        "delta_hidden": delta_h,
        "grad_w2": delta_o[:, None] * s["dnet_dw2"],
        "grad_w1": delta_h[:, None] * s["dnet_dw1"],
        "grad_b2": delta_o,
        "grad_b1": delta_h,
    }


@pytest.mark.parametrize(("hidden", "output", "loss"), CONFIGS, ids=["-".join(c) for c in CONFIGS])
def test_factors_multiply_to_the_cores_gradients_and_to_finite_differences(hidden, output, loss):
    seed = sum(map(ord, hidden + output + loss))
    rng = np.random.default_rng(seed)
    n_in, n_h, n_out = (int(n) for n in rng.integers(1, 6, size=3))
    if output == "softmax":
        n_out = max(n_out, 2)
    net = rustbp.Network(n_in, n_h, n_out, hidden_activation=hidden, output_activation=output, loss=loss, seed=seed)
    x = rng.normal(size=n_in)
    t = np.eye(n_out)[rng.integers(n_out)] if loss == "cross_entropy" else rng.uniform(0.1, 0.9, n_out)
    s = net.explain_step(x, t)
    w = net.get_weights()
    products = _chain(s)
    # The core's deltas and gradients are the products of the factors.
    for key in ("delta_output", "delta_hidden", "grad_w1", "grad_w2"):
        np.testing.assert_allclose(s[key], products[key], rtol=1e-12, atol=1e-15, err_msg=key)
    for key in ("grad_b1", "grad_b2"):
        np.testing.assert_allclose(s[key], products[key], rtol=1e-12, atol=1e-15, err_msg=key)
    assert s["E_output"].sum() == pytest.approx(s["loss"], rel=1e-12, abs=1e-15)
    # ...and the chain rule holds: they are the loss's derivatives, by central differences.
    if hidden == "relu":
        assert np.abs(s["net_hidden"]).min() > 1e-4, "pick another seed: a ReLU sits on its kink"
    if output == "relu":
        assert np.abs(s["net_output"]).min() > 1e-4, "pick another seed: a ReLU sits on its kink"
    h = 1e-6
    for name in ("w1", "w2", "b1", "b2"):
        for idx in np.ndindex(w[name].shape):
            plus, minus = {k: v.copy() for k, v in w.items()}, {k: v.copy() for k, v in w.items()}
            plus[name][idx] += h
            minus[name][idx] -= h
            net.set_weights(plus)
            lp = net.loss(x, t)
            net.set_weights(minus)
            lm = net.loss(x, t)
            numeric = (lp - lm) / (2 * h)
            assert products[f"grad_{name}"][idx] == pytest.approx(numeric, rel=1e-5, abs=1e-8), (name, idx)
    net.set_weights(w)


def test_softmax_cross_entropy_shows_its_combined_delta():
    net = rustbp.Network(2, 3, 3, output_activation="softmax", loss="cross_entropy", seed=0)
    t = np.array([0.0, 1.0, 0.0])
    s = net.explain_step([0.3, -0.7], t)
    np.testing.assert_allclose(s["delta_output"], s["out_output"] - t, rtol=1e-12, atol=1e-15)
    o = s["out_output"]
    np.testing.assert_allclose(s["dout_dnet_output"], np.diag(o) - np.outer(o, o), rtol=1e-12, atol=1e-16)
    text = "\n".join(s.formulas())
    assert "out_oj - T_j when the targets sum to 1" in text
    assert f"delta_o2 = out_o2 - T2 = {o[1]:.16g} - 1 = " in text
    # Targets that do not sum to 1: the exact delta out * sum(T) - T, said so.
    t = np.array([0.2, 0.5, 0.0])
    s = net.explain_step([0.3, -0.7], t)
    np.testing.assert_allclose(s["delta_output"], s["out_output"] * 0.7 - t, rtol=1e-12, atol=1e-15)
    assert "delta_o1 = out_o1 * 0.7 - T1" in "\n".join(s.formulas())


def test_mse_is_pytorchs_mean_over_the_outputs():
    net = rustbp.Network(2, 2, 4, loss="mse", output_activation="identity", seed=3)
    t = np.array([0.1, 0.2, 0.3, 0.4])
    s = net.explain_step([1.0, 2.0], t)
    o = s["out_output"]
    assert s["loss"] == pytest.approx(np.mean((o - t) ** 2), rel=1e-14)
    np.testing.assert_allclose(s["dE_dout_output"], 2 * (o - t) / 4, rtol=1e-14)


def test_per_neuron_and_trained_biases_appear_in_the_derivation():
    net = rustbp.Network(2, 2, 2, bias="per_neuron", seed=4)
    s = net.explain_step([0.5, 0.25], [0.1, 0.9])
    text = "\n".join(s.formulas())
    assert "b_h1*1" in text and f"dE/db_o2 = delta_o2 * 1 = {s['delta_output'][1]:.16g}" in text
    assert f"b_h2_new = b_h2 - eta * dE/db_h2 = {s['b1_before'][1]:.16g}" in text
    shared = rustbp.Network(2, 2, 2, bias="shared", seed=4).explain_step([0.5, 0.25], [0.1, 0.9])
    assert "dE/db2 = delta_o1 + delta_o2" in "\n".join(shared.formulas())
    none = rustbp.Network(2, 2, 2, bias="none", seed=4).explain_step([0.5, 0.25], [0.1, 0.9])
    assert "*1" not in "\n".join(none.formulas())


# -- the formulas ------------------------------------------------------------------------------------
def test_formulas_are_the_articles_lines():
    lines = article_step().formulas()
    assert "  net_h1 = w1*i1 + w2*i2 + b1*1 = 0.15*0.05 + 0.2*0.1 + 0.35*1 = 0.3775" in lines
    assert "  dE/dout_h1 = dE_o1/dout_h1 + dE_o2/dout_h1 = 0.05539942465142279 + (-0.01904911825827811) = " \
        "0.03635030639314468" in lines  # fmt: skip
    assert "  w5_new = w5 - eta * dE/dw5 = 0.4 - 0.5 * 0.08216704056423078 = 0.3589164797178847" in lines
    # Every line's value is the article's, where the article names it.
    named = {**ARTICLE_FACTORS, **ARTICLE, **{f"dE/dw{k}": ARTICLE[f"dE_dw{k}"] for k in range(1, 9)}}
    seen = set()
    for line in lines:
        name, _, rest = line.strip().partition(" = ")
        if name in named:
            assert float(rest.rsplit(" = ", 1)[-1]) == pytest.approx(named[name], rel=1e-15, abs=1e-17), line
            seen.add(name)
    assert len(seen) >= 45


def test_formulas_arithmetic_gives_their_values():
    """The numbers written on each line, evaluated, give the line's value: the formulas say what was computed."""
    net = rustbp.Network(3, 2, 2, hidden_activation="tanh", output_activation="identity", loss="mse", seed=5)
    lines = net.explain_step([0.3, -0.2, 0.9], [0.5, -0.5]).formulas()
    checked = 0
    for line in lines:
        parts = line.strip().split(" = ")
        if len(parts) < 3:
            continue
        numbers = parts[-2]
        if not re.fullmatch(r"[-+*/().\de ]+", numbers) or re.search(r"\d \(", numbers):
            continue  # activations (e^, tanh) and implicit products are checked through the values instead
        assert eval(numbers) == pytest.approx(float(parts[-1]), rel=1e-12, abs=1e-15), line
        checked += 1
    assert checked >= 30


# -- pictures ----------------------------------------------------------------------------------------
def _svg_numbers(svg: str) -> list[float]:
    root = ET.fromstring(svg)
    text = " ".join("".join(el.itertext()) for el in root.iter("{http://www.w3.org/2000/svg}text"))
    return [float(v) for v in re.findall(r"-?\d+\.?\d*(?:e-?\d+)?", text)]


def test_the_step_picture_is_svg_with_the_articles_numbers():
    s = article_step()
    svg = s.to_svg(gradients=True)
    numbers = _svg_numbers(svg)
    wanted = [0.15, 0.55, 0.35, 0.60, *(ARTICLE[k] for k in ("net_h1", "out_h1", "net_o2", "out_o2"))]
    wanted += [
        ARTICLE_FACTORS["E_o1"],
        ARTICLE_FACTORS["E_o2"],
        ARTICLE["dE_dw5"],
        ARTICLE["w5_new"],
        ARTICLE["dE_dw1"],
    ]
    for want in wanted:
        assert any(math.isclose(n, want, rel_tol=1e-5) for n in numbers), want
    assert svg.count("+1</text>") == 2, "the two bias units"
    plain = _svg_numbers(s.to_svg())
    assert not any(math.isclose(n, ARTICLE["dE_dw5"], rel_tol=1e-5) for n in plain), "gradients only on request"
    assert s._repr_svg_().startswith("<svg") and "<table" in s._repr_html_()


def test_pictures_escape_text_and_draw_wide_networks_as_heat_maps():
    net = rustbp.Network(20, 12, 3, seed=0)
    svg = net.explain_step(np.ones(20), [0.0, 1.0, 0.0]).to_svg(gradients=True)
    root = ET.fromstring(svg)
    cells = [r for r in root.iter("{http://www.w3.org/2000/svg}rect") if r.get("stroke") is None]
    assert len(cells) == 1 + 2 * (12 * 20 + 3 * 12), "background, then every weight and gradient"
    picture = ET.fromstring(net.to_svg())
    assert "20-12-3 network" in picture.findtext("{http://www.w3.org/2000/svg}title")
    small = rustbp.Network(2, 3, 1, seed=0)
    ET.fromstring(small.to_svg())
    assert small._repr_svg_() == small.to_svg() and "&lt;" not in small.to_svg()
    assert "Network(2, 3, 1" in small._repr_html_()


def test_history_is_drawn_as_svg_and_plotted(rng):
    net = rustbp.Network(3, 4, 2, seed=0)
    X, Y = rng.random((40, 3)), rng.random((40, 2))
    history = net.fit(X, Y, epochs=12, validation_split=0.25, seed=0)
    root = ET.fromstring(history._repr_svg_())
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 2, "loss and val_loss"
    assert "<svg" in history._repr_html_()
    plt = pytest.importorskip("matplotlib.pyplot")
    fig, ax = plt.subplots()
    try:
        (line,) = ax.plot(history)  # History acts as the array of losses, also for matplotlib
        np.testing.assert_array_equal(line.get_ydata(), history.loss)
        ax2 = history.plot(ax=fig.add_subplot(2, 1, 2))
        labels = [ln.get_label() for ln in ax2.get_lines()]
        assert labels == ["loss", "val_loss"]
        np.testing.assert_array_equal(ax2.get_lines()[1].get_ydata(), history.val_loss)
    finally:
        plt.close(fig)
    assert history[:, None].shape == (12, 1) and history[np.int64(2)] == history.loss[2]


def test_history_plot_without_matplotlib_says_what_to_install(rng, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)  # import fails as if not installed
    history = rustbp.Network(2, 2, 1, seed=0).fit(rng.random((4, 2)), rng.random((4, 1)), epochs=2)
    with pytest.raises(ImportError, match=r"History\.plot needs matplotlib: pip install matplotlib"):
        history.plot()


def test_epochs_are_numbered_alike_in_logs_callbacks_and_best_epoch(rng, caplog):
    import logging

    net = rustbp.Network(3, 6, 1, optimizer=rustbp.SGD(lr=2.0), seed=0)
    X, Y = rng.random((30, 3)), rng.random((30, 1))
    seen = []
    with caplog.at_level(logging.INFO, logger="rustbp"):
        h = net.fit(X, Y, epochs=300, patience=2, validation_split=0.2, seed=0,
                    callbacks=[lambda epoch, logs: seen.append((epoch, logs["val_loss"]))])  # fmt: skip
    # Text counts from 1 (epoch 1/300), code from 0 (callbacks, best_epoch, History's arrays).
    logged = [int(m.group(1)) for r in caplog.records if (m := re.match(r"epoch (\d+)/", r.getMessage()))]
    assert logged == [e + 1 for e, _ in seen] == list(range(1, h.epochs + 1))
    assert h.stopped_early and h.best_epoch is not None
    assert seen[h.best_epoch][1] == h.val_loss[h.best_epoch] == min(v for _, v in seen)
    assert f"at epoch {h.best_epoch + 1}" in caplog.records[-1].getMessage()


# -- Network.article with other numbers ----------------------------------------------------------------
def test_article_with_other_numbers():
    same = rustbp.Network.article(lr=0.5, weights=[0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55], biases=(0.35, 0.6))
    for name, want in ARTICLE.items():
        assert same.explain_step(ARTICLE_X, ARTICLE_T)[name] == pytest.approx(want, abs=TOL, rel=0), name
    np.testing.assert_allclose(same.train(ARTICLE_X, ARTICLE_T, 10_000)[9999], ARTICLE_LOSSES[9999], atol=TOL)
    w1, w2 = np.array([[0.1, -0.2, 0.3]]), np.array([[0.5], [-0.4]])
    net = rustbp.Network.article(lr=0.1, weights={"w1": w1, "w2": w2}, biases=[0.2, -0.1])
    assert (net.n_in, net.n_hidden, net.n_out) == (3, 1, 2) and net.optimizer == rustbp.SGD(lr=0.1)
    assert "bias='shared'" in repr(net) and "train_bias=False" in repr(net)
    w = net.get_weights()
    np.testing.assert_array_equal(w["w1"], w1)
    np.testing.assert_array_equal(w["b2"], [-0.1])
    # One step by hand: sigmoid layers, half_sse, w <- w - 0.1 dE/dw.
    x, t = np.array([1.0, 2.0, 3.0]), np.array([0.3, 0.6])
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    h = sig(w1 @ x + 0.2)
    o = sig(w2 @ h - 0.1)
    d_o = (o - t) * o * (1 - o)
    d_h = (w2.T @ d_o) * h * (1 - h)
    net.train_step(x, t)
    np.testing.assert_allclose(net.get_weights()["w2"], w2 - 0.1 * np.outer(d_o, h), rtol=1e-14)
    np.testing.assert_allclose(net.get_weights()["w1"], w1 - 0.1 * np.outer(d_h, x), rtol=1e-14)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        (
            {"weights": {"w1": [[1.0]], "w3": [[1.0]]}},
            ValueError,
            "weights: expected the keys 'w1' and 'w2', got 'w1', 'w3'",
        ),
        (
            {"weights": {"w1": [[1.0, 2.0]], "w2": [[1.0, 2.0]]}},
            ValueError,
            r"weights: expected w2 of shape \(n_out, 1\)",
        ),
        (
            {"weights": {"w1": [1.0, 2.0], "w2": [[1.0]]}},
            ValueError,
            r"weights\['w1'\]: expected a non-empty 2-D array, got shape \(2,\)",
        ),
        (
            {"weights": [0.1] * 7},
            ValueError,
            "weights: expected the 8 numbers w1..w8 of the article's 2-2-2 net, got 7",
        ),
        (
            {"weights": [0.1] * 7 + [float("nan")]},
            ValueError,
            r"weights: expected finite values, found nan at position \[7\]",
        ),
        ({"weights": "0.1,0.2"}, TypeError, "weights: expected a dict of w1 and w2 or the 8 numbers w1..w8, got str"),
        ({"weights": [0.1] * 7 + ["a"]}, TypeError, "weights: expected numbers"),
        ({"biases": [0.1]}, ValueError, r"biases: expected the two numbers \(b1, b2\), got 1"),
        ({"biases": 0.5}, TypeError, r"biases: expected the two numbers \(b1, b2\), got float"),
        ({"biases": [0.1, float("inf")]}, ValueError, r"biases: expected finite values, found inf at position \[1\]"),
        ({"lr": -1.0}, ValueError, "lr"),
        ({"lr": 0.1, "device": "tpu"}, ValueError, "device: expected one of cpu, gpu, got 'tpu'"),
    ],
)
def test_article_checks_its_numbers(kwargs, error, message):
    with pytest.raises(error, match=message):
        rustbp.Network.article(**kwargs)


# -- the demo ----------------------------------------------------------------------------------------
def demo(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rustbp", "demo", *args], capture_output=True, text=True, cwd=cwd)


def test_demo_prints_the_formulas_and_marks_the_published_value():
    out = demo().stdout
    assert "  net_h1 = w1*i1 + w2*i2 + b1*1 = 0.15*0.05 + 0.2*0.1 + 0.35*1 = 0.3775" in out
    assert "  delta_o1 = dE/dout_o1 * dout_o1/dnet_o1 = 0.7413650695523157 * 0.1868156018089595 = " in out
    (line,) = [ln for ln in out.splitlines() if "step 9999" in ln]
    assert "the article publishes 0.0000351085" in line
    assert float(line.split()[2]) == pytest.approx(ARTICLE_LOSSES[9999], rel=1e-12)


def test_demo_with_other_numbers():
    result = demo("--x", "0.1,0.2,0.3", "--t", "0.9,0.1", "--weights", ",".join(["0.1"] * 5 + ["0.2"] * 5),
                  "--biases", "0.5,-0.5", "--lr", "0.25", "--steps", "20")  # fmt: skip
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "  net_h1 = w1*i1 + w2*i2 + w3*i3 + b1*1 = 0.1*0.1 + 0.1*0.2 + 0.1*0.3 + 0.5*1 = 0.56" in out
    assert "w5_new = w5 - eta * dE/dw5 = 0.1 - 0.25 * " in out
    assert "step 19" in out and "publishes" not in out
    net = rustbp.Network.article(lr=0.25, weights={"w1": [[0.1] * 3, [0.1, 0.1, 0.2]], "w2": [[0.2] * 2] * 2},
                                 biases=[0.5, -0.5])  # fmt: skip
    losses = net.train([0.1, 0.2, 0.3], [0.9, 0.1], 20)
    (line,) = [ln for ln in out.splitlines() if "step 19" in ln]
    assert float(line.split()[2]) == pytest.approx(losses[19], rel=1e-12)
    bad = demo("--x", "1,2,3")
    assert bad.returncode == 2 and "weights: expected n_hidden * (3 + 2) numbers" in bad.stderr
    assert demo("--t", "a,b").returncode == 2
    bad = demo("--t", "0.1,inf")
    assert bad.returncode == 2 and "t: expected finite numbers, got 0.1, inf" in bad.stderr


def test_demo_html_is_one_self_contained_page(tmp_path):
    page = tmp_path / "demo.html"
    result = demo("--html", str(page))
    assert result.returncode == 0, result.stderr
    text = page.read_text(encoding="utf-8")
    assert text.startswith("<!DOCTYPE html>")
    assert not re.search(r"<script|<link|<img|\bsrc=|\bhref=|url\(|@import", text), "nothing fetched"
    body = text[text.index("<body>") :]
    for svg in re.findall(r"<svg.*?</svg>", body, flags=re.S):
        ET.fromstring(svg)
    assert "0.15*0.05 + 0.2*0.1 + 0.35*1 = 0.3775" in text and "the article publishes 0.0000351085" in text
    assert "3.510187782978859e-05" in text and "0.9840642735146238" in text


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REQUIRE_BROWSER = os.environ.get("RUSTBP_REQUIRE_BROWSER") == "1"


@pytest.mark.skipif(
    not CHROMIUM and not REQUIRE_BROWSER,
    reason="chromium is not installed (apt-get install chromium); CI requires it with RUSTBP_REQUIRE_BROWSER=1",
)
def test_demo_page_renders_in_a_real_browser(tmp_path):
    assert CHROMIUM, "RUSTBP_REQUIRE_BROWSER=1 but no chromium on PATH"
    page = tmp_path / "demo.html"
    assert demo("--html", str(page)).returncode == 0
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--virtual-time-budget=3000"]
    env = {**os.environ, "HOME": str(tmp_path)}  # chromium writes its profile there, not in the real home
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", page.as_uri()], capture_output=True, text=True,
                         timeout=120, env=env, check=True).stdout  # fmt: skip
    # The DOM after rendering: the browser parsed the page and its inline SVG.
    assert "<svg" in dom and "The derivation" in dom
    for want in ("0.3775", "0.2983711087600027", "0.08216704056423078", "0.0000351085", "3.510187782978859e-05"):
        assert want in dom, want
    shot = tmp_path / "demo.png"
    subprocess.run([CHROMIUM, *flags, f"--screenshot={shot}", "--window-size=1200,1800", page.as_uri()],
                   capture_output=True, timeout=120, env=env, check=True)  # fmt: skip
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 50_000, "a picture of the page, not a blank one"


def test_explain_step_on_the_gpu_keeps_the_network_unless_asked():
    try:
        found = rustbp.gpu_devices()
    except rustbp.GpuUnavailableError as e:
        found, reason = [], str(e)
    else:
        reason = "no GPU adapter"
    if not found:
        if os.environ.get("RUSTBP_REQUIRE_GPU") == "1":
            pytest.fail(f"RUSTBP_REQUIRE_GPU=1 but {reason}")
        pytest.skip(reason)
    net = rustbp.Network.article(device="gpu")
    s = net.explain_step(ARTICLE_X, ARTICLE_T)
    for name, want in ARTICLE_FACTORS.items():
        assert abs(s[name] - want) < 1e-6, name
    assert abs(s["w5_new"] - ARTICLE["w5_new"]) < 1e-7
    np.testing.assert_array_equal(net.get_weights()["w1"], np.float32([[0.15, 0.20], [0.25, 0.30]]))
    net.explain_step(ARTICLE_X, ARTICLE_T, apply=True)
    assert abs(net.get_weights()["w1"][0, 0] - ARTICLE["w1_new"]) < 1e-7
