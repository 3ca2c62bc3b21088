"""The verdict log over HTTP (docs/verdict-log.md): what a node serves of it for anyone to check
offline (client/logproofs.py), against the network's keys alone.

    GET /log/head[?seq=S]                                  the co-signed head of the newest stable
                                                           checkpoint (or of S, if this node kept its proof)
    GET /log/inclusion?client=C&timestamp=T[&size=N]       where a build's verdict is, and the proof
                                                           that it is in the tree of N (default: the head's)
    GET /log/consistency?first=A&second=B                  the proof that the tree of B extends that of A

Proofs are computed from the leaves the store holds, which the replica wrote with the batches
that appended them: a node serves only what its own order appended.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import re
import sqlite3
from typing import Callable

from aiohttp import web

from node.keys import DRIVER
from node.counts import count_of
from node.logtree import GROW_LEAVES, MAX_TAIL, TreeBehind
from pbft.merkle import EMPTY_ROOT
from pbft.messages import Checkpoint, encode

HEAD_ROUTE, INCLUSION_ROUTE, CONSISTENCY_ROUTE = "/log/head", "/log/inclusion", "/log/consistency"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
GROW_INTERVAL_S = 0.25  # with node.logtree.GROW_LEAVES: 16,384 leaves a second indexed at most
logger = logging.getLogger(__name__)


def head_of(checkpoints: tuple[Checkpoint, ...]) -> dict:
    """The head a stable proof signs, as client/logproofs.py reads one."""
    first = checkpoints[0]
    return {"seq": first.seq, "size": first.log_size, "root": first.log_root or EMPTY_ROOT.hex(),
            "checkpoints": [encode(checkpoint) for checkpoint in checkpoints]}


def _bad(reason: str, status: int = 400, headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"error": reason}, status=status, headers=headers)


def retry_after_s(behind: TreeBehind) -> int:
    """Whole seconds until `grow_tree` has indexed enough for the proof asked: the leaves past
    MAX_TAIL at GROW_LEAVES a GROW_INTERVAL_S, at least one (RFC 9110's Retry-After)."""
    missing = behind.size - behind.grown - MAX_TAIL
    return max(1, math.ceil(missing * GROW_INTERVAL_S / GROW_LEAVES))


def _count(request: web.Request, name: str, default: int | None = None) -> int | None:
    text = request.query.get(name)
    if text is None:
        return default
    count = count_of(text)
    if count is None:
        raise ValueError(f"{name} is a non-negative integer")
    return count


def _with_proof(make: Callable[[], list[bytes]], **fields) -> web.Response:
    """`fields` and the proof `make` gives; or why this node has none to give now."""
    try:
        proof = make()
    except TreeBehind as error:  # a store from before the kept subtrees, still being indexed
        return _bad(str(error), 503, {"Retry-After": str(retry_after_s(error))})
    except LookupError as error:
        return _bad(str(error), 404)
    return web.json_response({**fields, "proof": [node.hex() for node in proof]})


def _stable_head(request: web.Request) -> tuple[Checkpoint, ...]:
    driver = request.app[DRIVER]
    driver.write_deferred()  # the leaves and proofs taken since the last save are part of what is served
    return driver.replica.stable_proof


async def serve_head(request: web.Request) -> web.Response:
    try:
        seq = _count(request, "seq")
    except ValueError as error:
        return _bad(str(error))
    proof = _stable_head(request)
    if seq is not None:
        store = request.app[DRIVER].store
        proof = (store.stable_proof(seq) or ()) if store is not None else ()
        if not proof:
            return _bad(f"this node kept no stable checkpoint at {seq}", 404)
    if not proof:
        return _bad("no checkpoint is stable here yet", 404)
    return web.json_response(head_of(proof))


async def serve_inclusion(request: web.Request) -> web.Response:
    client = request.query.get("client", "")
    if not _NAME.fullmatch(client):
        return _bad("client is a client's name")
    try:
        timestamp = _count(request, "timestamp")
        stable = _stable_head(request)
        size = _count(request, "size", stable[0].log_size if stable else 0)
    except ValueError as error:
        return _bad(str(error))
    if timestamp is None:
        return _bad("timestamp is the build's request timestamp")
    store = request.app[DRIVER].store
    found = store.verdict_log.leaf(client, timestamp) if store is not None else None
    if found is None:
        return _bad(f"the verdict of {client}/{timestamp} is not in this node's verdict log", 404)
    position, seq, data = found
    if not position < size <= store.verdict_log.size():
        return _bad(f"the verdict is at position {position}, not in a tree of {size} this node holds", 404)
    return _with_proof(lambda: store.verdict_log.inclusion(size, position),
                       position=position, seq=seq, size=size, leaf=data.decode())


async def serve_consistency(request: web.Request) -> web.Response:
    try:
        first, second = _count(request, "first"), _count(request, "second")
    except ValueError as error:
        return _bad(str(error))
    if first is None or second is None or first > second:
        return _bad("first and second are the sizes of two trees, first <= second")
    _stable_head(request)
    store = request.app[DRIVER].store
    held = store.verdict_log.size() if store is not None else 0
    if second > held:
        return _bad(f"this node's verdict log holds {held} verdicts, not {second}", 404)
    return _with_proof(lambda: store.verdict_log.consistency(second, first), first=first, second=second)


async def grow_tree(app: web.Application):
    """The cleanup context that keeps the verdict log's tree grown (node/logtree.py) in the
    background, a slice each GROW_INTERVAL_S: a store from before the tree existed is indexed
    without holding the event loop for long, and a proof then hashes few leaves."""
    task = asyncio.create_task(_grow_forever(app))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _grow_forever(app: web.Application) -> None:
    failing = False
    while True:
        await asyncio.sleep(GROW_INTERVAL_S)
        store = app[DRIVER].store
        if store is None:
            return
        try:
            store.verdict_log.grow()
            failing = False
        except (sqlite3.Error, LookupError) as error:
            if not failing:  # once per spell: a full disk stops the node's saves, which say so
                logger.warning("node=%d cannot grow the verdict log's tree: %s", app[DRIVER].replica.id,
                               " ".join(str(error).split())[:300])
            failing = True


def add_log_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(grow_tree)
    app.router.add_get(HEAD_ROUTE, serve_head)
    app.router.add_get(INCLUSION_ROUTE, serve_inclusion)
    app.router.add_get(CONSISTENCY_ROUTE, serve_consistency)
