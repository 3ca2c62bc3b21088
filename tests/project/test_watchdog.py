"""The suite's guard against hanging tests (tests/support/watchdog.py), run on a test file of
its own in a pytest of its own: a test that waits forever fails after its time with the stack
of the task it waited in, and the next test runs."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

HANGING = '''
import asyncio
import time


async def wait_for_nobody():
    await asyncio.get_running_loop().create_future()


def test_a_future_nobody_resolves():
    asyncio.run(wait_for_nobody())


def test_a_sleep_in_a_fixture_teardown(slow_teardown):
    pass


def test_the_next_one_runs():
    assert True
'''

CONFTEST = '''
import time

import pytest


@pytest.fixture
def slow_teardown():
    yield
    time.sleep(60)
'''


def run_guarded(folder: Path, timeout_s: str) -> subprocess.CompletedProcess:
    (folder / "test_hanging.py").write_text(HANGING)
    (folder / "conftest.py").write_text(CONFTEST)
    environment = {**os.environ, "PBFT_CI_TEST_TIMEOUT_S": timeout_s, "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "tests.support.watchdog", "-p", "no:cacheprovider", "-q",
         "-o", "addopts=", "--rootdir", str(folder), str(folder)],
        cwd=folder, env=environment, capture_output=True, text=True, timeout=120)


def test_a_hanging_test_fails_with_where_it_waited_and_the_run_goes_on(tmp_path):
    finished = run_guarded(tmp_path, "1.5")

    assert finished.returncode == 1, finished.stdout + finished.stderr
    out = finished.stdout
    # The teardown that hung is an error of a test that passed.
    assert "1 failed, 2 passed, 1 error" in out, out
    assert "test_a_future_nobody_resolves ran past 1.5 s" in out, out
    assert "--- task Task-1: <coroutine object wait_for_nobody" in out, out  # the task, and its stack:
    assert "in wait_for_nobody" in out, out
    assert "test_a_sleep_in_a_fixture_teardown ran past 1.5 s" in out, out
    assert "--- thread MainThread" in out and "in slow_teardown" in out, out


def test_a_timeout_that_is_no_number_is_refused(tmp_path):
    finished = run_guarded(tmp_path, "soon")

    assert finished.returncode == 4, finished.stdout + finished.stderr
    assert "PBFT_CI_TEST_TIMEOUT_S is a number of seconds, not 'soon'" in finished.stderr, finished.stderr
