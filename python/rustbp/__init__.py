"""rustbp: a three-layer neural network trainer with a Rust core.

>>> import rustbp
>>> net = rustbp.Network.article()
>>> round(net.train_step([0.05, 0.10], [0.01, 0.99]), 10)
0.2983711088
"""

from __future__ import annotations

from ._rustbp import __version__
from .config import NetworkConfig, TrainingConfig
from .errors import GpuUnavailableError, TrainingDivergedError
from .explain import Step
from .gpu import GpuDevice, gpu_devices
from .network import Network
from .optim import SGD, Adam
from .population import Population, PopulationHistory
from .schedules import CosineAnnealingLR, ExponentialLR, ReduceLROnPlateau, Scheduler, StepLR
from .training import History

__all__ = [
    "SGD",
    "Adam",
    "CosineAnnealingLR",
    "ExponentialLR",
    "GpuDevice",
    "GpuUnavailableError",
    "History",
    "Network",
    "NetworkConfig",
    "Population",
    "PopulationHistory",
    "ReduceLROnPlateau",
    "Scheduler",
    "Step",
    "StepLR",
    "TrainingConfig",
    "TrainingDivergedError",
    "__version__",
    "gpu_devices",
]
