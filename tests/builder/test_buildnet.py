"""Networked builds against the real Docker engine: the outside is reachable, this host and the peers are not.

The "outside world" is a network namespace this test creates, joined to the
host by a veth pair, with an HTTP server in it; a second namespace stands for
a peer node. Test traffic goes only to those namespaces and to this host:
nothing here sends a packet anywhere else. Every namespace, veth, Docker
network and iptables chain made here is removed at the end, and the test
asserts that none is left; net.ipv4.ip_forward is put back as it was.
"""

import asyncio
import dataclasses
import http.server
import random
import re
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest

from builder.engine import network as buildnet
from builder import BuildOrder, BuildResult, Executor, ExecutorSettings, RepositorySettings
from shared.config import BuildConfig
from tests.builder.executor_helpers import log_text, spec

pytestmark = pytest.mark.docker

LIMITS = BuildConfig(timeout_s=30.0, memory_mb=64, tmp_mb=8, workspace_mb=16, home_mb=8)
NETWORKED = "networked"
OFFLINE = "offline"
PAYLOAD = "fetched from the outside namespace"


def _run(*args: str) -> str:
    return subprocess.run(list(args), check=True, capture_output=True, text=True).stdout


def _free_octet() -> int:
    """A third octet x such that no route of this host touches 10.250.x.0/24 or 169.254.250.x."""
    routes = _run("ip", "-4", "route", "show", "table", "all")
    while True:
        octet = random.randint(1, 254)
        if f"10.250.{octet}." not in routes and f"169.254.250.{octet} " not in routes:
            return octet


@dataclass
class Namespace:
    """A network namespace joined to the host by a veth pair: host end .1, namespace end .2."""

    name: str
    host_veth: str
    host_address: str
    inside_address: str
    link_local_address: str
    server: subprocess.Popen | None = None
    port: int = 0


