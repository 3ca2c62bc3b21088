"""The network a repository's builds may use when its config says `build_network: true`.

One Docker bridge network per node data directory, created on the first
networked build. The engine on a pbft-ci host runs with `--iptables=false`
(scripts/setup.sh), so Docker installs no NAT and no isolation: this module
installs what the builds need, in chains of its own named after the network,
and nothing else:

- filter INPUT → PBFT-CI-<tag>-IN: from the bridge, only replies reach this
  host; everything else is dropped, so a build cannot reach any of the
  host's addresses (the bridge's gateway included) or its services.
- filter FORWARD → PBFT-CI-<tag>-FWD: from the bridge, the configured node
  and client addresses and link-local 169.254.0.0/16 (cloud metadata) are
  dropped, as is traffic between two builds (which iptables sees only with
  net.bridge.bridge-nf-call-iptables=1: checked, never set); the rest goes out. Towards the
  bridge only replies pass.
- nat POSTROUTING → PBFT-CI-<tag>-NAT: MASQUERADE for the bridge's subnet.
- ip6tables INPUT and FORWARD → PBFT-CI-<tag>-IN/-FWD: all IPv6 from or to the
  bridge is dropped (a link-local address would reach the host otherwise).
- net.ipv4.ip_forward is set to 1 if it is 0 (logged; never set back, since
  other networks on the host may rely on it by then).

The rules are this host's, so they guard builds only if the engine's bridge
is on this host too: an engine elsewhere (`build.docker_host`), or in another
network namespace, makes its bridge where none of them apply. The bridge must
show up here, with the network's gateway address, or no networked build runs.

The rules are in place before the network exists and stay until it is gone.
Any step that fails ends the build as an `error` with UNAVAILABLE: a build
never gets a network without its isolation. Only validated config values
(the hashed data directory, resolved IP addresses, Docker's own subnet) reach
the command lines, always as argument lists.
"""

import fcntl
import hashlib
import ipaddress
import logging
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import docker
import docker.errors

from builder.engine.sandbox import SandboxError

log = logging.getLogger(__name__)

UNAVAILABLE = "build network unavailable on this node"
IPTABLES = "iptables"
IP6TABLES = "ip6tables"
SYSCTL = "sysctl"
LINK_LOCAL = "169.254.0.0/16"
_FORWARDING = Path("/proc/sys/net/ipv4/ip_forward")
# Frames from one build to another are bridged, not routed; iptables sees
# them only with br_netfilter loaded and this switch on.
_BRIDGED_TO_IPTABLES = Path("/proc/sys/net/bridge/bridge-nf-call-iptables")
_COMMAND_TIMEOUT_S = 10.0
_SIOCGIFADDR = 0x8915
# Peer host names a node's build network drops at most: its first configuration's and those
# later builds' orders named (each member a change through the order adds is one more).
MAX_PEER_HOSTS = 1024


def network_tag(data_dir: Path) -> str:
    """8 hex digits naming this node's network, bridge and chains; stable across restarts."""
    return hashlib.sha256(str(data_dir).encode()).hexdigest()[:8]


@dataclass(frozen=True)
class NetworkInfo:
    name: str     # the Docker network, given to the build container
    bridge: str   # the host's interface for it
    subnet: str
    gateway: str  # the bridge's own address: this host, as builds see it


@dataclass(frozen=True)
class _Chain:
    """One chain of ours: its table, the built-in chain that jumps to it, and its rules in order."""

    command: str
    table: str
    hook: str
    name: str
    rules: tuple[tuple[str, ...], ...]


