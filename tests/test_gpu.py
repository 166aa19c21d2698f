"""The GPU path (wgpu) against the CPU path in float32: same start, same losses and weights.

Needs a GPU adapter; lavapipe (Debian's mesa-vulkan-drivers, a software Vulkan GPU) will do, and CI
installs it. Without an adapter these tests skip with the reason, unless RUSTBP_REQUIRE_GPU=1, where
they fail. Sizes are small: lavapipe computes at about 0.5 GFLOP/s.
"""

from __future__ import annotations

import os
import pickle

import numpy as np
import pytest
import rustbp
from conftest import ARTICLE, ARTICLE_FINAL, ARTICLE_LOSSES, ARTICLE_T, ARTICLE_X

OPTIMIZERS = {
    "sgd": rustbp.SGD(lr=0.1),
    "nesterov": rustbp.SGD(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": rustbp.Adam(lr=1e-3),
}


@pytest.fixture(scope="module", autouse=True)
def adapter() -> rustbp.GpuDevice:
    try:
        devices = rustbp.gpu_devices()
        reason = "no GPU adapter found (install a Vulkan driver, or mesa-vulkan-drivers for lavapipe)"
    except rustbp.GpuUnavailableError as e:
        devices, reason = [], str(e)
    if not devices:
        if os.environ.get("RUSTBP_REQUIRE_GPU") == "1":
            pytest.fail(f"RUSTBP_REQUIRE_GPU=1 but {reason}")
        pytest.skip(reason)
    return devices[0]


def pair(seed=None, **kw):
    """The same network on the CPU and on the GPU, float32, same seed."""
    kw.setdefault("seed", 3)
    args = kw.pop("widths", (4, 6, 3))
    return rustbp.Network(*args, dtype="float32", **kw), rustbp.Network(*args, device="gpu", **kw)


def data(rng, n_in, n_out, batch, loss="half_sse"):
    X = rng.normal(size=(batch, n_in)).astype(np.float32)
    if loss == "cross_entropy":
        T = np.eye(n_out, dtype=np.float32)[rng.integers(0, n_out, batch)]
    else:
        T = rng.uniform(0.1, 0.9, (batch, n_out)).astype(np.float32)
    return X, T


def assert_losses_close(lg, lc, rtol=1e-4):
    """Losses agree to `rtol`; a loss that has fallen a million-fold below the largest one is (t - o)^2
    of a near-cancelling difference, so there the tolerance is relative to the largest loss."""
    lc = np.asarray(lc)
    np.testing.assert_allclose(lg, lc, rtol=rtol, atol=1e-6 * float(np.abs(lc).max()))


def assert_weights_close(cpu, gpu, rtol=1e-4):
    """Each tensor agrees to `rtol` relative to its own largest value."""
    wc, wg = cpu.get_weights(), gpu.get_weights()
    assert wc.keys() == wg.keys()
    for k in wc:
        scale = float(np.abs(wc[k]).max()) or 1.0
        np.testing.assert_allclose(wg[k], wc[k], rtol=rtol, atol=rtol * scale, err_msg=k)


# 784-256-10 uses one sample: Adam divides each gradient by its own running size, so a gradient whose
# batch sum nearly cancels (some of dw1 = dz1^T X's 784 x 256 sums do) has its float32 rounding noise,
# which differs with the summation order, amplified to +-lr per step. With one sample dw1 has no sums.
@pytest.mark.parametrize("opt", OPTIMIZERS)
@pytest.mark.parametrize("widths,batch", [((2, 2, 2), 1), ((64, 128, 10), 16), ((784, 256, 10), 1)])
def test_parity_with_cpu_after_100_steps(rng, widths, batch, opt):
    cpu, gpu = pair(widths=widths, optimizer=OPTIMIZERS[opt])
    X, T = data(rng, widths[0], widths[2], batch)
    lc, lg = cpu.train(X, T, 100), gpu.train(X, T, 100)
    assert_losses_close(lg, lc)
    assert_weights_close(cpu, gpu)


def test_article_net_on_the_gpu_reaches_the_articles_loss():
    net = rustbp.Network.article(device="gpu")
    assert net.device == "gpu" and net.dtype == "float32"
    assert net._core.uses_fused(1)  # the fused kernel serves the article's net
    losses = net.train(ARTICLE_X, ARTICLE_T, 10_000)
    for step, want in ARTICLE_LOSSES.items():
        assert abs(losses[step] - want) < 1e-6, step
    assert abs(net.loss(ARTICLE_X, ARTICLE_T) - ARTICLE_FINAL["E_total"]) < 1e-6
    out = net.forward(ARTICLE_X)
    assert out.shape == (2,)
    assert abs(out[0] - ARTICLE_FINAL["out_o1"]) < 1e-5 and abs(out[1] - ARTICLE_FINAL["out_o2"]) < 1e-5


def test_explain_step_on_the_gpu_gives_the_articles_numbers():
    net = rustbp.Network.article(device="gpu")
    s = net.explain_step(ARTICLE_X, ARTICLE_T, apply=True)
    for name, want in ARTICLE.items():
        assert abs(s[name] - want) < 1e-6, name
    # With apply=True the update went back to the GPU.
    assert abs(net.get_weights()["w1"][0, 0] - ARTICLE["w1_new"]) < 1e-7


@pytest.mark.parametrize(
    "hidden,output,loss",
    [
        ("sigmoid", "sigmoid", "half_sse"),
        ("tanh", "tanh", "mse"),
        ("relu", "identity", "half_sse"),
        ("identity", "relu", "mse"),
        ("tanh", "softmax", "cross_entropy"),
    ],
)
@pytest.mark.parametrize(
    "bias,train_bias", [("per_neuron", True), ("shared", True), ("none", True), ("per_neuron", False)]
)
@pytest.mark.parametrize("widths,batch", [((5, 7, 4), 6), ((40, 9, 4), 300)], ids=["fused", "tiled"])
def test_every_activation_loss_and_bias_matches_the_cpu(rng, hidden, output, loss, bias, train_bias, widths, batch):
    # SGD with momentum, not Adam: with softmax and cross-entropy a shared output bias has a gradient of
    # exactly zero, whose rounding noise Adam would blow up to +-lr per step (see the parity test).
    kw = dict(
        widths=widths,
        hidden_activation=hidden,
        output_activation=output,
        loss=loss,
        bias=bias,
        train_bias=train_bias,
        optimizer=rustbp.SGD(lr=0.1, momentum=0.9),
    )
    cpu, gpu = pair(**kw)
    assert gpu._core.uses_fused(batch) == (widths[0] <= 32)
    X, T = data(rng, widths[0], widths[2], batch, loss)
    np.testing.assert_allclose(gpu.forward(X), cpu.forward(X), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gpu.loss(X, T), cpu.loss(X, T), rtol=1e-5)
    assert_losses_close(gpu.train(X, T, 20), cpu.train(X, T, 20))
    assert_weights_close(cpu, gpu)


@pytest.mark.parametrize("widths", [(3, 8, 2), (40, 16, 3)], ids=["fused", "tiled"])
@pytest.mark.parametrize("shuffle", [True, False])
def test_fit_matches_the_cpu(rng, widths, shuffle):
    cpu, gpu = pair(widths=widths, optimizer=rustbp.SGD(lr=0.1, momentum=0.5))
    X, Y = data(rng, widths[0], widths[2], 50)
    ec = cpu.fit(X, Y, epochs=4, batch_size=16, shuffle=shuffle, seed=9)
    eg = gpu.fit(X, Y, epochs=4, batch_size=16, shuffle=shuffle, seed=9)
    assert_losses_close(eg, ec)
    assert_weights_close(cpu, gpu)


def test_train_step_and_weights_round_trip(rng):
    cpu, gpu = pair(optimizer=rustbp.Adam(lr=0.01))
    X, T = data(rng, 4, 3, 5)
    for _ in range(3):
        np.testing.assert_allclose(gpu.train_step(X, T), cpu.train_step(X, T), rtol=1e-5)
    w = {k: v * 0.5 for k, v in cpu.get_weights().items()}
    cpu.set_weights(w)
    gpu.set_weights(w)
    for k, v in gpu.get_weights().items():
        np.testing.assert_array_equal(v, w[k])
    state, updates = gpu._core.get_optimizer_state()
    assert updates == 3
    cpu._core.set_optimizer_state(state, updates)
    assert_losses_close(gpu.train(X, T, 5), cpu.train(X, T, 5))
    with pytest.raises(ValueError, match="w1"):
        gpu.set_weights({**w, "w1": np.zeros((2, 2))})
    with pytest.raises(ValueError, match="X"):
        gpu.forward(np.full((2, 4), np.nan))


def test_divergence_keeps_the_last_finite_weights():
    kw = dict(
        widths=(2, 4, 1),
        hidden_activation="identity",
        output_activation="identity",
        optimizer=rustbp.SGD(lr=50.0),
    )
    _, gpu = pair(**kw)
    X, T = np.array([[3.0, -2.0]]), np.array([[1.0]])
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        gpu.train(X, T, 1000)
    err = info.value
    assert 0 < err.step < 1000 and len(err.losses) == err.step
    assert all(np.isfinite(v).all() for v in gpu.get_weights().values())
    _, replay = pair(**kw)
    np.testing.assert_array_equal(replay.train(X, T, err.step), err.losses)
    for k, v in replay.get_weights().items():
        np.testing.assert_array_equal(v, gpu.get_weights()[k])


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


def test_to_moves_weights_and_optimizer_state_between_devices(rng):
    X, T = data(rng, 4, 3, 6)
    cpu = rustbp.Network(4, 6, 3, optimizer=rustbp.Adam(lr=0.01), seed=2)  # float64
    cpu.train(X, T, 3)
    gpu = cpu.to("gpu")
    assert (gpu.device, gpu.dtype, gpu.config.seed) == ("gpu", "float32", 2)
    for k, v in cpu.get_weights().items():
        np.testing.assert_array_equal(gpu.get_weights()[k], v.astype(np.float32))
    # Adam's moments and step count came along: the next steps match a float32 CPU copy's.
    cpu32 = cpu.to("cpu", dtype="float32")
    assert_losses_close(gpu.train(X, T, 5), cpu32.train(X, T, 5))
    back = gpu.to("cpu")
    assert (back.device, back.dtype) == ("cpu", "float32")
    assert_weights_close(back, gpu, rtol=0)
    with pytest.raises(ValueError, match="float32"):
        cpu.to("gpu", dtype="float64")
    with pytest.raises(ValueError, match="device"):
        cpu.to("tpu")


def test_gpu_networks_save_load_and_pickle(rng, tmp_path):
    X, T = data(rng, 4, 3, 6)
    gpu = rustbp.Network(4, 6, 3, device="gpu", optimizer=rustbp.SGD(lr=0.1, momentum=0.9), seed=4)
    gpu.train(X, T, 3)
    path = tmp_path / "net.safetensors"
    gpu.save(path)
    on_cpu, on_gpu = rustbp.Network.load(path), rustbp.Network.load(path, device="gpu")
    unpickled = pickle.loads(pickle.dumps(gpu))
    assert (on_cpu.device, on_cpu.dtype, on_gpu.device, unpickled.device) == ("cpu", "float32", "gpu", "gpu")
    want = gpu.train(X, T, 4)  # momentum buffers were saved: every copy continues the same run
    for net in (on_cpu, on_gpu, unpickled):
        assert_losses_close(net.train(X, T, 4), want)
        assert_weights_close(net, gpu)


def test_step_counts_too_large_for_memory_are_memory_errors():
    # Found by `make fuzz` with GPU networks: these were Rust panics (capacity overflow).
    net = rustbp.Network(2, 3, 2, device="gpu")
    X = np.zeros((2, 2))
    with pytest.raises(MemoryError, match="losses"):
        net.train(X, X, 2**62)
    with pytest.raises(MemoryError, match="losses"):
        net.fit(X, X, 2**62)
    assert net.forward(X).shape == (2, 2)  # still usable


@pytest.mark.parametrize("widths", [(2, 3, 2), (40, 50, 3)], ids=["fused", "tiled"])
@pytest.mark.parametrize("opt", [rustbp.SGD(lr=1e38), rustbp.SGD(lr=1e38, momentum=0.9), rustbp.Adam(lr=1e38)])
def test_an_update_to_non_finite_weights_diverges_like_the_cpu(widths, opt):
    # The step's loss is finite but its update overflows: found by `make fuzz`, where the GPU kept the
    # infinite weights. Now, as on the CPU, the step is refused and the weights stay those before it.
    kw = dict(widths=widths, optimizer=opt, hidden_activation="identity", output_activation="identity", loss="mse")
    cpu, gpu = pair(**kw)
    before = gpu.get_weights()
    X, T = np.full((1, widths[0]), 1e3), np.full((1, widths[2]), -1e3)
    for net in (cpu, gpu):
        for f in (lambda n=net: n.train_step(X, T), lambda n=net: n.train(X, T, 3), lambda n=net: n.fit(X, T, 2)):
            with pytest.raises(rustbp.TrainingDivergedError, match="weights became non-finite") as info:
                f()
            assert info.value.step == 0
    for k, v in gpu.get_weights().items():
        np.testing.assert_array_equal(v, before[k])


def test_gpu_fit_errors_name_its_targets_y():
    net = rustbp.Network(2, 3, 2, device="gpu")
    with pytest.raises(ValueError, match=r"^Y: expected 4 rows, like X, got 3$"):
        net.fit(np.zeros((4, 2)), np.zeros((3, 2)), 1)
    with pytest.raises(ValueError, match=r"^Y: expected finite values"):
        net.fit(np.zeros((4, 2)), np.full((4, 2), np.inf), 1)
