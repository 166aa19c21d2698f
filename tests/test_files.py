"""Files and pickles: save/load and pickle round-trip bit-exactly (training resumes exactly), saves are
atomic, damaged files are refused with a clear error, and an independent safetensors reader sees
PyTorch's state-dict names."""

from __future__ import annotations

import base64
import copy
import dataclasses
import json
import multiprocessing
import os
import pickle
import struct

import numpy as np
import pytest
import rustbp
from safetensors.numpy import load as st_load
from safetensors.numpy import save as st_save

NETS = {
    "adam": {"optimizer": rustbp.Adam(lr=0.01)},
    "nesterov": {"optimizer": rustbp.SGD(lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3)},
    "sgd-shared": {"bias": "shared", "hidden_activation": "tanh"},
    "float32-softmax": {
        "dtype": "float32",
        "output_activation": "softmax",
        "loss": "cross_entropy",
        "optimizer": rustbp.Adam(lr=0.02, betas=(0.8, 0.95), weight_decay=0.01),
    },
    "no-bias-frozen": {"bias": "none", "train_bias": False, "optimizer": rustbp.SGD(lr=0.3, momentum=0.5)},
}


def make(**kw):
    return rustbp.Network(5, 7, 3, seed=3, **kw)


def data(rng, n=40):
    X = rng.normal(size=(n, 5))
    return X, np.eye(3)[rng.integers(0, 3, n)]


def assert_same(a, b):
    wa, wb = a.get_weights(), b.get_weights()
    assert wa.keys() == wb.keys()
    for k in wa:
        assert wa[k].dtype == wb[k].dtype
        np.testing.assert_array_equal(wa[k], wb[k], err_msg=k)
    sa, ua = a._core.get_optimizer_state()
    sb, ub = b._core.get_optimizer_state()
    assert ua == ub
    for x, y in zip(sa, sb):
        assert len(x) == len(y)
        for p, q in zip(x, y):
            np.testing.assert_array_equal(p, q)


@pytest.mark.parametrize("kw", NETS.values(), ids=NETS.keys())
def test_save_load_resumes_training_bit_for_bit(tmp_path, rng, kw):
    X, Y = data(rng)
    uninterrupted, interrupted = make(**kw), make(**kw)
    for net in (uninterrupted, interrupted):
        net.fit(X, Y, epochs=3, batch_size=8, seed=1)
        net.train(X[:4], Y[:4], 5)
    interrupted.save(tmp_path / "net.safetensors")
    resumed = rustbp.Network.load(tmp_path / "net.safetensors")
    assert_same(resumed, uninterrupted)
    assert resumed.config == dataclasses.replace(uninterrupted.config, seed=None)
    assert repr(resumed) == repr(uninterrupted)
    a = uninterrupted.fit(X, Y, epochs=2, batch_size=8, seed=2)
    b = resumed.fit(X, Y, epochs=2, batch_size=8, seed=2)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(uninterrupted.train(X, Y, 7), resumed.train(X, Y, 7))
    assert_same(resumed, uninterrupted)


def test_save_without_optimizer_state_restarts_the_optimizer(tmp_path, rng):
    X, Y = data(rng)
    net = make(optimizer=rustbp.Adam(lr=0.01))
    net.train(X, Y, 5)
    net.save(tmp_path / "w.safetensors", optimizer=False)
    loaded = rustbp.Network.load(tmp_path / "w.safetensors")
    fresh = make(optimizer=rustbp.Adam(lr=0.01))
    fresh.set_weights(net.get_weights())
    np.testing.assert_array_equal(loaded.train(X, Y, 3), fresh.train(X, Y, 3))


def test_article_network_round_trips_with_shared_frozen_biases(tmp_path):
    net = rustbp.Network.article()
    net.save(tmp_path / "a.safetensors")
    tensors = st_load((tmp_path / "a.safetensors").read_bytes())
    # PyTorch has no shared bias: the file repeats it per neuron.
    np.testing.assert_array_equal(tensors["0.bias"], [0.35, 0.35])
    np.testing.assert_array_equal(tensors["2.weight"], [[0.40, 0.45], [0.50, 0.55]])
    loaded = rustbp.Network.load(tmp_path / "a.safetensors")
    assert loaded.get_weights()["b1"].shape == (1,)
    assert loaded.explain_step([0.05, 0.1], [0.01, 0.99])["E_total"] == 0.2983711087600027


