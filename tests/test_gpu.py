"""What only the GPU has: adapters and their choice, float32 only, the adapter's limits, the switch
between the fused kernel (widths up to 32, up to 256 rows: many steps per dispatch) and the tiled one,
and long fused runs. The API itself is checked on the GPU with every other device in test_network.py.

Needs a GPU adapter; lavapipe (Debian's mesa-vulkan-drivers, a software Vulkan GPU) will do, and CI
installs it. Without an adapter these tests skip with the reason, unless RUSTBP_REQUIRE_GPU=1, where
they fail. Sizes are small: lavapipe computes at about 0.5 GFLOP/s.
"""

from __future__ import annotations

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


# Each side of every bound of the fused kernel: the widest layer 32 (fused) or 33 (tiled) in each
# position, and 256 rows (fused) or 257 (tiled). Both kernels must compute what the CPU does.
@pytest.mark.parametrize(
    ("widths", "rows"),
    [((32, 32, 32), 8), ((33, 8, 4), 8), ((4, 33, 4), 8), ((4, 8, 33), 8), ((4, 8, 4), 256), ((4, 8, 4), 257)],
    ids=["fused", "tiled-n_in", "tiled-n_hidden", "tiled-n_out", "fused-256-rows", "tiled-257-rows"],
)
def test_both_sides_of_the_fused_kernel_switch_match_the_cpu(rng, widths, rows):
    kw = dict(hidden_activation="tanh", optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=5)
    net, cpu = make_net(GPU, *widths, **kw), gpu_reference(GPU, *widths, **kw)
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
