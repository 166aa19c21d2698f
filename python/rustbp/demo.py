"""``python -m rustbp demo``: the article's worked example, number by number, computed by rustbp."""

from __future__ import annotations

import numpy as np

from .network import Network

X = np.array([0.05, 0.10])
T = np.array([0.01, 0.99])


def _f(v: float) -> str:
    """16 significant digits: every digit the article prints, none of float64's last-ulp noise."""
    return f"{float(v):.16g}"


def run() -> None:
    """Prints the forward pass, the first step's gradients and update, and 10,000 steps of training."""
    net = Network.article()
    print("The article's 2-2-2 network: i1=0.05, i2=0.10 -> targets 0.01, 0.99; sigmoid, shared biases")
    print("b1=0.35, b2=0.60 (not trained), E = sum 1/2 (T - out)^2, plain SGD with eta = 0.5.\n")
    s = net.explain_step(X, T)
    print("Forward pass")
    for unit in ("h1", "h2", "o1", "o2"):
        print(f"  net_{unit} = {_f(s[f'net_{unit}']):<22}  out_{unit} = {_f(s[f'out_{unit}'])}")
    print(f"  E_total = {_f(s['E_total'])}\n")
    print("Backward pass: gradients of the first step (both layers from the weights before the update)")
    for k in range(1, 9):
        print(f"  dE/dw{k} = {_f(s[f'dE_dw{k}'])}")
    print("\nAfter one step (w <- w - eta * dE/dw)")
    for k in range(1, 9):
        print(f"  w{k} = {_f(s[f'w{k}_new'])}")
    print(f"  E_total on the next forward pass = {_f(net.loss(X, T))}\n")
    net = Network.article()
    losses = net.train(X, T, 10_000)
    print("Training 10,000 steps on the same sample: E_total in the forward pass of step i")
    for i in [*range(0, 10_000, 1000), 9999]:
        print(f"  step {i:<5} {_f(losses[i])}")
    o = net.forward(X)
    print(f"\nAfter 10,000 updates: E_total = {_f(net.loss(X, T))}")
    print(f"  out_o1 = {_f(o[0])} (target 0.01), out_o2 = {_f(o[1])} (target 0.99)")
