"""`GET /builds/{id}/artifacts[/{path}]`: a build's artifacts, served only as the nodes agreed on them.

The agreed result of a successful build that declares artifacts carries one
digest for all of them (`pbft.build.Result.artifacts`): the
`manifest_digest` of their {path: "sha256:<hex>"} mapping. That mapping and
the files stay on the nodes, which serve them to the network's clients on
signed requests (node/artifactroute.py). Up to f nodes may lie, so what a
node serves is checked here before anything of it is passed on:

- a manifest is taken only if its digest is the agreed one; whoever holds
  it then holds every file's agreed digest;
- a file is served only if the sha256 of its bytes, computed here, is the
  agreed manifest's digest for that path.

Nodes are asked one at a time: first those whose replies made the verdict,
in order (they signed this very digest), then the others. A node that
answers wrongly, too slowly or not at all is skipped and logged; only if no
node serves what was agreed does the caller get 502, with what each node
did. Nothing of a file may be passed on before its digest is checked, so
it is spooled to an unnamed file on disk as it arrives and hashed on the way,
in chunks: a download holds a chunk in memory, and on disk at most the
network's `build.artifacts_mb` (slightly more from a lying node, which is cut
off there). Downloads at once are bounded in all and per caller
(`client.transfers`); a caller that reads nothing of its file for
`shared.transfergate.STALL_S` is cut off, so it cannot hold its place for ever.

`agreed_manifest`, `agreed_files` and `agreed_file` take an
`ArtifactSource` (`artifact_source(app)` in the client app), so that any
route can use them.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, BinaryIO, Mapping

import aiohttp
from aiohttp import web

from client.buildlogs import LOG_PROXY, NODE_HEADER
from client.noderequests import describe, read_capped, signed_request
from client.transfers import NODE_SESSIONS, TRANSFERS, caller
from shared.transfergate import CHUNK_BYTES, send_file
from pbft.attestation import MAX_ARTIFACT_PATH_CHARS, is_artifact_path, is_manifest_entry, manifest_digest
from pbft.authenticator import Authenticator
from shared.config import NetworkConfig, NodeConfig

log = logging.getLogger(__name__)

MANIFEST_TIMEOUT = aiohttp.ClientTimeout(total=10.0, connect=5.0)
# A file may be tens of megabytes, so its whole transfer may take a while; a node silent for 15 s is skipped.
FILE_TIMEOUT = aiohttp.ClientTimeout(total=120.0, connect=5.0, sock_read=15.0)
# A manifest lists at most 256 files (builder/workspace/artifacts.py) with their digests and sizes: well under this.
MIB = 1024 * 1024
MAX_MANIFEST_BYTES = MIB
# No honest file is larger than a build's artifacts together may be. The cap
# only bounds what a lying node can make this client hold, so a little slack
# over the network's limit costs nothing.
FILE_SLACK_BYTES = MIB
DIGEST_HEADER = "X-Pbft-Artifact-Digest"


class ArtifactsUnavailable(Exception):
    """No artifact can be served; `status` is the HTTP status that says why."""

    def __init__(self, status: int, reason: str):
        super().__init__(reason)
        self.status = status
        self.reason = reason


class NodeSkipped(Exception):
    """What one node did instead of serving what was asked for."""


@dataclass(frozen=True)
class ArtifactSource:
    """What fetching a build's artifacts from the nodes needs."""

    session: aiohttp.ClientSession
    client_name: str
    nodes: Mapping[int, NodeConfig]
    auth: Authenticator  # signs as this client
    max_file_bytes: int  # a node sending a longer file is cut off
    spool_dir: Path | None = None  # where files are checked; None: the system's temporary directory


@dataclass(frozen=True)
class AgreedManifest:
    digest: str  # the agreed result's `artifacts`
    files: dict[str, str]  # path → "sha256:<hex>", whose manifest_digest is `digest`
    from_node: int  # the node that served it


@dataclass(frozen=True)
class AgreedFile:
    path: str
    digest: str
    spool: BinaryIO  # the bytes, checked, in an unnamed file; the caller closes it
    size: int
    from_node: int  # the node whose bytes these are


