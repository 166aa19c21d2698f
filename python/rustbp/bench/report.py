"""``rustbp bench``'s report: the tables of each workload, the goals this run reached or missed, and the
lines printed for them."""

from __future__ import annotations

import operator
from functools import partial
from typing import TYPE_CHECKING, Any, Callable

from . import native
from .impls import rustbp_name, short

if TYPE_CHECKING:
    from .measure import Point, Result


def native_label(name: str, dtype: str) -> str:
    flags = "-O3, native" if name == "reference" else " ".join(native.FLAGS[name])
    return f"C++ {'loops' if name == 'reference' else 'per node'} {short(dtype)} ({flags})"


def fmt_time(s: float) -> str:
    if s < 1e-6:
        return f"{s * 1e9:.0f} ns"
    if s < 1e-3:
        return f"{s * 1e6:.2f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def check_mark(r: Result) -> str:
    return "-" if r.agrees is None else ("ok" if r.agrees else "MISMATCH")


def fmt_percent(fraction: float | None) -> str:
    if fraction is None:
        return "-"
    return f"{100 * fraction:.2g}%" if fraction < 0.1 else f"{100 * fraction:.0f}%"


#: How a goal's measured value is printed, by its unit.
SHOWN: dict[str, Callable[[float], str]] = {
    "x": lambda v: f"{v:,.3g}x",
    "us": lambda v: f"{v:,.2f} us",
    "%": lambda v: f"{v:.0f}%",
}


def fmt_peak(r: Result) -> str:
    """GFLOP/s and the percentage of the peak, or blanks where they do not apply."""
    g = r.extra.get("gflops")
    return f"{g:>9.3g} {fmt_percent(r.extra.get('peak_fraction')):>7}" if g is not None else f"{'-':>9} {'-':>7}"


def table(point: Point, baseline: str) -> str:
    """One workload's rows: time per step, steps per second, GFLOP/s and % of peak, ratio to ``baseline``,
    final loss, check; then the columns this machine could not run, as n/a."""
    base = point.get(baseline)
    digits = point.workload == "digits"
    head = "time to 97%" if digits else "time/step"
    lines = [
        f"  {'implementation':<30} {head:>12} {'steps/s' if not digits else 'epochs':>10} {'GFLOP/s':>9} "
        f"{'% peak':>7} {'vs ' + baseline:>34} {'final loss':>22}  check"
    ]
    for r in sorted(point.results, key=lambda r: r.per_step_s):
        v = r.per_step_s / base.per_step_s if base else None
        ratio = "-" if v is None else f"{v:,.1f}x" if v >= 1 else f"{v:.2g}x"
        second = f"{r.extra['epochs']:>10}" if digits else f"{1 / r.per_step_s:>10,.0f}"
        loss = f"{r.final_loss:.16g}" + ("" if not digits else f" acc {r.extra['test_accuracy']:.3f}")
        lines.append(
            f"  {r.impl:<30} {fmt_time(r.per_step_s):>12} {second} {fmt_peak(r)} {ratio:>34} {loss:>22}  "
            f"{check_mark(r)}"
        )
    for name, why in point.extra.get("missing", {}).items():
        lines.append(f"  {name:<30} {'n/a':>12}  ({why})")
    return "\n".join(lines)


def native_table(points: list[Point]) -> str:
    """The native workload: per width and dtype, rustbp's time per step (loop in Rust) and the plain C++
    loops', rustbp's over C++'s, and each one's percentage of the peak in that dtype."""
    head = ("rustbp", "C++", "ratio", "% rustbp", "% C++")
    lines = [
        "  time per step (median); ratio = rustbp / C++; % = of the peak in that dtype",
        f"  {'':>5} {'float64':^54} {'float32':^54}",
        f"  {'n':>5} " + " ".join(f"{h:>10}" for h in head * 2),
    ]
    for p in points:
        cells = []
        for dt in ("float64", "float32"):
            rb, nat = p.get(rustbp_name(dt, "rust")), p.get(native_label("reference", dt))
            cells += [(fmt_time(r.per_step_s) + ("" if r.agrees else "!")) if r else "-" for r in (rb, nat)]
            cells.append(f"{rb.per_step_s / nat.per_step_s:.2f}" if rb and nat else "-")
            cells += [fmt_percent(r.extra.get("peak_fraction")) if r else "-" for r in (rb, nat)]
        lines.append(f"  {p.spec.n_hidden:>5} " + " ".join(f"{c:>10}" for c in cells))
    return "\n".join(lines)


