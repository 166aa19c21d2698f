"""The training loops around the core: ``fit`` one epoch at a time (validation, early stopping,
callbacks, learning-rate schedules, a ``History``), ``train`` in chunks that log the loss every N steps,
and ``verbose``'s progress. The Rust core only returns metrics; everything reported is reported from here.

Epochs are numbered from 1 in text (log lines, progress, messages) and from 0 in code (the ``epoch`` a
callback gets, ``History.best_epoch``, indices into the ``History`` arrays)."""

from __future__ import annotations

import contextlib
import copy
import html
import importlib
import logging
import math
import sys
from collections.abc import Iterator, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, Callable, Optional, cast, overload

import numpy as np
import numpy.typing as npt

from ._rustbp import TrainingDivergedError
from .config import TrainingConfig, random_seed
from .schedules import CosineAnnealingLR, ExponentialLR, StepLR

if TYPE_CHECKING:
    from .network import Network
    from .schedules import Scheduler

__all__ = ["Callback", "History"]

logger = logging.getLogger("rustbp")

#: Called after every epoch as ``callback(epoch, logs)`` (epoch counts from 0, so the first epoch,
#: "epoch 1" in the log, is 0; ``logs`` maps ``loss``, ``val_loss``, ``accuracy``, ``val_accuracy`` and,
#: with a learning-rate schedule, ``lr`` (the epoch's rate) to this epoch's values, where recorded).
#: Returning ``True`` stops training after this epoch.
Callback = Callable[[int, "dict[str, float]"], Optional[bool]]

#: Schedules whose rates do not depend on the loss, which the core can be given ahead.
CLOSED_FORM = (StepLR, ExponentialLR, CosineAnnealingLR)

#: The progress bar waits this long before it appears, so short runs never show one.
BAR_DELAY_S = 0.5


