"""Writes tests/golden/torch_trajectories.json: short training runs computed by PyTorch (autograd and
torch.optim, float64, CPU) from fixed initial weights, for every activation, loss, bias mode and
optimizer setting rustbp has. tests/test_golden.py replays them with rustbp, without PyTorch.

    python scripts/golden_torch.py           # (re)write the fixtures (needs torch and numpy)
    python scripts/golden_torch.py --check   # recompute them and compare with the committed file

The network is written with torch's functional ops rather than nn.Linear, so that a bias shared by a
layer (one parameter broadcast over its neurons, the article's) and frozen biases are plain PyTorch too.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import numpy as np

FIXTURE = Path(__file__).resolve().parent.parent / "tests" / "golden" / "torch_trajectories.json"
HIDDEN = ["sigmoid", "tanh", "relu", "identity"]
OUTPUT_LOSS = [(o, loss) for o in HIDDEN for loss in ("half_sse", "mse")] + [("softmax", "cross_entropy")]
OPTIMIZERS: dict[str, dict[str, Any]] = {
    "sgd": {"name": "sgd", "lr": 0.1},
    "momentum": {"name": "sgd", "lr": 0.05, "momentum": 0.9},
    "nesterov": {"name": "sgd", "lr": 0.05, "momentum": 0.8, "nesterov": True, "weight_decay": 0.02},
    "weight_decay": {"name": "sgd", "lr": 0.1, "weight_decay": 0.1},
    "adam": {"name": "adam", "lr": 0.02, "betas": [0.8, 0.99], "eps": 1e-8, "weight_decay": 0.01},
}
WIDTHS = (3, 4, 3)
BATCH = 4
STEPS = 5
# Every optimizer with every output activation and loss (the hidden activation cycles through all four),
# then the bias modes under the optimizers with state.
CASES: list[dict[str, Any]] = [
    {"hidden": HIDDEN[i % 4], "output": o, "loss": loss, "bias": "per_neuron", "train_bias": True, "opt": opt}
    for j, opt in enumerate(OPTIMIZERS)
    for i, (o, loss) in enumerate(OUTPUT_LOSS, start=j)
] + [
    {"hidden": "tanh", "output": "sigmoid", "loss": "half_sse", "bias": bias, "train_bias": trained, "opt": opt}
    for opt in ("momentum", "adam")
    for bias, trained in (("shared", True), ("shared", False), ("none", True), ("per_neuron", False))
]


def inputs(case: dict[str, Any], index: int) -> dict[str, Any]:
    """Initial weights, X and T for a case, rounded to 4 decimals so that the file stays short."""
    rng = np.random.default_rng(1000 + index)
    n_in, n_hidden, n_out = WIDTHS
    w: dict[str, Any] = {
        "w1": rng.uniform(-1, 1, (n_hidden, n_in)) / np.sqrt(n_in),
        "w2": rng.uniform(-1, 1, (n_out, n_hidden)) / np.sqrt(n_hidden),
    }
    if case["bias"] != "none":
        shared = case["bias"] == "shared"
        w["b1"] = rng.uniform(-0.5, 0.5, 1 if shared else n_hidden)
        w["b2"] = rng.uniform(-0.5, 0.5, 1 if shared else n_out)
    X = rng.normal(size=(BATCH, n_in))
    if case["output"] == "softmax":
        e = np.exp(2 * rng.normal(size=(BATCH, n_out)))
        T = e / e.sum(axis=1, keepdims=True)
    elif case["output"] == "sigmoid":
        T = rng.uniform(0.05, 0.95, (BATCH, n_out))
    elif case["output"] == "tanh":
        T = rng.uniform(-0.9, 0.9, (BATCH, n_out))
    else:
        T = rng.normal(size=(BATCH, n_out))
    if case["output"] == "softmax":  # rows of probabilities that still sum to 1 after rounding
        T = np.round(T, 4)
        T[:, -1] = np.round(1 - T[:, :-1].sum(axis=1), 4)
    rounded = {k: np.round(v, 4).tolist() for k, v in w.items()}
    return {"weights": rounded, "X": np.round(X, 4).tolist(), "T": np.round(T, 4).tolist()}


def run_torch(case: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The case's STEPS training steps in PyTorch: the loss before each step and the final weights."""
    import torch
    from torch.nn import functional

    dtype = torch.float64
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in data["weights"].items()}
    X, T = torch.tensor(data["X"], dtype=dtype), torch.tensor(data["T"], dtype=dtype)
    acts = {"sigmoid": torch.sigmoid, "tanh": torch.tanh, "relu": torch.relu, "identity": lambda z: z}
    trained = [p for k, p in params.items() if k in ("w1", "w2") or case["train_bias"]]
    spec = OPTIMIZERS[case["opt"]]
    if spec["name"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(
            trained, lr=spec["lr"], betas=tuple(spec["betas"]), eps=spec["eps"], weight_decay=spec["weight_decay"]
        )
    else:
        opt = torch.optim.SGD(
            trained,
            lr=spec["lr"],
            momentum=spec.get("momentum", 0.0),
            nesterov=spec.get("nesterov", False),
            weight_decay=spec.get("weight_decay", 0.0),
        )
    zero = torch.zeros((), dtype=dtype)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        h = acts[case["hidden"]](X @ params["w1"].T + params.get("b1", zero))
        z2 = h @ params["w2"].T + params.get("b2", zero)
        if case["loss"] == "cross_entropy":
            loss = functional.cross_entropy(z2, T)  # softmax and the mean NLL of probability targets
        else:
            o = acts[case["output"]](z2)
            loss = functional.mse_loss(o, T) if case["loss"] == "mse" else 0.5 * ((o - T) ** 2).sum() / len(X)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "final": {k: p.detach().numpy().tolist() for k, p in params.items()}}


