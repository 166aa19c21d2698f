"""Properties over random networks (hypothesis): analytic gradients agree with central finite
differences in float64 for every activation, loss and bias mode, and forward is deterministic."""

from __future__ import annotations

import numpy as np
import rustbp
from hypothesis import assume, given, settings
from hypothesis import strategies as st

HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUTS = [
    ("sigmoid", "half_sse"),
    ("sigmoid", "mse"),
    ("tanh", "mse"),
    ("identity", "half_sse"),
    ("relu", "half_sse"),
    ("softmax", "cross_entropy"),
    ("sigmoid", "binary_cross_entropy"),
]
widths = st.integers(1, 64)


@settings(max_examples=150, deadline=None)
@given(
    n_in=widths,
    n_hidden=widths,
    n_out=widths,
    hidden=st.sampled_from(HIDDEN),
    output_loss=st.sampled_from(OUTPUTS),
    bias=st.sampled_from(["per_neuron", "shared", "none"]),
    seed=st.integers(0, 2**32),
)
def test_gradients_match_central_differences(n_in, n_hidden, n_out, hidden, output_loss, bias, seed):
    output, loss = output_loss
    net = rustbp.Network(
        n_in,
        n_hidden,
        n_out,
        hidden_activation=hidden,
        output_activation=output,
        loss=loss,
        bias=bias,
        seed=seed % 1000,
    )
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n_in)
    t = np.eye(n_out)[rng.integers(n_out)] if loss == "cross_entropy" else rng.uniform(0.1, 0.9, n_out)
    w = net.get_weights()
    trace = net.explain_step(x, t)
    net.set_weights(w)  # explain_step also updated the weights; differentiate at the old ones
    # ReLU has a kink at 0, where a difference quotient straddling it means nothing.
    assume(hidden != "relu" or np.abs(trace["net_hidden"]).min() > 1e-4)
    assume(output != "relu" or np.abs(trace["net_output"]).min() > 1e-4)
    h = 1e-5
    for name, value in w.items():
        grad = trace[f"grad_{name}"]
        assert grad.shape == value.shape
        # Up to 12 entries per tensor: a full sweep of a 64 x 64 layer would dominate the test's time.
        flat = rng.choice(value.size, size=min(12, value.size), replace=False)
        analytic, numeric = [], []
        for i in flat:
            idx = np.unravel_index(i, value.shape)
            losses = []
            for step in (h, -h):
                probe = {k: v.copy() for k, v in w.items()}
                probe[name][idx] += step
                net.set_weights(probe)
                losses.append(net.loss(x, t))
            numeric.append((losses[0] - losses[1]) / (2 * h))
            analytic.append(grad[idx])
        a, n = np.array(analytic), np.array(numeric)
        # Relative error of the sampled gradient as a vector. The quotient's rounding error is about
        # 1e-16 * loss / h = 1e-11 * loss, so a gradient below 1e-4 * loss in norm (zero, or a saturated
        # unit) can only be checked to 1e-10 * loss in absolute terms: that is the floor of the scale.
        scale = max(np.linalg.norm(a), np.linalg.norm(n), 1e-4 * max(1.0, trace["loss"]))
        assert np.linalg.norm(a - n) / scale <= 1e-6, (name, a, n)


@settings(max_examples=25, deadline=None)
@given(
    n_in=widths,
    n_hidden=widths,
    n_out=widths,
    batch=st.integers(1, 300),
    dtype=st.sampled_from(["float64", "float32"]),
    seed=st.integers(0, 2**32),
)
def test_forward_is_deterministic_and_seeded(n_in, n_hidden, n_out, batch, dtype, seed):
    a = rustbp.Network(n_in, n_hidden, n_out, dtype=dtype, seed=seed)
    b = rustbp.Network(n_in, n_hidden, n_out, dtype=dtype, seed=seed)
    X = np.random.default_rng(seed).normal(size=(batch, n_in))
    first = a.forward(X)
    np.testing.assert_array_equal(a.forward(X), first)
    np.testing.assert_array_equal(b.forward(X), first)
    # Row by row gives the same numbers as the batch, to rounding (the kernels may block differently).
    np.testing.assert_allclose(a.forward(X[-1]), first[-1], rtol=1e-5 if dtype == "float32" else 1e-12)
