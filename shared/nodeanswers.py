"""What the owners' command line (scripts/network.py) reads from running nodes: the network
document one serves, and what every node says it runs.

Each answer is bounded in time and size, and checked before any of it is used or printed: a
document must have the digest the node names, a status must have the shape node/driver.py
gives it. An answer that is not what a node gives counts as no answer, with the reason in
printable words (a faulty node chooses its answer, and its HTTP reason phrase).
"""

from __future__ import annotations

import json
import ssl
import urllib.error
import urllib.request
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from pbft.networkchange import MAX_DOCUMENT_CHARS, OWNER_NAME_PATTERN, document_digest
from shared.networkdiff import printable

TIMEOUT_S = 10.0
MAX_DOCUMENT_ANSWER_BYTES = 2 * MAX_DOCUMENT_CHARS  # the document, escaped, and a few fields
MAX_STATUS_BYTES = 1024 * 1024  # a status names a few numbers per peer
MAX_ASKED_AT_ONCE = 16
HEX64 = frozenset("0123456789abcdef")


class NodeAnswerError(Exception):
    """A node gave no answer of the kind asked for; the text says why, printable."""


def get_json(url: str, limit: int, timeout_s: float = TIMEOUT_S, context: ssl.SSLContext | None = None) -> Any:
    """The JSON `url` answers with, at most `limit` bytes of it, within `timeout_s` per read."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s, context=context) as response:
            body = response.read(limit + 1)
    except urllib.error.HTTPError as error:
        raise NodeAnswerError(f"HTTP {error.code}") from None
    except (OSError, ValueError) as error:  # refused, timed out, TLS, a malformed URL
        raise NodeAnswerError(printable(str(getattr(error, "reason", error))[:200])) from None
    if len(body) > limit:
        raise NodeAnswerError(f"answered more than {limit} bytes")
    try:
        return json.loads(body)
    except (ValueError, RecursionError):
        raise NodeAnswerError("answered no JSON") from None


@dataclass(frozen=True)
class Served:
    """A network document as a node serves it (GET /network/document or /network/first)."""

    document: dict
    digest: str
    changed_at: int | None  # the sequence number of the change that made it; None: not said
    signed_by: tuple[str, ...]  # the owners whose signatures carried that change


def served_document(url: str, which: str = "/network/document") -> Served:
    answer = get_json(url.rstrip("/") + which, MAX_DOCUMENT_ANSWER_BYTES)
    document = answer.get("document") if isinstance(answer, dict) else None
    if not isinstance(document, dict) or document_digest(document) != answer.get("digest"):
        raise NodeAnswerError("answered no network document with its digest")
    changed_at, signed_by = answer.get("changed_at"), answer.get("signed_by", [])
    if changed_at is not None and (type(changed_at) is not int or changed_at < 0):
        raise NodeAnswerError("answered a changed_at that is no sequence number")
    if not isinstance(signed_by, list) or not all(
            isinstance(name, str) and OWNER_NAME_PATTERN.fullmatch(name) for name in signed_by):
        raise NodeAnswerError("answered a signed_by that is no list of owners' names")
    return Served(document, answer["digest"], changed_at, tuple(signed_by))


@dataclass(frozen=True)
class Running:
    """What a node's GET /status says it runs: its document's digest, the epoch (the sequence
    number of the change whose members are in force, 0 for the first), the members and f."""

    digest: str
    epoch: int
    members: tuple[int, ...]
    f: int
    last_executed: int

    def runs(self) -> tuple:
        """What nodes that run the same network say alike (how far each executed differs)."""
        return self.digest, self.epoch, self.members, self.f


def node_status(url: str, timeout_s: float, context: ssl.SSLContext | None = None) -> Running:
    answer = get_json(url.rstrip("/") + "/status", MAX_STATUS_BYTES, timeout_s, context)
    network = answer.get("network") if isinstance(answer, dict) else None
    digest = network.get("digest") if isinstance(network, dict) else None
    if not (isinstance(digest, str) and len(digest) == 64 and set(digest) <= HEX64):
        raise NodeAnswerError("answered no status naming its network document")
    numbers = [answer.get(name) for name in ("epoch", "f", "last_executed")]
    members = answer.get("members")
    if not all(_count(number) for number in numbers) or not (
            isinstance(members, list) and len(members) <= 1024 and all(_count(member) for member in members)):
        raise NodeAnswerError("answered a status without its epoch, members, f and last executed")
    epoch, f, last_executed = numbers
    return Running(digest, epoch, tuple(members), f, last_executed)


def every_status(urls: dict[int, str], timeout_s: float,
                 context: ssl.SSLContext | None = None) -> dict[int, Running | NodeAnswerError]:
    """Each node's status, asked of all at once, or why it gave none."""
    def ask(url: str) -> Running | NodeAnswerError:
        try:
            return node_status(url, timeout_s, context)
        except NodeAnswerError as error:
            return error

    with ThreadPoolExecutor(max_workers=max(1, min(MAX_ASKED_AT_ONCE, len(urls)))) as pool:
        return dict(zip(urls, pool.map(ask, urls.values())))


def majority(statuses: dict[int, Running | NodeAnswerError]) -> tuple | None:
    """What more than half of the nodes asked run (`Running.runs`), or None if nothing is."""
    counted = Counter(status.runs() for status in statuses.values() if isinstance(status, Running))
    found = counted.most_common(1)
    return found[0][0] if found and found[0][1] * 2 > len(statuses) else None


def _count(value: Any) -> bool:
    return type(value) is int and 0 <= value < 2 ** 63
