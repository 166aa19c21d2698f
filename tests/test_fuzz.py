"""The API fuzzer (tests/fuzz.py, `make fuzz` for the long run): in CI, 400 fixed cases and 200 freshly
seeded ones, whose seed is printed so that a failure can be replayed."""

from __future__ import annotations

import pickle
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rustbp

FUZZ = Path(__file__).with_name("fuzz.py")


def run_fuzz(*args: str) -> subprocess.CompletedProcess[str]:
    # In a child process: a crash there (an abort, a segfault) fails this test instead of killing pytest.
    return subprocess.run([sys.executable, str(FUZZ), *args], capture_output=True, text=True, timeout=600)


def test_fuzzed_api_fixed_cases():
    child = run_fuzz("--cases", "400", "--derandomize")
    assert child.returncode == 0, child.stdout + child.stderr
    assert "400 cases" in child.stdout and "0 findings" in child.stdout


def test_fuzzed_api_fresh_cases():
    seed = random.randrange(2**32)
    print(f"fuzz seed {seed}")
    child = run_fuzz("--cases", "200", "--seed", str(seed))
    replay = f"replay: python tests/fuzz.py --cases 200 --seed {seed}"
    assert child.returncode == 0, f"{replay}\n{child.stdout}{child.stderr}"
    assert "200 cases" in child.stdout and "0 findings" in child.stdout, replay


@pytest.mark.parametrize("widths", [(1, 3, 2), (2, 1, 3)])
def test_networks_with_a_one_input_layer_pickle(widths):
    # Found by the fuzz: save/load, pickle and deepcopy all go through the same file bytes, which read an
    # (n, 1) weight as a shared bias.
    net = rustbp.Network(*widths, seed=0)
    again = pickle.loads(pickle.dumps(net))
    assert again.get_weights().keys() == net.get_weights().keys()
    assert all(np.array_equal(again.get_weights()[k], v) for k, v in net.get_weights().items())
