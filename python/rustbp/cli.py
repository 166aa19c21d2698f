"""``rustbp fit`` and ``rustbp predict``: train on a CSV file and predict with the saved model.

The network file is ``Network.save``'s; what the network alone cannot know (the feature columns, the
scaler, the class labels, the target's scale) goes in a JSON file beside it, ``MODEL.json`` for
``MODEL.safetensors``, because a rustbp file's metadata holds only the network. Reading uses the csv
module and NumPy, nothing else. Errors are one line on stderr and exit status 1.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import sys
from typing import Any

import numpy as np
import numpy.typing as npt

from .network import Network
from .optim import Adam

__all__ = ["add_arguments", "fit", "predict"]

#: A numeric target with at most this many distinct integer values is taken as class labels.
MAX_CLASSES = 20
SIDECAR_FORMAT = "rustbp-cli-model"


class CliError(Exception):
    """A user-facing error: printed as one line, no traceback."""


def add_arguments(sub: Any) -> None:
    """The ``fit`` and ``predict`` subcommands."""
    f = sub.add_parser(
        "fit",
        help="train a network on a CSV file and report train and test metrics",
        description="Train a network on a CSV file with a header row: every column but the target is a "
        "numeric feature (standardised). Classification or regression is chosen from the target column: "
        f"text labels, or integers with at most {MAX_CLASSES} distinct values, mean classification.",
    )
    f.add_argument("data", metavar="DATA.csv", help="the training data, with a header row")
    f.add_argument("--target", required=True, metavar="COLUMN", help="the column to predict")
    f.add_argument("--task", choices=("classification", "regression"), help="override the automatic choice")
    f.add_argument("--hidden", type=int, default=64, metavar="N", help="hidden units (default 64)")
    f.add_argument("--epochs", type=int, default=50, metavar="N", help="passes over the training rows (default 50)")
    f.add_argument("--lr", type=float, default=1e-3, help="Adam's learning rate (default 0.001)")
    f.add_argument("--batch-size", type=int, default=32, metavar="N", help="rows per step (default 32)")
    f.add_argument(
        "--test-size",
        type=float,
        default=0.2,
        metavar="FRACTION",
        help="fraction of rows held out to test (default 0.2)",
    )
    f.add_argument("--seed", type=int, metavar="N", help="for a reproducible split, initialisation and shuffling")
    f.add_argument("--save", metavar="MODEL.safetensors", help="write the model there, and MODEL.json beside it")
    p = sub.add_parser(
        "predict",
        help="predict with a model saved by rustbp fit",
        description="Predict the target of every row of a CSV file with a model saved by rustbp fit (which "
        "needs MODEL.json beside MODEL.safetensors). The file needs the training file's feature columns, "
        "in any order; other columns are ignored. Class labels are written as in the training file.",
    )
    p.add_argument("model", metavar="MODEL.safetensors", help="the model written by rustbp fit --save")
    p.add_argument("data", metavar="DATA.csv", help="rows to predict, with a header row")
    p.add_argument("--out", metavar="PREDS.csv", help="write the predictions there (default: standard output)")


def read_csv(path: str) -> tuple[list[str], list[list[str]]]:
    """The header and the rows of ``path``; CliError for a missing, unreadable, empty or ragged file."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = [row for row in csv.reader(f) if row]
    except FileNotFoundError:
        raise CliError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise CliError(f"{path}: is a folder, not a CSV file") from None
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise CliError(f"{path}: cannot read it as CSV ({e})") from None
    if not rows:
        raise CliError(f"{path}: the file is empty")
    header, data = [c.strip() for c in rows[0]], rows[1:]
    if not data:
        raise CliError(f"{path}: no data rows after the header")
    for i, row in enumerate(data):
        if len(row) != len(header):
            raise CliError(f"{path}: row {i + 1} has {len(row)} fields, the header has {len(header)}")
    return header, data


def _column(header: list[str], name: str, path: str) -> int:
    if name not in header:
        raise CliError(f"{path}: no column {name!r}; the columns are {', '.join(map(repr, header))}")
    return header.index(name)


