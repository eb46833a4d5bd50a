"""Writes that survive a crash: what the agent and the collector acknowledge
or commit must be on disk first, and a file that replaces another must never
be seen half-written."""

from __future__ import annotations

import ctypes
import errno
import os
from pathlib import Path


def fsync_dir(path: Path) -> None:
    """Make a rename or a new file in the directory durable."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def write_synced(path: Path, data: bytes) -> None:
    """Write a whole file and fsync it; the caller renames it into place."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o640)
    try:
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, data: bytes) -> None:
    """Replace path with data: readers see the old file or the whole new one."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write_synced(tmp, data)
        tmp.replace(path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a half-written copy must not keep the space
        raise
    fsync_dir(path.parent)


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100
_libc = ctypes.CDLL(None, use_errno=True)
_renameat2 = getattr(_libc, "renameat2", None)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two names in one step (renameat2 RENAME_EXCHANGE); False where unsupported."""
    if _renameat2 is None:
        return False
    done = _renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    if done == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOENT, errno.EXDEV):
        return False
    raise OSError(err, os.strerror(err), str(b))


def publish(path: Path, data: bytes, block: int = 4096) -> None:
    """Replace a small status file so that it keeps working on a full disk.

    Readers see the old file or the whole new one. The file and a spare
    (`<name>.spare`) are padded with spaces (valid after JSON) to whole blocks
    and never shrink: the new text overwrites the spare's blocks in place, and
    one renameat2 swaps the two names, so no block is allocated once both
    exist. Only the first write, or text that outgrows them, needs free space.
    Not fsync'd: a status file says how things are now, not what was promised.
    """
    spare = path.with_name(path.name + ".spare")
    try:
        room = spare.stat().st_size
    except FileNotFoundError:
        room = -1
    if room >= len(data):
        fd = os.open(spare, os.O_WRONLY)
        try:
            write_all(fd, data + b" " * (room - len(data)))
        finally:
            os.close(fd)
        if _exchange(spare, path):
            return
    padded = data + b" " * (-len(data) % block)
    for name in (spare, path):
        tmp = name.with_name(name.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
            try:
                write_all(fd, padded)
            finally:
                os.close(fd)
            tmp.replace(name)
        except OSError:
            tmp.unlink(missing_ok=True)
            raise
