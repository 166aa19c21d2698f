"""Nothing lost, never a crash: divergence, Ctrl-C, the GIL, threads, memory limits and determinism."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest
import rustbp
from conftest import GPU, require


def linear_net(lr=1.0, dtype="float64", optimizer=None, seed=3):
    """An identity-activation network: with a large learning rate its weights grow geometrically."""
    return rustbp.Network(
        2,
        4,
        1,
        hidden_activation="identity",
        output_activation="identity",
        optimizer=optimizer or rustbp.SGD(lr=lr),
        dtype=dtype,
        seed=seed,
    )


def assert_same_weights(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for k in wa:
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)


def run_child(code: str, *args: str, env: dict[str, str] | None = None, timeout: float = 120):
    """Runs ``code`` in a fresh interpreter (so a crash or a signal cannot take pytest down)."""
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


# -- divergence -------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fit_divergence_counts_steps_across_epochs(rng, dtype):
    X, Y = rng.normal(size=(10, 2)), rng.normal(size=(10, 1))
    net = linear_net(dtype=dtype)
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.fit(X, Y, epochs=1000, batch_size=3, shuffle=False)
    err = info.value
    # Four batches per epoch (3 + 3 + 3 + 1): `step` counts every step of the call, `losses` holds the
    # epochs completed before the failing one.
    assert err.step >= 4, "this setup diverges after the first epoch"
    assert len(err.losses) == err.step // 4
    assert all(np.isfinite(v).all() for v in net.get_weights().values())
    # The network is exactly where its last finite step left it: replay those steps one by one.
    replay = linear_net(dtype=dtype)
    batches = [(X[i : i + 3], Y[i : i + 3]) for i in range(0, 10, 3)]
    epoch_losses, total = [], 0.0
    for s in range(err.step):
        xb, yb = batches[s % 4]
        total += replay.train_step(xb, yb) * len(xb)
        if s % 4 == 3:
            epoch_losses.append(total / 10)
            total = 0.0
    assert_same_weights(net, replay)
    np.testing.assert_allclose(err.losses, epoch_losses, rtol=1e-12)
    # The failing step fails again, from the same state.
    with pytest.raises(rustbp.TrainingDivergedError, match="step 0"):
        replay.train_step(*batches[err.step % 4])


@pytest.mark.parametrize(("dtype", "lr"), [("float32", 1e20), ("float64", 1e200)])
def test_adam_divergence_keeps_weights_and_moments(rng, dtype, lr):
    X, T = rng.normal(size=(4, 2)), rng.normal(size=(4, 1))
    net = linear_net(optimizer=rustbp.Adam(lr=lr), dtype=dtype)
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.train(X, T, 100)
    step = info.value.step
    assert step >= 1 and len(info.value.losses) == step
    replay = linear_net(optimizer=rustbp.Adam(lr=lr), dtype=dtype)
    replay.train(X, T, step)
    assert_same_weights(net, replay)
    # Adam's moments and step count were not touched by the failed update either.
    (got, t_got), (want, t_want) = net._core.get_optimizer_state(), replay._core.get_optimizer_state()
    assert t_got == t_want == step
    for g, w in zip(got, want):
        for a, b in zip(g, w):
            np.testing.assert_array_equal(a, b)


def test_float64_overflow_diverges_cleanly(rng):
    X, T = rng.normal(size=(5, 2)) * 1e3, rng.normal(size=(5, 1))
    net = linear_net(lr=1e3)
    before = net.get_weights()
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.train(X, T, 10_000)
    err = info.value
    assert "non-finite" in str(err) and 0 < err.step < 10_000
    assert np.isfinite(err.losses).all() and max(err.losses) > 1e100, "it got far before overflowing"
    weights = net.get_weights()
    assert all(np.isfinite(v).all() for v in weights.values())
    assert not np.array_equal(weights["w1"], before["w1"])


def test_train_step_divergence_leaves_the_network_untouched():
    net = linear_net(lr=1.0)
    before = net.get_weights()
    with pytest.raises(rustbp.TrainingDivergedError) as info:
        net.train_step([[1e200, 1e200]], [[0.0]])  # finite input, infinite loss
    assert info.value.step == 0 and info.value.losses == []
    assert_same_weights(net, net)  # still readable
    for k, v in net.get_weights().items():
        np.testing.assert_array_equal(v, before[k])


# -- conversions ------------------------------------------------------------------------------------


def test_odd_layouts_are_converted_not_rejected(rng):
    net = rustbp.Network(4, 3, 2, seed=0)
    X = rng.normal(size=(5, 4))
    want = net.forward(X)
    misaligned = np.frombuffer(np.zeros(X.nbytes + 1, dtype=np.uint8)[1:], dtype=np.float64).reshape(5, 4)
    misaligned[...] = X
    assert not misaligned.flags.aligned
    readonly = X.copy()
    readonly.flags.writeable = False
    strided = np.repeat(X, 2, axis=0)[::2]
    layouts = (misaligned, X.astype(">f8"), readonly, X.T.copy().T, strided, X.tolist())
    for x in layouts:
        np.testing.assert_array_equal(net.forward(x), want)
    net.set_weights({k: np.asfortranarray(v).astype(">f8") for k, v in net.get_weights().items()})
    np.testing.assert_array_equal(net.forward(X), want)
    # Training and the loss read the same values whatever the layout (arrays of the network's dtype in
    # C order are read in place, the rest copied).
    T = rng.uniform(size=(5, 2))
    for x, t in zip(layouts, (T.T.copy().T, np.repeat(T, 2, axis=1)[:, ::2], T, T.tolist(), T, T)):
        a, b = rustbp.Network(4, 3, 2, seed=1), rustbp.Network(4, 3, 2, seed=1)
        assert a.loss(x, t) == b.loss(X, T)
        assert a.train_step(x, t) == b.train_step(X, T)
        assert a.train_step(x[1], t[1]) == b.train_step(X[1], T[1])  # one sample, 1-D
        assert_same_weights(a, b)


# -- memory -----------------------------------------------------------------------------------------


def test_buffers_too_large_for_memory_are_memory_errors():
    # Each of these would abort the process if allocated blindly.
    net = rustbp.Network(1, 100_000, 1, seed=0)
    with pytest.raises(MemoryError, match="hidden activations"):
        net.forward(np.zeros((10**7, 1)))  # 80 MB of input, 8 TB of hidden activations
    with pytest.raises(MemoryError, match="hidden activations"):
        net.loss(np.zeros((10**7, 1)), np.zeros((10**7, 1)))
    with pytest.raises(MemoryError, match="losses"):
        net.train(np.zeros((1, 1)), np.zeros((1, 1)), 2**62)
    with pytest.raises(MemoryError, match="losses"):
        net.fit(np.zeros((2, 1)), np.zeros((2, 1)), 2**62)
    with pytest.raises(MemoryError, match="network parameters"):
        rustbp.Network(65_000, 65_000, 1, optimizer=rustbp.Adam())  # 203 GB with Adam's moments
    with pytest.raises(ValueError, match="steps: expected a positive integer below 2\\*\\*63"):
        net.train(np.zeros((1, 1)), np.zeros((1, 1)), 2**70)
    # The network still works after every refusal.
    assert net.forward(np.zeros((2, 1))).shape == (2, 1)


# -- Ctrl-C, the GIL and threads ------------------------------------------------------------------------
# Behaviour, not speed: scripts/ctrl_c_latency.py measures how fast Ctrl-C is answered. Here a helper
# thread sends the signal only after it has run a number of times while training was in progress, so
# training ends only if the core released the GIL and answers the signal; the bound is the child's timeout.

INTERRUPT_CHILD = """
import os, signal, sys, threading, time
import numpy as np
import rustbp

