"""Files and pickles of a ``Network``: the safetensors bytes made by the Rust core (``src/io.rs``),
written atomically. Never pickle inside: loading a rustbp file runs no code."""

from __future__ import annotations

import errno
import os
from typing import Union

from . import _rustbp

__all__ = ["read", "write_atomic"]

# os.path rather than pathlib, and os.urandom rather than secrets: `import rustbp` stays cheap.
PathLike = Union[str, "os.PathLike[str]"]


def write_atomic(path: PathLike, data: bytes) -> None:
    """Writes ``data`` to ``path`` so that a crash leaves either the old file or the new one, never a
    part: a temporary file in the same directory, flushed to disk, then renamed over ``path``."""
    target = os.path.abspath(os.fspath(path))
    folder, name = os.path.split(target)
    # Checked first: opening the temporary file would fail naming that hidden file, not the folder.
    if not os.path.exists(folder):
        raise FileNotFoundError(errno.ENOENT, f"No such folder to write {name} into", folder)
    if not os.path.isdir(folder):
        raise NotADirectoryError(errno.ENOTDIR, f"Not a folder, cannot write {name} into it", folder)
    tmp = os.path.join(folder, f".{name}.{os.urandom(6).hex()}.tmp")
    # os.open with 0o666 lets the umask set the permissions, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0), 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX; Windows cannot open folders)
        dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)


def read(path: PathLike) -> _rustbp.Core:
    """The core saved at ``path``; ValueError naming the file if it is not a valid rustbp file."""
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _rustbp.core_from_safetensors(data)
    except ValueError as e:
        raise ValueError(f"{os.fspath(path)}: {e}") from None
