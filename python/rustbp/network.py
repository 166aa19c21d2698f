"""The public ``Network`` class: Python-side argument checks and conversions around the Rust core."""

from __future__ import annotations

import html
import os
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import Any, Union

import numpy as np
import numpy.typing as npt

from . import _files, _rustbp, _torch, explain, training
from .config import DEVICES, NetworkConfig, TrainingConfig, _one_of, _positive_int, optimizer_from_core, random_seed
from .config import DTYPES as DTYPE_NAMES
from .explain import Step
from .gpu import GpuDevice
from .optim import SGD, Adam, Optimizer
from .training import Callback, History

__all__ = ["Network"]

ArrayLike = Union[npt.ArrayLike, np.ndarray]
FloatArray = npt.NDArray[np.floating[Any]]

DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(name) for name in DTYPE_NAMES}


def _as_array(x: object, dtype: np.dtype[Any], name: str) -> np.ndarray:
    """``x`` as a numpy array of ``dtype``: other numeric dtypes and non-contiguous arrays are converted,
    strings, objects and None rejected. Shapes and finiteness are checked in Rust."""
    if type(x) is np.ndarray and x.dtype is dtype and x.flags.aligned:
        return x  # the fast path of train_step loops (Rust copies strided arrays itself)
    if x is None or isinstance(x, (str, bytes)):
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}")
    try:
        a = np.asarray(x)
    except (TypeError, ValueError, OverflowError) as e:
        raise TypeError(f"{name}: expected a numeric array ({e})") from None
    if a.dtype.kind not in "biuf":
        raise TypeError(f"{name}: expected a numeric array, got dtype {a.dtype}")
    # A value beyond float32's range becomes inf, which Rust then reports with its position; numpy's
    # cast warning would only repeat that, less precisely.
    # Aligned too: Rust reads the values as f32/f64, which a misaligned buffer does not hold.
    with np.errstate(over="ignore", invalid="ignore"):
        return np.require(a, dtype=dtype, requirements=["C", "A"])


