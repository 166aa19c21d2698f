"""Wrong arguments anywhere in the public API get an exception that names the argument, says what was
expected and what was given: never an IndexError, ZeroDivisionError or OverflowError from inside. Files
that are not files (folders, FIFOs, descriptors, link loops) are refused naming the path, without a hang.
Subclasses of ``Network`` stay themselves through pickling and ``to()``."""

from __future__ import annotations

import errno
import os
import pickle
import threading

import numpy as np
import pytest
import rustbp
from rustbp.sklearn import NetworkClassifier


def net(**kw):
    return rustbp.Network(3, 4, 2, seed=0, **kw)


X = np.linspace(-1, 1, 12).reshape(4, 3)
Y = np.eye(2)[[0, 1, 1, 0]]


def mutated(obj, **changes):
    """``obj`` changed behind its frozen dataclass's back, as ``object.__setattr__`` allows."""
    for k, v in changes.items():
        object.__setattr__(obj, k, v)
    return obj


def fit_config(**changes):
    return net().fit(X, Y, config=mutated(rustbp.TrainingConfig(epochs=2), **changes))


def pickled_state(**changes):
    state = net(optimizer=rustbp.Adam()).__getstate__()
    state.update(changes)
    return state


def unpickle(state):
    """What ``pickle.loads`` does with a Network's state."""
    rustbp.Network.__new__(rustbp.Network).__setstate__(state)


def partial_fit_twice(first, second):
    clf = NetworkClassifier(n_hidden=3, random_state=0)
    clf.partial_fit(X, [0, 1, 1, 0], classes=first)
    clf.partial_fit(X, [0, 1, 1, 0], classes=second)


def set_optimizer(optimizer):
    net().optimizer = optimizer


CASES = {
    "callbacks=function": (lambda: net().fit(X, Y, 1, callbacks=print), TypeError,
                           r"callbacks: expected a sequence of callables.*got the single callable .*print"),
    "callbacks=int": (lambda: net().fit(X, Y, 1, callbacks=3), TypeError, "callbacks: .*got int 3"),
    "callbacks=[None]": (lambda: net().fit(X, Y, 1, callbacks=[None]), TypeError,
                         "callbacks: .*got NoneType None among them"),
    "callbacks='abc'": (lambda: net().fit(X, Y, 1, callbacks="abc"), TypeError, "callbacks: .*got str 'abc'"),
    "partial_fit classes=[]": (lambda: NetworkClassifier().partial_fit(X, [0, 1, 1, 0], classes=[]), ValueError,
                               r"classes: a classifier needs at least 2 classes, got 0 classes \[\]"),
    "partial_fit classes=[1]": (lambda: NetworkClassifier().partial_fit(X, [1, 1, 1, 1], classes=[1]), ValueError,
                                r"classes: a classifier needs at least 2 classes, got 1 class \[1\]"),
    "partial_fit classes changed": (lambda: partial_fit_twice([0, 1], [0, 1, 2]), ValueError,
                                    r"classes: expected the classes of the first partial_fit, \[0, 1\], "
                                    r"got \[0, 1, 2\]"),
    "config batch_size=0": (lambda: fit_config(batch_size=0), ValueError,
                            "batch_size: expected a positive integer.*, got 0"),
    "config epochs=-1": (lambda: fit_config(epochs=-1), ValueError, "epochs: expected a positive integer.*, got -1"),
    "config validation_split=2": (lambda: fit_config(validation_split=2.0), ValueError,
                                  r"validation_split: expected a number in \[0, 1\), got 2.0"),
    "config patience=0": (lambda: fit_config(patience=0), ValueError, "patience: expected a positive integer"),
    "config seed=-1": (lambda: fit_config(seed=-1), ValueError, "seed: "),
    "NetworkConfig n_hidden=0": (lambda: rustbp.Network.from_config(mutated(net().config, n_hidden=0)),
                                 ValueError, "n_hidden: expected a positive integer.*, got 0"),
    "NetworkConfig loss": (lambda: rustbp.Network.from_config(mutated(net().config, loss="l1")), ValueError,
                           "loss: expected one of .*got 'l1'"),
    "SGD lr=-1": (lambda: net(optimizer=mutated(rustbp.SGD(lr=0.1), lr=-1.0)), ValueError, "lr: expected .*got -1.0"),
    "SGD momentum=5": (lambda: set_optimizer(mutated(rustbp.SGD(lr=0.1), momentum=5.0)), ValueError,
                       "momentum: expected .*got 5.0"),
    "Adam betas": (lambda: set_optimizer(mutated(rustbp.Adam(), betas=(1.5, 0.9))), ValueError, "betas"),
    "pickle updates=-1": (lambda: unpickle(pickled_state(optimizer_state=([], -1))), ValueError,
                          "optimizer_state: expected a non-negative update count, got -1"),
    "pickle updates=2**64-1": (
        lambda: unpickle(pickled_state(optimizer_state=(pickled_state()["optimizer_state"][0], 2**64 - 1))),
        ValueError, r"optimizer_state: expected an update count <= 2\*\*53"),
    "pickle updates='3'": (lambda: unpickle(pickled_state(optimizer_state=([], "3"))), ValueError,
                           "optimizer_state: expected a non-negative update count, got '3'"),
    "pickle device": (lambda: unpickle(pickled_state(device="tpu")), ValueError,
                      "pickled Network state device: expected one of cpu, gpu, got 'tpu'"),
    "pickle seed": (lambda: unpickle(pickled_state(seed=-5)), ValueError, "seed: .*got -5"),
    "pickle bytes": (lambda: unpickle(pickled_state(safetensors="abc")), TypeError,
                     "safetensors: expected bytes, got str"),
    "pickle missing": (lambda: unpickle({"device": "cpu"}), ValueError, "missing safetensors, seed, optimizer_state"),
    "pickle not a dict": (lambda: unpickle([1, 2]), TypeError, "expected a dict, got list"),
    "pickle attributes": (lambda: unpickle(pickled_state(attributes={"_core": 1})), TypeError, "attributes: "),
}  # fmt: skip


