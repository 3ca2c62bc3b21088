"""What the ledger import tests share: a network of four nodes and two clients, this client's
records and its import on a simulated clock (`Imports`), and the members as real HTTP servers
that serve a ledger the test writes as it goes (`LedgerNodes`)."""

from __future__ import annotations

import time
import types

from aiohttp import web

from client.ledgerimport import LedgerImport
from client.records import BuildRecords
from harness.network import write_network
from pbft.build import Operation, Result
from pbft.encoding import canonical
from pbft.messages import Request, ResultVote, encode, signed
from shared.config import load_config
from shared.crypto import load_private_key, sign_bytes

OTHER = "other"
TIMESTAMP = int(time.time() * 1_000_000) // 16 * 16 + 1  # now, in the other client's lane
SUCCESS = Result("success", 0, "ab" * 20)
FAILURE = Result("failure", 1, "ab" * 20)


class Imports:
    """A network of four nodes and two clients, this one's records, signers for everyone, and
    this client's import on a clock the test moves (`now`, Unix seconds): a minute after
    TIMESTAMP's request to begin with."""

    def __init__(self, tmp_path) -> None:
        path = write_network(tmp_path, clients=("client", OTHER))
        self.config = load_config(path)
        self.keys = tmp_path / "keys"
        self.records = BuildRecords(tmp_path / "records" / "builds.sqlite")
        self.now = TIMESTAMP / 1_000_000 + 60
        self.live = types.SimpleNamespace(current=self.config)  # what the client runs: the test may change it
        self.importer = self.new_importer()

    def new_importer(self) -> LedgerImport:
        """This client's import, as a (re)start makes it."""
        importer = LedgerImport(self.live, "client", self.records, None)
        importer.clock = lambda: self.now
        return importer

    def sign(self, name: str):
        key = load_private_key(self.keys / f"{name}.key")
        return lambda payload: sign_bytes(key, canonical(payload))

    def request(self, client: str = OTHER, timestamp: int = TIMESTAMP, **changes) -> Request:
        operation = Operation("example", "main", **changes)
        return signed(Request(client, timestamp, operation), self.sign(f"client-{client}"))

    def vote(self, node: int, request: Request, result: Result = SUCCESS, *, signer: int | str | None = None,
             seq: int = 7) -> dict:
        """Node `node`'s RESULT vote for `request` ordered at `seq`, signed with the key of node
        `signer` (its own by default), or with keys/`signer`.key when that is a name."""
        vote = ResultVote(seq, request.client, request.timestamp, result, node)
        key = signer if isinstance(signer, str) else f"node-{node if signer is None else signer}"
        return {"node": node, "vote": encode(signed(vote, self.sign(key)))}

    def build(self, request: Request, votes: list[dict], seq: int = 7) -> dict:
        """A build as a node's ledger shows it (node/storage.py `build_records`)."""
        return {"seq": seq, "client": request.client, "timestamp": request.timestamp, "request": encode(request),
                "votes": votes}

    def record(self, build_id: int = TIMESTAMP) -> dict | None:
        return self.records.builds.get(build_id)


class LedgerNodes:
    """Every member of the network as a real HTTP server answering `GET /ledger?after=SEQ` and
    `GET /requests/{client}/{timestamp}` as node/server.py does, from one ledger the test
    writes: the builds ordered at each sequence number (`order`), and the votes every node
    holds for them, which the test adds as they would come in (`vote`)."""

    def __init__(self, imports: Imports) -> None:
        self.imports = imports
        self.ledger: dict[int, list[Request]] = {}
        self.votes: dict[tuple[str, int], list[dict]] = {}
        self.runners: list[web.AppRunner] = []

    def order(self, seq: int, *requests: Request) -> None:
        self.ledger[seq] = list(requests)
        for request in requests:
            self.votes.setdefault(request.key, [])

    def vote(self, request: Request, *votes: dict) -> None:
        self.votes[request.key] += votes

    def _record(self, seq: int, request: Request) -> dict:
        return self.imports.build(request, sorted(self.votes[request.key], key=lambda vote: vote["node"]), seq)

    async def _ledger(self, request: web.Request) -> web.Response:
        after = int(request.query["after"])
        last = max(self.ledger, default=0)
        builds = [self._record(seq, build) for seq in sorted(self.ledger) if seq > after for build in self.ledger[seq]]
        return web.json_response({"after": after, "through": max(after, last), "last_executed": last,
                                  "builds": builds})

    async def _request(self, request: web.Request) -> web.Response:
        key = (request.match_info["client"], int(request.match_info["timestamp"]))
        for seq, requests in self.ledger.items():
            for build in requests:
                if build.key == key:
                    return web.json_response({**self._record(seq, build), "build": None})
        return web.json_response({"error": "no such request"}, status=404)

    async def __aenter__(self) -> "LedgerNodes":
        self.runners = await serve_members(self.imports.config, [("/ledger", self._ledger),
                                                                 ("/requests/{client}/{timestamp}", self._request)])
        return self

    async def __aexit__(self, *_) -> None:
        await stop_serving(self.runners)


async def serve_members(config, routes) -> list[web.AppRunner]:
    """Every member of `config` as a real HTTP server at its own address, answering GET on each
    (path, handler) of `routes`; give the runners to `stop_serving` when done."""
    runners: list[web.AppRunner] = []
    try:
        for node in config.nodes:
            app = web.Application()
            for path, handler in routes:
                app.router.add_get(path, handler)
            runner = web.AppRunner(app)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, node.host, node.port).start()
    except BaseException:
        await stop_serving(runners)  # none left listening when one address cannot be taken
        raise
    return runners


async def stop_serving(runners: list[web.AppRunner]) -> None:
    for runner in runners:
        await runner.cleanup()