def _make_namespace(kind: str, served: Path) -> Namespace:
    tag = uuid.uuid4().hex[:6]
    octet = _free_octet()
    space = Namespace(
        f"pbftci-{kind}-{tag}", f"pbv{tag}h", f"10.250.{octet}.1", f"10.250.{octet}.2", f"169.254.250.{octet}"
    )
    _run("ip", "netns", "add", space.name)
    _run("ip", "link", "add", space.host_veth, "type", "veth", "peer", "name", f"pbv{tag}n", "netns", space.name)
    _run("ip", "addr", "add", f"{space.host_address}/24", "dev", space.host_veth)
    _run("ip", "link", "set", space.host_veth, "up")
    inside = ("ip", "netns", "exec", space.name)
    _run(*inside, "ip", "addr", "add", f"{space.inside_address}/24", "dev", f"pbv{tag}n")
    _run(*inside, "ip", "link", "set", f"pbv{tag}n", "up")
    _run(*inside, "ip", "link", "set", "lo", "up")
    # A link-local address too, routed into the namespace, so that probing
    # "cloud metadata" addresses never sends a packet beyond this host.
    _run(*inside, "ip", "addr", "add", f"{space.link_local_address}/32", "dev", f"pbv{tag}n")
    _run("ip", "route", "add", f"{space.link_local_address}/32", "dev", space.host_veth)
    space.port = random.randint(20000, 60000)
    space.server = subprocess.Popen(
        [*inside, sys.executable, "-m", "http.server", "--bind", "0.0.0.0",
         "--directory", str(served), str(space.port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    _wait_for_server(space)
    return space


def _wait_for_server(space: Namespace) -> None:
    probe = ["ip", "netns", "exec", space.name, sys.executable, "-c",
             "import socket, sys; socket.create_connection((sys.argv[1], int(sys.argv[2])), 1).close()",
             space.inside_address, str(space.port)]
    for _ in range(50):
        if subprocess.run(probe, capture_output=True).returncode == 0:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the HTTP server in {space.name} did not start")


def _remove_namespace(space: Namespace) -> None:
    if space.server is not None:
        space.server.kill()
        space.server.wait()
    # Deleting the namespace deletes the veth end inside it, and with it the pair.
    subprocess.run(["ip", "link", "del", space.host_veth], capture_output=True)
    subprocess.run(["ip", "netns", "del", space.name], capture_output=True)


class _CountingServer:
    """An HTTP server on this host standing for "the node's host": it counts every request."""

    def __init__(self, address: str):
        self.requests = 0
        counter = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                counter.requests += 1
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"the node's host answered\n")

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((address, 0), Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """The outside namespace, a peer namespace, and ip_forward restored afterwards."""
    served = tmp_path_factory.mktemp("served")
    (served / "file").write_text(PAYLOAD + "\n")
    forwarding_before = Path("/proc/sys/net/ipv4/ip_forward").read_text().strip()
    spaces = []
    try:
        spaces.append(_make_namespace("out", served))
        spaces.append(_make_namespace("peer", served))
        yield tuple(spaces)
    finally:
        for space in spaces:
            _remove_namespace(space)
        _run("sysctl", "-q", "-w", f"net.ipv4.ip_forward={forwarding_before}")
    for space in spaces:
        assert space.name not in _run("ip", "netns", "list")
        assert space.host_veth not in _run("ip", "-br", "link")


@pytest.fixture
def make_executor(tmp_path, docker_client, default_image, world):
    """An executor with one networked and one offline repository; afterwards nothing of its network is left."""
    _, peer = world
    executors = []

    def make(peer_hosts: tuple[str, ...] = (peer.inside_address, "127.0.0.1")) -> Executor:
        """`peer_hosts`: the node and client hosts of the configuration the node started with."""
        executor = Executor(ExecutorSettings(
            data_dir=tmp_path / "data", log_dir=tmp_path / "log", node_id=3, limits=LIMITS,
            peer_hosts=peer_hosts,
        ), docker_client=docker_client)
        executors.append(executor)
        return executor

    yield make
    for executor in executors:
        executor.close()
    data_dir = str((tmp_path / "data").resolve())
    assert not docker_client.networks.list(filters={"label": f"pbft-ci.data={data_dir}"})
    tag = buildnet.network_tag(Path(data_dir))
    for table in ("filter", "nat"):
        assert tag not in _run("iptables", "-t", table, "-S")
    assert tag not in _run("ip6tables", "-S")
    assert tag not in _run("ip", "-br", "link")


async def build(executor, git_repo, build_ids, name) -> BuildResult:
    """A build of repository `name`, ordered with the network when it is NETWORKED's."""
    return await executor.run(networked_order(build_ids(), git_repo, name))


def networked_order(build_id: str, git_repo, name: str) -> BuildOrder:
    return BuildOrder(build_id=build_id, repository_name=name, repository_url=str(git_repo.path), branch="master",
                      settings=RepositorySettings(networked=name == NETWORKED))


def get(address: str, port: int, path: str = "/", wait_s: int = 3) -> str:
    """A shell pipeline fetching http://address:port/path with nc.

    Not wget: the busybox-static wget of the default image segfaults on any
    URL (exit 139), even without a network, which would pass for "blocked".
    """
    return f"printf 'GET {path} HTTP/1.0\\r\\n\\r\\n' | nc -w {wait_s} {address} {port}"


def fetch(address: str, port: int, blocked_exit: int, path: str = "/") -> str:
    """A spec line: exit `blocked_exit` if the server answers within 3 s, go on if it does not."""
    return f"{get(address, port, path)} && exit {blocked_exit} || echo blocked: {address}:{port}"


async def test_a_networked_build_reaches_the_outside_but_not_this_host_nor_a_peer(
    make_executor, git_repo, build_ids, world, tmp_path
):
    outside, peer = world
    executor = make_executor()
    # Known before the build so that a server can listen on the bridge's own
    # address: the build's gateway, which is this host.
    network = executor.engine._network.ensure(executor.engine.client())
    on_veth = _CountingServer(outside.host_address)
    on_gateway = _CountingServer(network.gateway)
    on_loopback = _CountingServer("127.0.0.1")
    git_repo.commit("master", {".pbft-ci.yml": spec(
        get(outside.inside_address, outside.port, "/file", wait_s=5),
        fetch(outside.host_address, on_veth.port, 11),
        fetch(network.gateway, on_gateway.port, 12),
        fetch(network.gateway, on_loopback.port, 13),
        fetch(peer.inside_address, peer.port, 14, "/file"),
        fetch(peer.link_local_address, peer.port, 15, "/file"),
    )})
    try:
        result = await build(executor, git_repo, build_ids, NETWORKED)
    finally:
        for server in (on_veth, on_gateway, on_loopback):
            server.close()

    text = log_text(result)
    assert (result.status, result.exit_code) == ("success", 0), text
    assert PAYLOAD in text
    assert text.count("blocked: ") == 5, text
    assert (on_veth.requests, on_gateway.requests, on_loopback.requests) == (0, 0, 0)
    assert f"network {network.name} (outside only: not this host, not the peers)" in text


async def test_a_peer_the_order_names_is_out_of_reach_though_the_node_started_without_it(
    make_executor, git_repo, build_ids, world
):
    """A member added through the order after the node started: its host comes with the build's
    order (BuildOrder.peer_hosts), and the running network drops it from then on."""
    outside, peer = world
    executor = make_executor(peer_hosts=("127.0.0.1",))
    git_repo.commit("master", {".pbft-ci.yml": spec(
        get(outside.inside_address, outside.port, "/file", wait_s=5),
        fetch(peer.inside_address, peer.port, 14, "/file"),
    )})
    before = await executor.run(networked_order(build_ids(), git_repo, NETWORKED))
    assert (before.status, before.exit_code) == ("failure", 14), log_text(before)

    after = await executor.run(dataclasses.replace(
        networked_order(build_ids(), git_repo, NETWORKED), peer_hosts=(peer.inside_address, "127.0.0.1")))

    text = log_text(after)
    assert (after.status, after.exit_code) == ("success", 0), text
    assert PAYLOAD in text and f"blocked: {peer.inside_address}:{peer.port}" in text


async def test_a_repository_without_build_network_still_has_no_network(make_executor, git_repo, build_ids, world):
    outside, _ = world
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "cat /proc/net/dev",
        "test \"$(grep -c ':' /proc/net/dev)\" -eq 1 || exit 4",
        fetch(outside.inside_address, outside.port, 5, "/file"),
    )})

    result = await build(make_executor(), git_repo, build_ids, OFFLINE)

    text = log_text(result)
    assert (result.status, result.exit_code) == ("success", 0), text
    assert "lo:" in text and PAYLOAD not in text
    assert "network none" in text