class BuildNetwork:
    """The build network of the node whose data directory is `data_dir`.

    `peer_hosts` are the node and client hosts of the configuration the node
    started with; their addresses are resolved on the first networked build,
    and dropped from then on. A build's order may name more (a member added
    through the order since): they are resolved when a build first names them
    and dropped too, from then on, whichever document a later build runs under
    (at most MAX_PEER_HOSTS names).
    """

    def __init__(self, data_dir: Path, peer_hosts: Iterable[str]):
        self._data_dir = Path(data_dir)
        self._peer_hosts = tuple(dict.fromkeys(peer_hosts))
        tag = network_tag(self._data_dir)
        self.name = f"pbft-ci-net-{tag}"
        self.bridge = f"pbftci-{tag}"  # 15 characters, the kernel's limit
        self._chain_prefix = f"PBFT-CI-{tag}"
        self._guard = threading.Lock()
        self._ready: NetworkInfo | None = None
        self._peers: tuple[str, ...] | None = None

    def ensure(self, client: docker.DockerClient, peer_hosts: Iterable[str] = ()) -> NetworkInfo:
        """The network with its rules in place, made on first use, dropping `peer_hosts` too;
        SandboxError(UNAVAILABLE) if it cannot be."""
        with self._guard:
            new_hosts = [host for host in dict.fromkeys(peer_hosts) if host not in self._peer_hosts]
            if len(self._peer_hosts) + len(new_hosts) > MAX_PEER_HOSTS:
                raise SandboxError(UNAVAILABLE, f"{UNAVAILABLE}: more than {MAX_PEER_HOSTS} peer hosts\n")
            if self._ready is not None and self._rules_in_place(self._ready.subnet):
                if new_hosts:
                    self._drop_new_peers(client, new_hosts)
                return self._ready
            self._peer_hosts += tuple(new_hosts)
            self._peers = None
            self._ready = None
            try:
                _check_bridged_traffic_filtered()
                if self._peers is None:
                    self._peers = _resolve(self._peer_hosts)
                # Filter rules first: they name only the bridge, so they hold
                # before the first container can be attached.
                self._install(self._filter_chains(self._peers))
                network = self._network(client)
                _check_bridge_is_here(network)
                self._install(self._nat_chains(network.subnet))
                _enable_forwarding()
            except (_CommandError, OSError, docker.errors.DockerException, ValueError) as exc:
                log.error("build network %s unavailable: %s", self.name, exc)
                self._remove_quietly(client)
                raise SandboxError(UNAVAILABLE, f"{UNAVAILABLE}: {exc}\n") from None
            self._ready = network
            return network

    def remove(self, client: docker.DockerClient, attempts: int = 10, pause_s: float = 0.3) -> bool:
        """Remove the network, then its rules; False (rules kept) while the network cannot be removed.

        Builds killed a moment ago may still be attached; the rules go only
        once no build can use the network any more.
        """
        with self._guard:
            return self._remove(client, attempts, pause_s)

    def _remove(self, client: docker.DockerClient, attempts: int, pause_s: float) -> bool:
        """`remove` with the guard already held."""
        self._ready = None
        for attempt in range(attempts):
            try:
                for network in client.networks.list(filters={"label": f"pbft-ci.data={self._data_dir}"}):
                    network.remove()
                break
            except docker.errors.NotFound:
                break
            except docker.errors.APIError:
                if attempt == attempts - 1:
                    log.warning("build network %s still in use; its rules stay", self.name, exc_info=True)
                    return False
                time.sleep(pause_s)
        for chain in (*self._filter_chains(()), *self._nat_chains("0.0.0.0/0")):
            _remove_chain(chain)
        return True

    def _remove_quietly(self, client) -> None:
        try:
            self._remove(client, attempts=1, pause_s=0)
        except (OSError, docker.errors.DockerException):
            log.warning("could not remove build network %s after a failed setup", self.name, exc_info=True)

    def _network(self, client: docker.DockerClient) -> NetworkInfo:
        existing = client.networks.list(names=[self.name])
        network = existing[0] if existing else client.networks.create(
            self.name,
            driver="bridge",
            options={
                "com.docker.network.bridge.name": self.bridge,
                # Docker's own inter-build isolation; with --iptables=false it
                # does nothing, so the FORWARD chain drops bridge-to-bridge too.
                "com.docker.network.bridge.enable_icc": "false",
            },
            labels={"pbft-ci.data": str(self._data_dir)},
        )
        network.reload()
        bridge = network.attrs.get("Options", {}).get("com.docker.network.bridge.name")
        if bridge != self.bridge:
            raise ValueError(f"network {self.name} exists with bridge {bridge!r}, not {self.bridge!r}")
        config = (network.attrs.get("IPAM", {}).get("Config") or [{}])[0]
        subnet = ipaddress.IPv4Network(config.get("Subnet", ""))
        gateway = ipaddress.IPv4Address(config.get("Gateway", ""))
        return NetworkInfo(self.name, self.bridge, str(subnet), str(gateway))

    def _filter_chains(self, peers: Iterable[str]) -> tuple[_Chain, ...]:
        bridge = ("-i", self.bridge)
        replies = ("-m", "conntrack", "--ctstate", "ESTABLISHED,RELATED")
        forward = (
            *((*bridge, "-d", peer, "-j", "DROP") for peer in peers),
            (*bridge, "-d", LINK_LOCAL, "-j", "DROP"),
            # Seen only for bridged frames (br_netfilter): one build to another.
            (*bridge, "-o", self.bridge, "-j", "DROP"),
            (*bridge, "-j", "ACCEPT"),
            ("-o", self.bridge, *replies, "-j", "ACCEPT"),
            ("-o", self.bridge, "-j", "DROP"),
        )
        return (
            _Chain(IPTABLES, "filter", "INPUT", f"{self._chain_prefix}-IN",
                   ((*bridge, *replies, "-j", "ACCEPT"), (*bridge, "-j", "DROP"))),
            _Chain(IPTABLES, "filter", "FORWARD", f"{self._chain_prefix}-FWD", forward),
            _Chain(IP6TABLES, "filter", "INPUT", f"{self._chain_prefix}-IN", ((*bridge, "-j", "DROP"),)),
            _Chain(IP6TABLES, "filter", "FORWARD", f"{self._chain_prefix}-FWD",
                   ((*bridge, "-j", "DROP"), ("-o", self.bridge, "-j", "DROP"))),
        )

    def _nat_chains(self, subnet: str) -> tuple[_Chain, ...]:
        return (_Chain(IPTABLES, "nat", "POSTROUTING", f"{self._chain_prefix}-NAT",
                       (("-s", subnet, "!", "-o", self.bridge, "-j", "MASQUERADE"),)),)

    def _drop_new_peers(self, client: docker.DockerClient, hosts: list[str]) -> None:
        """Drop traffic to `hosts` from the running network: each new address's rule goes first
        in the forward chain, so no build in flight is unguarded while it is added (a rebuilt
        chain would be empty for a moment)."""
        try:
            added = [address for address in _resolve(hosts) if address not in (self._peers or ())]
            forward = next(chain for chain in self._filter_chains(()) if chain.hook == "FORWARD"
                           and chain.command == IPTABLES)
            for address in added:
                _check(IPTABLES, "-t", "filter", "-I", forward.name, "1", "-i", self.bridge, "-d", address,
                       "-j", "DROP")
        except (_CommandError, ValueError) as exc:
            log.error("build network %s: could not drop new peers: %s", self.name, exc)
            self._ready = None
            self._remove_quietly(client)
            raise SandboxError(UNAVAILABLE, f"{UNAVAILABLE}: {exc}\n") from None
        self._peer_hosts += tuple(hosts)
        self._peers = tuple(sorted({*(self._peers or ()), *added}))
        log.info("build network %s drops %d more peer address(es) from now on", self.name, len(added))

    def _install(self, chains: Iterable[_Chain]) -> None:
        for chain in chains:
            _install_chain(chain)

    def _rules_in_place(self, subnet: str) -> bool:
        """Cheap re-check before each build: someone may have flushed the host's rules meanwhile."""
        chains = (*self._filter_chains(self._peers or ()), *self._nat_chains(subnet))
        return all(_chain_in_place(chain) for chain in chains)


