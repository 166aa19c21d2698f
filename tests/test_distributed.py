"""Populations on a real dask.distributed cluster (a LocalCluster of worker processes): the gathered
members equal a local run's; and the scikit-learn estimators under joblib's Dask backend."""

from __future__ import annotations

import numpy as np
import pytest
import rustbp
import rustbp.sklearn

distributed = pytest.importorskip("distributed")


@pytest.fixture(scope="module")
def client():
    cluster = distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
    with cluster, distributed.Client(cluster) as c:
        yield c


def make():
    kw = {"hidden_activation": "relu", "output_activation": "softmax", "loss": "cross_entropy"}
    return rustbp.Population(5, 8, 3, 5, lr=[0.01, 0.05, 0.1, 0.2, 0.5], seed=11, **kw)


@pytest.mark.parametrize("shards", [None, 3])
def test_members_trained_on_the_cluster_equal_a_local_run(client, shards):
    rng = np.random.default_rng(0)
    X, y = rng.normal(size=(80, 5)), rng.integers(0, 3, 80)
    fit = {"batch_size": 16, "seed": 4, "bootstrap": True, "validation_data": (X[60:], y[60:]), "patience": 3}
    local, remote = make(), make()
    want = local.fit(X[:60], y[:60], 12, **fit)
    got = remote.fit(X[:60], y[:60], 12, client=client, shards=shards, **fit)
    assert remote.size == 5
    np.testing.assert_array_equal(got.loss, want.loss)
    np.testing.assert_array_equal(got.val_loss, want.val_loss)
    assert got.best_epoch == want.best_epoch
    for k, v in local.get_weights().items():
        np.testing.assert_array_equal(remote.get_weights()[k], v)
    assert remote.optimizers == local.optimizers


def test_what_cannot_run_remotely_is_refused(client):
    pop = make()
    X, y = np.zeros((4, 5)), np.zeros(4, dtype=int)
    with pytest.raises(ValueError, match="callbacks: not available with client="):
        pop.fit(X, y, 1, client=client, callbacks=[print])
    with pytest.raises(TypeError, match=r"client: expected a dask\.distributed\.Client, got str"):
        pop.fit(X, y, 1, client="tcp://nowhere")
    with pytest.raises(ValueError, match="shards: expected a positive integer, got 0"):
        pop.fit(X, y, 1, client=client, shards=0)


def test_a_grid_search_runs_under_joblibs_dask_backend(client):
    from joblib import parallel_backend
    from sklearn.datasets import load_iris
    from sklearn.model_selection import GridSearchCV

    X, y = load_iris(return_X_y=True)
    grid = {"n_hidden": [4, 8], "lr": [0.01, 0.05]}
    search = GridSearchCV(rustbp.sklearn.NetworkClassifier(max_iter=20, random_state=0), grid, cv=2, n_jobs=-1)
    with parallel_backend("dask"):
        search.fit(X, y)
    local = GridSearchCV(rustbp.sklearn.NetworkClassifier(max_iter=20, random_state=0), grid, cv=2).fit(X, y)
    np.testing.assert_array_equal(search.cv_results_["mean_test_score"], local.cv_results_["mean_test_score"])
    assert set(client.run(lambda: 1)) == set(client.scheduler_info()["workers"])
