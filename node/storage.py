"""A node's durable state in SQLite: protocol messages, ledger and build results.

The driver saves each step of the replica in one transaction before it sends
anything that step produced (raft's "persist before send"), so a node killed
with `kill -9` restarts with every message it vouched for and every batch it
executed. The database runs in WAL mode. A step that sends, signs or builds
something (`pbft.effects.must_sync`) commits with synchronous=FULL: the WAL is
fsynced before `save` returns, so even after a power loss the node remembers
every PREPARE, COMMIT and VIEW-CHANGE it sent and cannot sign a conflicting
one. A step that only took messages in commits with synchronous=NORMAL: it
survives a killed process, and a power cut can take only such steps from the
end of the WAL (its frames are checksummed in a chain, so what survives is a
prefix), since the fsync of the next synced commit carries every frame before
it. PRE-PREPAREs, PREPAREs and the executions that start builds are written
with synchronous=NORMAL before they leave: a killed process keeps them, and
a power cut may take them, which the vote horizon (`pbft.horizon`) makes safe;
the store tells a start after a reboot (`rebooted`) by the boot id it records
with the state. A store opened with synchronous=NORMAL never fsyncs a commit and could
lose sent messages to a power cut; it exists for measuring the cost
(scripts/bench.py durable).
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from pbft.durable import DurableState
from pbft.effects import BuildLearnt, Effect, Execute, KeepStableProof, RecordVerdict, SendReply, Store
from pbft.messages import Checkpoint, LedgerEntry, Message, NewView, Reply, Request, ResultVote, VerdictProof, decode, encode
from node.logtree import VerdictLogRows
from pbft.wire import decode_struct
from pbft.storage import StoreError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    type TEXT NOT NULL,
    view INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (type, view, seq, sender)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    view INTEGER NOT NULL,
    digest TEXT NOT NULL,
    batch TEXT NOT NULL,
    state_digest TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS votes (
    client TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    result TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (client, timestamp, sender)
);
CREATE TABLE IF NOT EXISTS verdicts (
    client TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL,
    result TEXT,
    PRIMARY KEY (client, timestamp)
);
CREATE TABLE IF NOT EXISTS verdict_log (
    position INTEGER PRIMARY KEY,
    client TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    leaf BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS verdict_log_build ON verdict_log (client, timestamp);
CREATE TABLE IF NOT EXISTS stable_proofs (
    seq INTEGER PRIMARY KEY,
    proof TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS builds (
    client TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    request TEXT NOT NULL,
    reply TEXT,
    built INTEGER NOT NULL DEFAULT 1,
    builders TEXT,
    PRIMARY KEY (client, timestamp)
);
"""
# Stores written before a column existed: every row in them was built here, by every member.
MIGRATIONS = {
    ("builds", "built"): "ALTER TABLE builds ADD COLUMN built INTEGER NOT NULL DEFAULT 1",
    ("builds", "builders"): "ALTER TABLE builds ADD COLUMN builders TEXT",
    # The verdict proofs ordered beside a batch (`pbft.ci.verdictlog`); NULL for a batch with none.
    ("ledger", "verdicts"): "ALTER TABLE ledger ADD COLUMN verdicts TEXT",
}


@dataclass(frozen=True)
class Loaded:
    """Everything `Replica.restore` needs, plus the builds that were running at the crash.

    `executed` holds the requests the ledger executed, built here or learnt, above
    their client's floor; which unfinished builds to run again is the replica's rule
    (`Replica.builds_to_rerun`).
    """

    state: DurableState
    messages: list[Message]
    executed: dict[tuple[str, int], tuple[int, bool]]  # key -> (seq, whether this node replied)
    unfinished: list[tuple[int, Request]]
    learnt: list[tuple[int, Request]]  # learnt by state transfer and never built here
    cancels: list[tuple[int, Request]]  # executed cancels (`pbft.cancels`), replayed by a restore
    deliveries: list[tuple[int, Request]]  # executed requests naming a delivery (`pbft.deliveries`), replayed too
    changes: list[tuple[int, Request]]  # executed network changes (`pbft.networks`), replayed by a restore
    chosen: dict[tuple[str, int], tuple[int, ...]]  # executed builds only the order's f+1 build (`pbft.builders`)
    log: list[tuple[tuple[str, int], bytes]]  # the verdict log's leaves, in order (`pbft.ci.verdictlog`)


def current_boot() -> str | None:
    """This boot of the machine (Linux's boot id), or None where it cannot be read: then
    every start counts as one after a reboot, the safe side."""
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


