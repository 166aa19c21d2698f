"""The speed comparison behind ``rustbp bench``: rustbp against pure Python, NumPy, PyTorch and
scikit-learn on the article's network, a width sweep, a large network and scikit-learn's digits.

``numpy_net`` is also the independent NumPy implementation the tests check the Rust core against.
"""

from __future__ import annotations

__all__: list[str] = []
