"""Settings as frozen dataclasses, validated on construction: ``NetworkConfig`` (what ``Network`` is
built from, ``Network.from_config`` / ``net.config``) and ``TrainingConfig`` (what ``Network.fit``
runs with). Every error names the field and the accepted values."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field, replace
from typing import Any, Callable, cast, get_args

import numpy as np

from ._types import Bias, Device, Dtype, DtypeLike, HiddenActivation, Loss, OutputActivation
from .optim import SGD, Adam, Optimizer

__all__ = ["NetworkConfig", "TrainingConfig"]

# The accepted values, read from the Literal types so that both always agree.
HIDDEN_ACTIVATIONS: tuple[str, ...] = get_args(HiddenActivation)
OUTPUT_ACTIVATIONS: tuple[str, ...] = get_args(OutputActivation)
LOSSES: tuple[str, ...] = get_args(Loss)
BIASES: tuple[str, ...] = get_args(Bias)
DTYPES: tuple[str, ...] = get_args(Dtype)
DEVICES: tuple[str, ...] = get_args(Device)


def _positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive integer, got {type(value).__name__}")
    if not 0 < value < 2**63:  # Rust counts in 64 bits; anything near that is a mistake anyway
        raise ValueError(f"{name}: expected a positive integer below 2**63, got {value}")
    return int(value)


def _one_of(name: str, value: object, accepted: tuple[str, ...]) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name}: expected a string, one of {', '.join(accepted)}; got {type(value).__name__}")
    if value not in accepted:
        raise ValueError(f"{name}: expected one of {', '.join(accepted)}, got {value!r}")


def _dtype_name(value: object) -> object:
    """A NumPy dtype or scalar type (``np.float32``, ``np.dtype("float64")``) as its name; names and
    anything NumPy does not read as a dtype as given, for the check that follows to accept or refuse."""
    if value is None or isinstance(value, str):
        return value
    try:
        return np.dtype(value).name  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return value


def _bool(name: str, value: object) -> None:
    if not isinstance(value, bool):
        raise TypeError(f"{name}: expected a bool, got {type(value).__name__}")


def _seed(value: object) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < 2**64:
        raise ValueError(f"seed: expected None or an integer in [0, 2**64), got {value!r}")
    return int(value)


def _number(name: str, value: object, ok: Callable[[float], bool], expected: str) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected {expected}, got {type(value).__name__}")
    if not ok(float(value)):
        raise ValueError(f"{name}: expected {expected}, got {value!r}")


@dataclass(frozen=True)
class NetworkConfig:
    """Everything that defines a ``Network`` but its weights; ``Network.from_config(cfg)`` builds one.

    ``dtype=None`` means float64 on the CPU and float32 on the GPU (GPU compute is float32); NumPy's dtype
    or scalar type of either (``np.float32``) is taken too, and kept as its name.
    ``seed=None`` draws fresh weights each time; ``net.config`` records the seed a network was built
    with, so ``Network.from_config(net.config)`` rebuilds its initial weights.
    """

    n_in: int
    n_hidden: int
    n_out: int
    hidden_activation: HiddenActivation = "sigmoid"
    output_activation: OutputActivation = "sigmoid"
    loss: Loss = "half_sse"
    bias: Bias = "per_neuron"
    train_bias: bool = True
    optimizer: Optimizer = field(default_factory=lambda: SGD(lr=0.5))
    dtype: DtypeLike | None = None
    device: Device = "cpu"
    seed: int | None = None

    def __post_init__(self) -> None:
        for name in ("n_in", "n_hidden", "n_out"):
            _positive_int(name, getattr(self, name))
        _one_of("hidden_activation", self.hidden_activation, HIDDEN_ACTIVATIONS)
        _one_of("output_activation", self.output_activation, OUTPUT_ACTIVATIONS)
        _one_of("loss", self.loss, LOSSES)
        if (self.output_activation == "softmax") != (self.loss == "cross_entropy"):
            raise ValueError(
                f"{'loss' if self.output_activation == 'softmax' else 'output_activation'}: expected softmax "
                f"output with cross_entropy loss (they go together), got output_activation="
                f"{self.output_activation!r}, loss={self.loss!r}"
            )
        if self.loss == "binary_cross_entropy" and self.output_activation != "sigmoid":
            raise ValueError(
                "output_activation: expected sigmoid output with binary_cross_entropy loss (its gradient is o - t "
                f"through the sigmoid), got output_activation={self.output_activation!r}, loss={self.loss!r}"
            )
        _one_of("bias", self.bias, BIASES)
        _bool("train_bias", self.train_bias)
        if not isinstance(self.optimizer, (SGD, Adam)):
            raise TypeError(f"optimizer: expected rustbp.SGD or rustbp.Adam, got {type(self.optimizer).__name__}")
        # A copy checked again: object.__setattr__ can change the settings of a frozen optimizer.
        object.__setattr__(self, "optimizer", replace(self.optimizer))
        _one_of("device", self.device, DEVICES)
        object.__setattr__(self, "dtype", _dtype_name(self.dtype))
        if self.dtype is None:
            object.__setattr__(self, "dtype", "float32" if self.device == "gpu" else "float64")
        _one_of("dtype", self.dtype, DTYPES)
        if self.device == "gpu" and self.dtype != "float32":
            raise ValueError(
                f"dtype: GPU compute is float32, so device='gpu' needs dtype='float32' (got {self.dtype!r}); "
                "use device='cpu' for float64"
            )
        _seed(self.seed)

    @property
    def dtype_name(self) -> Dtype:
        """``dtype`` as checked: "float64" or "float32" (a ``None`` resolved for the device)."""
        return cast(Dtype, self.dtype)

    def kwargs(self) -> dict[str, Any]:
        """The keyword arguments of ``Network(n_in, n_hidden, n_out, **kwargs)``."""
        return {k: getattr(self, k) for k in self.__dataclass_fields__ if k not in ("n_in", "n_hidden", "n_out")}


@dataclass(frozen=True)
class TrainingConfig:
    """The settings of ``Network.fit``, which takes them as keyword arguments or as ``config=``.

    - ``epochs`` passes over the data in mini-batches of ``batch_size`` rows, reshuffled every epoch
      when ``shuffle`` (reproducibly for an integer ``seed``).
    - ``validation_split``: the fraction of samples, taken from the end before any shuffling, held out
      to compute ``val_loss`` after each epoch (or pass ``validation_data=(X, Y)`` to ``fit``).
    - Early stopping when ``patience`` is set: training stops once the monitored loss (``val_loss``
      when there is validation data, else ``loss``) has not fallen by more than ``min_delta`` for
      ``patience`` epochs; ``restore_best_weights`` then puts back the weights of the best epoch.
    - ``accuracy``: record the training ``accuracy`` (argmax of outputs vs targets) after each epoch, at
      the cost of one forward pass over the training data per epoch. ``None`` (the default) records
      only ``val_accuracy``, for cross_entropy networks with validation data: cheap, and what early
      stopping and plots usually want; ``False`` records no accuracy at all.
    - ``verbose``: progress, wherever the output goes: a tqdm bar on a terminal, tqdm's widget in
      Jupyter, else one line per epoch on stderr. Per-epoch metrics are logged at INFO on the
      ``rustbp`` logger in any case. Epochs are numbered from 1 in text, from 0 in callbacks and
      ``History.best_epoch``.
    """

    epochs: int
    batch_size: int = 32
    shuffle: bool = True
    seed: int | None = None
    validation_split: float = 0.0
    patience: int | None = None
    min_delta: float = 0.0
    restore_best_weights: bool = True
    accuracy: bool | None = None
    verbose: bool = False

    def __post_init__(self) -> None:
        _positive_int("epochs", self.epochs)
        _positive_int("batch_size", self.batch_size)
        _bool("shuffle", self.shuffle)
        _seed(self.seed)
        _number("validation_split", self.validation_split, lambda s: 0 <= s < 1, "a number in [0, 1)")
        if self.patience is not None:
            _positive_int("patience", self.patience)
        _number("min_delta", self.min_delta, lambda d: math.isfinite(d) and d >= 0, "a finite number >= 0")
        _bool("restore_best_weights", self.restore_best_weights)
        if self.accuracy is not None:
            _bool("accuracy", self.accuracy)
        _bool("verbose", self.verbose)


def random_seed() -> int:
    """A fresh 64-bit seed from the OS (``os.urandom``: the ``secrets`` module costs import time)."""
    return int.from_bytes(os.urandom(8), "little")


def optimizer_from_core(spec: tuple[Any, ...]) -> Optimizer:
    """The optimizer object of a core's ``config()["optimizer"]`` tuple."""
    if spec[0] == "sgd":
        _, lr, momentum, nesterov, weight_decay = spec
        return SGD(lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)
    _, lr, betas, eps, weight_decay = spec
    return Adam(lr=lr, betas=tuple(betas), eps=eps, weight_decay=weight_decay)
