"""The option strings of ``Network`` and ``NetworkConfig`` as ``Literal`` types, so that a type checker
catches a misspelt option (``"relux"``) before Python does."""

from __future__ import annotations

from typing import Literal

__all__ = ["Bias", "Device", "Dtype", "HiddenActivation", "Loss", "OutputActivation"]

HiddenActivation = Literal["sigmoid", "tanh", "relu", "identity"]
OutputActivation = Literal["sigmoid", "tanh", "relu", "identity", "softmax"]
Loss = Literal["half_sse", "mse", "cross_entropy", "binary_cross_entropy"]
Bias = Literal["per_neuron", "shared", "none"]
Dtype = Literal["float64", "float32"]
Device = Literal["cpu", "gpu"]
