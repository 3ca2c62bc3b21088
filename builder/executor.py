"""The executor: turn a build order into a BuildResult.

A build takes one of the node's build slots (builder/queue.py), then, in a worker thread:
fetch and check out the commit (builder/workspace/fetch.py) → compile its plan
(builder/plan/buildplan.py) → run the plan's containers on the engine and take its caches and
artifacts (builder/run.py) → close its log.
A cancel the order decided stops it wherever it is: waiting for a slot, or in its container.

`run` never raises for a problem with the build: every failure becomes an
`error` result whose reason is the same text on every honest node, because
the reason travels with the result the nodes sign. Details that differ between
nodes (paths, daemon messages, timings) go only to this node's build log.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import time
from collections import OrderedDict
from typing import Any, Callable

from builder.engine.host import ENGINE_DOWN, ENGINE_FAILED, ENGINE_UNAVAILABLE, DockerEngine, kill_quietly
from builder.order import BuildOrder, valid_build_id
from builder.plan.compilebuild import compile_build
from builder.plan.concurrencyspec import ConcurrencySpec
from builder.queue import BuildQueue, GroupTurns
from builder.result import BuildResult, bounded_reason
from builder.run import BuildError, BuildRun, Cancelled, NodeParts, Watch
from builder.settings import ExecutorSettings
from builder.workspace.artifactstore import ArtifactStore
from builder.workspace.testreports import ReportStore
from builder.plan.variations import variation
from builder.workspace.caches import CacheStore
from builder.workspace.checkouts import (
    INBOXES_DIR,
    CheckoutRemover,
    checkouts_root,
    make_checkouts_folder,
    sweep_orphaned_checkouts,
)
from builder.workspace.fetch import fetch
from builder.workspace.gitmirror import GitError, GitMirrors
from builder.workspace.kepttrees import MAX_KEPT, KeptTrees, TreeKey
from builder.workspace.log import BuildLog

log = logging.getLogger(__name__)

# A cancel is kept for a build not started yet (queued, or ordered after its cancel) until
# this many later cancels push it out: the builds a node has waiting are far fewer.
MAX_CANCELS = 4096
# The same on every node whatever stage each had reached: no commit, no spec, no exit code.
CANCELLED = "cancelled by the client's request"


class Executor:
    def __init__(self, settings: ExecutorSettings, docker_client=None):
        """Builds as `settings` say, on the engine it names unless `docker_client` (tests) is given."""
        self._settings = settings = dataclasses.replace(settings, data_dir=settings.data_dir.resolve())
        self._node_id = settings.node_id
        limits = settings.limits
        # Which build takes a freed slot: the node's max_concurrent, each repository's own bound
        # and a fair turn between repositories; a waiting build's future is set when it may run.
        self._queue = BuildQueue(settings.max_concurrent, dict(settings.repository_bounds))
        # Builds of one concurrency group wait for each other, in the order's order.
        self._groups = GroupTurns()
        self._slot_waiters: dict[str, asyncio.Future] = {}
        # Told (build id, "queued" or "running") as a build waits for a slot and as it takes
        # one: the node tells the build's client (node/driver.py).
        self.on_state: Callable[[str, str, str | None], None] | None = None
        self._mirrors = GitMirrors(settings.data_dir / "mirrors")
        self._checkouts = checkouts_root(
            settings.data_dir, limits.workspace_mb * (settings.max_concurrent + MAX_KEPT) * 1024 * 1024)
        # Beside the checkouts: a checkout moves into a container's inbox by a rename.
        self._engine = DockerEngine(settings, docker_client, inboxes=self._checkouts / INBOXES_DIR)
        self._removed_checkouts = CheckoutRemover(self._checkouts, settings.node_id)
        self._kept = KeptTrees(self._checkouts, self._removed_checkouts.discard)
        self._parts = NodeParts(
            node_id=settings.node_id, engine=self._engine,
            caches=CacheStore(settings.data_dir, keep=limits.cache_keep, max_bytes=limits.cache_mb * 1024 * 1024,
                              scopes=limits.cache_scopes),
            artifacts=ArtifactStore(settings.data_dir, keep=limits.artifacts_keep),
            reports=ReportStore(settings.data_dir, keep=limits.artifacts_keep),
        )
        self._running = 0
        self._active_ids: set[str] = set()
        # Build ids whose cancel was ordered (node/driver.py), oldest first, and the container
        # each running build runs in (a pipeline's steps that run at once: several), so that a
        # cancel can kill them (from another thread).
        self._cancels: OrderedDict[str, None] = OrderedDict()
        self._containers: dict[str, list[Any]] = {}

    def set_bounds(self, repository_bounds: dict[str, int]) -> None:
        """How many builds of each repository may run at once from now on (after a reload):
        the queue's, so builds waiting for a slot get them too."""
        self._queue.bounds = dict(repository_bounds)

    @property
    def engine(self) -> DockerEngine:
        return self._engine

    def checkouts_removed(self):
        """A concurrent future done once the checkouts of the builds ended so far are gone."""
        return self._removed_checkouts.settled()

    def kept_checkouts(self) -> dict[TreeKey, int]:
        """The checkouts the node keeps for its next builds, and how many builds each served."""
        return self._kept.kept()

    @property
    def running(self) -> int:
        return self._running

    @property
    def queued(self) -> int:
        """Builds waiting for a build slot here."""
        return self._queue.waiting()

    def is_queued(self, build_id: str) -> bool:
        return self._queue.is_waiting(build_id)

    def has_slot(self, build_id: str) -> bool:
        """Whether the build holds one of the node's build slots: it runs. One not yet come
        to the queue (its task not started) holds none, as one waiting in it does not."""
        return build_id in self._queue.running

    def sweep_leftovers(self) -> int:
        """Remove containers (builds' and prepared ones), workspace and cache volumes a killed
        earlier process of this node left.

        A node killed with `kill -9` cannot remove its builds; they would run
        on to their deadline and keep their workspaces. They carry this node's
        data directory as a label, which no other node or network shares.
        Its half-copied caches and restore links go too. Returns how many
        containers and volumes were removed (the build network is not counted).
        """
        removed = 0
        try:
            shutil.rmtree(self._checkouts, ignore_errors=True)
            sweep_orphaned_checkouts()
            self._parts.caches.sweep()
            self._parts.artifacts.sweep()
            self._parts.reports.sweep()
        except OSError:
            log.warning("could not sweep leftover cache or artifact files of node %s", self._node_id, exc_info=True)
        try:
            removed = self._engine.remove_leftovers()
        except ENGINE_FAILED:
            log.warning("could not sweep leftover builds of node %s", self._node_id, exc_info=True)
        if removed:
            log.warning("node %s removed %d containers and volumes left by a previous run", self._node_id, removed)
        return removed

    async def cancel(self, build_id: str) -> bool:
        """Stop build `build_id`: at once if its container runs, before it starts if it waits
        (for a build slot, or for the driver to hand it over). Its result is then `cancelled`.
        Returns whether the build was running or waiting here."""
        if not valid_build_id(build_id):
            return False
        self._cancels[build_id] = None
        while len(self._cancels) > MAX_CANCELS:
            self._cancels.popitem(last=False)
        if self._queue.drop(build_id):
            turn = self._slot_waiters.pop(build_id)
            if not turn.done():  # else its task was cancelled meanwhile (the node stops)
                turn.set_result(False)
        containers = list(self._containers.get(build_id, ()))
        if containers:
            log.info("build %s node=%s: cancelled, killing its containers", build_id, self._node_id)
            for container in containers:
                await asyncio.to_thread(kill_quietly, container)
        return build_id in self._active_ids

    async def _take_slot(self, build_id: str, repository: str) -> bool:
        """Wait for a build slot and take it; False, with no slot taken, if the build is
        cancelled before its turn comes (a cancel does not wait for the builds before it)."""
        if build_id in self._cancels:
            return False
        turn = asyncio.get_running_loop().create_future()
        self._slot_waiters[build_id] = turn
        self._grant(self._queue.add(build_id, repository))
        if self._queue.is_waiting(build_id):
            self._tell(build_id, "queued")
        try:
            return await turn
        except BaseException:  # the node is stopping: no slot is kept, no place in the queue
            self._slot_waiters.pop(build_id, None)
            if not self._queue.drop(build_id):
                self._release(build_id)
            raise

    def _grant(self, build_ids: list[str]) -> None:
        for build_id in build_ids:
            turn = self._slot_waiters.pop(build_id)
            if not turn.done():  # else its task was cancelled meanwhile, and gives the slot back
                turn.set_result(True)
                self._tell(build_id, "running")

    def _tell(self, build_id: str, state: str, supersedes: str | None = None) -> None:
        if self.on_state is not None:
            self.on_state(build_id, state, supersedes)

    def _take_turn(self, build_id: str, concurrency: ConcurrencySpec | None, watch: Watch, output: BuildLog,
                   loop: asyncio.AbstractEventLoop) -> bool:
        """The build's turn in its concurrency group (builder/queue.py); False if cancelled while it
        waited. With `cancel_in_progress`, each older build of the group it waits for is named to the
        client in this node's signed BUILD-STATE, so that f+1 nodes' word has the client cancel it
        through the order (client/verbs/supersede.py): never this node's own stop, which the others
        would not make at the same point."""
        def waits(blocker: str, older_of_the_group: bool) -> None:
            # Told once a (blocker, older) pair: again only when the blocker's plan showed it older.
            superseded = older_of_the_group and concurrency.cancel_in_progress
            output.node_line(f"waits for build {blocker}{' (older: superseded)' if superseded else ''}"
                             f" of concurrency group {concurrency.group} to end on this node")
            if superseded:
                loop.call_soon_threadsafe(self._tell, build_id, "running", blocker)

        return self._groups.take_turn(build_id, None if concurrency is None else concurrency.group,
                                      watch.cancelled, waits)

    def _release(self, build_id: str) -> None:
        self._grant(self._queue.finish(build_id))

    def close(self) -> None:
        """Kill this executor's running builds and let go of the engine (DockerEngine.close);
        the checkouts' folder goes once no build is left: in memory, it would hold the host's
        RAM until the next start. Builds still running (killed) remove their own."""
        self._engine.close()
        self._removed_checkouts.close()
        if not self._active_ids:
            shutil.rmtree(self._checkouts, ignore_errors=True)

    async def run(self, order: BuildOrder) -> BuildResult:
        build_id = order.build_id
        if not valid_build_id(build_id):
            return BuildResult("error", None, None, "invalid build id")
        if build_id in self._active_ids:
            # Two builds would share one workspace and one log file.
            return BuildResult("error", None, None, "build id already running")
        started = time.monotonic()
        problem = order.problem()
        if problem is not None:
            output = self._open_log(order)
            rejected = BuildResult("error", None, None, problem)
            return await asyncio.to_thread(self._finish, order, rejected, output, started)
        self._active_ids.add(build_id)
        try:
            if not await self._take_slot(build_id, order.repository_name):  # cancelled while it waited, or before
                output = self._open_log(order)
                return await asyncio.to_thread(self._finish, order, self._cancelled(output), output, started)
            self._running += 1
            try:
                return await asyncio.to_thread(self._build, order, asyncio.get_running_loop())
            finally:
                self._running -= 1
                self._release(build_id)
        finally:
            self._active_ids.discard(build_id)

    def _build(self, order: BuildOrder, loop: asyncio.AbstractEventLoop) -> BuildResult:
        """The whole build, blocking; runs in a worker thread."""
        started = time.monotonic()
        build_id = order.build_id
        log.info("build start id=%s node=%s repo=%r branch=%r", build_id, self._node_id, order.repository_name,
                 order.branch)
        # The limits of the network document the request executed under (`BuildOrder.limits`).
        limits = self._settings.limits if order.limits is None else order.limits
        output = self._open_log(order)
        workspace = self._checkouts / build_id
        # The checkout a build of this repository and scope left, if the node kept one, and
        # how many builds this one's has served, itself included (0: none made).
        tree_key, tree_uses = TreeKey(order.repository_name, bool(order.trigger.pull_request)), 0
        commands_ms = None
        watch = Watch(lambda: build_id in self._cancels, lambda container: self._running_in(build_id, container))
        self._groups.come(build_id, order.repository_name, order.seq)
        try:
            watch.check()
            try:
                make_checkouts_folder(self._checkouts, self._settings.data_dir)
            except OSError as exc:
                raise BuildError("could not make this node's checkout folder", f"{exc}\n") from None
            # A kept checkout goes back as it is should its build fail to fetch (a branch that
            # does not exist): it is brought to the next build's commit whatever state it is in.
            served = tree_uses = self._kept.take(tree_key, workspace)
            try:
                fetched = fetch(self._mirrors, order, workspace, limits.workspace_mb * 1024 * 1024, kept=served > 0)
            except GitError as exc:
                raise BuildError(exc.reason, exc.detail) from None
            tree_uses = served + 1 if fetched.reused else 1
            output.commit(fetched.checkout.facts.commit)
            if fetched.base_read:
                output.node_line(fetched.base_read)
            watch.check()
            extra, varied = self._settings.extra_environment, None
            if order.settings.vary:
                varied = variation(self._node_id, order.build_id)
                output.node_line(f"this node's variation (vary: true): {varied.described()}")
                extra = {**varied.environment(), **extra}
            plan = compile_build(order, fetched.checkout, limits, extra)
            if not self._take_turn(build_id, plan.concurrency, watch, output, loop):
                raise Cancelled()
            if varied is not None:
                plan = dataclasses.replace(plan, hostname=varied.hostname, build_path=varied.build_path)
            result, commands_ms = BuildRun(self._parts, order, output, workspace, watch).run(plan)
        except Cancelled:
            result = self._cancelled(output)
        except BuildError as exc:
            output.write(exc.detail.encode(errors="replace"))
            result = BuildResult("error", None, exc.commit, exc.reason)
        except ENGINE_DOWN as exc:
            # The engine is down (between builds, or went away outside a container's run).
            log.warning("node=%s build %s: %s: %s", self._node_id, build_id, ENGINE_UNAVAILABLE, exc)
            result = BuildResult("error", None, None, ENGINE_UNAVAILABLE)
        except Exception:
            # A bug or an unexpected environment problem must not take the
            # node down; the traceback stays in the node log.
            log.exception("build %s failed unexpectedly", build_id)
            result = BuildResult("error", None, None, "internal executor error")
        finally:
            self._groups.leave(build_id)
            self._containers.pop(build_id, None)
            if tree_uses:
                self._kept.give_back(tree_key, workspace, tree_uses)
            else:
                self._removed_checkouts.discard(workspace)
        if build_id in self._cancels and result.status != "cancelled":
            # Cancelled while it ended (its container killed, or before its result is out).
            result = self._cancelled(output)
        return self._finish(order, result, output, started, commands_ms)

    @staticmethod
    def _cancelled(output: BuildLog) -> BuildResult:
        output.note(CANCELLED)
        return BuildResult("cancelled", None, None, CANCELLED)

    def _open_log(self, order: BuildOrder) -> BuildLog:
        return BuildLog(
            self._settings.log_dir / f"build-node{self._node_id}-{order.build_id}.log",
            (order.limits or self._settings.limits).output_cap_bytes,
            f"pbft-ci build {order.build_id} node {self._node_id} repo {order.repository_name!r} "
            f"branch {order.branch!r}",
        )

    def _finish(
        self, order: BuildOrder, result: BuildResult, output: BuildLog, started: float, commands_ms: int | None = None
    ) -> BuildResult:
        """Close the build log and log the build's end.

        `commands_ms` is how long the build's own commands ran (-1 in the
        line when they never ran or the sandbox failed), so that duration_ms
        minus it is what the node spent around them: git, workspace, containers.
        """
        duration_ms = round((time.monotonic() - started) * 1000)
        log_path = output.close(result.status, result.exit_code, duration_ms, result.reason)
        # The log keeps the reason whole; the signed result carries what the wire takes.
        result = dataclasses.replace(result, reason=bounded_reason(result.reason))
        log.info(
            "build end id=%s node=%s repo=%r branch=%r commit=%s status=%s exit_code=%s duration_ms=%d commands_ms=%d",
            order.build_id, self._node_id, order.repository_name, order.branch, (result.commit or "-")[:12],
            result.status, result.exit_code, duration_ms, -1 if commands_ms is None else commands_ms,
        )
        return dataclasses.replace(result, log_path=log_path)

    def _running_in(self, build_id: str, container) -> None:
        """The build runs in `container` too; a cancel ordered before it came kills it at once.
        (A build's containers are few: its steps that run at once and the services.)"""
        self._containers.setdefault(build_id, []).append(container)
        if build_id in self._cancels:
            kill_quietly(container)
