"""The distributions in dist/ as users install them, each into a fresh virtualenv: the wheel's manylinux tag,
the article's numbers and products large enough for gemm's kernels (natively, and on an emulated x86-64
without AVX), and the sdist built from source by pip.

`make check-wheel` and `make check-sdist` build the distribution and require its tests
(RUSTBP_REQUIRE_WHEEL=1, RUSTBP_REQUIRE_SDIST=1); otherwise they skip when dist/ has none.
"""

from __future__ import annotations

import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import ARTICLE, ARTICLE_FINAL, ARTICLE_LOSSES

ROOT = Path(__file__).resolve().parent.parent
DIST = ROOT / "dist"
# The NumPy reference, loaded from its file: these tests need no rustbp built in this interpreter.
_spec = importlib.util.spec_from_file_location("numpy_net", ROOT / "python/rustbp/bench/numpy_net.py")
assert _spec is not None and _spec.loader is not None
numpy_net = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(numpy_net)
MACHINE = platform.machine()
MANYLINUX = sys.platform == "linux" and MACHINE in ("x86_64", "aarch64")
# This machine's wheel (dist/ may also hold the aarch64 one of scripts/aarch64_wheel.sh).
WHEEL_GLOB = f"rustbp-*_{MACHINE}.whl" if sys.platform == "linux" else "rustbp-*.whl"
# NumPy 2 needs x86-64-v2 (SSE4.2, POPCNT); NumPy 1.26, the last 1.x (wheels up to Python 3.12), runs on
# the x86-64 baseline itself. Neither CPU model has AVX, FMA or AVX-512, which gemm dispatches on.
BASELINE_CPU, BASELINE_NUMPY = ("qemu64", "numpy<2") if sys.version_info < (3, 13) else ("Nehalem", "numpy")

# Run in isolated mode (-I), so that only the installed rustbp is seen (from the interpreter's own
# site-packages, or from the directory given third): the article's numbers, then the inputs' networks
# trained by train_step, as JSON and an .npz file.
PROBE = """
import json, sys
sys.path[:0] = sys.argv[3:]
import numpy as np
import rustbp
try:
    from numpy._core._multiarray_umath import __cpu_features__
except ImportError:
    from numpy.core._multiarray_umath import __cpu_features__

x, t = [0.05, 0.10], [0.01, 0.99]
net = rustbp.Network.article()
step = net.explain_step(x, t)
net = rustbp.Network.article()
losses = net.train(x, t, 10_000)
out = net.forward(x)
# Tiny members side by side in SIMD lanes (the vector width picked at run time): bit for bit the networks.
kw = dict(bias="shared", optimizer=rustbp.SGD(lr=0.5, momentum=0.5))
lrs = [0.5 + 0.01 * i for i in range(20)]
pop_losses = rustbp.Population(2, 2, 2, 20, lr=lrs, seed=0, **kw).train(np.array([x]), np.array([t]), 200)
lanes_exact = all(np.array_equal(pop_losses[i], rustbp.Network(2, 2, 2, seed=i, **{**kw, "optimizer": rustbp.SGD(
    lr=lrs[i], momentum=0.5)}).train(x, t, 200)) for i in range(20))
report = {
    "file": rustbp.__file__,
    "lanes_exact": lanes_exact,
    "cpu": sorted(k for k, v in __cpu_features__.items() if v),
    "step": {k: float(v) for k, v in step.items() if np.ndim(v) == 0},
    "losses": [float(v) for v in losses],
    "final": {"E_total": net.loss(x, t), "out_o1": float(out[0]), "out_o2": float(out[1])},
}
inp, arrays = np.load(sys.argv[1]), {}
for dtype in ("float64", "float32"):
    net = rustbp.Network(64, 256, 10, hidden_activation="relu", output_activation="softmax",
                         loss="cross_entropy", optimizer=rustbp.SGD(lr=0.1, momentum=0.9), dtype=dtype, seed=0)
    net.set_weights({k: inp[k].astype(dtype) for k in ("w1", "b1", "w2", "b2")})
    X, T = inp["X"].astype(dtype), inp["T"].astype(dtype)
    arrays[dtype + "_losses"] = np.array([net.train_step(X, T) for _ in range(3)])
    arrays[dtype + "_out"] = net.forward(X)
    arrays.update({f"{dtype}_{k}": v for k, v in net.get_weights().items()})
np.savez(sys.argv[2], **arrays)
print(json.dumps(report))
"""


def _newest(pattern: str, required: str, make: str) -> Path:
    found = sorted(DIST.glob(pattern), key=lambda p: p.stat().st_mtime)
    if found:
        return found[-1]
    if os.environ.get(required) == "1":
        pytest.fail(f"{required}=1 but dist/ has no {pattern}: run `{make}`")
    pytest.skip(f"no {pattern} in dist/ (`{make}` builds and tests it)")