@dataclass(frozen=True)
class SpoolSettings:
    max_file_bytes: int  # a node sending a longer file is cut off
    directory: Path  # where downloads are spooled, in files unlinked as they are made


SPOOL = web.AppKey("artifact_spool", SpoolSettings)


def add_artifact_proxy(app: web.Application, config: NetworkConfig, client_name: str) -> None:
    """What `artifact_source` needs besides the build-log proxy's settings and the node sessions."""
    app[SPOOL] = SpoolSettings(
        config.build.artifacts_mb * MIB + FILE_SLACK_BYTES, Path(config.data_dir) / f"client-{client_name}" / "spool"
    )


def artifact_source(app: web.Application) -> ArtifactSource:
    """The client app's way to the nodes' artifacts: the stream session, the log proxy's nodes and key."""
    proxy = app[LOG_PROXY]
    spool = app[SPOOL]
    return ArtifactSource(
        app[NODE_SESSIONS].streams, proxy.client_name, proxy.nodes, proxy.auth, spool.max_file_bytes, spool.directory
    )


async def serve_manifest(request: web.Request, record: dict) -> web.Response:
    """The agreed {path: digest} of the build `record`, and the node that served it."""
    try:
        manifest = await agreed_manifest(artifact_source(request.app), record)
    except ArtifactsUnavailable as error:
        return web.json_response({"error": error.reason}, status=error.status)
    return web.json_response({
        "build_id": record["build_id"],
        "manifest_digest": manifest.digest,
        "artifacts": manifest.files,
        "from_node": manifest.from_node,
    })


async def serve_file(request: web.Request, record: dict) -> web.StreamResponse:
    """The bytes of the build's artifact at the URL's path, once they have the agreed digest."""
    with request.app[TRANSFERS].downloads.admit(caller(request)):
        try:
            artifact = await agreed_file(artifact_source(request.app), record, request.match_info["path"])
        except ArtifactsUnavailable as error:
            return web.json_response({"error": error.reason}, status=error.status)
        with artifact.spool:
            # A valid path holds only letters, digits and `. _ + @ -`: nothing to escape in the header.
            filename = artifact.path.rsplit("/", 1)[-1]
            response = web.StreamResponse(headers={
                "Content-Type": "application/octet-stream",
                "Content-Disposition": f'attachment; filename="{filename}"',
                DIGEST_HEADER: artifact.digest,
                NODE_HEADER: str(artifact.from_node),
            })
            response.content_length = artifact.size
            if not await send_file(request, response, artifact.spool):
                # Gone, or reading nothing for a minute: its place goes to the next caller.
                log.info("artifact %r of build %s: caller %s stopped reading", artifact.path, record["build_id"],
                         caller(request))
            return response


def agreed_digest(record: dict) -> str:
    """The manifest digest the nodes agreed on for the build `record`; ArtifactsUnavailable if there is none."""
    build_id = record["build_id"]
    if record["state"] != "accepted":
        raise ArtifactsUnavailable(
            409, f"build {build_id} is {record['state']}, not accepted: there is no agreed digest to check artifacts by"
        )
    result = record["result"]
    digest = result.get("artifacts")
    if digest is None:
        if result["status"] != "success":
            raise ArtifactsUnavailable(404, f"build {build_id} ended {result['status']}: only a success has artifacts")
        raise ArtifactsUnavailable(404, f"build {build_id} declared no artifacts")
    return digest


def node_order(record: dict, nodes: Mapping[int, NodeConfig]) -> list[int]:
    """The nodes to ask: those that agreed on the verdict first, in order, then the others by id."""
    agreed = [node_id for node_id in record["agreed_by"] if node_id in nodes]
    return agreed + [node_id for node_id in sorted(nodes) if node_id not in agreed]