@pytest.mark.parametrize("case", CASES, ids=list(CASES))
def test_a_wrong_argument_is_named_with_what_was_expected_and_given(case):
    call, kind, pattern = CASES[case]
    with pytest.raises(kind, match=pattern):
        call()


def test_callbacks_none_means_no_callbacks():
    history = net().fit(X, Y, 2, callbacks=None)
    assert len(history) == 2


def test_partial_fit_with_the_same_classes_again_trains_on():
    clf = NetworkClassifier(n_hidden=3, random_state=0)
    clf.partial_fit(X, [0, 1, 1, 0], classes=[1, 0])
    clf.partial_fit(X, [0, 1, 1, 0], classes=[0, 1])  # the same set, in another order
    assert clf.classes_.tolist() == [0, 1] and clf.n_iter_ == 2


class Tagged(rustbp.Network):
    """A user's subclass with an attribute of its own."""

    def __init__(self, *args, tag: str, **kw):
        super().__init__(*args, **kw)
        self.tag = tag

    def describe(self) -> str:
        return f"{self.tag}: {self.n_in}-{self.n_hidden}-{self.n_out}"


def test_a_subclass_stays_itself_through_pickling_copies_and_to():
    tagged = Tagged(3, 4, 2, seed=1, tag="mine", optimizer=rustbp.Adam())
    tagged.train(X, Y, 3)
    want = tagged.to("cpu").train(X, Y, 2)
    for copy in (pickle.loads(pickle.dumps(tagged)), tagged.to("cpu"), tagged.to("cpu", "float32")):
        assert type(copy) is Tagged
        assert copy.describe() == "mine: 3-4-2"
    again = pickle.loads(pickle.dumps(tagged))
    np.testing.assert_array_equal(again.train(X, Y, 2), want)  # and the network itself is whole
    plain = pickle.loads(pickle.dumps(net()))
    assert type(plain) is rustbp.Network and "tag" not in vars(plain)


def test_from_torch_refuses_a_meta_device_module():
    torch = pytest.importorskip("torch")
    with torch.device("meta"):
        module = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.Sigmoid(), torch.nn.Linear(4, 2),
                                     torch.nn.Sigmoid())  # fmt: skip
    with pytest.raises(ValueError, match="module: expected parameters with values, got parameters on the meta"):
        rustbp.Network.from_torch(module)


# -- loading what is not a file -----------------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    path = tmp_path / "good.safetensors"
    net().save(path)
    return path


def test_load_refuses_a_folder_naming_it(tmp_path):
    with pytest.raises(IsADirectoryError, match="Is a folder") as info:
        rustbp.Network.load(tmp_path)
    assert info.value.filename == str(tmp_path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
def test_load_refuses_a_fifo_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "pipe.safetensors"
    os.mkfifo(fifo)

    def unblock():  # should the load wait for a writer, it is given one, and the test fails, not hangs
        fd = os.open(fifo, os.O_WRONLY)
        os.close(fd)

    rescue = threading.Timer(10.0, unblock)
    rescue.start()
    try:
        with pytest.raises(ValueError, match=rf"{fifo}: not a regular file but a FIFO \(named pipe\)"):
            rustbp.Network.load(fifo)
    finally:
        rescue.cancel()
        if rescue.is_alive():
            rescue.join()


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc/self/fd")
def test_load_refuses_a_pipe_named_by_path_as_dev_stdin_is():
    r, w = os.pipe()
    try:
        with pytest.raises(ValueError, match=rf"/proc/self/fd/{r}: not a regular file but a FIFO"):
            rustbp.Network.load(f"/proc/self/fd/{r}")
    finally:
        os.close(r)
        os.close(w)


def test_load_refuses_a_descriptor_and_leaves_it_open(saved):
    fd = os.open(saved, os.O_RDONLY)
    try:
        with pytest.raises(TypeError, match=rf"path: expected a str or os.PathLike naming a file, got int {fd}"):
            rustbp.Network.load(fd)
        os.fstat(fd)  # still the caller's
    finally:
        os.close(fd)


@pytest.mark.skipif(not hasattr(os, "symlink"), reason="needs symbolic links")
def test_load_refuses_a_symlink_loop_naming_it(tmp_path):
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    os.symlink(b, a)
    os.symlink(a, b)
    with pytest.raises(OSError) as info:
        rustbp.Network.load(a)
    assert info.value.errno == errno.ELOOP and info.value.filename == str(a)


@pytest.mark.parametrize("size", [0, 7, 100])
def test_load_refuses_an_empty_or_truncated_file_naming_it(saved, size):
    cut = saved.with_name(f"cut{size}.safetensors")
    cut.write_bytes(saved.read_bytes()[:size])
    with pytest.raises(ValueError, match=rf"^{cut}: invalid rustbp file: not a readable safetensors file"):
        rustbp.Network.load(cut)


def test_load_through_a_symlink_to_a_file_works(saved, tmp_path):
    link = tmp_path / "link.safetensors"
    os.symlink(saved, link)
    np.testing.assert_array_equal(rustbp.Network.load(link).forward(X), net().forward(X))
