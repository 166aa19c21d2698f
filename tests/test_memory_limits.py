"""Under a process memory limit (ulimit -v, RLIMIT_AS), which the machine's free memory does not show,
every allocation sized by the caller fails as a MemoryError: the interpreter never aborts."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

resource = pytest.importorskip("resource")

CHILD = textwrap.dedent(
    """
    import resource, sys
    import numpy as np
    import rustbp
    limit = 4 << 30
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    outcomes = []
    for build in (lambda: rustbp.Network(10**9, 1, 1), lambda: rustbp.Network(1, 10**9, 1, dtype="float32"),
                  lambda: rustbp.Network(2 * 10**8, 2, 1, optimizer=rustbp.Adam()),
                  # Many small members: no one allocation is large, all of them together are.
                  lambda: rustbp.Population(20, 30, 20, 10**6)):
        try:
            net = build()
            net.get_weights()
            net.to("cpu", "float32")
            outcomes.append("ok")
        except MemoryError:
            outcomes.append("MemoryError")
    # The process still works after every refusal.
    assert rustbp.Network.article().train(np.array([0.05, 0.1]), np.array([0.01, 0.99]), 3).shape == (3,)
    print(",".join(outcomes))
    """
)


@pytest.mark.skipif(sys.platform != "linux", reason="RLIMIT_AS as Linux applies it")
def test_a_process_memory_limit_gives_memory_errors_not_an_abort():
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"the child died ({done.returncode}): {done.stderr[-2000:]}"
    outcomes = done.stdout.strip().split(",")
    assert outcomes[0] == "MemoryError" and outcomes[1] == "MemoryError", outcomes
    assert outcomes[3] == "MemoryError", outcomes
