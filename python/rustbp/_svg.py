"""The pictures of ``Step``, ``Network`` and ``History``, as hand-written SVG (no drawing library): the
network as the article draws it for widths up to ``MAX_DRAWN``, a heat-map of the weight matrices
beyond, and loss curves."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

if TYPE_CHECKING:
    from .explain import Step

F64 = npt.NDArray[np.float64]

#: Widths up to this are drawn neuron by neuron; wider networks as heat-maps of their matrices.
MAX_DRAWN = 8


def num(v: float, digits: int = 16) -> str:
    """Every digit float64 holds, none of its last-ulp noise (0.15, not 0.15000000000000002)."""
    return f"{float(v):.{digits}g}"


def short(v: float) -> str:
    """Six significant digits: enough to recognise the article's numbers in a picture."""
    return f"{float(v):.6g}"


def weight_names(n_in: int, n_hidden: int, n_out: int) -> tuple[list[list[str]], list[list[str]]]:
    """The article's names of every weight: ``w1[j][i]`` and ``w2[k][j]``, numbered row by row from w1."""
    w1 = [[f"w{j * n_in + i + 1}" for i in range(n_in)] for j in range(n_hidden)]
    first = n_hidden * n_in + 1
    w2 = [[f"w{first + k * n_hidden + j}" for j in range(n_hidden)] for k in range(n_out)]
    return w1, w2


def _text(x: float, y: float, s: str, size: int = 12, anchor: str = "middle", weight: str = "normal",
          fill: str = "#222", halo: bool = False) -> str:  # fmt: skip
    extra = ' stroke="white" stroke-width="3" paint-order="stroke"' if halo else ""
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-weight="{weight}" '
        f'fill="{fill}"{extra}>{html.escape(s)}</text>'
    )


def _svg(width: float, height: float, body: list[str], title: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:.0f}" height="{height:.0f}" '
        f'viewBox="0 0 {width:.0f} {height:.0f}" font-family="Helvetica, Arial, sans-serif">'
        f"<title>{html.escape(title)}</title>"
        f'<rect width="100%" height="100%" fill="white"/>{"".join(body)}</svg>'
    )


def network_svg(
    config: Mapping[str, Any], weights: Mapping[str, Any], *, step: Step | None = None, gradients: bool = False
) -> str:
    """The network with ``weights`` (and a step's values): neuron by neuron up to ``MAX_DRAWN`` wide,
    else a heat-map of the matrices."""
    n_in, n_h, n_out = int(config["n_in"]), int(config["n_hidden"]), int(config["n_out"])
    w = {k: np.asarray(v, dtype=np.float64) for k, v in weights.items()}
    if max(n_in, n_h, n_out) > MAX_DRAWN:
        return _heatmap_svg(config, w, step)
    return _graph_svg(config, w, step, gradients)


