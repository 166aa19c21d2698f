"""The speed comparison behind ``rustbp bench``: rustbp against pure Python, NumPy, PyTorch, scikit-learn
and native C++ (``native/``, compiled at bench time) on the article's network, a width sweep, a large
network, scikit-learn's digits, n-n-n nets at batch 1, and on a GPU against PyTorch CUDA.

``numpy_net`` is also the independent NumPy implementation the tests check the Rust core against.
"""

from __future__ import annotations

__all__: list[str] = []
