"""Which peers a node cannot reach: the hint that lets a backup suspect a dead primary
at once instead of after its view-change timer.

OSDI'99 §4.4 leaves the timer's length to the implementation; whatever it is, a
killed primary costs all of it. But a killed process closes its connections, and a
machine that is gone refuses or drops the next ones: the node's links know within
milliseconds. This part keeps what the links saw (the node's driver feeds it from
its outbound connections, the simulator from its network model) and says which
peers are unreachable: their link was up once and has been down for `DOWN_FOR_S`.
`pbft.views` then ends a timer that runs for such a primary at once.

Why each condition:

- Up once: at start-up the nodes come up one by one; a peer never reached may be
  starting, and a network must not leave view 0 because its primary started last.
- Down for `DOWN_FOR_S`: a link that drops and connects again at once (a blip, a
  peer restarted) says nothing of the peer. A link tries again at least every
  second (node/peers.py), so a peer that is back is seen within about that.

Only the link counts, not whose messages arrive: a peer's signed messages reach a
node through others too (votes served and relayed, a NEW-VIEW served again), long
after that peer died.

A hint, never a proof: a link that fails while its peer works (one direction of a
partition) makes the node suspect a working primary, as an expired timer does in
the same case, and alone it only asks for the next view (the others join as
`pbft.views` says). Nobody else can make a node suspect a peer: only its own links
feed this part. Bounded by the membership: the driver links to members only, and
`forget` drops a peer whose link closed for good.
"""

from __future__ import annotations

# How long a link stays down before its peer is unreachable: longer than a blip or a
# restart's reconnect, far shorter than any view-change timeout.
DOWN_FOR_S = 0.5


class Reach:
    def __init__(self, down_for_s: float = DOWN_FOR_S) -> None:
        self.down_for_s = down_for_s
        self._up_once: set[int] = set()
        self._down_since: dict[int, float] = {}  # peers up once whose link is down now

    def link(self, peer: int, up: bool, now: float) -> None:
        """The outbound link to `peer` is up or down at `now` (said again, nothing changes)."""
        if up:
            self._up_once.add(peer)
            self._down_since.pop(peer, None)
        elif peer in self._up_once:
            self._down_since.setdefault(peer, now)

    def forget(self, peer: int) -> None:
        """The node no longer links to `peer` (no longer a member, or moved)."""
        self._up_once.discard(peer)
        self._down_since.pop(peer, None)

    def unreachable(self, now: float) -> frozenset[int]:
        since = now - self.down_for_s
        return frozenset(peer for peer, down_at in self._down_since.items() if down_at <= since)