async def agreed_manifest(source: ArtifactSource, record: dict) -> AgreedManifest:
    """The first manifest a node serves whose digest is the agreed one."""
    digest = agreed_digest(record)
    build_id = record["build_id"]
    # Under the client that signed it: with several clients, another may have (client.ledgerimport).
    path = f"/artifacts/{record['client']}/{build_id}"
    skipped = []
    for node_id in node_order(record, source.nodes):
        try:
            files = _files(await _get(source, node_id, path, MANIFEST_TIMEOUT, MAX_MANIFEST_BYTES))
            served = manifest_digest(files)
            if served != digest:
                raise NodeSkipped(f"served a manifest whose digest is {_short(served)}, not the agreed one")
        except NodeSkipped as problem:
            log.warning("artifacts of build %s: node %d skipped: %s", build_id, node_id, problem)
            skipped.append(f"node {node_id} {problem}")
            continue
        return AgreedManifest(digest, files, node_id)
    raise ArtifactsUnavailable(
        502, f"no node served build {build_id}'s manifest with the agreed {_short(digest)}: {'; '.join(skipped)}"
    )


async def node_manifest(source: ArtifactSource, record: dict, node_id: int) -> dict[str, str]:
    """What node `node_id` says the build `record`'s artifacts are, whatever its digest (the
    caller checks it against what that node signed); NodeSkipped with what the node did instead."""
    path = f"/artifacts/{record['client']}/{record['build_id']}"
    return _files(await _get(source, node_id, path, MANIFEST_TIMEOUT, MAX_MANIFEST_BYTES))


async def node_json(source: ArtifactSource, node_id: int, path: str, max_bytes: int) -> dict:
    """Node `node_id`'s JSON object at `path` (a signed GET); NodeSkipped with what it did instead."""
    body = await _get(source, node_id, path, MANIFEST_TIMEOUT, max_bytes)
    try:
        answer = json.loads(body)
    except ValueError:
        raise NodeSkipped("sent something that is not JSON") from None
    if not isinstance(answer, dict):
        raise NodeSkipped("sent JSON that is not an object")
    return answer


async def node_file(source: ArtifactSource, record: dict, node_id: int, path: str, digest: str) -> BinaryIO:
    """Node `node_id`'s bytes of artifact `path`, spooled and checked against `digest` (that node's
    own manifest's); NodeSkipped otherwise. The caller closes the file."""
    spool = await asyncio.to_thread(_spool_file, source.spool_dir)
    try:
        url_path = f"/artifacts/{record['client']}/{record['build_id']}/{path}"
        size, served = await _spool(source, node_id, url_path, spool)
        if served != digest:
            raise NodeSkipped(f"served {size} bytes whose digest is {_short(served)}, not its manifest's")
    except BaseException:
        spool.close()
        raise
    spool.seek(0)
    return spool


async def agreed_files(source: ArtifactSource, record: dict) -> dict[str, str]:
    """The agreed {path: "sha256:<hex>"} of the build `record`'s artifacts."""
    return (await agreed_manifest(source, record)).files


async def agreed_file(source: ArtifactSource, record: dict, path: str) -> AgreedFile:
    """The first bytes a node serves for the artifact at `path` whose sha256 is the agreed one."""
    if not is_artifact_path(path):
        raise ArtifactsUnavailable(
            400, f"an artifact path is relative, at most {MAX_ARTIFACT_PATH_CHARS} characters, of letters, digits and"
                 " `. _ + @ -` between single slashes, with no `.` or `..` part",
        )
    build_id = record["build_id"]
    manifest = await agreed_manifest(source, record)
    digest = manifest.files.get(path)
    if digest is None:
        raise ArtifactsUnavailable(404, f"build {build_id} has no artifact {path!r}")
    url_path = f"/artifacts/{record['client']}/{build_id}/{path}"
    skipped = []
    for node_id in node_order(record, source.nodes):
        spool = await asyncio.to_thread(_spool_file, source.spool_dir)
        try:
            size, served = await _spool(source, node_id, url_path, spool)
            if served != digest:
                raise NodeSkipped(f"served {size} bytes whose digest is {_short(served)}, not the agreed one")
        except NodeSkipped as problem:
            spool.close()
            log.warning("artifact %r of build %s: node %d skipped: %s", path, build_id, node_id, problem)
            skipped.append(f"node {node_id} {problem}")
            continue
        except BaseException:
            spool.close()
            raise
        spool.seek(0)
        return AgreedFile(path, digest, spool, size, node_id)
    raise ArtifactsUnavailable(
        502, f"no node served build {build_id}'s {path!r} with the agreed {_short(digest)}: {'; '.join(skipped)}"
    )


