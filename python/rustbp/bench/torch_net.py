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


class StackedTorchNet:
    """Many networks of one shape (ReLU hidden, softmax + cross-entropy) as one batched PyTorch model:
    every parameter stacked on a leading member axis (``w1`` (size, n_hidden, n_in), ``b1``
    (size, n_hidden), ...), each layer one ``torch.baddbmm``, and one ``torch.optim.SGD`` over the stacks.
    The loss minimised is the sum of the members' mean batch losses, so each member's gradient is the one it
    would have alone and one SGD step with ``lr`` updates every member as its own SGD would."""

    def __init__(self, torch: Any, w: dict[str, npt.NDArray[Any]], *, lr: float, dtype: str, device: str) -> None:
        self.torch, self.device = torch, device
        self.dtype = getattr(torch, dtype)
        # Biases as (size, 1, width): they broadcast over the batch inside baddbmm.
        stacks = {k: np.asarray(v)[:, None, :] if k in ("b1", "b2") else np.asarray(v) for k, v in w.items()}
        self.p = {k: torch.tensor(v, dtype=self.dtype, device=device, requires_grad=True) for k, v in stacks.items()}
        self.size = int(self.p["w1"].shape[0])
        self.opt = torch.optim.SGD(list(self.p.values()), lr=lr)

    def tensor(self, a: npt.NDArray[Any]) -> Any:
        return self.torch.tensor(np.asarray(a), dtype=self.dtype, device=self.device)

    def member_losses(self, x: Any, t: Any) -> Any:
        """Each member's mean cross-entropy on the batch (x (batch, n_in), t (batch, n_out)): (size,)."""
        torch, p = self.torch, self.p
        xs = x.expand(self.size, *x.shape)
        h = torch.relu(torch.baddbmm(p["b1"], xs, p["w1"].transpose(1, 2)))
        z = torch.baddbmm(p["b2"], h, p["w2"].transpose(1, 2))
        return -(t * torch.log_softmax(z, -1)).sum(-1).mean(-1)

    def step(self, x: Any, t: Any) -> Any:
        """One SGD update of every member on the batch; the members' losses before it, (size,), detached."""
        self.opt.zero_grad()
        losses = self.member_losses(x, t)
        losses.sum().backward()
        self.opt.step()
        return losses.detach()

    def fit(self, X: Any, Y: Any, orders: list[npt.NDArray[Any]], batch_size: int) -> npt.NDArray[np.float64]:
        """One epoch per order (every member the same order, mini-batches of ``batch_size``); the last
        epoch's loss of each member, the mean over its samples, (size,). One sync, at the end."""
        last = None
        for order in orders:
            idx = self.torch.as_tensor(order, device=self.device)
            total = self.torch.zeros(self.size, dtype=self.dtype, device=self.device)
            for start in range(0, len(order), batch_size):
                rows = idx[start : start + batch_size]
                total += self.step(X[rows], Y[rows]) * len(rows)
            last = total / len(order)
        return np.asarray(last.cpu().numpy(), dtype=np.float64) if last is not None else np.zeros(0)
