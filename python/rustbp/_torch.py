"""Conversion to and from PyTorch's ``nn.Sequential(Linear, activation, Linear, activation)``, whose
state dict has the names of rustbp's files (``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``).
PyTorch is optional: it is imported only here, only when called."""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from .network import Network

__all__ = ["from_torch", "to_torch"]

# rustbp activation -> torch.nn class name; softmax normalises each row (dim=-1).
ACTIVATIONS = {
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "relu": "ReLU",
    "identity": "Identity",
    "softmax": "Softmax",
}


def _torch() -> Any:
    try:
        return importlib.import_module("torch")
    except ImportError:
        raise ImportError("this needs PyTorch, which rustbp does not install: pip install torch") from None


def to_torch(net: Network, dtype: Any) -> Any:
    """An ``nn.Sequential`` computing what ``net`` computes, with copies of its weights (a shared bias
    becomes one value per neuron), in ``dtype``: PyTorch's default dtype for None."""
    torch = _torch()
    nn = torch.nn
    c = net._config
    dtypes = {"float32": torch.float32, "float64": torch.float64}
    if dtype is None:
        dtype = torch.get_default_dtype()
    elif isinstance(dtype, str) and dtype in dtypes:
        dtype = dtypes[dtype]
    elif dtype not in dtypes.values():
        raise ValueError(f"dtype: expected None, float32 or float64 (or torch.float32, torch.float64), got {dtype!r}")
    bias = c["bias"] != "none"

    def act(name: str) -> Any:
        return nn.Softmax(dim=-1) if name == "softmax" else getattr(nn, ACTIVATIONS[name])()

    module = nn.Sequential(
        nn.Linear(c["n_in"], c["n_hidden"], bias=bias, dtype=dtype),
        act(c["hidden_activation"]),
        nn.Linear(c["n_hidden"], c["n_out"], bias=bias, dtype=dtype),
        act(c["output_activation"]),
    )
    w = net.get_weights()
    state = {"0.weight": w["w1"], "2.weight": w["w2"]}
    if bias:
        state["0.bias"] = np.broadcast_to(w["b1"], (c["n_hidden"],))
        state["2.bias"] = np.broadcast_to(w["b2"], (c["n_out"],))
    module.load_state_dict({k: torch.from_numpy(np.array(v)).to(dtype) for k, v in state.items()})
    return module


def from_torch(cls: type[Network], module: Any, kwargs: dict[str, Any]) -> Network:
    """A ``cls`` network with the widths, activations, bias layout, dtype and weights of ``module``."""
    torch = _torch()
    nn = torch.nn
    layers = list(module) if isinstance(module, nn.Sequential) else []
    raw = len(layers) == 3  # no final activation: raw outputs, logits for a classifier
    if raw:
        layers.append(nn.Identity())
    names = {v: k for k, v in ACTIVATIONS.items()}
    shape_ok = (
        len(layers) == 4
        and isinstance(layers[0], nn.Linear)
        and isinstance(layers[2], nn.Linear)
        and all(type(layers[i]).__name__ in names and type(layers[i]).__module__.startswith("torch.") for i in (1, 3))
        and layers[0].out_features == layers[2].in_features
    )
    if not shape_ok:
        raise ValueError(
            "module: expected nn.Sequential(nn.Linear, activation, nn.Linear[, activation]) with activations "
            f"among {', '.join(ACTIVATIONS.values())}, got {module!r}"
        )
    l1, l2 = layers[0], layers[2]
    if type(layers[1]).__name__ == "Softmax":
        raise ValueError("module: softmax is only supported as the output activation")
    for i in (1, 3):
        if type(layers[i]).__name__ == "Softmax" and layers[i].dim not in (-1, 1):
            raise ValueError(f"module: Softmax must normalise each sample (dim=-1 or 1), got dim={layers[i].dim}")
    if (l1.bias is None) != (l2.bias is None):
        raise ValueError("module: both Linear layers must have a bias, or neither (rustbp uses one bias mode)")
    dtypes = {torch.float32: "float32", torch.float64: "float64"}
    if l1.weight.dtype not in dtypes or l2.weight.dtype != l1.weight.dtype:
        raise ValueError(f"module: expected float32 or float64 weights, got {l1.weight.dtype} and {l2.weight.dtype}")
    if any(p is not None and p.is_meta for p in (l1.weight, l1.bias, l2.weight, l2.bias)):
        raise ValueError(
            "module: expected parameters with values, got parameters on the meta device (shapes without data); "
            "materialise them first, e.g. module.to_empty(device='cpu') then module.load_state_dict(...)"
        )
    output = names[type(layers[3]).__name__]
    if raw and kwargs.get("loss") == "cross_entropy":
        output = "softmax"  # the softmax that nn.CrossEntropyLoss applies to the logits
    elif raw and kwargs.get("loss") == "binary_cross_entropy":
        output = "sigmoid"  # the sigmoid that nn.BCEWithLogitsLoss applies to the logits
    elif raw and "loss" not in kwargs and "output_activation" not in kwargs:
        if l2.out_features > 1:
            output = "softmax"
            guess = (
                "taken as the logits of a classifier: the network has output_activation='softmax' and "
                "loss='cross_entropy' (nn.CrossEntropyLoss's softmax, so forward returns probabilities); "
                "for a regression network pass loss='mse' (identity outputs)"
            )
        else:
            guess = (
                "taken as a regression output: the network has output_activation='identity' and "
                "loss='half_sse'; pass loss='mse' (PyTorch's MSELoss), or loss='binary_cross_entropy' for the "
                "logit of a binary classifier (nn.BCEWithLogitsLoss)"
            )
        warnings.warn(f"module: it ends in raw outputs (no final activation), {guess}", UserWarning, stacklevel=3)
    kwargs = {
        "hidden_activation": names[type(layers[1]).__name__],
        "output_activation": output,
        "loss": "cross_entropy" if output == "softmax" else "half_sse",
        "bias": "per_neuron" if l1.bias is not None else "none",
        "dtype": dtypes[l1.weight.dtype],
        **kwargs,
    }
    net = cls(l1.in_features, l1.out_features, l2.out_features, **kwargs)

    def numpy(t: Any) -> np.ndarray:
        return np.asarray(t.detach().cpu().numpy())

    weights: dict[str, Any] = {"w1": numpy(l1.weight), "w2": numpy(l2.weight)}
    if l1.bias is not None:
        weights.update(b1=numpy(l1.bias), b2=numpy(l2.bias))
    net.set_weights(weights)
    return net
