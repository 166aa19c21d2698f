"""rustbp.sklearn: scikit-learn's own estimator checks, pipelines, cross-validation, pickling and
cloning, partial_fit and warm_start, and the digits accuracy the README promises."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

pytest.importorskip("sklearn")

from rustbp.sklearn import NetworkClassifier, NetworkRegressor
from sklearn.base import clone
from sklearn.datasets import load_digits, make_regression
from sklearn.model_selection import cross_val_score, train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks


@parametrize_with_checks([NetworkClassifier(), NetworkRegressor()])
def test_sklearn_estimator_checks(estimator, check):
    check(estimator)


@pytest.fixture(scope="module")
def digits():
    X, y = load_digits(return_X_y=True)
    return train_test_split(X, y, test_size=0.25, random_state=0)


def test_digits_accuracy_with_defaults(digits):
    X_train, X_test, y_train, y_test = digits
    clf = make_pipeline(StandardScaler(), NetworkClassifier(random_state=0)).fit(X_train, y_train)
    assert clf.score(X_test, y_test) >= 0.97
    proba = clf.predict_proba(X_test)
    assert proba.shape == (len(X_test), 10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.classes_, np.arange(10))


def test_string_labels_pipeline_and_cross_validation():
    X, y = load_digits(n_class=3, return_X_y=True)
    labels = np.array(["zero", "one", "two"])[y]
    pipe = make_pipeline(StandardScaler(), NetworkClassifier(n_hidden=16, max_iter=30, random_state=1))
    scores = cross_val_score(pipe, X, labels, cv=3)
    assert scores.shape == (3,) and scores.min() > 0.9
    pipe.fit(X, labels)
    assert set(pipe.predict(X)) == {"zero", "one", "two"}
    np.testing.assert_array_equal(pipe.classes_, ["one", "two", "zero"])


def test_regressor_fits_multioutput_and_one_dimensional_targets():
    X, y = make_regression(n_samples=200, n_features=5, n_targets=2, noise=0.1, random_state=0)
    y = y / y.std(axis=0)
    reg = NetworkRegressor(n_hidden=32, max_iter=300, random_state=0).fit(X, y)
    assert reg.predict(X).shape == (200, 2) and reg.score(X, y) > 0.95
    reg1 = clone(reg).fit(X, y[:, 0])
    assert reg1.predict(X).shape == (200,) and reg1.score(X, y[:, 0]) > 0.95


def test_pickle_and_clone_keep_predictions_and_parameters():
    X, y = load_digits(n_class=4, return_X_y=True)
    clf = NetworkClassifier(n_hidden=20, max_iter=20, random_state=0, optimizer="sgd", lr=0.01).fit(X / 16, y)
    again = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(again.predict_proba(X / 16), clf.predict_proba(X / 16))
    fresh = clone(clf)
    assert fresh.get_params() == clf.get_params() and not hasattr(fresh, "network_")
    # A fixed random_state makes refitting reproducible bit for bit.
    np.testing.assert_array_equal(fresh.fit(X / 16, y).predict_proba(X / 16), clf.predict_proba(X / 16))


def test_partial_fit_and_warm_start_continue_training():
    X, y = load_digits(n_class=3, return_X_y=True)
    X = X / 16
    clf = NetworkClassifier(n_hidden=16, random_state=0)
    with pytest.raises(ValueError, match="classes"):
        clf.partial_fit(X, y)
    losses = [clf.partial_fit(X, y, classes=[0, 1, 2]).loss_ for _ in range(5)]
    assert clf.n_iter_ == 5 and losses[-1] < losses[0]
    assert len(clf.loss_curve_) == 5
    with pytest.raises(ValueError, match=r"labels \[7\] are not in classes_"):
        clf.partial_fit(X[:2], [0, 7])

    warm = NetworkClassifier(n_hidden=16, max_iter=3, warm_start=True, random_state=0, n_iter_no_change=100)
    warm.fit(X, y)
    w1 = warm.network_.get_weights()["w1"]
    net = warm.network_
    warm.fit(X, y)
    assert warm.network_ is net and warm.n_iter_ == 6, "warm_start keeps training the same network"
    assert not np.array_equal(w1, net.get_weights()["w1"])
    cold = clone(warm).set_params(warm_start=False)
    cold.fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 3


def test_early_stopping_uses_a_validation_split():
    X, y = load_digits(n_class=5, return_X_y=True)
    clf = NetworkClassifier(n_hidden=32, early_stopping=True, n_iter_no_change=3, max_iter=500, random_state=0)
    clf.fit(X / 16, y)
    assert clf.n_iter_ < 500 and len(clf.validation_loss_curve_) == clf.n_iter_


@pytest.mark.parametrize(
    ("params", "pattern"),
    [
        ({"optimizer": "rmsprop"}, "optimizer: expected one of adam, sgd"),
        ({"max_iter": 0}, "max_iter"),
        ({"hidden_activation": "gelu"}, "hidden_activation"),
        ({"dtype": "float16"}, "dtype"),
        ({"batch_size": 0}, "batch_size"),
        ({"lr": -1.0}, "lr"),
    ],
)
def test_bad_parameters_are_reported_at_fit(params, pattern):
    clf = NetworkClassifier(**params)  # scikit-learn's convention: no checks before fit
    with pytest.raises(ValueError, match=pattern):
        clf.fit(np.zeros((4, 2)), [0, 1, 0, 1])


def test_two_classes_use_one_sigmoid_output_with_binary_cross_entropy():
    X, y = load_digits(n_class=2, return_X_y=True)
    labels = np.array(["even", "odd"])[y]
    clf = NetworkClassifier(n_hidden=8, max_iter=20, random_state=0).fit(X / 16, labels)
    net = clf.network_
    assert net.n_out == 1 and (net.config.output_activation, net.config.loss) == ("sigmoid", "binary_cross_entropy")
    proba = clf.predict_proba(X / 16)
    assert proba.shape == (len(X), 2)
    np.testing.assert_allclose(proba[:, 1], net.forward(X / 16)[:, 0], rtol=0)  # P(classes_[1])
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-15)
    np.testing.assert_array_equal(clf.predict(X / 16), clf.classes_[proba.argmax(axis=1)])
    assert clf.score(X / 16, labels) > 0.97
    # The loss is BCELoss's: the mean of -(t ln p + (1 - t) ln(1 - p)).
    p, t = proba[:, 1], (labels == "odd").astype(float)
    fresh = NetworkClassifier(n_hidden=8, max_iter=1, random_state=0).fit(X / 16, labels)
    assert fresh.loss_curve_[0] > clf.loss_ > 0
    assert net.loss(X / 16, t[:, None]) == pytest.approx(-(t * np.log(p) + (1 - t) * np.log(1 - p)).mean(), rel=1e-9)


@pytest.mark.parametrize("estimator", [NetworkClassifier, NetworkRegressor])
def test_sample_weight_in_fit_and_partial_fit(estimator):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(20, 3))
    y = rng.integers(0, 3, 20) if estimator is NetworkClassifier else X @ [1.0, -2.0, 0.5]
    w = rng.integers(1, 4, 20)
    w[[1, 5]] = 0
    params = dict(n_hidden=6, max_iter=5, batch_size=100, random_state=0, n_iter_no_change=100)
    # With whole-set batches, integer weights are repeated rows (0: left out).
    weighted = estimator(**params).fit(X, y, sample_weight=w)
    repeated = estimator(**params).fit(np.repeat(X, w, axis=0), np.repeat(y, w))
    np.testing.assert_allclose(weighted.loss_curve_, repeated.loss_curve_, rtol=1e-12)
    np.testing.assert_allclose(weighted.predict(X), repeated.predict(X), rtol=1e-12)
    # partial_fit takes them too, one epoch per call.
    partial = estimator(**params)
    extra = {"classes": [0, 1, 2]} if estimator is NetworkClassifier else {}
    for _ in range(5):
        partial.partial_fit(X, y, sample_weight=w, **extra)
    np.testing.assert_allclose(partial.loss_curve_, weighted.loss_curve_, rtol=1e-12)
    with pytest.raises(ValueError, match="weight"):
        estimator(**params).fit(X, y, sample_weight=-np.ones(20))
    # early_stopping splits the weights with the rows.
    estimator(**{**params, "early_stopping": True, "validation_fraction": 0.25}).fit(X, y, sample_weight=w)
