"""Scheduled builds: `repositories[].schedules`, each a cron expression (UTC) and a branch.

At each slot of its expression the client submits a build of the branch's head, a
request like a webhook's with the event `cron` (a spec's `when: event: cron` names
it). The slot each schedule fired for last is kept in the build records, in one commit
with the build it started, so that:

- a client that was down over one slot or many submits one build when it starts again,
  for the latest of them, not one per missed slot;
- a schedule the records do not know (new, or its expression or branch changed) starts
  from now and fires at its next slot;
- a crash never starts a slot's build twice.

`Schedules` decides, with the time as an argument; `ScheduleRunner` is the loop that
reads the clock, submits and sleeps until the next slot.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Awaitable, Callable, Iterable


from client.actors import scheduled
from client.tables.slots import ScheduleSlots
from pbft.build import Operation
from shared.config import RepositoryConfig, ScheduleConfig

log = logging.getLogger(__name__)

Key = tuple[str, str, str, str]  # (repository, name, cron, branch)
# The loop wakes at least this often, so that a wall clock set forward or back (NTP, a
# suspended host) delays a slot by no more than this.
MAX_SLEEP_S = 60.0


def latest_slot(cron: str, now_s: float) -> float:
    """The latest time at or before `now_s` that `cron` names (slots are whole minutes)."""
    # croniter's get_prev is strictly before its start: start just past the second now is in.
    start = datetime.fromtimestamp(math.floor(now_s) + 1, timezone.utc)
    return _croniter(cron, start).get_prev(float)


def next_slot(cron: str, after_s: float) -> float:
    """The first time after `after_s` that `cron` names."""
    return _croniter(cron, datetime.fromtimestamp(after_s, timezone.utc)).get_next(float)


def _croniter(cron: str, start: datetime):
    """croniter, imported once a client has a schedule: not every client pays its import at start."""
    from croniter import croniter

    return croniter(cron, start)


@dataclass(frozen=True)
class Fire:
    """One schedule's build, for one slot."""

    repository: str
    schedule: ScheduleConfig
    slot_s: float

    @property
    def key(self) -> Key:
        return key_of(self.repository, self.schedule)

    def operation(self) -> Operation:
        """The slot's build: its branch (its head is pinned before it is signed), the slot named."""
        # Its delivery: the slot builds once, however many of the network's clients fire it.
        return Operation(self.repository, self.schedule.branch, None, event="cron", slot=int(self.slot_s),
                         actor=scheduled(self.repository, self.schedule.name),
                         delivery=f"schedule:{self.schedule.name}@{int(self.slot_s)}")


def key_of(repository: str, schedule: ScheduleConfig) -> Key:
    return (repository, schedule.name, schedule.cron, schedule.branch)


class Schedules:
    """Which schedules are due, from the configured ones and the slots they fired for last."""

    def __init__(self, repositories: Iterable[RepositoryConfig], last: dict[Key, float]) -> None:
        self.entries = [(repository.name, schedule) for repository in repositories for schedule in repository.schedules]
        keys = {key_of(*entry) for entry in self.entries}
        # Slots of schedules no longer configured (removed, or changed) are forgotten.
        self.last = {key: slot for key, slot in last.items() if key in keys}

    def due(self, now_s: float) -> list[Fire]:
        """The builds to start now, at most one per schedule; each counts as fired from here on.
        A schedule seen for the first time starts from its latest slot without firing."""
        fires = []
        for repository, schedule in self.entries:
            key = key_of(repository, schedule)
            slot = latest_slot(schedule.cron, now_s)
            last = self.last.get(key)
            if last is not None and slot > last:
                fires.append(Fire(repository, schedule, slot))
            if last is None or slot > last:
                self.last[key] = slot
        return fires

    def next_wake_s(self, now_s: float) -> float | None:
        """When the next slot of any schedule comes, or None without schedules."""
        return min((next_slot(schedule.cron, now_s) for _, schedule in self.entries), default=None)


class ScheduleRunner:
    """Submits what `Schedules` says is due, on the clock it is given (a simulated one in tests)."""

    def __init__(
        self,
        schedules: Schedules,
        slots: ScheduleSlots,
        submit: Callable[[Operation], int],  # starts a build in the background, returns its build id
        *,
        # The operation with its branch's head pinned (client.verbs.submit `Submit.pinned`): every node
        # builds the commit the branch named at the slot, whenever each of them fetches.
        pin: Callable[[Operation], Awaitable[Operation]] | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.schedules = schedules
        self._slots = slots
        self._submit = submit
        self._pin = pin
        self._clock = clock
        self._sleep = sleep
        self._saved = False  # the records hold exactly the schedules' slots (forgotten ones dropped)

    async def step(self) -> list[tuple[Fire, int]]:
        """Start what is due now; returns each fire with its build id.

        Cancelled while it pins the heads (a reload replaces the runner), it has started
        and saved nothing: the next runner, from the records, fires those slots itself.
        From the first submit to the save nothing awaits, so no slot is started twice."""
        before = dict(self.schedules.last)
        fires = self.schedules.due(self._clock())
        operations = [fire.operation() for fire in fires]
        if self._pin is not None:
            operations = [await self._pin(operation) for operation in operations]
        started = [(fire, self._submit(operation)) for fire, operation in zip(fires, operations)]
        if self.schedules.last != before or not self._saved:
            build_ids = {fire.key: build_id for fire, build_id in started}
            self._slots.keep(self.schedules.last, build_ids)
            self._saved = True
        for fire, build_id in started:
            slot = datetime.fromtimestamp(fire.slot_s, timezone.utc).isoformat(timespec="minutes")
            log.info("schedule %r of %s (%s): build %d of branch %r for %s", fire.schedule.name, fire.repository,
                     fire.schedule.cron, build_id, fire.schedule.branch, slot)
        return started

    async def run(self) -> None:
        while True:
            await self.step()
            now_s = self._clock()
            wake_s = self.schedules.next_wake_s(now_s)
            if wake_s is None:
                return
            await self._sleep(min(MAX_SLEEP_S, max(0.0, wake_s - now_s)))
