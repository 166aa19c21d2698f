"""The network in the article's style: one object per neuron, plain Python floats and loops, no NumPy.

Each neuron keeps its incoming weights, its net input and output, its delta (dE/dnet) and the gradient
of its weights; a layer keeps its neurons and its biases (one per neuron, one shared by the layer, or
none). Sigmoid activations, half_sse or mse loss, and SGD with momentum like ``torch.optim.SGD``: what
the article's experiments need. This is what the speed comparison calls "pure Python".
"""

from __future__ import annotations

import math
from collections.abc import Sequence

__all__ = ["Layer", "Neuron", "PurePythonNet", "UnrolledArticleNet"]


def sigmoid(z: float) -> float:
    return 1.0 / (1.0 + math.exp(-z))


class Neuron:
    """One neuron: incoming weights, and what the last forward and backward pass left in it."""

    __slots__ = ("delta", "grads", "net", "out", "velocity", "weights")

    def __init__(self, weights: Sequence[float]) -> None:
        self.weights = [float(v) for v in weights]
        self.grads = [0.0] * len(self.weights)
        self.velocity = [0.0] * len(self.weights)
        self.net = self.out = self.delta = 0.0

    def __repr__(self) -> str:
        return f"Neuron(weights={self.weights}, out={self.out})"

    def feed(self, inputs: Sequence[float], bias: float) -> float:
        """net = sum_i w_i x_i + b, out = sigmoid(net)."""
        net = bias
        for w, x in zip(self.weights, inputs):
            net += w * x
        self.net = net
        self.out = sigmoid(net)
        return self.out


class Layer:
    """Neurons with their biases: ``bias`` has one value per neuron, one shared value, or none."""

    def __init__(self, weights: Sequence[Sequence[float]], bias: Sequence[float]) -> None:
        self.neurons = [Neuron(row) for row in weights]
        self.bias = [float(b) for b in bias]
        self.bias_grads = [0.0] * len(self.bias)
        self.bias_velocity = [0.0] * len(self.bias)

    def __repr__(self) -> str:
        return f"Layer({len(self.neurons)} neurons, bias={self.bias})"

    def bias_for(self, j: int) -> float:
        return 0.0 if not self.bias else self.bias[j if len(self.bias) > 1 else 0]

    def feed(self, inputs: Sequence[float]) -> list[float]:
        return [n.feed(inputs, self.bias_for(j)) for j, n in enumerate(self.neurons)]

    def accumulate(self, inputs: Sequence[float]) -> None:
        """Adds this sample's gradients, from each neuron's delta and the layer's inputs."""
        per_neuron = len(self.bias) > 1
        for j, n in enumerate(self.neurons):
            d, grads = n.delta, n.grads
            for i, x in enumerate(inputs):
                grads[i] += d * x
            if self.bias:
                self.bias_grads[j if per_neuron else 0] += d

    def update(self, lr: float, momentum: float, scale: float, train_bias: bool) -> None:
        """SGD like ``torch.optim.SGD``: v = momentum v + g; w -= lr v. Resets the gradients."""
        for n in self.neurons:
            weights, grads, velocity = n.weights, n.grads, n.velocity
            for i, g in enumerate(grads):
                v = momentum * velocity[i] + g * scale
                velocity[i] = v
                weights[i] -= lr * v
                grads[i] = 0.0
        for j, g in enumerate(self.bias_grads):
            if train_bias:
                v = momentum * self.bias_velocity[j] + g * scale
                self.bias_velocity[j] = v
                self.bias[j] -= lr * v
            self.bias_grads[j] = 0.0


