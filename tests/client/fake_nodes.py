"""Fake nodes for the client's tests, over real loopback sockets with real signatures.

The fake nodes stand in for a PBFT network: each serves `/client` over a
WebSocket, checks the client's signatures, and once the "primary" has the
request, every non-silent node sends its signed reply on the connections
on which the client said HELLO over that connection's challenge (the wire
protocol's rule). A backup that receives a request while the primary is
silent stands for a completed view change: the next non-silent node becomes
primary and the replies carry the new view. Nodes can be honest, lying, forging or silent, or
flaky: honest, but their builds fail where others pass. The client's configuration lists one
action runner, `RUNNER`, whose key the cluster holds (`runner_key`) and keeps in the keys folder."""

import asyncio
import hashlib
import json
import secrets
import time

import yaml
from aiohttp import web

from client.app import make_app
from pbft.attestation import Signed
from pbft.build import Result, Spec, StepResult
from pbft.ci.answers import approval_answer
from pbft.handshake import Challenge, Hello
from pbft.messages import BuildState, CurrentView, Reply, Request, decode, encode, signed
from pbft.networks import applied_reason
from shared.config import NetworkConfig, load_config
from shared.crypto import Ed25519Authenticator, generate_private_key, public_key_hex, save_private_key

F = 1
N = 3 * F + 1
CLIENT = "ci"
RUNNER = "deployer"
RETRANSMIT_S = 0.3


# What a branch "matrix…" declares: `matrix: {PYTHON: ["3.11", "3.12"], DB: [sqlite]}` and
# one more combination (include-style), whose build fails.
MATRIX = ((("PYTHON", "3.11"), ("DB", "sqlite")), (("PYTHON", "3.12"), ("DB", "sqlite")), (("PYTHON", "fail"),))


def honest_result(branch: str, node_id: int = 0, combination=None) -> Result:
    """What an honest node's build of `branch` gives; a branch "artifacts…" makes artifacts,
    "artifacts-random…" different bytes on each node (a build that is not reproducible), "skip…"
    is skipped by its spec's `when:`, "fail-pipeline…" fails in its step `test`, "flaky-pipeline…" fails in it on node 3 alone, "matrix…" expands into `MATRIX` (and builds those),
    "matrix-skip…" too, and skips each, "deploy…" ran a .pbft-ci.yml (the only builds that may have
    actions after the verdict). "hold-matrix…" expands at once and holds each combination (`held`);
    a matrix branch naming "fail-fast" or "parallel" declares that strategy (max_parallel 1)."""
    if branch == "missing":
        return Result("error", None, None, f"branch {branch} not found")
    commit = hashlib.sha1(branch.encode()).hexdigest()
    if branch.removeprefix("hold-").startswith("matrix") and combination is None:
        return Result("matrix", None, commit, "the spec's matrix expands into 3 builds", combinations=MATRIX,
                      fail_fast="fail-fast" in branch, max_parallel=1 if "parallel" in branch else None)
    if combination is not None and combination not in MATRIX:
        return Result("error", None, commit, "matrix: declares no such combination")
    if combination is not None and branch.startswith("matrix-skip"):
        return Result("skipped", None, commit, "when: event manual is not push")
    if combination is not None and ("PYTHON", "fail") in combination:
        return Result("failure", 1, commit)
    if branch.startswith("flaky-pipeline"):
        # Its step `test` fails on node 3 (twice: it has one retry) and passes on node 1 only on its retry.
        failed = node_id == 3
        test = StepResult("test", "failure" if failed else "success", 1 if failed else 0, 1000,
                          attempts=(1,) if node_id in (1, 3) else ())
        return Result("failure" if failed else "success", 1 if failed else 0, commit,
                      steps=(StepResult("lint", "success", 0, 900), test))
    if branch.startswith("fail-pipeline"):
        steps = (StepResult("lint", "success", 0, 900 + node_id), StepResult("test", "failure", 3, 1200 + node_id),
                 StepResult("deploy", "skipped", None, 0))
        # A reason text is each node's own; what the answer names comes from the agreed steps.
        return Result("failure", 3, commit, steps=steps, reason=f"node {node_id}'s own words")
    if branch.startswith("fail"):
        return Result("failure", 1, commit)
    if branch.startswith("skip"):
        return Result("skipped", None, commit, "when: event manual is not push")
    if branch.startswith("deploy"):
        return Result("success", 0, commit, spec=Spec(".pbft-ci.yml", hashlib.sha256(branch.encode()).hexdigest(),
                                                      "pbft-ci/busybox:latest"))
    if branch.startswith("artifacts"):
        seed = f"{branch}/{node_id}" if branch.startswith("artifacts-random") else branch
        return Result("success", 0, commit, artifacts="sha256:" + hashlib.sha256(seed.encode()).hexdigest())
    return Result("success", 0, commit)