def _run(*command: str | Path, **kwargs: Any) -> str:
    """Run a command; on failure the error shows its output."""
    done = subprocess.run([str(c) for c in command], capture_output=True, text=True, **kwargs)
    assert done.returncode == 0, f"{command} exited {done.returncode}:\n{done.stdout}\n{done.stderr}"
    return done.stdout


def _venv(path: Path, *requirements: str | Path) -> Path:
    """A new virtualenv at `path` with `requirements` installed from dist/ and the package index; its python."""
    _run(sys.executable, "-m", "venv", path)
    python = path / ("Scripts/python.exe" if sys.platform == "win32" else "bin/python")
    _run(python, "-m", "pip", "install", "-q", "--disable-pip-version-check", *requirements, timeout=1800)
    return python


def _inputs(path: Path) -> dict[str, np.ndarray]:
    """A 64-256-10 network and a batch of 128 whose products (2M multiply-adds) go through gemm."""
    rng = np.random.default_rng(7)
    arrays = {
        "w1": rng.uniform(-0.125, 0.125, (256, 64)),
        "b1": rng.uniform(-0.125, 0.125, 256),
        "w2": rng.uniform(-0.0625, 0.0625, (10, 256)),
        "b2": rng.uniform(-0.0625, 0.0625, 10),
        "X": rng.random((128, 64)),
        "T": np.eye(10)[rng.integers(0, 10, 128)],
    }
    np.savez(path, **arrays)
    return arrays


def _check_probe(python: Path, tmp_path: Path, *emulator: str, site: Path | None = None) -> dict[str, object]:
    """Run PROBE with `python` (under `emulator` if given; rustbp installed in its virtualenv, or in `site`)
    and check every number against the article and NumPy; returns its report."""
    (tmp_path / "probe.py").write_text(PROBE)
    inputs = _inputs(tmp_path / "in.npz")
    args = [tmp_path / "probe.py", tmp_path / "in.npz", tmp_path / "out.npz", *([site] if site else [])]
    report = json.loads(_run(*emulator, python, "-I", *args, cwd=tmp_path))
    installed = site or python.parent.parent
    assert Path(report["file"]).resolve().is_relative_to(installed.resolve()), f"imported {report['file']}"

    assert report["lanes_exact"], "a population's tiny members differ from their networks"
    for name, want in ARTICLE.items():
        assert report["step"][name] == pytest.approx(want, abs=1e-12, rel=0), name
    for step, want in ARTICLE_LOSSES.items():
        assert report["losses"][step] == pytest.approx(want, abs=1e-12, rel=0), step
    for name, want in ARTICLE_FINAL.items():
        assert report["final"][name] == pytest.approx(want, abs=1e-12, rel=0), name

    got = np.load(tmp_path / "out.npz")
    for dtype, tol in (("float64", 1e-10), ("float32", 2e-4)):
        ref = numpy_net.NumpyNet(
            {k: inputs[k] for k in ("w1", "b1", "w2", "b2")},
            hidden="relu",
            output="softmax",
            loss="cross_entropy",
            optimizer=numpy_net.SGD(lr=0.1, momentum=0.9),
            dtype=dtype,
        )
        X, T = inputs["X"].astype(dtype), inputs["T"].astype(dtype)
        losses = [ref.step(X, T) for _ in range(3)]
        np.testing.assert_allclose(got[f"{dtype}_losses"], losses, rtol=tol, err_msg=dtype)
        np.testing.assert_allclose(got[f"{dtype}_out"], ref.forward(X), rtol=tol, atol=tol, err_msg=dtype)
        for k in ("w1", "b1", "w2", "b2"):
            np.testing.assert_allclose(got[f"{dtype}_{k}"], ref.w[k], rtol=tol, atol=tol, err_msg=f"{dtype} {k}")
    return report


@pytest.fixture(scope="module")
def wheel() -> Path:
    return _newest(WHEEL_GLOB, "RUSTBP_REQUIRE_WHEEL", "make check-wheel")


@pytest.mark.skipif(not MANYLINUX, reason="manylinux wheels are built for Linux x86-64 and aarch64")
def test_wheel_is_manylinux2014_abi3(wheel):
    _check_manylinux2014(wheel, MACHINE)


def _check_manylinux2014(wheel: Path, machine: str) -> None:
    """One wheel for CPython 3.9+ on glibc 2.17+, by its name and by the glibc symbols it needs."""
    assert wheel.name.endswith(f"-cp39-abi3-manylinux2014_{machine}.manylinux_2_17_{machine}.whl"), wheel.name
    # auditwheel reads the symbol versions the extension needs from glibc, independently of the name.
    shown = _run(sys.executable, "-m", "auditwheel", "show", wheel)
    tag = rf'consistent\s+with\s+the\s+following\s+platform\s+tag:\s+"manylinux_2_17_{machine}"'
    assert re.search(tag, shown), shown


