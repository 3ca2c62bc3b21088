"""What the protocol core expects of a node's durable storage: a contract, not an implementation.

The core never opens a store. A driver saves each replica step before it
carries out any of that step's effects, answers FETCH from the stored ledger,
resends stored replies and serves stored votes (ResendReply, ServeVotes),
and rebuilds the replica with `Replica.restore` from what `load` returns.
`node.storage.NodeStore` fulfils this contract; the simulator is handed a
store factory and speaks to stores only through it, so nothing in `pbft/`
depends on `node/`.
"""

from __future__ import annotations

from typing import Callable, Protocol

from pbft.effects import Effect
from pbft.ledger import LedgerReader
from pbft.messages import Message, Reply, Request, ResultVote
from pbft.durable import DurableState


class StoreError(Exception):
    """A store could not write (its disk is full, or failing): what `save` raises then."""

    def __init__(self, cause: Exception, directory: str) -> None:
        super().__init__(f"{type(cause).__name__}: {cause}")
        self.directory = directory


class Loaded(Protocol):
    """What a store gives back after a stop: enough for `Replica.restore`, and the builds to run again."""

    @property
    def state(self) -> DurableState: ...  # `Replica.durable_state()` as last saved

    @property
    def messages(self) -> list[Message]: ...  # protocol messages since the last stable checkpoint, and RESULT votes

    @property
    def executed(self) -> dict[tuple[str, int], tuple[int, bool]]: ...  # executed requests: (seq, whether replied)

    @property
    def unfinished(self) -> list[tuple[int, Request]]: ...  # (seq, request) of builds started here, never answered

    @property
    def learnt(self) -> list[tuple[int, Request]]: ...  # (seq, request) learnt by state transfer, never built here

    @property
    def cancels(self) -> list[tuple[int, Request]]: ...  # (seq, request) of every executed cancel (`pbft.cancels`)

    @property
    def deliveries(self) -> list[tuple[int, Request]]: ...  # (seq, request) of executed requests naming a delivery

    @property
    def changes(self) -> list[tuple[int, Request]]: ...  # (seq, request) of every executed network change

    @property
    def chosen(self) -> dict[tuple[str, int], tuple[int, ...]]: ...  # builds only f+1 chosen build (`pbft.builders`)

    @property
    def log(self) -> list[tuple[tuple[str, int], bytes]]: ...  # the verdict log's leaves, in order: (build, data)


class ReplicaStore(LedgerReader, Protocol):
    """Also a `pbft.ledger.LedgerReader`: FETCH is answered from the store."""

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool = True) -> None:
        """Make one replica step durable, atomically, before any of its effects is carried out.

        With `sync` (`pbft.effects.must_sync`) the step is on disk when `save`
        returns, with every step saved before it. Without, it must survive a
        killed process, but a power cut may take it and the unsynced steps
        after it, never a step before the last synced one. A store that cannot write
        raises `StoreError`."""

    def load(self) -> Loaded | None:
        """What was saved before the last stop, or None for a node that never ran."""

    def reply(self, client: str, timestamp: int) -> Reply | None:
        """The reply this node sent for a request (a SendReply it saved), to send again (ResendReply)."""

    def votes(self, keys: tuple[tuple[str, int], ...]) -> list[ResultVote]:
        """Every RESULT vote kept for these builds (a Store it saved), to serve a VOTE-FETCH (ServeVotes)."""

    def build_records(self, seq: int) -> list[dict]:
        """Each build ordered at `seq`: `client`, `timestamp`, `own_result` (this node's result
        dict or None), `verdict` ({"state": certified|disputed|pending, "result": dict or None})
        and `votes` (every node's RESULT vote kept for it)."""


# A fresh, empty store for one node of a network of n = 3f+1: (n, f) -> store.
StoreFactory = Callable[[int, int], ReplicaStore]
