"""The network and optimizers in vectorised NumPy, written from the formulas (PyTorch's documentation for
SGD and Adam), independently of the Rust core: the tests check rustbp against it, the benchmark times it.

Shapes follow ``torch.nn.Linear``: ``w1`` (n_hidden, n_in), ``w2`` (n_out, n_hidden); a bias is one
value per neuron, shape (1,) when shared by the layer, or absent. Every function keeps the dtype of its
inputs, so float32 arrays train in float32.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import numpy.typing as npt

__all__ = ["ACT", "SGD", "Adam", "NumpyNet", "bias_of", "forward", "loss_and_grads", "softmax"]

Array = npt.NDArray[np.floating[Any]]
Params = dict[str, Array]


def _sigmoid(z: Array) -> Array:
    return 1 / (1 + np.exp(-z))


#: Each activation and its derivative written in terms of the activation's output.
ACT: dict[str, tuple[Callable[[Array], Array], Callable[[Array], Array]]] = {
    "sigmoid": (_sigmoid, lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, np.ones_like),
}


def softmax(z: Array) -> Array:
    """Row-wise softmax, shifted by the row maximum."""
    e = np.exp(z - z.max(axis=1, keepdims=True))
    out: Array = e / e.sum(axis=1, keepdims=True)
    return out


def bias_of(b: Array | None, width: int) -> Array | float:
    """A layer's bias broadcast to its width: per-neuron as is, shared (1,) repeated, absent as 0."""
    if b is None:
        return 0.0
    return np.broadcast_to(b, (width,)) if b.shape == (1,) else b


def forward(w: Params, X: Array, hidden: str = "sigmoid", output: str = "sigmoid") -> tuple[Array, ...]:
    """z1, h, z2 and the output o for a batch X (B, n_in)."""
    z1 = X @ w["w1"].T + bias_of(w.get("b1"), w["w1"].shape[0])
    h = ACT[hidden][0](z1)
    z2 = h @ w["w2"].T + bias_of(w.get("b2"), w["w2"].shape[0])
    o = softmax(z2) if output == "softmax" else ACT[output][0](z2)
    return z1, h, z2, o


def loss_and_grads(
    w: Params, X: Array, T: Array, hidden: str = "sigmoid", output: str = "sigmoid", loss: str = "half_sse"
) -> tuple[float, Params]:
    """The loss of the batch (X, T) and its gradient for every parameter in ``w``.

    half_sse is 1/2 sum (t - o)^2 per sample averaged over the batch, mse the mean over every element
    (``MSELoss``), cross_entropy softmax with the mean negative log-likelihood (targets are rows of
    probabilities), binary_cross_entropy sigmoid with ``BCELoss``'s mean over every element."""
    _, h, z2, o = forward(w, X, hidden, output)
    B = X.shape[0]
    if loss == "cross_entropy":
        logp = z2 - z2.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        value = -(T * logp).sum() / B
        dz2 = (o * T.sum(axis=1, keepdims=True) - T) / B
    elif loss == "binary_cross_entropy":
        value = (np.logaddexp(0, z2) - z2 * T).mean()  # ln(1 + e^z) - z t
        dz2 = (o - T) / o.size
    else:
        value = 0.5 * ((T - o) ** 2).sum() / B if loss == "half_sse" else ((T - o) ** 2).mean()
        dz2 = ((o - T) / B if loss == "half_sse" else 2 * (o - T) / o.size) * ACT[output][1](o)
    dz1 = (dz2 @ w["w2"]) * ACT[hidden][1](h)
    g = {"w1": dz1.T @ X, "w2": dz2.T @ h}
    for name, d in (("b1", dz1), ("b2", dz2)):
        if name in w:
            shared = w[name].shape[0] == 1 and d.shape[1] > 1
            g[name] = np.array([d.sum()], dtype=d.dtype) if shared else d.sum(axis=0)
    return float(value), g


class SGD:
    """``torch.optim.SGD``: L2 weight decay added to the gradient, momentum without dampening, Nesterov."""

    def __init__(self, lr: float, momentum: float = 0.0, nesterov: bool = False, weight_decay: float = 0.0):
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.buf: Params = {}

    def step(self, w: Params, g: Params) -> None:
        for k in g:
            d = g[k] + self.wd * w[k] if self.wd else g[k]
            if self.mu:
                self.buf[k] = d if k not in self.buf else self.mu * self.buf[k] + d
                d = d + self.mu * self.buf[k] if self.nesterov else self.buf[k]
            w[k] = w[k] - self.lr * d


class Adam:
    """``torch.optim.Adam`` with bias correction; weight decay is L2 added to the gradient."""

    def __init__(
        self,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.m: Params = {}
        self.v: Params = {}
        self.t = 0

    def step(self, w: Params, g: Params) -> None:
        self.t += 1
        for k in g:
            d = g[k] + self.wd * w[k] if self.wd else g[k]
            self.m[k] = self.b1 * self.m.get(k, 0) + (1 - self.b1) * d
            self.v[k] = self.b2 * self.v.get(k, 0) + (1 - self.b2) * d * d
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            w[k] = w[k] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class NumpyNet:
    """A trainable network: parameters ``w`` (copied to ``dtype``), activations, loss and an optimizer."""

    def __init__(
        self,
        w: Params,
        *,
        hidden: str = "sigmoid",
        output: str = "sigmoid",
        loss: str = "half_sse",
        train_bias: bool = True,
        optimizer: SGD | Adam,
        dtype: str = "float64",
    ) -> None:
        self.w: Params = {k: np.array(v, dtype=dtype) for k, v in w.items()}
        self.hidden, self.output, self.loss_name = hidden, output, loss
        self.train_bias, self.optimizer = train_bias, optimizer

    def __repr__(self) -> str:
        n_hidden, n_in = self.w["w1"].shape
        return f"NumpyNet({n_in}, {n_hidden}, {self.w['w2'].shape[0]}, dtype={self.w['w1'].dtype})"

    def step(self, X: Array, T: Array) -> float:
        """One update on the batch; returns the loss before it."""
        value, g = loss_and_grads(self.w, X, T, self.hidden, self.output, self.loss_name)
        if not self.train_bias:
            g.pop("b1", None)
            g.pop("b2", None)
        self.optimizer.step(self.w, g)
        return value

    def forward(self, X: Array) -> Array:
        return forward(self.w, X, self.hidden, self.output)[3]
