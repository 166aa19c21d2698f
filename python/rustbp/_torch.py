"""Conversion to and from PyTorch's ``nn.Sequential(Linear, activation, Linear, activation)``, whose
state dict has the names of rustbp's files (``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``).
PyTorch is optional: it is imported only here, only when called."""

from __future__ import annotations

import importlib
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


def to_torch(net: Network) -> Any:
    """An ``nn.Sequential`` computing what ``net`` computes, with copies of its weights (a shared bias
    becomes one value per neuron)."""
    torch = _torch()
    nn = torch.nn
    c = net._config
    dtype = getattr(torch, net.dtype)
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
    module.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    return module


def from_torch(cls: type[Network], module: Any, kwargs: dict[str, Any]) -> Network:
    """A ``cls`` network with the widths, activations, bias layout, dtype and weights of ``module``."""
    torch = _torch()
    nn = torch.nn
    layers = list(module) if isinstance(module, nn.Sequential) else []
    if len(layers) == 3:
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
    output = names[type(layers[3]).__name__]
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
