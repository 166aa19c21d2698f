"""The width sweep as a PNG: time per step against hidden width, log-log, one panel per batch size, one line
per implementation, and where a GPU line crosses below the best CPU line, a marker. Needs matplotlib."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

matplotlib = importlib.import_module("matplotlib")  # ImportError here tells the caller to skip the plot
matplotlib.use("Agg")
plt = importlib.import_module("matplotlib.pyplot")

__all__ = ["crossover", "sweep_plot"]


def crossover(widths: list[int], gpu: list[float], cpu: list[float]) -> int | None:
    """The smallest width from which the GPU stays faster than the CPU, or None."""
    for i in range(len(widths)):
        if all(g < c for g, c in zip(gpu[i:], cpu[i:])):
            return widths[i]
    return None


def sweep_plot(points: list[dict[str, Any]], path: Path, machine: str) -> None:
    """Writes the plot of the sweep ``points`` (as in the JSON file) to ``path``."""
    batches = sorted({p["batch"] for p in points})
    names = list(dict.fromkeys(r["impl"] for p in points for r in p["results"]))
    colors = {n: f"C{i % 10}" for i, n in enumerate(names)}
    fig, axes = plt.subplots(1, len(batches), figsize=(6 * len(batches), 5), squeeze=False)
    for ax, batch in zip(axes[0], batches):
        rows = sorted((p for p in points if p["batch"] == batch), key=lambda p: p["spec"]["n_hidden"])
        lines: dict[str, tuple[list[int], list[float]]] = {}
        for p in rows:
            for r in p["results"]:
                xs, ys = lines.setdefault(r["impl"], ([], []))
                xs.append(p["spec"]["n_hidden"])
                ys.append(r["median_s_per_step"] * 1e6)
        for name, (xs, ys) in lines.items():
            style = "--" if "Python loop" in name else "-"
            width = 2 if "rustbp" in name else 1
            ax.plot(xs, ys, style, marker="o", markersize=3, label=name, linewidth=width, color=colors[name])
        gpus = [n for n in lines if "GPU" in n or "CUDA" in n]
        cpus = [n for n in lines if n not in gpus]
        for g in gpus:
            xs, ys = lines[g]
            best = [min(lines[c][1][lines[c][0].index(x)] for c in cpus if x in lines[c][0]) for x in xs]
            w = crossover(xs, ys, best)
            if w is not None:
                ax.axvline(w, color="grey", linestyle=":")
                ax.annotate(f"{g}\nfaster from {w}", (w, ys[xs.index(w)]), fontsize=7)
        if not gpus:
            ax.text(0.02, 0.02, "no GPU in this run: no crossover to mark", transform=ax.transAxes, fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("hidden width (64-H-10)")
        ax.set_ylabel("time per training step (us)")
        ax.set_title(f"batch {batch}")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle(f"rustbp width sweep: median time per step, {machine}", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
