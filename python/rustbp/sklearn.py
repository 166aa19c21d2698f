"""scikit-learn estimators on ``rustbp.Network``: ``NetworkClassifier`` and ``NetworkRegressor``.

They follow ``MLPClassifier``/``MLPRegressor``'s parameter names where the meaning is the same
(``max_iter`` epochs, ``batch_size``, ``early_stopping``, ``n_iter_no_change``, ``tol``...) and
rustbp's conventions otherwise; the README lists the differences. Needs ``pip install rustbp[sklearn]``.
"""

from __future__ import annotations

import types
from typing import Any, Callable, TypeVar, cast

import numpy as np
import numpy.typing as npt
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import _check_sample_weight, check_is_fitted, validate_data

from ._types import Dtype, HiddenActivation, Loss, OutputActivation
from .network import Network
from .optim import SGD, Adam, Optimizer
from .schedules import started

__all__ = ["NetworkClassifier", "NetworkRegressor"]

_DTYPES: dict[str, type[np.floating[Any]]] = {"float64": np.float64, "float32": np.float32}


class _NetworkEstimator(BaseEstimator):  # type: ignore[misc]
    """What the classifier and the regressor share: parameters, the network and the training loop."""

    _output_activation: OutputActivation
    _loss: Loss

    def __init__(
        self,
        n_hidden: int = 100,
        *,
        hidden_activation: str = "relu",
        optimizer: str = "adam",
        lr: float = 1e-3,
        momentum: float = 0.9,
        weight_decay: float = 0.0,
        batch_size: int = 32,
        max_iter: int = 200,
        shuffle: bool = True,
        early_stopping: bool = False,
        validation_fraction: float = 0.1,
        n_iter_no_change: int = 10,
        tol: float = 1e-4,
        dtype: str = "float64",
        random_state: Any = None,
        warm_start: bool = False,
        verbose: bool = False,
        lr_schedule: Any = None,
    ) -> None:
        self.n_hidden = n_hidden
        self.hidden_activation = hidden_activation
        self.optimizer = optimizer
        self.lr = lr
        self.momentum = momentum
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.dtype = dtype
        self.random_state = random_state
        self.warm_start = warm_start
        self.verbose = verbose
        self.lr_schedule = lr_schedule

    # Parameters are checked in fit, never in __init__ or set_params (scikit-learn's convention).
    def _make_optimizer(self) -> Optimizer:
        if self.optimizer == "adam":
            return Adam(lr=self.lr, weight_decay=self.weight_decay)
        if self.optimizer == "sgd":
            return SGD(lr=self.lr, momentum=self.momentum, nesterov=False, weight_decay=self.weight_decay)
        raise ValueError(f"optimizer: expected one of adam, sgd, got {self.optimizer!r}")

    def _dtype(self) -> type[np.floating[Any]]:
        if self.dtype not in _DTYPES:
            raise ValueError(f"dtype: expected one of float64, float32, got {self.dtype!r}")
        return _DTYPES[self.dtype]

    def _targets(self, y: npt.NDArray[Any], first: bool, classes: Any) -> npt.NDArray[Any]:
        raise NotImplementedError

    def _head(self, n_out: int) -> tuple[OutputActivation, Loss]:
        """The output activation and loss of a network with ``n_out`` outputs."""
        return self._output_activation, self._loss

    def _fit(
        self, X: Any, y: Any, incremental: bool, classes: Any = None, sample_weight: Any = None
    ) -> _NetworkEstimator:
        fitted = hasattr(self, "network_")
        first = not fitted or (not incremental and not self.warm_start)
        X, y = validate_data(self, X, y, reset=first, dtype=self._dtype(), **self._y_checks())
        if not isinstance(self.max_iter, (int, np.integer)) or self.max_iter < 1:
            raise ValueError(f"max_iter: expected a positive integer, got {self.max_iter!r}")
        targets = self._targets(y, first, classes)
        if sample_weight is not None:
            sample_weight = _check_sample_weight(sample_weight, X, dtype=self._dtype(), ensure_non_negative=True)
        rng = check_random_state(self.random_state)
        optimizer = self._make_optimizer()
        if first:
            output_activation, loss = self._head(targets.shape[1])
            self.network_ = Network(
                X.shape[1], self.n_hidden, targets.shape[1],
                hidden_activation=cast(HiddenActivation, self.hidden_activation),
                output_activation=output_activation, loss=loss, optimizer=optimizer,
                dtype=cast(Dtype, self.dtype),
                seed=int(rng.randint(np.iinfo(np.int64).max, dtype=np.int64)),
            )  # fmt: skip
            self.n_iter_ = 0
            self.loss_curve_: list[float] = []
        elif not incremental and self.network_.optimizer != optimizer:
            self.network_.optimizer = optimizer  # warm_start with new settings; the same kind keeps its state
        # A fit starts the schedule at lr; partial_fit calls go on with one scheduler, epoch after epoch.
        if self.lr_schedule is not None and (first or not incremental or not hasattr(self, "lr_scheduler_")):
            self.lr_scheduler_ = started(self.lr_schedule, self.lr)
        scheduler = self.lr_scheduler_ if self.lr_schedule is not None else None
        validation = None
        if self.early_stopping and not incremental:
            stratify = y if isinstance(self, ClassifierMixin) else None
            if sample_weight is None:
                X, X_val, targets, T_val = train_test_split(
                    X, targets, test_size=self.validation_fraction, random_state=rng, stratify=stratify
                )
            else:
                X, X_val, targets, T_val, sample_weight, _ = train_test_split(
                    X, targets, sample_weight, test_size=self.validation_fraction, random_state=rng, stratify=stratify
                )
            validation = (X_val, T_val)
        history = self.network_.fit(
            X, targets, 1 if incremental else self.max_iter,
            batch_size=self.batch_size,
            shuffle=self.shuffle, seed=int(rng.randint(np.iinfo(np.int64).max, dtype=np.int64)),
            validation_data=validation, patience=None if incremental else self.n_iter_no_change,
            min_delta=self.tol, restore_best_weights=self.early_stopping, accuracy=False,
            callbacks=[self._printer(self.n_iter_)] if self.verbose else (), lr_schedule=scheduler,
            sample_weight=sample_weight,
        )  # fmt: skip
        self.n_iter_ += history.epochs
        self.loss_curve_ += list(history.loss)
        self.loss_ = self.loss_curve_[-1]
        if validation is not None:
            self.validation_loss_curve_ = list(history.val_loss if history.val_loss is not None else [])
        return self

    def _y_checks(self) -> dict[str, Any]:
        return {}

    @staticmethod
    def _printer(done: int) -> Callable[[int, dict[str, float]], None]:
        """verbose's report, one line per epoch on stdout, as MLPClassifier prints its iterations."""

        def report(epoch: int, logs: dict[str, float]) -> None:
            extra = "".join(f", {k} = {v:.8f}" for k, v in logs.items() if k != "loss")
            print(f"Epoch {done + epoch + 1}, loss = {logs['loss']:.8f}{extra}", flush=True)

        return report

    def _outputs(self, X: Any) -> npt.NDArray[Any]:
        check_is_fitted(self, "network_")
        X = validate_data(self, X, reset=False, dtype=self._dtype())
        return self.network_.forward(X)

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False  # deterministic for a fixed random_state
        return tags


