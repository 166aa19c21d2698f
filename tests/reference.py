"""An independent NumPy implementation of the same network and optimizers, written from the formulas
(PyTorch's documentation for SGD and Adam), for checking the Rust core through the Python API."""

from __future__ import annotations

import numpy as np

ACT = {
    "sigmoid": (lambda z: 1 / (1 + np.exp(-z)), lambda a: a * (1 - a)),
    "tanh": (np.tanh, lambda a: 1 - a * a),
    "relu": (lambda z: np.maximum(z, 0), lambda a: (a > 0).astype(a.dtype)),
    "identity": (lambda z: z, lambda a: np.ones_like(a)),
}


def softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def bias_of(b, width):
    return 0.0 if b is None else (np.broadcast_to(b, (width,)) if b.shape == (1,) else b)


def forward(w, X, hidden="sigmoid", output="sigmoid"):
    z1 = X @ w["w1"].T + bias_of(w.get("b1"), w["w1"].shape[0])
    h = ACT[hidden][0](z1)
    z2 = h @ w["w2"].T + bias_of(w.get("b2"), w["w2"].shape[0])
    o = softmax(z2) if output == "softmax" else ACT[output][0](z2)
    return z1, h, z2, o


def loss_and_grads(w, X, T, hidden="sigmoid", output="sigmoid", loss="half_sse"):
    _, h, z2, o = forward(w, X, hidden, output)
    B = X.shape[0]
    if loss == "cross_entropy":
        logp = z2 - z2.max(axis=1, keepdims=True)
        logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
        value = -(T * logp).sum() / B
        dz2 = (o * T.sum(axis=1, keepdims=True) - T) / B
    else:
        value = 0.5 * ((T - o) ** 2).sum() / B if loss == "half_sse" else ((T - o) ** 2).mean()
        dz2 = ((o - T) / B if loss == "half_sse" else 2 * (o - T) / o.size) * ACT[output][1](o)
    dz1 = (dz2 @ w["w2"]) * ACT[hidden][1](h)
    g = {"w1": dz1.T @ X, "w2": dz2.T @ h}
    for name, d in (("b1", dz1), ("b2", dz2)):
        if name in w:
            g[name] = d.sum(axis=0) if w[name].shape[0] > 1 or d.shape[1] == 1 else np.array([d.sum()])
    return value, g


class SGD:
    def __init__(self, lr, momentum=0.0, nesterov=False, weight_decay=0.0):
        self.lr, self.mu, self.nesterov, self.wd = lr, momentum, nesterov, weight_decay
        self.buf = {}

    def step(self, w, g):
        for k in g:
            d = g[k] + self.wd * w[k]
            if self.mu:
                self.buf[k] = d if k not in self.buf else self.mu * self.buf[k] + d
                d = d + self.mu * self.buf[k] if self.nesterov else self.buf[k]
            w[k] = w[k] - self.lr * d


class Adam:
    def __init__(self, lr=1e-3, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0):
        self.lr, self.b1, self.b2, self.eps, self.wd = lr, betas[0], betas[1], eps, weight_decay
        self.m, self.v, self.t = {}, {}, 0

    def step(self, w, g):
        self.t += 1
        for k in g:
            d = g[k] + self.wd * w[k]
            self.m[k] = self.b1 * self.m.get(k, 0) + (1 - self.b1) * d
            self.v[k] = self.b2 * self.v.get(k, 0) + (1 - self.b2) * d * d
            m_hat = self.m[k] / (1 - self.b1**self.t)
            v_hat = self.v[k] / (1 - self.b2**self.t)
            w[k] = w[k] - self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
