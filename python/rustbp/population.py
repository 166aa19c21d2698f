"""``Population``: many networks of one shape trained as one (seeds, sweeps, ensembles, bagging).

Member ``i`` is exactly the ``Network`` built with that member's seed and optimizer settings and given
the same calls: the core runs the network's own code on each member, members side by side on its
threads, so results agree bit for bit on the CPU (float64 and float32). On the GPU, members train side
by side, every member bit for bit its GPU network alone (and within 1e-4 of the CPU): members of up to
2,560 parameters in one dispatch, one workgroup each; larger ones with every dispatch of a step covering
all of them."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any, Union, cast

import numpy as np
import numpy.typing as npt

from . import _rustbp
from ._inputs import as_array, check_x
from ._types import Bias, Device, Dtype, DtypeLike, HiddenActivation, Loss, OutputActivation
from .config import NetworkConfig, TrainingConfig, _positive_int, random_seed
from .network import FloatArray, Network, _settings, pickled_state
from .optim import SGD, Optimizer
from .schedules import LRSchedule
from .training import Callback, History, training_config

__all__ = ["Population", "PopulationHistory", "bootstrap_rows"]

ArrayLike = Union[npt.ArrayLike, np.ndarray]
#: One value for every member, or a sequence of one value per member.
PerMember = Union[float, Sequence[float], np.ndarray]

#: Optimizer settings that may differ between members.
HYPER_PARAMETERS = ("lr", "momentum", "weight_decay", "betas", "eps")


class PopulationHistory:
    """What one ``Population.fit`` recorded: ``members[i]`` is member i's ``History`` (what
    ``Network.fit`` would have returned for it), and ``loss``, ``val_loss``, ``accuracy``,
    ``val_accuracy`` stack them as (size, epochs) arrays, NaN after a member stopped early."""

    def __init__(self, members: list[History]) -> None:
        self.members = members

    def _stacked(self, name: str) -> npt.NDArray[np.float64] | None:
        if not any(name in h.history for h in self.members):
            return None
        out = np.full((len(self.members), self.epochs), np.nan)
        for row, h in zip(out, self.members):
            values = h.history.get(name, [])
            row[: len(values)] = values
        return out

    @property
    def loss(self) -> npt.NDArray[np.float64]:
        loss = self._stacked("loss")
        return np.zeros((len(self.members), 0)) if loss is None else loss

    @property
    def val_loss(self) -> npt.NDArray[np.float64] | None:
        return self._stacked("val_loss")

    @property
    def accuracy(self) -> npt.NDArray[np.float64] | None:
        return self._stacked("accuracy")

    @property
    def val_accuracy(self) -> npt.NDArray[np.float64] | None:
        return self._stacked("val_accuracy")

    @property
    def lr(self) -> npt.NDArray[np.float64] | None:
        """Each member's learning rate per epoch, where a schedule set it."""
        return self._stacked("lr")

    @property
    def epochs(self) -> int:
        """The most epochs any member ran."""
        return max(h.epochs for h in self.members)

    @property
    def best_epoch(self) -> list[int | None]:
        """Each member's best epoch (from 0) under early stopping, else None."""
        return [h.best_epoch for h in self.members]

    @property
    def stopped_early(self) -> npt.NDArray[np.bool_]:
        return np.array([h.stopped_early for h in self.members])

    def __array__(self, dtype: npt.DTypeLike | None = None, copy: bool | None = None) -> npt.NDArray[Any]:
        return self.loss if dtype is None else self.loss.astype(dtype)

    def __len__(self) -> int:
        return len(self.members)

    def __getitem__(self, i: int) -> History:
        return self.members[i]

    def __iter__(self) -> Iterator[History]:
        return iter(self.members)

    def __repr__(self) -> str:
        loss = self.loss
        last = f", final loss mean={np.nanmean(loss[:, -1]):.6g}" if loss.size else ""
        return f"PopulationHistory(size={len(self.members)}, epochs={self.epochs}{last})"


