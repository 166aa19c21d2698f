"""``Population.fit``'s loop and ``Population``'s files. The fit loop is ``Network.fit``'s (see
``training.fit``) with a member axis: every member's metrics, early stopping and best weights are its
own, and one core call trains every member still running."""

from __future__ import annotations

import io
import logging
import math
import os
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from . import _files, _rustbp
from .config import TrainingConfig, optimizer_from_core, random_seed
from .network import Network
from .schedules import Scheduler, started
from .training import Callback, History, _accuracy, _numbered_from, _Progress, epoch_by_epoch, held_out

if TYPE_CHECKING:
    from .population import Population, PopulationHistory

logger = logging.getLogger("rustbp")

#: The archive member that says what the file is.
FORMAT = "rustbp-population-1"


def fit(
    pop: Population,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    validation_data: tuple[npt.NDArray[Any], npt.NDArray[Any]] | None,
    callbacks: list[Callback],
    bootstrap: bool,
    lr_schedule: Any = None,
    sample_weight: npt.NDArray[Any] | None = None,
) -> PopulationHistory:
    from .population import PopulationHistory, bootstrap_rows

    x, y, validation_data, sample_weight = held_out(x, y, config, validation_data, sample_weight)
    size, core = pop.size, pop._core
    seed = random_seed() if config.seed is None else int(config.seed)
    seeds = [seed] * size
    first = pop._first_member
    rows = [bootstrap_rows(len(x), seed, first + i).tolist() for i in range(size)] if bootstrap else None
    histories = [History(config) for _ in range(size)]
    pop.history = history = PopulationHistory(histories)
    progress = _Progress(config.verbose, config.epochs, "epoch")
    if isinstance(lr_schedule, Scheduler):
        raise TypeError(
            "lr_schedule: a Population takes a schedule (StepLR, ExponentialLR, CosineAnnealingLR, "
            "ReduceLROnPlateau), started for each member at its own rate; got a started Scheduler"
        )
    schedulers: list[Scheduler] | None = None
    if lr_schedule is not None:
        schedulers = [s for o in pop._optimizers if (s := started(lr_schedule, o.lr)) is not None]
    per_epoch = epoch_by_epoch(config, validation_data, callbacks, progress, schedulers[0] if schedulers else None)
    weights = {} if sample_weight is None else {"sample_weight": sample_weight}
    try:
        if not per_epoch:
            _fit_at_once(pop, x, y, config, seeds, rows, schedulers, weights, histories)
        else:
            _fit_by_epoch(
                pop, x, y, config, seeds, rows, schedulers, weights, histories, validation_data, callbacks, progress
            )
    finally:
        # Every member's optimizer as the core holds it: a schedule leaves each at the rate of its next epoch.
        if schedulers is not None:
            pop._optimizers = [optimizer_from_core(core.config(i)["optimizer"]) for i in range(size)]
    return history


def _fit_at_once(
    pop: Population,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    seeds: list[int],
    rows: list[list[int]] | None,
    schedulers: list[Scheduler] | None,
    weights: dict[str, Any],
    histories: list[History],
) -> None:
    """Every epoch in one core call; a closed-form schedule's rates, every member's, computed ahead."""
    rates: list[list[float]] | None = None
    if schedulers is not None:
        rates = [[s.lr] + [s.step() for _ in range(config.epochs)] for s in schedulers]
    lrs = None if rates is None else [r[:-1] for r in rates]
    losses = pop._core.fit(x, y, config.epochs, config.batch_size, config.shuffle, seeds, 0, None, rows, lrs, **weights)
    for i, (h, row) in enumerate(zip(histories, losses)):
        h.history["loss"] = row.tolist()
        if rates is not None:
            h.history["lr"] = rates[i][:-1]
    if rates is not None:
        pop._core.set_lrs([r[-1] for r in rates])


