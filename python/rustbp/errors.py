"""rustbp's exceptions. Bad arguments raise ValueError or TypeError naming the argument."""

from __future__ import annotations

from ._rustbp import GpuUnavailableError, TrainingDivergedError

__all__ = ["GpuUnavailableError", "TrainingDivergedError"]