async def test_a_networked_build_never_runs_in_a_prepared_container(
    make_executor, git_repo, build_ids, container_roles
):
    # The offline build leaves a container prepared for the next build of its
    # image and user; one with network none, which the networked build must not get.
    git_repo.commit("master", {".pbft-ci.yml": spec("echo built")})
    executor = make_executor()
    assert (await build(executor, git_repo, build_ids, OFFLINE)).status == "success"
    await asyncio.wait_for(asyncio.wrap_future(executor.engine.ready.settled()), 60)
    prepared = executor.engine.ready.keys
    networked_id = build_ids()

    result = await executor.run(networked_order(networked_id, git_repo, NETWORKED))

    assert result.status == "success", log_text(result)
    assert len(prepared) == 1
    assert container_roles[networked_id] == ["build"]
    assert executor.engine.ready.keys == prepared


async def test_two_networked_builds_cannot_reach_each_other(make_executor, git_repo, build_ids, tmp_path):
    executor = make_executor()
    # The first build serves a page and prints its address; the second,
    # committed once that address is known, tries to fetch it.
    git_repo.commit("master", {".pbft-ci.yml": spec(
        "mkdir -p /tmp/www && echo served by a build > /tmp/www/index.html",
        "httpd -p 8080 -h /tmp/www",
        "ip -4 -o addr show eth0",
        "sleep 15",
    )})
    first = asyncio.ensure_future(build(executor, git_repo, build_ids, NETWORKED))
    address = await _address_in_running_log(tmp_path / "log")
    git_repo.commit("master", {".pbft-ci.yml": spec(fetch(address, 8080, 6))})

    second = await build(executor, git_repo, build_ids, NETWORKED)
    await first

    assert (second.status, second.exit_code) == ("success", 0), log_text(second)
    assert "blocked: " in log_text(second)


async def _address_in_running_log(log_dir: Path) -> str:
    for _ in range(200):
        for path in log_dir.glob("*.log"):
            found = re.search(r"inet (\d+\.\d+\.\d+\.\d+)/", path.read_text(errors="replace"))
            if found:
                return found.group(1)
        await asyncio.sleep(0.1)
    raise AssertionError("the first build never printed its address")


@pytest.mark.parametrize("missing", ["iptables", "bridged traffic filtering"])
async def test_without_the_isolation_a_networked_build_is_an_error(
    make_executor, git_repo, build_ids, monkeypatch, tmp_path, missing
):
    # A node that cannot install its rules (no iptables), or whose rules
    # would not see traffic between builds, must not run the build with a
    # network and without them.
    if missing == "iptables":
        monkeypatch.setattr(buildnet, "IPTABLES", "/nonexistent/iptables")
    else:
        (tmp_path / "bridge-nf-call-iptables").write_text("0\n")
        monkeypatch.setattr(buildnet, "_BRIDGED_TO_IPTABLES", tmp_path / "bridge-nf-call-iptables")
    head = git_repo.commit("master", {".pbft-ci.yml": spec("echo should not run")})

    result = await build(make_executor(), git_repo, build_ids, NETWORKED)

    assert result.to_dict() == {
        "status": "error", "exit_code": None, "commit": head, "reason": "build network unavailable on this node",
    }
    assert "should not run" not in log_text(result)
