"""Byzantine primaries: nodes that, while primary, send PRE-PREPAREs other than their honest
replica's (late, padded, stripped of their verdicts, or with a hole and the window above it
filled), and everything else as they should. What each one tests is in `pbft.sim.faults`."""

from __future__ import annotations

from dataclasses import replace

from pbft.messages import MAX_BATCH, MAX_BATCH_BYTES, Message, PrePrepare, Request, batch_digest, signed
from pbft.sim.auth import SimAuthenticator
from pbft.sim.honest import Honest, Send
from pbft.sim.network import Address

# The sequence numbers above its hole a `fill` primary pre-prepares: a window of the largest
# checkpoint interval the simulator draws (128).
FILL_SLOTS = 255


class SlowPrimary(Honest):
    """Sends its PRE-PREPAREs `delay_s` late and everything else on time (`with_slow_primary`)."""

    kind = "slow-primary"

    def __init__(self, delay_s: float) -> None:
        self.delay_s = delay_s

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        return [(dst, message, self.delay_s if isinstance(message, PrePrepare) else 0.0)]


class Pad(Honest):
    """As primary, pads each of its first `preprepares` batches with copies of their requests, up
    to the most a PRE-PREPARE's batch may hold on the wire, and then pre-prepares nothing more:
    the backups must replace it, with VIEW-CHANGEs that carry every batch they prepared
    (`pbft.messages.MAX_BATCH_BYTES`). Everything else it sends as it should."""

    kind = "pad"

    def __init__(self, auth: SimAuthenticator, preprepares: int) -> None:
        self.auth, self.remaining = auth, preprepares
        self.padded: dict[tuple[int, int], PrePrepare | None] = {}  # (view, seq) -> what every backup gets

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if not isinstance(message, PrePrepare):
            return [(dst, message, 0.0)]
        slot = (message.view, message.seq)
        if slot not in self.padded:
            self.padded[slot] = self._padded(message) if self.remaining > 0 else None
            self.remaining -= 1
        padded = self.padded[slot]
        return [] if padded is None else [(dst, padded, 0.0)]

    def _padded(self, preprepare: PrePrepare) -> PrePrepare:
        if not preprepare.batch:
            return preprepare
        batch = (preprepare.batch * MAX_BATCH)[:MAX_BATCH]
        return signed(replace(preprepare, batch=batch, digest=batch_digest(batch, preprepare.verdicts)), self.auth.sign)


class Fill(Honest):
    """As primary, leaves a hole in the order and fills the window above it: its first
    PRE-PREPARE (seq s) after it has seen `requests` requests never goes out, and in its place
    it signs PRE-PREPAREs for s+1 up to s + FILL_SLOTS, each batch holding every request it has
    seen (distinct, each signed by its client, ordered or not), up to a batch's bytes; of that
    view it sends no PRE-PREPARE of its own after. Nothing above the hole executes, so no checkpoint moves h, and each VIEW-CHANGE
    that replaces it would carry every batch its sender took above the hole
    (`ReplicaSettings.window_bytes` bounds them). Everything else it sends as it should."""

    kind = "fill"

    def __init__(self, auth: SimAuthenticator, requests: int) -> None:
        self.auth, self.requests = auth, requests
        self.sent: set[tuple[int, int]] = set()  # (view, seq) of its own PRE-PREPAREs that went out
        self.seen: dict[tuple[str, int], Request] = {}
        self.hole: tuple[int, int] | None = None
        self.filled: list[PrePrepare] = []  # what every backup gets in place of the hole, once
        self.filled_to: set[Address] = set()

    def observe(self, message: Message) -> list[Send]:
        if isinstance(message, Request):
            self.seen.setdefault(message.key, message)
        return []

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if not isinstance(message, PrePrepare):
            return [(dst, message, 0.0)]
        for request in message.batch:
            self.seen.setdefault(request.key, request)
        slot = (message.view, message.seq)
        if self.hole is None and slot not in self.sent and len(self.seen) >= self.requests:
            self.hole, self.filled = slot, self._fill(message)
        if self.hole is not None and message.view == self.hole[0] and message.seq >= self.hole[1]:
            if slot != self.hole or dst in self.filled_to:
                return []  # its own batches above the hole, and the resends of the hole
            self.filled_to.add(dst)
            return [(dst, preprepare, 0.0) for preprepare in self.filled]
        self.sent.add(slot)
        return [(dst, message, 0.0)]

    def _fill(self, hole: PrePrepare) -> list[PrePrepare]:
        taken: list[Request] = []
        room = MAX_BATCH_BYTES  # `batch_bytes`: the sum of the requests' sizes
        for request in self.seen.values():
            room -= request.size
            if len(taken) == MAX_BATCH or room < 0:
                break
            taken.append(request)
        batch = tuple(taken)
        return [
            signed(PrePrepare(hole.view, seq, batch_digest(batch, ()), hole.sender, batch, epoch=hole.epoch),
                   self.auth.sign)
            for seq in range(hole.seq + 1, hole.seq + 1 + FILL_SLOTS)
        ]


class DropProofs(Honest):
    """As primary, strips the certified verdicts from each PRE-PREPARE it sends (a batch of
    verdicts alone goes out empty), and is otherwise honest: requests are ordered and answered,
    so only the verdict log, which the backups' timers must defend, goes without its leaves."""

    kind = "drop-proofs"

    def __init__(self, auth: SimAuthenticator) -> None:
        self.auth = auth
        self.stripped: dict[tuple[int, int], PrePrepare] = {}  # (view, seq) -> what every backup gets

    def outgoing(self, dst: Address, message: Message) -> list[Send]:
        if not isinstance(message, PrePrepare) or not message.verdicts:
            return [(dst, message, 0.0)]
        slot = (message.view, message.seq)
        if slot not in self.stripped:
            self.stripped[slot] = signed(replace(message, verdicts=(), digest=batch_digest(message.batch, ())),
                                         self.auth.sign)
        return [(dst, self.stripped[slot], 0.0)]
