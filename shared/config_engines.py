"""Where and how securely the network's processes talk: the Docker engine a node builds on
(`docker_host`, `docker_tls`) and HTTPS between the client and the nodes (`tls:`)."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Iterator

from shared.config_files import per_node
from shared.config_values import DOCKER_HOST
from shared.schema import FilePath, Section, section, setting

_FILE = FilePath()


@section
class DockerTLSConfig:
    """A tcp:// engine's certificates: the CA the node checks the engine by, and the node's client certificate."""

    ca_file: Path = setting(_FILE, doc="the CA the engine's certificate must chain to")
    cert_file: Path = setting(_FILE, doc="the node's client certificate")
    key_file: Path = setting(_FILE, doc="the client certificate's private key")


@section
class NodeTLSConfig:
    """HTTPS and WSS on every node's port, each node serving its own certificate ("{id}": the node's id)."""

    # The client and the peers trust `ca_file` alone and check that a node's certificate names
    # the host the configuration gives for it.
    ca_file: Path = setting(_FILE, doc="the only CA the client and the peers trust for nodes")
    cert_file: Path = setting(_FILE, doc="each node's certificate, naming its host; {id} is the node's id")
    key_file: Path = setting(_FILE, doc="each node's private key; {id} is the node's id")

    def node_files(self, node_id: int) -> tuple[Path, Path]:
        return Path(per_node(str(self.cert_file), node_id)), Path(per_node(str(self.key_file), node_id))

    def server_context(self, node_id: int) -> ssl.SSLContext:
        """What node `node_id` serves with. Raises OSError or ssl.SSLError for unreadable files."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        cert, key = self.node_files(node_id)
        context.load_cert_chain(cert, key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """What the client and the peers reach the nodes with: `ca_file` alone, hosts checked."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        return context


def _engine_problems(engine: DockerEngineConfig, given: frozenset) -> Iterator[tuple[str, str]]:
    """TLS client certificates for, and only for, a tcp:// engine."""
    if "tls" in given:
        if "host" not in given:
            yield "tls", "needs docker_host (a tcp:// engine) beside it"
        elif engine.host and not engine.host.startswith("tcp://"):
            yield "tls", "is only for tcp:// engines: unix:// is guarded by the socket's file permissions, ssh:// by " \
                         "ssh's own keys"
    elif engine.host.startswith("tcp://"):
        yield "host", ("tcp:// needs docker_tls (ca_file, cert_file, key_file): a Docker API without TLS client "
                       "certificates lets anyone who reaches its port run containers as root on that machine")


@section(check=_engine_problems)
class DockerEngineConfig:
    """The Docker engine a node runs its builds on; none set: the environment's (DOCKER_HOST, else the local socket)."""

    host: str = setting(DOCKER_HOST, default="", local=True,
                        doc="unix:///path, tcp://host:port (with docker_tls) or ssh://[user@]host[:port]")
    tls: DockerTLSConfig | None = setting(Section(DockerTLSConfig), default=None, local=True,
                                          doc="a tcp:// engine's CA and the node's client certificate")
