"""The replica's data: its settings and what it knows about one sequence number."""

from __future__ import annotations

from dataclasses import dataclass, field

from pbft.messages import MAX_BATCH_BYTES, MAX_FRAME_BYTES, Commit, Prepare, PrePrepare

GENESIS_STATE = "0" * 64


@dataclass(frozen=True)
class ReplicaSettings:
    node_id: int
    n: int
    f: int
    checkpoint_interval: int = 128  # K (§4.3): a checkpoint every K sequence numbers
    log_window: int = 256  # L: sequence numbers a replica accepts above its low watermark h
    batch_max: int = 64  # requests in one pre-prepare
    # Bytes of batches a replica takes pre-prepared above what it executed (`batch_bytes`): a
    # backup refuses a PRE-PREPARE past them, and a primary assigns none that could pass them.
    # A faulty primary that leaves a hole in the order and fills the window above it (L batches
    # of MAX_BATCH_BYTES, 32 MB) would otherwise make every VIEW-CHANGE that replaces it larger
    # than the frame a peer takes. An honest primary keeps `pipeline_depth` batches in flight.
    window_bytes: int = MAX_FRAME_BYTES // 4
    pipeline_depth: int = 8  # sequence numbers a primary keeps in flight before it batches
    max_buffered: int = 4096  # early messages held, shared out per sender (per_sender_buffer)
    view_change_timeout_s: float = 4.0  # T: doubled for each consecutive view change
    fetch_interval_s: float = 1.0  # how long a lagging replica waits before asking peers for state
    status_interval_s: float = 5.0  # idle this long, a node tells its peers where it is (then backs off)
    vote_retry_s: float = 2.0  # how long a build's verdict may stay open here before we ask peers for votes
    transfer_chunk: int = 256  # batches per state-transfer answer, where the kept checkpoint proofs allow
    # And bytes of batches per answer, where they allow: the asker decodes and checks an answer in
    # one step of its event loop, half a second per MB on a loaded node, while it answers nobody.
    transfer_bytes: int = 512 * 1024
    # Exactly-once bookkeeping forgets a client's requests this much older than
    # its newest executed one, so memory does not grow with requests served.
    request_expiry_s: float = 3600.0
    # A client picks its own timestamps, so the hour above bounds nothing for a client that
    # numbers its requests 1, 2, 3, ...: at each checkpoint a client's floor also rises
    # until at most this many of its executed requests are kept. Its requests that have
    # not executed yet are bounded too: a node takes at most `max_open_per_client` of them.
    max_requests_per_client: int = 4096
    max_open_per_client: int = 1024
    # Backups send their votes to the primary alone, which passes quorums on in one
    # frame (`pbft.messages.Relay`): fewer frames per request in a large network,
    # for one more hop per phase.
    relay_votes: bool = False
    # A backup whose vote went to the primary alone and whose slot has not moved on for
    # this long broadcasts its votes of that slot, as every node does without relaying:
    # a lost relay or a slow primary then costs this much, not a view change or a transfer.
    relay_fallback_s: float = 0.5
    # A member the order did not pick to build a request (a repository with `builders: f+1`,
    # `pbft.builders`) builds it anyway once its verdict is still open this long after the
    # first picked builder's result: what a silent builder costs, plus one build.
    standby_s: float = 30.0
    # The network as a SLSA builder (`pbft.provenance.builder_id`), which every node
    # names in the provenance it signs of a build's artifacts. It comes from the
    # configuration's public keys, which the core never sees; a replica not told
    # (the simulator, core tests) signs no provenance.
    builder_id: str = ""
    # The digest of the network document this node runs (shared/networkdoc.py), which its
    # CHECKPOINTs, STATUS and replies name; "" where there is none (the simulator, core tests).
    network: str = ""
    # Whether a change of the network document may change its membership (add, remove or
    # re-key a node, change f: `pbft.epochs`); nodes take them (`shared.config_build`), the
    # replica alone does not, as a network whose links and clients could not follow one.
    changes_membership: bool = False
    # Check the replica's invariants after every step, stopping at the first broken one
    # (`pbft.interpreter`): tests and the simulator do; a node does where its environment sets
    # PBFT_CI_CHECK_INVARIANTS=1 (`node.contexts`), as the test suite's nodes do. About 6 % of
    # a node's CPU per request at n = 4 (docs/performance.md).
    check_invariants: bool = True

    @property
    def per_sender_buffer(self) -> int:
        """Early messages held per sender (`Admission.future`, `Verdicts.early_votes`): a share of
        `max_buffered`, and never less than a window of PREPAREs and COMMITs. A NEW-VIEW
        re-proposes every prepared slot above h, so a backup it reaches last gets that many
        votes from each peer before it enters the view; with less room, votes for the new
        slots were pushed out by those for executed ones, and nothing moved until the next
        view change."""
        return max(16, self.max_buffered // self.n, 2 * self.log_window)

    def __post_init__(self) -> None:
        assert self.n >= 3 * self.f + 1, "PBFT needs n >= 3f+1"
        assert self.node_id >= 0
        assert self.log_window >= self.checkpoint_interval > 0
        assert self.batch_max > 0 and self.pipeline_depth > 0 and self.transfer_chunk > 0 and self.transfer_bytes > 0
        assert self.window_bytes >= MAX_BATCH_BYTES, "room for one batch at least"
        assert self.max_requests_per_client > 0 and self.max_open_per_client > 0


@dataclass
class Slot:
    """Everything this replica knows about one sequence number in its view."""

    preprepare: PrePrepare | None = None
    # Signed votes by sender: prepares make up the certificate a view change carries.
    prepares: dict[int, Prepare] = field(default_factory=dict)
    commits: dict[int, Commit] = field(default_factory=dict)
    prepared: bool = False
    committed: bool = False
    # With relayed votes (ReplicaSettings.relay_votes): when our last vote of this slot
    # went to the primary alone, and whether the slot went back to all-to-all voting.
    voted_at: float | None = None
    all_to_all: bool = False


def vote_digests(votes: dict[int, Prepare] | dict[int, Commit]) -> dict[int, str]:
    return {sender: vote.digest for sender, vote in votes.items()}

