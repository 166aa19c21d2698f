"""Optimizer settings, validated on construction. The math runs in Rust and follows
``torch.optim.SGD`` and ``torch.optim.Adam`` step by step."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Union

__all__ = ["SGD", "Adam", "Optimizer"]


def _check(name: str, value: float, ok: bool, expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name}: expected a number, got {type(value).__name__}")
    if not ok:
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


def _check_common(lr: float, weight_decay: float) -> None:
    _check("lr", lr, isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0, "a finite number > 0")
    _check(
        "weight_decay",
        weight_decay,
        isinstance(weight_decay, (int, float)) and math.isfinite(weight_decay) and weight_decay >= 0,
        "a finite number >= 0",
    )


@dataclass(frozen=True)
class SGD:
    """Stochastic gradient descent like ``torch.optim.SGD``: momentum without dampening, optional
    Nesterov momentum, and L2 weight decay added to the gradient."""

    lr: float
    momentum: float = 0.0
    nesterov: bool = False
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        _check_common(self.lr, self.weight_decay)
        m = self.momentum
        _check("momentum", m, isinstance(m, (int, float)) and 0 <= m < 1, "a number in [0, 1)")
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
        _check_common(self.lr, self.weight_decay)
        if not isinstance(self.betas, tuple) or len(self.betas) != 2:
            raise ValueError(f"betas: expected a pair of numbers in [0, 1), got {self.betas!r}")
        for i, b in enumerate(self.betas):
            _check(f"betas[{i}]", b, isinstance(b, (int, float)) and 0 <= b < 1, "a number in [0, 1)")
        e = self.eps
        _check("eps", e, isinstance(e, (int, float)) and math.isfinite(e) and e > 0, "a finite number > 0")


Optimizer = Union[SGD, Adam]
