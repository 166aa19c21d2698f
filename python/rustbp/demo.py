"""``rustbp demo``: the article's worked example, number by number, computed by rustbp; with other numbers
(``--x``, ``--t``, ``--weights``, ``--biases``, ``--lr``, ``--steps``) the same derivation for them, and with
``--html PATH`` one self-contained page of it (picture, formulas, loss curve, final outputs)."""

from __future__ import annotations

import argparse
import html
import os
from dataclasses import dataclass

import numpy as np

from ._svg import curve_svg
from .explain import Step
from .network import Network

X = (0.05, 0.10)
T = (0.01, 0.99)
WEIGHTS = (0.15, 0.20, 0.25, 0.30, 0.40, 0.45, 0.50, 0.55)
BIASES = (0.35, 0.60)
LR = 0.5
STEPS = 10_000
#: The loss the article prints at step 9999 of its run, to compare with rustbp's.
PUBLISHED = {9999: "0.0000351085"}


def _f(v: float) -> str:
    """16 significant digits: every digit the article prints, none of float64's last-ulp noise."""
    return f"{float(v):.16g}"


def _floats(text: str) -> tuple[float, ...]:
    """argparse type: comma-separated numbers."""
    try:
        values = tuple(float(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated numbers, got {text!r}") from None
    if not values:
        raise argparse.ArgumentTypeError("expected at least one number")
    return values


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo's options; every default is the article's."""
    parser.add_argument("--x", type=_floats, default=X, help="the inputs i1,i2,... (default 0.05,0.10)")
    parser.add_argument("--t", type=_floats, default=T, help="the targets T1,T2,... (default 0.01,0.99)")
    parser.add_argument(
        "--weights",
        type=_floats,
        default=WEIGHTS,
        help="w1,w2,...: input->hidden row by row (w1[j,i]), then hidden->output (default the article's 0.15..0.55)",
    )
    parser.add_argument("--biases", type=_floats, default=BIASES, help="b1,b2, not trained (default 0.35,0.60)")
    parser.add_argument("--lr", type=float, default=LR, help="the learning rate eta (default 0.5)")
    parser.add_argument("--steps", type=int, default=STEPS, help="training steps on the sample (default 10000)")
    parser.add_argument("--html", metavar="PATH", help="also write the whole walk-through as one HTML page")


@dataclass
class Example:
    """The numbers of one worked example."""

    x: tuple[float, ...] = X
    t: tuple[float, ...] = T
    weights: tuple[float, ...] = WEIGHTS
    biases: tuple[float, ...] = BIASES
    lr: float = LR
    steps: int = STEPS

    @property
    def is_article(self) -> bool:
        return (self.x, self.t, self.weights, self.biases, self.lr) == (X, T, WEIGHTS, BIASES, LR)

    def network(self) -> Network:
        """A fresh network with these numbers (widths from the lengths of x, t and the weights)."""
        n_in, n_out, n = len(self.x), len(self.t), len(self.weights)
        if n % (n_in + n_out):
            raise ValueError(
                f"weights: expected n_hidden * ({n_in} + {n_out}) numbers for {n_in} inputs and {n_out} targets, "
                f"got {n}"
            )
        n_h = n // (n_in + n_out)
        w = np.array(self.weights, dtype=np.float64)
        weights = {"w1": w[: n_h * n_in].reshape(n_h, n_in), "w2": w[n_h * n_in :].reshape(n_out, n_h)}
        return Network.article(lr=self.lr, weights=weights, biases=self.biases)

    def logged_steps(self) -> list[int]:
        """The steps whose loss is shown: every tenth of the run (every 1000 for the article's), and the last."""
        every = max(1, self.steps // 10)
        return sorted({*range(0, self.steps, every), self.steps - 1})


@dataclass
class Walkthrough:
    """Everything the demo shows, computed once."""

    example: Example
    step: Step
    loss_after_one: float
    losses: np.ndarray
    outputs: np.ndarray
    final_loss: float


def compute(example: Example) -> Walkthrough:
    if example.steps < 1:
        raise ValueError(f"steps: expected a positive integer, got {example.steps}")
    for name, values in (("x", example.x), ("t", example.t)):
        if not np.isfinite(values).all():
            raise ValueError(f"{name}: expected finite numbers, got {', '.join(map(str, values))}")
    net = example.network()
    x, t = np.array(example.x), np.array(example.t)
    step = net.explain_step(x, t, apply=True)
    loss_after_one = net.loss(x, t)
    net = example.network()
    losses = net.train(x, t, example.steps)
    return Walkthrough(example, step, loss_after_one, losses, net.forward(x), net.loss(x, t))


def _describe(e: Example) -> str:
    if e.is_article:
        return (
            "The article's 2-2-2 network: i1=0.05, i2=0.10 -> targets 0.01, 0.99; sigmoid, shared biases\n"
            "b1=0.35, b2=0.60 (not trained), E = sum 1/2 (T - out)^2, plain SGD with eta = 0.5."
        )
    n_h = len(e.weights) // (len(e.x) + len(e.t))
    return (
        f"A {len(e.x)}-{n_h}-{len(e.t)} network like the article's (sigmoid, shared biases not trained, "
        f"E = sum 1/2 (T - out)^2, plain SGD)\nwith x = {list(e.x)}, T = {list(e.t)}, "
        f"weights {list(e.weights)}, biases {list(e.biases)}, eta = {e.lr}."
    )


def _loss_line(w: Walkthrough, i: int) -> str:
    line = f"step {i:<5} {_f(w.losses[i])}"
    if w.example.is_article and i in PUBLISHED:
        line += f"   (the article publishes {PUBLISHED[i]})"
    return line


def run(example: Example | None = None, html_path: str | os.PathLike[str] | None = None) -> None:
    """Prints the derivation of the first step, the loss over training and the final outputs."""
    w = compute(example or Example())
    e = w.example
    print(_describe(e) + "\n")
    for line in w.step.formulas():
        print(line)
    print(f"  E_total on the next forward pass = {_f(w.loss_after_one)}\n")
    print(f"Training {e.steps:,} steps on the same sample: E_total in the forward pass of step i")
    for i in e.logged_steps():
        print("  " + _loss_line(w, i))
    print(f"\nAfter {e.steps:,} updates: E_total = {_f(w.final_loss)}")
    print("  " + ", ".join(f"out_o{k + 1} = {_f(o)} (target {_f(t)})" for k, (o, t) in enumerate(zip(w.outputs, e.t))))
    if html_path is not None:
        with open(html_path, "w", encoding="utf-8") as f:
            f.write(page(w))
        print(f"\nWrote {os.fspath(html_path)}")


CSS = """
body { font-family: Helvetica, Arial, sans-serif; max-width: 1100px; margin: 2em auto; color: #222; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; margin-top: 1.6em; }
pre { background: #f6f6f6; padding: 0.8em; overflow-x: auto; font-size: 13px; line-height: 1.45; }
table { border-collapse: collapse; } td, th { padding: 2px 10px; border-bottom: 1px solid #e4e4e4; }
.published { color: #a33; }
"""


def page(w: Walkthrough) -> str:
    """One self-contained HTML page (inline CSS and SVG, no scripts, nothing fetched)."""
    e, esc = w.example, html.escape
    formulas = "\n".join([*w.step.formulas(), f"  E_total on the next forward pass = {_f(w.loss_after_one)}"])
    rows = "".join(
        f"<tr><td>step {i}</td><td>{_f(w.losses[i])}</td><td class='published'>"
        f"{esc('the article publishes ' + PUBLISHED[i]) if e.is_article and i in PUBLISHED else ''}</td></tr>"
        for i in e.logged_steps()
    )
    outputs = "".join(
        f"<tr><td>out_o{k + 1}</td><td>{_f(o)}</td><td>target {_f(t)}</td></tr>"
        for k, (o, t) in enumerate(zip(w.outputs, e.t))
    )
    curve = curve_svg({"E_total": w.losses}, "training step", title="E_total over training")
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>rustbp: backpropagation, step by step</title>
<style>{CSS}</style></head><body>
<h1>Backpropagation, step by step</h1>
<p>{esc(_describe(e))}</p>
<h2>The network and its first training step</h2>
{w.step.to_svg(gradients=True)}
<p>Each edge: its weight, then dE/dw and the weight after the step. Each neuron: its net input and output.</p>
<h2>The derivation</h2>
<pre>{esc(formulas)}</pre>
<h2>Training {e.steps:,} steps on the same sample</h2>
{curve}
<table><tr><th>step</th><th>E_total</th><th></th></tr>{rows}</table>
<h2>After {e.steps:,} updates</h2>
<table><tr><td>E_total</td><td>{_f(w.final_loss)}</td><td></td></tr>{outputs}</table>
</body></html>
"""


def main(args: argparse.Namespace) -> int:
    example = Example(
        x=tuple(args.x), t=tuple(args.t), weights=tuple(args.weights), biases=tuple(args.biases),
        lr=args.lr, steps=args.steps,
    )  # fmt: skip
    run(example, args.html)
    return 0
