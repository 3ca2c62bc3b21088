"""Every build of the network in every client's records: the builds other clients asked for,
imported from the nodes' ledgers.

Several clients may serve one network (docs/operations.md, "Several clients"): a forge delivers to any of them,
and each answers status and dashboard reads for every build, including one whose client is
down. Each client reads the order as the nodes executed it (`GET /ledger?after=SEQ`, every
member at once) and records each build another client signed:

- the request is checked against its client's public key, so no node can make one up;
- its verdict is the one its own client reaches from the same signed results, by the same
  rule (client.verdicts `outcome_of` over a pbft.replies collector): the result f+1 members
  signed in matching RESULT votes (2f+1 for a result with artifacts), checked as a
  certificate is (client.certificate), so no node can make one up either; `disputed` once no
  result can be certified any more, `divergent` once the nodes agree on all but their
  artifacts' bytes. Like its own client, the import holds a verdict of f+1 that has not
  settled (2f+1 agree, or none can: `settling`) for up to client_settle_s after it first saw
  the f+1 agree, so that a flaky build that passed on two nodes and failed on two is disputed
  here as it is there, not accepted as whichever two votes came first. Until then it is
  pending, and asked about again (`GET /requests/{client}/{timestamp}`), for as long as its
  own client would wait (`give_up_s`);
- the reading moves on only through sequence numbers f+1 members served, and takes the
  builds every answer holds: one of those members is honest and holds every build there,
  so a faulty node cannot hide one either;
- a vote counts against the members in force at the sequence number it signs, where the
  build was ordered (client.ledgermembers), not against today's: a node that left or was
  re-keyed since signed it validly then. The reading learns the members from the changes
  it reads, and moves past a change of the members only once f+1 members before it signed
  whether it applied. Only votes for a sequence number past the page where the reading
  first found the build count, so a key retired before that page counts for none of them.

A client's own builds it records as it signs them; cancels of another client's build it
leaves to that client (pbft.cancels: a client cancels only its own).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from typing import Any, AsyncIterator, Callable

import aiohttp
from aiohttp import web

from client.certificate import VERSION, CertificateError, check_certificate, checked_request
from client.keys import LIVE_KEY, NAME_KEY, RECORDS_KEY
from client.ledgermembers import LedgerMembers, named_by, public_key
from client.noderequests import describe, read_capped
from client.outcome import Accepted, Disputed, Divergent, Outcome
from client.records import BuildRecords
from client.verdicts import outcome_of, settling
from pbft.encoding import canonical
from pbft.messages import MessageError, Reply, Request, ResultVote, decode, encode
from pbft.replies import ReplyCollector
from pbft.membership import Membership
from shared.config import NetworkConfig, NodeConfig
from shared.crypto import verify_bytes
from shared.reload import LiveConfig

log = logging.getLogger(__name__)

POLL_S = 2.0  # between two readings of the order, when the last one found nothing new
ANSWER_TIMEOUT_S = 10.0
# Once f+1 members answered a question, how long the others have left to answer it too.
ANSWER_GRACE_S = 1.0
MAX_ANSWER_BYTES = 16 * 1024 * 1024  # a page: 64 batches (node/server.py LEDGER_PAGE), each build with its votes
FOLLOW_UPS = 32  # other clients' builds without a verdict asked about again per reading, in turn


class LedgerImport:
    def __init__(self, live: LiveConfig, name: str, records: BuildRecords, session: aiohttp.ClientSession,
                 clock: Callable[[], float] = time.time) -> None:
        self._live, self._name, self._records, self._session = live, name, records, session
        self.clock = clock  # Unix time; a simulated one in tests
        # The members whose votes count at each point of the order read, learnt from its changes.
        self._members = LedgerMembers(records.imported, live.current)
        # When this import first saw f+1 votes agree on each build whose verdict still settles
        # (client.verdicts `settling`): it holds the build pending for client_settle_s from
        # then, as its own client waits from its f+1-th reply. One entry per such build, gone
        # with its verdict; a restart forgets them, and the wait begins again.
        self._agreed_at: dict[int, float] = {}
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
            builds = [build for page in pages for build in _list(page.get("builds"))
                      if isinstance(build, dict) and _int(build.get("seq"), through + 1) <= through]
            if through > after:
                through = self._members_known_through(config, builds, after, through)
            if through > after:
                self._take(config, [build for build in builds if build["seq"] <= through], after)
                self._records.imported.move_cursor(through)
                moved = True
        await self._follow_up(config)
        self._records.imported.forget_found()
        self._records.store.commit()
        return moved

    def _members_known_through(self, config: NetworkConfig, builds: list[dict], after: int, through: int) -> int:
        """How far past `after` the reading may move on: to `through`, or to just before the
        first change of the members among `builds` whose verdict is not known yet, whose members
        vote on the builds after it if it applied. The changes that applied are learnt, in the
        order (client.ledgermembers).

        A change held for counts as one from the sequence number its members' votes sign, or
        where a ledger lists it before any vote came. A faulty node that lists one elsewhere
        holds the reading for at most give_up_s after the change was handed in: past that, a
        change whose verdict is not known is passed over, at warning."""
        changes: dict[str, tuple[int, dict, list[Any]]] = {}
        for build in builds:
            wire = build.get("request")
            operation = wire.get("operation") if isinstance(wire, dict) else None
            if not isinstance(operation, dict) or operation.get("change") is None:
                continue
            key = canonical(wire).decode()
            listed, _, bodies = changes.get(key, (build["seq"], wire, []))
            changes[key] = (min(listed, build["seq"]), wire, bodies + _votes_of(build))
        for listed, wire, bodies in sorted(changes.values(), key=lambda change: change[0]):
            try:
                request = checked_request(wire, config)
            except CertificateError:
                continue
            document = request.operation.change.parsed()
            counted = counted_votes(self._members.at, request, bodies, after)
            seq, votes = counted if counted is not None else (listed, [])
            members = self._members.at(seq)
            if (not after < seq <= through or seq <= self._members.last_change or document is None
                    or named_by(document) in (None, members)):
                continue  # read before, on a later page, learnt already, or no change of the members
            agreed = certified(config, members, wire, votes)
            if agreed is not None:
                if agreed[1][0].result.status == "success":
                    self._members.learn(seq, document)
                continue
            if self.clock() - request.timestamp / 1_000_000 <= give_up_s(config):
                log.info("the reading waits at sequence number %d for the verdict of a change of the members",
                         seq)
                return seq - 1
            log.warning("the change of the members of client %s's request %d, at sequence number %d, has no "
                        "verdict in the ledgers after %.0f s: the reading moves on without its members",
                        request.client, request.timestamp, seq, give_up_s(config))
        return through

    async def _follow_up(self, config: NetworkConfig) -> None:
        waiting = self._records.imported.waiting(self._name, self._followed_up_to, FOLLOW_UPS)
        # A turn that reached the last of them begins the next at the first: with fewer than
        # FOLLOW_UPS waiting, every reading asks about each.
        self._followed_up_to = waiting[-1]["build_id"] if len(waiting) == FOLLOW_UPS else 0
        # Asked about all at once: one slow member holds the turn up for one answer's
        # timeout, not for one per build waiting.
        answers = await asyncio.gather(*(
            self._ask_all(config, f"/requests/{record['request'].get('client')}/{record['build_id']}", {})
            for record in waiting))
        for answer in answers:
            self._take(config, answer)

    async def _ask_all(self, config: NetworkConfig, path: str, query: dict[str, str]) -> list[dict]:
        """The members' answers to GET `path`: every one that came before ANSWER_GRACE_S had
        passed since the f+1-th, or before ANSWER_TIMEOUT_S. f+1 answers are all a reading
        needs (one of them is honest), so one slow or silent member holds each reading up for
        the grace, not for the timeout; a member cut short is asked again at the next reading."""
        loop = asyncio.get_running_loop()
        asked = [asyncio.ensure_future(self._get(node, path, query)) for node in config.nodes]
        pending, deadline = set(asked), None
        try:
            while pending:
                timeout = None if deadline is None else max(0.0, deadline - loop.time())
                done, pending = await asyncio.wait(pending, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
                if not done:
                    break  # the grace is over
                if deadline is None and sum(isinstance(_answer(one), dict) for one in asked) > config.f:
                    deadline = loop.time() + ANSWER_GRACE_S
        finally:
            for one in pending:
                one.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        return [answer for one in asked if isinstance(answer := _answer(one), dict)]

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

    def _take(self, config: NetworkConfig, builds: list[Any], after: int = 0) -> None:
        """Record the builds of other clients among `builds` (each as a node's ledger shows it,
        one build possibly from several nodes), with a verdict where their votes make one;
        `after`: the sequence number after which the reading found those new to it."""
        votes: dict[str, list[Any]] = {}
        requests: dict[str, Any] = {}
        for build in builds:
            wire = build.get("request") if isinstance(build, dict) else None
            if not isinstance(wire, dict) or wire.get("client") == self._name:
                continue
            key = canonical(wire).decode()
            requests[key] = wire
            votes.setdefault(key, []).extend(_votes_of(build))
        for key, wire in requests.items():
            self._take_one(config, wire, votes[key], after)

    def _take_one(self, config: NetworkConfig, wire: dict, bodies: list[Any], after: int) -> None:
        try:
            request = checked_request(wire, config)
        except CertificateError as error:
            log.warning("a node's ledger holds a request that does not verify: %s", error.reason)
            return
        if request.operation.cancels is not None or request.operation.approves is not None:
            return  # its client's business: it stops, or lets deploy, that client's own build
        records, build_id = self._records, request.timestamp
        record = records.builds.get(build_id)
        if record is None:
            records.builds.add_pending(request, min(self.clock(), build_id / 1_000_000))
            records.imported.found(build_id, after)
            log.info("build %d of client %s imported from the nodes' ledgers", build_id, request.client)
            record = records.builds.get(build_id)
        if record["request"] != wire:
            # Lanes keep clients' build ids apart (shared.config_principals): only a client that
            # left its lane makes one meet another's, and the record there stays as it is.
            log.warning("build %d of client %s has the id of another build here: not imported", build_id,
                        request.client)
            return
        if record["state"] != "pending":
            self._agreed_at.pop(build_id, None)
            return
        floor = records.imported.found_after(build_id)
        seq, votes = counted_votes(self._members.at, request, bodies, floor) or (floor + 1, [])
        members = self._members.at(seq)
        now = self.clock()
        elapsed_ms = max(0, int(now * 1000 - build_id / 1000))
        collector = collected(members, request, votes)
        if settling(collector):
            agreed_at = self._agreed_at.setdefault(build_id, now)
            if now - agreed_at < config.protocol.client_settle_s:
                return  # pending: its own client, too, waits for the votes still to come
        self._agreed_at.pop(build_id, None)
        outcome = outcome_of(collector)
        if outcome is not None and self._record(config, members, request, outcome, votes, elapsed_ms):
            return
        if elapsed_ms / 1000 > give_up_s(config):
            records.verdicts.time_out(build_id, elapsed_ms, votes)
            log.warning("build %d of client %s: no f+1 matching votes in the ledgers after %.0f s: timeout",
                        build_id, request.client, elapsed_ms / 1000)

    def _record(self, config: NetworkConfig, members: Membership, request: Request, outcome: Outcome,
                votes: list[ResultVote], elapsed_ms: int) -> bool:
        """Write `outcome` as the verdict of the build `request`, with the votes of `members`
        behind it; whether it was written (an accepted one only where its votes make a
        certificate)."""
        verdicts, build_id = self._records.verdicts, request.timestamp
        match outcome:
            case Divergent(result=result, artifacts_by_node=by_node):
                verdicts.diverge(build_id, result, by_node, elapsed_ms, votes)
                log.warning("imported verdict of build %d of client %s: divergent, the nodes built different "
                            "artifacts: %s", build_id, request.client,
                            " ".join(f"node{node}={digest}" for node, digest in by_node.items()))
            case Disputed(split=split):
                verdicts.dispute(build_id, split, members.f, elapsed_ms, votes)
                log.warning("imported verdict of build %d of client %s: disputed", build_id, request.client)
            case Accepted(result=result, agreed_by=agreed_by):
                agreeing = [vote for vote in votes if vote.sender in agreed_by]
                if certified(config, members, encode(request), agreeing) is None:
                    return False
                verdicts.accept(build_id, result, agreed_by, elapsed_ms, votes)
                log.info("imported verdict of build %d of client %s: %s agreed_by=%s", build_id, request.client,
                         result.status, agreed_by)
        return True


def give_up_s(config: NetworkConfig) -> float:
    """How long after its request an imported build waits for its verdict: as long as its own
    client would (client.requests), and the time its verdict takes to settle."""
    protocol = config.protocol
    return max(protocol.client_deadline_s, protocol.client_queue_limit_s) + protocol.client_settle_s


def counted_votes(members_at: Callable[[int], Membership], request: Request, bodies: list[Any],
                  floor: int) -> tuple[int, list[ResultVote]] | None:
    """The sequence number `request` was ordered at and the RESULT votes for it among `bodies`
    (as the nodes' ledgers keep them), the first of each member; None for none.

    Each vote counts only against the members in force at the sequence number it signs
    (`members_at`), and only for one past `floor`, where the reading first found the build.
    Honest members sign where it was ordered; votes for another sequence number are a faulty
    node's, and make f+1 nowhere, so the votes of the sequence number most of them sign are
    the build's. A vote that does not verify on its own counts for nothing, so a faulty node's
    copy of another's vote cannot spoil the others."""
    by_seq: dict[int, dict[int, ResultVote]] = {}
    for body in bodies:
        try:
            vote = decode(body)
        except (MessageError, RecursionError, TypeError, ValueError):
            continue
        if not isinstance(vote, ResultVote) or vote.key != request.key or vote.seq <= floor:
            continue
        key = members_at(vote.seq).key_of.get(vote.sender)
        if key is not None and verify_bytes(public_key(key), canonical(vote.payload()), vote.sig):
            by_seq.setdefault(vote.seq, {}).setdefault(vote.sender, vote)
    if not by_seq:
        return None
    seq = max(by_seq, key=lambda signed_at: (len(by_seq[signed_at]), -signed_at))
    return seq, list(by_seq[seq].values())


def collected(members: Membership, request: Request, votes: list[ResultVote]) -> ReplyCollector:
    """`votes` of `members` counted as the signing client counts its replies (pbft.replies): a
    node's RESULT vote signs the result its reply signs (client.certificate), and the collector
    checks no signature, so each goes in as the reply it stands for."""
    collector = ReplyCollector(request.client, request.timestamp, members.f, members.n)
    for vote in votes:
        collector.add(Reply(0, vote.timestamp, vote.client, vote.sender, vote.result))
    return collector


def certified(config: NetworkConfig, members: Membership, wire: dict,
              votes: list[ResultVote]) -> tuple[list[int], list[ResultVote]] | None:
    """The members that signed one result for the request `wire` in f+1 of `votes`, and their
    votes, checked as a certificate is against `members`; None while no result has that many."""
    by_result: dict[str, list[ResultVote]] = {}
    for vote in votes:
        by_result.setdefault(canonical(vote.result.agreed()).decode(), []).append(vote)
    for agreed, group in by_result.items():
        if len(group) <= members.f:
            continue
        certificate = {"version": VERSION, "request": wire, "replies": [encode(vote) for vote in group],
                       "result": json.loads(agreed)}
        try:
            summary = check_certificate(certificate, config, members)
        except CertificateError as error:
            log.warning("votes from the nodes' ledgers do not certify a verdict: %s", error.reason)
            continue
        return list(summary.signers), group
    return None


def _answer(asked: asyncio.Future) -> dict | None:
    """What a question to a member gave: None while it waits or once cut short."""
    return asked.result() if asked.done() and not asked.cancelled() else None


def _int(value: Any, otherwise: int) -> int:
    """A node's number, or `otherwise` for anything else it sent."""
    return value if type(value) is int else otherwise


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _votes_of(build: dict) -> list[Any]:
    """The votes a node's ledger shows with a build, as they came."""
    return [entry.get("vote") for entry in _list(build.get("votes")) if isinstance(entry, dict)]


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
