"""The implementations the benchmark compares, behind one small interface.

Every trainer is built from the same float64 starting weights (``w1`` (n_hidden, n_in), ``b1``, ``w2``,
``b2``, shared biases of shape (1,)) and a fixed batch, and offers ``train(steps)`` (that many updates on
the batch; returns the last step's loss, taken before its update), and for the digits workload
``epoch(X, Y, y, batch_size)`` (one pass in order; returns the mean loss) and ``predict(X)`` (labels).
Building a trainer is never timed; only its calls are.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any, Callable, Protocol, cast

import numpy as np
import numpy.typing as npt

import rustbp
from rustbp._types import Bias, Device, Dtype, HiddenActivation, Loss, OutputActivation

from . import numpy_net, torch_net
from .pure import PurePythonNet, UnrolledArticleNet

__all__ = ["Impl", "Spec", "Trainer", "available"]

Array = npt.NDArray[Any]
Params = dict[str, Array]


@dataclass(frozen=True)
class Spec:
    """A network and its training settings, in rustbp's vocabulary."""

    n_in: int
    n_hidden: int
    n_out: int
    hidden: HiddenActivation = "sigmoid"
    output: OutputActivation = "sigmoid"
    loss: Loss = "mse"
    bias: Bias = "per_neuron"
    train_bias: bool = True
    optimizer: str = "sgd"
    lr: float = 0.5
    momentum: float = 0.0

    def work(self, batch: int) -> int:
        """Multiply-adds of one training step (forward, and two products per layer backward)."""
        return 3 * batch * (self.n_in * self.n_hidden + self.n_hidden * self.n_out)

    def network(self, dtype: str = "float64", device: str = "cpu", seed: int = 0) -> rustbp.Network:
        opt: rustbp.SGD | rustbp.Adam = (
            rustbp.SGD(lr=self.lr, momentum=self.momentum) if self.optimizer == "sgd" else rustbp.Adam(lr=self.lr)
        )
        return rustbp.Network(
            self.n_in,
            self.n_hidden,
            self.n_out,
            hidden_activation=self.hidden,
            output_activation=self.output,
            loss=self.loss,
            bias=self.bias,
            train_bias=self.train_bias,
            optimizer=opt,
            dtype=cast(Dtype, dtype),
            device=cast(Device, device),
            seed=seed,
        )

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Trainer(Protocol):
    def train(self, steps: int) -> float: ...

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float: ...

    def predict(self, X: Array) -> Array: ...


@dataclass(frozen=True)
class Impl:
    """One column of the comparison: how to build its trainer, and the largest step it is given."""

    name: str
    family: str  # pure, numpy, torch, torch-cuda, rustbp, rustbp-gpu, sklearn
    dtype: str
    build: Callable[[Spec, Params, Array, Array], Trainer]
    max_work: int | None = None  # multiply-adds per step above which it is left out

    def fits(self, spec: Spec, batch: int) -> bool:
        return self.max_work is None or spec.work(batch) <= self.max_work


class PureTrainer:
    def __init__(self, spec: Spec, w: Params, X: Array, T: Array) -> None:
        if spec.hidden != "sigmoid" or spec.output != "sigmoid" or spec.optimizer != "sgd":
            raise ValueError("the pure Python network has sigmoid layers and SGD only")
        self.net = PurePythonNet(
            w["w1"].tolist(),
            w["b1"].tolist() if "b1" in w else [],
            w["w2"].tolist(),
            w["b2"].tolist() if "b2" in w else [],
            loss=spec.loss,
            train_bias=spec.train_bias,
            lr=spec.lr,
            momentum=spec.momentum,
        )
        self.X, self.T = X.tolist(), T.tolist()

    def train(self, steps: int) -> float:
        step, X, T, loss = self.net.step, self.X, self.T, float("nan")
        for _ in range(steps):
            loss = step(X, T)
        return loss

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        raise NotImplementedError("the pure Python network is not run on the digits")

    def predict(self, X: Array) -> Array:
        return np.array([int(np.argmax(self.net.forward(x))) for x in X.tolist()])


class UnrolledTrainer:
    """The hand-unrolled 2-2-2 network; only for the article's own setting."""

    def __init__(self, spec: Spec, w: Params, X: Array, T: Array) -> None:
        if (spec.n_in, spec.n_hidden, spec.n_out, spec.loss, spec.bias, spec.train_bias, spec.momentum) != (
            2,
            2,
            2,
            "half_sse",
            "shared",
            False,
            0.0,
        ):
            raise ValueError("the unrolled network is the article's setting only")
        flat = [*w["w1"].ravel().tolist(), *w["w2"].ravel().tolist()]
        self.net = UnrolledArticleNet(flat, float(w["b1"][0]), float(w["b2"][0]), spec.lr)
        self.x, self.t = X[0].tolist(), T[0].tolist()

    def train(self, steps: int) -> float:
        step, x, t, loss = self.net.step, self.x, self.t, float("nan")
        for _ in range(steps):
            loss = step(x, t)
        return loss

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        raise NotImplementedError("the unrolled network is only run on the article")

    def predict(self, X: Array) -> Array:
        raise NotImplementedError("the unrolled network is only run on the article")


