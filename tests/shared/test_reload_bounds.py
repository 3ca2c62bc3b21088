"""A reload's bounds (shared/reload.py): the file is loaded in a thread of its own, within
RELOAD_TIMEOUT_S; a load past it is refused and the running configuration stays; SIGHUPs that
arrive while a reload runs make one more reload after it, not one each."""

from __future__ import annotations

import asyncio
import logging
import threading

import pytest

from harness.network import write_network
from shared import reload
from shared.config import load_config
from shared.reload import LiveConfig

WHO = "node=1"


class HeldLoader:
    """Loads the file as a node does, each call first waiting (in its thread) for `release`
    while `hold` is set; counts its calls and the threads they ran in."""

    def __init__(self, path) -> None:
        self.path = path
        self.hold = True
        self.release = threading.Event()
        self.threads: list[threading.Thread] = []

    def __call__(self):
        self.threads.append(threading.current_thread())
        if self.hold:
            assert self.release.wait(10), "never released"
        return load_config(self.path)


@pytest.fixture
def loader(tmp_path):
    held = HeldLoader(write_network(tmp_path))
    yield held
    held.release.set()


async def test_a_load_past_the_time_limit_is_refused_and_no_second_thread_joins_it(
    loader, monkeypatch, caplog
):
    monkeypatch.setattr(reload, "RELOAD_TIMEOUT_S", 0.2)
    running = load_config(loader.path)
    live = LiveConfig(running, loader, WHO)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        assert await live.reload() == "refused"
        assert await live.reload() == "refused"
    assert live.current is running and len(loader.threads) == 1
    stays = f"{WHO} reload refused, the running configuration stays: {running.path}: "
    assert caplog.messages == [
        stays + "not loaded within 0.2 s (a file this slow to read or check is refused)",
        stays + "the load of an earlier reload, which ran past 0.2 s, has not ended yet",
    ]

    loader.release.set()
    await asyncio.to_thread(loader.threads[0].join, 10)
    loader.hold = False
    assert await live.reload() == "applied"
    assert live.current is not running and len(loader.threads) == 2


async def test_reloads_asked_for_during_a_reload_make_one_more_after_it(loader):
    outcomes: list[str] = []
    settled = asyncio.Event()

    def count(outcome: str) -> None:
        outcomes.append(outcome)
        if len(outcomes) == 2:
            settled.set()

    live = LiveConfig(load_config(loader.path), loader, WHO, count)
    live.request_reload()
    await asyncio.sleep(0.05)  # the first load now waits in its thread
    for _ in range(5):
        live.request_reload()
    loader.hold = False
    loader.release.set()
    async with asyncio.timeout(10):
        await settled.wait()
    await asyncio.sleep(0.2)  # time for a third reload, which must not come
    assert outcomes == ["applied", "applied"] and len(loader.threads) == 2
    assert threading.main_thread() not in loader.threads


async def test_closing_stops_a_reload_that_waits_for_its_load(loader, caplog):
    running = load_config(loader.path)
    live = LiveConfig(running, loader, WHO)
    with caplog.at_level(logging.INFO, logger="shared.reload"):
        live.request_reload()
        await asyncio.sleep(0.05)
        await live.close()
        loader.release.set()
        await asyncio.to_thread(loader.threads[0].join, 10)
        await asyncio.sleep(0.05)
    assert live.current is running and caplog.messages == []
