"""GPU speed comparison, rustbp (wgpu) against PyTorch CUDA eager, side by side in one run.

Two workloads, the ratios the GPU issue asks for:
  1. the article's 2-2-2 net, one sample, 10,000 SGD steps (lr 0.5): steps per second;
  2. a wide net, 784-4096-10 at batch 8192 in float32, PyTorch with TF32 off: samples per second.
Each implementation is warmed up, then timed REPEAT times; medians are reported. PyTorch or CUDA
missing is noted and its columns left empty. On a software adapter (lavapipe) the wide workload runs at
reduced sizes, flagged in the output, since the full one would take hours there.

Usage: python benchmarks/gpu_compare.py [--out DIR] [--quick]
Writes DIR/gpu_<timestamp>.json and .md (DIR defaults to benchmarks/results).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import shutil
import statistics
import subprocess
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import rustbp

REPEAT = 5
ARTICLE_STEPS = 10_000
X1, T1 = np.array([0.05, 0.10], np.float32), np.array([0.01, 0.99], np.float32)


def median_time(fn: Callable[[], object], repeat: int = REPEAT) -> float:
    fn()  # warm-up: pipelines, allocations, CUDA context
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def torch_or_none() -> tuple[Any, str]:
    try:
        import torch
    except ImportError:
        return None, "PyTorch is not installed"
    if not torch.cuda.is_available():
        return None, f"PyTorch {torch.__version__} sees no CUDA device"
    torch.backends.cuda.matmul.allow_tf32 = False  # plain float32, like the GPU path
    torch.backends.cudnn.allow_tf32 = False
    return torch, f"PyTorch {torch.__version__} on {torch.cuda.get_device_name(0)}"


def torch_article(torch: Any) -> Callable[[], object]:
    """The article's net in PyTorch CUDA eager: 8 trained weights, fixed shared biases, SGD lr 0.5."""
    dev = torch.device("cuda")
    x, t = torch.tensor(X1, device=dev), torch.tensor(T1, device=dev)

    def run() -> object:
        w1 = torch.tensor([[0.15, 0.20], [0.25, 0.30]], device=dev, requires_grad=True)
        w2 = torch.tensor([[0.40, 0.45], [0.50, 0.55]], device=dev, requires_grad=True)
        opt = torch.optim.SGD([w1, w2], lr=0.5)
        for _ in range(ARTICLE_STEPS):
            opt.zero_grad()
            o = torch.sigmoid(torch.sigmoid(w1 @ x + 0.35) @ w2.T + 0.60)
            loss = 0.5 * ((t - o) ** 2).sum()
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return float(loss)

    return run


def torch_wide(torch: Any, X: np.ndarray, T: np.ndarray, hidden: int, steps: int) -> Callable[[], object]:
    dev = torch.device("cuda")
    x, t = torch.tensor(X, device=dev), torch.tensor(T, device=dev)
    model = torch.nn.Sequential(
        torch.nn.Linear(X.shape[1], hidden),
        torch.nn.Sigmoid(),
        torch.nn.Linear(hidden, T.shape[1]),
        torch.nn.Sigmoid(),
    ).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)

    def run() -> object:
        for _ in range(steps):
            opt.zero_grad()
            loss = 0.5 * ((t - model(x)) ** 2).sum(dim=1).mean()  # half_sse, as rustbp's default
            loss.backward()
            opt.step()
        torch.cuda.synchronize()
        return float(loss)

    return run