async def _get(
    source: ArtifactSource, node_id: int, path: str, timeout: aiohttp.ClientTimeout, max_bytes: int
) -> bytes:
    """The body of the node's answer to a signed GET of `path`; NodeSkipped with what the node did instead."""
    async with _answer(source, node_id, path, timeout) as answer:
        body = await read_capped(answer, max_bytes)
    if body is None:
        raise NodeSkipped(f"sent more than {max_bytes} bytes")
    return body


async def _spool(source: ArtifactSource, node_id: int, path: str, spool: BinaryIO) -> tuple[int, str]:
    """Write the node's answer to a signed GET of `path` into `spool`, hashing it on the way:
    (its size, "sha256:<hex>"); NodeSkipped with what the node did instead."""
    sha256 = hashlib.sha256()
    size = 0
    async with _answer(source, node_id, path, FILE_TIMEOUT) as answer:
        try:
            async for chunk in answer.content.iter_chunked(CHUNK_BYTES):
                size += len(chunk)
                if size > source.max_file_bytes:
                    answer.close()  # the node stops sending
                    raise NodeSkipped(f"sent more than {source.max_file_bytes} bytes")
                sha256.update(chunk)
                await asyncio.to_thread(spool.write, chunk)
        except OSError as error:
            # This client's disk, not the node: no other node would do better.
            raise ArtifactsUnavailable(503, f"cannot spool the download here: {error.strerror}") from None
    return size, "sha256:" + sha256.hexdigest()


@asynccontextmanager
async def _answer(
    source: ArtifactSource, node_id: int, path: str, timeout: aiohttp.ClientTimeout
) -> AsyncIterator[aiohttp.ClientResponse]:
    """The node's 200 answer to a signed GET of `path`, read within `timeout`; NodeSkipped otherwise."""
    url, headers = signed_request(source.auth, source.client_name, source.nodes[node_id], path)
    try:
        async with source.session.get(url, headers=headers, timeout=timeout) as answer:
            if answer.status == 401:
                raise NodeSkipped("refused this client's signed request (401)")
            if answer.status == 404:
                raise NodeSkipped("does not have it (404)")
            if answer.status in (429, 503):
                raise NodeSkipped(f"is busy ({answer.status})")
            if answer.status != 200:
                raise NodeSkipped(f"answered {answer.status}")
            yield answer
    except asyncio.TimeoutError:
        raise NodeSkipped(f"did not answer within {timeout.total:g} s (or went silent)") from None
    except aiohttp.ClientError as error:
        raise NodeSkipped(f"unreachable: {describe(error)}") from None


def _spool_file(directory: Path | None) -> BinaryIO:
    if directory is not None:
        directory.mkdir(parents=True, exist_ok=True)
    try:
        return tempfile.TemporaryFile(dir=directory)
    except OSError as error:
        raise ArtifactsUnavailable(503, f"cannot spool the download here: {error.strerror}") from None


def _files(body: bytes) -> dict[str, str]:
    """The manifest's {path: digest}, each well formed; NodeSkipped if the body is not such a manifest."""
    try:
        manifest: Any = json.loads(body)
    except (ValueError, RecursionError):
        raise NodeSkipped("sent a manifest that is not JSON") from None
    files = manifest.get("artifacts") if isinstance(manifest, dict) else None
    if not isinstance(files, dict):
        raise NodeSkipped("sent a manifest without an `artifacts` mapping")
    for path, digest in files.items():
        if not is_manifest_entry(path, digest):
            raise NodeSkipped("sent a manifest with a malformed path or digest")
    return files


def _short(digest: str) -> str:
    """Enough of a digest to tell two apart in a reason."""
    return digest[:19] + "…"
