"""The option strings of ``Network`` and ``NetworkConfig`` as ``Literal`` types, so that a type checker
catches a misspelt option (``"relux"``) before Python does."""

from __future__ import annotations

from typing import Any, Literal, Union

import numpy as np

__all__ = ["Bias", "Device", "Dtype", "DtypeLike", "HiddenActivation", "Loss", "OutputActivation"]

HiddenActivation = Literal["sigmoid", "tanh", "relu", "identity"]
OutputActivation = Literal["sigmoid", "tanh", "relu", "identity", "softmax"]
Loss = Literal["half_sse", "mse", "cross_entropy", "binary_cross_entropy"]
Bias = Literal["per_neuron", "shared", "none"]
Dtype = Literal["float64", "float32"]
# What a ``dtype=`` argument takes: a name, or NumPy's dtype or scalar type of one (np.float32).
DtypeLike = Union[Dtype, "type[np.floating[Any]]", "np.dtype[np.floating[Any]]"]
Device = Literal["cpu", "gpu"]