_E = TypeVar("_E", bound=type)


def _own_init(cls: _E) -> _E:
    """Gives ``cls`` its own copy of the shared ``__init__``, so that a wrong argument's error names
    ``cls`` rather than the private base class."""
    base = _NetworkEstimator.__init__
    init = types.FunctionType(base.__code__, base.__globals__, "__init__", base.__defaults__, base.__closure__)
    init.__kwdefaults__ = base.__kwdefaults__
    init.__annotations__ = base.__annotations__
    init.__qualname__ = f"{cls.__name__}.__init__"
    cls.__init__ = init  # type: ignore[misc]
    return cls


@_own_init
class NetworkClassifier(ClassifierMixin, _NetworkEstimator):  # type: ignore[misc]
    """A classifier on a rustbp ``Network``: softmax outputs, one per class, trained with cross-entropy;
    for two classes, like ``MLPClassifier``'s logistic output, one sigmoid output (the probability of
    ``classes_[1]``) trained with binary cross-entropy.

    ``predict_proba`` returns one column per class; ``classes_`` holds the labels in sorted order.
    """

    _output_activation = "softmax"
    _loss = "cross_entropy"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NetworkClassifier:
        """Trains for up to ``max_iter`` epochs (from scratch unless ``warm_start``); ``sample_weight``
        as ``Network.fit``'s."""
        self._fit(X, y, incremental=False, sample_weight=sample_weight)
        return self

    def partial_fit(self, X: Any, y: Any, classes: Any = None, sample_weight: Any = None) -> NetworkClassifier:
        """One epoch over (X, y); the first call needs ``classes``, every label there may be."""
        if classes is None and not hasattr(self, "classes_"):
            raise ValueError("classes: the first call to partial_fit needs the list of all classes")
        self._fit(X, y, incremental=True, classes=classes, sample_weight=sample_weight)
        return self

    def _y_checks(self) -> dict[str, Any]:
        return {"multi_output": False}

    def _head(self, n_out: int) -> tuple[OutputActivation, Loss]:
        return ("sigmoid", "binary_cross_entropy") if n_out == 1 else ("softmax", "cross_entropy")

    def _targets(self, y: npt.NDArray[Any], first: bool, classes: Any) -> npt.NDArray[Any]:
        check_classification_targets(y)
        given = None if classes is None else np.unique(np.asarray(classes))
        if first:
            self.classes_ = np.unique(y) if given is None else given
            if len(self.classes_) < 2:
                arg = "y" if given is None else "classes"
                count = f"{len(self.classes_)} class{'' if len(self.classes_) == 1 else 'es'}"
                raise ValueError(f"{arg}: a classifier needs at least 2 classes, got {count} {self.classes_.tolist()}")
        elif given is not None and not np.array_equal(given, self.classes_):
            # As scikit-learn's own estimators: the output layer was sized for the first call's classes.
            raise ValueError(
                f"classes: expected the classes of the first partial_fit, {self.classes_.tolist()}, "
                f"got {given.tolist()}"
            )
        index = np.searchsorted(self.classes_, y)
        index = np.minimum(index, len(self.classes_) - 1)
        unknown = self.classes_[index] != y
        if unknown.any():
            raise ValueError(f"y: labels {np.unique(y[unknown]).tolist()} are not in classes_ {self.classes_.tolist()}")
        if len(self.classes_) == 2:
            return cast("npt.NDArray[Any]", (index == 1).astype(self._dtype()).reshape(-1, 1))
        return np.eye(len(self.classes_), dtype=self._dtype())[index]

    def predict_proba(self, X: Any) -> npt.NDArray[Any]:
        """Class probabilities, (n_samples, n_classes), columns in the order of ``classes_``."""
        out = self._outputs(X)
        return np.hstack([1 - out, out]) if out.shape[1] == 1 else out

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """The most probable class of each sample."""
        proba = self.predict_proba(X)  # first, so that an unfitted estimator raises NotFittedError
        return self.classes_[np.argmax(proba, axis=1)]  # type: ignore[no-any-return]


