"""What only the GPU has: adapters and their choice, float32 only, the adapter's limits, the switch
between the fused kernel (up to 2,560 parameters and 256 rows: many steps per dispatch) and the tiled one,
and long fused runs. The API itself is checked on the GPU with every other device in test_network.py.

Needs a GPU adapter; lavapipe (Debian's mesa-vulkan-drivers, a software Vulkan GPU) will do, and CI
installs it. Without an adapter these tests skip with the reason, unless RUSTBP_REQUIRE_GPU=1, where
they fail. Sizes are small: lavapipe computes at about 0.5 GFLOP/s.
"""

from __future__ import annotations

import os

import numpy as np
import pytest
import rustbp
from conftest import GPU, GPU_RTOL, assert_close, assert_each_close, assert_same_run, gpu_reference, make_net, require


@pytest.fixture(scope="module", autouse=True)
def adapter() -> rustbp.GpuDevice:
    require(GPU)
    return rustbp.gpu_devices()[0]


def test_float64_on_the_gpu_is_refused():
    with pytest.raises(ValueError, match="float32"):
        rustbp.Network(2, 2, 2, device="gpu", dtype="float64")


def test_devices_and_adapter_choice(adapter, monkeypatch):
    assert isinstance(adapter, rustbp.GpuDevice) and adapter.name and adapter.backend
    assert rustbp.Network(2, 2, 2, device="gpu").adapter == adapter  # the first, unless one is picked
    assert rustbp.Network(2, 2, 2).adapter is None
    monkeypatch.setenv("RUSTBP_GPU_ADAPTER", adapter.name[:4].upper())
    assert rustbp.Network(2, 2, 2, device="gpu").adapter.name.startswith(adapter.name[:4])
    monkeypatch.setenv("RUSTBP_GPU_ADAPTER", "no such adapter")
    with pytest.raises(rustbp.GpuUnavailableError, match="RUSTBP_GPU_ADAPTER"):
        rustbp.Network(2, 2, 2, device="gpu")
    assert issubclass(rustbp.GpuUnavailableError, RuntimeError)


def test_a_batch_over_the_adapters_limits_is_a_clear_error(adapter):
    net = rustbp.Network(8, 4, 2, device="gpu")
    limit = 2**27 if adapter.is_software else None  # lavapipe: 128 MiB storage bindings
    if limit is None:
        pytest.skip("only checked where the binding limit is known to be small")
    rows = limit // (4 * 8) + 1
    X = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), shape=(rows, 8), strides=(0, 0))
    with pytest.raises(MemoryError, match="max_storage_buffer_binding_size"):
        net.forward(X)


# Each side of every bound of the fused kernel: 2,560 parameters (fused) or 2,561 (tiled), wide layers
# of few parameters (fused), and 256 rows (fused) or 257 (tiled). Both kernels must compute what the CPU
# does.
@pytest.mark.parametrize(
    ("widths", "rows"),
    [((46, 32, 32), 8), ((2558, 1, 1), 8), ((100, 4, 60), 8), ((4, 8, 4), 256), ((4, 8, 4), 257)],
    ids=["fused-2560-params", "tiled-2561-params", "fused-wide", "fused-256-rows", "tiled-257-rows"],
)
def test_both_sides_of_the_fused_kernel_switch_match_the_cpu(request, rng, widths, rows):
    kw = dict(hidden_activation="tanh", optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=5)
    net, cpu = make_net(GPU, *widths, **kw), gpu_reference(GPU, *widths, **kw)
    assert net._core.uses_fused(rows) == ("fused" in request.node.callspec.id)
    X, T = rng.normal(size=(rows, widths[0])), rng.uniform(0.1, 0.9, (rows, widths[2]))
    assert_close(net.forward(X), cpu.forward(X), GPU_RTOL)
    assert_each_close(net.train(X, T, 5), cpu.train(X, T, 5), GPU_RTOL)
    assert_each_close(net.train_step(X, T), cpu.train_step(X, T), GPU_RTOL)
    assert_each_close(net.fit(X, T, 2, batch_size=rows, seed=1), cpu.fit(X, T, 2, batch_size=rows, seed=1), GPU_RTOL)
    assert_same_run(net, cpu, GPU_RTOL)


def test_long_fused_runs_are_not_cut_short():
    # llvmpipe ends a shader loop after 65535 iterations, nested ones counted, so the fused kernel runs
    # only as many steps per dispatch as fit under that. The largest fused problem (widths 32, 256 rows)
    # loops some 5,600 times a step: 30 steps in one dispatch would be cut short, skipping updates, and
    # the losses and weights would leave the CPU's.
    net, cpu = make_net(GPU, 32, 32, 32, seed=1), gpu_reference(GPU, 32, 32, 32, seed=1)
    X = (np.arange(32 * 256) % 7 / 7).reshape(256, 32)
    assert_each_close(net.train(X, X, 30), cpu.train(X, X, 30), GPU_RTOL)
    assert_same_run(net, cpu, GPU_RTOL)


def _rss_mib() -> float:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


@pytest.mark.skipif(not os.path.exists("/proc/self/status"), reason="reads the resident size from /proc")
def test_memory_stays_flat_over_a_long_gpu_session(rng):
    # Each GPU method, and a network made, used and dropped, called a few hundred times after a warm-up:
    # the process must not grow with the number of calls. (Uniform settings made lavapipe compile a
    # kernel again at every dispatch, keeping 0.6 MB each time: 300 train_steps grew it by 600 MB.)
    fused, tiled = make_net(GPU, 4, 8, 3, seed=1), make_net(GPU, 64, 40, 3, seed=1)  # 2,723 parameters
    X, T, Xw = rng.normal(size=(16, 4)), rng.uniform(0.1, 0.9, (16, 3)), rng.normal(size=(16, 64))
    calls = {
        "forward": lambda: fused.forward(X),
        "loss": lambda: fused.loss(X, T),
        "train_step": lambda: fused.train_step(X, T),
        "train": lambda: fused.train(X, T, 3),
        "tiled train_step": lambda: tiled.train_step(Xw, T),
        "fit": lambda: tiled.fit(Xw, T, 1, batch_size=5, validation_data=(Xw, T)),
        "get/set_weights": lambda: fused.set_weights(fused.get_weights()),
        "a new network": lambda: make_net(GPU, 4, 8, 3).train_step(X, T),
    }
    for name, call in calls.items():
        for _ in range(20):
            call()
        before = _rss_mib()
        for _ in range(300):
            call()
        assert _rss_mib() - before < 30, f"{name}: {before:.0f} -> {_rss_mib():.0f} MiB over 300 calls"
