"""Every build of the network in every client's records: the builds other clients asked for,
imported from the nodes' ledgers.

Several clients may serve one network (docs/operations.md, "Several clients"): a forge delivers to any of them,
and each answers status and dashboard reads for every build, including one whose client is
down. Each client reads the order as the nodes executed it (`GET /ledger?after=SEQ`, every
member at once) and records each build another client signed:

- the request is checked against its client's public key, so no node can make one up;
- its verdict is the result f+1 members signed in matching RESULT votes, checked as a
  certificate is (client.certificate), so no node can make one up either; `disputed` once no
  result can be certified any more (pbft.quorum.verdict); until then it is pending, and asked about again (`GET
  /requests/{client}/{timestamp}`), for as long as its own client would wait (`give_up_s`);
- the reading moves on only through sequence numbers f+1 members served, and takes the
  builds every answer holds: one of those members is honest and holds every build there,
  so a faulty node cannot hide one either.

A client's own builds it records as it signs them; cancels of another client's build it
leaves to that client (pbft.cancels: a client cancels only its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator

import aiohttp
from aiohttp import web

from client.certificate import VERSION, CertificateError, check_certificate, checked_request
from client.keys import LIVE_KEY, NAME_KEY, RECORDS_KEY
from client.noderequests import describe, read_capped
from client.records import BuildRecords
from pbft.encoding import canonical
from pbft.messages import MessageError, Request, ResultVote, decode, encode
from pbft.quorum import verdict
from shared.config import NetworkConfig, NodeConfig
from shared.crypto import parse_public_key, verify_bytes
from shared.reload import LiveConfig

log = logging.getLogger(__name__)

POLL_S = 2.0  # between two readings of the order, when the last one found nothing new
ANSWER_TIMEOUT_S = 10.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a page: 64 batches (node/server.py LEDGER_PAGE), each build with its votes
FOLLOW_UPS = 32  # other clients' builds without a verdict asked about again per reading, in turn


class LedgerImport:
    def __init__(self, live: LiveConfig, name: str, records: BuildRecords, session: aiohttp.ClientSession) -> None:
        self._live, self._name, self._records, self._session = live, name, records, session
        self._followed_up_to = 0  # the build id the last follow-up reached; they go round in turn
        # Why each node's last answer to each kind of question was refused, so that a refusal is
        # said at warning once, when it starts or its reason changes, not at every reading: at
        # most two entries a member.
        self._refused: dict[tuple[int, str], str] = {}

    async def run(self) -> None:
        """Read on for as long as the client runs; an error of one reading is logged, not fatal."""
        while True:
            try:
                moved = await self.step()
            except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
                log.warning("reading the nodes' ledgers failed: %s", error)
                moved = False
            except Exception:  # noqa: BLE001 - one bad reading must not end the import for good
                log.exception("reading the nodes' ledgers failed")
                moved = False
            if not moved:
                await asyncio.sleep(POLL_S)

    async def step(self) -> bool:
        """One reading: the next page of the order, then a turn of follow-ups. Whether the
        reading moved on (another page may be waiting)."""
        config = self._live.current
        if len(config.clients) < 2:
            return False  # no other client: every build is this one's own
        after = self._records.imported.cursor()
        pages = await self._ask_all(config, "/ledger", {"after": str(after)})
        moved = False
        if len(pages) > config.f:
            # f+1 members served every sequence number up to the f+1-th highest `through`.
            through = sorted((_int(page.get("through"), after) for page in pages), reverse=True)[config.f]
            if through > after:
                builds = [build for page in pages for build in _list(page.get("builds"))
                          if isinstance(build, dict) and _int(build.get("seq"), through + 1) <= through]
                self._take(config, builds)
                self._records.imported.move_cursor(through)
                moved = True
        await self._follow_up(config)
        self._records.store.commit()
        return moved

    async def _follow_up(self, config: NetworkConfig) -> None:
        waiting = self._records.imported.waiting(self._name, self._followed_up_to, FOLLOW_UPS)
        # A turn that reached the last of them begins the next at the first: with fewer than
        # FOLLOW_UPS waiting, every reading asks about each.
        self._followed_up_to = waiting[-1]["build_id"] if len(waiting) == FOLLOW_UPS else 0
        for record in waiting:
            request = record["request"]
            path = f"/requests/{request.get('client')}/{record['build_id']}"
            self._take(config, await self._ask_all(config, path, {}))

    async def _ask_all(self, config: NetworkConfig, path: str, query: dict[str, str]) -> list[dict]:
        """Every member's answer to GET `path`, of those that gave one."""
        answers = await asyncio.gather(*(self._get(node, path, query) for node in config.nodes))
        return [answer for answer in answers if isinstance(answer, dict)]

    async def _get(self, node: NodeConfig, path: str, query: dict[str, str]) -> dict | None:
        """Node `node`'s answer to GET `path`: a JSON object read whole, within MAX_ANSWER_BYTES;
        None for no answer, a refused one said at warning with its reason."""
        kind = path.split("/")[1]
        timeout = aiohttp.ClientTimeout(total=ANSWER_TIMEOUT_S)
        try:
            async with self._session.get(node.url(path), params=query, timeout=timeout) as response:
                if response.status == 404 and kind == "requests":
                    return None  # the node has not executed that build (yet): no refusal
                if response.status != 200:
                    return self._refuse(node, kind, f"answered HTTP {response.status}")
                # Read whole: one read of the stream gives only what has arrived so far.
                body = await read_capped(response, MAX_ANSWER_BYTES)
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as error:
            return self._refuse(node, kind, f"did not answer: {describe(error)}")
        if body is None:
            return self._refuse(node, kind, f"sent more than {MAX_ANSWER_BYTES} bytes")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            return self._refuse(node, kind, "answered without JSON")
        if not isinstance(answer, dict):
            return self._refuse(node, kind, "answered JSON that is not an object")
        if self._refused.pop((node.id, kind), None) is not None:
            log.info("node %d answers GET /%s again", node.id, kind)
        return answer

    def _refuse(self, node: NodeConfig, kind: str, reason: str) -> None:
        if self._refused.get((node.id, kind)) != reason:
            log.warning("node %d's answer to GET /%s is refused: %s (asked again at every reading)",
                        node.id, kind, reason)
        self._refused[(node.id, kind)] = reason
        return None

    def _take(self, config: NetworkConfig, builds: list[Any]) -> None:
        """Record the builds of other clients among `builds` (each as a node's ledger shows it,
        one build possibly from several nodes), with a verdict where f+1 members signed one."""
        votes: dict[str, list[Any]] = {}
        requests: dict[str, Any] = {}
        for build in builds:
            wire = build.get("request") if isinstance(build, dict) else None
            if not isinstance(wire, dict) or wire.get("client") == self._name:
                continue
            key = canonical(wire).decode()
            requests[key] = wire
            votes.setdefault(key, []).extend(
                entry.get("vote") for entry in _list(build.get("votes")) if isinstance(entry, dict))
        for key, wire in requests.items():
            self._take_one(config, wire, votes[key])

    def _take_one(self, config: NetworkConfig, wire: dict, bodies: list[Any]) -> None:
        try:
            request = checked_request(wire, config)
        except CertificateError as error:
            log.warning("a node's ledger holds a request that does not verify: %s", error.reason)
            return
        if request.operation.cancels is not None:
            return  # its client's business: it stops that client's own build (pbft.cancels)
        records, build_id = self._records, request.timestamp
        record = records.builds.get(build_id)
        if record is None:
            records.builds.add_pending(request, min(time.time(), build_id / 1_000_000))
            log.info("build %d of client %s imported from the nodes' ledgers", build_id, request.client)
            record = records.builds.get(build_id)
        if record["request"] != wire:
            # Lanes keep clients' build ids apart (shared.config_principals): only a client that
            # left its lane makes one meet another's, and the record there stays as it is.
            log.warning("build %d of client %s has the id of another build here: not imported", build_id,
                        request.client)
            return
        if record["state"] != "pending":
            return
        votes = verified_votes(config, request, bodies)
        elapsed_ms = max(0, int(time.time() * 1000 - build_id / 1000))
        if disputed(config, votes):
            records.verdicts.dispute(build_id, {vote.sender: vote.result for vote in votes}, config.f, elapsed_ms,
                                     votes)
            log.warning("imported verdict of build %d of client %s: disputed", build_id, request.client)
            return
        agreed = certified(config, wire, votes)
        if agreed is not None:
            signers, group = agreed
            records.verdicts.accept(build_id, group[0].result, signers, elapsed_ms, group)
            log.info("imported verdict of build %d of client %s: %s agreed_by=%s", build_id, request.client,
                     group[0].result.status, signers)
        elif elapsed_ms / 1000 > give_up_s(config):
            records.verdicts.time_out(build_id, elapsed_ms, votes)
            log.warning("build %d of client %s: no f+1 matching votes in the ledgers after %.0f s: timeout",
                        build_id, request.client, elapsed_ms / 1000)


