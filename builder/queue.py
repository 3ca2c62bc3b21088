"""Which build runs next on a node: the node's build slots (`build.max_concurrent`), each
repository's own bound (`repositories[].max_concurrent`), and a fair turn between
repositories, so that one repository's burst of pushes does not hold another's build back.

Builds of one repository start in the order they came (the order of the ledger); between
repositories, a freed slot goes to the repository that started a build the longest ago.
Pure: the executor feeds it and starts what it says.
"""

from __future__ import annotations

from collections import OrderedDict, deque


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
