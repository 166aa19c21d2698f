"""The API fuzzer (tests/fuzz.py, `make fuzz` for the long run), a few hundred fixed cases of it in CI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path


def test_fuzzed_api_raises_only_documented_errors():
    # In a child process: a crash there (an abort, a segfault) fails this test instead of killing pytest.
    fuzz = Path(__file__).with_name("fuzz.py")
    child = subprocess.run(
        [sys.executable, str(fuzz), "--cases", "400", "--derandomize"],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert child.returncode == 0, child.stdout + child.stderr
    assert "400 cases" in child.stdout and "0 findings" in child.stdout
