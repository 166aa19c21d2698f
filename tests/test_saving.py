"""How save treats what is already on disk: permissions, symbolic links, long names, and Ctrl-C landing
at any moment of a save."""

from __future__ import annotations

import os
import signal
import stat
import sys
import threading
import time

import numpy as np
import pytest
import rustbp

posix_only = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permissions, links and signals")


def nets():
    return rustbp.Network(3, 5, 2, seed=1), rustbp.Network(3, 5, 2, seed=2)


def same(a: rustbp.Network, b: rustbp.Network) -> bool:
    wa, wb = a.get_weights(), b.get_weights()
    return all(np.array_equal(wa[k], wb[k]) for k in wa)


@posix_only
def test_resaving_keeps_the_files_permissions(tmp_path):
    first, second = nets()
    path = tmp_path / "net.safetensors"
    first.save(path)
    os.chmod(path, 0o600)
    second.save(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert same(rustbp.Network.load(path), second)


@posix_only
def test_saving_through_a_symbolic_link_writes_its_target(tmp_path):
    first, second = nets()
    target, link = tmp_path / "real.safetensors", tmp_path / "link.safetensors"
    first.save(target)
    link.symlink_to(target)
    second.save(link)
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert same(rustbp.Network.load(target), second)


def test_a_name_of_255_characters_saves(tmp_path):
    net, _ = nets()
    path = tmp_path / ("n" * (255 - len(".safetensors")) + ".safetensors")
    net.save(path)
    assert same(rustbp.Network.load(path), net)


@posix_only
def test_ctrl_c_at_any_moment_of_a_save_leaves_a_whole_file_and_nothing_else(tmp_path):
    first, second = nets()
    path = tmp_path / "net.safetensors"
    first.save(path)
    fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    # Plain values, no locks: a KeyboardInterrupt can land just after the main thread takes a lock (an
    # Event's, a join's) and before it is let go, and the other thread then waits for it forever.
    state = {"saving": 0, "stop": False}  # saving: the number of the save under way, 0 between saves

    def interrupter() -> None:
        # At most one signal per save, sent while it runs (or just after, inside the test's try).
        rng = np.random.default_rng(0)
        signalled = 0
        while not state["stop"]:
            save = state["saving"]
            if save and save != signalled:
                time.sleep(rng.uniform(0, 1e-3))
                if state["saving"] == save:
                    signalled = save
                    os.kill(os.getpid(), signal.SIGINT)
            else:
                time.sleep(2e-4)

    thread = threading.Thread(target=interrupter)
    thread.start()
    interrupted = saves = 0
    deadline = time.monotonic() + 3
    try:
        while True:
            try:
                if time.monotonic() >= deadline:
                    break
                state["saving"] = saves + 1
                try:
                    (first if saves % 2 else second).save(path)
                finally:
                    state["saving"] = 0
                saves += 1
                time.sleep(0.005)  # a signal sent as the save ended arrives here
            except KeyboardInterrupt:
                interrupted += 1
                saves += 1
    finally:
        state["stop"] = True
        while thread.is_alive():
            try:
                thread.join(0.05)
            except KeyboardInterrupt:  # a signal sent late, on a loaded machine
                interrupted += 1
    assert interrupted > 0
    assert [p.name for p in tmp_path.iterdir()] == ["net.safetensors"], "a temporary file was left behind"
    loaded = rustbp.Network.load(path)
    assert same(loaded, first) or same(loaded, second)
    if fds is not None:
        assert len(os.listdir("/proc/self/fd")) == fds, "a file descriptor leaked"