def _features(header: list[str], rows: list[list[str]], names: list[str], path: str) -> npt.NDArray[np.float64]:
    """The ``names`` columns of ``rows`` as floats; CliError naming the row and column of a non-number."""
    idx = [_column(header, n, path) for n in names]
    out = np.empty((len(rows), len(idx)))
    for i, row in enumerate(rows):
        for j, k in enumerate(idx):
            try:
                out[i, j] = float(row[k])
            except ValueError:
                raise CliError(
                    f"{path}: row {i + 1}, column {names[j]!r}: {row[k]!r} is not a number (features must be numeric)"
                ) from None
            if not math.isfinite(out[i, j]):
                raise CliError(f"{path}: row {i + 1}, column {names[j]!r}: {row[k]!r} is not a finite number")
    return out


def _task(values: list[str]) -> str:
    """classification for text labels or few distinct integers, else regression."""
    try:
        numbers = [float(v) for v in values]
    except ValueError:
        return "classification"
    if all(n.is_integer() for n in numbers) and len(set(numbers)) <= MAX_CLASSES:
        return "classification"
    return "regression"


def _sidecar(model: str) -> str:
    return os.path.splitext(model)[0] + ".json"


def fit(args: argparse.Namespace) -> int:
    for name, value in (("--hidden", args.hidden), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value < 1:
            raise CliError(f"{name}: expected a positive integer, got {value}")
    if not (math.isfinite(args.lr) and args.lr > 0):
        raise CliError(f"--lr: expected a number > 0, got {args.lr}")
    if not 0 <= args.test_size < 1:
        raise CliError(f"--test-size: expected a fraction in [0, 1), got {args.test_size}")
    if args.save and _sidecar(args.save) == args.save:
        raise CliError(f"--save: expected a .safetensors path, got {args.save}")
    if args.save and not os.path.isdir(os.path.dirname(os.path.abspath(args.save))):
        raise CliError(f"--save: no such folder {os.path.dirname(os.path.abspath(args.save))}")  # before training
    header, rows = read_csv(args.data)
    t = _column(header, args.target, args.data)
    names = [c for c in header if c != args.target]
    if not names:
        raise CliError(f"{args.data}: no feature columns besides the target {args.target!r}")
    X = _features(header, rows, names, args.data)
    values = [row[t].strip() for row in rows]
    task = args.task or _task(values)
    labels: list[str] | None = None
    if task == "classification":
        labels = sorted(set(values), key=_label_order)
        if len(labels) < 2:
            raise CliError(f"{args.data}: column {args.target!r} has one value only ({labels[0]!r}): nothing to learn")
        index = {label: i for i, label in enumerate(labels)}
        Y = np.array([index[v] for v in values])
    else:
        try:
            Y = np.array([float(v) for v in values])
        except ValueError:
            raise CliError(f"{args.data}: --task regression needs numbers in column {args.target!r}") from None
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(rows))
    n_test = round(len(rows) * args.test_size)
    if n_test and len(rows) - n_test < 1:
        raise CliError(f"--test-size: {args.test_size} of {len(rows)} rows leaves none to train on")
    train, test = order[n_test:], order[:n_test]
    mean, scale = X[train].mean(axis=0), X[train].std(axis=0)
    scale[scale == 0] = 1.0  # a constant column stays constant: 0 after centring
    Xs = (X - mean) / scale
    seed = int(rng.integers(2**63)) if args.seed is None else args.seed
    if labels is not None:
        net = Network(len(names), args.hidden, len(labels), hidden_activation="relu", output_activation="softmax",
                      loss="cross_entropy", optimizer=Adam(lr=args.lr), seed=seed)  # fmt: skip
        targets = Y
        y_mean, y_scale = 0.0, 1.0
    else:
        y_mean, y_scale = float(Y[train].mean()), float(Y[train].std()) or 1.0
        net = Network(len(names), args.hidden, 1, hidden_activation="relu", output_activation="identity",
                      loss="mse", optimizer=Adam(lr=args.lr), seed=seed)  # fmt: skip
        targets = ((Y - y_mean) / y_scale).reshape(-1, 1)
    what = f"{len(labels)} classes" if labels is not None else "regression"
    print(f"{args.data}: {len(train)} training rows, {len(test)} test rows, {len(names)} features; "
          f"target {args.target!r}: {task} ({what})")  # fmt: skip
    net.fit(Xs[train], targets[train], args.epochs, batch_size=args.batch_size, seed=seed, verbose=True)
    for split, idx in (("train", train), ("test", test)):
        if len(idx):
            print(f"{split}: {_metrics(net, Xs[idx], Y[idx], labels, y_mean, y_scale)}")
    if args.save:
        info = {
            "format": SIDECAR_FORMAT, "version": 1, "task": task, "target": args.target, "features": names,
            "mean": mean.tolist(), "scale": scale.tolist(), "labels": labels,
            "target_mean": y_mean, "target_scale": y_scale,
        }  # fmt: skip
        try:
            net.save(args.save, optimizer=False)
            with open(_sidecar(args.save), "w", encoding="utf-8") as f:
                json.dump(info, f, indent=1)
        except OSError as e:
            raise CliError(f"--save: cannot write {args.save} ({e.strerror})") from None
        print(f"saved {args.save} and {_sidecar(args.save)} (features, scaler and labels)")
    return 0


