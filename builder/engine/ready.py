"""Build containers started before their build: one per image and user, for the next build to take.

Starting a container is most of what a node spends around a short build (with
four builds at once on two cores, about 440 ms of 800). A spec build's
container is held at its gate until the script arrives (builder/engine/gate.py), and
nothing before that depends on the build: so each executor keeps one such
container started for the image and user its last build used, and the next
build of that kind only uploads its sources and writes its script. The
executor asks for the next one while a build's commands run.

Only builds without caches and without a build network use them; the mounts
and network of those are the build's own. Each waiting container holds a
tmpfs volume and an engine slot, so there is at most one per key, and at most
`max_keys` keys, the least recently used dropped first. A waiting container
that died (killed, engine restarted) is removed, never used: the build then
starts its own, as it would have without this.

A build that comes while its container is still starting (two builds of one
image back to back: the first asked for the next container as its commands
began, and the start takes longer than the build) waits for that start
rather than begin one of its own: the start under way began earlier, so it
ends sooner, and four nodes starting twice as many containers on two cores
made such a build cost 1.5 s instead of 0.3 s. The wait is bounded, for a
start that hangs.
"""

import logging
import threading
import time
from collections import OrderedDict
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Hashable, Protocol

log = logging.getLogger(__name__)


class Waiting(Protocol):
    """What is kept: builder/engine/gate.py's GatedContainer."""

    def running(self) -> bool: ...

    def discard(self) -> None: ...


class ReadyContainers:
    """Containers started ahead, at most one per key; `start(key)` starts one (blocking).

    Starting and removing happen on a thread of its own, so a build never
    waits for either.
    """

    def __init__(self, start: Callable[[Hashable], Waiting], *, max_keys: int = 2, thread_name: str = "ready"):
        self._start = start
        self._max_keys = max_keys
        self._waiting: OrderedDict[Hashable, Waiting] = OrderedDict()
        self._starting: set[Hashable] = set()
        self._closed = False
        self._guard = threading.Lock()
        self._started = threading.Condition(self._guard)  # notified whenever a start ends
        # One thread: a build triggers at most one start, and starts must not
        # pile up on an engine that is already busy with the builds.
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=thread_name)

    @property
    def keys(self) -> list[Hashable]:
        """The keys a container waits for, least recently used first."""
        with self._guard:
            return list(self._waiting)

    def take(self, key: Hashable, wait_s: float = 0.0) -> Waiting | None:
        """The container waiting for `key`, if one is still running; it is the caller's from here on.
        While one for `key` is starting, wait for it up to `wait_s` seconds."""
        deadline = time.monotonic() + wait_s
        with self._started:
            while key in self._starting and key not in self._waiting and not self._closed:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._started.wait(remaining)
            waiting = self._waiting.pop(key, None)
        if waiting is None:
            return None
        if waiting.running():
            return waiting
        log.warning("a prepared build container for %s had stopped; it is removed, not used", key)
        try:
            self._worker.submit(_discard, waiting)
        except RuntimeError:
            _discard(waiting)
        return None

    def prepare(self, key: Hashable) -> None:
        """Start a container for `key` in the background, unless one waits or is starting."""
        with self._guard:
            if self._closed or key in self._starting:
                return
            if key in self._waiting:
                self._waiting.move_to_end(key)
                return
            self._starting.add(key)
        try:
            self._worker.submit(self._prepare, key)
        except RuntimeError:
            # Closed between the check and the submit.
            with self._guard:
                self._starting.discard(key)

    def settled(self) -> Future:
        """A future done once every start and removal asked for so far has run (the one thread runs them in order)."""
        return self._worker.submit(lambda: None)

    def close(self) -> None:
        """Remove every waiting container, and one being started once it has started."""
        with self._guard:
            self._closed = True
            self._started.notify_all()
            waiting = list(self._waiting.values())
            self._waiting.clear()
        # Not cancelled: a queued removal must still run; a queued start sees
        # the executor closed and starts nothing.
        self._worker.shutdown(wait=True)
        for container in waiting:
            _discard(container)

    def _prepare(self, key: Hashable) -> None:
        started = None
        try:
            if not self._closed:
                started = self._start(key)
        except Exception as exc:
            # The build that needs it starts its own and reports what fails.
            log.info("could not prepare a build container for %s: %s", key, exc)
        with self._guard:
            self._starting.discard(key)
            self._started.notify_all()
            if started is None:
                return
            dropped = []
            if self._closed:
                dropped.append(started)
            else:
                self._waiting[key] = started
                while len(self._waiting) > self._max_keys:
                    dropped.append(self._waiting.popitem(last=False)[1])
        for container in dropped:
            _discard(container)


def _discard(container: Waiting) -> None:
    try:
        container.discard()
    except Exception:
        # The node's next start sweeps what is left (Executor.sweep_leftovers).
        log.warning("could not remove a prepared build container", exc_info=True)