class _CommandError(Exception):
    pass


class _MissingCommand(_CommandError):
    pass


def _run(*args: str) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(list(args), capture_output=True, text=True, timeout=_COMMAND_TIMEOUT_S)
    except FileNotFoundError:
        raise _MissingCommand(f"{args[0]}: not installed") from None
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise _CommandError(f"{args[0]}: {exc}") from None


def _check(*args: str) -> None:
    done = _run(*args)
    if done.returncode != 0:
        raise _CommandError(f"{' '.join(args)}: {done.stderr.strip() or f'exit {done.returncode}'}")


def _chain_in_place(chain: _Chain) -> bool:
    table = (chain.command, "-t", chain.table)
    return _run(*table, "-C", chain.hook, "-j", chain.name).returncode == 0 and all(
        _run(*table, "-C", chain.name, *rule).returncode == 0 for rule in chain.rules
    ) and len(_run(*table, "-S", chain.name).stdout.splitlines()) == len(chain.rules) + 1


def _install_chain(chain: _Chain) -> None:
    """Make `chain` hold exactly its rules, jumped to first from its hook; nothing else is touched."""
    if _chain_in_place(chain):
        return
    table = (chain.command, "-t", chain.table)
    if _run(*table, "-S", chain.name).returncode != 0:
        _check(*table, "-N", chain.name)
    # The chain is ours (its name carries the network's tag), so rebuilding it
    # in order is safe; its rules are appended in the order they must match.
    _check(*table, "-F", chain.name)
    for rule in chain.rules:
        _check(*table, "-A", chain.name, *rule)
    if _run(*table, "-C", chain.hook, "-j", chain.name).returncode != 0:
        _check(*table, "-I", chain.hook, "1", "-j", chain.name)


