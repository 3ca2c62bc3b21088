"""Why nodes' artifacts differ: `GET /builds/{id}/divergence`, a build's sides and diffoscope's
report of each file that differs between the two largest.

Every node signs the digest of its artifact manifest in its reply (`pbft.build.Result`); a
build whose nodes signed different digests, `divergent` or certified over a dissenting node,
has sides: the nodes that signed each digest, the largest first (ties: the side of the lowest
node). For the two largest, the client takes one manifest from a node of each side (checked
against that side's signed digest, so a node speaks only for the side it signed), lists the
paths whose digests differ, and for the first MAX_FILES of them takes each side's bytes from
that node (checked against its manifest) and runs diffoscope on the pair:

- in a process of its own, one comparison at a time, each within DIFFOSCOPE_TIMEOUT_S of
  wall time, MEMORY_LIMIT_BYTES of address space and MAX_FILE_BYTES per file (a larger file
  is named, not compared), the two files named after the nodes of their sides;
- its report is text, cut at MAX_REPORT_BYTES, and a page shows it as text only;
- the result is kept for the MAX_EXPLAINED builds asked for last, once the record holds
  every node's reply: a build's artifacts and replies never change after that.

A file only one side has is named as such. The report says which bytes differ, never which
side is right: a node that lies, a build that is not reproducible and a node whose build
was made to vary all look alike here; the nodes on each side are named.
"""

from __future__ import annotations

import asyncio
import logging
import re
import resource
import shutil
import tempfile
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from aiohttp import web

from client.artifacts import (
    ArtifactSource, ArtifactsUnavailable, NodeSkipped, artifact_source, node_file, node_manifest,
)
from builder.plan.variations import suspects, traced, traces, variation
from pbft.attestation import manifest_digest
from pbft.messages import MessageError, Reply, decode

log = logging.getLogger(__name__)

DIVERGENCES: web.AppKey[Divergences] = web.AppKey("divergences")

MAX_FILES = 4
MAX_FILE_BYTES = 16 * 1024 * 1024
MAX_REPORT_BYTES = 256 * 1024
DIFFOSCOPE_TIMEOUT_S = 60.0
MEMORY_LIMIT_BYTES = 1024 * 1024 * 1024
MAX_EXPLAINED = 16


@dataclass(frozen=True)
class Side:
    digest: str
    nodes: tuple[int, ...]


def sides_of(record: dict) -> list[Side]:
    """The build's sides, from the replies its record holds (each signed, checked when it came):
    the nodes by the manifest digest they signed, the largest side first."""
    by_digest: dict[str, list[int]] = {}
    for wire in record.get("replies") or []:
        try:
            reply = decode(wire)
        except MessageError:
            continue
        if isinstance(reply, Reply) and reply.result.artifacts is not None:
            nodes = by_digest.setdefault(reply.result.artifacts, [])
            if reply.sender not in nodes:
                nodes.append(reply.sender)
    sides = [Side(digest, tuple(sorted(nodes))) for digest, nodes in by_digest.items()]
    return sorted(sides, key=lambda side: (-len(side.nodes), side.nodes))


