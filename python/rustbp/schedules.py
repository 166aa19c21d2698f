"""Learning-rate schedules with the formulas of ``torch.optim.lr_scheduler``, stepped once per epoch.

A schedule is a frozen settings object (``StepLR(step_size=10)``); ``schedule.start(lr)`` gives a
``Scheduler`` that holds the state: ``scheduler.lr`` is the rate of the current epoch and
``scheduler.step(loss)`` moves to the next epoch and returns its rate. ``Network.fit(lr_schedule=...)``
takes either: a schedule starts from the network's current rate, a scheduler goes on where it was.
The recurrences are PyTorch's own (its ``get_lr``), so the rates match PyTorch's to the last bit.
"""

from __future__ import annotations

import abc
import math
from dataclasses import dataclass
from typing import Literal, Union

from .config import _number, _positive_int

__all__ = ["CosineAnnealingLR", "ExponentialLR", "LRSchedule", "ReduceLROnPlateau", "Scheduler", "StepLR"]


def _gamma(name: str, value: object) -> None:
    _number(name, value, lambda g: math.isfinite(g) and g > 0, "a finite number > 0")


class Scheduler:
    """The running state of a schedule: ``lr`` for the current epoch, ``epoch`` counted from 0."""

    def __init__(self, schedule: _Schedule, lr: float) -> None:
        _number("lr", lr, lambda v: math.isfinite(v) and v > 0, "a finite number > 0")
        self.schedule = schedule
        self.base_lr = float(lr)
        self.lr = float(lr)
        self.epoch = 0
        # ReduceLROnPlateau's state, as torch keeps it.
        self.best = math.inf if getattr(schedule, "mode", "min") == "min" else -math.inf
        self.num_bad_epochs = 0
        self.cooldown_counter = 0

    def step(self, loss: float | None = None) -> float:
        """Ends the current epoch (with its monitored ``loss``, which ``ReduceLROnPlateau`` needs) and
        returns the rate of the next one."""
        self.epoch += 1
        self.lr = self.schedule._next(self, loss)
        return self.lr

    def __repr__(self) -> str:
        return f"Scheduler({self.schedule!r}, epoch={self.epoch}, lr={self.lr!r})"


class _Schedule(abc.ABC):
    def start(self, lr: float) -> Scheduler:
        """A scheduler at epoch 0 with rate ``lr``."""
        return Scheduler(self, lr)

    @abc.abstractmethod
    def _next(self, s: Scheduler, loss: float | None) -> float:
        """The rate of epoch ``s.epoch`` (already advanced), from the state ``s``."""


@dataclass(frozen=True)
class StepLR(_Schedule):
    """``lr * gamma`` every ``step_size`` epochs (``torch.optim.lr_scheduler.StepLR``)."""

    step_size: int
    gamma: float = 0.1

    def __post_init__(self) -> None:
        _positive_int("step_size", self.step_size)
        _gamma("gamma", self.gamma)

    def _next(self, s: Scheduler, loss: float | None) -> float:
        return s.lr * self.gamma if s.epoch % self.step_size == 0 else s.lr


@dataclass(frozen=True)
class ExponentialLR(_Schedule):
    """``lr * gamma`` every epoch (``torch.optim.lr_scheduler.ExponentialLR``)."""

    gamma: float

    def __post_init__(self) -> None:
        _gamma("gamma", self.gamma)

    def _next(self, s: Scheduler, loss: float | None) -> float:
        return s.lr * self.gamma


@dataclass(frozen=True)
class CosineAnnealingLR(_Schedule):
    """From the starting rate down to ``eta_min`` along half a cosine over ``T_max`` epochs, then back up
    (``torch.optim.lr_scheduler.CosineAnnealingLR``, whose recurrence this is)."""

    T_max: int
    eta_min: float = 0.0

    def __post_init__(self) -> None:
        _positive_int("T_max", self.T_max)
        _number("eta_min", self.eta_min, lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")

    def _next(self, s: Scheduler, loss: float | None) -> float:
        e, t, lr, base, eta_min = s.epoch, self.T_max, s.lr, s.base_lr, self.eta_min
        if (e - 1 - t) % (2 * t) == 0:
            return lr + (base - eta_min) * (1 - math.cos(math.pi / t)) / 2
        return (1 + math.cos(math.pi * e / t)) / (1 + math.cos(math.pi * (e - 1) / t)) * (lr - eta_min) + eta_min


@dataclass(frozen=True)
class ReduceLROnPlateau(_Schedule):
    """``lr * factor`` once the monitored loss has not improved for ``patience`` epochs, with PyTorch's
    defaults and rules (``torch.optim.lr_scheduler.ReduceLROnPlateau``): an improvement beats the best
    by ``threshold`` (relative or absolute), ``cooldown`` epochs pass before counting again, the rate
    never falls below ``min_lr``, and changes under ``eps`` are skipped. In ``fit`` the monitored loss
    is ``val_loss`` when there is validation data, else ``loss``."""

    mode: Literal["min", "max"] = "min"
    factor: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: Literal["rel", "abs"] = "rel"
    cooldown: int = 0
    min_lr: float = 0.0
    eps: float = 1e-8

    def __post_init__(self) -> None:
        if self.mode not in ("min", "max"):
            raise ValueError(f"mode: expected one of min, max, got {self.mode!r}")
        _number("factor", self.factor, lambda f: 0 <= f < 1, "a number in [0, 1)")
        for name in ("patience", "cooldown"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}: expected an integer >= 0, got {value!r}")
        for name in ("threshold", "min_lr", "eps"):
            _number(name, getattr(self, name), lambda v: math.isfinite(v) and v >= 0, "a finite number >= 0")
        if self.threshold_mode not in ("rel", "abs"):
            raise ValueError(f"threshold_mode: expected one of rel, abs, got {self.threshold_mode!r}")

    def _better(self, a: float, best: float) -> bool:
        if self.mode == "min":
            return a < best * (1 - self.threshold) if self.threshold_mode == "rel" else a < best - self.threshold
        return a > best * (1 + self.threshold) if self.threshold_mode == "rel" else a > best + self.threshold

    def _next(self, s: Scheduler, loss: float | None) -> float:
        if loss is None:
            raise ValueError("loss: ReduceLROnPlateau needs the monitored loss of every epoch: step(loss)")
        current = float(loss)
        if self._better(current, s.best):
            s.best, s.num_bad_epochs = current, 0
        else:
            s.num_bad_epochs += 1
        if s.cooldown_counter > 0:
            s.cooldown_counter -= 1
            s.num_bad_epochs = 0
        lr = s.lr
        if s.num_bad_epochs > self.patience:
            new = max(lr * self.factor, self.min_lr)
            if lr - new > self.eps:
                lr = new
            s.cooldown_counter, s.num_bad_epochs = self.cooldown, 0
        return lr


LRSchedule = Union[StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau]


def started(lr_schedule: object, lr: float) -> Scheduler | None:
    """A scheduler for ``fit``'s ``lr_schedule``: a schedule started at ``lr``, or a scheduler as it is."""
    if lr_schedule is None or isinstance(lr_schedule, Scheduler):
        return lr_schedule
    if isinstance(lr_schedule, _Schedule):
        return lr_schedule.start(lr)
    raise TypeError(
        "lr_schedule: expected rustbp.StepLR, ExponentialLR, CosineAnnealingLR, ReduceLROnPlateau or a "
        f"Scheduler, got {type(lr_schedule).__name__}"
    )
