"""Arrays in for ``Network``: conversion to the network's dtype (with the fast path of train_step loops)
and the shape and target checks that explain a refused input."""

from __future__ import annotations

from typing import Any

import numpy as np


def as_array(x: object, dtype: np.dtype[Any], name: str) -> np.ndarray:
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


def _shape(a: np.ndarray) -> str:
    return str(tuple(a.shape))  # as NumPy writes it: (1797,), (1797, 10)


def check_x(x: np.ndarray, n_in: int, name: str) -> None:
    """A ValueError for inputs that are not (batch >= 1, n_in) or (n_in,), with the likely fix."""
    if x.ndim in (1, 2) and x.shape[-1] == n_in and (x.ndim == 1 or x.shape[0] >= 1):
        return
    hint = ""
    if x.ndim == 1 and n_in == 1:
        hint = f"; for {len(x)} samples of one feature, reshape it to a column: {name}.reshape(-1, 1)"
    elif x.ndim == 2 and x.shape[0] == n_in and x.shape[1] != n_in:
        hint = f"; samples are rows: transpose it ({name}.T)"
    elif x.ndim == 2 and x.shape[0] == 0:
        hint = "; it has no rows"
    elif x.ndim > 2 and x.shape[0] > 0 and int(np.prod(x.shape[1:])) == n_in:
        hint = f"; flatten each sample: {name}.reshape(len({name}), -1)"
    raise ValueError(f"{name}: expected shape (batch >= 1, {n_in}) or ({n_in},), got {_shape(x)}{hint}")


def check_t(x: np.ndarray, t: np.ndarray, n_out: int, name: str, classes: bool) -> None:
    """A ValueError for targets that do not match the outputs of ``x`` row for row, with the likely fix."""
    rows = 1 if x.ndim == 1 else x.shape[0]
    if t.ndim == 2 and t.shape[1] == n_out:
        if t.shape[0] != rows:
            raise ValueError(f"{name}: expected {rows} rows, like X, got {t.shape[0]}")
        return
    if t.ndim == 1 and len(t) == n_out and rows == 1:
        return
    hint = ""
    if t.ndim == 1 and len(t) == rows and classes:
        hint = f"; class indices must be integers: {name}.astype(int)"
    elif t.ndim == 1 and len(t) == rows and n_out == 1:
        hint = f"; reshape it to a column: {name}.reshape(-1, 1)"
    elif t.ndim == 1 and len(t) == rows:
        hint = (
            f"; for class labels 0..{n_out - 1}, one-hot encode them (np.eye({n_out})[{name}]) or use "
            'output_activation="softmax", loss="cross_entropy", which takes class indices'
        )
    elif t.ndim == 2 and t.shape == (rows, 1) and classes:
        hint = f"; for class indices pass a 1-D array: {name}.ravel()"
    elif t.ndim == 2 and t.shape == (rows, 1):
        hint = f"; for class labels 0..{n_out - 1}, one-hot encode them: np.eye({n_out})[{name}.ravel()]"
    elif t.ndim == 2 and t.shape == (n_out, rows):
        hint = f"; samples are rows: transpose it ({name}.T)"
    expected = f"({n_out},)" if x.ndim == 1 else f"({rows}, {n_out}), one row per sample of X"
    if classes:
        expected += " (or class indices)" if x.ndim == 1 else f", or ({rows},) of class indices"
    raise ValueError(f"{name}: expected shape {expected}, got {_shape(t)}{hint}")


def check_probabilities(t: np.ndarray, name: str) -> None:
    """Cross-entropy targets: non-negative rows that sum to 1 (NaN and inf are left to Rust, which names
    their position)."""
    tol = 1e-4 if t.dtype == np.float32 else 1e-6
    # Few NumPy calls: this runs on every train_step of a cross_entropy network. With no value below 0
    # (NaN fails that too) the sums cannot meet inf - inf.
    if (
        np.minimum.reduce(t, axis=None) >= 0
        and np.maximum.reduce(np.abs(np.add.reduce(t, axis=-1) - 1), axis=None) <= tol
    ):
        return
    if not np.isfinite(t).all():
        return
    rows = t.reshape(-1, t.shape[-1])
    negative = np.argwhere(rows < 0)
    if len(negative):
        i, j = negative[0]
        where = f"[{i}, {j}]" if t.ndim == 2 else f"[{j}]"
        raise ValueError(
            f"{name}: cross_entropy targets must be non-negative (one-hot or probability rows, or class "
            f"indices), got {float(rows[i, j])!r} at position {where}"
        )
    i = int(np.argmax(np.abs(rows.sum(axis=1) - 1) > tol))
    raise ValueError(
        f"{name}: cross_entropy targets must be rows summing to 1 (one-hot or probabilities, or class "
        f"indices), got {'row ' + str(i) if t.ndim == 2 else 'a row'} summing to {float(rows[i].sum())!r}"
    )


def check_unit_interval(t: np.ndarray, name: str) -> None:
    """Binary cross-entropy targets: probabilities in [0, 1] (NaN and inf are left to Rust, which names
    their position)."""
    if np.minimum.reduce(t, axis=None) >= 0 and np.maximum.reduce(t, axis=None) <= 1:
        return
    if not np.isfinite(t).all():
        return
    i = int(np.flatnonzero((t < 0) | (t > 1))[0])
    where = ", ".join(str(int(k)) for k in np.unravel_index(i, t.shape))
    raise ValueError(
        f"{name}: binary_cross_entropy targets must be probabilities in [0, 1], got {float(t.flat[i])!r} at "
        f"position [{where}]"
    )