class Divergences:
    """Explains builds' differing artifacts, one diffoscope at a time, keeping the last few."""

    def __init__(self, diffoscope: str | None = None) -> None:
        self._diffoscope = diffoscope if diffoscope is not None else shutil.which("diffoscope")
        self._explained: OrderedDict[str, dict] = OrderedDict()
        self._one_at_a_time = asyncio.Lock()

    async def explain(self, source: ArtifactSource, record: dict) -> dict:
        build_id = str(record["build_id"])
        if build_id in self._explained:
            self._explained.move_to_end(build_id)
            return self._explained[build_id]
        sides = sides_of(record)
        if len(sides) < 2:
            raise ArtifactsUnavailable(409, f"build {build_id}'s nodes signed {len(sides)} artifact digest"
                                            f"{'' if len(sides) == 1 else 's'}: nothing differs to explain")
        if self._diffoscope is None:
            raise ArtifactsUnavailable(503, "diffoscope is not installed here (scripts/setup.sh installs it)")
        async with self._one_at_a_time:
            explained = await self._compare(source, record, sides)
        # Kept once every node's reply is in the record: one still to come may add a side.
        if sum(len(side.nodes) for side in sides) >= len(source.nodes):
            self._explained[build_id] = explained
            while len(self._explained) > MAX_EXPLAINED:
                self._explained.popitem(last=False)
        return explained

    async def _compare(self, source: ArtifactSource, record: dict, sides: list[Side]) -> dict:
        pair = sides[:2]
        manifests = [await _manifest(source, record, side) for side in pair]
        (one_node, one), (other_node, other) = manifests
        differing = sorted(path for path in set(one) | set(other) if one.get(path) != other.get(path))
        files = []
        for path in differing[:MAX_FILES]:
            entry: dict = {"path": path, "digests": [one.get(path), other.get(path)]}
            if path not in one or path not in other:
                entry["report"] = f"only the nodes {list(pair[0 if path in one else 1].nodes)} made it"
            else:
                entry.update(await self._diff(source, record, path, pair, (one_node, one[path]),
                                              (other_node, other[path])))
            files.append(entry)
        return {
            "build_id": str(record["build_id"]),
            "sides": [{"digest": side.digest, "nodes": list(side.nodes)} for side in sides],
            "compared": [{"nodes": list(side.nodes), "from_node": node} for side, (node, _) in zip(pair, manifests)],
            "files": files, "more_files": max(0, len(differing) - MAX_FILES),
        }

    async def _diff(self, source: ArtifactSource, record: dict, path: str, pair: list[Side],
                    *sides: tuple[int, str]) -> dict:
        spools: list[BinaryIO] = []
        try:
            for node, digest in sides:
                spool = await node_file(source, record, node, path, digest)
                spools.append(spool)
                size = spool.seek(0, 2)
                spool.seek(0)
                if size > MAX_FILE_BYTES:
                    return {"report": f"not compared: node {node}'s file has {size} bytes, over {MAX_FILE_BYTES}"}
            return await self._diffoscope_of(path, spools, pair)
        except NodeSkipped as problem:
            return {"report": f"not compared: {problem}"}
        finally:
            for spool in spools:
                spool.close()

    async def _diffoscope_of(self, path: str, spools: list[BinaryIO], sides: list[Side]) -> dict:
        # Named after the sides, so that the report's two file names say whose bytes are whose.
        with tempfile.TemporaryDirectory(prefix="divergence-") as folder:
            names = []
            for spool, side in zip(spools, sides):
                named = Path(folder) / f"nodes-{'-'.join(map(str, side.nodes))}" / PurePosixPath(path).name
                named.parent.mkdir()
                with named.open("wb") as copy:
                    await asyncio.to_thread(shutil.copyfileobj, spool, copy)
                names.append(str(named.relative_to(folder)))
            return await self._run(folder, names)

    async def _run(self, folder: str, names: list[str]) -> dict:
        process = await asyncio.create_subprocess_exec(
            self._diffoscope, "--text", "-", "--no-progress", "--exclude-directory-metadata=yes",
            f"--max-report-size={MAX_REPORT_BYTES}", *names, cwd=folder,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL, preexec_fn=_limits,
        )
        try:
            async with asyncio.timeout(DIFFOSCOPE_TIMEOUT_S):
                report = await _read_capped(process.stdout, MAX_REPORT_BYTES + 1)
                if len(report) > MAX_REPORT_BYTES:
                    process.kill()  # enough said: it would block on a pipe nobody reads
                await process.wait()
        except TimeoutError:
            return {"report": f"not compared: diffoscope took more than {DIFFOSCOPE_TIMEOUT_S:g} s"}
        finally:
            if process.returncode is None:
                process.kill()
                await process.wait()
        truncated = len(report) > MAX_REPORT_BYTES
        text = report[:MAX_REPORT_BYTES].decode("utf-8", errors="replace")
        if process.returncode not in (0, 1) and not text:
            return {"report": f"not compared: diffoscope exited {process.returncode}"}
        return {"report": text or "diffoscope found no difference in the bytes", "truncated": truncated}