def compute() -> dict[str, Any]:
    import torch

    cases = []
    for index, case in enumerate(CASES):
        data = inputs(case, index)
        name = f"{case['hidden']}-{case['output']}-{case['loss']}-{case['bias']}"
        name += f"{'' if case['train_bias'] else '-frozen'}-{case['opt']}"
        cases.append({"name": name, **case, "optimizer": OPTIMIZERS[case["opt"]], **data, **run_torch(case, data)})
    return {"torch": torch.__version__, "widths": list(WIDTHS), "steps": STEPS, "cases": cases}


def differences(old: dict[str, Any], new: dict[str, Any], rtol: float) -> list[str]:
    """Where two fixture sets differ: inputs exactly, results beyond ``rtol`` of each tensor's scale."""
    if len(old["cases"]) != len(new["cases"]):
        return [f"{len(old['cases'])} cases committed, {len(new['cases'])} computed"]
    found = []
    for a, b in zip(old["cases"], new["cases"]):
        for key in ("name", "hidden", "output", "loss", "bias", "train_bias", "optimizer", "weights", "X", "T"):
            if a[key] != b[key]:
                found.append(f"{a['name']}: {key} differs")
        pairs = [("losses", a["losses"], b["losses"])] + [(k, a["final"][k], b["final"][k]) for k in b["final"]]
        for what, x, y in pairs:
            x, y = np.asarray(x), np.asarray(y)
            if x.shape != y.shape or np.abs(x - y).max() > rtol * max(np.abs(y).max(), 1e-300):
                found.append(f"{a['name']}: {what} differs")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file; write nothing")
    args = parser.parse_args(argv)
    new = compute()
    if args.check:
        # PyTorch versions and CPUs may round differently in the last bits; anything more is a change.
        found = differences(json.loads(FIXTURE.read_text()), new, rtol=1e-12)
        print("\n".join(found) or f"{FIXTURE.name}: {len(new['cases'])} cases reproduced (torch {new['torch']})")
        return int(bool(found))
    FIXTURE.parent.mkdir(exist_ok=True)
    # One case per line: reviewable diffs, exact floats (json writes repr, which round-trips).
    lines = ",\n".join(json.dumps(c, separators=(",", ":")) for c in new["cases"])
    head = json.dumps({k: v for k, v in new.items() if k != "cases"})[:-1]
    FIXTURE.write_text(f'{head}, "cases": [\n{lines}\n]}}\n')
    print(f"wrote {FIXTURE} ({len(new['cases'])} cases, torch {new['torch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