def _fit_by_epoch(
    pop: Population,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    seeds: list[int],
    rows: list[list[int]] | None,
    schedulers: list[Scheduler] | None,
    weights: dict[str, Any],
    histories: list[History],
    validation_data: tuple[npt.NDArray[Any], npt.NDArray[Any]] | None,
    callbacks: list[Callback],
    progress: _Progress,
) -> None:
    """``training.fit``'s epoch loop with a member axis: metrics, early stopping and best weights each
    member's own; one core call per epoch trains the members still running."""
    size, core = pop.size, pop._core
    train_accuracy = config.accuracy is True
    val_accuracy = train_accuracy or (
        config.accuracy is None and validation_data is not None and pop._like._cross_entropy
    )
    monitor = "val_loss" if validation_data is not None else "loss"
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    active = np.ones(size, dtype=bool)
    best, wait = np.full(size, math.inf), np.zeros(size, dtype=int)
    best_weights: dict[str, np.ndarray] | None = None
    try:
        for epoch in range(config.epochs):
            lrs = None if schedulers is None else [[s.lr] for s in schedulers]
            with _numbered_from(epoch * steps_per_epoch, []):
                losses = core.fit(
                    x, y, 1, config.batch_size, config.shuffle, seeds, epoch, active.tolist(), rows, lrs, **weights
                )  # fmt: skip
            logs: dict[str, npt.NDArray[np.float64]] = {"loss": losses[:, 0]}
            if schedulers is not None:
                logs["lr"] = np.array([s.lr for s in schedulers])
            if train_accuracy:
                logs["accuracy"] = _accuracies(pop.forward(x), y)
            if validation_data is not None:
                logs["val_loss"] = core.loss(*validation_data)
                if val_accuracy:
                    logs["val_accuracy"] = _accuracies(pop.forward(validation_data[0]), validation_data[1])
            for k in logs:
                logs[k] = np.where(active, logs[k], np.nan)
            for i in np.flatnonzero(active):
                histories[i]._record({k: float(v[i]) for k, v in logs.items()})
            running = logs[monitor][active]
            summary = {"members": int(active.sum()), f"mean {monitor}": float(running.mean())}
            logger.info("epoch %d/%d: %s", epoch + 1, config.epochs, _summary(summary))
            progress.update(1, epoch + 1, summary)
            # Each value a (size,) array; a copy per callback, so none sees another's changes.
            stop = any([cb(epoch, {k: v.copy() for k, v in logs.items()}) is True for cb in callbacks])  # type: ignore[misc]
            if config.patience is not None:
                improved = active & (logs[monitor] < best - config.min_delta)
                best[improved], wait[improved] = logs[monitor][improved], 0
                for i in np.flatnonzero(improved):
                    histories[i].best_epoch = epoch
                if config.restore_best_weights and improved.any():
                    now = pop.get_weights()
                    if best_weights is None:
                        best_weights = now
                    for k in now:
                        best_weights[k][improved] = now[k][improved]
                waiting = active & ~improved
                wait[waiting] += 1
                done = waiting & (wait >= config.patience)
                for i in np.flatnonzero(done):
                    histories[i].stopped_early = epoch + 1 < config.epochs
                    logger.info("member %d stopped early after epoch %d", i, epoch + 1)
            running_now = active.copy()
            if config.patience is not None:
                active &= ~done
            if schedulers is not None:
                # As Network.fit: a member's schedule steps after each epoch it ran, its last included.
                for i in np.flatnonzero(running_now):
                    schedulers[i].step(float(logs[monitor][i]))
            if stop or not active.any():
                for i in np.flatnonzero(active):
                    histories[i].stopped_early = epoch + 1 < config.epochs
                break
    finally:
        progress.close()
    if best_weights is not None:
        held = [h.best_epoch is not None and h.best_epoch != h.epochs - 1 for h in histories]
        if any(held):
            now = pop.get_weights()
            for k in now:
                now[k][held] = best_weights[k][held]
            pop.set_weights(now)
    if schedulers is not None:
        core.set_lrs([s.lr for s in schedulers])


def _accuracies(outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> npt.NDArray[np.float64]:
    return np.array([_accuracy(o, targets) for o in outputs])


def _summary(logs: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" if isinstance(v, float) else f"{k}={v}" for k, v in logs.items())


def save(pop: Population, path: str | os.PathLike[str], optimizer: bool) -> None:
    """A zip archive (NumPy's .npz, read without pickle): every member as the safetensors bytes of
    ``Network.save``, and the stacked weights as plain arrays for other tools."""
    members = {
        f"member_{i}": np.frombuffer(_rustbp.core_to_safetensors(pop._core.member(i), optimizer), dtype=np.uint8)
        for i in range(pop.size)
    }
    weights = {f"weights_{k}": v for k, v in pop.get_weights().items()}
    arrays: dict[str, Any] = {"format": np.array(FORMAT), **members, **weights}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    _files.write_atomic(path, buffer.getvalue())


def load(cls: type[Population], path: str | os.PathLike[str], device: str) -> Population:
    name = os.fspath(path)
    try:
        with np.load(name, allow_pickle=False) as archive:
            files = archive.files if isinstance(archive, np.lib.npyio.NpzFile) else []
            known = "format" in files and str(archive["format"]) == FORMAT
            count = sum(1 for k in files if k.startswith("member_"))
            blobs = [archive[f"member_{i}"].tobytes() for i in range(count)] if known else []
    except (ValueError, zipfile.BadZipFile, KeyError, EOFError) as e:
        raise ValueError(f"{name}: not a rustbp population file ({e})") from None
    if not known or not blobs:
        raise ValueError(f"{name}: not a rustbp population file")
    nets = [Network._from_core(_rustbp.core_from_safetensors(b)) for b in blobs]
    if device != "cpu":
        nets = [n.to(device) for n in nets]  # type: ignore[arg-type]
    return cls.from_networks(nets)