async def _manifest(source: ArtifactSource, record: dict, side: Side) -> tuple[int, dict[str, str]]:
    """One manifest of `side`, from the first of its nodes whose manifest has the side's digest."""
    refused = []
    for node in side.nodes:
        if node not in source.nodes:
            continue
        try:
            files = await node_manifest(source, record, node)
        except NodeSkipped as problem:
            refused.append(f"node {node} {problem}")
            continue
        if manifest_digest(files) == side.digest:
            return node, files
        refused.append(f"node {node} served a manifest other than the one it signed")
    raise ArtifactsUnavailable(502, f"no node of the side {list(side.nodes)} served its manifest: {'; '.join(refused)}")


async def _read_capped(stream: asyncio.StreamReader, limit: int) -> bytes:
    """What `stream` gives until its end, at most `limit` bytes (read() alone returns what has
    come so far)."""
    chunks, size = [], 0
    while size < limit and (chunk := await stream.read(limit - size)):
        chunks.append(chunk)
        size += len(chunk)
    return b"".join(chunks)


def _limits() -> None:
    """In the diffoscope process, before it starts: its address space bounded."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))


async def serve_divergence(request: web.Request, record: dict, varied: bool = False) -> web.Response:
    """`GET /builds/{id}/divergence`: the build's sides and the report of each differing file;
    with `varied` (the repository's `vary: true`), each side's nodes' variations too."""
    try:
        explained = await request.app[DIVERGENCES].explain(artifact_source(request.app), record)
    except ArtifactsUnavailable as error:
        return web.json_response({"error": error.reason}, status=error.status)
    return web.json_response(with_variations(explained, record) if varied else explained)


def with_variations(explained: dict, record: dict) -> dict:
    """`explained` with the variation each side's nodes built under (builder/plan/variations.py:
    a function of the node and the build, so known here too); `suspects`: the varied parts
    that may explain the sides ([]: none does; the cause is something not varied, or a node);
    and `causes`: the suspects whose traces the compared bytes hold, each side its own value's
    (the clock's year, the time zone's name, the umask's file mode), named from the evidence."""
    build_id = f"{record['client']}-{record['build_id']}"
    sides = [{**side, "variations": {str(node): variation(node, build_id).as_dict() for node in side["nodes"]}}
             for side in explained["sides"]]
    suspected = suspects([tuple(side["nodes"]) for side in explained["sides"]], build_id)
    return {**explained, "sides": sides, "suspects": suspected,
            "causes": _causes(explained, build_id, int(record["build_id"]) / 1e6, suspected)}


# A line of diffoscope's text report that one side's bytes hold: "-…" or "+…", after the
# tree drawing of nested comparisons ("│ -…"), and not a file header ("--- nodes-0/…").
_REPORT_LINE = re.compile(r"^[│├└─┄ ]*([-+])(?![-+]{2} )(.*)$")


def _causes(explained: dict, build_id: str, built_at_s: float, suspected: list[str]) -> list[str]:
    compared = explained.get("compared") or []
    if len(compared) != 2:
        return []
    said: dict[str, list[str]] = {"-": [], "+": []}
    for entry in explained.get("files", []):
        for line in str(entry.get("report", "")).splitlines():
            match = _REPORT_LINE.match(line)
            if match:
                said[match.group(1)].append(match.group(2))
    lines = ("\n".join(said["-"]), "\n".join(said["+"]))
    one, other = (traces(variation(side["from_node"], build_id), built_at_s) for side in compared)
    return [part for part in suspected if part in one and traced((one[part], other[part]), lines)]
