"""Separate hosts on one machine, for tests: network namespaces on a switch, links that go
down, and latency added to every packet a host sends.

The topology (`Lan`): a "switch" namespace holding a bridge `br0`; one
namespace per host, each with `lo` up and an `eth0`, one end of a veth pair
whose other end, `port<i>`, is a port of the bridge; every host has an address
of one private /24. Nothing is created in the root namespace, so its
interfaces, routes and firewall stay as they were, and runs in parallel never
collide: namespace names carry the test process's pid and a random suffix, and
each run's addresses exist only inside its own namespaces.

A partition is a switch port set down: the host keeps its address and
configuration, as a machine whose cable was pulled does.

Latency: `tc qdisc add dev eth0 root netem delay 50ms` is the usual tool, but
some kernels are built without sch_netem, among them the one of the machines
this project is developed and tested on ("Specified qdisc kind is unknown").
So `EgressDelay` does what netem's delay does with NFQUEUE, which that kernel
and Debian's have: an iptables rule in the host's namespace hands every packet
leaving eth0 to a thread of this process, which lets each go `delay_ms` after
it arrived, in arrival order.
"""

from __future__ import annotations

import collections
import ctypes
import errno
import os
import re
import secrets
import select
import signal
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

NETNS_DIR = Path("/run/netns")
# Namespaces of this module: pbftci-mh<pid of the test process>-<4 hex>-<host>.
NAME_PREFIX = "pbftci-mh"
_OWNED_NAME = re.compile(rf"({NAME_PREFIX}(\d+)-[0-9a-f]{{4}})-")
_CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def ip(*args: str) -> str:
    """Run `ip ARGS`; raise with its error output if it fails."""
    return run_tool("ip", *args)