def _graph_svg(config: Mapping[str, Any], w: dict[str, F64], step: Step | None, gradients: bool) -> str:
    n_in, n_h, n_out = int(config["n_in"]), int(config["n_hidden"]), int(config["n_out"])
    w1n, w2n = weight_names(n_in, n_h, n_out)
    has_bias = "b1" in w
    r = 30
    # Labels (one line, or two with gradients) fanned out around their source, so that none overlap.
    spacing = 27 if gradients else 14
    dy = max(110, spacing * (max(n_h, n_out) + 1) + 10)
    xs = (110, 450, 790)
    rows = max(n_in + has_bias, n_h + has_bias, n_out)
    top = 70
    height = top + rows * dy + 20
    width = 1080

    def ys(n: int) -> list[float]:
        start = top + (rows - n) * dy / 2 + dy / 2
        return [start + i * dy for i in range(n)]

    layers = [ys(n_in + has_bias), ys(n_h + has_bias), ys(n_out)]
    body: list[str] = []
    labels: list[str] = []

    def edges(layer: int, src_n: int, dst_n: int, names: list[list[str]], key: str) -> None:
        x0, x1 = xs[layer] + r, xs[layer + 1] - r
        grad = step.get(f"grad_{key}") if step is not None else None
        after = step.get(f"{key}_after") if step is not None else None
        bias = w.get(f"b{layer + 1}")
        for i in range(src_n + (bias is not None)):
            for j in range(dst_n):
                y0, y1 = layers[layer][i], layers[layer + 1][j]
                body.append(f'<line x1="{x0}" y1="{y0:.1f}" x2="{x1}" y2="{y1:.1f}" stroke="#999"/>')
                ly = y0 + (j - (dst_n - 1) / 2) * spacing + (4 if not gradients else -2)
                f = (ly - 4 - y0) / (y1 - y0) if y1 != y0 else 0.1
                lx = x0 + 6 + (x1 - x0) * (f if 0.02 <= f <= 0.12 else 0.02)
                if i < src_n:
                    name, value = names[j][i], w[key][j, i]
                    g = None if grad is None else grad[j, i]
                    new = None if after is None else after[j, i]
                else:
                    assert bias is not None
                    bi = j if bias.size > 1 else 0
                    name = f"b{layer + 1}" if bias.size == 1 else f"b_{'ho'[layer]}{j + 1}"
                    value = bias[bi]
                    gb = step.get(f"grad_b{layer + 1}") if step is not None else None
                    ab = step.get(f"b{layer + 1}_after") if step is not None else None
                    g = None if gb is None else gb[bi]
                    new = None if ab is None else ab[bi]
                labels.append(_text(lx, ly, f"{name} = {short(value)}", size=11, anchor="start", halo=True))
                if gradients and g is not None and new is not None:
                    gl = f"dE/d{name} = {short(g)} -> {short(new)}"
                    labels.append(_text(lx, ly + 12, gl, size=11, anchor="start", fill="#a33", halo=True))

    edges(0, n_in, n_h, w1n, "w1")
    edges(1, n_h, n_out, w2n, "w2")
    body += labels

    def node(x: float, y: float, name: str, above: str | None, below: str | None, fill: str) -> None:
        body.append(f'<circle cx="{x}" cy="{y:.1f}" r="{r}" fill="{fill}" stroke="#333"/>')
        body.append(_text(x, y + 5, name, size=15, weight="bold"))
        if above:
            body.append(_text(x, y - r - 6, above, size=11, halo=True))
        if below:
            body.append(_text(x, y + r + 15, below, size=11, halo=True))

    net_h = step.get("net_hidden") if step is not None else None
    out_h = step.get("out_hidden") if step is not None else None
    net_o = step.get("net_output") if step is not None else None
    out_o = step.get("out_output") if step is not None else None
    for i in range(n_in):
        node(xs[0], layers[0][i], f"i{i + 1}", None, None if step is None else f"= {short(step.x[i])}", "#dbe9f6")
    for j in range(n_h):
        node(xs[1], layers[1][j], f"h{j + 1}", None if net_h is None else f"net {short(net_h[j])}",
             None if out_h is None else f"out {short(out_h[j])}", "#e3f1dc")  # fmt: skip
    for k in range(n_out):
        node(xs[2], layers[2][k], f"o{k + 1}", None if net_o is None else f"net {short(net_o[k])}",
             None if out_o is None else f"out {short(out_o[k])}", "#fbe3d6")  # fmt: skip
    if has_bias:
        node(xs[0], layers[0][n_in], "+1", None, None, "#f2f2f2")
        node(xs[1], layers[1][n_h], "+1", None, None, "#f2f2f2")
    hidden, output = config["hidden_activation"], config["output_activation"]
    body.append(_text(xs[0], 30, "input", size=13, weight="bold"))
    body.append(_text(xs[1], 30, f"hidden ({hidden})", size=13, weight="bold"))
    body.append(_text(xs[2], 30, f"output ({output})", size=13, weight="bold"))
    if step is not None:
        errors = step["E_output"]
        for k in range(n_out):
            y = layers[2][k]
            body.append(_text(xs[2] + r + 12, y - 4, f"T{k + 1} = {short(step.t[k])}", anchor="start"))
            body.append(_text(xs[2] + r + 12, y + 12, f"E_o{k + 1} = {short(errors[k])}", anchor="start", fill="#a33"))
        body.append(_text(xs[2] + r + 12, 52, f"{config['loss']}: E_total = {short(step['loss'])}",
                          anchor="start", size=13, weight="bold", fill="#a33"))  # fmt: skip
    title = f"{n_in}-{n_h}-{n_out} network" + ("" if step is None else f", E_total = {num(step['loss'])}")
    return _svg(width, height, body, title)


def _color(v: float, scale: float) -> str:
    """Blue for negative, red for positive, white for zero, full colour at ``scale``."""
    a = 0.0 if scale == 0 else max(-1.0, min(1.0, v / scale))
    fade = int(255 * (1 - abs(a)))
    return f"rgb(255,{fade},{fade})" if a >= 0 else f"rgb({fade},{fade},255)"


