"""The README's Python examples run as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import GPU, require

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", BLOCKS, ids=[f"block{i}" for i in range(len(BLOCKS))])
def test_readme_example_runs(code):
    for module in re.findall(r"^(?:from|import) (\w+)", code, flags=re.M):
        pytest.importorskip(module)  # optional integrations (scikit-learn, PyTorch) may be absent
    if 'device="gpu"' in code:
        require(GPU)
    exec(compile(code, str(README), "exec"), {})
