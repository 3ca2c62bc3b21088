"""The top level of the network configuration: a network's nodes, clients, repositories and
settings, as the section `NetworkConfig` (shared/config.py reads a file into it and names
it with the rest of the configuration's sections)."""

from __future__ import annotations

import ssl
from pathlib import Path

from pbft.provenance import builder_id
from shared.config_build import BuildConfig, ProtocolConfig
from shared.config_engines import NodeTLSConfig
from shared.config_environments import MAX_ENVIRONMENTS, EnvironmentConfig
from shared.config_files import client_key_file, node_key_file, runner_key_file
from shared.config_principals import BUILD_ID_LANES, ClientConfig, NodeConfig, OwnersConfig
from shared.config_repositories import RepositoryConfig
from shared.schema import Bool, FilePath, Int, ListOf, Section, section, setting


@section
class NetworkConfig:
    """A network: its nodes and clients, the repositories it builds, and how."""

    path: Path  # the file read
    f: int = setting(Int(minimum=0), doc="faults tolerated; n = len(nodes) must be at least 3f+1")
    nodes: tuple[NodeConfig, ...] = setting(ListOf(Section(NodeConfig), min_items=1),
                                            doc="one entry per node")
    clients: tuple[ClientConfig, ...] = setting(
        ListOf(Section(ClientConfig), min_items=1, max_items=BUILD_ID_LANES, unique="name"),
        doc="the clients that sign requests; several serve one network alike (operations: several clients)",
    )
    repositories: tuple[RepositoryConfig, ...] = setting(
        ListOf(Section(RepositoryConfig), min_items=1, unique="name"),
        doc="what the network may build; a webhook names one",
    )
    environments: tuple[EnvironmentConfig, ...] = setting(
        ListOf(Section(EnvironmentConfig), max_items=MAX_ENVIRONMENTS, unique="name"), default=(),
        doc="where `after:` actions deploy, and who approves a deploy (docs/actions.md)",
    )
    build: BuildConfig = setting(Section(BuildConfig), default=BuildConfig(), doc="how every node builds")
    protocol: ProtocolConfig = setting(Section(ProtocolConfig), default=ProtocolConfig(),
                                       doc="the replica's settings and the client's waits")
    data_dir: Path = setting(FilePath(), default=Path("data"), local=True,
                             doc="stores, git mirrors, caches, artifacts: one folder per node and client")
    log_dir: Path = setting(FilePath(), default=Path("log"), local=True, doc="node, client and build logs")
    keys_dir: Path = setting(FilePath(), default=Path("keys"), local=True,
                             doc="private keys, generated on first start, never committed")
    allow_byzantine: bool = setting(Bool(), default=False,
                                    doc="may nodes start with --byzantine (fault demos and tests)?")
    in_toto_layout: Path | None = setting(FilePath(), default=None, local=True,
                                          doc="the owner's signed in-toto layout (scripts/owner.py), which only the "
                                              "client reads")
    owners: OwnersConfig | None = setting(Section(OwnersConfig), default=None,
                                          doc="who signs changes of the network document; none: it changes only "
                                              "at a restart of every node")
    tls: NodeTLSConfig | None = setting(Section(NodeTLSConfig), default=None, local=True,
                                        doc="HTTPS and WSS on every node's port")
    joining: NodeConfig | None = setting(
        Section(NodeConfig), default=None, local=True,
        doc="this host's node while it is no member yet: the rest of the file is the network document the "
            "network started from, and a change through the order makes the node a member (docs/operations.md)",
    )
    # The digest of the network document (shared/networkdoc.py): what every node must hold alike.
    digest: str = ""

    @property
    def n(self) -> int:
        return len(self.nodes)

    @property
    def builder_id(self) -> str:
        """The network as a SLSA builder (`pbft.provenance.builder_id`): its nodes' keys and f."""
        return builder_id((node.public_key for node in self.nodes), self.f)

    @property
    def peer_hosts(self) -> tuple[str, ...]:
        """The hosts of its nodes and clients: what a networked build must not reach."""
        return tuple(node.host for node in self.nodes) + tuple(client.host for client in self.clients)

    def node_ssl(self) -> ssl.SSLContext | bool:
        """`ssl=` for a connector that reaches the nodes: the network's CA with `tls:`, else
        aiohttp's default (which plain http:// URLs never use)."""
        return self.tls.client_context() if self.tls is not None else True

    def node(self, node_id: int) -> NodeConfig:
        """Node `node_id` as the network document names it, or as `joining:` does before it does."""
        for node in self.nodes:
            if node.id == node_id:
                return node
        if self.joining is not None and self.joining.id == node_id:
            return self.joining
        raise KeyError(f"no node {node_id} in {self.path}")

    def has_node(self, node_id: int) -> bool:
        """Whether `node_id` may run with this file: a member, or the node that joins."""
        try:
            self.node(node_id)
        except KeyError:
            return False
        return True

    def client(self, name: str) -> ClientConfig:
        for client in self.clients:
            if client.name == name:
                return client
        raise KeyError(f"no client {name!r} in {self.path}")

    def build_id_lane(self, name: str) -> int:
        """The lane of client `name`'s build ids (`BUILD_ID_LANES`): its place among the clients' names."""
        return sorted(client.name for client in self.clients).index(self.client(name).name)

    def repository(self, name: str) -> RepositoryConfig | None:
        return next((repo for repo in self.repositories if repo.name == name), None)

    def environment(self, name: str) -> EnvironmentConfig | None:
        return next((environment for environment in self.environments if environment.name == name), None)

    def node_key_path(self, node_id: int) -> Path:
        return node_key_file(self.keys_dir, node_id)

    def client_key_path(self, name: str) -> Path:
        return client_key_file(self.keys_dir, name)

    def runner_key_path(self, name: str) -> Path:
        return runner_key_file(self.keys_dir, name)
