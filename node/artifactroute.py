"""`GET /artifacts/{client}/{timestamp}[/{path}]`: a build's artifacts on this node, for the network's clients only;
and `GET /tests/{client}/{timestamp}`: the test outcomes this node read from the build's reports.

Without a path: the build's manifest, every artifact's digest and size as
this node recorded them. With one: the artifact's bytes, with its digest in
`X-Pbft-Artifact-Digest` (`sha256:<hex>`) and `Repr-Digest` (RFC 9530).

A build is known by its request, as its log is (node.buildlogs): the
executor's build id is `{client}-{timestamp}`. Requests are signed as log
requests are (`shared.logrequest`, over the raw path and this node's id), so
a signature opens one artifact, or one manifest, on one node. The path must
be exactly one the manifest lists; nothing else reaches the file system.
The test record is builder/workspace/testreports.py's, as this node kept it, signed
by this node (shared/testrecord.py).
The bytes are served only if they still have the digest recorded when the
build ended (builder/workspace/artifactstore.py). That is this node's word only: a client
compares the digest with the one the network agreed on.

A file is hashed, then sent, a chunk at a time (never held whole), at most
`MAX_DOWNLOADS` at once and `MAX_DOWNLOADS_PER_CLIENT` for one client (beyond:
503 or 429 with `Retry-After`, and the client asks another node). A reader
that takes no chunk for `shared.transfergate.STALL_S` is cut off.
"""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from aiohttp import web

from builder.workspace.artifactstore import Artifact, ArtifactStore, ArtifactUnavailable
from builder.workspace.testreports import ReportStore
from node.buildlogs import MAX_TIMESTAMP
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig
from shared.crypto import Ed25519Authenticator, parse_public_key
from shared.logrequest import NodeAccess, NodeRequest, SeenNonces, check_log_request
from shared.testrecord import sign_record
from shared.transfergate import TransferGate, send_file

MANIFEST_ROUTE = "/artifacts/{client}/{timestamp}"
ARTIFACT_ROUTE = "/artifacts/{client}/{timestamp}/{path:.+}"
TESTS_ROUTE = "/tests/{client}/{timestamp}"
DIGEST_HEADER = "X-Pbft-Artifact-Digest"
MAX_DOWNLOADS = 32
MAX_DOWNLOADS_PER_CLIENT = 16  # a client's own bound is smaller by default (client.transfers)


@dataclass(frozen=True)
class ArtifactSettings:
    store: ArtifactStore
    reports: ReportStore
    repositories: tuple[str, ...]
    node_id: int
    clients: frozenset[str]
    verifier: Authenticator  # checks client signatures only
    sign: Callable[[bytes], str]  # this node's signature, by its protocol key: for test records only
    downloads: TransferGate
    seen: SeenNonces = field(default_factory=SeenNonces)  # each signed request is served once

    @classmethod
    def from_config(cls, config: NetworkConfig, node_id: int, sign: Callable[[bytes], str]) -> "ArtifactSettings":
        client_keys = {client.name: parse_public_key(client.public_key) for client in config.clients}
        return cls(
            # Where node.server's executor keeps them; `keep` matters only to the executor.
            store=ArtifactStore(Path(config.data_dir) / f"node-{node_id}", keep=config.build.artifacts_keep),
            reports=ReportStore(Path(config.data_dir) / f"node-{node_id}", keep=config.build.artifacts_keep),
            repositories=tuple(repository.name for repository in config.repositories),
            node_id=node_id,
            clients=frozenset(client_keys),
            verifier=Ed25519Authenticator(None, {}, client_keys),
            sign=sign,
            downloads=TransferGate("artifact downloads", MAX_DOWNLOADS, MAX_DOWNLOADS_PER_CLIENT,
                                   where=f"node {node_id}"),
        )


ARTIFACT_SETTINGS = web.AppKey("artifact_settings", ArtifactSettings)