def give_up_s(config: NetworkConfig) -> float:
    """How long after its request an imported build waits for its verdict: as long as its own
    client would (client.requests), and the time its verdict takes to settle."""
    protocol = config.protocol
    return max(protocol.client_deadline_s, protocol.client_queue_limit_s) + protocol.client_settle_s


def verified_votes(config: NetworkConfig, request: Request, bodies: list[Any]) -> list[ResultVote]:
    """The RESULT votes among `bodies` (as the nodes' ledgers keep them) that a member signed for
    `request`, the first of each member. A vote that does not verify on its own counts for
    nothing, so a faulty node's copy of another's vote cannot spoil the others."""
    members = {node.id: parse_public_key(node.public_key) for node in config.nodes}
    votes: dict[int, ResultVote] = {}
    for body in bodies:
        try:
            vote = decode(body)
        except (MessageError, RecursionError, TypeError, ValueError):
            continue
        if (isinstance(vote, ResultVote) and vote.key == request.key and vote.sender in members
                and verify_bytes(members[vote.sender], canonical(vote.payload()), vote.sig)):
            votes.setdefault(vote.sender, vote)
    return list(votes.values())


def disputed(config: NetworkConfig, votes: list[ResultVote]) -> bool:
    """Whether no result can be certified any more, by the ledgers' own rule (pbft.quorum.verdict)."""
    return verdict({vote.sender: vote.result.agreed_key() for vote in votes}, config.n, config.f)[0] == "disputed"


