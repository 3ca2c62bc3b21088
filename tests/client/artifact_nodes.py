"""Fake nodes' artifact routes (node/artifactroute.py), for the client's tests: each verifies the
client's signed request as a node does, then serves what the test gave that node: a manifest,
files, or one of the ways a node can fail (no answer in time, a 401, a stream without end)."""

import asyncio
import hashlib
import json
import time

from aiohttp import web

from pbft.attestation import manifest_digest
from shared.logrequest import NodeAccess, NodeRequest, check_log_request
from tests.client.fake_nodes import CLIENT, FakeCluster, N

FILES = {"dist/app-1.0-py3-none-any.whl": b"PK\x03\x04 a wheel", "reports/junit.xml": b"<testsuite tests='3'/>"}
# The network's limit in the config below; the client cuts a node off a little past it.
ARTIFACTS_MB = 1
MIB = 1024 * 1024


def sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


DIGESTS = {path: sha256(data) for path, data in FILES.items()}
AGREED = manifest_digest(DIGESTS)


class FakeArtifactNodes:
    """What each fake node serves on its artifact routes, and what it was asked."""

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        self.manifests: dict[int, bytes | None] = {i: manifest_body(i, DIGESTS) for i in range(N)}  # None: 404
        self.files: dict[int, dict[str, bytes]] = {i: dict(FILES) for i in range(N)}
        # or "slow", "refusing", "endless", "busy" (503), "held" (files wait for `release`)
        self.behaviour: dict[int, str] = {i: "honest" for i in range(N)}
        self.release = asyncio.Event()
        self.asked: list[tuple[int, str]] = []  # (node, raw path) of requests whose signature held
        self.endless_sent: dict[int, int] = {}
        self.endless_closed: dict[int, asyncio.Event] = {i: asyncio.Event() for i in range(N)}
        self.servers = []

    def add_routes(self, app: web.Application, node_id: int) -> None:
        app.router.add_get("/artifacts/{client}/{timestamp}", self.manifest_handler(node_id))
        app.router.add_get("/artifacts/{client}/{timestamp}/{path:.+}", self.file_handler(node_id))

    async def _refusal(self, request: web.Request, node_id: int) -> web.Response | None:
        reason = check_log_request(
            request.headers, NodeRequest(request.rel_url.raw_path_qs, node_id),
            NodeAccess(self.cluster.verifier.verify_client, {CLIENT}), time.time(),
        )
        if reason is not None:
            return web.json_response({"error": reason}, status=401)
        self.asked.append((node_id, request.rel_url.raw_path))
        if self.behaviour[node_id] == "refusing":
            return web.json_response({"error": "unknown client"}, status=401)
        if self.behaviour[node_id] == "slow":
            await asyncio.sleep(5)
        return None

    def manifest_handler(self, node_id: int):
        async def serve(request: web.Request) -> web.Response:
            refused = await self._refusal(request, node_id)
            if refused is not None:
                return refused
            body = self.manifests[node_id]
            if body is None:
                return web.json_response({"error": "no artifacts"}, status=404)
            return web.Response(body=body, content_type="application/json")

        return serve

    def file_handler(self, node_id: int):
        async def serve(request: web.Request) -> web.StreamResponse:
            refused = await self._refusal(request, node_id)
            if refused is not None:
                return refused
            if self.behaviour[node_id] == "endless":
                return await self._endless(request, node_id)
            if self.behaviour[node_id] == "busy":
                return web.json_response({"error": "busy"}, status=503, headers={"Retry-After": "5"})
            if self.behaviour[node_id] == "held":
                await self.release.wait()
            data = self.files[node_id].get(request.match_info["path"])
            if data is None:
                return web.json_response({"error": "no such artifact"}, status=404)
            # Whatever digest a node claims, the client computes its own: this one always claims the agreed one.
            claimed = DIGESTS.get(request.match_info["path"], "")
            return web.Response(body=data, headers={"X-Pbft-Artifact-Digest": claimed})

        return serve

    async def _endless(self, request: web.Request, node_id: int) -> web.StreamResponse:
        # Claims a small file, then never stops sending.
        response = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await response.prepare(request)
        self.endless_sent[node_id] = 0
        try:
            while True:
                await response.write(b"x" * 65536)
                self.endless_sent[node_id] += 65536
        except ConnectionError:
            pass
        finally:
            self.endless_closed[node_id].set()
        return response


def manifest_body(node_id: int, files: dict) -> bytes:
    sizes = {path: len(FILES.get(path, b"")) for path in files}
    return json.dumps({"node": node_id, "build": "ci-1", "artifacts": files, "sizes": sizes}).encode()