class NumpyTrainer:
    def __init__(self, spec: Spec, w: Params, X: Array, T: Array, dtype: str) -> None:
        opt: numpy_net.SGD | numpy_net.Adam = (
            numpy_net.SGD(spec.lr, spec.momentum) if spec.optimizer == "sgd" else numpy_net.Adam(spec.lr)
        )
        self.net = numpy_net.NumpyNet(
            w,
            hidden=spec.hidden,
            output=spec.output,
            loss=spec.loss,
            train_bias=spec.train_bias,
            optimizer=opt,
            dtype=dtype,
        )
        self.dtype = dtype
        self.X, self.T = X.astype(dtype), T.astype(dtype)

    def train(self, steps: int) -> float:
        step, X, T, loss = self.net.step, self.X, self.T, float("nan")
        for _ in range(steps):
            loss = step(X, T)
        return loss

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        X, Y = X.astype(self.dtype), Y.astype(self.dtype)
        total = 0.0
        for i in range(0, len(X), batch_size):
            total += self.net.step(X[i : i + batch_size], Y[i : i + batch_size]) * len(X[i : i + batch_size])
        return total / len(X)

    def predict(self, X: Array) -> Array:
        return np.asarray(np.argmax(self.net.forward(X.astype(self.dtype)), axis=1))


class TorchTrainer:
    """``threads``: PyTorch's intra-op threads, or None for rustbp's rule (``threads_for``)."""

    def __init__(
        self,
        torch: Any,
        spec: Spec,
        w: Params,
        X: Array,
        T: Array,
        dtype: str,
        device: str,
        threads: int | None,
    ) -> None:
        opt = ("sgd", spec.lr, spec.momentum) if spec.optimizer == "sgd" else ("adam", spec.lr)
        self.net = torch_net.TorchNet(
            torch,
            w,
            hidden=spec.hidden,
            output=spec.output,
            loss=spec.loss,
            train_bias=spec.train_bias,
            optimizer=opt,
            dtype=dtype,
            device=device,
        )
        self.torch = torch
        if device == "cuda":  # plain float32 products, like rustbp's GPU path and the reference check
            torch.backends.cuda.matmul.allow_tf32 = False
            torch.backends.cudnn.allow_tf32 = False
        self.X, self.T = self.net.tensor(X), self.net.tensor(T)
        torch.set_num_threads(threads or threads_for(spec.work(len(X))))

    def train(self, steps: int) -> float:
        return self.net.train(self.X, self.T, steps)

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        net = self.net
        Xt, Yt = net.tensor(X), net.tensor(Y)
        total = None
        for i in range(0, len(X), batch_size):
            net.opt.zero_grad()
            loss = net._loss(Xt[i : i + batch_size], Yt[i : i + batch_size])
            loss.backward()
            net.opt.step()
            part = loss.detach() * min(batch_size, len(X) - i)
            total = part if total is None else total + part
        return float(total.item()) / len(X) if total is not None else float("nan")

    def predict(self, X: Array) -> Array:
        return np.asarray(np.argmax(self.net.forward(self.net.tensor(X)), axis=1))


class RustbpTrainer:
    """``loop="rust"``: ``train``/``fit`` loop inside Rust; ``loop="python"``: a Python loop over
    ``train_step``, what a user who writes their own loop gets."""

    def __init__(self, spec: Spec, w: Params, X: Array, T: Array, dtype: str, loop: str, device: str) -> None:
        self.net = spec.network(dtype, device)
        self.net.set_weights(dict(w))
        self.dtype, self.loop = dtype, loop
        self.X, self.T = np.ascontiguousarray(X, dtype), np.ascontiguousarray(T, dtype)

    def train(self, steps: int) -> float:
        if self.loop == "rust":
            return float(self.net.train(self.X, self.T, steps)[-1])
        step, X, T, loss = self.net.train_step, self.X, self.T, float("nan")
        for _ in range(steps):
            loss = step(X, T)
        return loss

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        X, Y = np.ascontiguousarray(X, self.dtype), np.ascontiguousarray(Y, self.dtype)
        if self.loop == "rust":
            return float(self.net.fit(X, Y, 1, batch_size, shuffle=False)[0])
        total, step = 0.0, self.net.train_step
        for i in range(0, len(X), batch_size):
            total += step(X[i : i + batch_size], Y[i : i + batch_size]) * len(X[i : i + batch_size])
        return total / len(X)

    def predict(self, X: Array) -> Array:
        return np.asarray(np.argmax(self.net.forward(np.ascontiguousarray(X, self.dtype)), axis=1))


