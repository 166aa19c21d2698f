"""The same network in PyTorch, the way a PyTorch user writes it: ``F.linear`` (what ``nn.Linear`` calls),
autograd, and ``torch.optim``. PyTorch is optional: ``load()`` returns None when it is not installed,
and nothing here imports it at module level, so the benchmark runs without it.
"""

from __future__ import annotations

import importlib
from typing import Any

import numpy as np
import numpy.typing as npt

__all__ = ["TorchNet", "load"]


def load() -> Any | None:
    """The ``torch`` module, or None when it is not importable."""
    try:
        return importlib.import_module("torch")
    except ImportError:
        return None


class TorchNet:
    """Parameters as leaf tensors on ``device``, a forward pass, a loss and a ``torch.optim`` optimizer.

    ``optimizer`` is ("sgd", lr, momentum) or ("adam", lr); biases of shape (1,) are shared by the layer
    and broadcast, as in the article."""

    def __init__(
        self,
        torch: Any,
        w: dict[str, npt.NDArray[Any]],
        *,
        hidden: str,
        output: str,
        loss: str,
        train_bias: bool,
        optimizer: tuple[Any, ...],
        dtype: str,
        device: str = "cpu",
    ) -> None:
        self.torch, self.device = torch, device
        self.dtype = getattr(torch, dtype)
        self.p = {
            k: torch.tensor(np.asarray(v), dtype=self.dtype, device=device).requires_grad_(
                k in ("w1", "w2") or train_bias
            )
            for k, v in w.items()
        }
        acts = {
            "sigmoid": torch.sigmoid,
            "relu": torch.relu,
            "tanh": torch.tanh,
            "identity": lambda z: z,
            "softmax": lambda z: torch.softmax(z, 1),
        }
        self.act_h, self.act_o, self.loss_name = acts[hidden], acts[output], loss
        trained = [p for p in self.p.values() if p.requires_grad]
        if optimizer[0] == "sgd":
            self.opt = torch.optim.SGD(trained, lr=optimizer[1], momentum=optimizer[2])
        else:
            self.opt = torch.optim.Adam(trained, lr=optimizer[1])

    def tensor(self, a: npt.NDArray[Any]) -> Any:
        return self.torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def logits(self, x: Any) -> Any:
        f, p = self.torch.nn.functional, self.p
        h = self.act_h(f.linear(x, p["w1"], p.get("b1")))
        return f.linear(h, p["w2"], p.get("b2"))

    def _loss(self, x: Any, t: Any) -> Any:
        z2 = self.logits(x)
        f = self.torch.nn.functional
        if self.loss_name == "cross_entropy":
            return f.cross_entropy(z2, t)  # probability targets
        o = self.act_o(z2)
        if self.loss_name == "mse":
            return f.mse_loss(o, t)
        return 0.5 * ((o - t) ** 2).sum() / x.shape[0]

    def train(self, x: Any, t: Any, steps: int) -> float:
        """``steps`` updates on the batch (tensors from ``tensor``); the loss of the last step, before it.
        The loop calls ``.item()`` once, at the end, so PyTorch never waits on a per-step sync."""
        opt, loss = self.opt, None
        for _ in range(steps):
            opt.zero_grad()
            loss = self._loss(x, t)
            loss.backward()
            opt.step()
        return float(loss.item()) if loss is not None else float("nan")

    def forward(self, x: Any) -> npt.NDArray[Any]:
        with self.torch.no_grad():
            return np.asarray(self.act_o(self.logits(x)).cpu().numpy())