def test_file_layout_is_pytorchs_state_dict(tmp_path):
    net = make(optimizer=rustbp.Adam())
    net.save(tmp_path / "n.safetensors")
    raw = (tmp_path / "n.safetensors").read_bytes()
    tensors = st_load(raw)
    assert sorted(tensors) == ["0.bias", "0.weight", "2.bias", "2.weight"]
    w = net.get_weights()
    for name, key in (("0.weight", "w1"), ("0.bias", "b1"), ("2.weight", "w2"), ("2.bias", "b2")):
        np.testing.assert_array_equal(tensors[name], w[key])
    meta = header(raw)["__metadata__"]
    assert meta["format"] == "rustbp" and meta["format_version"] == "1"
    assert meta["hidden_activation"] == "sigmoid" and meta["optimizer"] == "adam" and meta["lr"] == "0.001"
    assert "optimizer.0.weight.exp_avg" in meta and meta["checksum"].startswith("fnv1a64:")


def test_save_is_atomic(tmp_path, rng, monkeypatch):
    path = tmp_path / "net.safetensors"
    old = make()
    old.save(path)
    before = path.read_bytes()
    trained = make()
    trained.train(*data(rng), 3)

    def crash(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        trained.save(path)
    monkeypatch.undo()
    assert path.read_bytes() == before, "a failed save leaves the old file whole"
    assert os.listdir(tmp_path) == ["net.safetensors"], "and no temporary file behind"
    trained.save(str(path))  # str paths too; replaces the old file
    assert_same(rustbp.Network.load(path), trained)
    assert os.listdir(tmp_path) == ["net.safetensors"]


def header(raw):
    (n,) = struct.unpack("<Q", raw[:8])
    return json.loads(raw[8 : 8 + n])


def fnv1a64(meta, tensors):
    """The checksum src/io.rs writes, recomputed so tests can forge files that pass it."""
    h = 0xCBF29CE484222325
    parts = [p for k in sorted(meta) for p in (k.encode(), b"\0", meta[k].encode(), b"\0")]
    parts += [p for k in sorted(tensors) for p in (k.encode(), b"\0", tensors[k].tobytes())]
    for b in b"".join(parts):
        h = ((h ^ b) * 0x100000001B3) % 2**64
    return f"fnv1a64:{h:016x}"


def forge(raw, tensors=None, **meta_changes):
    """A copy of the file `raw` with tensors and metadata changed and a valid checksum."""
    meta = {**header(raw)["__metadata__"], **meta_changes}
    meta = {k: v for k, v in meta.items() if v is not None and k != "checksum"}
    tensors = st_load(raw) if tensors is None else tensors
    meta["checksum"] = fnv1a64(meta, tensors)
    return st_save(tensors, metadata=meta)


@pytest.fixture
def saved(tmp_path):
    net = make(optimizer=rustbp.Adam())
    net.save(tmp_path / "good.safetensors")
    return (tmp_path / "good.safetensors").read_bytes()


def test_forged_file_of_the_tests_loads(tmp_path, saved):
    # The forging helper is right, so the failures below are for the reasons they name.
    (tmp_path / "f.safetensors").write_bytes(forge(saved))
    assert_same(rustbp.Network.load(tmp_path / "f.safetensors"), rustbp.Network.load(tmp_path / "good.safetensors"))


def damaged(saved):
    t = st_load(saved)
    flipped = bytearray(saved)
    flipped[-5] ^= 0x10
    yield "truncated", saved[:-7], "not a readable safetensors file"
    yield "header only", saved[:100], "not a readable safetensors file"
    yield "empty", b"", "not a readable safetensors file"
    yield "not safetensors", b"PK\x03\x04 a zip file" * 10, "not a readable safetensors file"
    yield "bit flip", bytes(flipped), "checksum mismatch: the file is corrupted"
    yield "version", forge(saved, format_version="2"), "format version 2 is not supported"
    yield "not rustbp", st_save(t), "not one written by rustbp"
    yield (
        "wrong shape",
        forge(saved, {**t, "0.weight": t["0.weight"][:, :4].copy()}),
        r"0.weight: expected shape \[7, 5\]",
    )
    yield (
        "wrong dtype",
        forge(saved, {**t, "2.bias": t["2.bias"].astype(np.float32)}),
        "2.bias: expected dtype F64",
    )
    yield "missing", forge(saved, {k: v for k, v in t.items() if k != "2.weight"}), "missing tensor 2.weight"
    yield "extra", forge(saved, {**t, "4.weight": t["2.weight"]}), 'unexpected tensor "4.weight"'
    yield "nan", forge(saved, {**t, "0.bias": np.full(7, np.nan)}), "b1: expected finite values"
    yield (
        "config",
        forge(saved, hidden_activation="swish"),
        "metadata field hidden_activation: expected sigmoid, tanh",
    )
    yield (
        "no state",
        forge(saved, **{"optimizer.2.bias.exp_avg": None}),
        'missing metadata field "optimizer.2.bias.exp_avg"',
    )
    yield (
        "state size",
        forge(saved, **{"optimizer.2.bias.exp_avg": "AAAAAAAAAAA="}),
        "expected 3 values, got 8 bytes",
    )
    yield "base64", forge(saved, **{"optimizer.2.bias.exp_avg": "not base64!"}), "invalid base64"
    yield "softmax", forge(saved, output_activation="softmax"), "cross_entropy"
    yield "shared", forge(saved, bias="shared"), "0.bias: a shared bias must hold one value repeated"
    yield "no bias", forge(saved, bias="none"), "tensor 0.bias present, but the network has bias=none"
    # Optimizer state that passes the checksum but that no training can have made.
    yield "updates 2**64-1", forge(saved, **{"optimizer.updates": str(2**64 - 1)}), r"update count <= 2\*\*53"
    yield "updates < 0", forge(saved, **{"optimizer.updates": "-1"}), "optimizer.updates: expected a non-negative"
    negative = base64.b64encode(np.array([0.5, -1e-3, 0.0]).tobytes()).decode()
    yield "v < 0", forge(saved, **{"optimizer.2.bias.exp_avg_sq": negative}), r"exp_avg_sq >= 0 .*got -0\.001"
    inf = base64.b64encode(np.array([0.5, np.inf, 0.0]).tobytes()).decode()
    yield "m inf", forge(saved, **{"optimizer.2.bias.exp_avg": inf}), "expected finite values"
    yield (
        "frozen state",
        forge(saved, train_bias="false"),
        'unexpected metadata field "optimizer.0.bias.exp_avg": this network has no such optimizer state',
    )
    yield (
        "foreign state",
        forge(saved, **{"optimizer.0.weight.momentum_buffer": "AAAAAAAAAAA="}),
        'unexpected metadata field "optimizer.0.weight.momentum_buffer"',
    )
    yield (
        "state unsaved",
        forge(saved, **{"optimizer.saved": "false"}),
        'unexpected metadata field "optimizer.0.bias.exp_avg"',
    )


N_DAMAGED = 26


@pytest.mark.parametrize("case", range(N_DAMAGED))
def test_load_refuses_damaged_files_clearly(tmp_path, saved, case):
    cases = list(damaged(saved))
    assert len(cases) == N_DAMAGED, "every case is run"
    name, raw, pattern = cases[case]
    path = tmp_path / f"{name}.safetensors"
    path.write_bytes(raw)
    with pytest.raises(ValueError, match=pattern) as info:
        rustbp.Network.load(path)
    assert str(info.value).startswith(f"{path}: invalid rustbp file: ")


def test_load_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.safetensors"):
        rustbp.Network.load(tmp_path / "nope.safetensors")


@pytest.mark.parametrize("kw", NETS.values(), ids=NETS.keys())
def test_pickle_and_deepcopy_are_exact(rng, kw):
    X, Y = data(rng)
    net = make(**kw)
    net.fit(X, Y, epochs=2, seed=4)
    for duplicate in (lambda n: pickle.loads(pickle.dumps(n)), copy.deepcopy):
        twin = duplicate(net)
        assert_same(twin, net)
        assert twin.config == net.config
        np.testing.assert_array_equal(twin.train(X, Y, 3), net.train(X, Y, 3))
    twin = copy.deepcopy(net)
    twin.train(X, Y, 1)
    assert not np.array_equal(twin.get_weights()["w1"], net.get_weights()["w1"]), "copies are independent"


def _forward_in_child(net, X):
    return net.forward(X)


def test_networks_cross_process_boundaries(rng):
    net = make()
    X = rng.normal(size=(4, 5))
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        out = pool.apply(_forward_in_child, (net, X))
    np.testing.assert_array_equal(out, net.forward(X))
    joblib = pytest.importorskip("joblib")
    (out,) = joblib.Parallel(n_jobs=1)(joblib.delayed(_forward_in_child)(net, X) for _ in range(1))
    np.testing.assert_array_equal(out, net.forward(X))
