"""Writes tests/golden/torch_trajectories.json: short training runs computed by PyTorch (autograd and
torch.optim, float64, CPU) from fixed initial weights, for every activation, loss, bias mode and
optimizer setting rustbp has, and epochs of mini-batch training under each learning-rate schedule
(torch.optim.lr_scheduler, stepped after every epoch). tests/test_golden.py replays them with rustbp,
without PyTorch.

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
CASES: list[dict[str, Any]] = (
    [
        {"hidden": HIDDEN[i % 4], "output": o, "loss": loss, "bias": "per_neuron", "train_bias": True, "opt": opt}
        for j, opt in enumerate(OPTIMIZERS)
        for i, (o, loss) in enumerate(OUTPUT_LOSS, start=j)
    ]
    + [
        {"hidden": "tanh", "output": "sigmoid", "loss": "half_sse", "bias": bias, "train_bias": trained, "opt": opt}
        for opt in ("momentum", "adam")
        for bias, trained in (("shared", True), ("shared", False), ("none", True), ("per_neuron", False))
    ]
    + [  # appended, so that the cases above keep their index and so their inputs
        {
            "hidden": h,
            "output": "sigmoid",
            "loss": "binary_cross_entropy",
            "bias": "per_neuron",
            "train_bias": True,
            "opt": opt,
        }
        for h, opt in zip(HIDDEN + HIDDEN[:1], OPTIMIZERS)
    ]
)
# Epochs of fit(shuffle=False) over ROWS rows in batches of EPOCH_BATCH (the last one smaller), the
# scheduler stepped after each epoch; ReduceLROnPlateau with the epoch's mean training loss, which is
# what fit monitors without validation data. Its threshold is large so that the rate does fall.
ROWS, EPOCH_BATCH, EPOCHS = 10, 4, 6
SCHEDULES: list[dict[str, Any]] = [
    {"name": "StepLR", "step_size": 2, "gamma": 0.5},
    {"name": "ExponentialLR", "gamma": 0.7},
    {"name": "CosineAnnealingLR", "T_max": 4, "eta_min": 0.01},
    {"name": "ReduceLROnPlateau", "factor": 0.5, "patience": 1, "threshold": 0.05, "cooldown": 1},
]
SCHEDULED: list[dict[str, Any]] = [
    {
        "hidden": "tanh",
        "output": "sigmoid",
        "loss": "mse",
        "bias": "per_neuron",
        "train_bias": True,
        "opt": opt,
        "schedule": s,
    }
    for s, opt in zip(SCHEDULES, ("momentum", "adam", "nesterov", "sgd"))
] + [
    {
        "hidden": "relu",
        "output": "sigmoid",
        "loss": "binary_cross_entropy",
        "bias": "shared",
        "train_bias": True,
        "opt": "adam",
        "schedule": SCHEDULES[3],
    },
    {
        "hidden": "sigmoid",
        "output": "softmax",
        "loss": "cross_entropy",
        "bias": "per_neuron",
        "train_bias": True,
        "opt": "momentum",
        "schedule": SCHEDULES[2],
    },
]


def inputs(case: dict[str, Any], index: int, rows: int = BATCH) -> dict[str, Any]:
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
    X = rng.normal(size=(rows, n_in))
    if case["output"] == "softmax":
        e = np.exp(2 * rng.normal(size=(rows, n_out)))
        T = e / e.sum(axis=1, keepdims=True)
    elif case["loss"] == "binary_cross_entropy":  # probabilities, the ends 0 and 1 included
        T = rng.uniform(0, 1, (rows, n_out))
        T[0, 0], T[1, -1] = 0.0, 1.0
    elif case["output"] == "sigmoid":
        T = rng.uniform(0.05, 0.95, (rows, n_out))
    elif case["output"] == "tanh":
        T = rng.uniform(-0.9, 0.9, (rows, n_out))
    else:
        T = rng.normal(size=(rows, n_out))
    if case["output"] == "softmax":  # rows of probabilities that still sum to 1 after rounding
        T = np.round(T, 4)
        T[:, -1] = np.round(1 - T[:, :-1].sum(axis=1), 4)
    rounded = {k: np.round(v, 4).tolist() for k, v in w.items()}
    return {"weights": rounded, "X": np.round(X, 4).tolist(), "T": np.round(T, 4).tolist()}


def torch_setup(case: dict[str, Any], data: dict[str, Any]) -> tuple[Any, Any, Any]:
    """The case's parameters (float64 leaves), its optimizer and its loss as a function of a batch."""
    import torch
    from torch.nn import functional

    dtype = torch.float64
    params = {k: torch.tensor(v, dtype=dtype, requires_grad=True) for k, v in data["weights"].items()}
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

    def loss_of(X: Any, T: Any) -> Any:
        h = acts[case["hidden"]](X @ params["w1"].T + params.get("b1", zero))
        z2 = h @ params["w2"].T + params.get("b2", zero)
        if case["loss"] == "cross_entropy":
            return functional.cross_entropy(z2, T)  # softmax and the mean NLL of probability targets
        if case["loss"] == "binary_cross_entropy":  # BCELoss of sigmoid(z2), from the logits
            return functional.binary_cross_entropy_with_logits(z2, T)
        o = acts[case["output"]](z2)
        return functional.mse_loss(o, T) if case["loss"] == "mse" else 0.5 * ((o - T) ** 2).sum() / len(X)

    return params, opt, loss_of


