"""rustbp's exceptions. Bad arguments raise ValueError or TypeError naming the argument."""

from __future__ import annotations

from ._rustbp import TrainingDivergedError

__all__ = ["GpuUnavailableError", "TrainingDivergedError"]


class GpuUnavailableError(RuntimeError):
    """No GPU adapter could be used; the message says what to install."""