class NodeStore:
    def __init__(self, path: Path, *, n: int, f: int, synchronous: str = "FULL") -> None:
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        self._n, self._f = n, f
        self.path = path  # the database file; its folder is the node's data directory
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._synchronous = self._mode = synchronous
        self._db.executescript(SCHEMA)
        for (table, column), statement in MIGRATIONS.items():
            if column not in {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}:
                self._db.execute(statement)
        self.verdict_log = VerdictLogRows(self._db)
        self._pruned_below = 0
        self._saved_state: DurableState | None = None  # the state row as on disk, to skip rewriting it
        # Whether the machine restarted since the state was last written: written and unfsynced
        # steps may then be lost (`pbft.horizon`). The boot is recorded with the next state written.
        self._boot = current_boot()
        row = self._db.execute("SELECT value FROM meta WHERE key = 'boot'").fetchone()
        has_state = self._db.execute("SELECT 1 FROM meta WHERE key = 'state'").fetchone() is not None
        self.rebooted = has_state and (self._boot is None or row is None or row[0] != self._boot)
        self._boot_written = not self.rebooted and row is not None

    def close(self) -> None:
        self._db.close()

    def first_document(self, document: dict, *, changed: bool) -> dict:
        """The network document the ledger starts from. Once the order changed the document
        (`changed`: the ledger holds a change), it is the one kept at the start before, whatever
        the file holds now; until then, the file's `document`, kept for the starts to come."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'first_document'").fetchone()
        if changed and row is not None:
            return json.loads(row[0])
        self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('first_document', ?)",
                         (json.dumps(document),))
        return document

    def load(self) -> Loaded | None:
        """The state saved before the last stop, or None for a node that never ran.

        Only what is live is read: the messages above the last stable checkpoint (older
        ones are pruned), and of the builds and their votes only those above each
        client's floor (`pbft.clients`), through the (client, timestamp) keys. Builds
        the client table forgot stay on disk as the record, and cost a restart nothing."""
        row = self._db.execute("SELECT value FROM meta WHERE key = 'state'").fetchone()
        if row is None:
            return None
        state = DurableState.from_json(json.loads(row[0]))
        messages = [decode(json.loads(body)) for (body,) in self._db.execute("SELECT body FROM messages")]
        executed: dict[tuple[str, int], tuple[int, bool]] = {}
        chosen: dict[tuple[str, int], tuple[int, ...]] = {}
        unfinished, learnt, cancels, deliveries = [], [], [], []
        # Every client that executed anything here has a newest timestamp in the state.
        for client in sorted(state.client_latest):
            live = (client, state.client_floor.get(client, -1))
            messages += [
                decode(json.loads(body))
                for (body,) in self._db.execute("SELECT body FROM votes WHERE client = ? AND timestamp > ?", live)
            ]
            for timestamp, seq, replied, built, builders, request in self._db.execute(
                "SELECT timestamp, seq, reply IS NOT NULL, built, builders, CASE WHEN reply IS NULL THEN request END"
                " FROM builds WHERE client = ? AND timestamp > ?", live,
            ):
                executed[(client, timestamp)] = (seq, bool(replied))
                if builders is not None:
                    chosen[(client, timestamp)] = tuple(json.loads(builders))
                if request is not None:
                    (unfinished if built else learnt).append((seq, decode(json.loads(request))))
            for found, field in ((cancels, "cancels"), (deliveries, "delivery")):
                found += [
                    (seq, decode(json.loads(request))) for seq, request in self._db.execute(
                        "SELECT seq, request FROM builds WHERE client = ? AND timestamp > ?"
                        f" AND json_extract(request, '$.operation.{field}') IS NOT NULL", live,
                    )
                ]
        for found in (unfinished, learnt, cancels, deliveries):
            found.sort(key=lambda build: build[0])
        self._pruned_below = state.low_watermark
        self._saved_state = state
        log = [((client, timestamp), bytes(leaf)) for client, timestamp, leaf in self._db.execute(
            "SELECT client, timestamp, leaf FROM verdict_log ORDER BY position")]
        return Loaded(state, messages, executed, unfinished, learnt, cancels, deliveries, self._changes(), chosen, log)

    def save(self, state: DurableState, effects: list[Effect], *, sync: bool = True) -> None:
        """Persist one replica step atomically: its state and whatever its effects make durable.
        Some steps change neither: they cost no transaction. Without `sync` the commit is
        not fsynced (see `pbft.storage.ReplicaStore.save`); the next synced one carries it.
        A full or failing disk raises `StoreError`, naming the data directory."""
        try:
            self._write(state, effects, sync=sync)
        except (sqlite3.Error, OSError) as error:
            raise StoreError(error, str(self.path.parent)) from error

    def _write(self, state: DurableState, effects: list[Effect], *, sync: bool) -> None:
        state_changed = state != self._saved_state
        if not state_changed and not effects:
            return
        mode = self._synchronous if sync else "NORMAL"
        if mode != self._mode:
            self._db.execute(f"PRAGMA synchronous={mode}")
            self._mode = mode
        with self._db:
            self._db.execute("BEGIN")
            if state_changed:
                self._db.execute(
                    "INSERT OR REPLACE INTO meta (key, value) VALUES ('state', ?)", (json.dumps(state.to_json()),)
                )
                if not self._boot_written and self._boot is not None:
                    self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('boot', ?)", (self._boot,))
                    self._boot_written = True
            for effect in effects:
                if isinstance(effect, Store):
                    self._store_message(effect.message)
                elif isinstance(effect, Execute):
                    self._store_execution(effect)
                elif isinstance(effect, RecordVerdict):
                    self._db.execute(
                        "INSERT OR REPLACE INTO verdicts (client, timestamp, seq, state, result) VALUES (?, ?, ?, ?, ?)",
                        (effect.client, effect.timestamp, effect.seq, effect.state,
                         None if effect.result is None else json.dumps(effect.result)),
                    )
                elif isinstance(effect, KeepStableProof):
                    self._db.execute(
                        "INSERT OR REPLACE INTO stable_proofs (seq, proof) VALUES (?, ?)",
                        (effect.seq, json.dumps([encode(checkpoint) for checkpoint in effect.proof])),
                    )
                elif isinstance(effect, BuildLearnt):
                    # Started here after all: a restart runs it again until it is answered.
                    self._db.execute(
                        "UPDATE builds SET built = 1 WHERE client = ? AND timestamp = ?",
                        (effect.request.client, effect.request.timestamp),
                    )
                elif isinstance(effect, SendReply):
                    reply = effect.reply
                    self._db.execute(
                        "UPDATE builds SET reply = ? WHERE client = ? AND timestamp = ?",
                        (json.dumps(encode(reply)), reply.client, reply.timestamp),
                    )
            low_watermark = state.low_watermark
            if low_watermark > self._pruned_below:
                # Below a stable checkpoint the ledger is the record; votes are no longer needed.
                self._db.execute(
                    "DELETE FROM messages WHERE type NOT IN ('checkpoint', 'new-view') AND seq <= ?"
                    " OR type = 'checkpoint' AND seq < ?",
                    (low_watermark, low_watermark),
                )
                self._pruned_below = low_watermark
        self._saved_state = state

    def _store_message(self, message: Message) -> None:
        if isinstance(message, ResultVote):
            self._store_vote(message)
            return
        if isinstance(message, NewView):
            # Only the NEW-VIEW of the current view is ever needed again.
            self._db.execute("DELETE FROM messages WHERE type = ?", (NewView.TYPE,))
        self._db.execute(
            "INSERT OR IGNORE INTO messages (type, view, seq, sender, body) VALUES (?, ?, ?, ?, ?)",
            (
                message.TYPE,
                getattr(message, "view", 0),
                getattr(message, "seq", 0),
                message.sender,
                json.dumps(encode(message)),
            ),
        )

    def _store_vote(self, vote: ResultVote) -> None:
        # The replica sends only a node's first vote for a build; IGNORE makes a replay harmless.
        self._db.execute(
            "INSERT OR IGNORE INTO votes (client, timestamp, sender, seq, result, body) VALUES (?, ?, ?, ?, ?, ?)",
            (vote.client, vote.timestamp, vote.sender, vote.seq, json.dumps(vote.result.to_dict()),
             json.dumps(encode(vote))),
        )

    def reply(self, client: str, timestamp: int) -> Reply | None:
        row = self._db.execute(
            "SELECT reply FROM builds WHERE client = ? AND timestamp = ?", (client, timestamp)
        ).fetchone()
        return None if row is None or row[0] is None else decode(json.loads(row[0]))

    def votes(self, keys: tuple[tuple[str, int], ...]) -> list[ResultVote]:
        found = []
        for client, timestamp in keys:
            rows = self._db.execute(
                "SELECT body FROM votes WHERE client = ? AND timestamp = ? ORDER BY sender", (client, timestamp)
            )
            found += [decode(json.loads(body)) for (body,) in rows]
        return found

    def executed_at(self, seq: int) -> bool:
        """Whether this node's ledger holds a batch at `seq`."""
        return self._db.execute("SELECT 1 FROM ledger WHERE seq = ?", (seq,)).fetchone() is not None

    def build_records(self, seq: int) -> list[dict]:
        """Every build ordered at `seq`: this node's result, the certified verdict and the votes kept (`pbft.votes`)."""
        rows = self._db.execute("SELECT batch FROM ledger WHERE seq = ?", (seq,)).fetchone()
        if rows is None:
            return []
        records = []
        for wire in json.loads(rows[0]):
            request = decode(wire)
            key = (request.client, request.timestamp)
            own = self._db.execute("SELECT reply FROM builds WHERE client = ? AND timestamp = ?", key).fetchone()
            state = self._db.execute("SELECT state, result FROM verdicts WHERE client = ? AND timestamp = ?", key)
            state = state.fetchone() or ("pending", None)
            votes = self._db.execute(
                "SELECT sender, body FROM votes WHERE client = ? AND timestamp = ? ORDER BY sender", key
            )
            records.append({
                "seq": seq,
                "client": request.client,
                "timestamp": request.timestamp,
                "operation": request.operation.to_dict(),
                "request": wire,  # as its client signed it: another client checks that signature
                "own_result": None if own is None or own[0] is None else json.loads(own[0])["result"],
                "verdict": {"state": state[0], "result": None if state[1] is None else json.loads(state[1])},
                "votes": [{"node": sender, "vote": json.loads(body)} for sender, body in votes],
            })
        return records

    def build_record(self, client: str, timestamp: int) -> dict | None:
        """`build_records` of the one request (client, timestamp), or None if this node has not executed it.

        A client knows its requests by timestamp, not by the sequence number
        the network gave them: this is how it finds one in the ledger.
        """
        row = self._db.execute("SELECT seq FROM builds WHERE client = ? AND timestamp = ?", (client, timestamp))
        row = row.fetchone()
        if row is None:
            return None
        return next(
            (record for record in self.build_records(row[0])
             if (record["client"], record["timestamp"]) == (client, timestamp)),
            None,
        )

    def _changes(self) -> list[tuple[int, Request]]:
        """Every network change the ledger executed, whatever its client's floor, in the order
        they executed (a restore replays them all from the document the node starts with:
        `pbft.networks`); those of one batch in the batch's order, each on what the one
        before it made."""
        changes: list[tuple[int, Request]] = []
        seqs: dict[int, set[tuple[str, int]]] = {}
        for seq, client, timestamp in self._db.execute(
            "SELECT seq, client, timestamp FROM builds WHERE json_extract(request, '$.operation.change') IS NOT NULL"
        ):
            seqs.setdefault(seq, set()).add((client, timestamp))
        for seq in sorted(seqs):
            (batch,) = self._db.execute("SELECT batch FROM ledger WHERE seq = ?", (seq,)).fetchone()
            executed = [decode(wire) for wire in json.loads(batch)]
            changes += [(seq, request) for request in executed if request.key in seqs[seq]]
        return changes

    def _store_execution(self, effect: Execute) -> None:
        batch = json.dumps([encode(request) for request in effect.batch])
        verdicts = json.dumps([encode(proof) for proof in effect.verdicts]) if effect.verdicts else None
        self._db.execute(
            "INSERT OR REPLACE INTO ledger (seq, view, digest, batch, state_digest, verdicts) VALUES (?, ?, ?, ?, ?, ?)",
            (effect.seq, effect.view, effect.digest, batch, effect.state_digest, verdicts),
        )
        self._db.executemany(
            "INSERT OR REPLACE INTO verdict_log (position, client, timestamp, seq, leaf) VALUES (?, ?, ?, ?, ?)",
            [(leaf.position, *leaf.key, leaf.seq, leaf.data) for leaf in effect.leaves],
        )
        chosen = dict(effect.chosen)
        for requests, built in ((effect.requests, 1), (effect.answered, 1), (effect.learnt, 0)):
            for request in requests:
                builders = chosen.get(request.key)
                self._db.execute(
                    "INSERT OR IGNORE INTO builds (client, timestamp, seq, request, built, builders)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (request.client, request.timestamp, effect.seq, json.dumps(encode(request)), built,
                     None if builders is None else json.dumps(builders)),
                )

    def ledger_entries(self, from_seq: int, to_seq: int) -> list[LedgerEntry]:
        rows = self._db.execute(
            "SELECT seq, batch, verdicts FROM ledger WHERE seq BETWEEN ? AND ? ORDER BY seq", (from_seq, to_seq)
        )
        return [LedgerEntry(seq, tuple(decode(wire) for wire in json.loads(batch)),
                            () if verdicts is None else tuple(decode_struct(VerdictProof, proof) for proof in json.loads(verdicts)))
                for seq, batch, verdicts in rows]

    def stable_proof_seqs(self, from_seq: int, to_seq: int) -> list[int]:
        rows = self._db.execute(
            "SELECT seq FROM stable_proofs WHERE seq BETWEEN ? AND ? ORDER BY seq", (from_seq, to_seq)
        )
        return [seq for (seq,) in rows]

    def stable_proof(self, seq: int) -> tuple[Checkpoint, ...] | None:
        row = self._db.execute("SELECT proof FROM stable_proofs WHERE seq = ?", (seq,)).fetchone()
        return None if row is None else tuple(decode(wire) for wire in json.loads(row[0]))

    def ledger(self) -> list[tuple[int, str, str]]:
        """(seq, batch digest, state digest) of every executed batch, for comparing nodes."""
        return list(self._db.execute("SELECT seq, digest, state_digest FROM ledger ORDER BY seq"))