def run_torch(case: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """The case's STEPS training steps in PyTorch: the loss before each step and the final weights."""
    import torch

    params, opt, loss_of = torch_setup(case, data)
    X, T = torch.tensor(data["X"], dtype=torch.float64), torch.tensor(data["T"], dtype=torch.float64)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = loss_of(X, T)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return {"losses": losses, "final": {k: p.detach().numpy().tolist() for k, p in params.items()}}


def run_torch_epochs(case: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
    """EPOCHS epochs of in-order mini-batches under the case's scheduler, stepped after each epoch: each
    epoch's rate and mean loss over its samples, and the final weights."""
    import torch
    from torch.optim import lr_scheduler

    params, opt, loss_of = torch_setup(case, data)
    X, T = torch.tensor(data["X"], dtype=torch.float64), torch.tensor(data["T"], dtype=torch.float64)
    spec = {k: v for k, v in case["schedule"].items() if k != "name"}
    scheduler = getattr(lr_scheduler, case["schedule"]["name"])(opt, **spec)
    losses, rates = [], []
    for _ in range(EPOCHS):
        rates.append(opt.param_groups[0]["lr"])
        total = 0.0
        for start in range(0, len(X), EPOCH_BATCH):
            opt.zero_grad()
            loss = loss_of(X[start : start + EPOCH_BATCH], T[start : start + EPOCH_BATCH])
            loss.backward()
            opt.step()
            total += loss.item() * len(X[start : start + EPOCH_BATCH])
        losses.append(total / len(X))
        if case["schedule"]["name"] == "ReduceLROnPlateau":
            scheduler.step(losses[-1])
        else:
            scheduler.step()
    final = {k: p.detach().numpy().tolist() for k, p in params.items()}
    return {"losses": losses, "lr": rates, "final": final}


def name_of(case: dict[str, Any]) -> str:
    name = f"{case['hidden']}-{case['output']}-{case['loss']}-{case['bias']}"
    name += f"{'' if case['train_bias'] else '-frozen'}-{case['opt']}"
    return name + (f"-{case['schedule']['name']}" if "schedule" in case else "")


def compute() -> dict[str, Any]:
    import torch

    cases = []
    for index, case in enumerate(CASES):
        data = inputs(case, index)
        cases.append(
            {"name": name_of(case), **case, "optimizer": OPTIMIZERS[case["opt"]], **data, **run_torch(case, data)}
        )
    scheduled = []
    for index, case in enumerate(SCHEDULED, start=len(CASES)):
        data = inputs(case, index, ROWS)
        scheduled.append(
            {
                "name": name_of(case),
                **case,
                "optimizer": OPTIMIZERS[case["opt"]],
                **data,
                **run_torch_epochs(case, data),
            }
        )
    return {
        "torch": torch.__version__,
        "widths": list(WIDTHS),
        "steps": STEPS,
        "epochs": EPOCHS,
        "batch_size": EPOCH_BATCH,
        "cases": cases,
        "scheduled": scheduled,
    }


def differences(old: dict[str, Any], new: dict[str, Any], rtol: float) -> list[str]:
    """Where two fixture sets differ: inputs exactly, results beyond ``rtol`` of each tensor's scale."""
    found = []
    for group in ("cases", "scheduled"):
        if len(old.get(group, [])) != len(new[group]):
            found.append(f"{group}: {len(old.get(group, []))} committed, {len(new[group])} computed")
            continue
        for a, b in zip(old[group], new[group]):
            keys = ["name", "hidden", "output", "loss", "bias", "train_bias", "optimizer", "weights", "X", "T"]
            for key in keys + (["schedule"] if group == "scheduled" else []):
                if a[key] != b[key]:
                    found.append(f"{a['name']}: {key} differs")
            pairs = [(k, a[k], b[k]) for k in ("losses", "lr") if k in b]
            pairs += [(k, a["final"][k], b["final"][k]) for k in b["final"]]
            for what, x, y in pairs:
                x, y = np.asarray(x), np.asarray(y)
                if x.shape != y.shape or np.abs(x - y).max() > rtol * max(np.abs(y).max(), 1e-300):
                    found.append(f"{a['name']}: {what} differs")
    for key in ("widths", "steps", "epochs", "batch_size"):
        if old.get(key) != new[key]:
            found.append(f"{key} differs")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true", help="compare with the committed file; write nothing")
    args = parser.parse_args(argv)
    new = compute()
    if args.check:
        # PyTorch versions and CPUs may round differently in the last bits; anything more is a change.
        found = differences(json.loads(FIXTURE.read_text()), new, rtol=1e-12)
        count = len(new["cases"]) + len(new["scheduled"])
        print("\n".join(found) or f"{FIXTURE.name}: {count} cases reproduced (torch {new['torch']})")
        return int(bool(found))
    FIXTURE.parent.mkdir(exist_ok=True)
    # One case per line: reviewable diffs, exact floats (json writes repr, which round-trips).
    groups = ("cases", "scheduled")
    head = json.dumps({k: v for k, v in new.items() if k not in groups})[:-1]
    body = ", ".join(
        f'"{g}": [\n' + ",\n".join(json.dumps(c, separators=(",", ":")) for c in new[g]) + "\n]" for g in groups
    )
    FIXTURE.write_text(f"{head}, {body}}}\n")
    print(f"wrote {FIXTURE} ({len(new['cases'])} step cases, {len(new['scheduled'])} scheduled, torch {new['torch']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