def nvidia_driver() -> str:
    if shutil.which("nvidia-smi") is None:
        return ""
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(Path(__file__).parent / "results"))
    ap.add_argument("--quick", action="store_true", help="reduced wide workload (any adapter)")
    args = ap.parse_args()

    devices = rustbp.gpu_devices()
    if not devices:
        raise SystemExit("no GPU adapter: " + "install a Vulkan driver (or mesa-vulkan-drivers for lavapipe)")
    torch, torch_note = torch_or_none()
    article = rustbp.Network.article(device="gpu")
    adapter = article._core.adapter()
    software = bool(adapter["is_software"])
    results: dict[str, Any] = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "host": platform.node(),
        "rustbp": rustbp.__version__,
        "adapter": adapter,
        "nvidia_smi": nvidia_driver(),
        "torch": torch_note,
    }
    print(
        f"adapter: {adapter['name']} ({adapter['backend']}, {adapter['device_type']})"
        + ("  [SOFTWARE adapter: timings say nothing about GPUs]" if software else "")
    )
    print(f"torch: {torch_note}")

    # 1. The article's net.
    def rustbp_article() -> object:
        net = rustbp.Network.article(device="gpu")
        return net.train(X1, T1, ARTICLE_STEPS)[-1]

    def cpu_article() -> object:
        return rustbp.Network.article().train(X1.astype(np.float64), T1.astype(np.float64), ARTICLE_STEPS)[-1]

    art = {"steps": ARTICLE_STEPS, "fused": article._core.uses_fused(1)}
    art["rustbp_gpu_steps_per_s"] = ARTICLE_STEPS / median_time(rustbp_article)
    art["rustbp_cpu_steps_per_s"] = ARTICLE_STEPS / median_time(cpu_article)
    if torch is not None:
        art["torch_cuda_steps_per_s"] = ARTICLE_STEPS / median_time(torch_article(torch), repeat=3)
        art["ratio_rustbp_gpu_over_torch_cuda"] = (
            art["rustbp_gpu_steps_per_s"] / art["torch_cuda_steps_per_s"]
        )
    results["article"] = art

    # 2. The wide net.
    reduced = software or args.quick
    hidden, batch, steps = (256, 256, 3) if reduced else (4096, 8192, 20)
    rng = np.random.default_rng(0)
    X = rng.normal(size=(batch, 784)).astype(np.float32)
    T = np.eye(10, dtype=np.float32)[rng.integers(0, 10, batch)]
    net = rustbp.Network(784, hidden, 10, device="gpu", optimizer=rustbp.SGD(lr=0.1), seed=0)
    wide: dict[str, Any] = {
        "n_in": 784,
        "hidden": hidden,
        "n_out": 10,
        "batch": batch,
        "steps": steps,
        "reduced": reduced,
        "dtype": "float32",
        "tf32": False,
    }
    wide["rustbp_gpu_samples_per_s"] = steps * batch / median_time(lambda: net.train(X, T, steps))
    if torch is not None:
        wide["torch_cuda_samples_per_s"] = steps * batch / median_time(torch_wide(torch, X, T, hidden, steps))
        wide["ratio_rustbp_gpu_over_torch_cuda"] = (
            wide["rustbp_gpu_samples_per_s"] / wide["torch_cuda_samples_per_s"]
        )
    results["wide"] = wide

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"gpu_{dt.datetime.now(dt.timezone.utc):%Y%m%dT%H%M%SZ}"
    stem.with_suffix(".json").write_text(json.dumps(results, indent=2) + "\n")

    def num(d: dict[str, Any], key: str, fmt: str = ".0f", suffix: str = "") -> str:
        return f"{d[key]:{fmt}}{suffix}" if key in d else "n/a"

    lines = [
        f"# GPU comparison, {results['date']}",
        "",
        f"- adapter: {adapter['name']} ({adapter['backend']}, {adapter['device_type']})"
        + (" **software adapter**" if software else ""),
        f"- nvidia-smi: {results['nvidia_smi'] or 'n/a'}",
        f"- torch: {torch_note}",
        "",
        "| workload | rustbp GPU | rustbp CPU | PyTorch CUDA eager | ratio (rustbp GPU / PyTorch) |",
        "| --- | --- | --- | --- | --- |",
        f"| article 2-2-2, {ARTICLE_STEPS} steps (steps/s) | {num(art, 'rustbp_gpu_steps_per_s')} | "
        f"{num(art, 'rustbp_cpu_steps_per_s')} | {num(art, 'torch_cuda_steps_per_s')} | "
        f"{num(art, 'ratio_rustbp_gpu_over_torch_cuda', '.1f', 'x')} |",
        f"| 784-{hidden}-10, batch {batch}, float32 (samples/s){' (reduced)' if reduced else ''} | "
        f"{num(wide, 'rustbp_gpu_samples_per_s')} | not run | {num(wide, 'torch_cuda_samples_per_s')} | "
        f"{num(wide, 'ratio_rustbp_gpu_over_torch_cuda', '.2f', 'x')} |",
    ]
    stem.with_suffix(".md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines[6:]))
    print(f"wrote {stem}.json and {stem}.md")


if __name__ == "__main__":
    main()