def _heatmap_svg(config: Mapping[str, Any], w: dict[str, F64], step: Step | None) -> str:
    mats: list[tuple[str, F64]] = [("w1", w["w1"]), ("w2", w["w2"])]
    if step is not None:
        mats += [(f"dE/d{k}", np.asarray(step[f"grad_{k}"])) for k in ("w1", "w2") if f"grad_{k}" in step]
    cell = max(1.0, min(8.0, 260 / max(max(m.shape) for _, m in mats)))
    body: list[str] = []
    x, y0, height = 20.0, 60.0, 0.0
    for name, m in mats:
        scale = float(np.abs(m).max())
        body.append(_text(x, y0 - 22, f"{name} {m.shape[0]}x{m.shape[1]}", size=13, anchor="start", weight="bold"))
        body.append(_text(x, y0 - 8, f"|max| {short(scale)}", size=11, anchor="start"))
        for (r, c), v in np.ndenumerate(m):
            body.append(
                f'<rect x="{x + c * cell:.1f}" y="{y0 + r * cell:.1f}" width="{cell:.1f}" height="{cell:.1f}" '
                f'fill="{_color(float(v), scale)}"/>'
            )
        body.append(
            f'<rect x="{x}" y="{y0}" width="{m.shape[1] * cell:.1f}" height="{m.shape[0] * cell:.1f}" '
            'fill="none" stroke="#333"/>'
        )
        x += m.shape[1] * cell + 40
        height = max(height, m.shape[0] * cell)
    n = f"{config['n_in']}-{config['n_hidden']}-{config['n_out']}"
    caption = f"{n} network, {config['hidden_activation']}/{config['output_activation']}: red positive, blue negative"
    if step is not None:
        caption += f"; {config['loss']} E_total = {short(step['loss'])}"
    body.append(_text(20, y0 + height + 24, caption, size=12, anchor="start"))
    title = f"{n} network" + ("" if step is None else f", E_total = {num(step['loss'])}")
    return _svg(max(x, 520), y0 + height + 40, body, title)


def curve_svg(series: Mapping[str, Sequence[float] | F64], xlabel: str, *, first: int = 0,
              mark: int | None = None, title: str = "loss") -> str:  # fmt: skip
    """Line chart of each series against its index (from ``first``); a log scale when all values are
    positive and span more than two decades; ``mark`` draws a vertical line at that index."""
    width, height, left, right, top, bottom = 640, 320, 70, 20, 30, 45
    data = {k: np.asarray(v, dtype=np.float64) for k, v in series.items() if len(v)}
    finite = np.concatenate([v[np.isfinite(v)] for v in data.values()]) if data else np.zeros(0)
    body: list[str] = []
    if finite.size == 0:
        body.append(_text(width / 2, height / 2, "nothing recorded", size=13))
        return _svg(width, height, body, title)
    log = bool(finite.min() > 0 and finite.max() / finite.min() > 100)
    vals = np.log10(finite) if log else finite
    lo, hi = float(vals.min()), float(vals.max())
    if hi == lo:
        lo, hi = lo - 1, hi + 1
    n = max(len(v) for v in data.values())

    def px(i: float) -> float:
        return left + (width - left - right) * (i / max(1, n - 1))

    def py(v: float) -> float:
        return top + (height - top - bottom) * (1 - (v - lo) / (hi - lo))

    body.append(
        f'<rect x="{left}" y="{top}" width="{width - left - right}" height="{height - top - bottom}" '
        'fill="none" stroke="#999"/>'
    )
    for tick in (lo, (lo + hi) / 2, hi):
        label = short(10**tick) if log else short(tick)
        body.append(_text(left - 6, py(tick) + 4, label, size=11, anchor="end"))
    for i in (0, n - 1):
        body.append(_text(px(i), height - bottom + 16, str(first + i), size=11))
    body.append(_text((left + width - right) / 2, height - 8, xlabel + (" (log scale loss)" if log else ""), size=12))
    colors = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd")
    for c, (name, v) in enumerate(data.items()):
        ok = np.isfinite(v)
        tv = np.log10(np.where(ok & (v > 0), v, 1)) if log else v
        pts = " ".join(f"{px(i):.1f},{py(float(tv[i])):.1f}" for i in range(len(v)) if ok[i])
        color = colors[c % len(colors)]
        body.append(f'<polyline points="{pts}" fill="none" stroke="{color}" stroke-width="2"/>')
        body.append(_text(width - right - 8, top + 16 + 15 * c, f"{name}: {short(v[-1])}", size=12, anchor="end",
                          fill=color))  # fmt: skip
    if mark is not None and 0 <= mark - first < n:
        x = px(mark - first)
        body.append(f'<line x1="{x:.1f}" y1="{top}" x2="{x:.1f}" y2="{height - bottom}" stroke="#555" '
                    'stroke-dasharray="4 3"/>')  # fmt: skip
        body.append(_text(x + 4, top + 12, f"best {mark}", size=11, anchor="start"))
    return _svg(width, height, body, title)
