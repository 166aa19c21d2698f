"""The article's 2-2-2 network with other numbers (``Network.article(lr=, weights=, biases=)``), and
the article's names (net_h1, dE_dw5, w5_new...) for an explained step of a 2-2-2 network."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np


def article_weights(weights: object) -> tuple[np.ndarray, np.ndarray]:
    """``Network.article``'s weights: None (the article's), w1..w8 in the article's order, or a dict."""
    if weights is None:
        return np.array([[0.15, 0.20], [0.25, 0.30]]), np.array([[0.40, 0.45], [0.50, 0.55]])
    if isinstance(weights, Mapping):
        if set(weights) != {"w1", "w2"}:
            keys = ", ".join(sorted(map(repr, weights)))
            raise ValueError(f"weights: expected the keys 'w1' and 'w2', got {keys or 'none'}")
        w1 = _finite(weights["w1"], "weights['w1']", 2)
        w2 = _finite(weights["w2"], "weights['w2']", 2)
        if w2.shape[1] != w1.shape[0]:
            raise ValueError(
                f"weights: expected w2 of shape (n_out, {w1.shape[0]}) after w1 of shape {w1.shape}, got {w2.shape}"
            )
        return w1, w2
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)):
        raise TypeError(f"weights: expected a dict of w1 and w2 or the 8 numbers w1..w8, got {type(weights).__name__}")
    flat = _finite(weights, "weights", 1)
    if flat.size != 8:
        raise ValueError(f"weights: expected the 8 numbers w1..w8 of the article's 2-2-2 net, got {flat.size}")
    return flat[:4].reshape(2, 2), flat[4:].reshape(2, 2)


def article_biases(biases: object) -> np.ndarray:
    if biases is None:
        return np.array([0.35, 0.60])
    if isinstance(biases, (str, bytes)) or not isinstance(biases, (Sequence, np.ndarray)):
        raise TypeError(f"biases: expected the two numbers (b1, b2), got {type(biases).__name__}")
    b = _finite(biases, "biases", 1)
    if b.size != 2:
        raise ValueError(f"biases: expected the two numbers (b1, b2), got {b.size}")
    return b


def _finite(value: object, name: str, ndim: int) -> np.ndarray:
    """``value`` as a non-empty float64 array of ``ndim`` dimensions and finite numbers."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected numbers ({e})") from None
    if a.ndim != ndim or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"{name}: expected finite values, found {a[bad]} at position {list(bad)}")
    return a


def article_names(s: dict[str, Any]) -> dict[str, float]:
    """The article's names for a 2-2-2 network: w1..w4 are w1[0,0], w1[0,1], w1[1,0], w1[1,1] (w1[j,i]
    joins input i to hidden neuron j: w2 is i2 -> h1), w5..w8 the same entries of w2 (w2[k,j] joins hidden
    j to output k: w6 is h2 -> o1, w7 is h1 -> o2). ``_svg.weight_names`` numbers any width alike."""
    names: dict[str, float] = {"E_total": float(s["loss"])}
    for layer, unit in (("hidden", "h"), ("output", "o")):
        for j in range(2):
            names[f"net_{unit}{j + 1}"] = float(s[f"net_{layer}"][j])
            names[f"out_{unit}{j + 1}"] = float(s[f"out_{layer}"][j])
            names[f"delta_{unit}{j + 1}"] = float(s[f"delta_{layer}"][j])
    for first, key in ((1, "w1"), (5, "w2")):
        for k, (grad, new) in enumerate(zip(s[f"grad_{key}"].ravel(), s[f"{key}_after"].ravel())):
            names[f"dE_dw{first + k}"] = float(grad)
            names[f"w{first + k}_new"] = float(new)
    return names