def sweep_table(points: list[Point]) -> str:
    names: list[str] = []
    for p in points:
        names += [r.impl for r in p.results if r.impl not in names]
    cols = [
        n.replace("rustbp ", "rb ")
        .replace("PyTorch ", "pt ")
        .replace(" (loop in Rust)", "")
        .replace(" (Python loop)", " pyloop")
        .replace("pure Python", "pure")
        for n in names
    ]
    lines = [
        "  time per step (median); rb = rustbp, pt = PyTorch;",
        "  last column: rb f32 (loop in Rust) / the faster pt f32",
        f"  {'batch':>5} {'hidden':>6} " + " ".join(f"{c:>13}" for c in cols) + f" {'rb/pt':>6}",
    ]
    for p in points:
        cells = []
        for n in names:
            r = p.get(n)
            cells.append(f"{(fmt_time(r.per_step_s) + ('' if r.agrees else '!')) if r else '':>13}")
        rb, pt, pt1 = (
            p.get(rustbp_name("float32", "rust")),
            p.get("PyTorch CPU f32"),
            p.get("PyTorch CPU f32 1 thread"),
        )
        best = min((r.per_step_s for r in (pt, pt1) if r), default=None)
        ratio = f"{rb.per_step_s / best:.2f}" if rb and best else "-"
        lines.append(f"  {p.batch:>5} {p.spec.n_hidden:>6} " + " ".join(cells) + f" {ratio:>6}")
    return "\n".join(lines)


