"""Shared test data: the article's numbers (../shared/article.md), the specification rustbp reproduces; and the
devices every API test runs on, with the helpers that build networks there and compare their results."""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import rustbp

ARTICLE_X = np.array([0.05, 0.10])
ARTICLE_T = np.array([0.01, 0.99])

ARTICLE = {
    "net_h1": 0.3775,
    "net_h2": 0.3925,
    "out_h1": 0.5932699921071872,
    "out_h2": 0.596884378259767,
    "net_o1": 1.10590596705977,
    "net_o2": 1.2249214040964653,
    "out_o1": 0.7513650695523157,
    "out_o2": 0.7729284653214625,
    "E_total": 0.2983711087600027,
    "dE_dw1": 0.0004385677344743465,
    "dE_dw2": 0.000877135468948693,
    "dE_dw3": 0.0004977127352608599,
    "dE_dw4": 0.0009954254705217198,
    "dE_dw5": 0.08216704056423077,
    "dE_dw6": 0.08266762784753325,
    "dE_dw7": -0.02260254047747507,
    "dE_dw8": -0.022740242215978222,
    "w1_new": 0.1497807161327628,
    "w2_new": 0.19956143226552567,
    "w3_new": 0.24975114363236958,
    "w4_new": 0.29950228726473915,
    "w5_new": 0.35891647971788465,
    "w6_new": 0.4086661860762334,
    "w7_new": 0.5113012702387375,
    "w8_new": 0.5613701211079891,
}
ARTICLE_E_AFTER_ONE_STEP = 0.29102777369359933
ARTICLE_LOSSES = {
    0: 0.2983711087600027,
    1000: 0.001114349453733746,
    2000: 0.00044486770391326887,
    3000: 0.00025152360241099405,
    4000: 0.00016427727363225536,
    5000: 0.00011622569943793622,
    6000: 8.653979465934606e-05,
    7000: 6.676957838285888e-05,
    8000: 5.288555201099971e-05,
    9000: 4.2742284255545085e-05,
    9999: 3.510854812251261e-05,
}
ARTICLE_FINAL = {"E_total": 3.510187782978859e-05, "out_o1": 0.01591362044355068, "out_o2": 0.9840642735146238}


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(12345)


# -- devices ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Device:
    """A place the API runs: ``device`` and ``dtype`` as ``rustbp.Network`` takes them."""

    id: str
    device: str
    dtype: str

    def __str__(self) -> str:
        return self.id


CPU64, CPU32, GPU = (
    Device("cpu-float64", "cpu", "float64"),
    Device("cpu-float32", "cpu", "float32"),
    Device("gpu", "gpu", "float32"),
)
DEVICES = (CPU64, CPU32, GPU)

# The GPU's results are checked against the CPU float32 network with the same seed and calls. They differ
# only by float32 rounding: the GPU sums its products and reductions in another order, and its exp is
# not libm's; a few ulp (6e-8) per operation, which runs of up to 300 steps carry along without growing.
# Arrays (outputs, weights) are compared to GPU_RTOL of their largest value, losses to GPU_RTOL of their
# own: measured on lavapipe, the largest deviations are 2e-6 (a shared bias, the sum of 300 x 9 gradients,
# after 20 steps) and 3e-7 (Adam's losses). Losses that training has pushed far down need the floor below;
# the article's 10,000 steps have their own bound (test_network.py).
GPU_RTOL = 1e-5
# A loss fallen far below the first one is the square of a near-cancelling t - o, whose float32 rounding
# is that of o: compared within F32_LOSS_FLOOR of the largest loss (measured: up to 5e-8, float32 against
# float64 NumPy and the GPU against the CPU).
F32_LOSS_FLOOR = 3e-7


@functools.cache
def gpu_unavailable() -> str | None:
    """Why no GPU network can be built here, or None when an adapter is found."""
    try:
        if rustbp.gpu_devices():
            return None
        return "no GPU adapter found (install a Vulkan driver, or mesa-vulkan-drivers for lavapipe)"
    except rustbp.GpuUnavailableError as e:
        return str(e)


