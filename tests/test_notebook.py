"""The example notebook runs top to bottom in a real Jupyter kernel, and shows pictures and tables."""

from __future__ import annotations

from pathlib import Path

import nbformat
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parent.parent / "examples" / "derivation.ipynb"


def test_derivation_notebook_runs_and_displays_the_step():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    NotebookClient(
        nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(NOTEBOOK.parent)}}
    ).execute()
    outputs = [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]
    assert not [out for out in outputs if out.output_type == "error"]
    kinds = {kind for out in outputs for kind in out.get("data", {})}
    assert {"image/svg+xml", "text/html"} <= kinds
    text = "".join(out.get("text", "") for out in outputs)
    # The cells print the article's numbers: the factors' product is the gradient, and the last step's loss.
    assert "rustbp     = 0.08216704056423078" in text
    assert "  net_h1 = w1*i1 + w2*i2 + b1*1 = 0.15*0.05 + 0.2*0.1 + 0.35*1 = 0.3775" in text
    assert "step 9999: 3.51085481225126" in text
    svgs = [out["data"]["image/svg+xml"] for out in outputs if "image/svg+xml" in out.get("data", {})]
    assert any("0.274811" in svg for svg in svgs), "the article's E_o1 in the step's picture"