class PurePythonNet:
    """A 3-layer sigmoid network of neuron objects, trained one sample at a time within a batch."""

    def __init__(
        self,
        w1: Sequence[Sequence[float]],
        b1: Sequence[float],
        w2: Sequence[Sequence[float]],
        b2: Sequence[float],
        *,
        loss: str = "half_sse",
        train_bias: bool = True,
        lr: float = 0.5,
        momentum: float = 0.0,
    ) -> None:
        if loss not in ("half_sse", "mse"):
            raise ValueError(f"loss: expected half_sse or mse, got {loss!r}")
        self.hidden = Layer(w1, b1)
        self.output = Layer(w2, b2)
        self.loss_name, self.train_bias, self.lr, self.momentum = loss, train_bias, lr, momentum

    def __repr__(self) -> str:
        n_in = len(self.hidden.neurons[0].weights)
        widths = f"{n_in}, {len(self.hidden.neurons)}, {len(self.output.neurons)}"
        return f"PurePythonNet({widths}, loss={self.loss_name!r})"

    def forward(self, x: Sequence[float]) -> list[float]:
        return self.output.feed(self.hidden.feed(x))

    def step(self, X: Sequence[Sequence[float]], T: Sequence[Sequence[float]]) -> float:
        """One update on a batch of samples; returns the batch's loss before the update."""
        hidden, output = self.hidden.neurons, self.output.neurons
        # Each neuron's bias for this step (per neuron, shared by the layer, or 0).
        hb = [self.hidden.bias_for(j) for j in range(len(hidden))]
        ob = [self.output.bias_for(k) for k in range(len(output))]
        # dE/dout per sample: (o - t) for half_sse, 2 (o - t) / n_out for mse (then averaged over the batch).
        n_out = len(output)
        per_sample, k = (0.5, 1.0) if self.loss_name == "half_sse" else (1.0 / n_out, 2.0 / n_out)
        exp, total = math.exp, 0.0
        for x, t in zip(X, T):
            h = []
            for n, b in zip(hidden, hb):
                net = b
                for w, xi in zip(n.weights, x):
                    net += w * xi
                n.net, n.out = net, 1.0 / (1.0 + exp(-net))
                h.append(n.out)
            for n, b, target in zip(output, ob, t):
                net = b
                for w, hj in zip(n.weights, h):
                    net += w * hj
                o = 1.0 / (1.0 + exp(-net))
                n.net, n.out = net, o
                total += per_sample * (target - o) ** 2
                n.delta = k * (o - target) * o * (1.0 - o)
            for j, n in enumerate(hidden):
                back = 0.0
                for m in output:
                    back += m.delta * m.weights[j]
                n.delta = back * n.out * (1.0 - n.out)
            self.output.accumulate(h)
            self.hidden.accumulate(x)
        scale = 1.0 / len(X)
        self.output.update(self.lr, self.momentum, scale, self.train_bias)
        self.hidden.update(self.lr, self.momentum, scale, self.train_bias)
        return total * scale


class UnrolledArticleNet:
    """The article's 2-2-2 network as one hand-unrolled function of eight weights: the fastest plain
    Python there is for it (shared biases not trained, half_sse, plain SGD), as a second yardstick."""

    def __init__(self, w: Sequence[float], b1: float, b2: float, lr: float = 0.5) -> None:
        self.w, self.b1, self.b2, self.lr = [float(v) for v in w], float(b1), float(b2), lr

    def __repr__(self) -> str:
        return f"UnrolledArticleNet(w={self.w}, b1={self.b1}, b2={self.b2})"

    def step(self, x: Sequence[float], t: Sequence[float]) -> float:
        w, b1, b2, lr, e = self.w, self.b1, self.b2, self.lr, math.exp
        x1, x2, t1, t2 = x[0], x[1], t[0], t[1]
        h1 = 1.0 / (1.0 + e(-(w[0] * x1 + w[1] * x2 + b1)))
        h2 = 1.0 / (1.0 + e(-(w[2] * x1 + w[3] * x2 + b1)))
        o1 = 1.0 / (1.0 + e(-(w[4] * h1 + w[5] * h2 + b2)))
        o2 = 1.0 / (1.0 + e(-(w[6] * h1 + w[7] * h2 + b2)))
        d1 = (o1 - t1) * o1 * (1.0 - o1)
        d2 = (o2 - t2) * o2 * (1.0 - o2)
        dh1 = (d1 * w[4] + d2 * w[6]) * h1 * (1.0 - h1)
        dh2 = (d1 * w[5] + d2 * w[7]) * h2 * (1.0 - h2)
        w[4] -= lr * d1 * h1
        w[5] -= lr * d1 * h2
        w[6] -= lr * d2 * h1
        w[7] -= lr * d2 * h2
        w[0] -= lr * dh1 * x1
        w[1] -= lr * dh1 * x2
        w[2] -= lr * dh2 * x1
        w[3] -= lr * dh2 * x2
        return 0.5 * ((t1 - o1) ** 2 + (t2 - o2) ** 2)