method, size, device = sys.argv[1:]
rng = np.random.default_rng(0)
if size == "tiny":  # the article's 2-2-2 net: a step costs well under a microsecond
    X, T = np.array([[0.05, 0.10]] * 2), np.array([[0.01, 0.99]] * 2)
    make = lambda: rustbp.Network.article(device)
else:  # every step is a few milliseconds of gemm (tens of milliseconds on lavapipe)
    X, T = rng.normal(size=(128, 256)), rng.uniform(size=(128, 64))
    make = lambda: rustbp.Network(256, 512, 64, seed=1, optimizer=rustbp.SGD(lr=0.01), device=device)
half = len(X) // 2
net = make()
ran, training = [0], threading.Event()

def interrupt():
    training.wait()
    while ran[0] < 20:  # only possible while the training thread has released the GIL
        ran[0] += 1
        time.sleep(0.001)
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    training.set()
    if method == "train":
        net.train(X[:half], T[:half], 10**8)  # far more than fits in the time: only touched pages are used
    elif method == "fit":
        net.fit(X, T, epochs=10**7, batch_size=half, shuffle=False)
    else:  # epoch by epoch (a callback); 80 steps an epoch, so the core looks for signals within each
        net.fit(np.tile(X, (40, 1)), np.tile(T, (40, 1)), epochs=10**7, batch_size=half, shuffle=False,
                callbacks=[lambda epoch, logs: None])
    print("no interrupt")
    sys.exit(1)