class Network:
    """A three-layer fully connected network, input -> hidden -> output, trained in Rust.

    Weights are laid out like ``torch.nn.Linear.weight``: ``w1`` is (n_hidden, n_in), ``w2`` is
    (n_out, n_hidden). See the README for every option.
    """

    _seed: int | None  # the seed it was built with, for ``config``; None when loaded or unpickled

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        *,
        hidden_activation: str = "sigmoid",
        output_activation: str = "sigmoid",
        loss: str = "half_sse",
        bias: str = "per_neuron",
        train_bias: bool = True,
        optimizer: Optimizer | None = None,
        dtype: str | None = None,
        device: str = "cpu",
        seed: int | None = None,
    ) -> None:
        config = NetworkConfig(
            n_in, n_hidden, n_out, hidden_activation=hidden_activation, output_activation=output_activation,
            loss=loss, bias=bias, train_bias=train_bias, optimizer=SGD(lr=0.5) if optimizer is None else optimizer,
            dtype=dtype, device=device, seed=seed,
        )  # fmt: skip
        seed = random_seed() if config.seed is None else int(config.seed)
        assert config.dtype is not None  # NetworkConfig resolves it for the device
        self._init(_rustbp.Core(_settings(config), config.dtype, config.device, seed), config.optimizer)
        self._seed = seed

    def _init(self, core: _rustbp.Core, optimizer: Optimizer) -> None:
        self._core = core
        self._config: dict[str, Any] = core.config()
        self._dtype = DTYPES[core.dtype]
        self._optimizer = optimizer
        self._seed = None

    @classmethod
    def article(
        cls,
        device: str = "cpu",
        *,
        lr: float | None = None,
        weights: Mapping[str, ArrayLike] | Sequence[float] | None = None,
        biases: Sequence[float] | None = None,
    ) -> Network:
        """The worked example of the article: 2-2-2, weights 0.15..0.55, shared biases 0.35 and 0.60
        that are not trained, sigmoid on both layers, half_sse loss, plain SGD with lr 0.5; float64 on
        the CPU, float32 on the GPU.

        The same kind of network with other numbers: ``lr``; ``weights`` as ``{"w1": (n_hidden, n_in),
        "w2": (n_out, n_hidden)}`` (any widths) or the article's w1..w8 in order; ``biases`` as (b1, b2)."""
        _one_of("device", device, DEVICES)
        if lr is None and weights is None and biases is None:
            return cls._from_core(_rustbp.Core.article(device))
        w1, w2 = _article_weights(weights)
        b = _article_biases(biases)
        net = cls(
            w1.shape[1], w1.shape[0], w2.shape[0], bias="shared", train_bias=False,
            optimizer=SGD(lr=0.5 if lr is None else lr), device=device, seed=0,
        )  # fmt: skip
        net.set_weights({"w1": w1, "b1": b[:1], "w2": w2, "b2": b[1:]})
        return net

    # -- shape and settings -------------------------------------------------------------------------
    @property
    def n_in(self) -> int:
        return int(self._config["n_in"])

    @property
    def n_hidden(self) -> int:
        return int(self._config["n_hidden"])

    @property
    def n_out(self) -> int:
        return int(self._config["n_out"])

    @property
    def dtype(self) -> str:
        return str(self._dtype)

    @property
    def device(self) -> str:
        return self._core.device

    @property
    def adapter(self) -> GpuDevice | None:
        """The GPU adapter this network runs on (see ``rustbp.gpu_devices``); None on the CPU."""
        adapter = self._core.adapter()
        return None if adapter is None else GpuDevice(**adapter)

    @property
    def optimizer(self) -> Optimizer:
        return self._optimizer

    def __repr__(self) -> str:
        c = self._config
        return (
            f"Network({c['n_in']}, {c['n_hidden']}, {c['n_out']}, hidden_activation={c['hidden_activation']!r}, "
            f"output_activation={c['output_activation']!r}, loss={c['loss']!r}, bias={c['bias']!r}, "
            f"train_bias={c['train_bias']}, optimizer={self._optimizer!r}, dtype={self.dtype!r}, "
            f"device={self.device!r})"
        )

    # -- computing ----------------------------------------------------------------------------------
    def forward(self, X: ArrayLike) -> FloatArray:
        """Outputs for ``X`` of shape (batch, n_in), or (n_in,) for one sample (same rank out)."""
        return self._core.forward(_as_array(X, self._dtype, "X"))

    __call__ = forward

    def loss(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss on (X, T), without training."""
        return self._core.loss(_as_array(X, self._dtype, "X"), _as_array(T, self._dtype, "T"))

    def train_step(self, X: ArrayLike, T: ArrayLike) -> float:
        """One update on the batch (X, T); returns the loss of this step's forward pass, before the update."""
        return self._core.train_step(_as_array(X, self._dtype, "X"), _as_array(T, self._dtype, "T"))

    def train(
        self, X: ArrayLike, T: ArrayLike, steps: int, *, log_every: int = 1000, verbose: bool = False
    ) -> FloatArray:
        """``steps`` updates on the same batch, looped in Rust; returns the loss of every step. The loss
        of every ``log_every``-th step is logged at INFO on the ``rustbp`` logger (as the article printed
        it every 1000), and ``verbose`` shows a progress bar on a terminal (with tqdm installed)."""
        steps = _positive_int("steps", steps)
        log_every = _positive_int("log_every", log_every)
        x, t = _as_array(X, self._dtype, "X"), _as_array(T, self._dtype, "T")
        return training.train(self, x, t, steps, log_every, bool(verbose))

    def fit(
        self,
        X: ArrayLike,
        Y: ArrayLike,
        epochs: int | None = None,
        batch_size: int = 32,
        shuffle: bool = True,
        seed: int | None = None,
        *,
        validation_data: tuple[ArrayLike, ArrayLike] | None = None,
        validation_split: float = 0.0,
        patience: int | None = None,
        min_delta: float = 0.0,
        restore_best_weights: bool = True,
        accuracy: bool | None = None,
        verbose: bool = False,
        callbacks: Sequence[Callback] = (),
        config: TrainingConfig | None = None,
    ) -> History:
        """Mini-batch training for ``epochs`` passes over (X, Y), with optional validation, early stopping
        and per-epoch callbacks (see ``rustbp.TrainingConfig``; pass the settings as arguments or as
        ``config=``). Returns a ``History``, which also acts as the array of per-epoch mean losses."""
        settings: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "validation_split": validation_split, "patience": patience, "min_delta": min_delta,
            "restore_best_weights": restore_best_weights, "accuracy": accuracy, "verbose": verbose,
        }  # fmt: skip
        if config is None:
            config = TrainingConfig(**settings)
        elif not isinstance(config, TrainingConfig):
            raise TypeError(f"config: expected a rustbp.TrainingConfig, got {type(config).__name__}")
        elif any(v is not _FIT_DEFAULTS[k] and v != _FIT_DEFAULTS[k] for k, v in settings.items()):
            raise TypeError("config: pass the training settings either as config= or as arguments, not both")
        x, y = _as_array(X, self._dtype, "X"), _as_array(Y, self._dtype, "Y")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, Y_val)")
            validation_data = (
                _as_array(validation_data[0], self._dtype, "validation_data[0]"),
                _as_array(validation_data[1], self._dtype, "validation_data[1]"),
            )
        if isinstance(callbacks, str) or not all(callable(cb) for cb in callbacks):
            raise TypeError("callbacks: expected a sequence of callables callback(epoch, logs)")
        return training.fit(self, x, y, config, validation_data, callbacks)

    # -- weights ------------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, FloatArray]:
        """Copies of the parameters: w1 (n_hidden, n_in), b1, w2 (n_out, n_hidden), b2. A per-neuron
        bias has one value per neuron, a shared bias shape (1,), and ``bias="none"`` no entry."""
        return self._core.get_weights()

    def set_weights(self, weights: Mapping[str, ArrayLike]) -> None:
        """Replaces the parameters from a dict (any mapping) shaped like ``get_weights()``'s; shapes and
        finiteness are checked, and the optimizer state is kept."""
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights: expected a dict of arrays, got {type(weights).__name__}")
        unknown = set(weights) - {"w1", "b1", "w2", "b2"}
        if unknown:
            keys = ", ".join(sorted(map(repr, unknown)))
            raise ValueError(f"weights: unknown keys {keys}; expected w1, b1, w2, b2")
        self._core.set_weights({k: _as_array(v, self._dtype, k) for k, v in weights.items()})

    # -- configuration, files, pickling and PyTorch --------------------------------------------------
    @classmethod
    def from_config(cls, config: NetworkConfig) -> Network:
        """A new network built from a ``rustbp.NetworkConfig``."""
        if not isinstance(config, NetworkConfig):
            raise TypeError(f"config: expected a rustbp.NetworkConfig, got {type(config).__name__}")
        return cls(config.n_in, config.n_hidden, config.n_out, **config.kwargs())

    @property
    def config(self) -> NetworkConfig:
        """The settings of this network (``seed`` is the one it was built with, None if unknown)."""
        c = self._config
        names = ("hidden_activation", "output_activation", "loss", "bias", "train_bias")
        return NetworkConfig(
            c["n_in"], c["n_hidden"], c["n_out"], **{k: c[k] for k in names},
            optimizer=self._optimizer, dtype=self.dtype, device=self.device, seed=self._seed,
        )  # fmt: skip

    def save(self, path: str | os.PathLike[str], *, optimizer: bool = True) -> None:
        """Writes the network to ``path`` as safetensors, atomically: weights named like PyTorch's
        ``nn.Sequential`` state dict, the configuration and (with ``optimizer``) the optimizer state in
        the metadata, so that ``Network.load`` resumes training exactly."""
        _files.write_atomic(path, _rustbp.core_to_safetensors(self._core, bool(optimizer)))

    @classmethod
    def load(cls, path: str | os.PathLike[str], *, device: str = "cpu") -> Network:
        """A network saved by ``save``; the file is checked (format, version, checksum, shapes) first.
        With ``device="gpu"`` it is moved to the GPU as by ``to("gpu")``."""
        _one_of("device", device, DEVICES)
        net = cls._from_core(_files.read(path))
        return net if device == "cpu" else net.to(device)

    def to(self, device: str, dtype: str | None = None) -> Network:
        """A copy of this network on ``device`` ("cpu" or "gpu"): weights, configuration and optimizer
        state. ``dtype=None`` keeps the dtype, except that the GPU computes in float32 (float64 weights
        are rounded)."""
        _one_of("device", device, DEVICES)
        if dtype is None and device == "cpu":
            dtype = self.dtype
        config = replace(self.config, dtype=dtype, device=device)  # validates the pair
        assert config.dtype is not None
        net = self._from_core(self._core.to(config.device, config.dtype))
        net._seed = self._seed
        return net

    @classmethod
    def _from_core(cls, core: _rustbp.Core) -> Network:
        net = cls.__new__(cls)
        net._init(core, optimizer_from_core(core.config()["optimizer"]))
        return net

    def __getstate__(self) -> dict[str, Any]:
        # The safetensors bytes of save() for weights and configuration, so unpickling builds the network
        # from checked data; the optimizer state beside them as arrays, exact and without the size limit
        # of a safetensors header. Pickles (joblib, multiprocessing, sklearn's clone) resume exactly.
        # Both come from one copy taken under one lock, so they belong to the same step even while
        # another thread trains. A GPU network pickles as its CPU copy and goes back to the GPU.
        snapshot = self._core.to("cpu", self.dtype)
        return {"safetensors": _rustbp.core_to_safetensors(snapshot, False), "device": self.device,
                "seed": self._seed, "optimizer_state": snapshot.get_optimizer_state()}  # fmt: skip

    def __setstate__(self, state: dict[str, Any]) -> None:
        core = _rustbp.core_from_safetensors(state["safetensors"])
        core.set_optimizer_state(*state["optimizer_state"])
        if state["device"] != "cpu":
            core = core.to(state["device"], "float32")
        self._init(core, optimizer_from_core(core.config()["optimizer"]))
        self._seed = state["seed"]

    def to_torch(self) -> Any:
        """A ``torch.nn.Sequential(Linear, activation, Linear, activation)`` with copies of the weights."""
        return _torch.to_torch(self)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> Network:
        """A network with the layout and weights of ``nn.Sequential(Linear, act, Linear[, act])``;
        ``kwargs`` (loss, optimizer, seed...) go to ``Network``."""
        return _torch.from_torch(cls, module, kwargs)

    # -- teaching -----------------------------------------------------------------------------------
    def explain_step(self, x: ArrayLike, t: ArrayLike, *, apply: bool = False) -> Step:
        """Every number of one training step on one sample, as a ``rustbp.Step``: the net and out value
        of each neuron, the loss, every chain-rule factor, the deltas, gradients and the weights the
        update gives (``w1_after``..., for a 2-2-2 net ``w5_new``...). The network keeps its weights
        and optimizer state unless ``apply=True``. A mapping, as it always was: ``step["E_total"]``,
        ``step["dE/dout_o1"]``, ``step["grad_w2"]``; see ``rustbp.Step`` for every key."""
        if not isinstance(apply, bool):
            raise TypeError(f"apply: expected a bool, got {type(apply).__name__}")
        xa, ta = _as_array(x, self._dtype, "x"), _as_array(t, self._dtype, "t")
        before = self._core.get_weights()
        trace = self._core.explain_step(xa, ta, apply)
        if (self.n_in, self.n_hidden, self.n_out) == (2, 2, 2):
            trace.update(_article_names(trace))
        return Step(trace, x=xa, t=ta, weights=before, config=self._config, optimizer=self._optimizer, applied=apply)

    def to_svg(self) -> str:
        """The network and its current weights as an SVG picture (a heat-map beyond 8 neurons a layer)."""
        return explain.network_svg(self._config, self.get_weights())

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div>{self.to_svg()}<pre>{html.escape(repr(self))}</pre></div>"


