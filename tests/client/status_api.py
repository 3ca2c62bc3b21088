"""A forge's commit status API on loopback that records every call and answers as scripted, and
the fake cluster's configuration pointed at it (`with_statuses`)."""

import asyncio
import dataclasses
import time

from aiohttp import web

TOKEN = "ghp_not-a-real-token-0123456789"
PUBLIC_URL = "https://ci.example.org/pbft"


@dataclasses.dataclass
class Call:
    path: str  # as sent, percent-encoding kept
    headers: dict
    body: dict
    at_s: float


class StatusServer:
    """Answers each POST with the next scripted HTTP status for its sha (201 when none is left)."""

    def __init__(self) -> None:
        self.calls: list[Call] = []
        self.script: dict[str, list[int]] = {}
        self.delay_s = 0.0
        self.base_url = ""

    async def handle(self, request: web.Request) -> web.Response:
        self.calls.append(Call(request.raw_path, dict(request.headers), await request.json(), time.monotonic()))
        await asyncio.sleep(self.delay_s)
        sha = request.path.rsplit("/", 1)[-1]
        codes = self.script.get(sha) or [201]
        return web.json_response({}, status=codes.pop(0) if len(codes) > 1 else codes[0])

    def calls_for(self, sha: str) -> list[Call]:
        return [call for call in self.calls if call.path.endswith("/" + sha)]

    async def wait_for_calls(self, count: int, timeout_s: float = 5.0) -> None:
        async with asyncio.timeout(timeout_s):
            while len(self.calls) < count:
                await asyncio.sleep(0.01)


def with_statuses(cluster, status_server: StatusServer, **settings) -> None:
    """Point the fake cluster's config at the status server for repository `example`, with its
    other `settings` (status_style, skipped_passes)."""
    config = cluster.config
    example, other = config.repositories
    example = dataclasses.replace(
        example, full_name="octo/example", status_api=status_server.base_url + "/", status_token=TOKEN, **settings
    )
    client = dataclasses.replace(config.clients[0], public_url=PUBLIC_URL)
    cluster.config = dataclasses.replace(config, repositories=(example, other), clients=(client,))
