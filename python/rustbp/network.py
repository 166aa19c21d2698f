"""The public ``Network`` class: Python-side argument checks and conversions around the Rust core."""

from __future__ import annotations

import html
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import replace
from typing import Any, Union, cast

import numpy as np
import numpy.typing as npt

from . import _files, _rustbp, _svg, _torch, schedules, training
from ._article import article_biases, article_names, article_weights
from ._inputs import as_array, check_probabilities, check_t, check_unit_interval, check_x
from ._types import Bias, Device, Dtype, DtypeLike, HiddenActivation, Loss, OutputActivation
from .config import DEVICES, NetworkConfig, TrainingConfig, _one_of, _positive_int, optimizer_from_core, random_seed
from .config import DTYPES as DTYPE_NAMES
from .explain import Step
from .gpu import GpuDevice
from .optim import SGD, Adam, Optimizer
from .schedules import LRSchedule, Scheduler
from .training import Callback, History

__all__ = ["Network"]

ArrayLike = Union[npt.ArrayLike, np.ndarray]
FloatArray = npt.NDArray[np.floating[Any]]

DTYPES: dict[str, np.dtype[Any]] = {name: np.dtype(name) for name in DTYPE_NAMES}


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
        hidden_activation: HiddenActivation = "sigmoid",
        output_activation: OutputActivation = "sigmoid",
        loss: Loss = "half_sse",
        bias: Bias = "per_neuron",
        train_bias: bool = True,
        optimizer: Optimizer | None = None,
        dtype: DtypeLike | None = None,
        device: Device = "cpu",
        seed: int | None = None,
    ) -> None:
        config = NetworkConfig(
            n_in, n_hidden, n_out, hidden_activation=hidden_activation, output_activation=output_activation,
            loss=loss, bias=bias, train_bias=train_bias, optimizer=SGD(lr=0.5) if optimizer is None else optimizer,
            dtype=dtype, device=device, seed=seed,
        )  # fmt: skip
        seed = random_seed() if config.seed is None else int(config.seed)
        self._init(_rustbp.Core(_settings(config), config.dtype_name, config.device, seed), config.optimizer)
        self._seed = seed

    def _init(self, core: _rustbp.Core, optimizer: Optimizer) -> None:
        self._core = core
        self._config: dict[str, Any] = core.config()
        # Looked up on every train_step: its targets may be class indices, or must be checked in [0, 1];
        # otherwise arrays of the network's dtype go to the core as they are.
        self._cross_entropy = self._config["loss"] == "cross_entropy"
        self._binary = self._config["loss"] == "binary_cross_entropy"
        self._raw_targets = not (self._cross_entropy or self._binary)
        self._dtype = DTYPES[core.dtype]
        self._optimizer = optimizer
        self._seed = None

    @classmethod
    def article(
        cls,
        device: Device = "cpu",
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
        w1, w2 = article_weights(weights)
        b = article_biases(biases)
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
    def dtype(self) -> Dtype:
        return cast(Dtype, str(self._dtype))

    @property
    def device(self) -> Device:
        return cast(Device, self._core.device)

    @property
    def adapter(self) -> GpuDevice | None:
        """The GPU adapter this network runs on (see ``rustbp.gpu_devices``); None on the CPU."""
        adapter = self._core.adapter()
        return None if adapter is None else GpuDevice(**adapter)

    @property
    def optimizer(self) -> Optimizer:
        """The optimizer's settings. Assigning one of the same kind (``SGD`` for ``SGD``, ``Adam`` for
        ``Adam``) keeps its state (momentum buffers; Adam's moments and step count), as editing a PyTorch
        optimizer's ``param_groups`` does; assigning the other kind starts a fresh state."""
        return self._optimizer

    @optimizer.setter
    def optimizer(self, optimizer: Optimizer) -> None:
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError(f"optimizer: expected rustbp.SGD or rustbp.Adam, got {type(optimizer).__name__}")
        self._replace_optimizer(replace(optimizer))  # checked again, as NetworkConfig does

    def set_lr(self, lr: float) -> None:
        """Sets the learning rate of the next steps, keeping the optimizer state."""
        optimizer = replace(self._optimizer, lr=lr)  # checks lr
        self._core.set_lr(optimizer.lr)
        self._optimizer = optimizer
        self._config = self._core.config()

    def _replace_optimizer(self, optimizer: Optimizer) -> None:
        # The core fixes its settings when built: a new core with the new ones takes over the weights and,
        # for the same kind of optimizer, the state, as ``to`` does.
        net = Network.from_config(replace(self.config, optimizer=optimizer, seed=0))
        net.set_weights(self.get_weights())
        if type(optimizer) is type(self._optimizer):
            state, updates = self._core.get_optimizer_state()
            fresh = net._core.get_optimizer_state()[0]
            if any(len(a) != len(b) for a, b in zip(state, fresh)):
                # SGD's momentum turned on or off: its buffer starts at zero, as PyTorch's does.
                state = fresh
            net._core.set_optimizer_state(state, updates)
        seed = self._seed
        self._init(net._core, optimizer)
        self._seed = seed

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
        try:
            return self._core.forward(X)  # an array of the network's dtype goes as it is
        except (TypeError, ValueError):
            x = as_array(X, self._dtype, "X")
            check_x(x, self.n_in, "X")  # a clearer message for a wrong shape
            return self._core.forward(x)

    __call__ = forward

    def predict(self, X: ArrayLike) -> npt.NDArray[Any]:
        """For a classifier, class indices: the argmax of a softmax output, or for a single sigmoid output
        1 where it is >= 0.5, else 0 (int64, shape (batch,), or a scalar for one sample). For any other
        network, the outputs, as ``forward``."""
        out = self.forward(X)
        if self._config["output_activation"] == "softmax":
            return np.asarray(np.argmax(out, axis=-1))
        if self._config["output_activation"] == "sigmoid" and self.n_out == 1:
            return (out[..., 0] >= 0.5).astype(np.int64)
        return out

    def loss(self, X: ArrayLike, T: ArrayLike) -> float:
        """The loss on (X, T), without training. For ``cross_entropy``, T may hold class indices."""
        if self._raw_targets:
            try:
                return self._core.loss(X, T)  # arrays of the network's dtype go as they are
            except (TypeError, ValueError):
                pass  # converted and checked below, for a message that says what is wrong
        return self._core.loss(*self._pair(X, T, "T"))

    def train_step(self, X: ArrayLike, T: ArrayLike) -> float:
        """One update on the batch (X, T); returns the loss of this step's forward pass, before the update.
        For ``cross_entropy``, T may hold class indices, (batch,) integers in [0, n_out)."""
        if self._raw_targets:
            try:
                # The hot path of train_step loops: arrays of the network's dtype go to the core as they are.
                return self._core.train_step(X, T)
            except (TypeError, ValueError):
                pass  # converted and checked below, for a message that says what is wrong
        x = X if type(X) is np.ndarray and X.dtype is self._dtype else as_array(X, self._dtype, "X")
        t = as_array(T, self._dtype, "T") if self._raw_targets else self._targets(T, x, "T")
        try:
            return self._core.train_step(x, t)
        except ValueError:
            self._check_pair(x, t, "T")  # a clearer message for a wrong shape; checked only on failure
            raise

    def _targets(self, T: object, x: np.ndarray, name: str) -> np.ndarray:
        """``T`` as the core takes it. For ``cross_entropy``, class indices (like ``nn.CrossEntropyLoss``'s:
        an integer per sample) become one-hot rows, and probability rows are checked; for
        ``binary_cross_entropy``, that every target is in [0, 1]."""
        if not self._cross_entropy:
            t = as_array(T, self._dtype, name)
            if self._binary and t.size:
                check_unit_interval(t, name)
            return t
        a = T if isinstance(T, np.ndarray) else None
        if a is None and not (T is None or isinstance(T, (str, bytes))):
            try:
                a = np.asarray(T)
            except (TypeError, ValueError, OverflowError):
                a = None  # as_array says what is wrong
        n_out = self.n_out
        if a is not None and a.dtype.kind in "iu":
            one_sample = a.ndim == 0 and x.ndim == 1
            batch = a.ndim == 1 and x.ndim == 2 and len(a) == len(x) and not (len(x) == 1 and n_out == 1)
            if one_sample or batch:
                wrong = (a < 0) | (a >= n_out)
                if wrong.any():
                    i = int(np.flatnonzero(wrong)[0])
                    raise ValueError(
                        f"{name}: class indices must be integers in [0, {n_out}), got {a.flat[i]} at position {i}"
                    )
                return np.eye(n_out, dtype=self._dtype)[a]
        t = as_array(T if a is None else a, self._dtype, name)
        rows = 1 if x.ndim == 1 else len(x)
        if t.ndim in (1, 2) and t.shape[-1] == n_out and (1 if t.ndim == 1 else len(t)) == rows and t.size:
            check_probabilities(t, name)  # only for the right shape: a wrong one gets its own message
        return t

    def _check_pair(self, x: np.ndarray, t: np.ndarray, name: str) -> None:
        check_x(x, self.n_in, "X")
        check_t(x, t, self.n_out, name, self._cross_entropy)

    def _pair(self, X: ArrayLike, T: ArrayLike, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(X, T) converted and their shapes checked, with the fix for a common mistake in the message."""
        x = as_array(X, self._dtype, "X")
        t = self._targets(T, x, name)
        self._check_pair(x, t, name)
        return x, t

    def train(
        self, X: ArrayLike, T: ArrayLike, steps: int, *, log_every: int = 1000, verbose: bool = False
    ) -> FloatArray:
        """``steps`` updates on the same batch, looped in Rust; returns the loss of every step. The loss
        of every ``log_every``-th step is logged at INFO on the ``rustbp`` logger (as the article printed
        it every 1000), and ``verbose`` shows progress: a bar on a terminal or in Jupyter, else a line
        every ``log_every`` steps on stderr. For ``cross_entropy``, T may hold class indices."""
        steps = _positive_int("steps", steps)
        log_every = _positive_int("log_every", log_every)
        x, t = self._pair(X, T, "T")
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
        callbacks: Sequence[Callback] | None = (),
        config: TrainingConfig | None = None,
        lr_schedule: LRSchedule | Scheduler | None = None,
        sample_weight: ArrayLike | None = None,
    ) -> History:
        """Mini-batch training for ``epochs`` passes over (X, Y), with optional validation, early stopping
        and per-epoch callbacks (see ``rustbp.TrainingConfig``; pass the settings as arguments or as
        ``config=``). Returns a ``History``, which also acts as the array of per-epoch mean losses.

        For ``cross_entropy``, Y may hold class indices. ``lr_schedule`` (``rustbp.StepLR``,
        ``ExponentialLR``, ``CosineAnnealingLR``, ``ReduceLROnPlateau``) sets the learning rate of each
        epoch, stepped after every epoch as PyTorch's epoch schedulers are; a schedule starts from the
        current rate, a started ``Scheduler`` goes on where it was. The network keeps the rate the
        schedule gives for the epoch after the last. ``StepLR``, ``ExponentialLR`` and
        ``CosineAnnealingLR`` do not depend on the loss, so their rates are handed to the core, and the
        epochs still run in one call when nothing else needs Python between them.

        ``sample_weight`` ((n_samples,), finite, >= 0, not all zero) weighs each sample's loss and
        gradient by ``w_i n / sum(w)``: a full batch's loss is the weighted mean ``sum w_i l_i / sum w_i``,
        integer weights train like repeated rows (exactly so with full batches), and equal weights like
        none. The recorded losses are weighted alike; a validation split takes its samples' weights
        along, unused (validation losses are unweighted). CPU networks only."""
        settings: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "validation_split": validation_split, "patience": patience, "min_delta": min_delta,
            "restore_best_weights": restore_best_weights, "accuracy": accuracy, "verbose": verbose,
        }  # fmt: skip
        config = training.training_config(config, settings)
        x, y = self._pair(X, Y, "Y")
        weights = None
        if sample_weight is not None:
            weights = as_array(sample_weight, self._dtype, "sample_weight")
            rows = 1 if x.ndim == 1 else len(x)
            if weights.shape != (rows,):
                raise ValueError(
                    f"sample_weight: expected shape ({rows},), one weight per sample of X, got {tuple(weights.shape)}"
                )
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, Y_val)")
            x_val = as_array(validation_data[0], self._dtype, "validation_data[0]")
            y_val = self._targets(validation_data[1], x_val, "validation_data[1]")
            check_x(x_val, self.n_in, "validation_data[0]")
            check_t(x_val, y_val, self.n_out, "validation_data[1]", self._cross_entropy)
            validation_data = (x_val, y_val)
        scheduler = schedules.started(lr_schedule, self._optimizer.lr)
        return training.fit(self, x, y, config, validation_data, _callbacks(callbacks), scheduler, weights)

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
        self._core.set_weights({k: as_array(v, self._dtype, k) for k, v in weights.items()})

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
    def load(cls, path: str | os.PathLike[str], *, device: Device = "cpu") -> Network:
        """A network saved by ``save``; the file is checked (format, version, checksum, shapes) first.
        With ``device="gpu"`` it is moved to the GPU as by ``to("gpu")``."""
        _one_of("device", device, DEVICES)
        net = cls._from_core(_files.read(path))
        return net if device == "cpu" else net.to(device)

    def to(self, device: Device, dtype: DtypeLike | None = None) -> Network:
        """A copy of this network on ``device`` ("cpu" or "gpu"): weights, configuration and optimizer
        state. ``dtype=None`` keeps the dtype, except that the GPU computes in float32 (float64 weights
        are rounded)."""
        _one_of("device", device, DEVICES)
        if dtype is None and device == "cpu":
            dtype = self.dtype
        config = replace(self.config, dtype=dtype, device=device)  # validates the pair
        net = self._from_core(self._core.to(config.device, config.dtype_name))
        net.__dict__.update(self._extra_attributes())  # a subclass's attributes, shallowly, as copy.copy
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
        # A subclass's own attributes travel too, so that it unpickles whole.
        state = pickled_state(self._core.to("cpu", self.dtype), self.device, self._seed)
        extra = self._extra_attributes()
        return state | {"attributes": extra} if extra else state

    def __setstate__(self, state: dict[str, Any]) -> None:
        data, device, seed, (buffers, updates), extra = _pickled(state)
        core = _rustbp.core_from_safetensors(data)
        core.set_optimizer_state(buffers, updates)
        if device != "cpu":
            core = core.to(device, "float32")
        self._init(core, optimizer_from_core(core.config()["optimizer"]))
        self._seed = seed
        self.__dict__.update(extra)

    def _extra_attributes(self) -> dict[str, Any]:
        """What a subclass (or a user) added to the instance, beyond what ``_init`` sets."""
        return {k: v for k, v in self.__dict__.items() if k not in _OWN_ATTRIBUTES}

    def to_torch(self, dtype: Any = None) -> Any:
        """A ``torch.nn.Sequential(Linear, activation, Linear, activation)`` with copies of the weights, in
        ``dtype`` ("float32", "float64" or a torch dtype); None means ``torch.get_default_dtype()``
        (float32 unless changed), like any module PyTorch builds, whatever this network's dtype."""
        return _torch.to_torch(self, dtype)

    @classmethod
    def from_torch(cls, module: Any, **kwargs: Any) -> Network:
        """A network with the layout and weights of ``nn.Sequential(Linear, act, Linear[, act])``;
        ``kwargs`` (loss, optimizer, seed...) go to ``Network``. A module without a final activation
        (raw logits) becomes a softmax network with cross_entropy loss, with a warning, unless ``loss``
        says otherwise (``loss="mse"``: identity outputs; ``loss="binary_cross_entropy"``: the sigmoid of
        ``nn.BCEWithLogitsLoss``, so forward returns probabilities)."""
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
        xa, ta = as_array(x, self._dtype, "x"), as_array(t, self._dtype, "t")
        if self._binary and ta.size:
            check_unit_interval(ta, "t")
        before = self._core.get_weights()
        trace = self._core.explain_step(xa, ta, apply)
        if (self.n_in, self.n_hidden, self.n_out) == (2, 2, 2):
            trace.update(article_names(trace))
        return Step(trace, x=xa, t=ta, weights=before, config=self._config, optimizer=self._optimizer, applied=apply)

    def to_svg(self) -> str:
        """The network and its current weights as an SVG picture (a heat-map beyond 8 neurons a layer)."""
        return _svg.network_svg(self._config, self.get_weights())

    def _repr_svg_(self) -> str:
        return self.to_svg()

    def _repr_html_(self) -> str:
        return f"<div>{self.to_svg()}<pre>{html.escape(repr(self))}</pre></div>"


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


def _callbacks(callbacks: Any) -> Sequence[Callback]:
    """``fit``'s callbacks as a tuple; None means none."""
    expected = "callbacks: expected a sequence of callables callback(epoch, logs)"
    if callbacks is None:
        return ()
    if callable(callbacks):
        raise TypeError(
            f"{expected}, got the single callable {callbacks!r}: pass [{getattr(callbacks, '__name__', 'it')}]"
        )
    if isinstance(callbacks, (str, bytes)) or not isinstance(callbacks, Iterable):
        raise TypeError(f"{expected}, got {type(callbacks).__name__} {callbacks!r}")
    found = tuple(callbacks)
    wrong = [cb for cb in found if not callable(cb)]
    if wrong:
        raise TypeError(f"{expected}, got {type(wrong[0]).__name__} {wrong[0]!r} among them")
    return found


# What ``_init`` sets; anything else in an instance's __dict__ is a subclass's own.
_OWN_ATTRIBUTES = frozenset(
    {"_core", "_config", "_cross_entropy", "_binary", "_raw_targets", "_dtype", "_optimizer", "_seed"}
)


def pickled_state(snapshot: _rustbp.Core, device: Device, seed: int | None) -> dict[str, Any]:
    """What a pickle holds of a network, from ``snapshot``, its CPU copy taken under one lock: the
    safetensors bytes of ``save`` and the optimizer state beside them."""
    return {"safetensors": _rustbp.core_to_safetensors(snapshot, False), "device": device, "seed": seed,
            "optimizer_state": snapshot.get_optimizer_state()}  # fmt: skip


def _pickled(state: Any) -> tuple[bytes, str, int | None, tuple[list[list[Any]], int], dict[str, Any]]:
    """The parts of a pickled ``Network``'s state, checked: a pickle comes from elsewhere, and its errors
    must say what in it is wrong rather than fail deep inside."""

    def wrong(part: str, expected: str, got: Any) -> TypeError:
        return TypeError(f"pickled Network state {part}: expected {expected}, got {type(got).__name__} {got!r:.80}")

    if not isinstance(state, dict):
        raise wrong("", "a dict", state)
    missing = [k for k in ("safetensors", "device", "seed", "optimizer_state") if k not in state]
    if missing:
        raise ValueError(f"pickled Network state: missing {', '.join(missing)}; it was not made by Network")
    data, device, seed, opt = state["safetensors"], state["device"], state["seed"], state["optimizer_state"]
    extra = state.get("attributes", {})
    if not isinstance(data, bytes):
        raise wrong("safetensors", "bytes", data)
    _one_of("pickled Network state device", device, DEVICES)
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**64):
        raise ValueError(f"pickled Network state seed: expected None or an integer in [0, 2**64), got {seed!r}")
    if not isinstance(opt, (tuple, list)) or len(opt) != 2 or not isinstance(opt[0], list):
        raise wrong("optimizer_state", "a pair (buffers, updates)", opt)
    updates = opt[1]
    if isinstance(updates, bool) or not isinstance(updates, int) or not 0 <= updates < 2**64:
        raise ValueError(
            f"pickled Network state optimizer_state: expected a non-negative update count, got {updates!r}"
        )
    if not isinstance(extra, dict) or not all(isinstance(k, str) and k not in _OWN_ATTRIBUTES for k in extra):
        raise wrong("attributes", "a dict of a subclass's attribute names", extra)
    return data, device, seed, (opt[0], updates), extra
