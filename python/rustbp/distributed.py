"""Populations on a ``dask.distributed`` cluster: the members split into shards, each shard trained on a
worker as a ``Population`` of its own, and gathered back in order. A member's training depends only on
its own weights, settings, seed and the fit's arguments, so the gathered members equal a local run's.

>>> from dask.distributed import Client              # doctest: +SKIP
>>> client = Client("tcp://scheduler:8786")          # doctest: +SKIP
>>> history = pop.fit(X, Y, 20, client=client)        # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .config import random_seed

if TYPE_CHECKING:
    from .population import Population, PopulationHistory

__all__ = ["fit"]


def fit(
    pop: Population,
    X: Any,
    Y: Any,
    epochs: int | None,
    *,
    client: Any,
    shards: int | None = None,
    **kwargs: Any,
) -> PopulationHistory:
    """``pop.fit(X, Y, epochs, **kwargs)`` with the members trained on ``client``'s workers, in ``shards``
    shards (default: one per worker); ``pop`` then holds the trained members. Callbacks and progress stay
    local, so they are refused here; the per-member history comes back whole."""
    from .population import Population, PopulationHistory

    if not (hasattr(client, "submit") and hasattr(client, "gather")):
        raise TypeError(f"client: expected a dask.distributed.Client, got {type(client).__name__}")
    for name in ("callbacks", "verbose"):
        if kwargs.get(name):
            raise ValueError(f"{name}: not available with client= (they would run on the workers)")
    if shards is None:
        shards = max(1, len(client.scheduler_info().get("workers", {})))
    if isinstance(shards, bool) or not isinstance(shards, (int, np.integer)) or shards < 1:
        raise ValueError(f"shards: expected a positive integer, got {shards!r}")
    # One seed for every shard, drawn here: each member shuffles (and resamples) as in a local run.
    seed = kwargs.pop("seed", None)
    seed = random_seed() if seed is None else seed
    parts = [p for p in np.array_split(np.arange(pop.size), min(int(shards), pop.size)) if len(p)]
    # Keys of their own (hash=False): with content-hashed keys, a second fit on the same arrays can reuse
    # the keys that the scheduler is still releasing from the first, and its shards lose their data.
    data = client.scatter([X, Y], broadcast=True, hash=False)
    futures = [
        client.submit(
            _train_shard,
            Population.from_networks([pop[int(i)] for i in part]),
            int(part[0]),
            *data,
            epochs,
            seed,
            kwargs,
            pure=False,
        )
        for part in parts
    ]
    trained = client.gather(futures)
    members = [net for shard, _ in trained for net in shard]
    whole = Population.from_networks(members)
    pop._init(whole._core, whole._optimizers)
    history = PopulationHistory([h for _, part in trained for h in part.members])
    pop.history = history
    return history


def _train_shard(
    shard: Population, first: int, X: Any, Y: Any, epochs: int | None, seed: int, kwargs: dict[str, Any]
) -> tuple[Population, PopulationHistory]:
    """Runs on a worker: the shard's members, numbered from ``first`` in the whole population."""
    shard._first_member = first
    history = shard.fit(X, Y, epochs, seed=seed, **kwargs)
    return shard, history
