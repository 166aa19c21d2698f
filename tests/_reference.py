"""An independent float64 NumPy reference of the network, its losses and its optimizers, for the tests.

Written from the formulas (the article, and PyTorch's documented ``nn.Linear``, ``MSELoss``,
``CrossEntropyLoss``, ``BCELoss``, ``optim.SGD`` and ``optim.Adam``), importing nothing from rustbp, so that a wrong
implementation in the package cannot also be the reference it is checked against. Every array is
promoted to float64 whatever the network's dtype. Shapes follow ``nn.Linear``: ``w1`` (n_hidden, n_in),
``w2`` (n_out, n_hidden); a shared bias has shape (1,); an absent bias has no entry.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

Params = dict[str, np.ndarray]


def activate(name: str, z: np.ndarray) -> np.ndarray:
    if name == "sigmoid":
        # Split by sign so that exp never overflows.
        e = np.exp(-np.abs(z))
        return np.where(z >= 0, 1 / (1 + e), e / (1 + e))
    if name == "tanh":
        return np.tanh(z)
    if name == "relu":
        return np.where(z > 0, z, 0.0)
    if name == "identity":
        return z.copy()
    if name == "softmax":
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)
    raise ValueError(name)


def activation_grad(name: str, z: np.ndarray, a: np.ndarray, upstream: np.ndarray) -> np.ndarray:
    """dL/dz from dL/da, for an elementwise activation (from z where that is the textbook form)."""
    if name == "sigmoid":
        return upstream * a * (1 - a)
    if name == "tanh":
        with np.errstate(over="ignore"):  # cosh(z) = inf for |z| > 710: the derivative is then 0
            return upstream / np.cosh(z) ** 2
    if name == "relu":
        return upstream * (z > 0)
    if name == "identity":
        return upstream
    raise ValueError(name)


def forward(w: Params, X: np.ndarray, hidden: str, output: str) -> dict[str, np.ndarray]:
    X = np.asarray(X, dtype=np.float64)
    z1 = X @ w["w1"].T + w.get("b1", 0.0)
    h = activate(hidden, z1)
    z2 = h @ w["w2"].T + w.get("b2", 0.0)
    return {"x": X, "z1": z1, "h": h, "z2": z2, "o": activate(output, z2)}


def loss_and_grads(
    w: Params, X: np.ndarray, T: np.ndarray, hidden: str, output: str, loss: str
) -> tuple[float, Params]:
    """The batch loss and dL/dparam for every parameter in ``w``."""
    f = forward(w, X, hidden, output)
    T = np.asarray(T, dtype=np.float64)
    o, B = f["o"], len(T)
    if loss == "cross_entropy":
        z = f["z2"] - f["z2"].max(axis=1, keepdims=True)
        log_p = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        value = -(T * log_p).sum() / B
        # log-softmax's backward: dL/dz = g - softmax(z) sum(g), with g = dL/dlog_p = -T / B.
        g = -T / B
        dz2 = g - o * g.sum(axis=1, keepdims=True)
    elif loss == "binary_cross_entropy":
        # BCELoss on o = sigmoid(z) through log-sigmoid, ln o = -ln(1 + e^-z), ln(1 - o) = -ln(1 + e^z),
        # the mean over every element; its gradient through the sigmoid is (o - T) / (B n_out).
        log_o, log_1mo = -np.logaddexp(0, -f["z2"]), -np.logaddexp(0, f["z2"])
        value = -(T * log_o + (1 - T) * log_1mo).mean()
        do = -(T / o - (1 - T) / (1 - o)) / o.size
        dz2 = do * o * (1 - o)
    else:
        if loss == "half_sse":
            value, do = 0.5 * ((o - T) ** 2).sum() / B, (o - T) / B
        elif loss == "mse":
            value, do = ((o - T) ** 2).mean(), 2 * (o - T) / o.size
        else:
            raise ValueError(loss)
        dz2 = activation_grad(output, f["z2"], o, do)
    dz1 = activation_grad(hidden, f["z1"], f["h"], dz2 @ w["w2"])
    grads = {"w1": dz1.T @ f["x"], "w2": dz2.T @ f["h"]}
    for name, dz in (("b1", dz1), ("b2", dz2)):
        if name in w:  # a bias shared by the layer receives the whole layer's gradient
            grads[name] = dz.sum(axis=0) if w[name].size == dz.shape[1] else np.full(w[name].shape, dz.sum())
    return float(value), grads


@dataclass
class Sgd:
    """``torch.optim.SGD``: d = g + wd p; b = mu b + d (b = d at first); d = d + mu b (Nesterov) or b."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0
    buf: Params = field(default_factory=dict)

    def step(self, w: Params, grads: Params) -> None:
        for k, g in grads.items():
            d = g + self.weight_decay * w[k]
            if self.momentum:
                self.buf[k] = d if k not in self.buf else self.momentum * self.buf[k] + d
                d = d + self.momentum * self.buf[k] if self.nesterov else self.buf[k]
            w[k] = w[k] - self.lr * d


