"""Forked processes (multiprocessing's fork start method, joblib's and Dask's process workers, pre-forking
servers) keep working after the parent ran threaded work: the core's thread pool is per process, and a GPU
opened by the parent is refused in the child with a clear error instead of a hang."""

from __future__ import annotations

import multiprocessing
import os
import signal
import sys
import time

import numpy as np
import pytest
import rustbp

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")

# 256 x 1024 x 784 multiply-adds per product: every step runs on the thread pool.
WIDTHS = (784, 1024, 10)


def threaded_net() -> tuple[rustbp.Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, WIDTHS[0])).astype(np.float32)
    T = np.eye(WIDTHS[2], dtype=np.float32)[rng.integers(0, WIDTHS[2], 256)]
    net = rustbp.Network(
        *WIDTHS, dtype="float32", seed=1, output_activation="softmax", loss="cross_entropy",
        optimizer=rustbp.Adam(lr=1e-3),
    )  # fmt: skip
    return net, X, T


def in_child(body, timeout: float = 120.0) -> int:
    """Runs `body` in a forked child and returns its exit code; a child still running after `timeout`
    seconds has hung: it is killed and the test fails."""
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 1
        try:
            code = body()
        except BaseException as e:  # report anything, exit without running the parent's cleanup
            print(f"child failed: {e!r}", file=sys.stderr)
        finally:
            os._exit(code)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    pytest.fail(f"the forked child hung for {timeout} s")


def test_a_forked_child_trains_after_the_parent_ran_threaded_work():
    net, X, T = threaded_net()
    net.train(X, T, 2)  # starts the parent's pool threads
    expected = net.to("cpu")
    want = expected.train(X, T, 2)

    def child() -> int:
        got = net.train(X, T, 2)  # the same network, copied by fork: the same losses
        return 0 if np.array_equal(got, want) else 3

    assert in_child(child) == 0
    # The parent's pool still works.
    assert np.isfinite(net.train(X, T, 1)).all()


def _train_threaded(_: int) -> list[float]:
    net, X, T = threaded_net()
    return net.train(X, T, 2).tolist()


def test_a_multiprocessing_fork_pool_trains_like_the_parent():
    net, X, T = threaded_net()
    net.train(X, T, 1)
    want = _train_threaded(0)
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(2) as pool:
        result = pool.map_async(_train_threaded, [0, 1])
        got = result.get(timeout=180)
    assert got == [want, want]


def test_a_forked_child_gets_a_clear_error_for_the_parents_gpu():
    try:
        gpu = rustbp.Network(3, 4, 2, device="gpu", seed=0)
    except rustbp.GpuUnavailableError as e:
        if os.environ.get("RUSTBP_REQUIRE_GPU") == "1":
            raise
        pytest.skip(str(e))
    X = np.ones((2, 3), np.float32)
    gpu.forward(X)

    def child() -> int:
        for attempt in (lambda: gpu.forward(X), lambda: gpu.train(X, np.ones((2, 2)), 3),
                        lambda: rustbp.Network(3, 4, 2, device="gpu")):  # fmt: skip
            try:
                attempt()
                return 4
            except rustbp.GpuUnavailableError as e:
                if "forked" not in str(e):
                    return 5
        # The CPU still works in the child.
        return 0 if np.isfinite(rustbp.Network(3, 4, 2, seed=0).forward(X)).all() else 6

    assert in_child(child) == 0
    assert gpu.forward(X).shape == (2, 2)


def fork_while(net: rustbp.Network, holds, body) -> int:
    """Forks when another thread is inside `holds(net)` with the network's lock taken (seen as a busy
    error from `probe`), and runs `body` in the child. The switch interval keeps this thread holding the
    GIL from the busy answer to the fork, and the other thread needs the GIL to let go of the lock."""
    import threading

    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            holds(net)

    worker = threading.Thread(target=work)
    weights = net.get_weights()
    old = sys.getswitchinterval()
    worker.start()
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            sys.setswitchinterval(100.0)
            try:
                net.set_weights(weights)  # takes the lock for writing: refused while the worker holds it
            except RuntimeError as e:
                assert "busy" in str(e)
                return in_child(body)
            finally:
                sys.setswitchinterval(old)
        pytest.fail("the worker never held the network's lock")
    finally:
        stop.set()
        worker.join()


def small_net() -> tuple[rustbp.Network, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(1)
    X = rng.normal(size=(2000, 16))
    T = rng.normal(size=(2000, 4))
    return rustbp.Network(16, 64, 4, seed=2, optimizer=rustbp.Adam(lr=1e-3)), X, T


def test_a_network_read_by_another_thread_at_fork_works_in_the_child():
    net, X, T = small_net()
    want = net.to("cpu").train(X, T, 3)

    def child() -> int:
        # The parent's reader does not exist here; the network is whole, since reading changes nothing.
        return 0 if np.array_equal(net.train(X, T, 3), want) else 3

    assert fork_while(net, lambda n: n.forward(X), child) == 0
    assert np.array_equal(net.train(X, T, 3), want)  # the parent's network is unchanged, and free


def test_a_network_trained_by_another_thread_at_fork_is_refused_clearly_in_the_child():
    net, X, T = small_net()

    def child() -> int:
        for attempt in (lambda: net.forward(X), lambda: net.train(X, T, 1), net.get_weights):
            try:
                attempt()
                return 4
            except RuntimeError as e:
                if "forked" not in str(e) or "half-updated" not in str(e):
                    return 5
        # Other networks work in the child.
        return 0 if np.isfinite(rustbp.Network(16, 4, 2, seed=0).forward(X)).all() else 6

    assert fork_while(net, lambda n: n.train(X, T, 50), child) == 0
    assert np.isfinite(net.train(X, T, 1)).all()  # the parent's network is free again