class Population:
    """``size`` networks ``n_in -> n_hidden -> n_out`` of one shape, trained as one.

    Takes every option of ``Network``. ``lr``, ``momentum``, ``weight_decay`` and Adam's ``betas`` and
    ``eps`` override the ``optimizer``'s, each with one value or a sequence of ``size`` values (one per
    member). Member i gets the seed ``seed + i``, unless ``seeds`` lists them.
    """

    def __init__(
        self,
        n_in: int,
        n_hidden: int,
        n_out: int,
        size: int,
        *,
        hidden_activation: HiddenActivation = "sigmoid",
        output_activation: OutputActivation = "sigmoid",
        loss: Loss = "half_sse",
        bias: Bias = "per_neuron",
        train_bias: bool = True,
        optimizer: Optimizer | None = None,
        lr: PerMember | None = None,
        momentum: PerMember | None = None,
        weight_decay: PerMember | None = None,
        betas: Any = None,
        eps: PerMember | None = None,
        dtype: DtypeLike | None = None,
        device: Device = "cpu",
        seed: int | None = None,
        seeds: Sequence[int] | None = None,
    ) -> None:
        size = _positive_int("size", size)
        base = NetworkConfig(
            n_in, n_hidden, n_out, hidden_activation=hidden_activation, output_activation=output_activation,
            loss=loss, bias=bias, train_bias=train_bias, optimizer=SGD(lr=0.5) if optimizer is None else optimizer,
            dtype=dtype, device=device, seed=seed,
        )  # fmt: skip
        optimizers = _optimizers(
            base.optimizer, size, lr=lr, momentum=momentum, weight_decay=weight_decay, betas=betas, eps=eps
        )
        member_seeds = _member_seeds(size, base.seed, seeds)
        settings = {opt: _settings(replace(base, optimizer=opt)) for opt in set(optimizers)}
        core = _rustbp.PopulationCore([settings[o] for o in optimizers], base.dtype_name, base.device, member_seeds)
        self._init(core, optimizers)
        self.seeds: list[int] | None = member_seeds

    def _init(self, core: _rustbp.PopulationCore, optimizers: list[Optimizer]) -> None:
        self._core = core
        self._optimizers = optimizers
        self.seeds = None
        #: What the last ``fit`` recorded (``best`` ranks the members by it).
        self.history: PopulationHistory | None = None
        self._first_member = 0  # this population's first member in a larger one it is a shard of
        # A CPU network of the members' shape and dtype: it converts and checks inputs as theirs.
        self._like = Network._from_core(core.member(0, "cpu"))

    @classmethod
    def from_networks(cls, networks: Sequence[Network]) -> Population:
        """A population of copies of ``networks`` (one shape, device and dtype; optimizers may differ)."""
        if isinstance(networks, Network) or not all(isinstance(n, Network) for n in networks):
            raise TypeError("networks: expected a sequence of rustbp.Network")
        nets = list(networks)
        pop = cls.__new__(cls)
        pop._init(_rustbp.PopulationCore.stack([n._core for n in nets]), [n.optimizer for n in nets])
        return pop

    # -- what it is ---------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        return len(self._core)

    def __len__(self) -> int:
        return len(self._core)

    @property
    def n_in(self) -> int:
        return self._like.n_in

    @property
    def n_hidden(self) -> int:
        return self._like.n_hidden

    @property
    def n_out(self) -> int:
        return self._like.n_out

    @property
    def dtype(self) -> Dtype:
        return self._like.dtype

    @property
    def device(self) -> Device:
        return cast(Device, self._core.device)

    @property
    def optimizers(self) -> list[Optimizer]:
        """Each member's optimizer settings."""
        return list(self._optimizers)

    def __repr__(self) -> str:
        c = self._like._config
        return (
            f"Population({c['n_in']}, {c['n_hidden']}, {c['n_out']}, size={self.size}, "
            f"hidden_activation={c['hidden_activation']!r}, output_activation={c['output_activation']!r}, "
            f"loss={c['loss']!r}, optimizer={self._optimizers[0]!r}{', ...' if self._varied() else ''}, "
            f"dtype={self.dtype!r}, device={self.device!r})"
        )

    def _varied(self) -> bool:
        return any(o != self._optimizers[0] for o in self._optimizers)

    # -- members ------------------------------------------------------------------------------------
    def _index(self, i: object) -> int:
        if isinstance(i, bool) or not isinstance(i, (int, np.integer)):
            raise TypeError(f"index: expected an integer, got {type(i).__name__}")
        if not -self.size <= i < self.size:
            raise IndexError(f"index: expected an integer in [-{self.size}, {self.size}), got {i}")
        return int(i) % self.size

    def __getitem__(self, i: int) -> Network:
        """Member ``i`` as a ``Network`` of its own (weights and optimizer state copied)."""
        return Network._from_core(self._core.member(self._index(i)))

    def __setitem__(self, i: int, net: Network) -> None:
        """Replaces member ``i`` with a copy of ``net`` (same shape, device and dtype)."""
        i = self._index(i)
        if not isinstance(net, Network):
            raise TypeError(f"value: expected a rustbp.Network, got {type(net).__name__}")
        if (net.device, net.dtype) != (self.device, self.dtype):
            raise ValueError(
                f"value: expected a network on {self.device} in {self.dtype}, got {net.device} in {net.dtype}"
            )
        self._core.replace(i, net._core)
        self._optimizers[i] = net.optimizer

    def __iter__(self) -> Iterator[Network]:
        return (self[i] for i in range(self.size))

    # -- computing ----------------------------------------------------------------------------------
    def forward(self, X: ArrayLike) -> FloatArray:
        """Every member's outputs: (size, batch, n_out) for X (batch, n_in); (size, n_out) for X (n_in,)."""
        x = as_array(X, self._like._dtype, "X")
        check_x(x, self.n_in, "X")
        out = self._core.forward(x)
        return out.reshape(self.size, -1, self.n_out) if x.ndim == 2 else out.reshape(self.size, self.n_out)

    __call__ = forward

    def predict_mean(self, X: ArrayLike) -> FloatArray:
        """The ensemble's output: the mean of the members' outputs, (batch, n_out) or (n_out,)."""
        return np.asarray(self.forward(X).mean(axis=0))

    def loss(self, X: ArrayLike, T: ArrayLike) -> npt.NDArray[np.float64]:
        """Every member's loss on (X, T): (size,)."""
        return self._core.loss(*self._like._pair(X, T, "T"))

    def train(self, X: ArrayLike, T: ArrayLike, steps: int) -> npt.NDArray[np.float64]:
        """``steps`` updates of every member on the batch (X, T); the losses, (size, steps)."""
        steps = _positive_int("steps", steps)
        return self._core.train(*self._like._pair(X, T, "T"), steps)

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
        bootstrap: bool = False,
        lr_schedule: LRSchedule | None = None,
        sample_weight: ArrayLike | None = None,
        client: Any = None,
        shards: int | None = None,
    ) -> PopulationHistory:
        """``Network.fit`` for every member at once: each member trains as ``Network.fit`` with these
        arguments would train it (the same shuffles for a given ``seed``), stops early on its own, and
        keeps its own best weights. Callbacks get ``logs`` whose values are (size,) arrays (NaN for
        members that stopped); returning True stops every member. With ``bootstrap``, member i trains
        on its own resample of the rows, ``bootstrap_rows(len(X), seed, i)`` (bagging). ``lr_schedule``
        (a schedule, not a started ``Scheduler``) is started for each member at its own rate and stepped
        as ``Network.fit`` steps it; ``sample_weight`` weighs the rows as in ``Network.fit``.

        With ``client`` (a ``dask.distributed.Client``), the members train on the cluster's workers in
        ``shards`` parts (one per worker by default) and come back equal to a local run's; see
        ``rustbp.distributed``."""
        from ._population_fit import fit

        if client is not None:
            from . import distributed

            return distributed.fit(
                self, X, Y, epochs, client=client, shards=shards, batch_size=batch_size, shuffle=shuffle,
                seed=seed, validation_data=validation_data, validation_split=validation_split, patience=patience,
                min_delta=min_delta, restore_best_weights=restore_best_weights, accuracy=accuracy,
                verbose=verbose, callbacks=callbacks, config=config, bootstrap=bootstrap, lr_schedule=lr_schedule,
                sample_weight=sample_weight,
            )  # fmt: skip

        settings: dict[str, Any] = {
            "epochs": epochs, "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
            "validation_split": validation_split, "patience": patience, "min_delta": min_delta,
            "restore_best_weights": restore_best_weights, "accuracy": accuracy, "verbose": verbose,
        }  # fmt: skip
        config = training_config(config, settings)
        if not isinstance(bootstrap, bool):
            raise TypeError(f"bootstrap: expected a bool, got {type(bootstrap).__name__}")
        if isinstance(callbacks, str) or not all(callable(cb) for cb in callbacks):
            raise TypeError("callbacks: expected a sequence of callables callback(epoch, logs)")
        x, y = self._like._pair(X, Y, "Y")
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise TypeError("validation_data: expected a pair (X_val, Y_val)")
            validation_data = self._like._pair(*validation_data, "validation_data[1]")
        weights = None
        if sample_weight is not None:
            weights = as_array(sample_weight, self._like._dtype, "sample_weight")
            rows = 1 if x.ndim == 1 else len(x)
            if weights.shape != (rows,):
                raise ValueError(
                    f"sample_weight: expected shape ({rows},), one weight per sample of X, got {weights.shape}"
                )
        return fit(self, x, y, config, validation_data, list(callbacks), bootstrap, lr_schedule, weights)

    def best(self, by: str = "val_loss") -> Network:
        """The member with the lowest ``by`` (``val_loss`` or ``loss``) in the last ``fit``, at the epoch
        whose weights it holds, as a ``Network``."""
        history = self.history
        if by not in ("loss", "val_loss"):
            raise ValueError(f"by: expected 'loss' or 'val_loss', got {by!r}")
        if history is None:
            raise ValueError("best: fit the population first; best() ranks the members by their last fit")
        values = getattr(history, by)
        if values is None:
            raise ValueError(f"by: the last fit recorded no {by} (pass validation_data for val_loss)")
        held = [h.best_epoch if h.best_epoch is not None else h.epochs - 1 for h in history.members]
        scores = np.array([row[e] for row, e in zip(values, held)])
        return self[int(np.nanargmin(scores))]

    def to(self, device: Device, dtype: DtypeLike | None = None) -> Population:
        """A copy of the population (weights and optimizer state) on ``device`` in ``dtype`` (None: the
        device's default, float32 on the GPU), as ``Network.to`` copies each member."""
        return Population.from_networks([m.to(device, dtype) for m in self])

    # -- weights ------------------------------------------------------------------------------------
    def get_weights(self) -> dict[str, FloatArray]:
        """Every member's parameters stacked on a leading member axis, as ``torch.func.stack_module_state``
        lays them out: w1 (size, n_hidden, n_in), b1 (size, n_hidden), w2, b2."""
        return self._core.get_weights()

    def set_weights(self, weights: Mapping[str, ArrayLike]) -> None:
        """Replaces every member's parameters from a dict shaped like ``get_weights()``'s."""
        if not isinstance(weights, Mapping):
            raise TypeError(f"weights: expected a mapping like get_weights()'s, got {type(weights).__name__}")
        self._core.set_weights({k: as_array(v, self._like._dtype, k) for k, v in weights.items()})

    def save(self, path: str, *, optimizer: bool = True) -> None:
        """Writes the population to ``path`` (see ``rustbp.Population.load``)."""
        from ._population_fit import save

        save(self, path, optimizer)

    @classmethod
    def load(cls, path: str, *, device: Device = "cpu") -> Population:
        """A population written by ``save``."""
        from ._population_fit import load

        return load(cls, path, device)

    def __getstate__(self) -> dict[str, Any]:
        # Every member as a network pickles, from CPU copies taken together: one moment of training.
        device = self.device
        members = [pickled_state(core, device, None) for core in self._core.snapshot()]
        return {"members": members, "seeds": self.seeds}

    def __setstate__(self, state: dict[str, Any]) -> None:
        members = []
        for s in state["members"]:
            net = Network.__new__(Network)
            net.__setstate__(s)
            members.append(net)
        self._init(_rustbp.PopulationCore.stack([n._core for n in members]), [n.optimizer for n in members])
        self.seeds = state["seeds"]


