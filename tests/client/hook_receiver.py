"""A webhook receiver on loopback for the notification tests: records every delivery, answers
as scripted, and can be started late (on a port chosen before) or made to hang."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from aiohttp import web

from harness.network import free_port


@dataclass
class Delivery:
    headers: dict[str, str]
    body: bytes
    at_s: float


class HookReceiver:
    def __init__(self) -> None:
        self.port = free_port()
        self.deliveries: list[Delivery] = []
        self.script: list[int] = []  # the HTTP statuses of the next answers; 204 once it is empty
        self.hang = False  # hold every request until `stop`
        self._arrived = asyncio.Condition()
        self._stopping = asyncio.Event()
        self._runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/ci-token-in-the-path"

    async def start(self) -> "HookReceiver":
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        # No access log: the tests look for a hook's path in the logs, where the client must not put it.
        self._runner = web.AppRunner(app, shutdown_timeout=0.1, access_log=None)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        self._stopping.set()
        if self._runner is not None:
            await self._runner.cleanup()

    async def wait_for(self, count: int, timeout_s: float = 5.0) -> list[Delivery]:
        async with asyncio.timeout(timeout_s):
            async with self._arrived:
                await self._arrived.wait_for(lambda: len(self.deliveries) >= count)
        return self.deliveries

    async def _handle(self, request: web.Request) -> web.Response:
        delivery = Delivery(dict(request.headers), await request.read(), time.monotonic())
        async with self._arrived:
            self.deliveries.append(delivery)
            self._arrived.notify_all()
        if self.hang:
            await self._stopping.wait()
        return web.Response(status=self.script.pop(0) if self.script else 204)