def certified(config: NetworkConfig, wire: dict, votes: list[ResultVote]) -> tuple[list[int], list[ResultVote]] | None:
    """The members that signed one result for the request `wire` in f+1 of `votes`, and their
    votes, checked as a certificate is; None while no result has that many."""
    by_result: dict[str, list[ResultVote]] = {}
    for vote in votes:
        by_result.setdefault(canonical(vote.result.agreed()).decode(), []).append(vote)
    for agreed, group in by_result.items():
        if len(group) <= config.f:
            continue
        certificate = {"version": VERSION, "request": wire, "replies": [encode(vote) for vote in group],
                       "result": json.loads(agreed)}
        try:
            summary = check_certificate(certificate, config)
        except CertificateError as error:
            log.warning("votes from the nodes' ledgers do not certify a verdict: %s", error.reason)
            continue
        return list(summary.signers), group
    return None


def _int(value: Any, otherwise: int) -> int:
    """A node's number, or `otherwise` for anything else it sent."""
    return value if type(value) is int else otherwise


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


async def ledger_import_ctx(app: web.Application) -> AsyncIterator[None]:
    """Import other clients' builds for as long as the app runs; after the records' context."""
    live = app[LIVE_KEY]
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=live.current.node_ssl())) as session:
        task = asyncio.create_task(LedgerImport(live, app[NAME_KEY], app[RECORDS_KEY], session).run(),
                                   name="ledger import")
        yield
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
