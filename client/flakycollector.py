"""The repositories' flaky tests, gathered on the client's own (client.tables.flaky).

Every COLLECT_EVERY_S the client looks at its newest accepted branch builds (never a pull
request's) and asks the nodes for the test table of each it has not asked yet
(client.testtables), once every node has replied or SETTLE_S after the verdict, whichever
comes first: a node writes its test record before it replies, so by then each has what it
will have. A build without test reports costs one 404 from each node. Builds whose verdict is
older than WINDOW_S are left to whoever asks for their table. At most MAX_PER_ROUND builds a
round, so a burst is gathered over a few rounds; the ids asked for are kept, bounded, in
memory, so a restart asks again for the last window's (their rows are replaced, not added).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from typing import AsyncIterator, Callable

from aiohttp import web

from client.artifacts import ArtifactSource, artifact_source
from client.keys import LIVE_KEY, RECORDS_KEY
from client.records import BuildRecords
from client.testtables import keep_flaky, tests_table

log = logging.getLogger(__name__)

COLLECT_EVERY_S = 30.0
SETTLE_S = 20.0
WINDOW_S = 600.0
MAX_PER_ROUND = 8
LOOKED_AT = 1024  # how many build ids are remembered as asked for
NEWEST = 200  # how many of the newest builds each round looks through


class FlakyCollector:
    def __init__(self, records: BuildRecords, source: Callable[[], ArtifactSource], n: Callable[[], int]):
        """`source`: the way to the nodes now; `n`: how many nodes the network has now."""
        self._records = records
        self._source = source
        self._n = n
        self._asked: OrderedDict[str, None] = OrderedDict()

    def due(self, now_s: float) -> list[dict]:
        """The builds to ask the nodes about at `now_s`, oldest first."""
        due = []
        for build in reversed(self._records.builds.recent(NEWEST)):
            if build["state"] != "accepted" or build["pull_request"] is not None or build["build_id"] in self._asked:
                continue
            verdict_s = int(build["build_id"]) / 1e6 + (build["elapsed_ms"] or 0) / 1000
            settled = len(build["replied_by"]) >= self._n() or now_s - verdict_s >= SETTLE_S
            if settled and now_s - verdict_s <= WINDOW_S:
                due.append(build)
        return due[:MAX_PER_ROUND]

    async def step(self, now_s: float) -> list[str]:
        """Ask about the builds due at `now_s`; the ids of those asked about."""
        asked = []
        for build in self.due(now_s):
            record = self._records.builds.get(int(build["build_id"]))
            if record is None:
                continue
            self._asked[build["build_id"]] = None
            while len(self._asked) > LOOKED_AT:
                self._asked.popitem(last=False)
            table = await tests_table(self._source(), record)
            keep_flaky(self._records, record, table)
            asked.append(build["build_id"])
        return asked

    async def run(self, clock: Callable[[], float]) -> None:
        while True:
            await asyncio.sleep(COLLECT_EVERY_S)
            try:
                await self.step(clock())
            except Exception:  # a round that failed is tried again at the next
                log.exception("gathering flaky tests failed")


async def flaky_tests_ctx(app: web.Application) -> AsyncIterator[None]:
    """Gather the repositories' flaky tests for as long as the app runs; after the records'
    context, and stopped before it closes."""
    live = app[LIVE_KEY]
    collector = FlakyCollector(app[RECORDS_KEY], lambda: artifact_source(app), lambda: live.current.n)
    task = asyncio.create_task(collector.run(time.time), name="flaky tests")
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