def _article_weights(weights: object) -> tuple[np.ndarray, np.ndarray]:
    """``Network.article``'s weights: None (the article's), w1..w8 in the article's order, or a dict."""
    if weights is None:
        return np.array([[0.15, 0.20], [0.25, 0.30]]), np.array([[0.40, 0.45], [0.50, 0.55]])
    if isinstance(weights, Mapping):
        if set(weights) != {"w1", "w2"}:
            keys = ", ".join(sorted(map(repr, weights)))
            raise ValueError(f"weights: expected the keys 'w1' and 'w2', got {keys or 'none'}")
        w1 = _finite(weights["w1"], "weights['w1']", 2)
        w2 = _finite(weights["w2"], "weights['w2']", 2)
        if w2.shape[1] != w1.shape[0]:
            raise ValueError(
                f"weights: expected w2 of shape (n_out, {w1.shape[0]}) after w1 of shape {w1.shape}, got {w2.shape}"
            )
        return w1, w2
    if isinstance(weights, (str, bytes)) or not isinstance(weights, (Sequence, np.ndarray)):
        raise TypeError(f"weights: expected a dict of w1 and w2 or the 8 numbers w1..w8, got {type(weights).__name__}")
    flat = _finite(weights, "weights", 1)
    if flat.size != 8:
        raise ValueError(f"weights: expected the 8 numbers w1..w8 of the article's 2-2-2 net, got {flat.size}")
    return flat[:4].reshape(2, 2), flat[4:].reshape(2, 2)