class History:
    """What one ``fit`` call recorded, per epoch: ``loss`` (the mean training loss of the epoch, from the
    forward passes of its steps), and where recorded ``val_loss``, ``accuracy``, ``val_accuracy``.

    For backward compatibility it also behaves like the array of training losses that ``fit`` used to
    return: ``len(h)``, ``h[0]``, ``h.shape``, ``np.asarray(h)``, and array methods such as ``h.mean()``
    or ``h.tolist()``.
    """

    def __init__(self, config: TrainingConfig) -> None:
        self.config = config
        #: Metric name -> one value per epoch run.
        self.history: dict[str, list[float]] = {}
        #: The epoch (from 0) with the best monitored loss, when early stopping was on.
        self.best_epoch: int | None = None
        #: Whether early stopping or a callback ended training before ``config.epochs``.
        self.stopped_early = False

    def _record(self, logs: dict[str, float]) -> None:
        for k, v in logs.items():
            self.history.setdefault(k, []).append(v)

    def _metric(self, name: str) -> npt.NDArray[np.float64] | None:
        values = self.history.get(name)
        return None if values is None else np.array(values, dtype=np.float64)

    @property
    def loss(self) -> npt.NDArray[np.float64]:
        return np.array(self.history.get("loss", []), dtype=np.float64)

    @property
    def val_loss(self) -> npt.NDArray[np.float64] | None:
        return self._metric("val_loss")

    @property
    def accuracy(self) -> npt.NDArray[np.float64] | None:
        return self._metric("accuracy")

    @property
    def val_accuracy(self) -> npt.NDArray[np.float64] | None:
        return self._metric("val_accuracy")

    @property
    def lr(self) -> npt.NDArray[np.float64] | None:
        """Each epoch's learning rate, where a schedule set it."""
        return self._metric("lr")

    @property
    def epochs(self) -> int:
        """How many epochs ran."""
        return len(self.history.get("loss", []))

    # -- the array of training losses ----------------------------------------------------------------
    @property
    def shape(self) -> tuple[int]:
        return (self.epochs,)

    @property
    def dtype(self) -> np.dtype[np.float64]:
        return np.dtype(np.float64)

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> npt.NDArray[Any]:
        return self.loss if dtype is None else self.loss.astype(dtype)

    def __len__(self) -> int:
        return self.epochs

    @overload
    def __getitem__(self, index: int) -> float: ...
    @overload
    def __getitem__(self, index: slice) -> npt.NDArray[np.float64]: ...
    @overload
    def __getitem__(self, index: Any) -> Any: ...
    def __getitem__(self, index: Any) -> Any:
        # Only a single position gives a float; slices, tuples, masks and None index the array as NumPy
        # does (matplotlib takes History for an array by its shape and indexes it with [:, None]).
        if isinstance(index, (int, np.integer)):
            return float(self.loss[index])
        return self.loss[index]

    def __iter__(self) -> Iterator[float]:
        return iter(self.history.get("loss", []))

    def __getattr__(self, name: str) -> Any:
        # Only reached for names History lacks: ndarray methods of the losses (mean, min, tolist...).
        if name.startswith("_") or name == "history":
            raise AttributeError(name)
        return getattr(self.loss, name)

    # -- pictures -------------------------------------------------------------------------------------
    def _curves(self) -> dict[str, npt.NDArray[np.float64]]:
        return {k: np.array(v, dtype=np.float64) for k, v in self.history.items() if k.endswith("loss")}

    def to_svg(self) -> str:
        """The loss curves (training and validation) against the epoch, as SVG; the best epoch marked."""
        from ._svg import curve_svg

        return curve_svg(self._curves(), "epoch", mark=self.best_epoch, title=repr(self))

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div>{self.to_svg()}<pre>{html.escape(repr(self))}</pre></div>"

    def plot(self, ax: Any = None) -> Any:
        """The loss curves with matplotlib, on ``ax`` or the current axes; returns the axes."""
        try:
            plt = importlib.import_module("matplotlib.pyplot")
        except ImportError:
            raise ImportError("History.plot needs matplotlib: pip install matplotlib") from None
        if ax is None:
            ax = plt.gca()
        for name, values in self._curves().items():
            ax.plot(np.arange(len(values)), values, label=name)
        if self.best_epoch is not None:
            ax.axvline(self.best_epoch, color="grey", linestyle="--", label=f"best epoch {self.best_epoch}")
        ax.set_xlabel("epoch")
        ax.set_ylabel("loss")
        ax.legend()
        return ax

    def __repr__(self) -> str:
        last = ", ".join(f"{k}={v[-1]:.6g}" for k, v in self.history.items() if v)
        extra = f", best_epoch={self.best_epoch}" if self.best_epoch is not None else ""
        extra += ", stopped_early=True" if self.stopped_early else ""
        return f"History(epochs={self.epochs}{', ' if last else ''}{last}{extra})"