def _remove_chain(chain: _Chain) -> None:
    table = (chain.command, "-t", chain.table)
    try:
        while _run(*table, "-C", chain.hook, "-j", chain.name).returncode == 0:
            _check(*table, "-D", chain.hook, "-j", chain.name)
        if _run(*table, "-S", chain.name).returncode == 0:
            _check(*table, "-F", chain.name)
            _check(*table, "-X", chain.name)
    except _MissingCommand:
        # Without the command there can be no chain of ours to remove.
        return
    except _CommandError as exc:
        log.warning("could not remove chain %s: %s", chain.name, exc)


def _resolve(hosts: Iterable[str]) -> tuple[str, ...]:
    """The IPv4 addresses of `hosts` that are not loopback (a build's loopback is its own)."""
    addresses: set[str] = set()
    for host in hosts:
        if host == "localhost":
            continue
        try:
            found = [ipaddress.ip_address(host)]
        except ValueError:
            try:
                infos = socket.getaddrinfo(host, None, socket.AF_INET, socket.SOCK_STREAM)
            except OSError as exc:
                raise ValueError(f"cannot resolve peer host {host!r}: {exc}") from None
            found = [ipaddress.ip_address(info[4][0]) for info in infos]
        # All IPv6 from the bridge is dropped anyway.
        addresses.update(str(a) for a in found if a.version == 4 and not a.is_loopback)
    return tuple(sorted(addresses))


def _check_bridge_is_here(network: NetworkInfo) -> None:
    """Refuse an engine whose bridge this host's rules would not see (it runs on another machine)."""
    address = _interface_ipv4(network.bridge)
    if address != network.gateway:
        raise ValueError(
            f"the engine's bridge {network.bridge} (gateway {network.gateway}) is not on this host"
            f"{'' if address is None else f' (an interface of that name here has {address})'}: "
            "the build engine runs elsewhere, where this node's iptables rules would not apply"
        )


def _interface_ipv4(name: str) -> str | None:
    """The IPv4 address of this host's interface `name` (SIOCGIFADDR), or None without one."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            answer = fcntl.ioctl(sock.fileno(), _SIOCGIFADDR, struct.pack("256s", name.encode()[:15]))
        except OSError:
            return None
    return socket.inet_ntoa(answer[20:24])


def _check_bridged_traffic_filtered() -> None:
    """Refuse rather than let builds reach each other: the node does not load kernel modules or flip
    bridge-nf-call-iptables, which would change every bridge on the host."""
    try:
        enabled = _BRIDGED_TO_IPTABLES.read_text().strip() == "1"
    except OSError:
        enabled = False
    if not enabled:
        raise ValueError(f"{_BRIDGED_TO_IPTABLES} is not 1 (modprobe br_netfilter; sysctl "
                         "net.bridge.bridge-nf-call-iptables=1), so builds on the bridge could reach each other")


def _enable_forwarding() -> None:
    if _FORWARDING.read_text().strip() == "1":
        return
    _check(SYSCTL, "-q", "-w", "net.ipv4.ip_forward=1")
    log.warning("enabled net.ipv4.ip_forward for networked builds (it was 0); it stays on")
