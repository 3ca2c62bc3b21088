"""The request core: sign a request, send it, collect replies until f+1 agree, retransmit, follow the view.

`sign` gives a request a fresh timestamp (client.tables.store keeps them
increasing across restarts) and this client's signature; `track` routes its
replies to its own collector; `send_first` sends it to the primary of the
view the client believes current, and `await_quorum` retransmits it to all
nodes every `client_retransmit_s` until f+1 nodes agree (OSDI'99 §4.1; 2f+1
for a result with artifacts, or `divergent`: pbft.replies) or its deadline
passes. Replies arrive through `on_frame`, which checks each one
(client.frames) and counts it; one that comes after its build's verdict is
published as a `LateReply`, for the records.

The view is the one f+1 nodes vouch for, from their replies and from what
each says on a new connection (CURRENT-VIEW). What a build waits for past
its quorum, and what its verdict is, is the verbs' business (client.verbs).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Awaitable, Callable, Iterable, Protocol

from client.background import Background
from client.events import EventStream, LateReply, Submitted, Superseding
from client.frames import NodeFrames
from pbft.authenticator import Authenticator
from pbft.build import Operation
from pbft.handshake import Hello
from pbft.messages import BuildState, CurrentView, Reply, Request, encode, signed
from pbft.replies import ReplyCollector, vouched_view
from shared.config import NetworkConfig, NodeConfig

log = logging.getLogger(__name__)


class Links(Protocol):
    """What the core needs from the node links (see client.links.NodeLinks)."""

    def start(
        self,
        on_frame: Callable[[int, str], None],
        on_connect: Callable[[int, str], Awaitable[None]],
        on_down: Callable[[int], None],
    ) -> None: ...

    async def close(self) -> None: ...

    async def send(self, node_id: int, text: str) -> bool: ...

    async def broadcast(self, text: str) -> list[int]: ...

    def connected(self) -> list[int]: ...

    def follow(self, nodes: Iterable[NodeConfig]) -> None: ...


@dataclass(frozen=True)
class RequestSettings:
    """How the client sends and waits, from the network's protocol settings."""

    retransmit_s: float
    deadline_s: float
    queue_limit_s: float
    settle_s: float
    # Send a request to all nodes as soon as the primary's link is seen down; off, only a
    # retransmission does (scripts/bench.py failover compares the two).
    follow_links: bool = True

    @classmethod
    def of(cls, config: NetworkConfig, deadline_s: float | None = None, follow_links: bool = True) -> RequestSettings:
        """`deadline_s`, if given, replaces the configuration's client_deadline_s."""
        protocol = config.protocol
        deadline_s = protocol.client_deadline_s if deadline_s is None else deadline_s
        return cls(protocol.client_retransmit_s, deadline_s, max(protocol.client_queue_limit_s, deadline_s),
                   protocol.client_settle_s, follow_links)