def require(device: Device) -> None:
    """Skips a GPU test without an adapter, with the reason; fails it instead where CI requires a GPU
    (RUSTBP_REQUIRE_GPU=1), so that a broken driver cannot pass as a skip."""
    reason = gpu_unavailable() if device.device == "gpu" else None
    if reason is not None:
        if os.environ.get("RUSTBP_REQUIRE_GPU") == "1":
            pytest.fail(f"RUSTBP_REQUIRE_GPU=1 but {reason}")
        pytest.skip(reason)


@pytest.fixture(params=DEVICES, ids=str)
def device(request: pytest.FixtureRequest) -> Device:
    """Every device: the test is written once and runs on the CPU in float64 and float32 and on the GPU."""
    require(request.param)
    return request.param


def skip_on(reasons: dict[str, str]) -> pytest.MarkDecorator:
    """Parametrises ``device`` over every device, skipping those where the behaviour does not apply, each
    with its reason (so the report says what is not checked where, and why)."""
    params = [
        pytest.param(d, marks=pytest.mark.skip(reason=f"{d}: {reasons[d.id]}")) if d.id in reasons else d
        for d in DEVICES
    ]
    return pytest.mark.parametrize("device", params, indirect=True, ids=str)


def make_net(device: Device, /, *widths: int, **kw: Any) -> rustbp.Network:
    """A network on ``device`` (seed 7 unless given); ``kw`` may override its device or dtype."""
    return rustbp.Network(*widths, **{"device": device.device, "dtype": device.dtype, "seed": 7, **kw})


def gpu_reference(device: Device, *widths: int, **kw: Any) -> rustbp.Network | None:
    """For the GPU, the CPU float32 network built alike (same seed): its results are the GPU's reference."""
    return make_net(CPU32, *widths, **kw) if device.device == "gpu" else None


def article(device: Device) -> rustbp.Network:
    """The article's network on ``device``."""
    net = rustbp.Network.article(device.device)
    return net.to("cpu", dtype="float32") if device == CPU32 else net


def inputs(rng: np.random.Generator, device: Device, shape: tuple[int, ...]) -> np.ndarray:
    """Normal samples in float64 holding values the device's dtype represents exactly, so that a float64
    NumPy reference computes from the very inputs the network sees."""
    return rng.normal(size=shape).astype(device.dtype).astype(np.float64)


def assert_close(got: Any, want: Any, rtol: float, err_msg: str = "") -> None:
    """Every element within ``rtol`` of the largest magnitude in ``want``: rounding errors scale with the
    values they came from, so an element near zero carries those of the larger ones around it."""
    want = np.asarray(want, dtype=np.float64)
    scale = float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(
        np.asarray(got, dtype=np.float64), want, rtol=0, atol=rtol * (scale or 1.0), err_msg=err_msg
    )


def assert_same_run(net: rustbp.Network, ref: rustbp.Network, rtol: float) -> None:
    """The same parameters, to ``rtol`` of each tensor's largest value."""
    got, want = net.get_weights(), ref.get_weights()
    assert got.keys() == want.keys()
    for k in want:
        assert_close(got[k], want[k], rtol, err_msg=k)


def assert_each_close(got: Any, want: Any, rtol: float, floor: float = 0.0) -> None:
    """Each value (a loss, one of the article's numbers) within ``rtol`` of its own size, or within ``floor``
    times the largest: a loss fallen far below the largest is the square of a near-cancelling difference
    t - o, whose rounding is relative to o, not to the loss."""
    want = np.asarray(want, dtype=np.float64)
    atol = floor * float(np.abs(want).max()) if want.size else 0.0
    np.testing.assert_allclose(np.asarray(got, dtype=np.float64), want, rtol=rtol, atol=atol)