def run_tool(*command: str) -> str:
    result = subprocess.run(command, capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({result.returncode}): {result.stderr.strip()}")
    return result.stdout


def enter(namespace: str) -> None:
    """Move the calling thread (only it: a network namespace is per thread) into `namespace`."""
    fd = os.open(NETNS_DIR / namespace, os.O_RDONLY)
    try:
        if _libc.setns(fd, _CLONE_NEWNET) != 0:
            code = ctypes.get_errno()
            raise OSError(code, f"setns into {namespace}: {os.strerror(code)}")
    finally:
        os.close(fd)


def call_in(namespace: str, function: Callable[..., Any], *args: Any) -> Any:
    """`function(*args)` in a fresh thread inside `namespace`: its sockets are that host's."""
    outcome: dict[str, Any] = {}

    def run() -> None:
        try:
            enter(namespace)
            outcome["value"] = function(*args)
        except BaseException as error:  # handed to the caller's thread below
            outcome["error"] = error

    thread = threading.Thread(target=run, name=f"in-{namespace}", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


def namespace_pids(namespace: str) -> list[int]:
    try:
        return [int(pid) for pid in ip("netns", "pids", namespace).split()]
    except RuntimeError:
        return []


def kill_and_delete(namespace: str) -> None:
    """SIGKILL what still runs inside `namespace` (only processes the test started there),
    then delete it, and with it its veth ends (their peers go too) and its bridge."""
    for pid in namespace_pids(namespace):
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    deadline = time.monotonic() + 10
    while namespace_pids(namespace) and time.monotonic() < deadline:
        time.sleep(0.05)
    subprocess.run(["ip", "netns", "delete", namespace], capture_output=True, timeout=30, check=False)


def sweep_stale_namespaces() -> set[str]:
    """Delete the namespaces a run of this module left when it was killed before its teardown
    (their test process is gone); namespaces of runs still going are left alone. Returns the
    tags (`Lan.tag`) of the runs swept."""
    swept = set()
    for path in NETNS_DIR.glob(f"{NAME_PREFIX}*"):
        match = _OWNED_NAME.match(path.name)
        if match and not Path(f"/proc/{match[2]}").exists():
            kill_and_delete(path.name)
            swept.add(match[1])
    return swept


@dataclass(frozen=True)
class Host:
    name: str  # e.g. "node-2"
    namespace: str
    address: str
    switch_port: str  # its cable's end on the bridge, in the switch namespace


class Lan:
    """Hosts on one switch, each in a network namespace of its own (see the module's text)."""

    def __init__(self, names: list[str]) -> None:
        self.tag = f"{NAME_PREFIX}{os.getpid()}-{secrets.token_hex(2)}"
        subnet = 1 + secrets.randbelow(254)  # 10.231.<subnet>.0/24, so that runs differ anyway
        self.prefix_length = 24
        self.switch = f"{self.tag}-switch"
        self.hosts = {
            name: Host(name, f"{self.tag}-{name}", f"10.231.{subnet}.{10 + index}", f"port{index}")
            for index, name in enumerate(names)
        }
        self.delays: list[EgressDelay] = []
        self.created: list[str] = []

    def create(self) -> None:
        self._add_namespace(self.switch)
        ip("-n", self.switch, "link", "add", "br0", "type", "bridge")
        ip("-n", self.switch, "link", "set", "br0", "up")
        for host in self.hosts.values():
            self._add_namespace(host.namespace)
            ip("link", "add", "eth0", "netns", host.namespace, "type", "veth",
               "peer", "name", host.switch_port, "netns", self.switch)
            ip("-n", host.namespace, "address", "add", f"{host.address}/{self.prefix_length}", "dev", "eth0")
            ip("-n", host.namespace, "link", "set", "eth0", "up")
            ip("-n", self.switch, "link", "set", host.switch_port, "master", "br0")
            ip("-n", self.switch, "link", "set", host.switch_port, "up")

    def _add_namespace(self, namespace: str) -> None:
        ip("netns", "add", namespace)
        self.created.append(namespace)
        ip("-n", namespace, "link", "set", "lo", "up")

    def exec_prefix(self, name: str) -> list[str]:
        """What runs a command on host `name`: `ip netns exec <its namespace>`."""
        return ["ip", "netns", "exec", self.hosts[name].namespace]

    def call_in(self, name: str, function: Callable[..., Any], *args: Any) -> Any:
        return call_in(self.hosts[name].namespace, function, *args)

    def link(self, name: str, up: bool) -> None:
        ip("-n", self.switch, "link", "set", self.hosts[name].switch_port, "up" if up else "down")

    def add_latency(self, delay_ms: float, names: list[str]) -> None:
        for name in names:
            delay = EgressDelay(self.hosts[name].namespace, delay_ms / 1000)
            self.delays.append(delay)
            delay.start_and_wait()
            run_tool(*self.exec_prefix(name), "iptables", "-w", "-A", "OUTPUT", "-o", "eth0",
                     "-j", "NFQUEUE", "--queue-num", str(EgressDelay.QUEUE))

    def destroy(self) -> None:
        for delay in self.delays:
            delay.stop()
        for namespace in reversed(self.created):
            kill_and_delete(namespace)
        self.created.clear()

    def leftovers(self) -> list[str]:
        names = [host.namespace for host in self.hosts.values()] + [self.switch]
        return [name for name in names if (NETNS_DIR / name).exists()]


# --- NFQUEUE: a constant delay on what a host sends ---------------------------------

_NETLINK_NETFILTER = 12
_SOL_NETLINK = 270
_NETLINK_NO_ENOBUFS = 5
_SO_RCVBUFFORCE = 33
_NLM_F_REQUEST, _NLM_F_ACK = 1, 4
_NLMSG_ERROR = 2
_SUBSYS_QUEUE = 3
_MSG_PACKET, _MSG_VERDICT, _MSG_CONFIG = (_SUBSYS_QUEUE << 8) | 0, (_SUBSYS_QUEUE << 8) | 1, (_SUBSYS_QUEUE << 8) | 2
_CFG_CMD, _CFG_PARAMS = 1, 2
_CMD_BIND = 1
_COPY_META = 1  # the packet's metadata only: its id is all a verdict needs
_PACKET_HDR = 1
_VERDICT_HDR = 2
_NF_ACCEPT = 1


def _align(length: int) -> int:
    return (length + 3) & ~3


def _attribute(kind: int, payload: bytes) -> bytes:
    return struct.pack("=HH", 4 + len(payload), kind) + payload + b"\0" * (_align(4 + len(payload)) - 4 - len(payload))


def _message(kind: int, flags: int, seq: int, queue: int, attributes: bytes) -> bytes:
    # nlmsghdr, then nfgenmsg: family, version, the queue number (big endian).
    body = struct.pack("=BBH", socket.AF_UNSPEC, 0, socket.htons(queue)) + attributes
    return struct.pack("=IHHII", 16 + len(body), kind, flags, seq, 0) + body


class EgressDelay:
    """Accepts each packet of NFQUEUE `QUEUE`, in the namespace it serves, `delay_s` after it came."""

    QUEUE = 0

    def __init__(self, namespace: str, delay_s: float) -> None:
        self.namespace = namespace
        self.delay_s = delay_s
        self.ready = threading.Event()
        self.stopping = threading.Event()
        self.failure: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name=f"delay-{namespace}", daemon=True)

    def start_and_wait(self, timeout_s: float = 10) -> None:
        self.thread.start()
        if not self.ready.wait(timeout_s) or self.failure is not None:
            raise RuntimeError(f"the packet delay in {self.namespace} did not start: {self.failure!r}")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(timeout=5)

    def _run(self) -> None:
        try:
            enter(self.namespace)
            with socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, _NETLINK_NETFILTER) as sock:
                sock.setsockopt(socket.SOL_SOCKET, _SO_RCVBUFFORCE, 4 << 20)
                sock.setsockopt(_SOL_NETLINK, _NETLINK_NO_ENOBUFS, 1)
                sock.bind((0, 0))
                self._configure(sock)
                self.ready.set()
                self._serve(sock)
        except BaseException as error:  # reported by start_and_wait, or as traffic that stops
            self.failure = error
            self.ready.set()

    def _configure(self, sock: socket.socket) -> None:
        bind = _attribute(_CFG_CMD, struct.pack("!BxH", _CMD_BIND, socket.AF_INET))
        params = _attribute(_CFG_PARAMS, struct.pack("!IB", 0, _COPY_META))
        for seq, attributes in enumerate((bind, params), start=1):
            sock.send(_message(_MSG_CONFIG, _NLM_F_REQUEST | _NLM_F_ACK, seq, self.QUEUE, attributes))
            reply = sock.recv(65536)
            length, kind = struct.unpack_from("=IH", reply)
            if kind == _NLMSG_ERROR:
                (code,) = struct.unpack_from("=i", reply, 16)
                if code != 0:
                    raise OSError(-code, f"NFQUEUE configuration: {os.strerror(-code)}")

    def _serve(self, sock: socket.socket) -> None:
        due: collections.deque[tuple[float, int]] = collections.deque()
        while not self.stopping.is_set():
            now = time.monotonic()
            while due and due[0][0] <= now:
                _, packet_id = due.popleft()
                verdict = _attribute(_VERDICT_HDR, struct.pack("!II", _NF_ACCEPT, packet_id))
                sock.send(_message(_MSG_VERDICT, _NLM_F_REQUEST, 0, self.QUEUE, verdict))
            wait_s = min(0.05, due[0][0] - now) if due else 0.05
            readable, _, _ = select.select([sock], [], [], max(wait_s, 0))
            if not readable:
                continue
            try:
                data = sock.recv(1 << 20)
            except OSError as error:
                if error.errno == errno.ENOBUFS:  # the kernel dropped some: TCP sends them again
                    continue
                raise
            arrived = time.monotonic()
            due.extend((arrived + self.delay_s, packet_id) for packet_id in _packet_ids(data))


def _packet_ids(data: bytes) -> list[int]:
    """The ids of the queued packets in one read of the netlink socket."""
    ids = []
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        if kind == _MSG_PACKET:
            at = offset + 20  # past nlmsghdr and nfgenmsg
            while at + 4 <= offset + length:
                attribute_length, attribute_kind = struct.unpack_from("=HH", data, at)
                if attribute_length < 4:
                    break
                if attribute_kind & 0x3FFF == _PACKET_HDR:
                    ids.append(struct.unpack_from("!I", data, at + 4)[0])
                at += _align(attribute_length)
        offset += _align(length)
    return ids