@dataclass(frozen=True)
class RequestSigner:
    """This client as a sender of requests: its name, its key, and the increasing timestamps
    its requests need (`next_timestamp(now_us)`)."""

    name: str
    auth: Authenticator
    next_timestamp: Callable[[int], int]

    def request(self, operation: Operation) -> Request:
        return signed(Request(self.name, self.next_timestamp(time.time_ns() // 1000), operation), self.auth.sign)

    def hello(self, node_id: int, challenge: str) -> str:
        return json.dumps(encode(signed(Hello(self.name, node_id, challenge), self.auth.sign)))


@dataclass
class Outstanding:
    """A request sent and not yet ended, and what its replies say so far."""

    request: Request
    collector: ReplyCollector
    frame: str
    done: asyncio.Event = field(default_factory=asyncio.Event)  # its quorum, or no more waiting for one
    replied: asyncio.Event = field(default_factory=asyncio.Event)  # set at each reply counted
    retransmitted: bool = False
    states: dict[int, str] = field(default_factory=dict)  # node -> its signed BUILD-STATE, the latest
    # node -> the older build its concurrency group's `cancel_in_progress` supersedes, as it
    # signed; and the ones f+1 nodes named, which the client has been told to cancel.
    superseding: dict[int, int] = field(default_factory=dict)
    superseded: set[int] = field(default_factory=set)

    @property
    def build_id(self) -> int:
        return self.request.timestamp

    def supersedes(self, sender: int, older: int, f: int) -> bool:
        """Node `sender` says the build waits for `older`, of its concurrency group, which its spec
        has cancelled when a newer build comes. True once, when f+1 nodes say so of one build
        (one of them honest): the verbs then cancel it through the order (client/verbs/supersede.py)."""
        self.superseding[sender] = older
        said = sum(1 for target in self.superseding.values() if target == older)
        if older >= self.build_id or said <= f or older in self.superseded:
            return False
        self.superseded.add(older)
        return True

    @property
    def operation(self) -> Operation:
        return self.request.operation

    def progress(self, quorum: int) -> str | None:
        """`running` when f+1 (`quorum`) nodes say the build runs, `queued` when f+1 say it waits
        or runs, else None: fewer could all be faulty."""
        if sum(1 for state in self.states.values() if state == "running") >= quorum:
            return "running"
        return "queued" if len(self.states) >= quorum else None


class RequestCore:
    """The requests this client has out, the replies to them, and the view the nodes vouch for."""

    def __init__(
        self, config: NetworkConfig, signer: RequestSigner, links: Links, settings: RequestSettings,
        events: EventStream,
    ) -> None:
        self.name = signer.name
        # The members, by id, and f: a change through the order may replace them (ClientService.follow).
        self.f, self.n, self.ids = config.f, config.n, tuple(node.id for node in config.nodes)
        self.settings = settings
        self._signer = signer
        self._links = links
        self._events = events
        # What the core and the verbs run on their own: builds followed after their caller was
        # answered, sends when a link falls (client.background).
        self.tasks = Background()
        self.frames = NodeFrames(config, signer.name, signer.auth)
        self._outstanding: dict[int, Outstanding] = {}
        self.views: dict[int, int] = {}  # the latest view each node showed (`view`)
        self._closing = False

    @property
    def closing(self) -> bool:
        return self._closing

    def abandon_all(self) -> None:
        """Stop waiting for every outstanding request, so a shutdown is not held up by them."""
        self._closing = True
        for outstanding in self._outstanding.values():
            outstanding.done.set()

    @property
    def view(self) -> int:
        return vouched_view(self.views, self.f)

    @property
    def primary(self) -> int:
        return self.ids[self.view % self.n]


    @property
    def waiting(self) -> int:
        """Builds sent and not yet ended."""
        return len(self._outstanding)

    @property
    def queued(self) -> int:
        """Builds sent, not yet ended, that f+1 nodes say wait for a build slot."""
        return sum(1 for outstanding in self._outstanding.values() if outstanding.progress(self.f + 1) == "queued")

    def progress(self, build_id: int) -> str | None:
        """Where a build without a verdict is, as f+1 nodes say (`Outstanding.progress`)."""
        outstanding = self._outstanding.get(build_id)
        return None if outstanding is None else outstanding.progress(self.f + 1)

    def outstanding(self, build_id: int) -> Outstanding | None:
        return self._outstanding.get(build_id)

    def sign(self, operation: Operation) -> Request:
        return self._signer.request(operation)

    def track(self, request: Request) -> Outstanding:
        """Count the replies to `request` from now on, until `forget`."""
        outstanding = Outstanding(request, ReplyCollector(self._signer.name, request.timestamp, self.f, self.n),
                                  json.dumps(encode(request)))
        self._outstanding[request.timestamp] = outstanding
        return outstanding

    def forget(self, build_id: int) -> None:
        del self._outstanding[build_id]

    async def send_first(self, outstanding: Outstanding) -> None:
        """Send a new request to the primary, or to every node if the primary's link is down."""
        primary, operation = self.primary, outstanding.operation
        sent = await self._links.send(primary, outstanding.frame)
        log.info(
            "submitted build %d: %s %s commit=%s view=%d primary=%d%s",
            outstanding.build_id, operation.repository, operation.branch, operation.commit, self.view, primary,
            "" if sent else " (link down)",
        )
        self._events.publish(Submitted(str(outstanding.build_id), operation))
        if not sent and self.settings.follow_links:
            await self.send_to_all(outstanding, "the primary's link is down")

    async def send_to_all(self, outstanding: Outstanding, why: str) -> None:
        """Send the request to every node, as a retransmission does: each backup then times
        the primary (OSDI'99 §4.4), and a view change follows if it is gone."""
        outstanding.retransmitted = True
        sent = await self._links.broadcast(outstanding.frame)
        log.info(
            "sent build %d to all nodes (%s): view=%d reached=%s replies_from=%s",
            outstanding.build_id, why, self.view, sent, [reply.sender for reply in outstanding.collector.replies],
        )

    async def await_quorum(self, outstanding: Outstanding, started_s: float) -> None:
        """Until f+1 replies agree (or the verdict is decided otherwise), retransmitting every
        `retransmit_s`, up to the deadline; longer for a build that f+1 nodes say waits for
        build slots, or runs (one honest node at least), up to the queue limit."""
        settings = self.settings
        deadline_s = started_s + settings.deadline_s
        retransmit_at_s = started_s + settings.retransmit_s
        while not self._closing:
            wake_s = min(retransmit_at_s, deadline_s)
            try:
                # Not wait_for, which on Python 3.11 can drop a cancel (client/links.py _challenge).
                async with asyncio.timeout(max(0.0, wake_s - time.monotonic())):
                    await outstanding.done.wait()
                return
            except asyncio.TimeoutError:
                pass
            if retransmit_at_s >= deadline_s:
                progress = outstanding.progress(self.f + 1)
                limit_s = started_s + settings.queue_limit_s
                if progress is None or deadline_s >= limit_s:
                    return
                deadline_s = min(deadline_s + settings.deadline_s, limit_s)
                log.info("build %d is %s at f+1 nodes: waiting for its verdict up to %.0f s more",
                         outstanding.build_id, progress, deadline_s - time.monotonic())
            await self.send_to_all(outstanding, "retransmission")
            retransmit_at_s += settings.retransmit_s

    async def await_replies(self, outstanding: Outstanding, enough: Callable[[], bool], within_s: float) -> None:
        """Wait up to `within_s` for the replies counted to make `enough()` true."""
        try:
            async with asyncio.timeout(max(0.0, within_s)):
                while not enough():
                    outstanding.replied.clear()
                    await outstanding.replied.wait()
        except asyncio.TimeoutError:
            pass

    async def on_connect(self, node_id: int, challenge: str) -> None:
        """Say HELLO over the connection's challenge, then send it what that node should have had.

        A request whose send found the link down, or that a restarted node
        lost, reaches the node now instead of at the next retransmission.
        """
        await self._links.send(node_id, self._signer.hello(node_id, challenge))
        primary = self.primary
        for outstanding in list(self._outstanding.values()):
            if outstanding.retransmitted or node_id == primary:
                await self._links.send(node_id, outstanding.frame)

    def on_down(self, node_id: int) -> None:
        """A node's link went down. If it is the primary's, every request waiting for it goes
        to all nodes now rather than at its next retransmission: a killed primary then costs
        about one view-change timeout, not a retransmission period and the timeout."""
        if node_id != self.primary or self._closing or not self.settings.follow_links:
            return
        for outstanding in list(self._outstanding.values()):
            if not outstanding.retransmitted:
                self.tasks.spawn(self.send_to_all(outstanding, "the primary's link went down"),
                                  name=f"send-{outstanding.build_id}")

    def on_frame(self, link_node_id: int, text: str) -> None:
        """Check a frame from a node and count it; drop anything else with a reason."""
        message = self.frames.parse(link_node_id, text)
        if isinstance(message, Reply):
            self._on_reply(link_node_id, message)
        elif isinstance(message, CurrentView) and self.frames.signed(message, link_node_id):
            # Counted as a reply's view is (`view` takes the one f+1 nodes reach), so a
            # client that has had no reply yet knows the primary.
            self.views[message.sender] = max(message.view, self.views.get(message.sender, 0))
        elif isinstance(message, BuildState):
            outstanding = self._outstanding.get(message.timestamp)
            # A build whose verdict is in has no use for where it is.
            if outstanding is not None and self.frames.signed(message, link_node_id):
                outstanding.states[message.sender] = message.state
                if message.supersedes and outstanding.supersedes(message.sender, message.supersedes, self.f):
                    self._events.publish(Superseding(outstanding.build_id, message.supersedes, outstanding.operation))

    def _on_reply(self, link_node_id: int, reply: Reply) -> None:
        outstanding = self._outstanding.get(reply.timestamp)
        if outstanding is None:
            # Replies beyond the f+1 that decided a request arrive after it is done: the
            # records keep them (client.recorder), and they change no verdict.
            if self.frames.signed(reply, link_node_id):
                self._events.publish(LateReply(reply, time.time()))
            return
        if not self.frames.signed(reply, link_node_id) or not self.frames.attested(
                outstanding.operation, reply, link_node_id):
            return
        self.views[reply.sender] = max(reply.view, self.views.get(reply.sender, 0))
        log.debug("reply from node %d for build %d: %s", reply.sender, reply.timestamp, reply.result.agreed())
        collector = outstanding.collector
        # Disputed is final, whatever replies come later: no need to wait for an f+1.
        if collector.add(reply) or collector.disputed:
            outstanding.done.set()
        outstanding.replied.set()
