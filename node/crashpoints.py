"""Test-only crash points (`node/index.py --crash-at POINT TURNS`): a node that ends itself,
as `kill -9` would, at one moment of its driver's turn, for tests of what a restart finds
on disk. A node started without `--crash-at` runs none of it."""

from __future__ import annotations

import logging
import os
import signal
from typing import TYPE_CHECKING, Callable

from node.driver import exit_at_once
from pbft.durable import DurableState
from pbft.effects import Effect, Execute, StopBuild

if TYPE_CHECKING:
    from node.driver import Driver

logger = logging.getLogger("node.driver")  # the driver's lines: a crash is one of its turns

CRASH_POINTS = {
    "before-save": "right before a turn's scheduled save that executes a batch",
    "after-ledger-read": "right after a ledger read wrote what waited, while a turn that executed a batch waits "
                         "for its scheduled save",
    "after-cancel": "right after the save of a turn that executed a cancel of a build, before the build is stopped",
    "stop-after-cancel": "as after-cancel, but a clean stop (SIGTERM to itself) instead of an exit, the build "
                         "never told to stop",
}
# Not 0, 1 (an uncaught error), 2 (a usage error) or 70 (fail-stop): a test knows the crash was this.
CRASH_EXIT_CODE = 3


class CrashAt:
    """End the process at once, as `kill -9` would, at one of the driver's crash points
    (`CRASH_POINTS`), the first time it is reached after `turns` scheduled saves ran:

    - before-save: the event loop is about to run a turn's save (`Driver.schedule`'s
      callback, `Interpreter.save_and_send`), and the turn executed a batch;
    - after-ledger-read: a read of the ledger (GET /builds/{seq}, GET /requests/...)
      wrote what waited (`Driver.write_deferred`) while a turn that executed a batch
      still waits for its scheduled save;
    - after-cancel: a turn that executed a cancel of a build is saved, and the node has not
      yet told its executor to stop the build (`pbft.cancels`);
    - stop-after-cancel: the same moment, but the node stops cleanly (it sends itself
      SIGTERM and tells its executor to stop nothing more), so the build is ended by the
      shutdown, its result never reported.

    For tests of what a restart finds on disk. `install` wraps `schedule`, `save` and
    `write_deferred` on one driver, which it is given as it is made (`node.driver.Conduct`); a node
    started without `--crash-at` runs none of it.
    """

    def __init__(self, point: str, turns: int, *, exit_process: Callable[[int], object] = exit_at_once,
                 stop_process: Callable[[], object] = lambda: os.kill(os.getpid(), signal.SIGTERM)) -> None:
        if point not in CRASH_POINTS:
            raise ValueError(f"unknown crash point {point!r}; choose one of: {', '.join(CRASH_POINTS)}")
        self.point = point
        self.turns = turns
        self.saves_run = 0  # scheduled saves that ran
        self.writes = 0  # calls of the store's save, the deferred writes among them
        self.crashed = False
        self._exit_process = exit_process
        self._stop_process = stop_process

    def __str__(self) -> str:
        return f"{self.point} after {self.turns} turns"

    def install(self, driver: Driver) -> None:
        schedule, save, write_deferred = driver.schedule, driver.save, driver.write_deferred

        def run_save(callback: Callable[[], None]) -> None:
            if self.point == "before-save" and self._due(driver):
                self._crash(driver, "a turn's save was about to run")
            callback()
            self.saves_run += 1

        def counted_save(state: DurableState, effects: list[Effect], *, sync: bool) -> None:
            self.writes += 1
            save(state, effects, sync=sync)
            stops = [effect for effect in effects if isinstance(effect, StopBuild)]
            if not stops or self.crashed or self.saves_run < self.turns:
                return
            what = f"a turn that cancels build {stops[0].client}-{stops[0].timestamp} is saved"
            if self.point == "after-cancel":
                self._crash(driver, what)
            elif self.point == "stop-after-cancel":
                self.crashed = True
                driver.stop_build = lambda effect: None
                logger.critical("node=%d crash-at %s: %s: stopping cleanly, the build not told to stop",
                                driver.replica.id, self.point, what)
                self._stop_process()

        def ledger_read() -> None:
            writes = self.writes
            write_deferred()
            if self.point == "after-ledger-read" and self.writes > writes and self._due(driver):
                self._crash(driver, "a ledger read wrote what waited; the turn's save is still scheduled")

        driver.schedule = lambda callback: schedule(lambda: run_save(callback))
        driver.save = counted_save
        driver.write_deferred = ledger_read

    def _due(self, driver: Driver) -> bool:
        unsaved = driver.interpreter.unsaved
        return not self.crashed and self.saves_run >= self.turns and any(isinstance(e, Execute) for e in unsaved)

    def _crash(self, driver: Driver, what: str) -> None:
        unsaved = driver.interpreter.unsaved
        executed = [effect.seq for effect in unsaved if isinstance(effect, Execute)]
        self.crashed = True
        # Log first: os._exit skips every cleanup.
        logger.critical("node=%d crash-at %s: %s (%d unsaved effects, executed seq %s) after %d turns: "
                        "exiting with code %d", driver.replica.id, self.point, what, len(unsaved),
                        ",".join(map(str, executed)), self.saves_run, CRASH_EXIT_CODE)
        self._exit_process(CRASH_EXIT_CODE)