def targets(points: list[Point]) -> list[dict[str, Any]]:
    """rustbp's performance goals, as measured in this run."""
    by = {p.workload: p for p in points if p.workload != "sweep"}
    out: list[dict[str, Any]] = []

    def ratio(wl: str, num: str, den: str) -> float | None:
        """num's time over den's; a PyTorch CPU ``den`` means its faster thread setting."""
        p = by.get(wl)
        a, b = (p.get(num), p.get(den)) if p else (None, None)
        if p and b and den.startswith("PyTorch CPU"):
            b1 = p.get(den + " 1 thread")
            b = b1 if b1 and b1.per_step_s < b.per_step_s else b
        return a.per_step_s / b.per_step_s if a and b else None

    def add(what: str, value: float | None, goal: str, ok: Callable[[float], bool], unit: str = "x") -> None:
        out.append(
            {
                "target": what,
                "measured": value,
                "unit": unit,
                "goal": goal,
                "met": None if value is None else bool(ok(value)),
            }
        )

    rb64 = rustbp_name("float64", "rust")
    for wl in ("article", "article-torch"):
        v = ratio(wl, "PyTorch CPU f32", rb64)
        add(
            f"{wl}: rustbp f64 loop in Rust, speed-up over PyTorch CPU f32",
            v,
            ">= 3000x",
            lambda v: v >= 3000,
        )
        for pure in ("pure Python f64", "pure Python f64 (unrolled 2-2-2)"):
            v = ratio(wl, pure, rb64)
            if v is not None:
                add(f"{wl}: rustbp f64 loop in Rust, speed-up over {pure}", v, ">= 40x", lambda v: v >= 40)
    p = by.get("article")
    r = p.get(rustbp_name("float64", "python")) if p else None
    add(
        "article: rustbp f64 train_step per call (Python loop)",
        r.per_step_s * 1e6 if r else None,
        "<= 1.5 us",
        lambda v: v <= 1.5,
        "us",
    )
    # Small nets at native speed: the article's own C++ program, plain C++ loops at batch 1, Python's loop.
    for wl, goal in (("article", 0.8), ("article-torch", 1.0)):
        add(
            f"{wl}: rustbp f64 loop in Rust, time / the article's C++ program's",
            ratio(wl, rb64, native_label("article" if wl == "article" else "article_torch", "float64")),
            f"<= {goal}x",
            partial(operator.ge, goal),
        )
    add(
        "article: rustbp f64 Python loop over train_step, speed-up over pure Python f64 (unrolled 2-2-2)",
        ratio("article", "pure Python f64 (unrolled 2-2-2)", rustbp_name("float64", "python")),
        ">= 2x",
        lambda v: v >= 2,
    )
    native_points = {p.spec.n_hidden: p for p in points if p.workload == "native"}
    slowest: float | None = None
    at = ""
    for n, p in native_points.items():
        for dt in ("float64", "float32"):
            a, b = p.get(rustbp_name(dt, "rust")), p.get(native_label("reference", dt))
            if a and b and (slowest is None or a.per_step_s / b.per_step_s > slowest):
                slowest, at = a.per_step_s / b.per_step_s, f" (worst: {n}-{n}-{n} {short(dt)})"
    add(f"batch 1: worst rustbp / plain C++ loops{at}", slowest, "<= 1.0x", lambda v: v <= 1.0)
    for n, goal in ((16, 0.25), (32, 0.6)):
        r = native_points[n].get(rb64) if n in native_points else None
        add(
            f"batch 1: {n}-{n}-{n} rustbp f64 loop in Rust, time per step",
            r.per_step_s * 1e6 if r else None,
            f"<= {goal} us",
            partial(operator.ge, goal),
            "us",
        )
    large = by.get("large")
    for dt in ("f32", "f64"):
        name = rustbp_name("float32" if dt == "f32" else "float64", "rust")
        goal = 0.9 if dt == "f32" else 1.0
        add(
            f"784-1024-10 batch 256: rustbp {dt} step time / best PyTorch CPU {dt}",
            ratio("large", name, f"PyTorch CPU {dt}"),
            f"<= {goal}x",
            partial(operator.ge, goal),
        )
        r = large.get(name) if large else None
        share = r.extra.get("peak_fraction") if r else None
        add(
            f"784-1024-10 batch 256: rustbp {dt} share of the machine's measured peak",
            None if share is None else 100 * share,
            ">= 70%",
            partial(operator.le, 70.0),
            "%",
        )
    sweep = [p for p in points if p.workload == "sweep"]
    worst: float | None = None
    where = ""
    for p in sweep:
        a, b = p.get(rustbp_name("float32", "rust")), p.get("PyTorch CPU f32")
        b1 = p.get("PyTorch CPU f32 1 thread")
        b = b1 if b and b1 and b1.per_step_s < b.per_step_s else b
        if a and b and (worst is None or a.per_step_s / b.per_step_s > worst):
            worst, where = a.per_step_s / b.per_step_s, f" (worst: hidden {p.spec.n_hidden}, batch {p.batch})"
    add(f"width sweep: worst rustbp f32 / best PyTorch CPU f32{where}", worst, "<= 1.0x", lambda v: v <= 1.0)
    for dt in ("float32", "float64"):
        v = ratio("digits", rustbp_name(dt, "rust"), "scikit-learn MLPClassifier")
        add(f"digits to 97%: rustbp {dt} fit time / scikit-learn's", v, "<= 0.25x", lambda v: v <= 0.25)
    # Populations: speed-ups of one Population call over the other ways of training every member.
    p = by.get("population-digits")
    size = f"{p.extra['members']} x " if p else ""
    stacked = "PyTorch CPU f32 stacked (baddbmm)"
    for other, goal in ((stacked, 4.0), ("rustbp f32 Network.fit loop", 5.0)):
        v = ratio("population-digits", other, "rustbp f32 Population.fit")
        if other == stacked:  # its faster thread setting
            v1 = ratio("population-digits", other + " 1 thread", "rustbp f32 Population.fit")
            v = min((x for x in (v, v1) if x is not None), default=None)
        add(
            f"population digits, {size}64-32-10 f32: Population.fit speed-up over {other}",
            v,
            f">= {goal:g}x",
            partial(operator.le, goal),
        )
    add(
        f"population digits on a GPU, {size}64-32-10 f32: GPU Population.fit speed-up over PyTorch CUDA stacked",
        ratio("population-digits", "PyTorch CUDA f32 stacked (baddbmm)", "rustbp GPU f32 Population.fit"),
        ">= 10x",
        partial(operator.le, 10.0),
    )
    p = by.get("population-article")
    size = f"{p.extra['members']:,} x " if p else ""
    add(
        f"population article, {size}2-2-2 f64: Population.train speed-up over a Network.train loop",
        ratio("population-article", "rustbp f64 Network.train loop", "rustbp f64 Population.train"),
        ">= 10x",
        lambda v: v >= 10,
    )
    return out


