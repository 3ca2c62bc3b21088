"""A primary's PRE-PREPAREs that did not commit, sent again.

PBFT leaves a lost PRE-PREPARE to the client (§4.4): the client retransmits, the
backups start their timers and a view change re-proposes the slot. A batch that
carries certified verdicts alone (`pbft.deliveries`) has no client waiting for
it, so when every backup missed its PRE-PREPARE (a partition that healed right
after it went out) nothing retransmitted, no timer ran, and the primary, its
pipeline full of that one slot, assigned nothing more: the verdicts it held
were never logged. The primary now sends such a PRE-PREPARE again while its
slot has not committed here; a backup that already holds it ignores the copy
(`pbft.admission`), one that missed it takes it in and votes.
"""

from __future__ import annotations

from collections.abc import Mapping

from pbft.effects import Broadcast
from pbft.seat import Seat
from pbft.slot import Slot

# Long enough that a slot of a working network commits first (milliseconds), short
# enough to cost less than a view change (`ReplicaSettings.view_change_timeout_s`).
RESEND_S = 1.0
# Each further copy of one PRE-PREPARE waits twice as long as the last, up to this: a slot
# that does not commit because the backups refuse it (a faulty primary's batch) costs each of
# them a few copies to read before the view changes, not one a second; one that a partition
# kept from them still goes out within RESEND_MAX_S of its healing.
RESEND_MAX_S = 8.0


class PrePrepareResend:
    """When this primary last sent each PRE-PREPARE of its view still in flight."""

    def __init__(self) -> None:
        # (view, seq) -> (when it is due again, the wait after that). Bounded by the slots in
        # flight: `due` forgets every slot outside them.
        self._sent: dict[tuple[int, int], tuple[float, float]] = {}

    def due(self, slots: Mapping[int, Slot], seat: Seat, first: int, last: int, now: float) -> list[Broadcast]:
        """As the primary of a view we are in, the PRE-PREPAREs of slots first..last that have
        not committed here and are due again: `RESEND_S` after they first went out, then after
        twice the wait before, up to `RESEND_MAX_S`; each counts as sent now."""
        if not seat.is_primary or seat.changing:
            self._sent = {}
            return []
        view, me = seat.view, seat.me
        again: list[Broadcast] = []
        kept: dict[tuple[int, int], tuple[float, float]] = {}
        for seq in range(first, last + 1):
            slot = slots.get(seq)
            pp = slot.preprepare if slot is not None else None
            if pp is None or slot.committed or pp.view != view or pp.sender != me:
                continue
            # First seen by a tick: it went out since the last one.
            due_at, wait = self._sent.get((view, seq), (now + RESEND_S, RESEND_S))
            if now >= due_at:
                again.append(Broadcast(pp))
                wait = min(2 * wait, RESEND_MAX_S)
                due_at = now + wait
            kept[view, seq] = (due_at, wait)
        self._sent = kept
        return again