def _label_order(label: str) -> tuple[bool, float, str]:
    """Numbers in numeric order (2 before 10), then text in text order."""
    try:
        return (False, float(label), label)
    except ValueError:
        return (True, 0.0, label)


def _metrics(
    net: Network, X: npt.NDArray[np.float64], Y: npt.NDArray[Any], labels: list[str] | None, mean: float, scale: float
) -> str:
    if labels is not None:
        accuracy = float(np.mean(net.predict(X) == Y))
        return f"accuracy {accuracy:.4f}, cross-entropy {net.loss(X, Y):.4g}"
    pred = net.forward(X)[:, 0] * scale + mean
    err = pred - Y
    total = float(np.sum((Y - Y.mean()) ** 2))
    r2 = 1 - float(np.sum(err**2)) / total if total > 0 else float("nan")
    return f"RMSE {math.sqrt(float(np.mean(err**2))):.4g}, MAE {float(np.mean(np.abs(err))):.4g}, R^2 {r2:.4f}"


def predict(args: argparse.Namespace) -> int:
    sidecar = _sidecar(args.model)
    if not os.path.exists(args.model):
        raise CliError(f"{args.model}: no such file")
    try:
        with open(sidecar, encoding="utf-8") as f:
            info = json.load(f)
    except FileNotFoundError:
        raise CliError(f"{sidecar}: no such file; rustbp predict needs the JSON file rustbp fit --save wrote") from None
    except (OSError, ValueError) as e:
        raise CliError(f"{sidecar}: cannot read it ({e})") from None
    if not isinstance(info, dict) or info.get("format") != SIDECAR_FORMAT:
        raise CliError(f"{sidecar}: not a file written by rustbp fit --save")
    try:
        net = Network.load(args.model)
    except (OSError, ValueError) as e:
        raise CliError(str(e)) from None
    header, rows = read_csv(args.data)
    X = (_features(header, rows, info["features"], args.data) - info["mean"]) / np.asarray(info["scale"])
    labels = info["labels"]
    if labels is not None:
        preds = [labels[i] for i in net.predict(X)]
    else:
        preds = [repr(float(v)) for v in net.forward(X)[:, 0] * info["target_scale"] + info["target_mean"]]
    if not args.out:
        _write(sys.stdout, info["target"], preds)
        return 0
    try:
        with open(args.out, "w", newline="", encoding="utf-8") as f:
            _write(f, info["target"], preds)
    except OSError as e:
        raise CliError(f"--out: cannot write {args.out} ({e.strerror})") from None
    print(f"wrote {len(preds)} predictions to {args.out}", file=sys.stderr)
    return 0


def _write(f: Any, name: str, preds: list[str]) -> None:
    writer = csv.writer(f)
    writer.writerow([name])
    writer.writerows([p] for p in preds)