def _in_notebook() -> bool:
    """Whether this runs in a Jupyter kernel (IPython is imported there before any user code)."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)()
    return shell is not None and "IPKernelApp" in getattr(shell, "config", {})


class _Progress:
    """What ``verbose=True`` shows: a tqdm bar on a terminal, tqdm's widget in Jupyter (``tqdm.auto``),
    and where neither can be drawn (output redirected to a file or a pipe, or no tqdm installed) one
    plain line per update on stderr."""

    def __init__(self, verbose: bool, total: int, unit: str) -> None:
        self.total, self.unit, self.bar = total, unit, None
        self.lines = verbose
        notebook = verbose and _in_notebook()
        if notebook or (verbose and sys.stderr.isatty()):
            try:
                tqdm = importlib.import_module("tqdm.auto" if notebook else "tqdm").tqdm
            except ImportError:
                return
            self.bar = tqdm(total=total, unit=unit, delay=BAR_DELAY_S, leave=False, dynamic_ncols=True)
            self.lines = False

    @property
    def active(self) -> bool:
        return self.lines or self.bar is not None

    def update(self, n: int, done: int, logs: dict[str, float]) -> None:
        """``n`` more units done, ``done`` in all (counted from 1), with the metrics to show."""
        if self.bar is not None:
            self.bar.set_postfix(logs, refresh=False)
            self.bar.update(n)
        elif self.lines:
            print(f"{self.unit} {done}/{self.total}: {_format(logs)}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _format(logs: dict[str, float]) -> str:
    return ", ".join(f"{k}={v:.6g}" for k, v in logs.items())


def _accuracy(outputs: npt.NDArray[Any], targets: npt.NDArray[Any]) -> float:
    if outputs.shape[1] == 1:  # one output: a 0/1 target, thresholded at 0.5
        return float(np.mean((outputs[:, 0] >= 0.5) == (targets[:, 0] >= 0.5)))
    return float(np.mean(np.argmax(outputs, axis=1) == np.argmax(targets, axis=1)))


@contextlib.contextmanager
def _numbered_from(steps_before: int, losses_before: Sequence[Any]) -> Iterator[None]:
    """Numbers a divergence or an interruption in the block's core call as if the earlier calls of the
    same loop (``steps_before`` steps, and ``losses_before``: losses or arrays of losses) were one run."""
    try:
        yield
    except TrainingDivergedError as e:
        e.step += steps_before
        e.losses = [*np.concatenate([np.ravel(v) for v in losses_before] or [np.zeros(0)]).tolist(), *e.losses]
        raise
    except KeyboardInterrupt as e:
        e.completed_steps = steps_before + getattr(e, "completed_steps", 0)  # type: ignore[attr-defined]
        raise


def _updates(net: Network) -> int | None:
    """The core's own count of committed updates, or None where it cannot be read (a device lost)."""
    try:
        return int(net._core.get_optimizer_state()[1])
    except (RuntimeError, MemoryError):
        return None


@contextlib.contextmanager
def _counting_steps(net: Network) -> Iterator[None]:
    """Sets a KeyboardInterrupt's ``completed_steps`` from the core's count of updates since the block
    began. A signal can be raised by the core at a completed step or by Python anywhere between the core's
    calls (just after one returned, in a callback); only the core's count is right in every case, so it
    replaces the per-call numbering of ``_numbered_from`` whenever it can be read."""
    before = _updates(net)
    try:
        yield
    except KeyboardInterrupt as e:
        after = None if before is None else _updates(net)
        if before is not None and after is not None:
            e.completed_steps = after - before  # type: ignore[attr-defined]
        raise