except KeyboardInterrupt as e:
    steps = e.completed_steps
# The network holds exactly the weights of `steps` completed steps: replay them.
replay = make()
if method == "train":
    replay.train(X[:half], T[:half], steps)
elif method == "fit":  # two steps an epoch
    if steps >= 2:
        replay.fit(X, T, epochs=steps // 2, batch_size=half, shuffle=False)
    if steps % 2:
        replay.train_step(X[:half], T[:half])
else:
    for s in range(steps):
        replay.train_step(X[:half], T[:half]) if s % 2 == 0 else replay.train_step(X[half:], T[half:])
same = all(np.array_equal(v, net.get_weights()[k]) for k, v in replay.get_weights().items())
print(f"ran={ran[0]} steps={steps} same={same}")
"""


# Epoch by epoch only on the big network: the article's epochs of 80 steps would end before the core looks
# for a signal, which Python would then raise between two epochs. On the GPU, steps run in submissions
# sized by time; a replay in other submissions must give the same bits.
@pytest.mark.parametrize(
    ("method", "size", "device"),
    [
        *[(m, s, "cpu") for m, s in [("train", "tiny"), ("train", "big"), ("fit", "tiny"), ("fit", "big")]],
        ("fit-by-epoch", "big", "cpu"),
        *[(m, s, "gpu") for m, s in [("train", "tiny"), ("fit", "tiny"), ("train", "big")]],
    ],
)
def test_ctrl_c_stops_training_at_a_completed_step_while_other_threads_run(method, size, device):
    if device == "gpu":
        require(GPU)
    child = run_child(INTERRUPT_CHILD, method, size, device, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr
    fields = dict(f.split("=") for f in child.stdout.split())
    assert fields["ran"] == "20", "the other thread ran 20 times during training"
    assert int(fields["steps"]) >= 1
    assert fields["same"] == "True", f"the network does not hold the weights of {fields['steps']} steps"


def test_training_excludes_readers_cleanly(rng):
    """While one thread trains, others read: each read sees the weights of some completed step (or is
    refused with RuntimeError), never a mix of two steps."""
    X, T = rng.normal(size=(64, 32)), rng.uniform(size=(64, 4))
    make = lambda: rustbp.Network(32, 64, 4, seed=5, optimizer=rustbp.SGD(lr=0.05, momentum=0.9))  # noqa: E731
    net = make()
    reads, refused, unexpected = [], [], []
    done, read_ok = threading.Event(), threading.Event()

    def read():
        while not done.is_set():
            try:
                reads.append((net.get_weights(), net.forward(X[:2])))
                read_ok.set()
            except RuntimeError as e:
                refused.append(str(e))
            except BaseException as e:  # pragma: no cover - reported below
                unexpected.append(e)
            time.sleep(0)  # let the trainer have the GIL between two reads

    readers = [threading.Thread(target=read) for _ in range(3)]
    for r in readers:
        r.start()
    # The readers run all the time; after each step the trainer also waits for one of them to get a
    # read through, so that they see many states, not only those of the few moments between steps.
    steps, trainer_errors, missed = 150, [], 0
    for _ in range(steps):
        while True:
            try:
                net.train_step(X, T)
                break
            except RuntimeError as e:  # a reader held the lock at that instant
                trainer_errors.append(str(e))
        read_ok.clear()
        missed += not read_ok.wait(timeout=10)
    done.set()
    for r in readers:
        r.join()
    assert not unexpected
    assert missed == 0, "every state was read"
    # A read that began before a step can set read_ok after it, so not every state is certain to be seen.
    assert len({w["w1"].tobytes() for w, _ in reads}) >= steps // 2, "the readers saw most states"
    assert all("busy" in m for m in refused + trainer_errors)
    # Every state the network passed through, replayed on a twin that trains alone, with its outputs.
    twin = make()
    states = {}
    for step in range(steps + 1):
        w = twin.get_weights()
        states[w["w1"].tobytes()] = (w, twin.forward(X[:2]))
        if step < steps:
            twin.train_step(X, T)
    outputs = {o.tobytes() for _, o in states.values()}
    for w, out in reads:
        match = states.get(w["w1"].tobytes())
        assert match is not None, "a reader saw w1 of no completed step"
        for k in w:
            np.testing.assert_array_equal(w[k], match[0][k], err_msg=f"{k} from another step than w1")
        # The forward pass after the read ran on some completed state too, never a mix.
        assert out.tobytes() in outputs, "forward saw no completed step"
    assert_same_weights(net, twin)


class StopSignalError(Exception):
    """Raised by a signal handler in the main thread, where a long call polls for signals."""


def test_a_long_train_refuses_other_threads_with_a_clear_error(rng):
    X, T = rng.normal(size=(256, 64)), rng.uniform(size=(256, 8))
    net = rustbp.Network(64, 256, 8, seed=0)
    want = net.get_weights()
    results, training = [], threading.Event()

    def read():
        # Keeps reading until refused three times, then stops the training (or gives up after 30 s).
        training.wait()
        deadline = time.monotonic() + 30
        while sum(r != "ok" for r in results) < 3 and time.monotonic() < deadline:
            for call in (lambda: net.forward(X[:1]), net.get_weights):
                try:
                    call()
                    results.append("ok")
                except RuntimeError as e:
                    results.append(str(e))
            time.sleep(0.001)
        os.kill(os.getpid(), signal.SIGUSR1)

    def stop(signum, frame):
        raise StopSignalError

    previous = signal.signal(signal.SIGUSR1, stop)
    try:
        reader = threading.Thread(target=read)
        reader.start()
        training.set()
        with pytest.raises(StopSignalError) as info:
            net.train(X, T, 10**8)  # ended only by the reader's signal
        reader.join()
    finally:
        signal.signal(signal.SIGUSR1, previous)
    busy = [r for r in results if r != "ok"]
    assert len(busy) >= 3, "the reader was refused while the network trained"
    assert all("the network is busy: another thread is training it" in m for m in busy)
    # The readers changed nothing: the result is exactly the completed steps from the start.
    steps = info.value.completed_steps
    assert steps >= 1
    twin = rustbp.Network(64, 256, 8, seed=0)
    for k, v in twin.get_weights().items():
        np.testing.assert_array_equal(v, want[k])
    twin.train(X, T, steps)
    assert_same_weights(net, twin)


# -- determinism ------------------------------------------------------------------------------------

DETERMINISM_CHILD = """
import hashlib
import numpy as np
import rustbp

rng = np.random.default_rng(0)
X, T = rng.normal(size=(512, 256)), rng.uniform(size=(512, 64))
h = hashlib.sha256()
for dtype in ("float64", "float32"):
    net = rustbp.Network(256, 512, 64, seed=9, dtype=dtype, optimizer=rustbp.Adam(lr=1e-3))
    h.update(net.forward(X).tobytes())
    h.update(net.train(X, T, 3).tobytes())
    h.update(net.fit(X, T, epochs=1, batch_size=200, seed=4).tobytes())
    for v in net.get_weights().values():
        h.update(v.tobytes())
print(h.hexdigest())
"""


def test_training_is_bit_identical_whatever_the_thread_count():
    digests = []
    for threads in ("1", "2", "3"):
        child = run_child(DETERMINISM_CHILD, env={"RAYON_NUM_THREADS": threads})
        assert child.returncode == 0, child.stderr
        digests.append(child.stdout.strip())
    assert digests[0] == digests[1] == digests[2]


def test_forward_is_deterministic(rng):
    net = rustbp.Network(256, 512, 64, seed=2)
    X = rng.normal(size=(300, 256))
    first = net.forward(X)
    for _ in range(3):
        np.testing.assert_array_equal(net.forward(X), first)


def test_other_threads_run_while_a_large_input_is_copied():
    # The core's loss on a 64 MiB X whose T has the wrong number of rows: X is copied, then refused, so
    # the call is all conversion. Copied with the GIL held from start to end, it would stop the counting
    # thread for the whole copy; copied a block at a time, the thread gets turns in between.
    net = rustbp.Network(1024, 2, 1, seed=0)
    X = np.ones((8192, 1024))
    T = np.ones((3, 1))
    ticks: list[float] = []
    stop = threading.Event()

    def count() -> None:
        while not stop.is_set():
            ticks.append(time.perf_counter())

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-4)
    counter = threading.Thread(target=count)
    counter.start()
    try:
        while len(ticks) < 1000:  # the counter is running and asking for the GIL
            time.sleep(0.001)
        start = time.perf_counter()
        with pytest.raises(ValueError, match="T: expected shape 8192 rows, like X"):
            net._core.loss(X, T)
        end = time.perf_counter()
    finally:
        stop.set()
        counter.join()
        sys.setswitchinterval(old)
    assert any(start < t < end for t in ticks), "the counting thread never ran during the copy"


VALIDATION_CHILD = """
import os, signal, sys, threading, time
import numpy as np, rustbp
rng = np.random.default_rng(0)
# One step an epoch on 8 rows, then a validation set of 2**30+ multiply-adds: nearly all the time of each
# epoch goes to validation, which the core runs in row blocks, looking for a signal between them.
X, T = rng.normal(size=(8, 256)), rng.uniform(size=(8, 2))
X_val, T_val = rng.normal(size=(16384, 256)), rng.uniform(size=(16384, 2))
net = rustbp.Network(256, 256, 2, seed=1, optimizer=rustbp.Adam(lr=1e-3))
fitting = threading.Event()
sent = []

def interrupt():
    fitting.wait()
    time.sleep(0.5)
    sent.append(time.perf_counter())
    os.kill(os.getpid(), signal.SIGINT)

threading.Thread(target=interrupt, daemon=True).start()
try:
    fitting.set()
    net.fit(X, T, epochs=10**6, batch_size=8, validation_data=(X_val, T_val))
    print("no interrupt")
    sys.exit(1)
except KeyboardInterrupt as e:
    late = time.perf_counter() - sent[0]
    steps = e.completed_steps
updates = net._core.get_optimizer_state()[1]
print(f"steps={steps} updates={updates} late_ms={late * 1000:.0f}")
"""


def test_ctrl_c_during_validation_says_how_many_steps_the_network_holds():
    child = run_child(VALIDATION_CHILD, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr
    fields = dict(f.split("=") for f in child.stdout.split())
    assert int(fields["steps"]) >= 1
    assert fields["steps"] == fields["updates"], "completed_steps is the number of steps the network took"


def test_a_large_forward_and_loss_in_blocks_agree_with_small_calls(rng):
    # Above 2**30 multiply-adds the core works in row blocks (to answer Ctrl-C): the results are those of
    # the rows computed apart, to rounding.
    net = rustbp.Network(256, 256, 2, seed=1, output_activation="softmax", loss="cross_entropy")
    X = rng.normal(size=(16384, 256))
    T = np.eye(2)[rng.integers(0, 2, 16384)]
    out = net.forward(X)
    np.testing.assert_allclose(out[:5000], net.forward(X[:5000]), rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(out[5000:], net.forward(X[5000:]), rtol=1e-12, atol=1e-15)
    halves = (net.loss(X[:8192], T[:8192]) + net.loss(X[8192:], T[8192:])) / 2
    assert net.loss(X, T) == pytest.approx(halves, rel=1e-12)
