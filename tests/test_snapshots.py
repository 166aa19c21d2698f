"""Copies, pickles and files taken while another thread trains are consistent snapshots: the weights and
the optimizer state of one completed step, never weights of one step with the state of a later one."""

from __future__ import annotations

import pickle
import sys
import threading

import numpy as np
import rustbp

CHUNK = 1
CHUNKS = 3000


def test_copies_taken_while_training_are_one_step_each():
    rng = np.random.default_rng(3)
    X, T = rng.normal(size=(16, 6)), rng.uniform(size=(16, 3))
    make = lambda: rustbp.Network(6, 8, 3, seed=4, optimizer=rustbp.Adam(lr=1e-2))  # noqa: E731
    # The reference: the weights after every chunk of steps.
    ref, by_updates = make(), {0: make().get_weights()}
    for k in range(1, CHUNKS + 1):
        ref.train(X, T, CHUNK)
        by_updates[k * CHUNK] = ref.get_weights()

    net = make()
    # Switch threads as often as possible, so that the trainer runs between any two steps of a copy.
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)

    def train() -> None:
        done = 0
        while done < CHUNKS:
            try:
                net.train(X, T, CHUNK)
                done += 1
            except RuntimeError as e:  # busy: a copy holds the network for reading
                assert "busy" in str(e)

    trainer = threading.Thread(target=train)
    copies = []
    trainer.start()
    while trainer.is_alive() or len(copies) < 3:
        for take in (lambda: net.to("cpu"), lambda: pickle.loads(pickle.dumps(net))):
            try:
                copies.append(take())
            except RuntimeError as e:  # busy: the trainer holds the network for a call
                assert "busy" in str(e)
    trainer.join()
    sys.setswitchinterval(interval)
    assert len(copies) >= 3
    for copy in copies[:: max(1, len(copies) // 20)]:
        got = copy.get_weights()
        steps = [k for k, w in by_updates.items() if all(np.array_equal(got[n], w[n]) for n in w)]
        assert len(steps) == 1, "the copy's weights are those of no completed step"
        # Its optimizer state is that step's too: it resumes exactly as the network did from there.
        resumed = make()
        if steps[0]:
            resumed.train(X, T, steps[0])
        assert np.array_equal(copy.train(X, T, 3), resumed.train(X, T, 3))
