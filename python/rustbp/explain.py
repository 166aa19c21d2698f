"""``Step``: one training step of one sample, explained factor by factor as the article derives it.

For one sample ``x`` (n_in,) and target ``t`` (n_out,), with weights ``w1`` (n_hidden, n_in) and ``w2``
(n_out, n_hidden) from before the step::

    net_h = w1 x + b1      out_h = f(net_h)      net_o = w2 out_h + b2      out_o = g(net_o)
    E = sum_k E_ok         dE/dw2[k,j] = dE/dout_ok * dout_ok/dnet_ok * dnet_ok/dw2[k,j]   (dnet_ok/dw = out_hj)
    dE/dout_hj = sum_k dE_ok/dout_hj = sum_k delta_ok * w2[k,j]
    dE/dw1[j,i] = dE/dout_hj * dout_hj/dnet_hj * dnet_hj/dw1[j,i]                          (dnet_hj/dw = x_i)

The core's trace gives the net and out values, the deltas (dE/dnet), gradients and new weights; every
factor above is computed here in NumPy from those, so that a learner sees each one and the tests can
check that the core's numbers are their products. The article numbers the weights row by row: w1..w4
are ``w1[0,0], w1[0,1], w1[1,0], w1[1,1]`` (input i -> hidden h), w5..w8 the same entries of ``w2``
(hidden -> output); any width is numbered the same way (``w2`` continues after ``w1``).

Its pictures are drawn by ``_svg``.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

from ._svg import network_svg, num, weight_names
from .optim import SGD

__all__ = ["Step"]

F64 = npt.NDArray[np.float64]

ACTIVATION_FORMULA = {
    "sigmoid": ("1/(1 + e^-{net})", "{out} (1 - {out})"),
    "tanh": ("tanh({net})", "1 - {out}^2"),
    "relu": ("max(0, {net})", "1 if {net} > 0 else 0"),
    "identity": ("{net}", "1"),
}


def _arg(v: float, digits: int = 16) -> str:
    """A number as an operand: negatives in parentheses, as the article writes them."""
    s = num(v, digits)
    return f"({s})" if s.startswith("-") else s


def _derivative(activation: str, net: F64, out: F64) -> F64:
    """dout/dnet of an elementwise activation, from its net input and output."""
    if activation == "sigmoid":
        return out * (1 - out)
    if activation == "tanh":
        return 1 - out**2
    if activation == "relu":
        return (net > 0).astype(np.float64)
    if activation == "identity":
        return np.ones_like(net)
    raise ValueError(f"activation: expected sigmoid, tanh, relu or identity, got {activation!r}")


def _loss_terms(loss: str, net: F64, out: F64, t: F64) -> tuple[F64, F64]:
    """Each output's share E_ok of the loss (they sum to E_total) and dE/dout_ok."""
    n_out = out.size
    if loss == "binary_cross_entropy":
        # From the net input, as the core computes it: finite where out rounds to 0 or 1.
        e = np.maximum(net, 0) - net * t + np.log1p(np.exp(-np.abs(net)))
        return e / n_out, (out - t) / (out * (1 - out)) / n_out
    if loss == "half_sse":
        return 0.5 * (t - out) ** 2, out - t
    if loss == "mse":
        return (t - out) ** 2 / n_out, 2 * (out - t) / n_out
    if loss == "cross_entropy":
        # A zero target contributes nothing, whatever its output (0 * log 0 is 0 here).
        safe = np.where(t != 0, out, 1.0)
        return np.where(t != 0, -t * np.log(safe), 0.0), np.where(t != 0, -t / safe, 0.0)
    raise ValueError(f"loss: expected half_sse, mse, cross_entropy or binary_cross_entropy, got {loss!r}")


def _bias_vector(bias: F64 | None, n: int) -> F64:
    return np.zeros(n) if bias is None else np.broadcast_to(bias, (n,)).astype(np.float64)