def _rows(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
    return a.reshape(1, -1) if a.ndim == 1 else a


#: ``fit``'s training settings and their defaults, to tell them apart from ``config=``.
_FIT_DEFAULTS: dict[str, Any] = {"epochs": None} | {
    f.name: f.default for f in fields(TrainingConfig) if f.name != "epochs"
}


def training_config(config: TrainingConfig | None, settings: dict[str, Any]) -> TrainingConfig:
    """``fit``'s settings: ``config`` when given (and then no setting passed as an argument), else built
    from the arguments in ``settings``."""
    if config is None:
        return TrainingConfig(**settings)
    if not isinstance(config, TrainingConfig):
        raise TypeError(f"config: expected a rustbp.TrainingConfig, got {type(config).__name__}")
    if any(v is not _FIT_DEFAULTS[k] and v != _FIT_DEFAULTS[k] for k, v in settings.items()):
        raise TypeError("config: pass the training settings either as config= or as arguments, not both")
    return replace(config)  # checked again: object.__setattr__ can change a frozen dataclass


def epoch_by_epoch(
    config: TrainingConfig,
    validation_data: object,
    callbacks: Sequence[Callback],
    progress: _Progress,
    scheduler: Scheduler | None,
) -> bool:
    """Whether something happens between epochs, so that ``fit`` calls the core once per epoch rather than
    once for all of them. Rates that do not depend on the loss are not such a thing: they are computed
    ahead and set by the core at each epoch's start."""
    ahead = scheduler is None or isinstance(scheduler.schedule, CLOSED_FORM)
    return bool(
        validation_data is not None or callbacks or config.patience is not None or config.accuracy is True
        or progress.active or not ahead or logger.isEnabledFor(logging.INFO)
    )  # fmt: skip


def held_out(
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    validation_data: tuple[npt.NDArray[Any], npt.NDArray[Any]] | None,
    sample_weight: npt.NDArray[Any] | None = None,
) -> tuple[
    npt.NDArray[Any], npt.NDArray[Any], tuple[npt.NDArray[Any], npt.NDArray[Any]] | None, npt.NDArray[Any] | None
]:
    """(x, y) as rows and their sample weights, and the validation data: as given, or the last
    ``validation_split`` of the rows."""
    x, y = _rows(x), _rows(y)
    if validation_data is not None and config.validation_split > 0:
        raise ValueError("validation_data: pass either validation_data or validation_split, not both")
    if config.validation_split > 0:
        n_train = int(len(x) * (1 - config.validation_split))
        if not 1 <= n_train < len(x):
            raise ValueError(
                f"validation_split: {config.validation_split} of {len(x)} samples leaves no training or no "
                "validation sample"
            )
        validation_data = (x[n_train:], y[n_train:])
        x, y = x[:n_train], y[:n_train]
        if sample_weight is not None:
            sample_weight = sample_weight[:n_train]
    if validation_data is not None:
        validation_data = (_rows(validation_data[0]), _rows(validation_data[1]))
    return x, y, validation_data, sample_weight


def fit(
    net: Network,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    validation_data: tuple[npt.NDArray[Any], npt.NDArray[Any]] | None,
    callbacks: Sequence[Callback],
    scheduler: Scheduler | None = None,
    sample_weight: npt.NDArray[Any] | None = None,
) -> History:
    """``Network.fit``'s loop: the core's fit one epoch at a time, then metrics, callbacks, stopping; or
    one core call for all epochs when nothing has to happen between them."""
    x, y, validation_data, sample_weight = held_out(x, y, config, validation_data, sample_weight)
    # Passed only when given: a core without weights is called as it always was.
    weights: dict[str, Any] = {} if sample_weight is None else {"sample_weight": sample_weight}
    # Training accuracy costs a forward pass over all of x per epoch, so it is recorded only on request;
    # validation accuracy comes by default for classifiers.
    train_accuracy = config.accuracy is True
    val_accuracy = train_accuracy or (config.accuracy is None and net._config["loss"] == "cross_entropy")
    monitor = "val_loss" if validation_data is not None else "loss"
    seed = random_seed() if config.seed is None else int(config.seed)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    history = History(config)
    best, wait = math.inf, 0
    best_weights: dict[str, Any] | None = None
    progress = _Progress(config.verbose, config.epochs, "epoch")
    per_epoch = epoch_by_epoch(config, validation_data, callbacks, progress, scheduler)
    if scheduler is not None and scheduler.lr != net.optimizer.lr:
        net.set_lr(scheduler.lr)  # a scheduler carried over from an earlier fit
    if not per_epoch:
        # Nothing to do between epochs: one call, looped in Rust (the core seeds each epoch alike).
        if scheduler is None:
            losses = net._core.fit(x, y, config.epochs, config.batch_size, config.shuffle, seed, **weights)
            for loss in losses:
                history._record({"loss": float(loss)})
            return history
        return _fit_scheduled(net, x, y, config, seed, scheduler, sample_weight, history)
    with contextlib.closing(progress), _counting_steps(net):
        for epoch in range(config.epochs):
            with _numbered_from(epoch * steps_per_epoch, history.history.get("loss", [])):
                losses = net._core.fit(
                    x, y, 1, config.batch_size, config.shuffle, seed, epoch, **weights
                )  # fmt: skip
            logs = {"loss": float(losses[0])}
            if scheduler is not None:
                logs["lr"] = net.optimizer.lr
            # Ctrl-C while the metrics are taken: the network holds the epoch's steps, and says so.
            with _numbered_from((epoch + 1) * steps_per_epoch, ()):
                if train_accuracy:
                    logs["accuracy"] = _accuracy(net.forward(x), y)
                if validation_data is not None:
                    logs["val_loss"] = net.loss(*validation_data)
                    if val_accuracy:
                        logs["val_accuracy"] = _accuracy(net.forward(validation_data[0]), validation_data[1])
            history._record(logs)
            logger.info("epoch %d/%d: %s", epoch + 1, config.epochs, _format(logs))
            progress.update(1, epoch + 1, logs)
            stop = any([cb(epoch, dict(logs)) is True for cb in callbacks])  # every callback sees every epoch
            if config.patience is not None:
                if logs[monitor] < best - config.min_delta:
                    best, wait, history.best_epoch = logs[monitor], 0, epoch
                    if config.restore_best_weights:
                        best_weights = net.get_weights()
                else:
                    wait += 1
                    if wait >= config.patience:
                        logger.info(
                            "early stopping after epoch %d: best %s=%.6g at epoch %d",
                            epoch + 1,
                            monitor,
                            best,
                            (history.best_epoch or 0) + 1,
                        )
                        stop = True
            if scheduler is not None:
                lr = scheduler.step(logs[monitor])
                if lr != net.optimizer.lr:
                    net.set_lr(lr)
            if stop:
                history.stopped_early = epoch + 1 < config.epochs
                break
    if best_weights is not None and history.best_epoch != history.epochs - 1:
        net.set_weights(best_weights)
    return history


def _fit_scheduled(
    net: Network,
    x: npt.NDArray[Any],
    y: npt.NDArray[Any],
    config: TrainingConfig,
    seed: int,
    scheduler: Scheduler,
    sample_weight: npt.NDArray[Any] | None,
    history: History,
) -> History:
    """All epochs in one core call with a closed-form schedule: the rates of every epoch, computed by the
    scheduler (PyTorch's recurrences, so the same floats as stepping it epoch by epoch), set by the core
    at each epoch's start. The scheduler and the network end where the per-epoch loop would leave them,
    also after an error: at the epoch that failed."""
    rates = [scheduler.lr]
    preview = copy.copy(scheduler)
    rates += [preview.step() for _ in range(config.epochs)]
    done = config.epochs
    try:
        losses = net._core.fit(
            x, y, config.epochs, config.batch_size, config.shuffle, seed, lrs=rates[:-1],
            **cast("dict[str, Any]", {} if sample_weight is None else {"sample_weight": sample_weight}),
        )  # fmt: skip
    except TrainingDivergedError as e:
        done = len(e.losses)
        raise
    except KeyboardInterrupt as e:
        done = min(getattr(e, "completed_steps", 0) // math.ceil(len(x) / config.batch_size), config.epochs)
        raise
    finally:
        for _ in range(done):
            scheduler.step()
        net.set_lr(rates[done])
    for loss, lr in zip(losses, rates):
        history._record({"loss": float(loss), "lr": lr})
    return history


def train(
    net: Network, x: npt.NDArray[Any], t: npt.NDArray[Any], steps: int, log_every: int, verbose: bool
) -> npt.NDArray[np.float64]:
    """``Network.train``: one Rust loop, or chunks of ``log_every`` steps when someone is listening (an
    INFO logger or a progress bar), logging the loss of every ``log_every``-th step as it goes."""
    progress = _Progress(verbose, steps, "step")
    if not progress.active and not logger.isEnabledFor(logging.INFO):
        return net._core.train(x, t, steps)
    chunks: list[npt.NDArray[np.float64]] = []
    with contextlib.closing(progress), _counting_steps(net):
        for start in range(0, steps, log_every):
            n = min(log_every, steps - start)
            with _numbered_from(start, chunks):
                losses = net._core.train(x, t, n)
            chunks.append(losses)
            logger.info("step %d: loss %r", start, float(losses[0]))
            progress.update(n, start + n, {"loss": float(losses[-1])})
    return np.concatenate(chunks)
