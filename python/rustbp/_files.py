"""Files and pickles of a ``Network``: the safetensors bytes made by the Rust core (``src/io.rs``),
written atomically. Never pickle inside: loading a rustbp file runs no code."""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import stat
import threading
from collections.abc import Iterator
from typing import Any, Union

from . import _rustbp

__all__ = ["read", "write_atomic"]

# os.path rather than pathlib, and os.urandom rather than secrets: `import rustbp` stays cheap.
PathLike = Union[str, "os.PathLike[str]"]


def write_atomic(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that a crash leaves either the old file or the new one, never a
    part: a temporary file in the same directory, flushed to disk, then renamed over ``path``. A symbolic
    link is written through to its target and stays a link; an existing file keeps its permissions.
    Ctrl-C during the write takes effect once the write is complete or undone, never half way."""
    target = os.path.realpath(os.fspath(path))
    folder, name = os.path.split(target)
    # Checked first: opening the temporary file would fail naming that hidden file, not the folder.
    if not os.path.exists(folder):
        raise FileNotFoundError(errno.ENOENT, f"No such folder to write {name} into", folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, f"Not a folder, cannot write {name} into it", folder)
    try:
        mode: int | None = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        mode = None
    # A short name, not derived from `name`: a legal name of up to 255 characters must still work.
    tmp = os.path.join(folder, f".rustbp-{os.urandom(6).hex()}.tmp")
    with _interrupts_deferred():
        fd = -1
        try:
            # os.open with 0o666 lets the umask set the permissions of a new file, as for any new file.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
            if mode is not None and hasattr(os, "fchmod"):
                os.fchmod(fd, mode)
            with os.fdopen(fd, "wb") as f:
                fd = -1  # the file object owns it now
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        except BaseException:
            if fd >= 0:
                os.close(fd)
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX; Windows cannot open folders)
            dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


@contextlib.contextmanager
def _interrupts_deferred() -> Iterator[None]:
    """Holds SIGINT back until the block is done (on the main thread, the only one Python signals reach),
    then delivers it, so that Ctrl-C cannot land between creating a file and cleaning it up."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if received and callable(previous):
            previous(*received[0])


def read(path: PathLike) -> _rustbp.Core:
    """The core saved at ``path``; ValueError naming the file if it is not a valid rustbp file, OSError
    (naming it too) if it cannot be read."""
    # An integer is a descriptor to open() and would be read and closed under its owner.
    if isinstance(path, (int, bool)) or not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected a str or os.PathLike naming a file, got {type(path).__name__} {path!r}")
    name = os.fspath(path)
    # Non-blocking: opening a FIFO would otherwise wait for a writer forever. Only regular files are read.
    fd = os.open(name, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    try:
        mode = os.fstat(fd).st_mode
    except BaseException:
        os.close(fd)
        raise
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise IsADirectoryError(errno.EISDIR, "Is a folder, not a file saved by Network.save", name)
        raise ValueError(f"{name}: not a regular file but {_kind(mode)}; load reads files written by save")
    with open(fd, "rb") as f:
        data = f.read()
    try:
        return _rustbp.core_from_safetensors(data)
    except ValueError as e:
        raise ValueError(f"{name}: {e}") from None


def _kind(mode: int) -> str:
    for test, kind in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
                       (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket")):  # fmt: skip
        if test(mode):
            return kind
    return f"a special file (mode {mode:o})"
