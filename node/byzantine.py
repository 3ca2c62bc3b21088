"""Byzantine behaviours for demos and tests (`node/index.py --byzantine MODE [ARG]`).

A behaviour sits between an honest node and the world: it may wrap each peer
link and each client connection, keep frames the node receives from its
replica, and rewrite build results before the node signs them. The protocol
core stays honest; every misbehaviour is something a real faulty node could
do on the wire, and each one is logged at warning (rate-limited where it could
flood the log). Nodes refuse these modes unless the configuration sets
`allow_byzantine: true`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, fields, replace
from typing import Protocol

from builder import BuildResult
from shared.config import is_client_name
from shared.crypto import PrivateKey, generate_private_key, sign_bytes
from pbft.encoding import canonical
from pbft.messages import (
    Commit, Message, MessageError, PrePrepare, Relay, Request, batch_digest, decode, encode, signed,
)

logger = logging.getLogger(__name__)

Sign = Callable[[dict], str]


class Sender(Protocol):
    def send(self, frame: str) -> None: ...


class Behaviour:
    """Honest: passes everything through unchanged. Subclasses each misbehave in one way."""

    name = "honest"
    # Variables every build of the node gets besides the CI's own (a flaky node's).
    build_environment: dict[str, str] = {}

    def peer(self, peer_id: int, link: Sender) -> Sender:
        return link

    def client(self, connection: Sender) -> Sender:
        return connection

    def admits(self, message: Message) -> bool:
        """Whether the node's replica gets to see `message`, a frame it received and decoded
        (from a peer, or a client's); the driver drops and counts what is kept from it."""
        return True

    def tamper(self, result: BuildResult) -> BuildResult:
        return result

    def __str__(self) -> str:
        return self.name


class RateLimitedWarning:
    """Log a misbehaviour at most once per `interval_s`, counting the ones in between."""

    def __init__(self, interval_s: float = 1.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval_s = interval_s
        self._clock = clock
        self._last_s: float | None = None
        self._unreported = 0

    def __call__(self, message: str, *args: object) -> None:
        self._unreported += 1
        now_s = self._clock()
        if self._last_s is not None and now_s - self._last_s < self._interval_s:
            return
        logger.warning(message + " (%d time(s) since the last report)", *args, self._unreported)
        self._last_s = now_s
        self._unreported = 0


class _Relay:
    """A Sender that hands every frame to `send` (a behaviour's method bound to one target)."""

    def __init__(self, send: Callable[[str], None]) -> None:
        self.send = send


class Lie(Behaviour):
    """Report the opposite of what each build did: a flipped status and exit code."""

    name = "lie"

    def tamper(self, result: BuildResult) -> BuildResult:
        if result.status == "success":
            lied = replace(result, status="failure", exit_code=1, artifacts=None)
        elif result.status == "failure":
            lied = replace(result, status="success", exit_code=0)
        else:
            return result
        logger.warning("byzantine lie: reporting %s instead of %s", lied.agreed(), result.agreed())
        return lied


class Flaky(Behaviour):
    """Honest in everything it says, but its builds see PBFT_CI_FLAKY=1 in their environment:
    a node whose build environment differs from the others', as a flaky test's does. A build
    that reads it (`test -z "$PBFT_CI_FLAKY"`) fails here and passes elsewhere, and the node
    signs what its build did: two such nodes of four make the verdict disputed."""

    name = "flaky"
    build_environment = {"PBFT_CI_FLAKY": "1"}


class CancelAlone(Behaviour):
    """Report every build cancelled, as if the client's cancel had been ordered: what a faulty
    node can do to a build by itself. Its one vote never makes a verdict."""

    name = "cancel"

    def tamper(self, result: BuildResult) -> BuildResult:
        if result.status == "cancelled" or (result.commit is None and result.exit_code == 0):
            return result  # already cancelled, or a cancel's own answer
        logger.warning("byzantine cancel: reporting cancelled instead of %s", result.agreed())
        # The executor's result, as every result the driver takes: its log stays this node's.
        return BuildResult("cancelled", None, None, "cancelled by the client's request", log_path=result.log_path)


class Silent(Behaviour):
    """Receive everything, send nothing: neither protocol messages nor replies."""

    name = "silent"

    def __init__(self) -> None:
        self._warn = RateLimitedWarning()

    def peer(self, peer_id: int, link: Sender) -> Sender:
        return _Relay(lambda frame: self._withhold(f"node {peer_id}"))

    def client(self, connection: Sender) -> Sender:
        return _Relay(lambda frame: self._withhold("a client"))

    def _withhold(self, target: str) -> None:
        self._warn("byzantine silent: withheld a frame to %s", target)


class CrashAfter(Behaviour):
    """Send `frames` frames in total (peers and clients), then stop the process abruptly on the next.

    Frames still queued in the links are lost, as they would be in a real crash.
    """

    name = "crash-after"

    def __init__(self, frames: int, *, exit_process: Callable[[int], object] = os._exit) -> None:
        if frames < 1:
            raise ValueError("crash-after needs a positive number of frames")
        self.frames = frames
        self.sent = 0
        self.crashed = False
        self._exit_process = exit_process

    def __str__(self) -> str:
        return f"{self.name} {self.frames}"

    def peer(self, peer_id: int, link: Sender) -> Sender:
        return _Relay(lambda frame: self._send(link, frame))

    def client(self, connection: Sender) -> Sender:
        return _Relay(lambda frame: self._send(connection, frame))

    def _send(self, target: Sender, frame: str) -> None:
        if self.crashed:
            return
        if self.sent < self.frames:
            self.sent += 1
            target.send(frame)
            return
        self.crashed = True
        # Log first: os._exit skips every cleanup, and the handler flushes per record.
        logger.critical("byzantine crash-after: sent %d frames, crashing now", self.sent)
        self._exit_process(1)


class Delay(Behaviour):
    """Hold back everything sent to peers and clients by `delay_ms`, keeping each target's order."""

    name = "delay"

    def __init__(self, delay_ms: int) -> None:
        if delay_ms < 1:
            raise ValueError("delay needs a positive number of milliseconds")
        self.delay_ms = delay_ms
        self._warn = RateLimitedWarning()

    def __str__(self) -> str:
        return f"{self.name} {self.delay_ms}"

    def peer(self, peer_id: int, link: Sender) -> Sender:
        return _Delayed(link, self.delay_ms / 1000, self._warn)

    def client(self, connection: Sender) -> Sender:
        return _Delayed(connection, self.delay_ms / 1000, self._warn)


class _Delayed:
    """One target's frames in a FIFO, released by a single timer for the oldest one.

    Timers alone would not do: asyncio does not promise to run two callbacks
    due at the same instant in the order they were scheduled.
    """

    def __init__(self, target: Sender, delay_s: float, warn: RateLimitedWarning) -> None:
        self._target = target
        self._delay_s = delay_s
        self._warn = warn
        self._queue: deque[tuple[float, str]] = deque()
        self._timer: asyncio.TimerHandle | None = None

    def send(self, frame: str) -> None:
        loop = asyncio.get_running_loop()
        self._warn("byzantine delay: holding frames back by %d ms", round(self._delay_s * 1000))
        self._queue.append((loop.time() + self._delay_s, frame))
        if self._timer is None:
            self._timer = loop.call_at(self._queue[0][0], self._release)

    def _release(self) -> None:
        loop = asyncio.get_running_loop()
        # The timer fired for the head, perhaps a clock tick early: it is due.
        self._target.send(self._queue.popleft()[1])
        now_s = loop.time()
        while self._queue and self._queue[0][0] <= now_s:
            self._target.send(self._queue.popleft()[1])
        self._timer = loop.call_at(self._queue[0][0], self._release) if self._queue else None


class Equivocate(Behaviour):
    """As primary, order a different batch for odd-numbered peers than for even-numbered ones.

    Odd peers get the batch without its last request (an empty batch is the
    valid null request), signed with this node's own key, so both
    pre-prepares for one (view, seq) verify and only their digests differ.
    """

    name = "equivocate"

    def __init__(self, sign: Sign) -> None:
        self._sign = sign
        self._last: tuple[str, str] | None = None  # (honest frame, its equivocating twin)
        self._warn = RateLimitedWarning()

    def peer(self, peer_id: int, link: Sender) -> Sender:
        if peer_id % 2 == 0:
            return link
        return _Relay(lambda frame: link.send(self._twin(frame)))

    def _twin(self, frame: str) -> str:
        if '"preprepare"' not in frame:
            return frame
        if self._last is not None and self._last[0] == frame:
            return self._last[1]
        try:
            message = decode(json.loads(frame))
        except (ValueError, MessageError):
            return frame
        if not isinstance(message, PrePrepare) or not message.batch:
            return frame
        batch = message.batch[:-1]
        twin = signed(replace(message, digest=batch_digest(batch, message.verdicts), batch=batch), self._sign)
        self._warn(
            "byzantine equivocate: view=%d seq=%d digest=%s (%d requests) to even peers, digest=%s (%d) to odd peers",
            message.view, message.seq, message.digest[:8], len(message.batch), twin.digest[:8], len(batch),
        )
        self._last = (frame, json.dumps(encode(twin)))
        return self._last[1]


class Censor(Behaviour):
    """Never let the replica see a REQUEST of one client, sent by the client itself or
    forwarded by a backup; otherwise honest.

    As primary it goes on ordering every other client's requests, so the network
    looks healthy while that client's wait. What unseats it is the backups'
    view-change timer, which runs for one waited-for request until it executes
    (OSDI'99 §4.4), not until any batch does.
    """

    name = "censor"

    def __init__(self, client: str) -> None:
        self.censored = client  # not `client`: that is the method wrapping client connections
        self._warn = RateLimitedWarning()

    def __str__(self) -> str:
        return f"{self.name} {self.censored}"

    def admits(self, message: Message) -> bool:
        if isinstance(message, Request) and message.client == self.censored:
            self._warn("byzantine censor: kept a request of client %s (timestamp %d) from the replica",
                       message.client, message.timestamp)
            return False
        return True


class WithholdRelay(Behaviour):
    """As the primary of a network that relays votes, never pass a COMMIT on to one backup
    (the victim: the next node), and put the victim's own votes first in every relay the
    others get, so that they hold them before the victim gives up on the relay and votes
    to all in that slot. Everyone else sees a healthy primary.

    Each relay is decoded and its votes reordered, then encoded again: a relay is an
    unsigned envelope, and every vote in it keeps its own signature.
    """

    name = "withhold-relay"

    def __init__(self, victim: int) -> None:
        self.victim = victim
        self._last: tuple[str, str] | None = None  # (a relay frame, the same with the victim's votes first)
        self._warn_withheld = RateLimitedWarning()
        self._warn_reordered = RateLimitedWarning()

    def peer(self, peer_id: int, link: Sender) -> Sender:
        if peer_id == self.victim:
            return _Relay(lambda frame: self._to_victim(link, frame))
        return _Relay(lambda frame: link.send(self._victims_first(frame)))

    def _to_victim(self, link: Sender, frame: str) -> None:
        relay = _relay_in(frame)
        if relay is not None and any(isinstance(vote, Commit) for vote in relay.votes):
            self._warn_withheld("byzantine withhold-relay: withheld a relay of %d votes with commits from node %d",
                                len(relay.votes), self.victim)
            return
        link.send(frame)

    def _victims_first(self, frame: str) -> str:
        if self._last is not None and self._last[0] == frame:  # one broadcast, a link per peer
            return self._last[1]
        relay = _relay_in(frame)
        if relay is None:
            return frame
        first = tuple(vote for vote in relay.votes if vote.sender == self.victim)
        rewritten = frame
        if first:
            votes = first + tuple(vote for vote in relay.votes if vote.sender != self.victim)
            if votes != relay.votes:
                rewritten = json.dumps(encode(Relay(votes)))
                self._warn_reordered("byzantine withhold-relay: put node %d's %d votes first in a relay of %d",
                                     self.victim, len(first), len(votes))
        self._last = (frame, rewritten)
        return rewritten


def _relay_in(frame: str) -> Relay | None:
    """The relay a frame carries, or None for any other frame."""
    if '"relay"' not in frame:
        return None
    try:
        message = decode(json.loads(frame))
    except (ValueError, MessageError):
        return None
    return message if isinstance(message, Relay) else None


class Forge(Behaviour):
    """Send every message forged, so honest receivers drop it on its signature.

    Messages alternate between two forgeries: signed with a key nobody
    registered, and naming another node as sender under this node's signature.
    A message that names no sender (a forwarded request) is always re-signed
    with the wrong key.
    """

    name = "forge"

    def __init__(self) -> None:
        self._wrong_key = generate_private_key()
        self._peer_ids: set[int] = set()
        self._count = 0
        self._warn = RateLimitedWarning()

    def peer(self, peer_id: int, link: Sender) -> Sender:
        self._peer_ids.add(peer_id)
        return _Relay(lambda frame: link.send(self._forge(frame, peer_id)))

    def client(self, connection: Sender) -> Sender:
        return _Relay(lambda frame: connection.send(self._forge(frame, None)))

    def _forge(self, frame: str, destination: int | None) -> str:
        try:
            message = decode(json.loads(frame))
        except (ValueError, MessageError):
            return frame
        self._count += 1
        return json.dumps(encode(self._forged(message, destination)))

    def _forged(self, message: Message, destination: int | None) -> Message:
        if isinstance(message, Relay):
            # An envelope has no signature to forge: forge what it carries.
            return Relay(tuple(self._forged(vote, destination) for vote in message.votes))
        names_sender = "sender" in {field.name for field in fields(message)}
        others = sorted(self._peer_ids - {destination, getattr(message, "sender", None)})
        if names_sender and others and self._count % 2 == 0:
            forged = replace(message, sender=others[0])
            how = f"naming node {others[0]} as sender"
        else:
            forged = replace(message, sig=sign_bytes(self._wrong_key, canonical(message.payload())))
            how = "signed with a wrong key"
        self._warn("byzantine forge: sent a %s %s", message.TYPE, how)
        return forged


HONEST = Behaviour()


@dataclass(frozen=True)
class Argument:
    """What a mode's ARG is: `kind` and `name` say it in --help and errors, `example` is
    one, and `parse` reads the word, raising ValueError if it is not one."""

    kind: str
    name: str
    example: str
    parse: Callable[[str], object]


def positive_integer(word: str) -> int:
    if not re.fullmatch(r"[0-9]+", word) or int(word) < 1:
        raise ValueError(f"not a positive integer: {word!r}")
    return int(word)


def client_name(word: str) -> str:
    """A client name by the configuration's own rule (`shared.config.is_client_name`)."""
    if not is_client_name(word):
        raise ValueError(f"not a client name: {word!r}")
    return word


@dataclass(frozen=True)
class Node:
    """What a behaviour may know of the node it runs in: its id, the network's size, and
    how it signs (with its own key)."""

    id: int
    n: int
    sign: Sign


@dataclass(frozen=True)
class Mode:
    """How `--byzantine NAME [ARG]` builds a behaviour; `argument` says what ARG is, if the mode takes one."""

    build: Callable[..., Behaviour]
    argument: Argument | None = None


MODES: dict[str, Mode] = {
    "lie": Mode(lambda node: Lie()),
    "flaky": Mode(lambda node: Flaky()),
    "silent": Mode(lambda node: Silent()),
    "cancel": Mode(lambda node: CancelAlone()),
    "crash-after": Mode(lambda frames, node: CrashAfter(frames),
                        argument=Argument("positive integer", "N (frames sent before crashing)", "50",
                                          positive_integer)),
    "equivocate": Mode(lambda node: Equivocate(node.sign)),
    "forge": Mode(lambda node: Forge()),
    "delay": Mode(lambda delay_ms, node: Delay(delay_ms),
                  argument=Argument("positive integer", "MS (milliseconds)", "200", positive_integer)),
    "censor": Mode(lambda client, node: Censor(client),
                   argument=Argument("client name", "CLIENT (whose requests its replica never sees)", "client",
                                     client_name)),
    "withhold-relay": Mode(lambda node: WithholdRelay(victim=(node.id + 1) % node.n)),
}


def parse_mode(words: list[str]) -> tuple[str, object | None]:
    """Check the words of `--byzantine MODE [ARG]`; ValueError says what is wrong with them."""
    name, *rest = words
    mode = MODES.get(name)
    if mode is None:
        raise ValueError(f"unknown mode {name!r}; choose one of: {', '.join(MODES)}")
    argument = mode.argument
    if argument is None:
        if rest:
            raise ValueError(f"{name} takes no argument, got {' '.join(rest)!r}")
        return name, None
    try:
        if len(rest) != 1:
            raise ValueError("not one word")
        return name, argument.parse(rest[0])
    except ValueError:
        raise ValueError(f"{name} needs one {argument.kind} argument {argument.name}, "
                         f"e.g. --byzantine {name} {argument.example}; "
                         f"got {' '.join(rest) or 'nothing'!r}") from None


def make_behaviour(name: str, argument: object | None, *, private_key: PrivateKey, node_id: int, n: int) -> Behaviour:
    """The behaviour `parse_mode` accepted, for node `node_id` of a network of `n`;
    `private_key` is this node's (equivocate signs with it)."""
    mode = MODES[name]

    def sign(payload: dict) -> str:
        return sign_bytes(private_key, canonical(payload))

    node = Node(node_id, n, sign)
    if argument is None:
        return mode.build(node)
    return mode.build(argument, node)
