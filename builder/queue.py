"""Which build runs next on a node: the node's build slots (`build.max_concurrent`), each
repository's own bound (`repositories[].max_concurrent`), and a fair turn between
repositories, so that one repository's burst of pushes does not hold another's build back.

Builds of one repository start in the order they came (the order of the ledger); between
repositories, a freed slot goes to the repository that started a build the longest ago.
Pure: the executor feeds it and starts what it says.

`GroupTurns` then orders the builds that hold a slot by their concurrency groups: builds of a
repository whose specs name one group (`concurrency: {group}`) run one at a time, in the order
the network ordered them. A build comes there once it holds a build slot and leaves when it ends. Once its plan is read,
it waits while a build of its group runs, or while a build ordered before it (a lower
sequence number) still holds a slot and has not read its plan or waits for the same group:
that one might be of the group, and goes first. Only builds that hold a slot are waited for,
and each of those reads its plan without another slot, so a wait never waits on a build that
waits for this one's slot. Every node applies the same rule to the same order and the same
specs; nothing of it changes what a build produces, only when it starts.

`GroupTurns` blocks, for the executor's worker threads; its wait wakes every `POLL_S` to see a cancel.
"""

from __future__ import annotations

import itertools
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Callable


class BuildQueue:
    def __init__(self, slots: int, bounds: dict[str, int] | None = None) -> None:
        assert slots >= 1
        self.slots = slots
        self.bounds = dict(bounds or {})  # repository -> most of its builds that run at once
        self.running: dict[str, str] = {}  # build id -> repository
        self._waiting: OrderedDict[str, deque[str]] = OrderedDict()  # repository -> build ids; turn order
        self._repository_of: dict[str, str] = {}  # waiting build id -> repository

    def waiting(self) -> int:
        return len(self._repository_of)

    def is_waiting(self, build_id: str) -> bool:
        return build_id in self._repository_of

    def add(self, build_id: str, repository: str) -> list[str]:
        """A build came: the builds that start now (it, if a slot is free and its turn came)."""
        assert build_id not in self.running and build_id not in self._repository_of, build_id
        self._repository_of[build_id] = repository
        self._waiting.setdefault(repository, deque()).append(build_id)
        return self._start()

    def finish(self, build_id: str) -> list[str]:
        """A running build ended: the builds that start in its slot."""
        del self.running[build_id]
        return self._start()

    def drop(self, build_id: str) -> bool:
        """Take a waiting build out of the queue (cancelled); False if it does not wait."""
        repository = self._repository_of.pop(build_id, None)
        if repository is None:
            return False
        queue = self._waiting[repository]
        queue.remove(build_id)
        if not queue:
            del self._waiting[repository]
        return True

    def _running_of(self, repository: str) -> int:
        return sum(1 for running in self.running.values() if running == repository)

    def _start(self) -> list[str]:
        started = []
        while len(self.running) < self.slots:
            repository = next((name for name in self._waiting
                               if self._running_of(name) < self.bounds.get(name, self.slots)), None)
            if repository is None:
                break
            queue = self._waiting.pop(repository)
            build_id = queue.popleft()
            if queue:
                self._waiting[repository] = queue  # to the back of the turn order
            del self._repository_of[build_id]
            self.running[build_id] = repository
            started.append(build_id)
        assert len(self.running) <= self.slots
        return started


POLL_S = 0.5
_UNREAD = object()  # a build whose plan is not read yet: it may be of any group


@dataclass
class _Build:
    repository: str
    place: tuple[int, int]  # (sequence number, arrival): the order's, then the executor's
    group: object = _UNREAD  # str, None (no group) or _UNREAD
    runs: bool = False  # it holds its group's turn


class GroupTurns:
    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._builds: dict[str, _Build] = {}
        self._arrivals = itertools.count()

    def come(self, build_id: str, repository: str, seq: int) -> None:
        """A build took a slot: until its plan is read, builds of its repository ordered after it wait for it."""
        with self._changed:
            self._builds[build_id] = _Build(repository, (seq, next(self._arrivals)))

    def blocker(self, build_id: str) -> str | None:
        """The build that `build_id`'s turn waits for, if any (it has said its group)."""
        me = self._builds[build_id]
        for other_id, other in self._builds.items():
            if other_id == build_id or other.repository != me.repository:
                continue
            if other.runs and other.group == me.group:
                return other_id
            if other.place < me.place and not other.runs and other.group in (_UNREAD, me.group):
                return other_id
        return None

    def of_the_group_before(self, build_id: str, other_id: str) -> bool:
        """Whether `other_id` is of `build_id`'s group (its plan read) and ordered before it:
        one that `cancel_in_progress` supersedes."""
        me, other = self._builds[build_id], self._builds.get(other_id)
        return other is not None and other.group == me.group and other.place < me.place

    def take_turn(self, build_id: str, group: str | None, cancelled: Callable[[], bool],
                  waits: Callable[[str, bool], None] = lambda blocker, superseded: None) -> bool:
        """Build `build_id` read its plan, of `group` (None: none): return once it may run, True;
        False if it was cancelled while it waited. `waits(blocker, older_of_the_group)` is told
        of each build it comes to wait for, and whether that one is an older build of its group."""
        with self._changed:
            me = self._builds[build_id]
            me.group = group
            self._changed.notify_all()
            if group is None:
                return True
            told = set()
            while (blocker := self.blocker(build_id)) is not None:
                if cancelled():
                    return False
                older = self.of_the_group_before(build_id, blocker)
                if (blocker, older) not in told:
                    waits(blocker, older)
                    told.add((blocker, older))
                self._changed.wait(POLL_S)
            me.runs = True
            return True

    def leave(self, build_id: str) -> None:
        """The build ended (or never read its plan): the builds it held back go on."""
        with self._changed:
            self._builds.pop(build_id, None)
            self._changed.notify_all()

    def __len__(self) -> int:
        return len(self._builds)
