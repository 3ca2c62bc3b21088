"""What an attacker with write access to a configuration's folder can put where a file is read,
and a measure of whether the process reading it kept answering meanwhile."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import threading
import time
from pathlib import Path
from typing import Awaitable, Callable, Iterator

# The size of the file that froze a node for 3.6 s at a reload, before a configuration file
# was read within its bound (shared.boundedread.MAX_CONFIG_BYTES).
OVERSIZED_BYTES = 10 * 1024 * 1024
# A reader still blocked on a FIFO this long after it was put in place gets an end of file: a
# regression that opens it blocking then fails its test instead of hanging the run.
RELEASE_FIFO_AFTER_S = 2.0


@contextlib.contextmanager
def oversized_in_place_of(path: Path) -> Iterator[None]:
    """`path` holds what it held and a YAML comment of 10 MB after it; restored on the way out."""
    original = path.read_bytes()
    path.write_bytes(original + b"\n# " + b"x" * OVERSIZED_BYTES + b"\n")
    try:
        yield
    finally:
        path.write_bytes(original)


@contextlib.contextmanager
def fifo_in_place_of(path: Path) -> Iterator[None]:
    """A FIFO at `path`, which nothing writes into; the file is back on the way out."""
    aside = path.with_name(path.name + ".aside")
    path.rename(aside)
    os.mkfifo(path)
    stop = threading.Event()
    releaser = threading.Thread(target=_release_blocked_readers, args=(path, stop), daemon=True)
    releaser.start()
    try:
        yield
    finally:
        stop.set()
        releaser.join()
        path.unlink()
        aside.rename(path)


def _release_blocked_readers(fifo: Path, stop: threading.Event) -> None:
    """After RELEASE_FIFO_AFTER_S, open `fifo` for writing and close it, again and again, so that
    a reader blocked in its open() reads an end of file. The open fails (ENXIO) while nobody
    has the FIFO open for reading, as a reader that opened it without blocking never does for long."""
    start = time.monotonic()
    while not stop.wait(0.05):
        if time.monotonic() - start < RELEASE_FIFO_AFTER_S:
            continue
        try:
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        except OSError:
            pass


async def largest_gap_s(poll: Callable[[], Awaitable[None]], until: Callable[[], bool],
                        timeout_s: float = 15.0) -> float:
    """Call `poll` (one request to the process) in a tight loop until `until()`; the longest time
    between two answers, counted from the first call."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    largest = 0.0
    async with asyncio.timeout(timeout_s):
        while not until():
            await poll()
            now = loop.time()
            largest, last = max(largest, now - last), now
    return largest


def hostile_in_place(hostile: str, config_path: Path, secret_file: str) -> contextlib.AbstractContextManager:
    """One of the three hostile reloads: the configuration "oversized" or a "fifo", or a "secret
    fifo" in place of the file `secret_file` (beside the configuration) it names."""
    return {"oversized": oversized_in_place_of(config_path), "fifo": fifo_in_place_of(config_path),
            "secret fifo": fifo_in_place_of(config_path.parent / secret_file)}[hostile]


# Hostile reloads a gap test makes at most: a gap the machine itself made (a test worker
# descheduled on a busy CI machine) does not come back at each reload, one a reload makes does.
GAP_ATTEMPTS = 3


async def largest_gap_through_sighup(http_client, path: str, caplog, bound_s: float) -> tuple[float, int]:
    """SIGHUP this process, as ./scripts/reload.sh does, and GET `path` of the app under test in a
    tight loop until the reload is refused: the longest wait between two answers. Again, up to
    GAP_ATTEMPTS reloads, while that is not under `bound_s`: the smallest of those longest
    waits, and how many reloads were made."""

    async def answered() -> None:
        response = await http_client.get(path)
        assert response.status == 200
        await response.read()

    def refusals() -> int:
        return sum("reload refused" in record.getMessage() for record in caplog.records)

    gaps: list[float] = []
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        while len(gaps) < GAP_ATTEMPTS and not (gaps and min(gaps) < bound_s):
            await answered()
            os.kill(os.getpid(), signal.SIGHUP)
            made = len(gaps) + 1
            gaps.append(await largest_gap_s(answered, lambda: refusals() >= made))
    return min(gaps), len(gaps)