def report(points: list[Point], notes: list[str], say: Callable[[str], None]) -> list[dict[str, Any]]:
    baseline = rustbp_name("float64", "rust")
    titles = {
        "article": "The article: 2-2-2, one sample, SGD lr 0.5, half_sse, shared biases not trained",
        "article-torch": ("The article's PyTorch setting: 2-2-2, MSE, per-neuron biases, SGD lr 0.5 momentum 0.9"),
        "large": "784-1024-10, batch 256, ReLU + softmax cross-entropy, SGD lr 0.1 momentum 0.9",
        "digits": "scikit-learn's digits, 64-128-10: time to 97% test accuracy (Adam, batch 32)",
        "gpu-article": "GPU: the article's 2-2-2, one sample, SGD lr 0.5, half_sse, shared biases not trained",
        "gpu-wide": "GPU: a wide net in float32, sigmoid, half_sse, SGD lr 0.1 (PyTorch with TF32 off)",
        "gpu-small": "GPU: 64-32-10 on a batch of 32, ReLU + softmax cross-entropy, SGD lr 0.1 (the fused kernel)",
        "population-digits": "Population on scikit-learn's digits: 64-32-10, ReLU + softmax cross-entropy, SGD lr 0.1",
        "population-article": "Population of the article's 2-2-2 from random starts, one sample, SGD lr 0.5",
    }
    for p in points:
        if p.workload in ("sweep", "native"):
            continue
        title = titles[p.workload]
        if p.workload.startswith("gpu"):
            base = rustbp_name("float32", "rust", "gpu")
            size = f"{p.spec.n_in}-{p.spec.n_hidden}-{p.spec.n_out}, batch {p.batch}"
            title += f": {size}" + (" (reduced)" if p.extra.get("reduced") else "")
        elif p.workload.startswith("population"):
            members = p.extra["members"]
            epochs = f", {p.extra['epochs']} epochs at batch {p.batch}" if "epochs" in p.extra else ""
            say(
                f"\n{title}: {members:,} members x {p.steps:,} steps each{epochs}; time per network-step = "
                f"time / (members x steps); reference: the loop's mean final loss {p.reference_loss:.16g}"
            )
            say(table(p, next(r.impl for r in p.results if r.impl.endswith(" loop"))))
            continue
        else:
            base = rustbp_name("float32", "rust") if p.workload == "digits" else baseline
        say(
            f"\n{title}: {p.steps} "
            f"{'epochs (NumPy f64)' if p.workload == 'digits' else 'steps'}, "
            f"float64 reference loss {p.reference_loss:.16g}"
        )
        say(table(p, base))
    sweep = [p for p in points if p.workload == "sweep"]
    if sweep:
        say("\nWidth sweep: 64-H-10, sigmoid, MSE, SGD lr 0.1 (! = loss mismatch)")
        say(sweep_table(sweep))
    nat = [p for p in points if p.workload == "native"]
    if nat:
        say("\nrustbp at batch 1 against plain C++ loops: n-n-n, sigmoid, half_sse, SGD lr 0.5 (! = loss mismatch)")
        say(native_table(nat))
    found = targets(points)
    say("\nPerformance goals, as measured in this run")
    for t in found:
        v = t["measured"]
        shown = "not measured" if v is None else SHOWN[t["unit"]](v)
        mark = {None: "-", True: "reached", False: "not reached"}[t["met"]]
        say(f"  {t['target']:<80} {shown:>14}  goal {t['goal']:<10} {mark}")
    bad = [(p, r) for p in points for r in p.results if r.agrees is False]
    if bad:
        say("\n" + "!" * 100)
        for p, r in bad:
            say(
                f"!!! LOSS MISMATCH: {r.impl} on {p.workload} (hidden {p.spec.n_hidden}, "
                f"batch {p.batch}) ended at "
                f"{r.final_loss:.16g}, the float64 reference at {p.reference_loss:.16g}: ITS MATH DIFFERS"
            )
        say("!" * 100)
    for n in notes:
        say(f"note: {n}")
    return found
