"""A test that hangs fails instead, with what it waited on.

A test that waits forever (a future nobody resolves, a process that never answers) would
otherwise hold its xdist worker, and CI's clock, until the whole run is killed, with no word
of where it stood. This guard gives each test -- setup, call and teardown together --
PBFT_CI_TEST_TIMEOUT_S seconds (900 unless set: three times the slowest test on a loaded
two-core machine). Past that, SIGALRM's handler, which runs in the main thread where pytest
runs the test, raises TestHung there: the test fails, and its report shows the stack of every
thread and of every task of the event loop the test was running.

Only on the main thread of a platform with SIGALRM; a test of the suite that wants SIGALRM for
itself would have to restore this handler.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import sys
import threading
import traceback

import pytest

DEFAULT_TIMEOUT_S = 900.0


class TestHung(Exception):
    """A test went past its time; the message holds where every thread and task stood."""

    __test__ = False  # not a test class, whatever its name


LIMIT = pytest.StashKey[float]()


def timeout_s() -> float:
    """PBFT_CI_TEST_TIMEOUT_S, checked; a UsageError before any test runs for anything else."""
    text = os.environ.get("PBFT_CI_TEST_TIMEOUT_S", "")
    try:
        value = float(text) if text else DEFAULT_TIMEOUT_S
    except ValueError:
        raise pytest.UsageError(f"PBFT_CI_TEST_TIMEOUT_S is a number of seconds, not {text!r}") from None
    if not value > 0:
        raise pytest.UsageError(f"PBFT_CI_TEST_TIMEOUT_S is a positive number of seconds, not {text!r}")
    return value


def where_everything_stood() -> str:
    """The stack of each thread of the process, then of each task of the running event loop."""
    out = io.StringIO()
    names = {thread.ident: thread.name for thread in threading.enumerate()}
    for ident, frame in sys._current_frames().items():
        out.write(f"--- thread {names.get(ident, ident)}\n")
        out.write("".join(traceback.format_stack(frame)))
    loop = asyncio._get_running_loop()
    if loop is not None:
        for task in asyncio.all_tasks(loop):
            out.write(f"--- task {task.get_name()}: {task.get_coro()!r}\n")
            task.print_stack(file=out)
    return out.getvalue()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[LIMIT] = timeout_s()  # read once, for every test of the run


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None):
    if not hasattr(signal, "SIGALRM") or threading.current_thread() is not threading.main_thread():
        yield
        return
    limit = item.config.stash[LIMIT]

    def hung(signum, frame) -> None:
        # Again after as long, should the teardown hang too: the run always moves on.
        signal.setitimer(signal.ITIMER_REAL, limit)
        raise TestHung(f"{item.nodeid} ran past {limit:g} s (PBFT_CI_TEST_TIMEOUT_S); where it stood:\n"
                       + where_everything_stood())

    previous = signal.signal(signal.SIGALRM, hung)
    signal.setitimer(signal.ITIMER_REAL, limit)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