class Step(dict[str, Any]):
    """One training step of one sample, every number of the derivation; still the mapping that
    ``explain_step`` has always returned (``step["E_total"]``, ``step["grad_w1"]``...).

    The core's trace: ``net_hidden``, ``out_hidden``, ``net_output``, ``out_output``, ``loss``,
    ``delta_output``, ``delta_hidden``, ``grad_w1``... (trained parameters) and ``w1_after``...
    The chain-rule factors, as arrays for any widths:

    - ``E_output`` (n_out,): each output's error E_ok, summing to the loss;
    - ``dE_dout_output`` (n_out,): dE/dout_ok;
    - ``dout_dnet_output``: dout_ok/dnet_ok (n_out,), or for softmax its Jacobian (n_out, n_out) with
      ``[k, j]`` = dout_ok/dnet_oj, since every softmax output depends on every net input;
    - ``dE_dout_hidden_terms`` (n_out, n_hidden): ``[k, j]`` = dE_ok/dout_hj = delta_ok * w2[k, j];
    - ``dE_dout_hidden`` (n_hidden,): their sum over k; ``dout_dnet_hidden`` (n_hidden,);
    - ``dnet_dw1`` (n_hidden, n_in) = x_i and ``dnet_dw2`` (n_out, n_hidden) = out_hj per weight;
    - ``w1_before``, ``b1_before``... the parameters the step started from.

    For a 2-2-2 network the same under the article's names: ``E_o1``, ``dE/dout_o1``,
    ``dout_o1/dnet_o1``, ``dE_o1/dout_h1``, ``dE/dout_h1``, ``dout_h1/dnet_h1``, ``dnet_o1/dw5``,
    ``dnet_h1/dw1``, beside ``net_h1``, ``delta_o1``, ``dE_dw5``, ``w5_new``... (w1..w4 are
    ``w1[0,0], w1[0,1], w1[1,0], w1[1,1]``; w5..w8 the same entries of ``w2``).

    Attributes: ``x`` and ``t`` (the sample), ``config`` (the network's settings), ``optimizer``, and
    ``applied`` (whether the network took the step). ``formulas()`` writes the derivation line by line,
    ``to_svg()`` draws it; notebooks display a step as its picture and its table of factors.
    """

    def __init__(
        self,
        trace: Mapping[str, Any],
        *,
        x: npt.ArrayLike,
        t: npt.ArrayLike,
        weights: Mapping[str, npt.ArrayLike],
        config: Mapping[str, Any],
        optimizer: Any,
        applied: bool,
    ) -> None:
        super().__init__(trace)
        self.x: F64 = np.asarray(x, dtype=np.float64).ravel()
        self.t: F64 = np.asarray(t, dtype=np.float64).ravel()
        self.config = dict(config)
        self.optimizer = optimizer
        #: Whether the network took this step (``explain_step(..., apply=True)``).
        self.applied = applied
        # Formulas print every digit the network's dtype holds: 16 in float64, 9 in float32.
        self._digits = 9 if np.asarray(trace["out_output"]).dtype == np.float32 else 16
        w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
        for k, v in w.items():
            self[f"{k}_before"] = v
        # Extreme but finite traces (a fuzzer's weights) may overflow a product: it shows as inf, as it is.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore", under="ignore"):
            self._compute_factors(w)
        if (self.n_in, self.n_hidden, self.n_out) == (2, 2, 2):
            self.update(self._article_factor_names())

    def _num(self, v: float) -> str:
        return num(v, self._digits)

    def _arg(self, v: float) -> str:
        return _arg(v, self._digits)

    # -- shape and settings -------------------------------------------------------------------------
    @property
    def n_in(self) -> int:
        return int(self.config["n_in"])

    @property
    def n_hidden(self) -> int:
        return int(self.config["n_hidden"])

    @property
    def n_out(self) -> int:
        return int(self.config["n_out"])

    @property
    def softmax(self) -> bool:
        return bool(self.config["output_activation"] == "softmax")

    def _a(self, key: str) -> F64:
        return np.asarray(self[key], dtype=np.float64)

    def _compute_factors(self, w: dict[str, F64]) -> None:
        net_h, out_h, net_o, out_o = (self._a(k) for k in ("net_hidden", "out_hidden", "net_output", "out_output"))
        errors, de_dout = _loss_terms(self.config["loss"], net_o, out_o, self.t)
        self["E_output"] = errors
        self["dE_dout_output"] = de_dout
        if self.softmax:
            self["dout_dnet_output"] = np.diag(out_o) - np.outer(out_o, out_o)
        else:
            self["dout_dnet_output"] = _derivative(self.config["output_activation"], net_o, out_o)
        self["dE_dout_hidden_terms"] = self._a("delta_output")[:, None] * w["w2"]
        self["dE_dout_hidden"] = self["dE_dout_hidden_terms"].sum(axis=0)
        self["dout_dnet_hidden"] = _derivative(self.config["hidden_activation"], net_h, out_h)
        self["dnet_dw1"] = np.broadcast_to(self.x, (self.n_hidden, self.n_in)).copy()
        self["dnet_dw2"] = np.broadcast_to(out_h, (self.n_out, self.n_hidden)).copy()

    def _article_factor_names(self) -> dict[str, float]:
        names: dict[str, float] = {}
        w1n, w2n = weight_names(2, 2, 2)
        dout_dnet = self["dout_dnet_output"]
        for k in range(2):
            o = f"o{k + 1}"
            names[f"E_{o}"] = float(self["E_output"][k])
            names[f"dE/dout_{o}"] = float(self["dE_dout_output"][k])
            names[f"dout_{o}/dnet_{o}"] = float(dout_dnet[k, k] if self.softmax else dout_dnet[k])
            for j in range(2):
                names[f"dE_{o}/dout_h{j + 1}"] = float(self["dE_dout_hidden_terms"][k, j])
                names[f"dnet_{o}/d{w2n[k][j]}"] = float(self["dnet_dw2"][k, j])
        for j in range(2):
            h = f"h{j + 1}"
            names[f"dE/dout_{h}"] = float(self["dE_dout_hidden"][j])
            names[f"dout_{h}/dnet_{h}"] = float(self["dout_dnet_hidden"][j])
            for i in range(2):
                names[f"dnet_{h}/d{w1n[j][i]}"] = float(self["dnet_dw1"][j, i])
        return names

    def __repr__(self) -> str:
        c = self.config
        return (
            f"Step({self.n_in}-{self.n_hidden}-{self.n_out}, {c['hidden_activation']}/{c['output_activation']}, "
            f"{c['loss']}, E_total={self._num(self['loss'])}, applied={self.applied})"
        )

    # -- the derivation, line by line ----------------------------------------------------------------
    def _bias_names(self, layer: int, units: list[str]) -> list[str | None]:
        """The name of each neuron's bias: the article's shared ``b1``, per neuron ``b_h1``, or none."""
        mode = self.config["bias"]
        if mode == "none":
            return [None] * len(units)
        return [f"b{layer}" if mode == "shared" else f"b_{u}" for u in units]

    def formulas(self) -> list[str]:
        """The derivation as the article writes it, one line per quantity: symbols, then numbers, then value."""
        c, num, arg = self.config, self._num, self._arg
        n_in, n_h, n_out = self.n_in, self.n_hidden, self.n_out
        ins = [f"i{i + 1}" for i in range(n_in)]
        hid = [f"h{j + 1}" for j in range(n_h)]
        outs = [f"o{k + 1}" for k in range(n_out)]
        targets = [f"T{k + 1}" for k in range(n_out)]
        w1n, w2n = weight_names(n_in, n_h, n_out)
        w1, w2 = self._a("w1_before"), self._a("w2_before")
        b1 = _bias_vector(self.get("b1_before"), n_h)
        b2 = _bias_vector(self.get("b2_before"), n_out)
        b1n, b2n = self._bias_names(1, hid), self._bias_names(2, outs)
        net_h, out_h, net_o, out_o = (self._a(k) for k in ("net_hidden", "out_hidden", "net_output", "out_output"))
        delta_o, delta_h = self._a("delta_output"), self._a("delta_hidden")
        lines = ["Forward pass"]

        def layer(units: list[str], src: list[str], src_v: F64, wn: list[list[str]], wv: F64, bn: list[str | None],
                  bv: F64, net: F64, out: F64, act: str) -> None:  # fmt: skip
            for j, u in enumerate(units):
                sym = " + ".join(f"{wn[j][i]}*{s}" for i, s in enumerate(src))
                val = " + ".join(f"{arg(wv[j, i])}*{arg(src_v[i])}" for i in range(len(src)))
                if bn[j] is not None:
                    sym, val = f"{sym} + {bn[j]}*1", f"{val} + {arg(bv[j])}*1"
                lines.append(f"  net_{u} = {sym} = {val} = {num(net[j])}")
            for j, u in enumerate(units):
                if act == "softmax":
                    total = " + ".join(f"e^net_{v}" for v in units)
                    total_v = " + ".join(f"e^{arg(n)}" for n in net)
                    lines.append(f"  out_{u} = e^net_{u} / ({total}) = e^{arg(net[j])} / ({total_v}) = {num(out[j])}")
                else:
                    f = ACTIVATION_FORMULA[act][0]
                    lines.append(
                        f"  out_{u} = {f.format(net=f'net_{u}')} = {f.format(net=arg(net[j]))} = {num(out[j])}"
                    )

        layer(hid, ins, self.x, w1n, w1, b1n, b1, net_h, out_h, c["hidden_activation"])
        layer(outs, [f"out_{h}" for h in hid], out_h, w2n, w2, b2n, b2, net_o, out_o, c["output_activation"])

        lines.append("Errors")
        errors, de_dout = self._a("E_output"), self._a("dE_dout_output")
        loss = c["loss"]
        for k, (o, tk) in enumerate(zip(outs, targets)):
            if loss == "half_sse":
                sym, val = f"1/2 ({tk} - out_{o})^2", f"1/2 ({arg(self.t[k])} - {arg(out_o[k])})^2"
            elif loss == "mse":
                sym, val = (
                    f"({tk} - out_{o})^2 / {n_out}",
                    f"({arg(self.t[k])} - {arg(out_o[k])})^2 / {n_out}",
                )
            elif loss == "binary_cross_entropy":
                tv, ov = arg(self.t[k]), arg(out_o[k])
                sym = f"-({tk} ln(out_{o}) + (1 - {tk}) ln(1 - out_{o})) / {n_out}"
                val = f"-({tv} ln({ov}) + (1 - {tv}) ln(1 - {ov})) / {n_out}"
            else:
                sym, val = f"-{tk} ln(out_{o})", f"-{arg(self.t[k])} ln({arg(out_o[k])})"
            lines.append(f"  E_{o} = {sym} = {val} = {num(errors[k])}")
        lines.append(
            f"  E_total = {' + '.join(f'E_{o}' for o in outs)} = {' + '.join(arg(e) for e in errors)} = "
            f"{num(self['loss'])}"
        )
        if loss == "mse":
            lines.append(f"  (mse: the mean over the {n_out} outputs, PyTorch's MSELoss)")
        if loss == "binary_cross_entropy":
            lines.append(
                f"  (binary_cross_entropy: the mean over the {n_out} outputs, PyTorch's BCELoss, computed from "
                "net_o as BCEWithLogitsLoss does)"
            )

        lines.append("Output layer: dE/dw = dE/dout_o * dout_o/dnet_o * dnet_o/dw")
        for k, (o, tk) in enumerate(zip(outs, targets)):
            if loss == "half_sse":
                sym, val = f"out_{o} - {tk}", f"{arg(out_o[k])} - {arg(self.t[k])}"
            elif loss == "mse":
                sym, val = (
                    f"2 (out_{o} - {tk}) / {n_out}",
                    f"2 ({arg(out_o[k])} - {arg(self.t[k])}) / {n_out}",
                )
            elif loss == "binary_cross_entropy":
                sym = f"(out_{o} - {tk}) / (out_{o} (1 - out_{o})) / {n_out}"
                val = f"({arg(out_o[k])} - {arg(self.t[k])}) / ({arg(out_o[k])} (1 - {arg(out_o[k])})) / {n_out}"
            else:
                sym, val = f"-{tk} / out_{o}", f"-{arg(self.t[k])} / {arg(out_o[k])}"
            lines.append(f"  dE/dout_{o} = {sym} = {val} = {num(de_dout[k])}")
        dout_dnet = self._a("dout_dnet_output")
        if self.softmax:
            lines.append(
                "  softmax: dout_ok/dnet_oj = out_ok (1[k=j] - out_oj), so every output moves every net input:"
            )
            lines.append(
                "  delta_oj = sum_k dE/dout_ok * dout_ok/dnet_oj = sum_k (-T_k / out_ok) out_ok (1[k=j] - out_oj)"
            )
            lines.append("           = out_oj * (T_1 + ... + T_n) - T_j = out_oj - T_j when the targets sum to 1")
            total_t = float(self.t.sum())
            for k, (o, tk) in enumerate(zip(outs, targets)):
                if math.isclose(total_t, 1.0, rel_tol=0, abs_tol=1e-12):
                    sym, val = f"out_{o} - {tk}", f"{arg(out_o[k])} - {arg(self.t[k])}"
                else:
                    sym, val = (
                        f"out_{o} * {num(total_t)} - {tk}",
                        f"{arg(out_o[k])} * {num(total_t)} - {arg(self.t[k])}",
                    )
                lines.append(f"  delta_{o} = {sym} = {val} = {num(delta_o[k])}")
        else:
            act = c["output_activation"]
            for k, o in enumerate(outs):
                f = ACTIVATION_FORMULA[act][1]
                lines.append(
                    f"  dout_{o}/dnet_{o} = {f.format(out=f'out_{o}', net=f'net_{o}')} = "
                    f"{f.format(out=arg(out_o[k]), net=arg(net_o[k]))} = {num(dout_dnet[k])}"
                )
            if loss == "binary_cross_entropy":
                lines.append(
                    f"  sigmoid's out (1 - out) cancels: delta_ok = (out_ok - T_k) / {n_out}, finite even where "
                    "out rounds to 0 or 1"
                )
            for k, (o, tk) in enumerate(zip(outs, targets)):
                if loss == "binary_cross_entropy":
                    lines.append(
                        f"  delta_{o} = (out_{o} - {tk}) / {n_out} = ({arg(out_o[k])} - {arg(self.t[k])}) / {n_out} = "
                        f"{num(delta_o[k])}"
                    )
                    continue
                lines.append(
                    f"  delta_{o} = dE/dout_{o} * dout_{o}/dnet_{o} = {arg(de_dout[k])} * {arg(dout_dnet[k])} = "
                    f"{num(delta_o[k])}"
                )
        grads = {"w1": self.get("grad_w1"), "w2": self.get("grad_w2")}
        for k, o in enumerate(outs):
            for j, h in enumerate(hid):
                name = w2n[k][j]
                g = delta_o[k] * out_h[j]
                lines.append(f"  dnet_{o}/d{name} = out_{h} = {num(out_h[j])}")
                lines.append(f"  dE/d{name} = delta_{o} * out_{h} = {arg(delta_o[k])} * {arg(out_h[j])} = {num(g)}")
        self._bias_gradient_lines(lines, 2, outs, delta_o)

        lines.append("Hidden layer: dE/dw = dE/dout_h * dout_h/dnet_h * dnet_h/dw, from the weights before the step")
        terms, de_dout_h = self._a("dE_dout_hidden_terms"), self._a("dE_dout_hidden")
        dout_dnet_h = self._a("dout_dnet_hidden")
        act = c["hidden_activation"]
        for j, h in enumerate(hid):
            for k, o in enumerate(outs):
                lines.append(
                    f"  dE_{o}/dout_{h} = delta_{o} * {w2n[k][j]} = {arg(delta_o[k])} * {arg(w2[k, j])} = "
                    f"{num(terms[k, j])}"
                )
            lines.append(
                f"  dE/dout_{h} = {' + '.join(f'dE_{o}/dout_{h}' for o in outs)} = "
                f"{' + '.join(arg(v) for v in terms[:, j])} = {num(de_dout_h[j])}"
            )
            f = ACTIVATION_FORMULA[act][1]
            lines.append(
                f"  dout_{h}/dnet_{h} = {f.format(out=f'out_{h}', net=f'net_{h}')} = "
                f"{f.format(out=arg(out_h[j]), net=arg(net_h[j]))} = {num(dout_dnet_h[j])}"
            )
            lines.append(
                f"  delta_{h} = dE/dout_{h} * dout_{h}/dnet_{h} = {arg(de_dout_h[j])} * {arg(dout_dnet_h[j])} = "
                f"{num(delta_h[j])}"
            )
        for j, h in enumerate(hid):
            for i, s in enumerate(ins):
                name = w1n[j][i]
                g = delta_h[j] * self.x[i]
                lines.append(f"  dnet_{h}/d{name} = {s} = {num(self.x[i])}")
                lines.append(f"  dE/d{name} = delta_{h} * {s} = {arg(delta_h[j])} * {arg(self.x[i])} = {num(g)}")
        self._bias_gradient_lines(lines, 1, hid, delta_h)

        lines.append(self._update_title())
        for key, names in (("w1", w1n), ("w2", w2n)):
            before, after, grad = self._a(f"{key}_before"), self.get(f"{key}_after"), grads[key]
            if grad is None or after is None:
                lines.append(f"  {key}: not trained")
                continue
            for idx in np.ndindex(before.shape):
                lines.append(self._update_line(names[idx[0]][idx[1]], float(before[idx]), grad[idx], after[idx]))
        for layer_no, units in ((1, hid), (2, outs)):
            grad, after = self.get(f"grad_b{layer_no}"), self.get(f"b{layer_no}_after")
            if grad is None or after is None:
                continue
            before = self._a(f"b{layer_no}_before")
            for j, bias_name in enumerate(self._bias_names(layer_no, units[: before.size])):
                if bias_name is not None:
                    lines.append(self._update_line(bias_name, float(before[j]), grad[j], after[j]))
        return lines

    def _bias_gradient_lines(self, lines: list[str], layer: int, units: list[str], delta: F64) -> None:
        if f"grad_b{layer}" not in self:
            return
        if self.config["bias"] == "shared":
            lines.append(
                f"  dE/db{layer} = {' + '.join(f'delta_{u}' for u in units)} = "
                f"{' + '.join(self._arg(d) for d in delta)} = {self._num(delta.sum())}   (one bias shared by the layer)"
            )
        else:
            for u, d in zip(units, delta):
                lines.append(f"  dE/db_{u} = delta_{u} * 1 = {self._num(d)}")

    def _plain_sgd(self) -> bool:
        o = self.optimizer
        return isinstance(o, SGD) and o.momentum == 0 and o.weight_decay == 0

    def _update_title(self) -> str:
        if self._plain_sgd():
            return f"Update (w <- w - eta * dE/dw, eta = {self._num(self.optimizer.lr)})"
        return f"Update by {self.optimizer!r}, from dE/dw and the optimizer's state (momentum, Adam's moments)"

    def _update_line(self, name: str, before: float, grad: float, after: float) -> str:
        if self._plain_sgd():
            return (
                f"  {name}_new = {name} - eta * dE/d{name} = {self._arg(before)} - {self._arg(self.optimizer.lr)} * "
                f"{self._arg(grad)} = {self._num(after)}"
            )
        old, g = self._num(before), self._num(grad)
        return f"  {name}_new = {self._num(after)}   (from {name} = {old}, dE/d{name} = {g})"

    # -- pictures -------------------------------------------------------------------------------------
    def to_svg(self, gradients: bool = False) -> str:
        """The network as the article draws it, with this step's net and out values and output errors;
        ``gradients=True`` also labels every edge with dE/dw and its new value."""
        if not isinstance(gradients, bool):
            raise TypeError(f"gradients: expected a bool, got {type(gradients).__name__}")
        return network_svg(self.config, self._weights_before(), step=self, gradients=gradients)

    def _weights_before(self) -> dict[str, F64]:
        return {k: self._a(f"{k}_before") for k in ("w1", "b1", "w2", "b2") if f"{k}_before" in self}

    def factor_table_html(self) -> str:
        """The factors as an HTML table: name, formula and value, one row per line of the derivation."""
        rows = []
        for line in self.formulas():
            if not line.startswith("  "):
                rows.append(f'<tr><th colspan="2" style="text-align:left">{html.escape(line)}</th></tr>')
                continue
            name, _, rest = line.strip().partition(" = ")
            rows.append(f"<tr><td><code>{html.escape(name)}</code></td><td><code>{html.escape(rest)}</code></td></tr>")
        return f'<table class="rustbp-factors">{"".join(rows)}</table>'

    def _repr_svg_(self) -> str:
        return self.to_svg(gradients=True)

    def _repr_html_(self) -> str:
        return f"<div>{self.to_svg(gradients=True)}{self.factor_table_html()}</div>"


# -- drawing ----------------------------------------------------------------------------------------
