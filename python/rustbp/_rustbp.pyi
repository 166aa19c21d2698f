"""Type stub of the compiled core. Use ``rustbp.Network``, which wraps ``Core``."""

from typing import Any, final

import numpy as np
import numpy.typing as npt

__all__ = [
    "Core",
    "GpuCore",
    "GpuUnavailableError",
    "TrainingDivergedError",
    "__version__",
    "core_from_safetensors",
    "core_to_safetensors",
    "gpu_devices",
]

__version__: str

class TrainingDivergedError(FloatingPointError):
    step: int
    losses: list[float]

class GpuUnavailableError(RuntimeError): ...

def gpu_devices() -> list[dict[str, Any]]: ...

@final
class Core:
    def __new__(
        cls,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        hidden_activation: str,
        output_activation: str,
        loss: str,
        bias: str,
        train_bias: bool,
        optimizer: str,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        beta1: float,
        beta2: float,
        eps: float,
        dtype: str,
        seed: int,
    ) -> Core: ...
    @staticmethod
    def article() -> Core: ...
    @property
    def dtype(self) -> str: ...
    def config(self) -> dict[str, Any]: ...
    def forward(self, x: np.ndarray) -> npt.NDArray[np.floating[Any]]: ...
    def loss(self, x: np.ndarray, t: np.ndarray) -> float: ...
    def train_step(self, x: np.ndarray, t: np.ndarray) -> float: ...
    def train(self, x: np.ndarray, t: np.ndarray, steps: int) -> npt.NDArray[np.float64]: ...
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        first_epoch: int = 0,
    ) -> npt.NDArray[np.float64]: ...
    def get_weights(self) -> dict[str, npt.NDArray[np.floating[Any]]]: ...
    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...
    def get_optimizer_state(self) -> tuple[list[list[npt.NDArray[np.floating[Any]]]], int]: ...
    def set_optimizer_state(self, state: list[list[np.ndarray]], updates: int) -> None: ...
    def explain_step(self, x: np.ndarray, t: np.ndarray) -> dict[str, Any]: ...

def core_to_safetensors(core: Core, optimizer: bool) -> bytes: ...
def core_from_safetensors(data: bytes) -> Core: ...

@final
class GpuCore:
    def __new__(
        cls,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        hidden_activation: str,
        output_activation: str,
        loss: str,
        bias: str,
        train_bias: bool,
        optimizer: str,
        lr: float,
        momentum: float,
        nesterov: bool,
        weight_decay: float,
        beta1: float,
        beta2: float,
        eps: float,
        dtype: str,
        seed: int,
    ) -> GpuCore: ...
    @staticmethod
    def article() -> GpuCore: ...
    @property
    def dtype(self) -> str: ...
    def adapter(self) -> dict[str, Any]: ...
    def uses_fused(self, rows: int) -> bool: ...
    def config(self) -> dict[str, Any]: ...
    def forward(self, x: np.ndarray) -> npt.NDArray[np.floating[Any]]: ...
    def loss(self, x: np.ndarray, t: np.ndarray) -> float: ...
    def train_step(self, x: np.ndarray, t: np.ndarray) -> float: ...
    def train(self, x: np.ndarray, t: np.ndarray, steps: int) -> npt.NDArray[np.float64]: ...
    def fit(
        self,
        x: np.ndarray,
        y: np.ndarray,
        epochs: int,
        batch_size: int,
        shuffle: bool,
        seed: int,
        first_epoch: int = 0,
    ) -> npt.NDArray[np.float64]: ...
    def get_weights(self) -> dict[str, npt.NDArray[np.floating[Any]]]: ...
    def set_weights(self, weights: dict[str, np.ndarray]) -> None: ...
    def get_optimizer_state(self) -> tuple[list[list[npt.NDArray[np.floating[Any]]]], int]: ...
    def set_optimizer_state(self, state: list[list[np.ndarray]], updates: int) -> None: ...
    def explain_step(self, x: np.ndarray, t: np.ndarray) -> dict[str, Any]: ...