@pytest.mark.timeout(1800)
def test_wheel_reproduces_the_article_in_a_fresh_virtualenv(wheel, tmp_path):
    python = _venv(tmp_path / "venv", wheel)
    _check_probe(python, tmp_path)
    # The console script is in the wheel too.
    demo = _run(python.with_name("rustbp.exe" if sys.platform == "win32" else "rustbp"), "demo", cwd=tmp_path)
    printed = [float(v) for v in re.findall(r"-?\d+\.\d+(?:e-?\d+)?", demo)]
    assert any(v == pytest.approx(ARTICLE_FINAL["E_total"], rel=1e-9) for v in printed), demo


@pytest.mark.skipif(sys.platform != "linux" or MACHINE != "x86_64", reason="qemu-user emulates x86-64 on Linux x86-64")
@pytest.mark.timeout(1800)
def test_wheel_runs_on_an_x86_64_without_avx(wheel, tmp_path):
    """gemm picks its kernels at run time: on a CPU without AVX it must fall back, and agree."""
    qemu = shutil.which("qemu-x86_64")
    if qemu is None:
        if os.environ.get("RUSTBP_REQUIRE_WHEEL") == "1":
            pytest.fail("qemu-x86_64 is missing: apt-get install qemu-user")
        pytest.skip("qemu-x86_64 is missing (apt-get install qemu-user)")
    python = _venv(tmp_path / "venv", wheel, BASELINE_NUMPY)
    report = _check_probe(python, tmp_path, qemu, "-cpu", BASELINE_CPU)
    assert report["cpu"], "NumPy saw no CPU features at all"
    assert not {"AVX", "AVX2", "FMA3", "AVX512F"} & set(report["cpu"]), f"the emulated CPU has {report['cpu']}"


@pytest.mark.skipif(
    not (os.environ.get("RUSTBP_AARCH64_ROOT") and sys.platform == "linux" and MACHINE == "x86_64"),
    reason="scripts/aarch64_wheel.sh builds the aarch64 wheel and an arm64 Python to run it (RUSTBP_AARCH64_ROOT)",
)
@pytest.mark.timeout(1800)
def test_aarch64_wheel_under_qemu(tmp_path):
    root = Path(os.environ["RUSTBP_AARCH64_ROOT"])
    wheel = _newest("rustbp-*_aarch64.whl", "RUSTBP_AARCH64_ROOT", "scripts/aarch64_wheel.sh")
    _check_manylinux2014(wheel, "aarch64")
    # Unpacked as pip would install it (a wheel is a zip of the site-packages tree).
    with zipfile.ZipFile(wheel) as z:
        z.extractall(tmp_path / "site")
    report = _check_probe(
        root / "usr/bin/python3.11", tmp_path, "qemu-aarch64", "-L", str(root), site=tmp_path / "site"
    )
    assert "ASIMD" in report["cpu"] or "NEON" in report["cpu"], report["cpu"]


@pytest.mark.timeout(3600)
def test_sdist_builds_with_pip_and_reproduces_the_article(tmp_path):
    sdist = _newest("rustbp-*.tar.gz", "RUSTBP_REQUIRE_SDIST", "make check-sdist")
    python = _venv(tmp_path / "venv", sdist)
    _check_probe(python, tmp_path)


def test_release_workflow_builds_every_platform_and_publishes_on_tags():
    yaml = pytest.importorskip("yaml")
    flow = yaml.safe_load((ROOT / ".github/workflows/release.yml").read_text())
    jobs = flow["jobs"]
    platforms = {(m["os"].split("-")[0], m["target"]) for m in jobs["wheels"]["strategy"]["matrix"]["include"]}
    assert platforms == {
        ("ubuntu", "x86_64"),
        ("ubuntu", "aarch64"),
        ("macos", "x86_64"),
        ("macos", "aarch64"),
        ("windows", "x64"),
    }
    assert all(
        m.get("manylinux") == "2014"
        for m in jobs["wheels"]["strategy"]["matrix"]["include"]
        if m["os"].startswith("ubuntu")
    )
    assert any("pytest" in step.get("run", "") for step in jobs["wheels"]["steps"]), "the wheels are tested"
    assert any("make check-sdist" in step.get("run", "") for step in jobs["sdist"]["steps"])
    publish = jobs["publish"]
    assert set(publish["needs"]) == {"wheels", "sdist"} and publish["permissions"] == {"id-token": "write"}
    assert publish["if"] == "startsWith(github.ref, 'refs/tags/v')"
