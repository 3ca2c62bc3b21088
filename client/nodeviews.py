"""What the nodes say about themselves and about one build, fetched for the dashboard.

Every node serves its state (`GET /status`) and its ledger's record of a
build (`GET /requests/{client}/{timestamp}`: its own result, the verdict it
holds, and the signed RESULT votes it kept) to anyone who asks. The client
asks all configured nodes at once, each with a short timeout, so a dead or
slow node shows as unreachable instead of holding the page up.

Up to f nodes may lie. What a node says about itself or its ledger is passed
on as that node's claim, labelled with it and reduced to the fields the
dashboard shows, with their types checked. The votes are different: each is
signed by its voter, so a vote is kept only if its signature verifies
against the voter's public key, whichever node served it; a node cannot put
a result in another node's mouth, and a vote every node lost still shows if
one node kept it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
from typing import Any, Iterable

import aiohttp
from yarl import URL

from client.noderequests import describe, read_capped
from pbft.authenticator import Authenticator
from shared.config import NodeConfig
from pbft.messages import MessageError, ResultVote, decode

CONNECT_TIMEOUT_S = 2.0
ANSWER_TIMEOUT_S = 4.0
# A status or a ledger record is a few kilobytes; a node sending more is not answering the question.
MAX_ANSWER_BYTES = 256 * 1024
MAX_TEXT = 1000
STATUS_NUMBERS = ("view", "primary", "last_executed", "low_watermark", "high_watermark", "builds_running")
LINK_NUMBERS = ("reconnects", "dropped", "expired")
MAX_PEERS = 1024  # peers a node may name as running another network document: bounded by n
HEX64 = re.compile(r"[0-9a-f]{64}")
VERDICT_STATES = frozenset({"pending", "certified", "disputed", "expired", "cancelled"})


class UnusableAnswer(Exception):
    """The node answered, but not with what was asked for."""


async def network_view(session: aiohttp.ClientSession, nodes: Iterable[NodeConfig]) -> list[dict]:
    """Each node's `GET /status`, or why there is none; in node order."""
    return list(await asyncio.gather(*(_node_status(session, node) for node in sorted(nodes, key=_id))))


async def build_view(
    session: aiohttp.ClientSession, nodes: Iterable[NodeConfig], verifier: Authenticator, client: str, build_id: int
) -> dict:
    """Each node's ledger record of the build `build_id`, and every vote that verifies, by voter."""
    nodes = sorted(nodes, key=_id)
    answers = await asyncio.gather(*(_node_record(session, node, client, build_id) for node in nodes))
    views, votes, refused = [], {}, []
    for node, (view, served) in zip(nodes, answers):
        views.append(view)
        for item in served:
            vote, problem = _checked_vote(item, verifier, client, build_id)
            if vote is None:
                refused.append(f"node {node.id} served {problem}")
                continue
            results = votes.setdefault(vote.sender, [])
            if vote.result.to_dict() not in results:
                results.append(vote.result.to_dict())
    return {
        "build_id": str(build_id),
        "nodes": views,
        # More than one result under one voter means that node signed two different votes.
        "votes": [{"node": sender, "results": votes[sender]} for sender in sorted(votes)],
        "refused_votes": refused,
    }


def _id(node: NodeConfig) -> int:
    return node.id


async def _node_status(session: aiohttp.ClientSession, node: NodeConfig) -> dict:
    view = {"node": node.id, "address": _address(node), "reachable": False, "status": None, "error": None}
    try:
        code, answer = await _get_json(session, node, "/status")
        if code != 200:
            raise UnusableAnswer(f"answered HTTP {code}")
        view.update(reachable=True, status=_status(answer))
    except UnusableAnswer as error:
        view.update(reachable=True, error=str(error))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        view["error"] = _describe(node, error)
    return view


async def _node_record(
    session: aiohttp.ClientSession, node: NodeConfig, client: str, build_id: int
) -> tuple[dict, list]:
    """This node's view of the build, and the raw votes it served (checked by the caller)."""
    view = {"node": node.id, "reachable": False, "executed": False, "seq": None, "own_result": None,
            "build": None, "verdict": None, "error": None}
    try:
        code, answer = await _get_json(session, node, f"/requests/{client}/{build_id}")
        if code == 404:
            view["reachable"] = True  # not executed there (yet): a node behind, or a build still being ordered
            return view, []
        if code != 200:
            raise UnusableAnswer(f"answered HTTP {code}")
        if not isinstance(answer, dict) or not _is_count(answer.get("seq")):
            raise UnusableAnswer("answered without a sequence number")
        view.update(
            reachable=True,
            executed=True,
            seq=answer["seq"],
            own_result=_result(answer.get("own_result")),
            # Where its build is while it has no result: waiting for a build slot, or running.
            build=answer.get("build") if answer.get("build") in ("queued", "running") else None,
            verdict=_verdict(answer.get("verdict")),
        )
        served = answer.get("votes")
        return view, served if isinstance(served, list) else []
    except UnusableAnswer as error:
        view.update(reachable=True, error=str(error))
    except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
        view["error"] = _describe(node, error)
    return view, []


async def _get_json(session: aiohttp.ClientSession, node: NodeConfig, path: str) -> tuple[int, Any]:
    url = URL.build(scheme=node.scheme, host=node.host, port=node.port, path=path)
    timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    async with session.get(url, timeout=timeout) as response:
        if response.status != 200:
            return response.status, None  # the callers say what the code means; its body is not needed
        body = await read_capped(response, MAX_ANSWER_BYTES)
        if body is None:
            raise UnusableAnswer(f"sent more than {MAX_ANSWER_BYTES} bytes")
        try:
            return response.status, json.loads(body)
        except (ValueError, RecursionError):
            raise UnusableAnswer("answered without JSON") from None


