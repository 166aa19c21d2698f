"""Optimizer settings, validated on construction. The math runs in Rust and follows
``torch.optim.SGD`` and ``torch.optim.Adam`` step by step."""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Union

__all__ = ["SGD", "Adam", "Optimizer"]


def _check(obj: object, name: str, ok: Callable[[float], bool], expected: str) -> None:
    """Checks setting ``name`` of ``obj`` and stores it back as a float, so NumPy scalars, fractions and
    huge integers reach Rust as plain floats."""
    _store(obj, name, _number(name, getattr(obj, name), ok, expected))


def _number(name: str, value: object, ok: Callable[[float], bool], expected: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an int beyond float range: it fails every check below, whatever its sign
        v = math.inf
    if not ok(v):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")
    return v


def _store(obj: object, field: str, value: object) -> None:
    object.__setattr__(obj, field, value)  # a frozen dataclass may normalise itself in __post_init__


def _positive(v: float) -> bool:
    return math.isfinite(v) and v > 0


def _non_negative(v: float) -> bool:
    return math.isfinite(v) and v >= 0


def _unit(v: float) -> bool:
    return 0 <= v < 1


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent like ``torch.optim.SGD``: momentum without dampening, optional
    Nesterov momentum, and L2 weight decay added to the gradient."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check(self, "lr", _positive, "a finite number > 0")
        _check(self, "weight_decay", _non_negative, "a finite number >= 0")
        _check(self, "momentum", _unit, "a number in [0, 1)")
        if not isinstance(self.nesterov, bool):
            raise TypeError(f"nesterov: expected a bool, got {type(self.nesterov).__name__}")
        if self.nesterov and self.momentum == 0:
            raise ValueError("nesterov: Nesterov momentum needs momentum > 0")


@dataclass(frozen=True)
class Adam:
    """Adam like ``torch.optim.Adam`` (bias-corrected moments; weight decay is L2, not AdamW)."""

    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check(self, "lr", _positive, "a finite number > 0")
        _check(self, "weight_decay", _non_negative, "a finite number >= 0")
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ValueError(f"betas: expected a pair of numbers in [0, 1), got {self.betas!r}")
        betas = tuple(_number(f"betas[{i}]", b, _unit, "a number in [0, 1)") for i, b in enumerate(self.betas))
        _store(self, "betas", betas)
        _check(self, "eps", _positive, "a finite number > 0")


Optimizer = Union[SGD, Adam]