def held(request: Request) -> bool:
    """A build of a branch "hold…" runs until a cancel stops it (or the test releases it): no
    node answers it before. Each node says it is queued (a signed BUILD-STATE), and says so
    again when the request comes again, except for a branch "hold-quiet…"."""
    operation = request.operation
    expansion = operation.branch.startswith("hold-matrix") and operation.combination is None
    return operation.cancels is None and operation.branch.startswith("hold") and not expansion


class FakeCluster:
    def __init__(self) -> None:
        self.node_keys = [generate_private_key() for _ in range(N)]
        self.client_key = generate_private_key()
        self.runner_key = generate_private_key()
        public = {i: key.public_key() for i, key in enumerate(self.node_keys)}
        clients = {CLIENT: self.client_key.public_key()}
        self.auths = [Ed25519Authenticator(key, public, clients) for key in self.node_keys]
        self.verifier = Ed25519Authenticator(None, public, clients)
        self.behaviour = {i: "honest" for i in range(N)}
        self.delay_s = {i: 0.0 for i in range(N)}
        self.view = 0
        self.received: dict[int, list[int]] = {i: [] for i in range(N)}
        self.first_arrival_s: dict[tuple[int, int], float] = {}
        self.committed: dict[int, tuple[int, Request]] = {}
        self.cancelled: set[int] = set()  # requests a cancel stopped: the nodes reply `cancelled`
        self.released: set[int] = set()  # held requests whose builds the test let finish
        self.released_at: dict[int, set[int]] = {}  # held requests some nodes finished: their ids
        self.registered: dict[int, set[web.WebSocketResponse]] = {i: set() for i in range(N)}
        self._tasks: set[asyncio.Task] = set()
        self.config: NetworkConfig | None = None  # set once the servers' ports are known
        # The network document a node names in what it signs, where it is not the client's.
        self.networks: dict[int, str] = {}
        # The owners a node's answer to a change names, where not those whose names the change's
        # signatures carry (a fake node checks no owner's signature).
        self.change_signers: dict[int, tuple[str, ...]] = {}

    def app(self, node_id: int) -> web.Application:
        async def client_socket(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            challenge = secrets.token_hex(32)
            await ws.send_str(json.dumps(encode(Challenge(challenge))))
            try:
                async for frame in ws:
                    self.on_frame(node_id, ws, challenge, frame.data)
            finally:
                self.registered[node_id].discard(ws)
            return ws

        async def close_sockets(app: web.Application) -> None:
            for ws in list(self.registered[node_id]):
                await ws.close()

        app = web.Application()
        app.router.add_get("/client", client_socket)
        app.on_shutdown.append(close_sockets)
        return app

    def on_frame(self, node_id: int, ws: web.WebSocketResponse, challenge: str, text: str) -> None:
        message = decode(json.loads(text))
        assert self.verifier.verify_client(message.client, message.payload(), message.sig)
        if isinstance(message, Hello):
            assert message.node == node_id and message.challenge == challenge
            self.registered[node_id].add(ws)
            if self.behaviour[node_id] != "silent":  # as a node says its confirmed view (node/driver.py)
                news = signed(CurrentView(self.view, message.client, node_id, network=self.network(node_id)),
                              self.auths[node_id].sign)
                task = asyncio.create_task(self._send(0.0, [ws], [json.dumps(encode(news))]))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
        else:
            assert isinstance(message, Request)
            self.on_request(node_id, message)

    def on_request(self, node_id: int, request: Request) -> None:
        self.received[node_id].append(request.timestamp)
        self.first_arrival_s.setdefault((node_id, request.timestamp), time.monotonic())
        if self.behaviour[node_id] == "silent":
            return
        if request.timestamp in self.committed:
            if self._holds(request.timestamp) and not request.operation.branch.startswith("hold-quiet"):
                self._send_state(node_id, request, "queued")  # as a node does (node/driver.py)
            self._reply(node_id, request.timestamp)
            return
        while self.behaviour[self.view % N] == "silent":
            self.view += 1
        self.committed[request.timestamp] = (self.view, request)
        target = request.operation.cancels
        if target in self.committed and target not in self.cancelled and held(self.committed[target][1]):
            self.cancelled.add(target)  # a held build stops where the cancel is ordered
            for sender in set(range(N)) - self.released_at.get(target, set()):
                self._reply(sender, target)
        if held(request):
            if not request.operation.branch.startswith("hold-quiet"):
                for sender in range(N):  # each node says the build waits for a build slot
                    self._send_state(sender, request, "queued")
            return
        for sender in range(N):
            self._reply(sender, request.timestamp)

    def network(self, node_id: int) -> str:
        """The digest of the network document node `node_id` says it runs: the client's own,
        as an honest node started with the same file names it."""
        return self.networks.get(node_id, self.config.digest if self.config is not None else "")

    def _holds(self, timestamp: int) -> bool:
        request = self.committed[timestamp][1]
        return held(request) and timestamp not in self.cancelled and timestamp not in self.released

    def release(self, timestamp: int, nodes: range | list[int] = range(N)) -> None:
        """Let a held build finish, as its branch without "hold" would: `nodes` (every node) reply,
        and the others go on holding it until a cancel stops it there."""
        if len(nodes) == N:
            self.released.add(timestamp)
        else:
            self.released_at.setdefault(timestamp, set()).update(nodes)
        for sender in nodes:
            self._reply(sender, timestamp, released=True)

    def _send_state(self, node_id: int, request: Request, state: str) -> None:
        news = signed(BuildState(request.timestamp, request.client, state, node_id), self.auths[node_id].sign)
        task = asyncio.create_task(self._send(0.0, list(self.registered[node_id]), [json.dumps(encode(news))]))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _reply(self, node_id: int, timestamp: int, released: bool = False) -> None:
        behaviour = self.behaviour[node_id]
        if behaviour == "silent":
            return
        view, request = self.committed[timestamp]
        finished_here = node_id in self.released_at.get(timestamp, ())
        if self._holds(timestamp) and not released and not (finished_here and timestamp not in self.cancelled):
            return
        if request.operation.cancels is not None:
            result = Result("success", 0, None, f"cancel of build {request.operation.cancels} ordered")
        elif request.operation.approves is not None:
            result = approval_answer(request)
        elif request.operation.change is not None:  # applied, as pbft.replica answers a change
            change = request.operation.change
            signers = tuple(sorted({signature.owner for signature in change.signatures}))
            seq = list(self.committed).index(timestamp) + 1
            result = Result("success", 0, None,
                            applied_reason(change.target(), seq, self.change_signers.get(node_id, signers)))
        elif timestamp in self.cancelled and not finished_here:
            result = Result("cancelled", None, None, "cancelled by the client's request")
        else:
            result = honest_result(request.operation.branch, node_id, request.operation.combination)
        if behaviour in ("liar", "forger"):
            result = Result("success", 0, "f" * 40)
        elif behaviour == "flaky" and result.status == "success":
            result = Result("failure", 1, result.commit)  # honest, but its build failed
        senders = [i for i in range(N) if i != node_id] if behaviour == "forger" else [node_id]
        auth = self.auths[node_id]
        # Signed as a replica signs (pbft.replica): the statement's PAE and the link.
        attestation = Signed(request.operation, result)
        sigs = (auth.sign_bytes(attestation.pae()), auth.sign_bytes(attestation.link_bytes())) if attestation.exists \
            else ("", "")
        if behaviour == "bad-attestation":
            sigs = (auth.sign_bytes(b"something else"), sigs[1])
        frames = [
            json.dumps(encode(signed(
                Reply(view, timestamp, request.client, sender, result, statement_sig=sigs[0], link_sig=sigs[1],
                      network=self.network(sender)),
                auth.sign,
            )))
            for sender in senders
        ]
        sockets = list(self.registered[node_id])
        task = asyncio.create_task(self._send(self.delay_s[node_id], sockets, frames))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    @staticmethod
    async def _send(delay_s: float, sockets, frames) -> None:
        await asyncio.sleep(delay_s)
        for ws in sockets:
            for frame in frames:
                if not ws.closed:
                    await ws.send_str(frame)


def configure(
    cluster: FakeCluster, ports: list[int], tmp_path, repositories: dict[str, str], build: dict | None = None
) -> None:
    """Write the client's network config for fake nodes listening on `ports`; set `cluster.config`.

    `build` adds to the network's build settings.
    """
    keys_dir = tmp_path / "keys"
    save_private_key(cluster.client_key, keys_dir / f"client-{CLIENT}.key")
    save_private_key(cluster.runner_key, keys_dir / f"runner-{RUNNER}.key")
    config = {
        "f": F,
        "nodes": [
            {"id": i, "host": "127.0.0.1", "port": port, "public_key": public_key_hex(cluster.node_keys[i])}
            for i, port in enumerate(ports)
        ],
        # Loopback only, so plain calls may go without a bearer token (tests/test_client_access.py has the token).
        "clients": [{"name": CLIENT, "host": "127.0.0.1", "port": 1, "public_key": public_key_hex(cluster.client_key),
                     "plain_without_token": True,
                     "runners": [{"name": RUNNER, "public_key": public_key_hex(cluster.runner_key)}]}],
        "repositories": [{"name": name, "url": url} for name, url in repositories.items()],
        "protocol": {"client_retransmit_s": RETRANSMIT_S, "client_deadline_s": 10.0},
        # Builds never run here (the nodes are fakes), but a build must fit the deadline.
        "build": {"timeout_s": 5.0, **(build or {})},
        "keys_dir": str(keys_dir),
        "data_dir": str(tmp_path / "data"),
        "log_dir": str(tmp_path / "log"),
    }
    (tmp_path / "network.yaml").write_text(yaml.safe_dump(config))
    cluster.config = load_config(tmp_path / "network.yaml")


async def serve_fake_nodes(aiohttp_server, cluster: FakeCluster, add_routes, tmp_path, **settings) -> list:
    """Serve each fake node's client socket and the routes `add_routes(app, node_id)` adds to
    it, and write the config for repository `example` (`settings` as `configure` takes them)."""
    apps = []
    for node_id in range(N):
        app = cluster.app(node_id)
        add_routes(app, node_id)
        apps.append(app)
    servers = [await aiohttp_server(app) for app in apps]
    configure(cluster, [server.port for server in servers], tmp_path, {"example": str(tmp_path / "repo")}, **settings)
    return servers


async def start_client(aiohttp_client, cluster, **kwargs):
    """The client app, once every node has its HELLO (as a network would after start-up)."""
    client = await aiohttp_client(make_app(cluster.config, CLIENT, **kwargs))
    async with asyncio.timeout(5):
        while not all(cluster.registered.values()):
            await asyncio.sleep(0.01)
    return client


async def post(client, body):
    response = await client.post("/webHook", json=body)
    return response.status, await response.json()