@dataclass
class Adam:
    """``torch.optim.Adam`` (L2 weight decay in the gradient, bias-corrected moments)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    m: Params = field(default_factory=dict)
    v: Params = field(default_factory=dict)
    t: int = 0

    def step(self, w: Params, grads: Params) -> None:
        self.t += 1
        b1, b2 = self.betas
        for k, g in grads.items():
            d = g + self.weight_decay * w[k]
            self.m[k] = b1 * self.m.get(k, 0.0) + (1 - b1) * d
            self.v[k] = b2 * self.v.get(k, 0.0) + (1 - b2) * d * d
            m_hat, v_hat = self.m[k] / (1 - b1**self.t), self.v[k] / (1 - b2**self.t)
            w[k] = w[k] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class Reference:
    """A network to train in float64 beside a rustbp one, from that network's weights and settings."""

    def __init__(self, weights: dict[str, Any], config: Any) -> None:
        self.w: Params = {k: np.array(v, dtype=np.float64) for k, v in weights.items()}
        self.hidden, self.output, self.loss_name = config.hidden_activation, config.output_activation, config.loss
        self.train_bias = config.train_bias
        opt = config.optimizer
        if type(opt).__name__ == "Adam":
            self.optimizer: Sgd | Adam = Adam(opt.lr, tuple(opt.betas), opt.eps, opt.weight_decay)
        else:
            self.optimizer = Sgd(opt.lr, opt.momentum, opt.nesterov, opt.weight_decay)

    def forward(self, X: np.ndarray) -> np.ndarray:
        return forward(self.w, X, self.hidden, self.output)["o"]

    def loss(self, X: np.ndarray, T: np.ndarray) -> float:
        return loss_and_grads(self.w, X, T, self.hidden, self.output, self.loss_name)[0]

    def train_step(self, X: np.ndarray, T: np.ndarray) -> float:
        """One update; the loss before it."""
        value, grads = loss_and_grads(self.w, X, T, self.hidden, self.output, self.loss_name)
        if not self.train_bias:
            grads = {k: g for k, g in grads.items() if k in ("w1", "w2")}
        self.optimizer.step(self.w, grads)
        return value


def assert_close(got: dict[str, np.ndarray], want: dict[str, np.ndarray], rtol: float, what: str = "") -> None:
    """Each tensor within ``rtol`` of the reference, relative to that tensor's largest magnitude (sums in a
    different order differ by rounding relative to the terms' size, not to a result that cancels)."""
    assert got.keys() == want.keys(), f"{what}: {sorted(got)} vs {sorted(want)}"
    for k in want:
        assert got[k].shape == want[k].shape, f"{what} {k}: shape {got[k].shape} vs {want[k].shape}"
        scale = max(float(np.abs(want[k]).max()), 1e-300)
        err = float(np.abs(got[k].astype(np.float64) - want[k]).max()) / scale
        assert err <= rtol, f"{what} {k}: relative error {err:.3g} > {rtol:g}"