def _checked_vote(
    served: Any, verifier: Authenticator, client: str, build_id: int
) -> tuple[ResultVote, None] | tuple[None, str]:
    """The served vote if it is a vote of this build signed by the node it names, else why not."""
    try:
        vote = decode(served.get("vote") if isinstance(served, dict) else None)
    except (MessageError, RecursionError) as error:
        return None, f"a malformed vote ({str(error)[:100]})"
    if not isinstance(vote, ResultVote) or (vote.client, vote.timestamp) != (client, build_id):
        return None, "a vote of another build"
    if not verifier.verify_node(vote.sender, vote.payload(), vote.sig):
        return None, f"a vote of node {vote.sender} that does not verify"
    return vote, None


def _status(answer: Any) -> dict:
    if not isinstance(answer, dict) or not all(_is_count(answer.get(name)) for name in STATUS_NUMBERS):
        raise UnusableAnswer("answered GET /status without its numbers")
    status = {name: answer[name] for name in STATUS_NUMBERS}
    dropped = answer.get("dropped", {})
    status["dropped"] = {
        str(reason)[:100]: count for reason, count in (dropped.items() if isinstance(dropped, dict) else ())
        if _is_count(count)
    }
    status["network"] = _network(answer.get("network"))
    links = answer.get("links", {})
    status["links"] = {
        str(peer)[:20]: {
            "connected": link.get("connected") is True,
            **{name: link[name] for name in LINK_NUMBERS if _is_count(link.get(name))},
        }
        for peer, link in (links.items() if isinstance(links, dict) else ())
        if isinstance(link, dict)
    }
    return status


def _network(value: Any) -> dict:
    """The network document a node says it runs, and the peers it says run another: digests only."""
    value = value if isinstance(value, dict) else {}
    foreign = value.get("foreign")
    return {
        "digest": _digest(value.get("digest")),
        "foreign": {str(peer)[:20]: _digest(digest) for peer, digest in
                    (list(foreign.items())[:MAX_PEERS] if isinstance(foreign, dict) else ())},
    }


def _digest(value: Any) -> str:
    return value if isinstance(value, str) and HEX64.fullmatch(value) else ""


def _result(value: Any) -> dict | None:
    """A build result as a node claims it, or None when there is none or it is not one."""
    if not isinstance(value, dict) or not isinstance(value.get("status"), str):
        return None
    exit_code, commit, reason = value.get("exit_code"), value.get("commit"), value.get("reason", "")
    artifacts = value.get("artifacts")
    shown = {
        "status": value["status"][:40],
        "exit_code": exit_code if type(exit_code) is int else None,
        "commit": commit[:64] if isinstance(commit, str) else None,
        "reason": reason[:MAX_TEXT] if isinstance(reason, str) else "",
    }
    if isinstance(artifacts, str):
        shown["artifacts"] = artifacts[:80]  # "sha256:" and 64 hex digits; a node may claim anything
    return shown


def _verdict(value: Any) -> dict | None:
    if not isinstance(value, dict) or value.get("state") not in VERDICT_STATES:
        return None
    return {"state": value["state"], "result": _result(value.get("result"))}


def _is_count(value: Any) -> bool:
    return type(value) is int and value >= 0


def _address(node: NodeConfig) -> str:
    return f"[{node.host}]:{node.port}" if ":" in node.host else f"{node.host}:{node.port}"


def _describe(node: NodeConfig, error: BaseException) -> str:
    """Why a node did not answer, in words: "node 3 does not answer: connection refused"."""
    return f"node {node.id} does not answer: {_problem(error)}"


def _problem(error: BaseException) -> str:
    """The words for a failed request: aiohttp's wrapper named by what went wrong underneath."""
    if isinstance(error, aiohttp.ConnectionTimeoutError):
        return f"no connection within {CONNECT_TIMEOUT_S:g} s"
    if isinstance(error, (asyncio.TimeoutError, aiohttp.ServerTimeoutError)):
        return f"timed out after {ANSWER_TIMEOUT_S:g} s"
    if isinstance(error, aiohttp.ClientConnectorCertificateError):
        certificate_error = error.certificate_error
        reason = getattr(certificate_error, "verify_message", None) or getattr(certificate_error, "reason", None)
        return f"TLS certificate not accepted: {_short(reason or certificate_error)}"
    if isinstance(error, aiohttp.ClientSSLError):
        # OpenSSL's reason is a token (WRONG_VERSION_NUMBER: a node that does not speak TLS there).
        reason = getattr(error.os_error, "reason", None)
        return f"TLS handshake failed: {_short(reason.lower().replace('_', ' ') if reason else error.os_error)}"
    if isinstance(error, aiohttp.ClientConnectorError):
        error = error.os_error  # what the socket said, under aiohttp's "Cannot connect to host ..."
    if isinstance(error, socket.gaierror):
        return _short(error.strerror or "its host name does not resolve").lower()
    if isinstance(error, aiohttp.ServerDisconnectedError):
        return "it closed the connection without answering"
    if isinstance(error, aiohttp.ClientPayloadError):
        return "its answer broke off"
    if isinstance(error, OSError) and isinstance(error.errno, int) and error.errno > 0:
        return os.strerror(error.errno).lower()  # connection refused, no route to host, ...
    return _short(describe(error))


def _short(text: object) -> str:
    return " ".join(str(text).split())[:100]