def add_artifact_routes(app: web.Application, config: NetworkConfig, node_id: int,
                        sign: Callable[[bytes], str]) -> None:
    """`sign`: this node's signature over bytes (its authenticator's `sign_bytes`)."""
    app[ARTIFACT_SETTINGS] = ArtifactSettings.from_config(config, node_id, sign)
    app.router.add_get(MANIFEST_ROUTE, serve_manifest)
    app.router.add_get(ARTIFACT_ROUTE, serve_artifact)
    app.router.add_get(TESTS_ROUTE, serve_tests)


def _error(status: int, reason: str) -> web.Response:
    return web.json_response({"error": reason}, status=status)


def _build_id(request: web.Request, settings: ArtifactSettings) -> tuple[str | None, web.Response | None]:
    """The build id the URL names once its signature holds, or the response refusing it."""
    # The raw path and query are what the client signed: the build and the file exactly as requested.
    refusal = check_log_request(
        request.headers, NodeRequest(request.rel_url.raw_path_qs, settings.node_id, request.method),
        NodeAccess(settings.verifier.verify_client, settings.clients, settings.seen), time.time(),
    )
    if refusal is not None:
        return None, _error(401, refusal)
    client = request.match_info["client"]
    if client not in settings.clients:
        return None, _error(404, "no such client in this network")
    text = request.match_info["timestamp"]
    if not (text.isascii() and text.isdecimal()) or len(text) > len(str(MAX_TIMESTAMP)) or int(text) > MAX_TIMESTAMP:
        return None, _error(400, f"a build timestamp is a decimal number up to {MAX_TIMESTAMP}")
    return f"{client}-{int(text)}", None


async def _serve_record(request: web.Request, read, what: str, sign=None) -> web.Response:
    """The JSON record `read(repositories, build_id)` of the build the URL names; `sign` makes it
    this node's signed word."""
    settings = request.app[ARTIFACT_SETTINGS]
    build_id, refused = _build_id(request, settings)
    if refused is not None:
        return refused
    record = await asyncio.to_thread(read, settings.repositories, build_id)
    if record is None:
        return _error(404, f"no {what} of build {build_id} on node {settings.node_id}")
    if sign is not None:
        return web.json_response(sign_record(sign, settings.node_id, record))
    return web.json_response({"node": settings.node_id, **record})


async def serve_manifest(request: web.Request) -> web.Response:
    return await _serve_record(request, request.app[ARTIFACT_SETTINGS].store.manifest, "artifacts")


async def serve_tests(request: web.Request) -> web.Response:
    # Signed (shared/testrecord.py): a test's outcome on this node is evidence a client may show.
    settings = request.app[ARTIFACT_SETTINGS]
    return await _serve_record(request, settings.reports.read, "test outcomes", settings.sign)


async def serve_artifact(request: web.Request) -> web.StreamResponse:
    settings = request.app[ARTIFACT_SETTINGS]
    build_id, refused = _build_id(request, settings)
    if refused is not None:
        return refused
    path = request.match_info["path"]
    try:
        with settings.downloads.admit(request.match_info["client"]):
            try:
                artifact = await asyncio.to_thread(settings.store.read, settings.repositories, build_id, path)
            except ArtifactUnavailable as exc:
                return _error(exc.status, f"node {settings.node_id}: {exc.reason}")
            with artifact.file:
                return await _send(request, artifact, settings.node_id)
    except web.HTTPException as busy:
        return web.json_response({"error": busy.reason}, status=busy.status,
                                 headers={"Retry-After": busy.headers["Retry-After"]})


async def _send(request: web.Request, artifact: Artifact, node_id: int) -> web.StreamResponse:
    hex_digest = artifact.digest.removeprefix("sha256:")
    response = web.StreamResponse(headers={
        "Content-Type": "application/octet-stream",
        DIGEST_HEADER: artifact.digest,
        "Repr-Digest": f"sha-256=:{base64.b64encode(bytes.fromhex(hex_digest)).decode()}:",
        "Content-Disposition": f'attachment; filename="{artifact.path.rsplit("/", 1)[-1]}"',
        "X-Pbft-Node": str(node_id),
    })
    response.content_length = artifact.size
    await send_file(request, response, artifact.file)  # cut off if gone or stalled: its place goes to the next
    return response
