"""The client app's resources, each in a cleanup context of its own (started in order, stopped in
reverse), and what runs once they all have started and once a shutdown begins.

The records open first and close last; the service (its links to the nodes
and the verbs over them) comes next, and closes before the records, so
that the builds it still follows write their records first. Whatever
observes the service's events starts after it and stops before it
(client.statuses, client.notifications); the schedules start last, so that a
scheduled build, like a webhook's, finds every observer in place.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from typing import AsyncIterator, Callable

import aiohttp
from aiohttp import web

from client.buildlogs import LOG_PROXY
from client.heads import BranchHeads
from client.keys import LIVE_KEY, METRICS_KEY, RECORDS_KEY, SERVICE_KEY
from client.networkdocs import DocumentFollower
from client.links import NodeLinks
from client.records import BuildRecords, records_path
from client.schedules import ScheduleRunner, Schedules
from client.service import ClientOptions, ClientService
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig, NodeConfig, RepositoryConfig

CleanupContext = Callable[[web.Application], AsyncIterator[None]]


def records_ctx(config: NetworkConfig, client_name: str) -> CleanupContext:
    async def ctx(app: web.Application) -> AsyncIterator[None]:
        records = BuildRecords(records_path(config.data_dir, client_name))
        app[RECORDS_KEY] = records
        yield
        records.close()

    return ctx


def service_ctx(config: NetworkConfig, client_name: str, auth: Authenticator,
                deadline_s: float | None) -> CleanupContext:
    """The service, with its links to the nodes; after the records' context. Branch heads are
    pinned with the repositories of the configuration in force (a reload may change them)."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        live = app[LIVE_KEY]
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=config.node_ssl())) as session:
            options = ClientOptions(deadline_s, pin=BranchHeads(lambda: live.current.repositories).pin)
            service = ClientService(config, client_name, auth, app[RECORDS_KEY], NodeLinks(session, config.nodes),
                                    options)
            app[SERVICE_KEY] = service
            # The network document nodes' signed words are compared with: the one this client runs,
            # and the one f+1 of them run once the order changed it.
            live.on_reload(lambda new: service.core.frames.runs(new.digest))
            live.on_reload(service.follow)  # the members, keys and f a change through the order made
            live.on_reload(functools.partial(_follow_nodes, app[LOG_PROXY].nodes))
            follower = DocumentFollower(live, service.core.frames, session, config, service.core.tasks.spawn)
            service.core.frames.on_vouched = follower.vouched
            service.events.subscribe(app[METRICS_KEY].observe)
            service.start()
            yield
            await service.close()

    return ctx


def _follow_nodes(nodes: dict[int, NodeConfig], config: NetworkConfig) -> None:
    """The nodes build logs and artifacts are fetched from (client.buildlogs) are the members."""
    nodes.clear()
    nodes.update((node.id, node) for node in config.nodes)


async def schedules_ctx(app: web.Application) -> AsyncIterator[None]:
    """Builds submitted on a clock (client.schedules), started again when a reload changes them."""
    live = app[LIVE_KEY]

    def start(repositories: tuple[RepositoryConfig, ...]) -> tuple[ScheduleRunner, asyncio.Task]:
        # From the slots the records hold, as at a start: a schedule they know fires at its
        # next slot as before, a new or changed one starts from now.
        schedules = Schedules(repositories, app[RECORDS_KEY].slots.get())
        submit = app[SERVICE_KEY].verbs.submit
        runner = ScheduleRunner(schedules, app[RECORDS_KEY].slots, submit.start, pin=submit.pinned)
        return runner, asyncio.create_task(runner.run(), name="schedules")

    running = [start(live.current.repositories)]

    def reschedule(new: NetworkConfig) -> None:
        runner, task = running[0]
        if Schedules(new.repositories, {}).entries != runner.schedules.entries:
            # Cancelled in its sleep, the runner has saved every build it started; cancelled
            # while it pins heads, it started none (ScheduleRunner.step).
            task.cancel()
            running[0] = start(new.repositories)

    live.on_reload(reschedule)
    yield
    task = running[0][1]
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def resume_pending(app: web.Application) -> None:
    """An on_startup hook: it runs after every cleanup context has started, so that whatever
    observes the service does by the time the builds it resumes end."""
    app[SERVICE_KEY].verbs.resume.start()


async def abandon_outstanding(app: web.Application) -> None:
    """An on_shutdown hook: webhooks may wait minutes for a verdict; a shutdown should not."""
    app[SERVICE_KEY].core.abandon_all()