def bootstrap_rows(n: int, seed: int, member: int) -> npt.NDArray[np.intp]:
    """The rows member ``member`` trains on in ``fit(..., seed=seed, bootstrap=True)``: ``n`` draws with
    replacement from ``range(n)``."""
    return np.random.default_rng([seed, member]).integers(0, n, n)


def _member_seeds(size: int, seed: int | None, seeds: Sequence[int] | None) -> list[int]:
    if seeds is None:
        first = random_seed() if seed is None else seed
        return [(first + i) % 2**64 for i in range(size)]
    if seed is not None:
        raise TypeError("seeds: pass either seed (member i gets seed + i) or seeds, not both")
    if isinstance(seeds, (str, bytes)) or len(seeds) != size:
        got = type(seeds).__name__ if isinstance(seeds, (str, bytes)) else f"{len(seeds)} seeds"
        raise ValueError(f"seeds: expected one seed per member ({size}), got {got}")
    for i, s in enumerate(seeds):
        if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or not 0 <= s < 2**64:
            raise ValueError(f"seeds[{i}]: expected an integer in [0, 2**64), got {s!r}")
    return [int(s) for s in seeds]


def _per_member(name: str, value: Any, size: int) -> list[Any]:
    """``value`` for each member: one value for all, or a sequence of ``size`` values."""
    try:
        rank = np.ndim(value) if not isinstance(value, (str, bytes, Mapping)) else -1
    except ValueError:  # ragged
        rank = -1
    if rank == (1 if name == "betas" else 0):
        return [value] * size
    if rank != (2 if name == "betas" else 1):
        raise TypeError(f"{name}: expected one value or a sequence of one value per member, got {value!r}")
    if len(value) != size:
        raise ValueError(f"{name}: expected one value or {size} values (one per member), got {len(value)} values")
    return [tuple(float(b) for b in v) if name == "betas" else v for v in value]


def _optimizers(base: Optimizer, size: int, **overrides: Any) -> list[Optimizer]:
    """Each member's optimizer: ``base`` with the per-member overrides, validated once per distinct one."""
    given = {k: _per_member(k, v, size) for k, v in overrides.items() if v is not None}
    for k in given:
        if not hasattr(base, k):
            raise ValueError(f"{k}: {type(base).__name__} has no {k}; pass optimizer=rustbp.Adam(...) for it")
    if not given:
        return [base] * size
    made: dict[tuple[Any, ...], Optimizer] = {}
    out = []
    for i in range(size):
        key = tuple(_hashable(v[i]) for v in given.values())
        if key not in made:
            made[key] = replace(base, **{k: v[i] for k, v in given.items()})
        out.append(made[key])
    return out


def _hashable(v: Any) -> Any:
    return tuple(v) if isinstance(v, (list, np.ndarray)) else v