def _article_biases(biases: object) -> np.ndarray:
    if biases is None:
        return np.array([0.35, 0.60])
    if isinstance(biases, (str, bytes)) or not isinstance(biases, (Sequence, np.ndarray)):
        raise TypeError(f"biases: expected the two numbers (b1, b2), got {type(biases).__name__}")
    b = _finite(biases, "biases", 1)
    if b.size != 2:
        raise ValueError(f"biases: expected the two numbers (b1, b2), got {b.size}")
    return b


def _finite(value: object, name: str, ndim: int) -> np.ndarray:
    """``value`` as a non-empty float64 array of ``ndim`` dimensions and finite numbers."""
    try:
        a = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise TypeError(f"{name}: expected numbers ({e})") from None
    if a.ndim != ndim or a.size == 0:
        raise ValueError(f"{name}: expected a non-empty {ndim}-D array, got shape {a.shape}")
    if not np.isfinite(a).all():
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
        raise ValueError(f"{name}: expected finite values, found {a[bad]} at position {list(bad)}")
    return a


_FIT_DEFAULTS: dict[str, Any] = {"epochs": None} | {
    f.name: f.default for f in fields(TrainingConfig) if f.name != "epochs"
}


def _article_names(s: dict[str, Any]) -> dict[str, float]:
    """The article's names for a 2-2-2 network: w1..w4 are w1[0,0], w1[0,1], w1[1,0], w1[1,1] (w1[j,i]
    joins input i to hidden neuron j: w2 is i2 -> h1), w5..w8 the same entries of w2 (w2[k,j] joins hidden
    j to output k: w6 is h2 -> o1, w7 is h1 -> o2). ``explain.weight_names`` numbers any width alike."""
    names: dict[str, float] = {"E_total": float(s["loss"])}
    for layer, unit in (("hidden", "h"), ("output", "o")):
        for j in range(2):
            names[f"net_{unit}{j + 1}"] = float(s[f"net_{layer}"][j])
            names[f"out_{unit}{j + 1}"] = float(s[f"out_{layer}"][j])
            names[f"delta_{unit}{j + 1}"] = float(s[f"delta_{layer}"][j])
    for first, key in ((1, "w1"), (5, "w2")):
        for k, (grad, new) in enumerate(zip(s[f"grad_{key}"].ravel(), s[f"{key}_after"].ravel())):
            names[f"dE_dw{first + k}"] = float(grad)
            names[f"w{first + k}_new"] = float(new)
    return names


def _settings(config: NetworkConfig) -> dict[str, Any]:
    """The core's settings dict for a validated ``config``."""
    opt = config.optimizer
    adam = opt if isinstance(opt, Adam) else Adam()
    names = ("n_in", "n_hidden", "n_out", "hidden_activation", "output_activation", "loss", "bias", "train_bias")
    return {
        **{k: getattr(config, k) for k in names},
        "optimizer": "sgd" if isinstance(opt, SGD) else "adam",
        "lr": opt.lr,
        "momentum": opt.momentum if isinstance(opt, SGD) else 0.0,
        "nesterov": opt.nesterov if isinstance(opt, SGD) else False,
        "weight_decay": opt.weight_decay,
        "beta1": adam.betas[0],
        "beta2": adam.betas[1],
        "eps": adam.eps,
    }
