"""Reading the files an operator names (the configuration, and the key, token, secret and
certificate files it points to) without trusting what sits at the path.

A plain `open()` of a FIFO waits until something writes into it, a device never ends, and a
file of gigabytes is read whole: a process starting or reloading would hang or stall. So
`read_bounded` opens without blocking (O_NONBLOCK: the open of a FIFO returns at once),
refuses whatever the descriptor shows is not a regular file, and reads at most one byte past
its bound, so that nothing put at the path can hold the reader long or fill its memory.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

# The most a configuration file may hold. The example network's is about 2 KiB; one of this size
# holds some 1,700 repositories, each with a schedule, and takes about 1.2 s to load and compare
# on the project's machines (two busy cores), well within a reload's time limit
# (shared.reload.RELOAD_TIMEOUT_S). The loader gets through about 250 KiB a second there: with a
# bound of 1 MiB, a file a process starts with could be refused at a reload for its time alone.
MAX_CONFIG_BYTES = 256 * 1024
# The most a file holding one secret may: a token, a webhook secret, a password, a key (a
# private key in PEM is under 200 bytes), a build secret (at most 8192 characters).
MAX_SECRET_FILE_BYTES = 64 * 1024
# The most a certificate or a CA bundle may: a bundle of every public CA is about 220 KiB.
MAX_CERTIFICATE_FILE_BYTES = 1024 * 1024

_READ_CHUNK_BYTES = 64 * 1024
_KINDS = (
    (stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"),
    (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
)


class RefusedFile(OSError):
    """A file that is there but is not read: not a regular file, or larger than its bound. An
    OSError, so that every caller's `cannot read <path>: <strerror>` already says why."""

    def __str__(self) -> str:
        return self.strerror


def read_bounded(path: str | Path, max_bytes: int) -> bytes:
    """The bytes of the regular file at `path`; RefusedFile when it is no regular file or holds
    more than `max_bytes`, OSError when it cannot be opened or read."""
    data = read_at_most(path, max_bytes + 1)
    if len(data) > max_bytes:
        raise RefusedFile(errno.EFBIG, f"is larger than {_size(max_bytes)}, the most this file may hold")
    return data


def read_at_most(path: str | Path, limit: int) -> bytes:
    """The first `limit` bytes of the regular file at `path` (all of it if shorter); RefusedFile
    when it is no regular file, OSError when it cannot be opened or read."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as error:
        # Opening a socket fails with ENXIO ("No such device or address"): say what it is.
        if error.errno == errno.ENXIO:
            raise _not_regular(os.stat(path).st_mode) from None
        raise
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise _not_regular(mode)
        return _read_at_most(fd, limit)
    finally:
        os.close(fd)


def _not_regular(mode: int) -> RefusedFile:
    kind = next((name for test, name in _KINDS if test(mode)), "a special file")
    return RefusedFile(errno.EINVAL, f"is {kind}, not a regular file")


def _read_at_most(fd: int, limit: int) -> bytes:
    chunks, left = [], limit
    while left > 0:
        chunk = os.read(fd, min(left, _READ_CHUNK_BYTES))
        if not chunk:
            break
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _size(count: int) -> str:
    for unit, size in (("MiB", 1024 * 1024), ("KiB", 1024)):
        if count >= size and count % size == 0:
            return f"{count // size} {unit}"
    return f"{count} bytes"