@_own_init
class NetworkRegressor(RegressorMixin, _NetworkEstimator):  # type: ignore[misc]
    """A regressor on a rustbp ``Network``: identity outputs (one per target), trained on the mean
    squared error (PyTorch's ``MSELoss``). Accepts 1-D or 2-D ``y``; ``predict`` returns the same rank."""

    _output_activation = "identity"
    _loss = "mse"

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> NetworkRegressor:
        """Trains for up to ``max_iter`` epochs (from scratch unless ``warm_start``); ``sample_weight``
        as ``Network.fit``'s."""
        self._fit(X, y, incremental=False, sample_weight=sample_weight)
        return self

    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> NetworkRegressor:
        """One epoch over (X, y), continuing from the current weights."""
        self._fit(X, y, incremental=True, sample_weight=sample_weight)
        return self

    def _y_checks(self) -> dict[str, Any]:
        return {"multi_output": True, "y_numeric": True}

    def _targets(self, y: npt.NDArray[Any], first: bool, classes: Any) -> npt.NDArray[Any]:
        if first:
            self._y_1d = y.ndim == 1
        y2 = y.reshape(-1, 1) if y.ndim == 1 else y
        if not first and y2.shape[1] != self.network_.n_out:
            raise ValueError(f"y: expected {self.network_.n_out} targets, as in the first fit, got {y2.shape[1]}")
        return np.ascontiguousarray(y2, dtype=self._dtype())

    def predict(self, X: Any) -> npt.NDArray[Any]:
        """Predicted targets: (n_samples,) when fitted on 1-D ``y``, else (n_samples, n_targets)."""
        out = self._outputs(X)
        return out.ravel() if self._y_1d else out

    def __sklearn_tags__(self) -> Any:
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags
