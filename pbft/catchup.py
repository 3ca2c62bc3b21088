"""When a replica is behind its peers, and when it may ask them for state (OSDI'99 §5.3.2).

A replica catches up only on evidence it can trust: f+1 distinct nodes
vouching for a sequence number or view beyond its own (at least one of them
is honest), or a checkpoint proof signed by 2f+1 nodes that it verified.
Evidence is recorded only from messages that passed every check, so a single
faulty peer naming an absurd sequence number or view moves nothing.

Where nothing else would show it (the network went idle right after the
batches a node missed), nodes say STATUS after a quiet interval, backing
off while the quiet lasts.

Being behind is normal for a moment: in fault-free operation the first peer
COMMITs arrive before a replica's own. It asks only after it has been behind,
without executing anything, for `interval_s`; unanswered asks back off
(doubling, capped), so a node waiting on a stalled sequence number does not
flood its peers.
"""

from __future__ import annotations

from typing import Iterable

from pbft.quorum import reply_quorum

BACKOFF_CAP = 5  # at most interval_s * 2**5 between unanswered asks


def vouched(claims: dict[int, int], needed: int) -> int:
    """The highest value that at least `needed` distinct senders claimed (0 if none)."""
    if len(claims) < needed:
        return 0
    return sorted(claims.values(), reverse=True)[needed - 1]


class CatchUp:
    def __init__(self, f: int, interval_s: float) -> None:
        self.f = f
        self.interval_s = interval_s
        # Per sender, the highest sequence number / view it showed in a validated
        # message: one entry per node, so the memory is bounded by n. A COMMIT shows
        # its sender prepared a batch; a CHECKPOINT or STATUS that it executed it.
        self.commit_claims: dict[int, int] = {}
        self.executed_claims: dict[int, int] = {}
        self.view_claims: dict[int, int] = {}
        self.proven_seq = 0  # highest checkpoint a verified 2f+1 proof showed us
        self.behind_since: float | None = None
        self.last_progress_at = 0.0
        self.next_ask_at = 0.0
        self.asks_without_progress = 0
        self.ask_at_once = False  # after a restart: peers may have moved on while we were down
        self.announced_at = 0.0  # when we last said STATUS
        self.announcements = 0  # STATUS messages since our last progress: each waits twice as long

    # --- evidence -------------------------------------------------------

    def claim_seq(self, sender: int, seq: int, *, executed: bool) -> None:
        claims = self.executed_claims if executed else self.commit_claims
        if seq > claims.get(sender, 0):
            claims[sender] = seq

    def claim_view(self, sender: int, view: int) -> None:
        if view > self.view_claims.get(sender, -1):  # view 0 too: it confirms a view (Replica.view_confirmed)
            self.view_claims[sender] = view

    def members_changed(self, f: int, members: Iterable[int]) -> None:
        """An epoch began (`pbft.epochs`): f+1 of its members vouch from now on; claims of views
        of the epoch before, and of nodes that are no members, count no more."""
        kept = set(members)
        self.f = f
        self.view_claims.clear()
        self.commit_claims = {sender: seq for sender, seq in self.commit_claims.items() if sender in kept}
        self.executed_claims = {sender: seq for sender, seq in self.executed_claims.items() if sender in kept}

    def in_view(self, view: int) -> int:
        """How many other nodes showed that they work in `view`, and no later one."""
        return sum(1 for claimed in self.view_claims.values() if claimed == view)

    def proven(self, seq: int) -> None:
        self.proven_seq = max(self.proven_seq, seq)

    def executed_seq(self) -> int:
        """How far f+1 nodes (so at least one honest) executed, as far as we know."""
        return max(self.proven_seq, vouched(self.executed_claims, reply_quorum(self.f)))

    def target_seq(self) -> int:
        """How far to catch up: what was executed, or committed (served as commit certificates)."""
        return max(self.executed_seq(), vouched(self.commit_claims, reply_quorum(self.f)))

    def target_view(self) -> int:
        return vouched(self.view_claims, reply_quorum(self.f))

    # --- timing -----------------------------------------------------------

    def progressed(self, now: float) -> None:
        """This replica executed a batch: whatever wait it was in starts again."""
        self.last_progress_at = now
        self.asks_without_progress = 0
        self.announcements = 0
        self.behind_since = None

    def update(self, now: float, last_executed: int, view: int) -> bool:
        """Note whether we are behind as of `now` (after each input); return whether we are."""
        behind = self.target_seq() > last_executed or self.target_view() > view
        if not behind:
            self.behind_since = None
        elif self.behind_since is None:
            self.behind_since = now
        return behind

    def should_announce(self, now: float, interval_s: float) -> bool:
        """Whether to say STATUS now: after `interval_s` without progress, then after twice
        as long each time (capped), so an idle network costs a message per node per few minutes."""
        quiet_since = max(self.last_progress_at, self.announced_at)
        if now - quiet_since < interval_s * 2 ** min(self.announcements, BACKOFF_CAP + 1):
            return False
        self.announced_at = now
        self.announcements += 1
        return True

    def behind(self, last_executed: int) -> bool:
        """Honest peers executed beyond us: a stall here is ours, not the network's."""
        return self.executed_seq() > last_executed

    def should_ask(self, now: float, last_executed: int, view: int) -> bool:
        """Whether to ask peers for state now; records the ask when it says yes."""
        if not self.update(now, last_executed, view) and not self.ask_at_once:
            return False
        if not self.ask_at_once:
            assert self.behind_since is not None
            waited_since = max(self.behind_since, self.last_progress_at)
            if now - waited_since < self.interval_s or now < self.next_ask_at:
                return False
        self.ask_at_once = False
        self.next_ask_at = now + self.interval_s * 2 ** min(self.asks_without_progress, BACKOFF_CAP)
        self.asks_without_progress += 1
        return True