class SklearnTrainer:
    """scikit-learn's ``MLPClassifier`` with the same architecture and optimizer settings, trained one
    epoch per ``partial_fit`` on the same batches. It draws its own starting weights (Glorot), so only
    the accuracy it reaches is compared, not its loss."""

    def __init__(self, spec: Spec, w: Params, X: Array, T: Array) -> None:
        nn = importlib.import_module("sklearn.neural_network")
        self.clf = nn.MLPClassifier(
            hidden_layer_sizes=(spec.n_hidden,),
            activation=spec.hidden,
            solver="adam",
            alpha=0.0,
            batch_size=32,
            learning_rate_init=spec.lr,
            shuffle=False,
            random_state=0,
        )
        self.classes = np.arange(spec.n_out)

    def train(self, steps: int) -> float:
        raise NotImplementedError("scikit-learn is only run on the digits")

    def epoch(self, X: Array, Y: Array, y: Array, batch_size: int) -> float:
        self.clf.batch_size = batch_size
        self.clf.partial_fit(X, y, classes=self.classes)
        return float(self.clf.loss_)

    def predict(self, X: Array) -> Array:
        return np.asarray(self.clf.predict(X))


def threads_for(work: int) -> int:
    """The threads an implementation that chooses its own is given for a step of ``work`` multiply-adds:
    rustbp's own rule (products of 2**18 multiply-adds and more use every core, smaller ones one), so no
    library spins threads on tiny work while another's wait on a shared 2-core machine."""
    return (os.cpu_count() or 1) if work >= 3 * 2**18 else 1


def rustbp_name(dtype: str, loop: str, device: str = "cpu") -> str:
    where = "GPU " if device == "gpu" else ""
    how = "loop in Rust" if loop == "rust" else "Python loop"
    return f"rustbp {where}{'f32' if dtype == 'float32' else 'f64'} ({how})"


def short(dtype: str) -> str:
    return "f32" if dtype == "float32" else "f64"


def available(gpu: bool, notes: list[str]) -> dict[str, Impl]:
    """Every implementation this machine can run, by name; what is missing is said in ``notes``."""
    impls: dict[str, Impl] = {}

    def add(impl: Impl) -> None:
        impls[impl.name] = impl

    add(Impl("pure Python f64", "pure", "float64", PureTrainer))
    add(Impl("pure Python f64 (unrolled 2-2-2)", "pure", "float64", UnrolledTrainer))
    for dt in ("float64", "float32"):
        add(Impl(f"NumPy {short(dt)}", "numpy", dt, partial(NumpyTrainer, dtype=dt)))
    torch = torch_net.load()
    if torch is None:
        notes.append("PyTorch: not installed, its columns are skipped (pip install torch to add them)")
    else:
        devices = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
        if len(devices) == 1:
            notes.append("PyTorch CUDA: no CUDA device, its column is skipped")
        for dev, threads in [("cpu", None), ("cpu", 1)] + [("cuda", None)] * (len(devices) - 1):
            for dt in ("float32", "float64"):
                add(
                    Impl(
                        f"PyTorch {dev.upper()} {short(dt)}" + (" 1 thread" if threads else ""),
                        "torch" if dev == "cpu" else "torch-cuda",
                        dt,
                        partial(TorchTrainer, torch, dtype=dt, device=dev, threads=threads),
                    )
                )
    for device in ["cpu"] + (["gpu"] if gpu else []):
        for dt in ("float64", "float32") if device == "cpu" else ("float32",):  # GPU compute is float32
            for loop in ("rust", "python"):
                add(
                    Impl(
                        rustbp_name(dt, loop, device),
                        "rustbp" if device == "cpu" else "rustbp-gpu",
                        dt,
                        partial(RustbpTrainer, dtype=dt, loop=loop, device=device),
                    )
                )
    try:
        importlib.import_module("sklearn.neural_network")
        add(Impl("scikit-learn MLPClassifier", "sklearn", "float64", SklearnTrainer))
    except ImportError:
        notes.append("scikit-learn: not installed, the digits workload is skipped (pip install 'rustbp[bench]')")
    return impls


def gpu_adapter(notes: list[str]) -> str | None:
    """A description of the adapter rustbp's GPU columns run on, or None (with a note) when there is none."""
    try:
        adapter = rustbp.Network(2, 2, 2, device="gpu").adapter
    except rustbp.GpuUnavailableError as e:
        notes.append(f"rustbp GPU: {e}; its columns are skipped")
        return None
    assert adapter is not None
    desc = f"{adapter.name} ({adapter.backend}, {adapter.device_type})"
    if adapter.is_software:
        desc += " -- SOFTWARE ADAPTER: runs on the CPU, its 'GPU' timings say nothing about a real GPU"
    return desc
